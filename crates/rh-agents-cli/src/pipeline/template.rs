//! Templates: `{{ steps.NAME.FIELD }}` and `{{ steps.PARALLEL.CHILD.FIELD }}` in step strings,
//! replaced by an earlier step's output when the step runs.
//!
//! Parsing is syntax only; whether the named steps exist, run earlier and have that field is
//! checked by validation, which knows the whole file. Rendering reads the outputs *recorded*
//! for earlier steps (JSON values), so results replayed from a store render the same way.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// The outputs of the steps run so far: step name → the JSON value its call returned (for a
/// parallel step, an object of child name → child output).
pub type Outputs = BTreeMap<String, Value>;

/// A field of a step's output that a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A command's standard output (one trailing newline trimmed).
    Stdout,
    /// A command's standard error (one trailing newline trimmed).
    Stderr,
    /// A command's exit code.
    ExitCode,
    /// An HTTP response's status code.
    Status,
    /// An HTTP response's body (one trailing newline trimmed).
    Body,
}

impl Field {
    /// Every field, in the order error messages list them.
    pub const ALL: [Field; 5] = [
        Field::Stdout,
        Field::Stderr,
        Field::ExitCode,
        Field::Status,
        Field::Body,
    ];

    /// The name in templates and in the output JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Stdout => "stdout",
            Field::Stderr => "stderr",
            Field::ExitCode => "exit_code",
            Field::Status => "status",
            Field::Body => "body",
        }
    }

    fn parse(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reference to an earlier step's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The top-level step.
    pub step: String,
    /// The child, when `step` is a parallel step.
    pub child: Option<String>,
    /// Which field.
    pub field: Field,
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "steps.{}", self.step)?;
        if let Some(child) = &self.child {
            write!(f, ".{child}")?;
        }
        write!(f, ".{}", self.field)
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text copied as is.
    Text(String),
    /// A value substituted when the step runs.
    Ref(Ref),
}

/// A parsed template string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// A template that does not parse: what is wrong and the byte offset in the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset in the template string.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether `name` may be a step name (and so appear in a template): letters, digits, `_`, `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Template {
    /// Parses `text`. `{{` always opens a reference (there is no escape); a `}}` outside one
    /// is plain text.
    ///
    /// # Errors
    ///
    /// An unclosed `{{`, or a reference that is not `steps.NAME.FIELD` /
    /// `steps.NAME.CHILD.FIELD` with a known field.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut base = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let inner_start = open + 2;
            let Some(close) = rest[inner_start..].find("}}") else {
                return Err(TemplateError {
                    offset: base + open,
                    message: "`{{` is never closed with `}}`".to_owned(),
                });
            };
            let inner = &rest[inner_start..inner_start + close];
            let reference = parse_ref(inner.trim()).map_err(|message| TemplateError {
                offset: base + open,
                message,
            })?;
            parts.push(Part::Ref(reference));
            let consumed = inner_start + close + 2;
            base += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    /// A template of plain text, with no references.
    pub fn literal(text: impl Into<String>) -> Template {
        Template {
            parts: vec![Part::Text(text.into())],
        }
    }

    /// The references in this template.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    /// Whether the template has no references.
    pub fn is_literal(&self) -> bool {
        self.refs().next().is_none()
    }

    /// The text with every reference replaced by the recorded output. Strings lose one
    /// trailing newline (`\n` or `\r\n`); numbers are written in decimal.
    ///
    /// # Errors
    ///
    /// When a referenced output was not recorded (validation makes this unreachable for
    /// outputs of this run; a replayed record of another shape could still miss a field).
    pub fn render(&self, outputs: &Outputs) -> Result<String, String> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Ref(r) => {
                    let mut value = outputs.get(&r.step);
                    if let Some(child) = &r.child {
                        value = value.and_then(|v| v.get(child));
                    }
                    let value = value
                        .and_then(|v| v.get(r.field.as_str()))
                        .ok_or_else(|| format!("no recorded output for `{{{{ {r} }}}}`"))?;
                    match value {
                        Value::String(s) => text.push_str(trim_newline(s)),
                        Value::Null => {}
                        other => text.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(text)
    }
}

