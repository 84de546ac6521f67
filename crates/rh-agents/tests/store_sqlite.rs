#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! The SQLite store: one writer per run (also across handles on one file), readers that are
//! never locked out, files that are not stores, records damaged on disk (read through SQLite
//! itself), JSON files that are not snapshots, artifacts stored once and checked, and runs
//! that outlive the handle that wrote them.
#![cfg(feature = "sqlite")]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::store::{
    interrupt_checker, json, ArtifactRef, Durability, ListFilter, ReplayMode, RunStatus,
    SqliteStore, StateStore, StoreError,
};
use rh_agents::{
    Actor, Ctx, ErrorKind, EventStatus, ExecutionState, InterruptReason, InterruptSignal, Severity,
};
use serde_json::json;
use support::store::{counted, resume, stored_status};
use support::{scripted, spawn_call, Step};

const SEC: Duration = Duration::from_secs(1);

/// A directory with a store path in it (not created yet).
fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    (dir, path)
}

fn open(path: &Path) -> Arc<dyn StateStore> {
    Arc::new(SqliteStore::open(path).unwrap())
}

/// A plain SQLite connection to the store file, to damage it the way a disk or a person might.
fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// A finished run with a few calls, storage and an artifact; returns its id.
async fn finished_run(store: &Arc<dyn StateStore>) -> String {
    let state = ExecutionState::builder()
        .start(Arc::clone(store))
        .await
        .unwrap();
    let double = counted("double", |x| x * 2);
    for i in 0..3 {
        state.call(&double.actor, i).await.unwrap();
    }
    state.storage().set("k", &json!({"a": 1})).unwrap();
    state.put_artifact("notes", b"some notes", None).unwrap();
    state.finish_ok().unwrap();
    state.id().to_owned()
}

#[tokio::test]
async fn a_second_writer_on_another_handle_is_locked_out_until_the_first_is_dropped() {
    let (_dir, path) = db_path();
    let first = open(&path);
    let second = open(&path);
    let state = ExecutionState::builder()
        .id("job")
        .start(Arc::clone(&first))
        .await
        .unwrap();
    let double = counted("double", |x| x * 2);
    state.call(&double.actor, 1).await.unwrap();

    // The state's builder would wait for the writer (`writer_wait`): here it gives up at once.
    let refused = [
        ExecutionState::builder()
            .writer_wait(Duration::ZERO)
            .resume(Arc::clone(&second), "job", ReplayMode::Normal)
            .await
            .map(drop),
        ExecutionState::builder()
            .id("job")
            .writer_wait(Duration::ZERO)
            .start(Arc::clone(&second))
            .await
            .map(drop),
        ExecutionState::builder()
            .id("job")
            .start(Arc::clone(&first))
            .await
            .map(drop),
        second.lock_writer("job").map(drop),
        second.delete("job").map(drop),
        second.save(&state.snapshot()),
        first.save(&state.snapshot()),
    ];
    for (i, outcome) in refused.into_iter().enumerate() {
        match outcome {
            Err(StoreError::Locked { id, holder }) => {
                assert_eq!(id, "job");
                assert_eq!(holder, format!("process {}", std::process::id()), "#{i}");
            }
            other => panic!("#{i}: expected Locked, got {other:?}"),
        }
    }
    let message = second.lock_writer("job").unwrap_err().to_string();
    assert!(message.contains("only one writer per run"), "{message}");
    assert!(second.is_writing("job").unwrap());
    assert!(first.is_writing("job").unwrap());
    // Reading is never refused.
    assert_eq!(second.load("job").unwrap().events.len(), 2);
    assert_eq!(second.list(&ListFilter::new()).unwrap()[0].events, 2);
    // Other runs are not affected.
    let other = ExecutionState::builder()
        .id("other")
        .start(Arc::clone(&second))
        .await
        .unwrap();
    drop(other);

    drop(state);
    assert!(!second.is_writing("job").unwrap());
    let resumed = resume(&second, "job", ReplayMode::Normal).await;
    assert_eq!(resumed.call(&double.actor, 1).await.unwrap(), 2);
    assert_eq!(double.calls(), 1, "replayed through the other handle");
    assert!(
        first.is_writing("job").unwrap(),
        "now the second handle writes"
    );
    assert!(matches!(
        first.lock_writer("job"),
        Err(StoreError::Locked { .. })
    ));
    drop(resumed);
    assert!(second.delete("job").unwrap());
}

