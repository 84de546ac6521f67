#![allow(clippy::unwrap_used)] // a panic in a test is a failed test
//! Stores and files the reader did not write: rows with impossible times or record numbers,
//! one bad row among good ones, floats and timestamps that must read back exactly, keys given
//! twice in an import file, and a store that may only be read (nothing in it, its write-ahead
//! log or its directory changes). Also what listing keeps in a run's row, the upgrade of
//! older stores, and the writer lock files that go away with their run.
#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rh_agents::store::{
    json, ListFilter, RunStatus, Snapshot, SqliteStore, StateStore, StoreError,
};
use rh_agents::{Actor, ExecutionState};
use serde_json::{json, Value};

/// A float that the default JSON parser reads back one unit in the last place off.
const DRIFTING: f64 = 9.136_353_238_902_674e-45;

fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    (dir, path)
}

/// A plain SQLite connection, to damage the file the way a disk or a person might.
fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// A finished run with two calls and a storage value; returns its id.
async fn finished_run(store: &Arc<dyn StateStore>, pipeline: &str) -> String {
    let state = ExecutionState::builder()
        .metadata(rh_agents::store::RunMetadata::new().pipeline(pipeline))
        .start(Arc::clone(store))
        .await
        .unwrap();
    let double = Actor::tool("double", |x: u32, _ctx| async move {
        Ok::<_, std::io::Error>(x * 2)
    });
    for i in 0..2 {
        state.call(&double, i).await.unwrap();
    }
    state.storage().set("k", &json!({"a": 1})).unwrap();
    state.finish_ok().unwrap();
    state.id().to_owned()
}

