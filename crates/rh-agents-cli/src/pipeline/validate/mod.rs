//! Parsing and validation: the TOML file becomes a [`Pipeline`] or a list of
//! [`Diagnostic`]s, each at a line and column. Nothing runs before this has passed.
//!
//! This module checks the pipeline and each kind of step; `retry` checks and merges the retry
//! settings, `refs` the templates' references to earlier steps.

mod refs;
mod retry;

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::Path;

use rh_agents::RetryPolicy;
use toml::Spanned;

use super::position::{Diagnostic, Source};
use super::raw::{RawKind, RawPipeline, RawStep};
use super::read::read;
use super::spec::{Action, CommandSpec, HttpSpec, ParallelSpec, Pipeline, Step};
use super::template::{is_valid_name, Template};
use refs::{Scope, TopInfo};
use retry::{strategy_name, Level};

/// Parses and validates the text of a pipeline file. `file` names the file in diagnostics;
/// relative `cwd`s are resolved against its directory.
///
/// # Errors
///
/// Every problem found, in file order: a TOML syntax error (the parser stops at the first
/// one); else every value of the wrong type, unknown field and missing field; else every
/// other problem (names, references, settings).
pub fn parse(text: &str, file: &Path) -> Result<Pipeline, Vec<Diagnostic>> {
    let shown = file.display().to_string();
    let src = Source::new(&shown, text);
    let raw: RawPipeline = match read(&src) {
        Ok(raw) => raw,
        Err(mut diags) => {
            diags.sort_by_key(|d| (d.line, d.column));
            return Err(diags);
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
        top_index: HashMap::new(),
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

struct Validator<'a> {
    src: Source<'a>,
    dir: &'a Path,
    diags: Vec<Diagnostic>,
    /// The top-level steps with distinct names, in file order.
    top: Vec<TopInfo>,
    /// Each name in `top` → its index there, so that duplicates and references are found
    /// without a search (a file may have tens of thousands of steps).
    top_index: HashMap<String, usize>,
    defaults: Level,
}

fn kind_name(kind: RawKind) -> &'static str {
    match kind {
        RawKind::Command => "command",
        RawKind::Http => "http",
        RawKind::Parallel => "parallel",
    }
}

/// The fields that belong to one kind of step, each with its kind and where it is written
/// (`None` when it is not); `name`, `kind`, `timeout` and `retry` belong to every kind.
fn kind_fields(raw: &RawStep) -> [(RawKind, &'static str, Option<Range<usize>>); 13] {
    use RawKind::{Command, Http, Parallel};
    fn at<T>(field: Option<&Spanned<T>>) -> Option<Range<usize>> {
        field.map(Spanned::span)
    }
    [
        (Command, "program", at(raw.program.as_ref())),
        (Command, "args", at(raw.args.as_ref())),
        (Command, "env", at(raw.env.as_ref())),
        (Command, "cwd", at(raw.cwd.as_ref())),
        (Command, "stdin", at(raw.stdin.as_ref())),
        (
            Command,
            "retryable_exit_codes",
            at(raw.retryable_exit_codes.as_ref()),
        ),
        (Http, "method", at(raw.method.as_ref())),
        (Http, "url", at(raw.url.as_ref())),
        (Http, "headers", at(raw.headers.as_ref())),
        (Http, "body", at(raw.body.as_ref())),
        (Parallel, "max_workers", at(raw.max_workers.as_ref())),
        (Parallel, "fail_fast", at(raw.fail_fast.as_ref())),
        (Parallel, "steps", at(raw.steps.as_ref())),
    ]
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
            if let Some(&first) = self.top_index.get(name) {
                let at = self.src.pos(&self.top[first].span);
                self.error(
                    &step.name.span(),
                    format!("duplicate step name \"{name}\" (first defined at {at})"),
                );
                continue;
            }
            let children = step.steps.as_ref().map(Spanned::get_ref);
            let children = children.map(Vec::as_slice).unwrap_or_default();
            self.top_index.insert(name.clone(), self.top.len());
            self.top.push(TopInfo {
                span: step.name.span(),
                kind: *step.kind.get_ref(),
                first_child: children.first().map(|c| c.name.get_ref().clone()),
                // The first of each name: a duplicate child is reported by `parallel`.
                children: children
                    .iter()
                    .rev()
                    .map(|c| (c.name.get_ref().clone(), *c.kind.get_ref()))
                    .collect(),
            });
        }
        let names: Vec<String> = raw.steps.iter().map(|s| s.name.get_ref().clone()).collect();
        let no_siblings = HashSet::new();
        let mut steps = Vec::new();
        for (index, step) in raw.steps.iter().enumerate() {
            let top_name = names[index].clone();
            let scope = Scope {
                top_index: index,
                top_name: &top_name,
                in_parallel: false,
                siblings: &no_siblings,
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

    /// Reports each field of another kind written on a step of `kind`.
    fn forbid_other_kinds(&mut self, raw: &RawStep, kind: RawKind) {
        let written = kind_fields(raw)
            .into_iter()
            .filter(|(owner, _, _)| *owner != kind)
            .filter_map(|(_, name, span)| Some((name, span?)));
        for (name, span) in written {
            let kind = kind_name(kind);
            self.error(&span, format!("`{name}` is not a field of a {kind} step"));
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
            let merged = level.over(&self.defaults);
            if let Some(strategy) = merged.own_multiplier_misapplied(&level) {
                let span = raw.retry.as_ref().map_or(raw.name.span(), Spanned::span);
                self.error(
                    &span,
                    format!(
                        "`multiplier` applies only to strategy = \"exponential\", and this \
                         step's strategy (from [defaults]) is \"{}\"",
                        strategy_name(strategy)
                    ),
                );
            }
            match merged.policy() {
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

    /// A template that becomes a program name, argument or environment value: the system
    /// cannot pass a NUL byte in one, so a literal one is refused here, before anything runs.
    fn argument(&mut self, s: &Spanned<String>, scope: &Scope<'_>) -> Option<Template> {
        if s.get_ref().contains('\0') {
            self.error(
                &s.span(),
                "contains a NUL byte, which a program name, argument or environment value \
                 cannot hold",
            );
            return None;
        }
        self.template(s, scope)
    }

    fn command(&mut self, raw: &RawStep, scope: &Scope<'_>) -> Option<CommandSpec> {
        self.forbid_other_kinds(raw, RawKind::Command);
        let program = match &raw.program {
            Some(p) if p.get_ref().is_empty() => {
                self.error(&p.span(), "`program` is empty");
                None
            }
            Some(p) => self.argument(p, scope),
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
            args.extend(self.argument(arg, scope));
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
                if let Some(t) = self.argument(value, scope) {
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
            if let Some(bad) = codes.get_ref().iter().find(|c| !(1..=255).contains(*c)) {
                self.error(
                    &codes.span(),
                    format!("exit code {bad} cannot happen: exit codes are 1 to 255"),
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
        self.forbid_other_kinds(raw, RawKind::Http);
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
                if !value.get_ref().contains("{{")
                    && reqwest::header::HeaderValue::from_str(value.get_ref()).is_err()
                {
                    self.error(
                        &value.span(),
                        format!(
                            "the value of header \"{key}\" is not valid (control characters such \
                             as line breaks are not allowed)"
                        ),
                    );
                    continue;
                }
                let reported = self.diags.len();
                let template = self.template(value, scope);
                // Several headers may sit on one line: each problem names its header.
                for d in &mut self.diags[reported..] {
                    d.message = format!("header \"{key}\": {}", d.message);
                }
                if let Some(t) = template {
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
        if scope.in_parallel {
            self.error(
                &raw.kind.span(),
                "a parallel step cannot contain another parallel step",
            );
            return None;
        }
        self.forbid_other_kinds(raw, RawKind::Parallel);
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
        let siblings: HashSet<&str> = children.iter().map(|c| c.name.get_ref().as_str()).collect();
        let mut seen: HashMap<&str, Range<usize>> = HashMap::new();
        let mut steps = Vec::new();
        for child in children {
            if let Some(first) = seen.get(child.name.get_ref().as_str()) {
                let at = self.src.pos(first);
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
            seen.insert(child.name.get_ref(), child.name.span());
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
}
