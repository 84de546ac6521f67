#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Validation of pipeline files: every error in a file is reported (not only the first), each
//! at its line and column, and files of tens of thousands of steps are checked completely.
//!
//! How long validation takes is measured by `cargo bench -p rh-agents-cli --bench validate`;
//! these tests check only what it finds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rh_agents_cli::pipeline::parse;

/// `rh-agents run FILE` with a store of its own, without colours.
fn run(dir: &Path, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rh-agents"))
        .env("NO_COLOR", "1")
        .env_remove("RH_AGENTS_STORE")
        .arg("run")
        .arg(file)
        .arg("--store")
        .arg(dir.join("state.db"))
        .output()
        .unwrap()
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("rh-agents-validate-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The diagnostics of `text` as printed (`file:line:column: message`).
fn errors(text: &str) -> Vec<String> {
    parse(text, Path::new("p.toml"))
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn two_type_errors_in_one_step_are_both_reported() {
    let dir = scratch("two-type-errors");
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        "name = \"x\"\n[[steps]]\nname = 5\nkind = \"command\"\nprogram = \"true\"\ntimeout = \"5\"\n",
    )
    .unwrap();
    let out = run(&dir, &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let shown = file.display();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            format!("error: {shown}:3:8: invalid type: integer `5`, expected a string"),
            format!(
                "error: {shown}:6:11: invalid duration \"5\": time unit needed, for example 5sec \
                 or 5ms (write e.g. \"500ms\", \"2s\", \"1m\")"
            ),
        ],
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing runs");
}

#[test]
fn errors_of_form_in_every_table_are_reported_in_file_order() {
    let text = r#"name = 1
[defaults]
timeout = 3
retry = { jitter = "lots", multiplier = "2" }
[[steps]]
name = "a"
kind = "cmd"
[[steps]]
kind = "command"
program = 7
progam = "x"
[[steps]]
name = "p"
kind = "parallel"
[[steps.steps]]
name = "c"
kind = "command"
args = "-c"
"#;
    assert_eq!(
        errors(text),
        [
            "p.toml:1:8: invalid type: integer `1`, expected a string",
            "p.toml:3:11: invalid type: integer `3`, expected a duration string such as \"500ms\", \"2s\" or \"1m\"",
            "p.toml:4:20: invalid type: string \"lots\", expected `true` (±25 %), `false` (none) or a fraction between 0 and 1",
            "p.toml:4:41: invalid type: string \"2\", expected f64",
            "p.toml:7:8: unknown variant `cmd`, expected one of `command`, `http`, `parallel`",
            "p.toml:8:1: missing field `name`",
            "p.toml:10:11: invalid type: integer `7`, expected a string",
            "p.toml:11:1: unknown field `progam`, expected one of `name`, `kind`, `program`, `args`, `env`, `cwd`, `stdin`, `retryable_exit_codes`, `method`, `url`, `headers`, `body`, `max_workers`, `fail_fast`, `steps`, `timeout`, `retry`",
            "p.toml:18:8: invalid type: string \"-c\", expected a sequence",
        ]
    );
}

#[test]
fn sections_and_dotted_keys_are_read_like_inline_tables() {
    let text = r#"name = "x"
[defaults.retry]
strategy = "linear"
[[steps]]
name = "a"
kind = "command"
program = "true"
retry.delay = "1ms"
retry.max_attempts = 2
[steps.env]
A = "1"
"#;
    let p = parse(text, Path::new("p.toml")).unwrap_or_else(|d| panic!("{d:?}"));
    let retry = &p.steps[0].retry;
    assert_eq!(retry.backoff(), rh_agents::Backoff::Linear);
    assert_eq!(retry.initial_delay(), std::time::Duration::from_millis(1));
    assert_eq!(retry.max_attempts(), 2);
    // A value of the wrong type inside a section is found where it is written.
    let text = "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\nretry.jitter = \"x\"\n[steps.env]\nA = 1\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("p.toml:6:16: invalid type: string \"x\""),
        "{errs:?}"
    );
    assert_eq!(
        errs[1],
        "p.toml:8:5: invalid type: integer `1`, expected a string"
    );
    // `delay` is `base` by another name: both at once is one setting given twice.
    let text = "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\nretry = { base = \"1s\", delay = \"2s\" }\n";
    assert_eq!(errors(text), ["p.toml:6:24: duplicate field `base`"]);
}

