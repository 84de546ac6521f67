//! Template references (`{{ steps.NAME.FIELD }}`): each one must name an earlier step (or a
//! step of an earlier parallel step) and a field that kind of step has.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::{kind_name, Validator};
use crate::pipeline::raw::RawKind;
use crate::pipeline::template::{Field, Ref, Template};

/// A top-level step as templates see it.
pub(super) struct TopInfo {
    pub(super) span: Range<usize>,
    pub(super) kind: RawKind,
    /// The name of its first child, for examples in messages.
    pub(super) first_child: Option<String>,
    /// Its children's kinds by name.
    pub(super) children: HashMap<String, RawKind>,
}

/// Where a template is: which top-level step (by index), and for a child its parent's
/// siblings.
pub(super) struct Scope<'s> {
    pub(super) top_index: usize,
    pub(super) top_name: &'s str,
    pub(super) in_parallel: bool,
    pub(super) siblings: &'s HashSet<&'s str>,
}

/// The fields a step of `kind` gives to later templates.
fn fields_of(kind: RawKind) -> &'static [Field] {
    match kind {
        RawKind::Command => &[Field::Stdout, Field::Stderr, Field::ExitCode],
        RawKind::Http => &[Field::Status, Field::Body],
        RawKind::Parallel => &[],
    }
}

impl Validator<'_> {
    /// The template in `s`, if it parses and every reference in it is valid (each problem is
    /// reported).
    pub(super) fn template(&mut self, s: &Spanned<String>, scope: &Scope<'_>) -> Option<Template> {
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
        let Some(&index) = self.top_index.get(step) else {
            if scope.siblings.contains(step) {
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
                let example = top.first_child.as_deref().unwrap_or("CHILD");
                return Err(format!(
                    "\"{step}\" is a parallel step: name one of its steps, e.g. `steps.{step}.{example}.stdout`"
                ));
            }
            (RawKind::Parallel, Some(child)) => match top.children.get(child) {
                Some(kind) => *kind,
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
    use std::path::Path;

    use crate::pipeline::parse;

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