fn corrupt_parts(err: &StoreError) -> (&str, &str) {
    match err {
        StoreError::Corrupt { id, record, .. } => (id.as_str(), record.as_str()),
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_time_before_1970_or_after_9999_is_refused_naming_the_run_and_column() {
    for (column, value) in [
        ("created_us", -1_i64),
        ("created_us", i64::MIN),
        ("updated_us", 253_402_300_800_000_000),
        ("updated_us", i64::MAX),
    ] {
        let (_dir, path) = db_path();
        let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
        let id = finished_run(&store, "p").await;
        raw(&path)
            .execute(&format!("UPDATE runs SET {column} = ?1"), [value])
            .unwrap();

        let err = store.load(&id).unwrap_err();
        assert_eq!(
            corrupt_parts(&err),
            (id.as_str(), format!("column {column}").as_str())
        );
        assert!(err.to_string().contains("between 1970 and 9999"), "{err}");
        let err = store.list(&ListFilter::new()).unwrap_err();
        assert_eq!(corrupt_parts(&err).1, format!("column {column}"));
        // A reader fails the same way, without panicking.
        let reader = SqliteStore::open_read_only(&path).unwrap();
        assert!(matches!(reader.load(&id), Err(StoreError::Corrupt { .. })));
    }
}

#[tokio::test]
async fn a_time_outside_1970_to_9999_is_refused_when_written() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut snapshot = ExecutionState::new().snapshot();
    snapshot.created_at = std::time::UNIX_EPOCH - Duration::from_secs(1);
    let err = store.save(&snapshot).unwrap_err();
    assert!(err.to_string().contains("between 1970 and 9999"), "{err}");
    assert!(!store.exists(&snapshot.state_id).unwrap());
}

#[tokio::test]
async fn one_bad_row_is_reported_in_its_place_and_the_others_are_listed() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let first = finished_run(&store, "first").await;
    let bad = finished_run(&store, "bad").await;
    let last = finished_run(&store, "last").await;
    raw(&path)
        .execute("UPDATE runs SET status = 'exploded' WHERE id = ?1", [&bad])
        .unwrap();

    let rows = store.list_rows(&ListFilter::new()).unwrap();
    assert_eq!(rows.len(), 3);
    let good: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|i| i.id.as_str()))
        .collect();
    assert_eq!(good, [last.as_str(), first.as_str()]);
    let errors: Vec<&StoreError> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(corrupt_parts(errors[0]), (bad.as_str(), "column status"));
    // A limit counts the runs listed, not the unreadable ones.
    let rows = store.list_rows(&ListFilter::new().limit(2)).unwrap();
    assert_eq!(rows.iter().filter(|r| r.is_ok()).count(), 2);
    // `list` itself fails closed.
    assert!(matches!(
        store.list(&ListFilter::new()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn a_record_numbered_i64_max_is_named_as_such() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let id = finished_run(&store, "p").await;
    let conn = raw(&path);
    conn.execute(
        "UPDATE events SET seq = ?1
         WHERE run_id = ?2 AND seq = (SELECT MAX(seq) FROM events WHERE run_id = ?2)",
        rusqlite::params![i64::MAX, id],
    )
    .unwrap();
    let err = store.load(&id).unwrap_err();
    let (_, record) = corrupt_parts(&err);
    assert_eq!(record, format!("event #{}", i64::MAX));

    // A store of the first layout counts records from their numbers: the error names them,
    // not the run's header.
    downgrade_to_layout_1(&conn);
    drop(conn);
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let err = reader.list(&ListFilter::new()).unwrap_err();
    assert_eq!(
        corrupt_parts(&err),
        (id.as_str(), "column seq of its records")
    );
    assert!(err.to_string().contains(&i64::MAX.to_string()), "{err}");
    // Upgraded by a writer, the count cannot be made either, and says so the same way.
    let writer = SqliteStore::open(&path).unwrap();
    let err = writer.list(&ListFilter::new()).unwrap_err();
    assert_eq!(
        corrupt_parts(&err),
        (id.as_str(), "column seq of its records")
    );
}

/// Turns a store back into layout 1 (no `records` column), as an older rh-agents wrote it.
fn downgrade_to_layout_1(conn: &rusqlite::Connection) {
    conn.execute_batch("ALTER TABLE runs DROP COLUMN records; PRAGMA user_version = 1;")
        .unwrap();
}

#[tokio::test]
async fn a_run_s_row_keeps_its_record_count_and_latest_time() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let id = finished_run(&store, "p").await;
    let snapshot = store.load(&id).unwrap();
    let (records, updated_us): (i64, i64) = raw(&path)
        .query_row(
            "SELECT records, updated_us FROM runs WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(records, snapshot.events.len() as i64);
    let last = snapshot.events.last().unwrap().timestamp;
    let last_us = last
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert!(updated_us >= last_us);
    // Listing reads the row, not the records: a damaged last record does not change it.
    raw(&path)
        .execute(
            "UPDATE events SET body = 'not json' WHERE run_id = ?1 AND seq = ?2",
            rusqlite::params![id, records - 1],
        )
        .unwrap();
    let listed = store.list(&ListFilter::new()).unwrap();
    assert_eq!(listed[0].events, records as u64);
    assert_eq!(listed[0].updated_at, snapshot.updated_at);
}

#[tokio::test]
async fn a_layout_1_store_is_listed_read_only_and_upgraded_by_a_writer() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let a = finished_run(&store, "a").await;
    let b = finished_run(&store, "b").await;
    let expected = store.list(&ListFilter::new()).unwrap();
    drop(store);
    let conn = raw(&path);
    downgrade_to_layout_1(&conn);
    // As an older writer left it: the row's time is the status save, not the last record.
    conn.execute("UPDATE runs SET updated_us = created_us", [])
        .unwrap();
    drop(conn);

    let reader = SqliteStore::open_read_only(&path).unwrap();
    let listed = reader.list(&ListFilter::new()).unwrap();
    assert_eq!(listed.len(), 2);
    for (got, want) in listed.iter().zip(&expected) {
        assert_eq!(
            (got.id.as_str(), got.events),
            (want.id.as_str(), want.events)
        );
    }
    drop(reader);
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "a reader does not upgrade");

    let writer = SqliteStore::open(&path).unwrap();
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
    let listed = writer.list(&ListFilter::new()).unwrap();
    let ids: Vec<(&str, u64)> = listed.iter().map(|r| (r.id.as_str(), r.events)).collect();
    assert_eq!(
        ids,
        [
            (b.as_str(), expected[0].events),
            (a.as_str(), expected[1].events)
        ]
    );
    for run in &listed {
        let last = writer
            .load(&run.id)
            .unwrap()
            .events
            .last()
            .unwrap()
            .timestamp;
        assert!(
            run.updated_at >= last,
            "the upgrade reads the last record's time"
        );
    }
}

