//! `rh-agents runs` and `rh-agents show`: reading the store without writing to it (readers
//! never wait on a running writer: the store is in WAL mode).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rh_agents::observe::printer::Printer;
use rh_agents::observe::summary::RunSummary;
use rh_agents::store::{ListFilter, RunInfo, RunStatus, StateStore};
use rh_agents::{Event, Subscriber};

use super::StoreArg;
use crate::cli::{RunsArgs, ShowArgs};
use crate::exit::Exit;
use crate::output::{line, To};

/// `rh-agents runs`.
pub fn runs(store: &StoreArg, args: &RunsArgs) -> Exit {
    if !store.exists() {
        // Nothing has run here yet: an empty list, and no store made for it.
        if args.json {
            line(To::Stdout, "[]");
        } else {
            line(
                To::Stdout,
                &format!(
                    "no runs (there is no store at {} yet)",
                    store.path().display()
                ),
            );
        }
        return Exit::Success;
    }
    let store_handle = match store.open_existing() {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let filter = ListFilter {
        tags: args.tags.clone(),
        status: args.status,
        pipeline: args.pipeline.clone(),
        limit: args.limit,
    };
    let runs = match store_handle.list(&filter) {
        Ok(runs) => runs,
        Err(e) => return store.fail(&e),
    };
    if args.json {
        line(
            To::Stdout,
            &serde_json::to_string_pretty(&runs).unwrap_or_default(),
        );
        return Exit::Success;
    }
    if runs.is_empty() {
        line(To::Stdout, "no runs");
        return Exit::Success;
    }
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|run| row(store_handle.as_ref(), run))
        .collect();
    let header = [
        "ID", "STATUS", "STARTED", "DURATION", "EVENTS", "PIPELINE", "TAGS",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        line(To::Stdout, cells.join("  ").trim_end());
    }
    Exit::Success
}

fn row(store: &dyn StateStore, run: &RunInfo) -> [String; 7] {
    // A run marked running that no process writes was killed or crashed.
    let live = run.status != RunStatus::Running || store.is_writing(&run.id).unwrap_or(true);
    let mut status = if live {
        run.status.to_string()
    } else {
        "running (no process: resume it)".to_owned()
    };
    status.push_str(super::trust::runs_note(&run.metadata));
    let end = if run.status == RunStatus::Running && live {
        SystemTime::now()
    } else {
        run.updated_at
    };
    let took = end.duration_since(run.created_at).unwrap_or_default();
    [
        run.id.clone(),
        status,
        humantime::format_rfc3339_seconds(run.created_at).to_string(),
        short_duration(took),
        run.events.to_string(),
        run.metadata.pipeline.clone().unwrap_or_default(),
        run.metadata.tags.join(","),
    ]
}

/// "850ms", "12.3s", "4m 05s", "2h 03m".
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// `rh-agents show RUN_ID`.
pub fn show(store: &StoreArg, args: &ShowArgs) -> Exit {
    let snapshot = match store.load(&args.run_id) {
        Ok((_, snapshot)) => snapshot,
        Err(exit) => return exit,
    };
    if args.json {
        line(To::Stdout, &snapshot.to_json_pretty());
        return Exit::Success;
    }
    let meta = &snapshot.metadata;
    line(To::Stdout, &format!("run {}", snapshot.state_id));
    if let Some(pipeline) = &meta.pipeline {
        line(To::Stdout, &format!("pipeline: {pipeline}"));
    }
    line(To::Stdout, &format!("status: {}", snapshot.status));
    line(
        To::Stdout,
        &format!(
            "started: {}",
            humantime::format_rfc3339_seconds(snapshot.created_at)
        ),
    );
    if !meta.tags.is_empty() {
        line(To::Stdout, &format!("tags: {}", meta.tags.join(", ")));
    }
    super::trust::show_pipeline(&snapshot);
    line(To::Stdout, "");
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
    let _ = printer.print_summary(&RunSummary::from_events(&events));
    Exit::Success
}

#[cfg(test)]
mod tests {
    use super::short_duration;
    use std::time::Duration;

    #[test]
    fn durations_are_short_and_readable() {
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(short_duration(Duration::from_secs(245)), "4m 05s");
        assert_eq!(short_duration(Duration::from_secs(7_380)), "2h 03m");
    }
}
