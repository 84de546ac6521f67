//! `rh-agents runs` and `rh-agents show`: reading the store without writing to it. The store is
//! opened read-only (so a store the user may only read works, and nothing in it changes), and
//! readers never wait on a running writer (the store is in WAL mode).
//!
//! Text that comes from the store (run ids, pipeline names, tags) is printed with its control
//! characters escaped: an imported run could carry escape sequences. The JSON outputs are
//! exact (JSON escapes control characters itself).
//!
//! The `runs` table is laid out by hand: seven left-aligned columns two spaces apart, widths
//! from the widest cell. A table crate would add dependencies (and its own wrapping, borders
//! and truncation rules) for what is a dozen lines here.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rh_agents::observe::escape::escape_control;
use rh_agents::observe::printer::Printer;
use rh_agents::observe::summary::RunSummary;
use rh_agents::store::{ListFilter, RunInfo, RunStatus, Snapshot, StateStore};
use rh_agents::{Event, Subscriber};

use super::StoreArg;
use crate::cli::{RunsArgs, ShowArgs};
use crate::exit::Exit;
use crate::output::{json, line, To};

/// The status shown for a run marked running that no process writes: it was killed or
/// crashed.
const ORPHANED: &str = "running (no process: resume it)";

/// `rh-agents runs`.
///
/// A run whose row cannot be read is left out of the list and named on stderr, and `runs`
/// then exits with the code of a store failure (after listing the others), so that a script
/// notices.
pub fn runs(store: &StoreArg, args: &RunsArgs) -> Exit {
    if args.limit == Some(0) {
        line(
            To::Stderr,
            "error: --limit 0 would list no runs; give 1 or more, or leave --limit out to list \
             them all",
        );
        return Exit::BadInput;
    }
    if !store.exists() {
        // Nothing has run here yet: an empty list, and no store made for it.
        if args.json {
            line(To::Stdout, "[]");
        } else {
            line(
                To::Stdout,
                &format!(
                    "no runs (there is no store at {} yet)",
                    escape_control(&store.path().display().to_string())
                ),
            );
        }
        return Exit::Success;
    }
    let store_handle = match store.open_read_only() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let mut filter = ListFilter::new();
    for tag in &args.tags {
        filter = filter.tag(tag.clone());
    }
    if let Some(status) = args.status {
        filter = filter.status(status);
    }
    if let Some(pipeline) = &args.pipeline {
        filter = filter.pipeline(pipeline.clone());
    }
    if let Some(limit) = args.limit {
        filter = filter.limit(limit);
    }
    let rows = match store_handle.list_rows(&filter) {
        Ok(rows) => rows,
        Err(e) => return store.fail(&e),
    };
    let mut runs = Vec::with_capacity(rows.len());
    let mut unreadable = Vec::new();
    for row in rows {
        match row {
            Ok(run) => runs.push(run),
            Err(e) => unreadable.push(e),
        }
    }
    if args.json {
        json(
            To::Stdout,
            &serde_json::to_string_pretty(&runs).unwrap_or_default(),
        );
    } else if runs.is_empty() {
        if unreadable.is_empty() {
            line(To::Stdout, "no runs");
        }
    } else {
        let rows: Vec<[String; 7]> = runs
            .iter()
            .map(|run| row(store_handle.as_ref(), run))
            .collect();
        for text in table(&rows) {
            line(To::Stdout, &text);
        }
    }
    // Each unreadable run is reported (error lines on stderr); the exit code is that of the
    // last, all being store failures of one kind.
    let mut exit = Exit::Success;
    for e in &unreadable {
        exit = super::fail(e);
    }
    if !unreadable.is_empty() {
        line(
            To::Stderr,
            &format!(
                "{} run{} left out of the list: {}",
                unreadable.len(),
                if unreadable.len() == 1 { "" } else { "s" },
                "its row in the store cannot be read (delete the run, or restore the store \
                 from a backup)"
            ),
        );
    }
    exit
}

