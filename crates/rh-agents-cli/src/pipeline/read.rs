//! Reading the TOML of a pipeline file into the raw model ([`super::raw`]), table by table and
//! field by field, so that every type error, unknown field and missing field in the file is
//! reported where it is written: deserializing the whole file with serde would stop at the
//! first one.
//!
//! The document is parsed once with `toml_edit` (which keeps every key's and value's span);
//! each value is then deserialized on its own with the same deserializer `toml` uses, so the
//! messages are the ones serde gives ("invalid type: integer `5`, expected a string").

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use toml::Spanned;
use toml_edit::{ImDocument, Item, TableLike, Value};

use super::position::{Diagnostic, Source};
use super::raw::{
    RawDefaults, RawPipeline, RawRetry, RawStep, RetryTable, DEFAULTS_FIELDS, PIPELINE_FIELDS,
    RETRY_FIELDS, STEP_FIELDS,
};

/// Reads the text of a pipeline file.
///
/// # Errors
///
/// A syntax error (the parser stops at the first), or every type error, unknown field and
/// missing field.
pub(crate) fn read(src: &Source<'_>) -> Result<RawPipeline, Vec<Diagnostic>> {
    let doc = match ImDocument::parse(src.text) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            return Err(vec![src.at(&span, one_line(e.message()))]);
        }
    };
    let mut reader = Reader {
        src,
        diags: Vec::new(),
    };
    let pipeline = reader.pipeline(doc.as_table(), 0..0);
    match pipeline {
        Some(pipeline) if reader.diags.is_empty() => Ok(pipeline),
        _ => Err(reader.diags),
    }
}

/// A parser's message on one line.
fn one_line(message: &str) -> String {
    message.trim_end().replace('\n', "; ")
}

/// Reports as it reads. A table with any error gives `None`, but every field of it is still
/// read, so that each error is reported.
struct Reader<'s> {
    src: &'s Source<'s>,
    diags: Vec<Diagnostic>,
}

/// One field of a table: its name, value, and where it is written (the value, or else the
/// key, or else the table).
struct Field<'t> {
    name: &'t str,
    item: &'t Item,
    at: Range<usize>,
}

/// The fields of `table` in file order, each with its position.
fn fields<'t>(table: &'t dyn TableLike, table_at: &Range<usize>) -> Vec<Field<'t>> {
    table
        .iter()
        .map(|(name, item)| {
            let at = item
                .span()
                .or_else(|| table.key(name).and_then(toml_edit::Key::span))
                .unwrap_or_else(|| table_at.clone());
            Field { name, item, at }
        })
        .collect()
}

/// The value `item` as serde sees it (a `[section]` becomes an inline table).
fn value_of(item: &Item) -> Option<Value> {
    item.clone().into_value().ok()
}

