#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The command line itself, driven through the binary: help and version, the store from the
//! environment, and the values `--reason` and `--status` accept.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `rh-agents ARGS` in `dir`, without colours and without a store from the environment.
fn rh_agents(dir: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rh-agents"));
    cmd.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("RH_AGENTS_STORE")
        .args(args);
    cmd
}

fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rh-agents-args-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn help_and_version_print_on_stdout_and_exit_0() {
    let dir = scratch("help");
    let (out, stdout, stderr) = output(&mut rh_agents(&dir, &["--help"]));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("Usage: rh-agents"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    let (out, stdout, _) = output(&mut rh_agents(&dir, &["--version"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout, format!("rh-agents {}\n", env!("CARGO_PKG_VERSION")));
    let (out, stdout, stderr) = output(&mut rh_agents(&dir, &["run"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("error: the following required arguments"),
        "{stderr}"
    );
}

#[test]
fn an_empty_rh_agents_store_is_unset() {
    let dir = scratch("empty-store-env");
    std::fs::write(
        dir.join("p.toml"),
        "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n",
    )
    .unwrap();
    let (out, _, stderr) = output(rh_agents(&dir, &["run", "p.toml"]).env("RH_AGENTS_STORE", ""));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        dir.join(".rh-agents/state.db").is_file(),
        "the default store"
    );
    let (out, stdout, stderr) =
        output(rh_agents(&dir, &["runs", "--json"]).env("RH_AGENTS_STORE", ""));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let runs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{stdout}");
}

#[test]
fn a_reason_or_status_that_does_not_exist_is_a_usage_error_listing_the_values() {
    let dir = scratch("values");
    let (out, _, stderr) = output(&mut rh_agents(
        &dir,
        &["interrupt", "r1", "--reason", "bored"],
    ));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid value 'bored' for '--reason <REASON>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: user_cancelled, timeout,"),
        "{stderr}"
    );
    let (out, _, stderr) = output(&mut rh_agents(&dir, &["runs", "--status", "done"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("[possible values: running, paused,"),
        "{stderr}"
    );
}