#[tokio::test]
async fn runs_outlive_the_handle_that_wrote_them() {
    let (_dir, path) = db_path();
    let (id, stored) = {
        let store = open(&path);
        let id = finished_run(&store).await;
        (id.clone(), store.load(&id).unwrap())
    };
    // A new handle, as a new process would open it.
    let store = open(&path);
    assert_eq!(store.load(&id).unwrap(), stored);
    let double = counted("double", |x| x * 2);
    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    for i in 0..3 {
        assert_eq!(resumed.call(&double.actor, i).await.unwrap(), i * 2);
    }
    assert_eq!(double.calls(), 0);
    assert_eq!(resumed.artifact("notes").unwrap().unwrap(), b"some notes");
    assert_eq!(resumed.storage().get_value("k"), Some(json!({"a": 1})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_list_and_load_while_a_writer_appends() {
    let (_dir, path) = db_path();
    let writer_store = open(&path);
    let state = ExecutionState::builder()
        .id("busy")
        .start(writer_store)
        .await
        .unwrap();
    const RECORDS: usize = 400;
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for i in 0..RECORDS {
                state.log(Severity::Info, format!("record {i}"));
                if i % 50 == 0 {
                    state.storage().set(format!("k{i}"), &i).unwrap();
                }
            }
            state.finish_ok().unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };

    let reader = open(&path);
    let mut last = 0;
    let mut reads = 0;
    loop {
        let finished = done.load(Ordering::SeqCst);
        let snapshot = reader.load("busy").unwrap();
        let listed = reader.list(&ListFilter::new()).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(
            snapshot.events.len() >= last,
            "a later read never sees fewer records"
        );
        assert!(listed[0].events as usize >= snapshot.events.len());
        last = snapshot.events.len();
        reads += 1;
        if finished {
            break;
        }
    }
    writer.join().unwrap();
    let stored = reader.load("busy").unwrap();
    assert_eq!(stored.events.len(), RECORDS);
    assert_eq!(stored.status, RunStatus::Completed);
    assert_eq!(stored.storage.len(), RECORDS / 50);
    assert!(reads > 1);
}

#[tokio::test]
async fn a_write_lock_held_briefly_elsewhere_is_waited_out() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let state = ExecutionState::builder()
        .id("patient")
        .start(Arc::clone(&store))
        .await
        .unwrap();
    state.log(Severity::Info, "before");

    // Another connection takes the database's write lock for a moment.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let other = {
        let path = path.clone();
        std::thread::spawn(move || {
            let conn = raw(&path);
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            conn.execute_batch("COMMIT").unwrap();
        })
    };
    locked_rx.recv().unwrap();
    // Readers are not blocked by it.
    assert_eq!(open(&path).load("patient").unwrap().events.len(), 1);
    // The writer waits for it instead of failing.
    state.log(Severity::Info, "during");
    state.storage().set("k", &1).unwrap();
    other.join().unwrap();
    let stored = store.load("patient").unwrap();
    assert_eq!(stored.events.len(), 2);
    assert_eq!(stored.storage["k"], json!(1));
    state.check_interrupt().await.unwrap();
    assert!(!state.is_interrupted(), "no write failed");
}