/// The length and a hash of a file's bytes, or `None` when there is none.
fn bytes(path: &Path) -> Option<(usize, u64)> {
    use std::hash::{Hash as _, Hasher as _};
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some((bytes.len(), hasher.finish()))
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[tokio::test]
async fn reading_a_store_left_by_a_killed_writer_changes_nothing() {
    // A store as a killed writer leaves it: its last commits still in the write-ahead log.
    let (_dir, live) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&live).unwrap());
    let id = finished_run(&store, "p").await;
    let image = tempfile::tempdir().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        std::fs::copy(
            sibling(&live, suffix),
            sibling(&image.path().join("state.db"), suffix),
        )
        .unwrap();
    }
    drop(store);
    let path = image.path().join("state.db");
    let wal = sibling(&path, "-wal");
    let before = (bytes(&path), bytes(&wal), names(image.path()));
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert!(
        bytes(&wal).is_some_and(|(len, _)| len > 0),
        "the commits wait in the log"
    );

    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(reader.list(&ListFilter::new()).unwrap()[0].id, id);
    assert_eq!(reader.load(&id).unwrap().status, RunStatus::Completed);
    assert!(!reader.is_writing(&id).unwrap());
    drop(reader);

    // A writer closing last would have merged the log into the file and removed it.
    assert_eq!((bytes(&path), bytes(&wal), names(image.path())), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified
    );
}

#[tokio::test]
async fn a_store_opened_read_only_refuses_to_write() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let id = finished_run(&store, "p").await;
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let err = reader.lock_writer(&id).unwrap_err();
    assert!(err.report().contains("read-only"), "{}", err.report());
    assert!(reader.set_status(&id, RunStatus::Failed).is_err());
    assert_eq!(store.load(&id).unwrap().status, RunStatus::Completed);
    assert!(
        names(&sibling(&path, ".locks")).is_empty(),
        "no lock file made"
    );
    // No file, no store made.
    assert!(matches!(
        SqliteStore::open_read_only(path.with_file_name("missing.db")),
        Err(StoreError::Io { .. })
    ));
    assert!(!path.with_file_name("missing.db").exists());
}

#[tokio::test]
async fn an_empty_file_reads_as_an_empty_store() {
    let (_dir, path) = db_path();
    std::fs::write(&path, b"").unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert!(reader.list(&ListFilter::new()).unwrap().is_empty());
    assert!(matches!(reader.load("x"), Err(StoreError::NotFound { .. })));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[tokio::test]
async fn a_writer_s_lock_file_is_removed_when_it_lets_go() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let locks = sibling(&path, ".locks");
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    assert_eq!(names(&locks).len(), 1, "the writer holds its lock file");
    assert!(store.is_writing(&id).unwrap());
    state.finish_ok().unwrap();
    drop(state);
    assert!(names(&locks).is_empty(), "the lock file went with its run");
    assert!(!store.is_writing(&id).unwrap());
    // Taken again (a resume, a delete), and removed again.
    let lock = store.lock_writer(&id).unwrap();
    assert_eq!(names(&locks).len(), 1);
    assert!(matches!(
        store.lock_writer(&id),
        Err(StoreError::Locked { .. })
    ));
    drop(lock);
    assert!(store.delete(&id).unwrap());
    assert!(names(&locks).is_empty());
}

#[tokio::test]
async fn floats_read_back_exactly_from_the_store_and_from_json() {
    let (_dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let state = ExecutionState::builder()
        .start(Arc::clone(&store))
        .await
        .unwrap();
    let id = state.id().to_owned();
    let echo = Actor::tool(
        "echo",
        |x: f64, _ctx| async move { Ok::<_, std::io::Error>(x) },
    );
    assert_eq!(
        state.call(&echo, DRIFTING).await.unwrap().to_bits(),
        DRIFTING.to_bits()
    );
    state.storage().set("f", &DRIFTING).unwrap();
    state.finish_ok().unwrap();
    drop(state);

    let loaded = store.load(&id).unwrap();
    assert_eq!(
        loaded.storage["f"].as_f64().unwrap().to_bits(),
        DRIFTING.to_bits()
    );
    let through_json = Snapshot::from_json(&loaded.to_json()).unwrap();
    assert_eq!(through_json, loaded);
    let outputs: Vec<f64> = loaded
        .events
        .iter()
        .filter_map(|e| e.result.as_ref().and_then(Value::as_f64))
        .collect();
    assert!(
        outputs.iter().any(|o| o.to_bits() == DRIFTING.to_bits()),
        "{outputs:?}"
    );

    // Any float: what is written is what is read.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20_000 {
        let f = f64::from_bits(rng.u64(..));
        if f.is_finite() {
            let back: f64 = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{f:e}");
        }
    }
}