/// `steps` command steps, each reading the previous one's output.
fn valid(steps: usize) -> String {
    let mut text = String::from("name = \"big\"\n");
    for i in 0..steps {
        let _ = write!(
            text,
            "\n[[steps]]\nname = \"s{i}\"\nkind = \"command\"\nprogram = \"echo\"\n"
        );
        if i > 0 {
            let _ = writeln!(text, "stdin = \"{{{{ steps.s{}.stdout }}}}\"", i - 1);
        }
    }
    text
}

#[test]
fn a_file_of_forty_thousand_steps_validates() {
    let p =
        parse(&valid(40_000), Path::new("big.toml")).unwrap_or_else(|d| panic!("{:?}", &d[..3]));
    assert_eq!(p.steps.len(), 40_000);
    assert_eq!(p.steps[39_999].name, "s39999");
}

#[test]
fn every_error_of_a_large_file_is_reported_at_its_line() {
    // 20,000 steps without `program`, and a duplicate name and an unknown reference at the end.
    let mut text = String::from("name = \"broken\"\n");
    for i in 0..20_000 {
        let _ = write!(text, "[[steps]]\nname = \"s{i}\"\nkind = \"command\"\n");
    }
    text.push_str("[[steps]]\nname = \"s0\"\nkind = \"command\"\nprogram = \"true\"\n");
    text.push_str(
        "[[steps]]\nname = \"last\"\nkind = \"command\"\nprogram = \"{{ steps.nope.stdout }}\"\n",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 20_002);
    for (i, e) in errs.iter().take(20_000).enumerate() {
        let line = 3 + 3 * i;
        assert_eq!(
            e,
            &format!("p.toml:{line}:8: command step \"s{i}\" needs `program`")
        );
    }
    assert_eq!(
        errs[20_000],
        "p.toml:60003:8: duplicate step name \"s0\" (first defined at 3:8)"
    );
    assert_eq!(
        errs[20_001],
        "p.toml:60009:11: `{{ steps.nope.stdout }}`: there is no step named \"nope\""
    );
}

#[test]
fn a_template_error_in_a_header_names_the_header() {
    let text = r#"name = "x"
[[steps]]
name = "a"
kind = "command"
program = "true"
[[steps]]
name = "h"
kind = "http"
url = "http://127.0.0.1:9/"
headers = { x-a = "{{ steps.a.stdout }}", x-b = "{{ steps.a.body }}", x-c = "{{ oops" }
"#;
    assert_eq!(
        errors(text),
        [
            "p.toml:10:49: header \"x-b\": `{{ steps.a.body }}`: a command step has no field \
             `body` (its fields: stdout, stderr, exit_code)",
            "p.toml:10:77: header \"x-c\": bad template: `{{` is never closed with `}}`",
        ]
    );
}

#[test]
fn every_wrong_element_of_a_list_or_map_is_reported() {
    let text = r#"name = "x"
[[steps]]
name = "a"
kind = "command"
program = "true"
args = [1, "ok", 2]
env = { A = 1, B = "x", C = true }
retryable_exit_codes = ["1", 2, 3.5]
"#;
    assert_eq!(
        errors(text),
        [
            "p.toml:6:9: invalid type: integer `1`, expected a string",
            "p.toml:6:18: invalid type: integer `2`, expected a string",
            "p.toml:7:13: invalid type: integer `1`, expected a string",
            "p.toml:7:29: invalid type: boolean `true`, expected a string",
            "p.toml:8:25: invalid type: string \"1\", expected i32",
            "p.toml:8:33: invalid type: floating point `3.5`, expected i32",
        ]
    );
}

#[test]
fn a_diagnostic_quoting_the_file_shows_its_escape_characters_escaped() {
    let dir = scratch("escapes");
    let file = dir.join("p.toml");
    // A step name, written with TOML's own escape, that would clear the screen if printed
    // raw: the diagnostic that quotes it must show it escaped.
    std::fs::write(
        &file,
        "name = \"x\"\n[[steps]]\nname = \"a\\u001b[2J\"\nkind = \"command\"\nprogram = \"true\"\n",
    )
    .unwrap();
    let out = run(&dir, &file);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "an escape reached the terminal: {stderr:?}"
    );
    assert!(stderr.contains("\\x1b"), "{stderr:?}");
}