#[test]
fn a_file_that_is_not_a_database_is_a_foreign_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut noise = Vec::with_capacity(8192);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let garbage: [(&str, Vec<u8>); 3] = [
        ("noise.db", noise),
        (
            "notes.db",
            b"these are my notes, not a database\n".repeat(40),
        ),
        ("image.db", {
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.resize(1024, 7);
            png
        }),
    ];
    for (name, bytes) in garbage {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::ForeignStore {
                path: shown,
                reason,
            }) => {
                assert_eq!(shown, path);
                assert!(
                    reason.contains("not an SQLite database"),
                    "{name}: {reason}"
                );
            }
            other => panic!("{name}: expected ForeignStore, got {other:?}"),
        }
        let message = SqliteStore::open(&path).unwrap_err().to_string();
        assert!(
            message.contains(name),
            "the message names the file: {message}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name} is left as it was"
        );
    }
}

#[test]
fn a_database_of_another_program_or_a_newer_layout_is_refused() {
    let (_dir, path) = db_path();
    {
        let conn = raw(&path);
        conn.execute_batch("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);")
            .unwrap();
    }
    match SqliteStore::open(&path) {
        Err(StoreError::ForeignStore { reason, .. }) => {
            assert!(reason.contains("another program"), "{reason}");
        }
        other => panic!("expected ForeignStore, got {other:?}"),
    }
    let tables: i64 = raw(&path)
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "nothing was added to it");

    let (_dir, path) = db_path();
    drop(open(&path));
    raw(&path)
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::ForeignStore { reason, .. }) => {
            assert!(
                reason.contains("newer rh-agents") && reason.contains("99"),
                "{reason}"
            );
        }
        other => panic!("expected ForeignStore, got {other:?}"),
    }

    // An empty file is a new database: it becomes a store.
    let (_dir, path) = db_path();
    std::fs::write(&path, b"").unwrap();
    let store = open(&path);
    assert!(store.list(&ListFilter::new()).unwrap().is_empty());
}