/// An exported run's file as JSON, to be edited.
async fn exported() -> (tempfile::TempDir, PathBuf, Value) {
    let (dir, path) = db_path();
    let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open(&path).unwrap());
    let id = finished_run(&store, "p").await;
    let file = dir.path().join("run.json");
    json::export(store.as_ref(), &id, &file).unwrap();
    let doc = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    (dir, file, doc)
}

#[tokio::test]
async fn timestamps_finer_than_a_microsecond_are_refused_and_exact_ones_round_trip() {
    let (dir, file, mut doc) = exported().await;
    let created = doc["created_at"].as_str().unwrap().to_owned();
    assert_eq!(
        created.len(),
        "2024-01-01T00:00:00.000000Z".len(),
        "{created}"
    );

    // Nanoseconds would be cut to microseconds: the import would change the run.
    doc["created_at"] = json!(created.replace('Z', "789Z"));
    std::fs::write(&file, doc.to_string()).unwrap();
    let err = json::read_file(&file).unwrap_err();
    assert!(matches!(err, StoreError::Malformed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("finer than a microsecond"),
        "{err}"
    );
    doc["created_at"] = json!(created);
    let event_time = doc["events"][0]["timestamp"].as_str().unwrap().to_owned();
    doc["events"][0]["timestamp"] = json!(event_time.replace('Z', "001Z"));
    std::fs::write(&file, doc.to_string()).unwrap();
    assert!(json::read_file(&file).is_err());

    // Trailing zeros are exact: import then export gives the same values back.
    doc["events"][0]["timestamp"] = json!(event_time.replace('Z', "000Z"));
    std::fs::write(&file, doc.to_string()).unwrap();
    let other = SqliteStore::open(dir.path().join("other.db")).unwrap();
    let imported = json::import(&other, &file).unwrap();
    let again = dir.path().join("again.json");
    let exported = json::export(&other, &imported.state_id, &again).unwrap();
    assert_eq!(exported, imported);
    let text: Value = serde_json::from_str(&std::fs::read_to_string(&again).unwrap()).unwrap();
    assert_eq!(text["events"][0]["timestamp"], json!(event_time));
    assert_eq!(text["created_at"], json!(created));
}

#[tokio::test]
async fn a_key_given_twice_in_an_import_file_is_refused() {
    let (_dir, file, doc) = exported().await;
    let text = doc.to_string();
    let storage = r#""storage":{"k":{"a":1}}"#;
    assert!(text.contains(storage), "{text}");
    let cases = [
        (
            "storage",
            text.replace(storage, r#""storage":{"k":{"a":1},"k":{"a":2}}"#),
        ),
        (
            "metadata.custom",
            text.replace(
                r#""metadata":{"#,
                r#""metadata":{"custom":{"pipeline_source":"a","pipeline_source":"b"},"#,
            ),
        ),
        (
            "artifacts",
            text.replace(
                r#""artifacts":{}"#,
                r#""artifacts":{"n":{"sha256":"00","size":0},"n":{"sha256":"00","size":0}}"#,
            ),
        ),
    ];
    for (field, edited) in cases {
        assert_ne!(edited, text, "{field}: the edit applies");
        std::fs::write(&file, &edited).unwrap();
        let err = json::read_file(&file).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, StoreError::Malformed { .. }),
            "{field}: {err:?}"
        );
        assert!(
            message.contains("appears twice") && message.contains(&format!("`{field}`")),
            "{field}: {message}"
        );
    }
    // One value per key reads as before.
    std::fs::write(&file, &text).unwrap();
    json::read_file(&file).unwrap();
}
