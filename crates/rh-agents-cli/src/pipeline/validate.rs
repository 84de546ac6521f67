//! Parsing and validation: the TOML file becomes a [`Pipeline`] or a list of
//! [`Diagnostic`]s, each at a line and column. Nothing runs before this has passed.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use rh_agents::{Backoff, RetryPolicy};
use toml::Spanned;

use super::position::{Diagnostic, Source};
use super::raw::{RawKind, RawPipeline, RawRetry, RawStep, RetryTable};
use super::spec::{Action, CommandSpec, HttpSpec, ParallelSpec, Pipeline, Step};
use super::template::{is_valid_name, Field, Ref, Template};

/// Parses and validates the text of a pipeline file. `file` names the file in diagnostics;
/// relative `cwd`s are resolved against its directory.
///
/// # Errors
///
/// Every problem found, in file order (a TOML error stops at the first one).
pub fn parse(text: &str, file: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let shown = file.display().to_string();
    let src = Source { file: &shown, text };
    let raw: RawPipeline = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim_end().replace('\n', "; ");
            return Err(vec![src.at(&span, message)]);
        }
    };
    let dir = file.parent().unwrap_or_else(|| Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut v = Validator {
        src,
        dir,
        diags: Vec::new(),
        top: Vec::new(),
        defaults: Level::default(),
    };
    let pipeline = v.pipeline(raw, file);
    if v.diags.is_empty() {
        if let Some(p) = pipeline {
            return Ok(p);
        }
    }
    v.diags.sort_by_key(|d| (d.line, d.column));
    Err(v.diags)
}

/// A top-level step as templates see it.
struct TopInfo {
    name: String,
    span: Range<usize>,
    kind: RawKind,
    children: Vec<(String, RawKind)>,
}

/// Where a template is: which top-level step (by index), and for a child its parent's
/// siblings.
struct Scope<'s> {
    top_index: usize,
    top_name: &'s str,
    in_parallel: bool,
    siblings: &'s [String],
}

/// Retry settings given at one level (a step or `[defaults]`); `None` falls through.
#[derive(Debug, Clone, Default)]
struct Level {
    enabled: Option<bool>,
    strategy: Option<Backoff>,
    base: Option<Duration>,
    multiplier: Option<f64>,
    max_attempts: Option<u32>,
    max_delay: Option<Duration>,
    jitter: Option<f64>,
    retry_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
}

impl Level {
    fn over(&self, under: &Level) -> Level {
        Level {
            enabled: self.enabled.or(under.enabled),
            strategy: self.strategy.or(under.strategy),
            base: self.base.or(under.base),
            multiplier: self.multiplier.or(under.multiplier),
            max_attempts: self.max_attempts.or(under.max_attempts),
            max_delay: self.max_delay.or(under.max_delay),
            jitter: self.jitter.or(under.jitter),
            retry_timeout: self.retry_timeout.or(under.retry_timeout),
            attempt_timeout: self.attempt_timeout.or(under.attempt_timeout),
        }
    }

    fn policy(&self) -> Result<RetryPolicy, rh_agents::PolicyError> {
        let mut b = RetryPolicy::builder()
            .backoff(self.strategy.unwrap_or(Backoff::Exponential))
            .enabled(self.enabled.unwrap_or(true));
        if let Some(d) = self.base {
            b = b.initial_delay(d);
        }
        if let Some(m) = self.multiplier {
            b = b.multiplier(m);
        }
        if let Some(n) = self.max_attempts {
            b = b.max_attempts(n);
        }
        if let Some(d) = self.max_delay {
            b = b.max_delay(d);
        }
        if let Some(j) = self.jitter {
            b = b.jitter(j);
        }
        if let Some(d) = self.retry_timeout {
            b = b.retry_timeout(d);
        }
        if let Some(d) = self.attempt_timeout {
            b = b.attempt_timeout(d);
        }
        b.build()
    }
}

struct Validator<'a> {
    src: Source<'a>,
    dir: &'a Path,
    diags: Vec<Diagnostic>,
    top: Vec<TopInfo>,
    defaults: Level,
}