/// The lines of the `runs` table: a header and one line per row, columns padded to the
/// widest cell (in characters: every cell has been escaped to printable text).
fn table(rows: &[[String; 7]]) -> Vec<String> {
    let header = [
        "ID", "STATUS", "STARTED", "DURATION", "RECORDS", "PIPELINE", "TAGS",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    std::iter::once(&header)
        .chain(rows)
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

/// Whether a run marked running has a process writing it (a run in any other state counts
/// as live: there is nothing to resume). When the store cannot tell, it is taken as live.
fn is_live(store: &dyn StateStore, id: &str, status: RunStatus) -> bool {
    status != RunStatus::Running || store.is_writing(id).unwrap_or(true)
}

fn status_text(status: RunStatus, live: bool) -> Cow<'static, str> {
    if live {
        Cow::Borrowed(status.as_str())
    } else {
        Cow::Borrowed(ORPHANED)
    }
}

/// How long a run took: up to now while it runs, up to its last change otherwise.
fn took(created: SystemTime, updated: SystemTime, running_now: bool) -> Duration {
    let end = if running_now {
        SystemTime::now().max(updated)
    } else {
        updated
    };
    end.duration_since(created).unwrap_or_default()
}

fn row(store: &dyn StateStore, run: &RunInfo) -> [String; 7] {
    let live = is_live(store, &run.id, run.status);
    let running_now = run.status == RunStatus::Running && live;
    let tags: Vec<Cow<'_, str>> = run
        .metadata
        .tags
        .iter()
        .map(|t| escape_control(t))
        .collect();
    [
        escape_control(&run.id).into_owned(),
        format!(
            "{}{}",
            status_text(run.status, live),
            super::trust::runs_note(&run.metadata)
        ),
        humantime::format_rfc3339_seconds(run.created_at).to_string(),
        short_duration(took(run.created_at, run.updated_at, running_now)),
        run.events.to_string(),
        escape_control(run.metadata.pipeline.as_deref().unwrap_or_default()).into_owned(),
        tags.join(","),
    ]
}

/// "850ms", "12.3s", "4m 05s", "2h 03m", "3d 04h".
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else if secs < 86_400 {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    } else {
        format!("{}d {:02}h", secs / 86_400, (secs % 86_400) / 3600)
    }
}

/// `rh-agents show RUN_ID`.
pub fn show(store: &StoreArg, args: &ShowArgs) -> Exit {
    let store_handle = match store.open_read_only() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let snapshot = match store_handle.load(&args.run_id) {
        Ok(snapshot) => snapshot,
        Err(e) => return store.fail(&e),
    };
    if args.json {
        json(To::Stdout, &snapshot.to_json_pretty());
        return Exit::Success;
    }
    let live = is_live(store_handle.as_ref(), &snapshot.state_id, snapshot.status);
    print_header(&snapshot, live);
    let printer = Printer::builder().detail(true).stdout();
    for event in &snapshot.events {
        // A closed stdout leaves nobody to show the rest to.
        if printer.on_event(event).is_err() {
            return Exit::Success;
        }
    }
    // The summary of exactly the stored records (a restored state would add the record of
    // its own resume).
    let events: Vec<Arc<Event>> = snapshot.events.into_iter().map(Arc::new).collect();
    let mut summary = RunSummary::from_events(&events);
    if snapshot.status == RunStatus::Running && live {
        // Still running: its time so far, not up to its latest record.
        summary.elapsed = took(snapshot.created_at, snapshot.updated_at, true);
    }
    let _ = printer.print_summary(&summary);
    Exit::Success
}

/// The lines above the tree: id, pipeline, status, start and tags.
fn print_header(snapshot: &Snapshot, live: bool) {
    let meta = &snapshot.metadata;
    line(
        To::Stdout,
        &format!("run {}", escape_control(&snapshot.state_id)),
    );
    if let Some(pipeline) = &meta.pipeline {
        line(
            To::Stdout,
            &format!("pipeline: {}", escape_control(pipeline)),
        );
    }
    line(
        To::Stdout,
        &format!("status: {}", status_text(snapshot.status, live)),
    );
    line(
        To::Stdout,
        &format!(
            "started: {}",
            humantime::format_rfc3339_seconds(snapshot.created_at)
        ),
    );
    if !meta.tags.is_empty() {
        let tags: Vec<Cow<'_, str>> = meta.tags.iter().map(|t| escape_control(t)).collect();
        line(To::Stdout, &format!("tags: {}", tags.join(", ")));
    }
    super::trust::show_pipeline(snapshot);
    line(To::Stdout, "");
}

#[cfg(test)]
mod tests {
    use super::{short_duration, table};
    use std::time::Duration;

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(short_duration(Duration::from_secs(7_380)), "2h 03m");
        assert_eq!(
            short_duration(Duration::from_secs(3 * 86_400 + 4 * 3_600)),
            "3d 04h"
        );
        assert_eq!(short_duration(Duration::MAX), "213503982334601d 07h");
    }

    #[test]
    fn the_table_pads_columns_to_the_widest_cell() {
        let rows = [[
            "run-1",
            "completed",
            "2024-01-01T00:00:00Z",
            "1.0s",
            "12",
            "p",
            "a,b",
        ]
        .map(str::to_owned)];
        assert_eq!(
            table(&rows),
            [
                "ID     STATUS     STARTED               DURATION  RECORDS  PIPELINE  TAGS",
                "run-1  completed  2024-01-01T00:00:00Z  1.0s      12       p         a,b",
            ]
        );
    }
}