#[tokio::test]
async fn a_corrupt_record_fails_the_load_naming_run_and_record() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let id = finished_run(&store).await;
    let changed = raw(&path)
        .execute(
            "UPDATE events SET body = '{\"nonsense\":1}' WHERE run_id = ?1 AND seq = 2",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);

    let check = |err: StoreError| match &err {
        StoreError::Corrupt {
            id: run, record, ..
        } => {
            assert_eq!(run, &id);
            assert_eq!(record, "event #2");
            let message = err.to_string();
            assert!(
                message.contains(&id) && message.contains("event #2"),
                "{message}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    };
    check(store.load(&id).unwrap_err());
    check(open(&path).load(&id).unwrap_err());
    // A resume fails the same way (never from a partial history) and leaves the run free.
    check(
        ExecutionState::builder()
            .resume(Arc::clone(&store), &id, ReplayMode::Normal)
            .await
            .unwrap_err(),
    );
    assert!(!store.is_writing(&id).unwrap());
    assert!(json::export(&*store, &id, &path.with_extension("json")).is_err());
    // The header is still listed.
    let listed = store.list(&ListFilter::new()).unwrap();
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].events, 6);

    // A record holding another record's number.
    let (_dir2, path2) = db_path();
    let store2 = open(&path2);
    let id2 = finished_run(&store2).await;
    let conn = raw(&path2);
    let body: String = conn
        .query_row(
            "SELECT body FROM events WHERE run_id = ?1 AND seq = 1",
            [&id2],
            |r| r.get(0),
        )
        .unwrap();
    let body_of_1 = body.clone();
    let moved = body.replace("\"id\":1,", "\"id\":4,");
    assert_ne!(moved, body);
    conn.execute(
        "UPDATE events SET body = ?1 WHERE run_id = ?2 AND seq = 1",
        [&moved, &id2],
    )
    .unwrap();
    match store2.load(&id2) {
        Err(StoreError::Corrupt { record, reason, .. }) => {
            assert_eq!(record, "event #1");
            assert!(reason.contains("id 4"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // A record written by another event schema version.
    let body: String = conn
        .query_row(
            "SELECT body FROM events WHERE run_id = ?1 AND seq = 3",
            [&id2],
            |r| r.get(0),
        )
        .unwrap();
    assert!(body.starts_with("{\"v\":1,"), "{body}");
    conn.execute(
        "UPDATE events SET body = ?1 WHERE run_id = ?2 AND seq = 3",
        [&body.replacen("{\"v\":1,", "{\"v\":2,", 1), &id2],
    )
    .unwrap();
    conn.execute(
        "UPDATE events SET body = ?1 WHERE run_id = ?2 AND seq = 1",
        [&body_of_1, &id2],
    )
    .unwrap();
    match store2.load(&id2) {
        Err(StoreError::Corrupt { record, reason, .. }) => {
            assert_eq!(record, "event #3");
            assert!(
                reason.contains("event schema version 2 is not supported"),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_record_fails_the_load() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let id = finished_run(&store).await;
    let deleted = raw(&path)
        .execute("DELETE FROM events WHERE run_id = ?1 AND seq = 3", [&id])
        .unwrap();
    assert_eq!(deleted, 1);
    match store.load(&id) {
        Err(StoreError::Corrupt {
            id: run,
            record,
            reason,
        }) => {
            assert_eq!(run, id);
            assert_eq!(record, "event #4");
            assert!(reason.contains("records are missing"), "{reason}");
            assert!(reason.contains("#3"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn corrupt_storage_metadata_and_artifact_rows_fail_closed() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let id = finished_run(&store).await;
    let conn = raw(&path);

    conn.execute(
        "UPDATE storage SET value = '{not json' WHERE run_id = ?1",
        [&id],
    )
    .unwrap();
    match store.load(&id) {
        Err(StoreError::Corrupt { record, .. }) => assert_eq!(record, "storage key \"k\""),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    conn.execute("UPDATE storage SET value = '1' WHERE run_id = ?1", [&id])
        .unwrap();
    store.load(&id).unwrap();

    conn.execute(
        "UPDATE artifacts SET sha256 = '../../etc/passwd' WHERE run_id = ?1",
        [&id],
    )
    .unwrap();
    match store.load(&id) {
        Err(StoreError::Corrupt { record, reason, .. }) => {
            assert_eq!(record, "artifact \"notes\"");
            assert!(reason.contains("SHA-256"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    conn.execute("DELETE FROM artifacts WHERE run_id = ?1", [&id])
        .unwrap();

    conn.execute(
        "UPDATE runs SET metadata = '{\"tags\": 5}' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    for err in [
        store.load(&id).unwrap_err(),
        store.list(&ListFilter::new()).unwrap_err(),
    ] {
        match err {
            StoreError::Corrupt {
                id: run, record, ..
            } => {
                assert_eq!(run, id);
                assert_eq!(record, "metadata");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    conn.execute(
        "UPDATE runs SET metadata = '{}', status = 'exploded' WHERE id = ?1",
        [&id],
    )
    .unwrap();
    match store.load(&id) {
        Err(StoreError::Corrupt { record, reason, .. }) => {
            assert_eq!(record, "column status");
            assert!(reason.contains("exploded"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[tokio::test]
async fn same_bytes_are_one_blob_and_tampered_bytes_are_refused() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let draft_calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&draft_calls);
    let draft = Actor::llm("draft", move |n: u32, _ctx: Ctx| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, std::io::Error>(vec![format!("section {n}"); 3]) }
    })
    .output_as_artifact();

    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let a = state
        .put_artifact("report", b"# same", Some("text/markdown"))
        .unwrap();
    let b = state.put_artifact("copy", b"# same", None).unwrap();
    assert_eq!(a.sha256, b.sha256);
    // A second run with the same bytes shares the row too.
    let other = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    other.put_artifact("mine", b"# same", None).unwrap();
    drop(other);
    state.call(&draft, 1).await.unwrap();
    drop(state);

    let conn = raw(&path);
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM blobs WHERE sha256 = ?1",
            [&a.sha256],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1, "one copy of the bytes for three names in two runs");
    let all: i64 = conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(all, 2, "the report and the draft");

    // Bytes changed on disk.
    conn.execute(
        "UPDATE blobs SET data = ?1 WHERE sha256 = ?2",
        rusqlite::params![b"# evil".to_vec(), a.sha256],
    )
    .unwrap();
    match store.get_blob(&a) {
        Err(StoreError::ArtifactCorrupt { sha256, .. }) => assert_eq!(sha256, a.sha256),
        other => panic!("expected ArtifactCorrupt, got {other:?}"),
    }
    let draft_ref: ArtifactRef = store.load(&id).unwrap().artifacts["draft#0"].clone();
    conn.execute(
        "UPDATE blobs SET data = ?1 WHERE sha256 = ?2",
        rusqlite::params![b"[]".to_vec(), draft_ref.sha256],
    )
    .unwrap();

    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    assert!(matches!(
        resumed.artifact("copy"),
        Err(StoreError::ArtifactCorrupt { .. })
    ));
    // A replay never returns bytes that fail their check, nor runs the handler instead.
    let err = resumed.call(&draft, 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replay);
    assert!(err.to_string().contains(&draft_ref.sha256), "{err}");
    assert_eq!(draft_calls.load(Ordering::SeqCst), 1);
    // The export refuses to copy them.
    drop(resumed);
    assert!(matches!(
        json::export(&*store, &id, &path.with_extension("json")),
        Err(StoreError::ArtifactCorrupt { .. })
    ));
}

#[tokio::test]
async fn a_corrupt_export_file_is_malformed_with_line_and_column() {
    let (dir, path) = db_path();
    let store = open(&path);
    let id = finished_run(&store).await;
    let file = dir.path().join("export.json");
    json::export(&*store, &id, &file).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().count() > 10, "pretty, one field per line");

    // Cut in the middle.
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    let target = SqliteStore::open_in_memory().unwrap();
    match json::import(&target, &file) {
        Err(StoreError::Malformed { what, reason }) => {
            assert_eq!(what, file.display().to_string());
            assert!(
                reason.contains("line") && reason.contains("column"),
                "{reason}"
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    // A wrong type deep inside.
    let broken = text.replacen("\"status\": \"completed\"", "\"status\": 17", 1);
    assert_ne!(broken, text);
    std::fs::write(&file, &broken).unwrap();
    match json::read_file(&file) {
        Err(StoreError::Malformed { what, reason }) => {
            assert_eq!(what, file.display().to_string());
            assert!(
                reason.contains("line") && reason.contains("column"),
                "{reason}"
            );
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
    let message = json::read_file(&file).unwrap_err().to_string();
    assert!(
        message.starts_with(&file.display().to_string()),
        "{message}"
    );
    assert!(target.list(&ListFilter::new()).unwrap().is_empty());

    // A file that is not there.
    assert!(matches!(
        json::read_file(&dir.path().join("missing.json")),
        Err(StoreError::Io { .. })
    ));
}

#[test]
fn a_json_object_that_is_no_snapshot_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    for text in [
        r#"{"name": "my config", "port": 8080}"#,
        "{}",
        r#"{"schema_version": null}"#,
    ] {
        std::fs::write(&file, text).unwrap();
        match json::read_file(&file) {
            Err(StoreError::Malformed { what, reason }) => {
                assert_eq!(what, file.display().to_string());
                assert!(
                    reason.contains("not an rh-agents snapshot"),
                    "{text}: {reason}"
                );
            }
            other => panic!("{text}: expected Malformed, got {other:?}"),
        }
    }
}

/// Library bug: JSON that is not an object (an array, a string, a number, null) is refused
/// with serde's wording about a private type ("invalid type: null, expected struct
/// VersionOnly", "invalid type: integer `1`, expected a string") instead of saying that the
/// file is not an rh-agents snapshot.
#[test]
fn json_of_any_other_shape_is_refused_as_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data.json");
    for text in ["[1, 2, 3]", "[]", "\"just text\"", "42", "null"] {
        std::fs::write(&file, text).unwrap();
        match json::read_file(&file) {
            Err(StoreError::Malformed { what, reason }) => {
                assert_eq!(what, file.display().to_string());
                assert!(
                    reason.contains("not an rh-agents snapshot") && !reason.contains("VersionOnly"),
                    "{text}: {reason}"
                );
            }
            other => panic!("{text}: expected Malformed, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn full_durability_works() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> =
        Arc::new(SqliteStore::open_with(&path, Durability::Full).unwrap());
    let id = finished_run(&store).await;
    let stored = store.load(&id).unwrap();
    assert_eq!(stored.events.len(), 6);
    assert_eq!(stored.status, RunStatus::Completed);
    // The setting is the connection's; the file reads the same with the default.
    assert_eq!(open(&path).load(&id).unwrap(), stored);
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    // A resume through a fully durable handle goes on writing.
    let resumed = resume(&store, &id, ReplayMode::Normal).await;
    resumed.log(Severity::Info, "synced");
    drop(resumed);
    // The six records, the record of the resume, and the log.
    assert_eq!(open(&path).load(&id).unwrap().events.len(), 8);
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_left_by_another_handle_stops_the_writer() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let state = ExecutionState::builder()
        .id("remote")
        .grace_period(Duration::ZERO)
        .start(Arc::clone(&store))
        .await
        .unwrap();
    state.add_checker(interrupt_checker(Arc::clone(&store), "remote"));
    let sleeper = scripted("sleeper", vec![Step::Sleep(Duration::from_secs(3600))]);
    let task = spawn_call(&state, sleeper.actor.clone());
    tokio::time::sleep(SEC).await;

    // `rh-agents interrupt` in another terminal: its own handle on the file.
    let other = open(&path);
    other
        .request_interrupt(
            "remote",
            &InterruptSignal::new(InterruptReason::UserCancelled).triggered_by("cli"),
        )
        .unwrap();
    let (result, _) = task.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_interrupted());
    assert_eq!(
        err.interrupt().unwrap().triggered_by.as_deref(),
        Some("cli")
    );
    assert_eq!(stored_status(&other, "remote"), RunStatus::Interrupted);
    drop(state);

    let resumed = resume(&other, "remote", ReplayMode::Normal).await;
    assert_eq!(store.pending_interrupt("remote").unwrap(), None);
    assert!(!resumed.is_interrupted());
}

#[tokio::test]
async fn a_failed_write_stops_the_run_before_more_work() {
    let (_dir, path) = db_path();
    let store = open(&path);
    let state = ExecutionState::builder()
        .id("doomed")
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let double = counted("double", |x| x * 2);
    state.call(&double.actor, 1).await.unwrap();

    // The run's rows vanish under the writer (someone ran a cleanup by hand).
    let conn = raw(&path);
    for sql in [
        "DELETE FROM events WHERE run_id = 'doomed'",
        "DELETE FROM runs WHERE id = 'doomed'",
    ] {
        conn.execute(sql, []).unwrap();
    }

    let err = state.call(&double.actor, 2).await.unwrap_err();
    assert!(err.is_interrupted(), "{err}");
    let signal = state.interrupt_signal().unwrap();
    assert!(
        signal
            .message
            .as_deref()
            .unwrap()
            .contains("state store failed"),
        "{signal:?}"
    );
    assert_eq!(double.calls(), 1, "no work goes on unrecorded");
    assert!(
        state.finish(&Err::<(), _>(err)).is_err(),
        "the store still cannot save"
    );
    assert_eq!(
        state.history().latest("double#1").unwrap().status,
        EventStatus::Interrupted
    );
}

#[tokio::test]
async fn an_in_memory_database_works_as_a_store() {
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let id = finished_run(&store).await;
    let state = resume(&store, &id, ReplayMode::Normal).await;
    assert!(store.is_writing(&id).unwrap());
    assert!(matches!(
        ExecutionState::builder()
            .writer_wait(Duration::ZERO)
            .resume(Arc::clone(&store), &id, ReplayMode::Normal)
            .await,
        Err(StoreError::Locked { .. })
    ));
    drop(state);
    assert!(!store.is_writing(&id).unwrap());
    // The six records and the record of the resume.
    assert_eq!(store.load(&id).unwrap().events.len(), 7);
}