/// `s` without one trailing `\n` or `\r\n`.
pub fn trim_newline(s: &str) -> &str {
    s.strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(s)
}

fn parse_ref(inner: &str) -> Result<Ref, String> {
    let shape = "expected `steps.NAME.FIELD` or `steps.PARALLEL_STEP.CHILD.FIELD`";
    let segments: Vec<&str> = inner.split('.').map(str::trim).collect();
    let (step, child, field) = match segments.as_slice() {
        ["steps", step, field] => (*step, None, *field),
        ["steps", step, child, field] => (*step, Some(*child), *field),
        _ => return Err(format!("`{{{{ {inner} }}}}`: {shape}")),
    };
    for name in std::iter::once(step).chain(child) {
        if !is_valid_name(name) {
            return Err(format!(
                "`{{{{ {inner} }}}}`: `{name}` is not a step name (letters, digits, `_` and `-`); {shape}"
            ));
        }
    }
    let field = Field::parse(field).ok_or_else(|| {
        let known: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
        format!(
            "`{{{{ {inner} }}}}`: unknown field `{field}` (known: {})",
            known.join(", ")
        )
    })?;
    Ok(Ref {
        step: step.to_owned(),
        child: child.map(str::to_owned),
        field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(step: &str, child: Option<&str>, field: Field) -> Part {
        Part::Ref(Ref {
            step: step.into(),
            child: child.map(Into::into),
            field,
        })
    }

    #[test]
    fn text_and_references_parse_with_or_without_spaces() {
        let t = Template::parse("id={{ steps.fetch.stdout }}&c={{steps.fan.a.exit_code}}").unwrap();
        assert_eq!(
            t.parts,
            [
                Part::Text("id=".into()),
                r("fetch", None, Field::Stdout),
                Part::Text("&c=".into()),
                r("fan", Some("a"), Field::ExitCode),
            ]
        );
        assert!(Template::parse("plain }} text").unwrap().is_literal());
        assert_eq!(Template::parse("").unwrap().parts, []);
    }

    #[test]
    fn malformed_references_are_errors_with_offsets() {
        let e = Template::parse("ab {{ steps.x.stdout").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("never closed"), "{}", e.message);
        let e = Template::parse("{{ steps.x.stdout }} {{ step.x.stdout }}").unwrap_err();
        assert_eq!(e.offset, 21);
        assert!(
            e.message.contains("expected `steps.NAME.FIELD`"),
            "{}",
            e.message
        );
        let e = Template::parse("{{ steps.x.colour }}").unwrap_err();
        assert!(
            e.message.contains("unknown field `colour`"),
            "{}",
            e.message
        );
        let e = Template::parse("{{ steps.a b.stdout }}").unwrap_err();
        assert!(
            e.message.contains("`a b` is not a step name"),
            "{}",
            e.message
        );
        assert!(Template::parse("{{ steps..stdout }}").is_err());
        assert!(Template::parse("{{ steps.a.b.c.stdout }}").is_err());
    }

    #[test]
    fn rendering_trims_one_newline_and_writes_numbers() {
        let mut outputs = Outputs::new();
        outputs.insert(
            "fetch".into(),
            json!({"stdout": "hi\n\n", "stderr": "warn\r\n", "exit_code": 0}),
        );
        outputs.insert("fan".into(), json!({"a": {"status": 200, "body": "ok\n"}}));
        let t = Template::parse(
            "[{{ steps.fetch.stdout }}|{{ steps.fetch.stderr }}|{{ steps.fetch.exit_code }}|{{ steps.fan.a.status }}|{{ steps.fan.a.body }}]",
        )
        .unwrap();
        assert_eq!(t.render(&outputs).unwrap(), "[hi\n|warn|0|200|ok]");
        let missing = Template::parse("{{ steps.gone.stdout }}").unwrap();
        assert!(missing
            .render(&outputs)
            .unwrap_err()
            .contains("steps.gone.stdout"));
    }
}