/// A visitor that accepts nothing: deserializing with it gives serde's "invalid type: ...,
/// expected ..." for the value.
struct Expecting(&'static str);

impl Visitor<'_> for Expecting {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Reader<'_> {
    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let d = self.src.at(span, message);
        self.diags.push(d);
    }

    fn serde_error(&mut self, e: &toml_edit::de::Error, fallback: &Range<usize>) {
        let span = e.span().unwrap_or_else(|| fallback.clone());
        self.error(&span, one_line(e.message()));
    }

    /// Reports that `field` is not a table (nor whatever `expected` says).
    fn invalid_type(&mut self, field: &Field<'_>, expected: &'static str) {
        let Some(value) = value_of(field.item) else {
            return self.error(&field.at, format!("expected {expected}"));
        };
        if let Err(e) = value
            .into_deserializer()
            .deserialize_any(Expecting(expected))
        {
            self.serde_error(&e, &field.at);
        }
    }

    /// Reports a field the table does not have, with serde's message.
    fn unknown(&mut self, table: &dyn TableLike, field: &Field<'_>, known: &'static [&str]) {
        let at = table
            .key(field.name)
            .and_then(toml_edit::Key::span)
            .unwrap_or_else(|| field.at.clone());
        let e = <de::value::Error as de::Error>::unknown_field(field.name, known);
        self.error(&at, e.to_string());
    }

    /// Reports a required field that `table` (at `at`) lacks.
    fn require(&mut self, table: &dyn TableLike, name: &str, at: &Range<usize>) {
        if !table.contains_key(name) {
            self.error(at, format!("missing field `{name}`"));
        }
    }

    /// The value of `field`, deserialized on its own.
    fn value<T: DeserializeOwned>(&mut self, field: &Field<'_>) -> Option<Spanned<T>> {
        let Some(value) = value_of(field.item) else {
            self.error(&field.at, format!("`{}` has no value", field.name));
            return None;
        };
        match T::deserialize(value.into_deserializer()) {
            Ok(v) => Some(Spanned::new(field.at.clone(), v)),
            Err(e) => {
                self.serde_error(&e, &field.at);
                None
            }
        }
    }

    /// An array, element by element (each wrong element is reported).
    fn list<T: DeserializeOwned>(&mut self, field: &Field<'_>) -> Option<Spanned<Vec<T>>> {
        let Some(array) = field.item.as_array() else {
            self.invalid_type(field, "a sequence");
            return None;
        };
        let mut values = Some(Vec::with_capacity(array.len()));
        for element in array.iter() {
            let item = Item::Value(element.clone());
            let at = element.span().unwrap_or_else(|| field.at.clone());
            let element = Field {
                name: field.name,
                item: &item,
                at,
            };
            let value = self.value::<T>(&element).map(Spanned::into_inner);
            values = values.zip(value).map(|(mut values, value)| {
                values.push(value);
                values
            });
        }
        values.map(|values| Spanned::new(field.at.clone(), values))
    }

    /// A table of strings, entry by entry (each wrong value is reported).
    fn map(&mut self, field: &Field<'_>) -> Option<Spanned<BTreeMap<String, Spanned<String>>>> {
        let Some(table) = field.item.as_table_like() else {
            self.invalid_type(field, "a map");
            return None;
        };
        let mut entries = Some(BTreeMap::new());
        for f in fields(table, &field.at) {
            let value = self.value::<String>(&f);
            entries = entries.zip(value).map(|(mut entries, value)| {
                entries.insert(f.name.to_owned(), value);
                entries
            });
        }
        entries.map(|entries| Spanned::new(field.at.clone(), entries))
    }

    /// The whole file.
    fn pipeline(&mut self, table: &dyn TableLike, at: Range<usize>) -> Option<RawPipeline> {
        let mut name = None;
        let mut defaults = None;
        let mut steps = Some(Vec::new());
        for field in fields(table, &at) {
            match field.name {
                "name" => name = self.value(&field),
                "defaults" => defaults = self.defaults(&field),
                "steps" => steps = self.steps(&field).map(Spanned::into_inner),
                _ => self.unknown(table, &field, PIPELINE_FIELDS),
            }
        }
        self.require(table, "name", &at);
        Some(RawPipeline {
            name: name?,
            defaults,
            steps: steps?,
        })
    }

    /// `[defaults]`.
    fn defaults(&mut self, field: &Field<'_>) -> Option<RawDefaults> {
        let Some(table) = field.item.as_table_like() else {
            self.invalid_type(field, "a table of defaults (`timeout`, `retry`)");
            return None;
        };
        let mut defaults = RawDefaults::default();
        let mut ok = true;
        for f in fields(table, &field.at) {
            match f.name {
                "timeout" => {
                    defaults.timeout = self.value(&f);
                    ok &= defaults.timeout.is_some();
                }
                "retry" => {
                    defaults.retry = self.retry(&f);
                    ok &= defaults.retry.is_some();
                }
                _ => {
                    self.unknown(table, &f, DEFAULTS_FIELDS);
                    ok = false;
                }
            }
        }
        ok.then_some(defaults)
    }

    /// A list of steps: `[[steps]]` tables or an array of inline tables.
    fn steps(&mut self, field: &Field<'_>) -> Option<Spanned<Vec<RawStep>>> {
        let mut tables: Vec<(Range<usize>, &dyn TableLike)> = Vec::new();
        match field.item {
            Item::ArrayOfTables(array) => {
                for table in array.iter() {
                    let at = table.span().unwrap_or_else(|| field.at.clone());
                    tables.push((at, table));
                }
            }
            Item::Value(Value::Array(array)) => {
                let mut ok = true;
                for value in array.iter() {
                    let at = value.span().unwrap_or_else(|| field.at.clone());
                    match value.as_inline_table() {
                        Some(table) => tables.push((at, table)),
                        None => {
                            let item = Item::Value(value.clone());
                            let element = Field {
                                name: field.name,
                                item: &item,
                                at,
                            };
                            self.invalid_type(&element, "a table of step settings");
                            ok = false;
                        }
                    }
                }
                if !ok {
                    return None;
                }
            }
            _ => {
                self.invalid_type(field, "a sequence");
                return None;
            }
        }
        let mut steps = Some(Vec::with_capacity(tables.len()));
        for (at, table) in tables {
            let step = self.step(table, at);
            steps = steps.zip(step).map(|(mut steps, step)| {
                steps.push(step);
                steps
            });
        }
        steps.map(|steps| Spanned::new(field.at.clone(), steps))
    }

    /// One step.
    fn step(&mut self, table: &dyn TableLike, at: Range<usize>) -> Option<RawStep> {
        let (mut name, mut kind) = (None, None);
        let (mut program, mut args, mut env, mut cwd, mut stdin, mut codes) =
            (None, None, None, None, None, None);
        let (mut method, mut url, mut headers, mut body) = (None, None, None, None);
        let (mut max_workers, mut fail_fast, mut steps) = (None, None, None);
        let (mut timeout, mut retry) = (None, None);
        let mut ok = true;
        for f in fields(table, &at) {
            // Each arm reads its field and notes whether it could.
            ok &= match f.name {
                "name" => set(&mut name, self.value(&f)),
                "kind" => set(&mut kind, self.value(&f)),
                "program" => set(&mut program, self.value(&f)),
                "args" => set(&mut args, self.list(&f)),
                "env" => set(&mut env, self.map(&f)),
                "cwd" => set(&mut cwd, self.value(&f)),
                "stdin" => set(&mut stdin, self.value(&f)),
                "retryable_exit_codes" => set(&mut codes, self.list(&f)),
                "method" => set(&mut method, self.value(&f)),
                "url" => set(&mut url, self.value(&f)),
                "headers" => set(&mut headers, self.map(&f)),
                "body" => set(&mut body, self.value(&f)),
                "max_workers" => set(&mut max_workers, self.value(&f)),
                "fail_fast" => set(&mut fail_fast, self.value(&f)),
                "steps" => set(&mut steps, self.steps(&f)),
                "timeout" => set(&mut timeout, self.value(&f)),
                "retry" => set(&mut retry, self.retry(&f)),
                _ => {
                    self.unknown(table, &f, STEP_FIELDS);
                    false
                }
            };
        }
        self.require(table, "name", &at);
        self.require(table, "kind", &at);
        if !ok {
            return None;
        }
        Some(RawStep {
            name: name?,
            kind: kind?,
            program,
            args,
            env,
            cwd,
            stdin,
            retryable_exit_codes: codes,
            method,
            url,
            headers,
            body,
            max_workers,
            fail_fast,
            steps,
            timeout,
            retry,
        })
    }

    /// `retry = true | false | { ... }`.
    fn retry(&mut self, field: &Field<'_>) -> Option<Spanned<RawRetry>> {
        let Some(table) = field.item.as_table_like() else {
            return self.value(field);
        };
        let mut retry = RetryTable::default();
        let mut ok = true;
        for f in fields(table, &field.at) {
            ok &= match f.name {
                "strategy" => set(&mut retry.strategy, self.value(&f)),
                "base" | "delay" if retry.base.is_some() => {
                    let at = table.key(f.name).and_then(toml_edit::Key::span);
                    self.error(&at.unwrap_or(f.at), "duplicate field `base`");
                    false
                }
                "base" | "delay" => set(&mut retry.base, self.value(&f)),
                "multiplier" => set(&mut retry.multiplier, self.value(&f)),
                "max_attempts" => set(&mut retry.max_attempts, self.value(&f)),
                "max_delay" => set(&mut retry.max_delay, self.value(&f)),
                "jitter" => set(&mut retry.jitter, self.value(&f)),
                "retry_timeout" => set(&mut retry.retry_timeout, self.value(&f)),
                "attempt_timeout" => set(&mut retry.attempt_timeout, self.value(&f)),
                _ => {
                    self.unknown(table, &f, RETRY_FIELDS);
                    false
                }
            };
        }
        ok.then(|| Spanned::new(field.at.clone(), RawRetry::Table(Box::new(retry))))
    }
}

/// Stores a field that was read; `false` when it could not be.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    let read = value.is_some();
    *slot = value;
    read
}