fn kind_name(kind: RawKind) -> &'static str {
    match kind {
        RawKind::Command => "command",
        RawKind::Http => "http",
        RawKind::Parallel => "parallel",
    }
}

fn fields_of(kind: RawKind) -> &'static [Field] {
    match kind {
        RawKind::Command => &[Field::Stdout, Field::Stderr, Field::ExitCode],
        RawKind::Http => &[Field::Status, Field::Body],
        RawKind::Parallel => &[],
    }
}

impl Validator<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.src.at(span, message);
        self.diags.push(d);
    }

    fn pipeline(&mut self, raw: RawPipeline, file: &Path) -> Option<Pipeline> {
        if raw.name.get_ref().trim().is_empty() {
            self.error(&raw.name.span(), "the pipeline name is empty");
        }
        if let Some(defaults) = &raw.defaults {
            self.defaults = self.level(defaults.timeout.as_ref(), defaults.retry.as_ref());
        }
        if raw.steps.is_empty() {
            self.error(
                &(0..0),
                "the pipeline has no steps: add at least one [[steps]] table",
            );
        }
        // First pass: names, so templates can tell "later" from "unknown".
        for step in &raw.steps {
            let name = step.name.get_ref();
            if let Some(first) = self.top.iter().find(|t| &t.name == name) {
                let at = self.src.pos(&first.span);
                self.error(
                    &step.name.span(),
                    format!("duplicate step name \"{name}\" (first defined at {at})"),
                );
                continue;
            }
            let children = step
                .steps
                .as_ref()
                .map(|s| {
                    s.get_ref()
                        .iter()
                        .map(|c| (c.name.get_ref().clone(), *c.kind.get_ref()))
                        .collect()
                })
                .unwrap_or_default();
            self.top.push(TopInfo {
                name: name.clone(),
                span: step.name.span(),
                kind: *step.kind.get_ref(),
                children,
            });
        }
        let names: Vec<String> = raw.steps.iter().map(|s| s.name.get_ref().clone()).collect();
        let mut steps = Vec::new();
        for (index, step) in raw.steps.iter().enumerate() {
            let top_name = names[index].clone();
            let scope = Scope {
                top_index: index,
                top_name: &top_name,
                in_parallel: false,
                siblings: &[],
            };
            if let Some(step) = self.step(step, &scope) {
                steps.push(step);
            }
        }
        Some(Pipeline {
            name: raw.name.into_inner(),
            file: file.to_path_buf(),
            steps,
        })
    }

    /// The retry settings of one level, checking each value where it is written.
    fn level(
        &mut self,
        timeout: Option<&Spanned<super::duration::HumanDuration>>,
        retry: Option<&Spanned<RawRetry>>,
    ) -> Level {
        let mut level = Level::default();
        if let Some(t) = timeout {
            level.attempt_timeout = self.positive(t, "timeout");
        }
        match retry.map(Spanned::get_ref) {
            None => {}
            Some(RawRetry::Switch(on)) => level.enabled = Some(*on),
            Some(RawRetry::Table(table)) => {
                level.enabled = Some(true);
                self.table(table, &mut level);
                if let (Some(t), Some(a)) = (timeout, &table.attempt_timeout) {
                    let _ = t;
                    self.error(
                        &a.span(),
                        "`retry.attempt_timeout` and `timeout` are the same setting: keep one",
                    );
                }
            }
        }
        level
    }

    fn positive(
        &mut self,
        d: &Spanned<super::duration::HumanDuration>,
        field: &str,
    ) -> Option<Duration> {
        let value = d.get_ref().0;
        if value.is_zero() {
            self.error(&d.span(), format!("`{field}` must be greater than zero"));
            return None;
        }
        Some(value)
    }

    fn table(&mut self, t: &RetryTable, level: &mut Level) {
        level.strategy = t.strategy.as_ref().map(|s| *s.get_ref());
        level.base = t.base.as_ref().map(|d| d.get_ref().0);
        level.max_delay = t.max_delay.as_ref().map(|d| d.get_ref().0);
        if let Some(d) = &t.retry_timeout {
            level.retry_timeout = self.positive(d, "retry_timeout");
        }
        if let Some(d) = &t.attempt_timeout {
            level.attempt_timeout = self.positive(d, "attempt_timeout");
        }
        if let Some(n) = &t.max_attempts {
            match u32::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 => level.max_attempts = Some(v),
                _ => self.error(
                    &n.span(),
                    format!(
                        "max_attempts must be between 1 and {} (it counts the first attempt), got {}",
                        u32::MAX,
                        n.get_ref()
                    ),
                ),
            }
        }
        if let Some(m) = &t.multiplier {
            let value = *m.get_ref();
            let strategy = level.strategy.unwrap_or(Backoff::Exponential);
            if strategy != Backoff::Exponential {
                self.error(
                    &m.span(),
                    "`multiplier` applies only to strategy = \"exponential\"",
                );
            } else if !(value.is_finite() && value >= 1.0) {
                self.error(
                    &m.span(),
                    format!("multiplier must be a number >= 1, got {value}"),
                );
            } else {
                level.multiplier = Some(value);
            }
        }
        if let Some(j) = &t.jitter {
            let value = j.get_ref().0;
            if (0.0..=1.0).contains(&value) {
                level.jitter = Some(value);
            } else {
                self.error(
                    &j.span(),
                    format!("jitter must be true, false or a fraction between 0 and 1 (0.25 means ±25 %), got {value}"),
                );
            }
        }
    }

    fn forbid<T>(&mut self, field: Option<&Spanned<T>>, name: &str, kind: RawKind) {
        if let Some(v) = field {
            let kind = kind_name(kind);
            self.error(
                &v.span(),
                format!("`{name}` is not a field of a {kind} step"),
            );
        }
    }

    fn step(&mut self, raw: &RawStep, scope: &Scope<'_>) -> Option<Step> {
        let name = raw.name.get_ref().clone();
        if !is_valid_name(&name) {
            self.error(
                &raw.name.span(),
                format!("step name \"{name}\" may contain only letters, digits, `_` and `-`"),
            );
        }
        let kind = *raw.kind.get_ref();
        let action = match kind {
            RawKind::Command => self.command(raw, scope).map(Action::Command),
            RawKind::Http => self.http(raw, scope).map(Action::Http),
            RawKind::Parallel => self.parallel(raw, scope).map(Action::Parallel),
        };
        let retry = if kind == RawKind::Parallel {
            if let Some(r) = &raw.retry {
                self.error(
                    &r.span(),
                    "`retry` is not allowed on a parallel step: each of its steps is retried on its own (set `retry` on them, or in [defaults])",
                );
            }
            RetryPolicy::disabled()
        } else {
            let level = self.level(raw.timeout.as_ref(), raw.retry.as_ref());
            match level.over(&self.defaults).policy() {
                Ok(p) => p,
                Err(e) => {
                    let span = raw.retry.as_ref().map_or(raw.name.span(), Spanned::span);
                    self.error(&span, format!("invalid retry settings: {e}"));
                    return None;
                }
            }
        };
        Some(Step {
            name,
            retry,
            action: action?,
        })
    }

    fn command(&mut self, raw: &RawStep, scope: &Scope<'_>) -> Option<CommandSpec> {
        let k = RawKind::Command;
        self.forbid(raw.method.as_ref(), "method", k);
        self.forbid(raw.url.as_ref(), "url", k);
        self.forbid(raw.headers.as_ref(), "headers", k);
        self.forbid(raw.body.as_ref(), "body", k);
        self.forbid(raw.max_workers.as_ref(), "max_workers", k);
        self.forbid(raw.fail_fast.as_ref(), "fail_fast", k);
        self.forbid(raw.steps.as_ref(), "steps", k);
        let program = match &raw.program {
            Some(p) if p.get_ref().is_empty() => {
                self.error(&p.span(), "`program` is empty");
                None
            }
            Some(p) => self.template(p, scope),
            None => {
                self.error(
                    &raw.name.span(),
                    format!("command step \"{}\" needs `program`", raw.name.get_ref()),
                );
                None
            }
        };
        let mut args = Vec::new();
        for arg in raw
            .args
            .as_ref()
            .map(Spanned::get_ref)
            .into_iter()
            .flatten()
        {
            args.extend(self.template(arg, scope));
        }
        let mut env = Vec::new();
        if let Some(vars) = &raw.env {
            for (key, value) in vars.get_ref() {
                if key.is_empty() || key.contains('=') || key.contains('\0') {
                    self.error(
                        &value.span(),
                        format!("environment variable name \"{key}\" is not valid"),
                    );
                    continue;
                }
                if let Some(t) = self.template(value, scope) {
                    env.push((key.clone(), t));
                }
            }
        }
        let cwd = raw.cwd.as_ref().and_then(|c| {
            let path = self.dir.join(c.get_ref());
            if path.is_dir() {
                Some(std::path::absolute(&path).unwrap_or(path))
            } else {
                self.error(
                    &c.span(),
                    format!(
                        "cwd \"{}\" is not a directory (looked for {})",
                        c.get_ref(),
                        path.display()
                    ),
                );
                None
            }
        });
        let stdin = raw.stdin.as_ref().and_then(|s| self.template(s, scope));
        let retryable_exit_codes = raw.retryable_exit_codes.as_ref().map(|codes| {
            if codes.get_ref().contains(&0) {
                self.error(
                    &codes.span(),
                    "exit code 0 is success: it cannot be in `retryable_exit_codes`",
                );
            }
            codes.get_ref().clone()
        });
        Some(CommandSpec {
            program: program?,
            args,
            env,
            cwd,
            stdin,
            retryable_exit_codes,
        })
    }

    fn http(&mut self, raw: &RawStep, scope: &Scope<'_>) -> Option<HttpSpec> {
        let k = RawKind::Http;
        self.forbid(raw.program.as_ref(), "program", k);
        self.forbid(raw.args.as_ref(), "args", k);
        self.forbid(raw.env.as_ref(), "env", k);
        self.forbid(raw.cwd.as_ref(), "cwd", k);
        self.forbid(raw.stdin.as_ref(), "stdin", k);
        self.forbid(raw.retryable_exit_codes.as_ref(), "retryable_exit_codes", k);
        self.forbid(raw.max_workers.as_ref(), "max_workers", k);
        self.forbid(raw.fail_fast.as_ref(), "fail_fast", k);
        self.forbid(raw.steps.as_ref(), "steps", k);
        let method = match &raw.method {
            Some(m) => {
                let upper = m.get_ref().to_ascii_uppercase();
                if upper.is_empty() || reqwest::Method::from_bytes(upper.as_bytes()).is_err() {
                    self.error(
                        &m.span(),
                        format!("\"{}\" is not an HTTP method", m.get_ref()),
                    );
                }
                upper
            }
            None => "GET".to_owned(),
        };
        let url = match &raw.url {
            Some(u) => self.template(u, scope).filter(|t| {
                if !t.is_literal() {
                    return true;
                }
                match reqwest::Url::parse(u.get_ref()) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => true,
                    Ok(url) => {
                        self.error(
                            &u.span(),
                            format!("url scheme \"{}\" is not http or https", url.scheme()),
                        );
                        false
                    }
                    Err(e) => {
                        self.error(&u.span(), format!("invalid url \"{}\": {e}", u.get_ref()));
                        false
                    }
                }
            }),
            None => {
                self.error(
                    &raw.name.span(),
                    format!("http step \"{}\" needs `url`", raw.name.get_ref()),
                );
                None
            }
        };
        let mut headers = Vec::new();
        if let Some(h) = &raw.headers {
            for (key, value) in h.get_ref() {
                if reqwest::header::HeaderName::from_bytes(key.as_bytes()).is_err() {
                    self.error(
                        &value.span(),
                        format!("\"{key}\" is not a valid header name"),
                    );
                    continue;
                }
                if let Some(t) = self.template(value, scope) {
                    headers.push((key.clone(), t));
                }
            }
        }
        let body = raw.body.as_ref().and_then(|b| self.template(b, scope));
        Some(HttpSpec {
            method,
            url: url?,
            headers,
            body,
        })
    }

    fn parallel(&mut self, raw: &RawStep, scope: &Scope<'_>) -> Option<ParallelSpec> {
        let k = RawKind::Parallel;
        if scope.in_parallel {
            self.error(
                &raw.kind.span(),
                "a parallel step cannot contain another parallel step",
            );
            return None;
        }
        self.forbid(raw.program.as_ref(), "program", k);
        self.forbid(raw.args.as_ref(), "args", k);
        self.forbid(raw.env.as_ref(), "env", k);
        self.forbid(raw.cwd.as_ref(), "cwd", k);
        self.forbid(raw.stdin.as_ref(), "stdin", k);
        self.forbid(raw.retryable_exit_codes.as_ref(), "retryable_exit_codes", k);
        self.forbid(raw.method.as_ref(), "method", k);
        self.forbid(raw.url.as_ref(), "url", k);
        self.forbid(raw.headers.as_ref(), "headers", k);
        self.forbid(raw.body.as_ref(), "body", k);
        let max_workers = match &raw.max_workers {
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if v >= 1 => v,
                _ => {
                    self.error(
                        &n.span(),
                        format!("max_workers must be at least 1, got {}", n.get_ref()),
                    );
                    1
                }
            },
            None => rh_agents::parallel::DEFAULT_MAX_WORKERS,
        };
        let fail_fast = raw.fail_fast.as_ref().is_some_and(|f| *f.get_ref());
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.positive(t, "timeout"));
        let children = match &raw.steps {
            Some(s) if !s.get_ref().is_empty() => s.get_ref(),
            Some(s) => {
                self.error(
                    &s.span(),
                    "a parallel step needs at least one step in `steps`",
                );
                return None;
            }
            None => {
                self.error(
                    &raw.name.span(),
                    format!(
                        "parallel step \"{}\" needs `steps` (a list of command or http steps)",
                        raw.name.get_ref()
                    ),
                );
                return None;
            }
        };
        let siblings: Vec<String> = children.iter().map(|c| c.name.get_ref().clone()).collect();
        let mut seen: Vec<&Spanned<String>> = Vec::new();
        let mut steps = Vec::new();
        for child in children {
            if let Some(first) = seen.iter().find(|s| s.get_ref() == child.name.get_ref()) {
                let at = self.src.pos(&first.span());
                self.error(
                    &child.name.span(),
                    format!(
                        "duplicate step name \"{}\" in parallel step \"{}\" (first defined at {at})",
                        child.name.get_ref(),
                        raw.name.get_ref()
                    ),
                );
                continue;
            }
            seen.push(&child.name);
            let child_scope = Scope {
                top_index: scope.top_index,
                top_name: scope.top_name,
                in_parallel: true,
                siblings: &siblings,
            };
            if let Some(step) = self.step(child, &child_scope) {
                steps.push(step);
            }
        }
        Some(ParallelSpec {
            max_workers,
            fail_fast,
            timeout,
            steps,
        })
    }

    fn template(&mut self, s: &Spanned<String>, scope: &Scope<'_>) -> Option<Template> {
        let span = s.span();
        let template = match Template::parse(s.get_ref()) {
            Ok(t) => t,
            Err(e) => {
                self.error(&span, format!("bad template: {}", e.message));
                return None;
            }
        };
        let mut ok = true;
        for r in template.refs() {
            if let Err(message) = self.check_ref(r, scope) {
                self.error(&span, format!("`{{{{ {r} }}}}`: {message}"));
                ok = false;
            }
        }
        ok.then_some(template)
    }

    fn check_ref(&self, r: &Ref, scope: &Scope<'_>) -> Result<(), String> {
        let step = r.step.as_str();
        if step == scope.top_name {
            return Err(if scope.in_parallel {
                format!("a step inside parallel step \"{step}\" cannot use its output: it is not finished yet")
            } else {
                format!("step \"{step}\" refers to itself")
            });
        }
        let Some(index) = self.top.iter().position(|t| t.name == step) else {
            if scope.siblings.iter().any(|s| s == step) {
                return Err(format!(
                    "\"{step}\" is in the same parallel step: steps of one parallel step run at the same time and cannot use each other's output"
                ));
            }
            return Err(format!("there is no step named \"{step}\""));
        };
        let top = &self.top[index];
        if index > scope.top_index {
            return Err(format!(
                "step \"{step}\" runs later (defined at {}): a template can only use the output of earlier steps",
                self.src.pos(&top.span)
            ));
        }
        let kind = match (top.kind, &r.child) {
            (RawKind::Parallel, None) => {
                let example = top.children.first().map_or("CHILD", |c| c.0.as_str());
                return Err(format!(
                    "\"{step}\" is a parallel step: name one of its steps, e.g. `steps.{step}.{example}.stdout`"
                ));
            }
            (RawKind::Parallel, Some(child)) => match top.children.iter().find(|c| &c.0 == child) {
                Some((_, kind)) => *kind,
                None => {
                    return Err(format!(
                        "parallel step \"{step}\" has no step named \"{child}\""
                    ))
                }
            },
            (kind, Some(_)) => {
                return Err(format!(
                    "\"{step}\" is a {} step: it has no steps of its own",
                    kind_name(kind)
                ))
            }
            (kind, None) => kind,
        };
        let fields = fields_of(kind);
        if fields.contains(&r.field) {
            Ok(())
        } else {
            let names: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
            Err(format!(
                "a {} step has no field `{}` (its fields: {})",
                kind_name(kind),
                r.field,
                names.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        parse(text, Path::new("p.toml")).unwrap_or_else(|d| panic!("{d:?}"))
    }

    #[test]
    fn step_retry_settings_fall_back_field_by_field_to_defaults() {
        let p = pipeline(
            r#"name = "x"
[defaults]
timeout = "5s"
retry = { strategy = "linear", base = "200ms", max_attempts = 5, jitter = false }
[[steps]]
name = "a"
kind = "command"
program = "true"
retry = { max_attempts = 2, jitter = 0.1 }
[[steps]]
name = "b"
kind = "command"
program = "true"
retry = false
timeout = "1s"
"#,
        );
        let a = &p.steps[0].retry;
        assert_eq!(a.backoff(), Backoff::Linear);
        assert_eq!(a.initial_delay(), Duration::from_millis(200));
        assert_eq!(a.max_attempts(), 2);
        assert!((a.jitter() - 0.1).abs() < f64::EPSILON);
        assert_eq!(a.attempt_timeout(), Some(Duration::from_secs(5)));
        let b = &p.steps[1].retry;
        assert!(!b.is_enabled());
        assert_eq!(b.max_attempts(), 1);
        assert_eq!(b.attempt_timeout(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn without_settings_the_library_defaults_apply() {
        let p = pipeline(
            "name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"command\"\nprogram = \"true\"\n",
        );
        let d = RetryPolicy::default();
        let a = &p.steps[0].retry;
        assert_eq!(a.max_attempts(), d.max_attempts());
        assert_eq!(a.initial_delay(), d.initial_delay());
        assert_eq!(a.max_delay(), d.max_delay());
        assert_eq!(a.attempt_timeout(), None);
    }

    #[test]
    fn children_of_parallel_steps_may_use_earlier_steps_only() {
        let err = parse(
            r#"name = "x"
[[steps]]
name = "a"
kind = "command"
program = "true"
[[steps]]
name = "fan"
kind = "parallel"
steps = [
  { name = "b", kind = "command", program = "echo", args = ["{{ steps.a.stdout }}"] },
  { name = "c", kind = "command", program = "echo", args = ["{{ steps.b.stdout }}"] },
  { name = "d", kind = "command", program = "echo", args = ["{{ steps.fan.b.stdout }}"] },
]
"#,
            Path::new("p.toml"),
        )
        .unwrap_err();
        let messages: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("p.toml:11:"), "{messages:?}");
        assert!(messages[0].contains("same parallel step"), "{messages:?}");
        assert!(
            messages[1].contains("cannot use its output"),
            "{messages:?}"
        );
    }
}
