//! The embedded default store: one SQLite file (WAL mode) holding any number of runs.
//!
//! - Records are appended as they happen, one row each (`events(run_id, seq, body)`): saving
//!   the 50,000th record costs what saving the first did.
//! - Durability: records are committed as the state's [`CommitMode`](crate::CommitMode) says
//!   (by default before the step they record goes on). With `synchronous=NORMAL`
//!   (the default here) a commit survives the process being killed at any instant; a power
//!   loss may lose the last commits. [`SqliteStore::open_with`] with
//!   [`Durability::Full`] syncs each commit to disk as well.
//! - Readers in other processes never see "database is locked": WAL lets them read while the
//!   writer writes, and a busy timeout covers the short moments when SQLite needs exclusivity.
//! - Reading never writes: [`SqliteStore::open_read_only`] opens the file read-only (it works
//!   on a store the user may only read) and leaves it, its write-ahead log and its directory
//!   as they were.
//! - Listing reads only the `runs` table: each run's row keeps its record count and the time
//!   of its latest record, updated with every append, so `list` costs the same whatever the
//!   size of the histories. (Stores of layout 1, which lack these columns, are migrated by
//!   the first writer that opens them; read-only, they are listed the slow way.)
//! - One writer per run: an OS file lock beside the database (`<db>.locks/`), which the system
//!   releases when the process dies, so a killed writer never blocks a resume. The lock file
//!   is removed when the writer lets go (see [`lock_path`]).
//! - Reading fails closed: a record that cannot be read is an error naming the run and record;
//!   a time outside 1970–9999 is one too, naming the column.
//! - A write waits up to 5 s for a lock another connection holds (a large save or import into
//!   the same file). Records are written by the state's writer, off the callers' threads, many
//!   per transaction (`append_events`: `BEGIN IMMEDIATE`, the rows, one commit); a write that
//!   still fails stops the run, and the records are kept and written again.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde_json::Value;

use super::artifact::{is_sha256_hex, sha256_hex};
use super::{
    ArtifactRef, ListFilter, RunInfo, RunMetadata, RunStatus, SchemaVersion, Snapshot, StateStore,
    StoreError, WriteLock,
};
use crate::event::Event;
use crate::interrupt::InterruptSignal;

/// Identifies an rh-agents database (`PRAGMA application_id`, "rhag").
const APPLICATION_ID: i64 = 0x7268_6167;
/// The layout of the tables; a database of a later layout is refused. Layout 2 added
/// `runs.records` and keeps `runs.updated_us` at the latest record's time.
const STORE_SCHEMA: i64 = 2;
/// The first layout, which a writer migrates and a reader lists the slow way.
const LAYOUT_1: i64 = 1;
/// The last microsecond a stored time may hold: 9999-12-31T23:59:59.999999Z (the RFC 3339
/// form has four-digit years; times before 1970 are not written by rh-agents either).
const MAX_TIME_US: i64 = 253_402_300_799_999_999;
/// How long taking a run's writer lock waits out a reader's probe of it.
const LOCK_PATIENCE: Duration = Duration::from_millis(250);
/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id         TEXT PRIMARY KEY,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    status     TEXT NOT NULL,
    pipeline   TEXT,
    metadata   TEXT NOT NULL,
    interrupt  TEXT,
    records    INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_us DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq    INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS storage (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    run_id     TEXT NOT NULL REFERENCES runs (id),
    name       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    media_type TEXT,
    PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    size   INTEGER NOT NULL,
    data   BLOB NOT NULL
) WITHOUT ROWID;
";

/// How hard each commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives the process being killed at any instant (`synchronous=NORMAL`): the default.
    #[default]
    Process,
    /// Also survives a power loss: each commit is synced to disk (`synchronous=FULL`), which
    /// costs a disk flush per record.
    Full,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    /// The database file; `None` for an in-memory database.
    path: Option<PathBuf>,
    /// The layout of the tables as opened: [`STORE_SCHEMA`], or older in a store opened
    /// read-only (0: an empty file, no tables).
    layout: i64,
    /// Opened with [`SqliteStore::open_read_only`].
    read_only: bool,
    /// Writers of an in-memory database (which no other process can see).
    local_writers: Arc<Mutex<HashSet<String>>>,
    /// Interrupt requests left through this connection, which its own `PRAGMA data_version`
    /// does not count (it counts commits by other connections).
    requests: AtomicU64,
}

/// Runs kept in an SQLite file. Clones share one connection; other processes open their own.
///
/// # Examples
///
/// ```
/// use rh_agents::store::{ListFilter, SqliteStore, StateStore};
///
/// let dir = tempfile::tempdir().unwrap();
/// let store = SqliteStore::open(dir.path().join("state.db")).unwrap();
/// let snapshot = rh_agents::ExecutionState::new().snapshot();
/// store.save(&snapshot).unwrap();
/// assert_eq!(store.list(&ListFilter::new()).unwrap().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn db(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend {
        context: context.to_owned(),
        source: Box::new(e),
    }
}

/// A time as stored: microseconds since 1970 (`None` outside 1970–9999, which no reader could
/// show).
fn to_us(t: SystemTime) -> Option<i64> {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_micros())
        .ok()
        .filter(|us| *us <= MAX_TIME_US)
}

/// A time about to be written, refused (rather than stored unreadable) outside 1970–9999.
fn checked_us(id: &str, what: &str, t: SystemTime) -> Result<i64, StoreError> {
    to_us(t).ok_or_else(|| StoreError::Conflict {
        id: id.to_owned(),
        reason: format!(
            "its {what} time is not between 1970 and 9999 (a store keeps only times it can \
             show); give a time in that range"
        ),
    })
}

/// Reads a stored time, failing closed (naming the run and the column) on a value outside
/// 1970–9999: such a row was damaged or written by another program, and formatting it would
/// fail further on.
fn time_from_us(id: &str, column: &str, us: i64) -> Result<SystemTime, StoreError> {
    if (0..=MAX_TIME_US).contains(&us) {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_micros(us.unsigned_abs()))
    } else {
        Err(StoreError::corrupt(
            id,
            format!("column {column}"),
            format!(
                "{us} µs since 1970 is not a time between 1970 and 9999 (the row was damaged \
                 or written by another program); delete the run or restore the store"
            ),
        ))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, with its parent directories.
    ///
    /// # Errors
    ///
    /// [`StoreError::ForeignStore`] when the file is not an rh-agents database (or one of a
    /// later layout); [`StoreError::Io`]/[`StoreError::Backend`] when it cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::Process)
    }

    /// [`open`](Self::open) with a chosen [`Durability`].
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
        }
        let conn = Connection::open(path).map_err(|e| foreign(path, &e))?;
        Self::init(conn, Some(path.to_path_buf()), durability)
    }

    /// Opens the store at `path` only if it exists (for commands that only read or that
    /// act on runs already there: a mistyped path must not create an empty store).
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (not found) when there is no file at `path`; as
    /// [`open`](Self::open) otherwise.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(not_here(path));
        }
        Self::open(path)
    }

    /// Opens the store at `path` for reading only: nothing is written to the file, its
    /// write-ahead log or its directory (no migration, no checkpoint, no lock file), so a
    /// store the user may only read can be listed and shown. Writing through the handle fails.
    ///
    /// A store whose directory cannot be written and that has no write-ahead log beside it
    /// (no process has it open) is read as an immutable file.
    ///
    /// # Examples
    ///
    /// ```
    /// use rh_agents::store::{ListFilter, SqliteStore, StateStore};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("state.db");
    /// SqliteStore::open(&path).unwrap().save(&rh_agents::ExecutionState::new().snapshot()).unwrap();
    ///
    /// let reader = SqliteStore::open_read_only(&path).unwrap();
    /// assert_eq!(reader.list(&ListFilter::new()).unwrap().len(), 1);
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] (not found) when there is no file at `path`;
    /// [`StoreError::ForeignStore`] when it is not an rh-agents database (or one of a later
    /// layout) or cannot be read.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(not_here(path));
        }
        let open = |immutable: bool| -> Result<(Connection, i64), StoreError> {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn = Connection::open_with_flags(file_uri(path, immutable), flags)
                .map_err(|e| foreign(path, &e))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .map_err(db("setting the busy timeout"))?;
            let layout = check_header(&conn, path)?;
            Ok((conn, layout))
        };
        let (conn, layout) = match open(false) {
            Ok(opened) => opened,
            // SQLite needs the `-wal` and `-shm` files of a WAL database, or a directory where
            // it can make them. Without a write-ahead log the file holds every commit, and
            // nobody has it open to write: it can be read as it is.
            Err(first) if !has_wal(path) => open(true).map_err(|_| first)?,
            Err(first) => return Err(first),
        };
        Ok(Self::new(conn, Some(path.to_path_buf()), layout, true))
    }

    /// A store in memory (for tests): nothing is written to disk.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite cannot start.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db("opening an in-memory database"))?;
        Self::init(conn, None, Durability::Process)
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    fn new(conn: Connection, path: Option<PathBuf>, layout: i64, read_only: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                path,
                layout,
                read_only,
                local_writers: Arc::default(),
                requests: AtomicU64::new(0),
            }),
        }
    }

    fn init(
        conn: Connection,
        path: Option<PathBuf>,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let shown = path.clone().unwrap_or_else(|| PathBuf::from(":memory:"));
        let refuse = |reason: String| StoreError::ForeignStore {
            path: shown.clone(),
            reason,
        };
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db("setting the busy timeout"))?;
        let version = check_header(&conn, &shown)?;
        // Switching a new database to WAL takes an exclusive lock that SQLite does not wait
        // for (no busy handler there): when several processes open a new store at once, the
        // others wait here instead.
        let mode: String =
            busy_retry(|| conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)))
                .map_err(db("switching to WAL mode"))?;
        // An in-memory database reports "memory"; a file must really be in WAL mode, or
        // readers in other processes would block the writer.
        if path.is_some() && !mode.eq_ignore_ascii_case("wal") {
            return Err(refuse(format!(
                "SQLite could not switch it to WAL mode (it stays in {mode:?} mode): the file \
                 system may not support it; put the store on a local disk"
            )));
        }
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            // The write-ahead log shrinks back to 64 MiB after a checkpoint: a run that once
            // wrote a large burst does not keep a large file for the life of the store.
            "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
             PRAGMA journal_size_limit = 67108864;"
        ))
        .map_err(db("setting pragmas"))?;
        if version < STORE_SCHEMA {
            busy_retry(|| conn.execute_batch("BEGIN IMMEDIATE"))
                .map_err(db("creating the tables"))?;
            match migrate(&conn).and_then(|()| conn.execute_batch("COMMIT")) {
                Ok(()) => {}
                Err(e) => {
                    // A failed batch may leave its transaction open.
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(db("creating the tables")(e));
                }
            }
        }
        Ok(Self::new(conn, path, STORE_SCHEMA, false))
    }

    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.inner.conn.lock()
    }

    fn lock_file(&self, id: &str) -> Option<PathBuf> {
        let path = self.inner.path.as_ref()?;
        let mut dir = path.as_os_str().to_owned();
        dir.push(".locks");
        // A hash, so that any id (with slashes, dots…) makes a safe file name.
        let name = &sha256_hex(id.as_bytes())[..32];
        Some(PathBuf::from(dir).join(format!("{name}.lock")))
    }

    fn run_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
        conn.query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(db("reading a run"))
    }

    /// Reads a run's row: `id, created_us, updated_us, status, metadata` in columns 0–4 (the
    /// record count is left to the caller). Each failure names the column.
    fn read_header(id: &str, row: &rusqlite::Row<'_>) -> Result<RunInfo, StoreError> {
        let column = |name: &str| {
            let name = format!("column {name}");
            move |e: rusqlite::Error| StoreError::corrupt(id, name, e)
        };
        let status: String = row.get(3).map_err(column("status"))?;
        let metadata: String = row.get(4).map_err(column("metadata"))?;
        Ok(RunInfo {
            id: row.get(0).map_err(column("id"))?,
            created_at: time_from_us(id, "created_us", row.get(1).map_err(column("created_us"))?)?,
            updated_at: time_from_us(id, "updated_us", row.get(2).map_err(column("updated_us"))?)?,
            status: RunStatus::parse(&status).ok_or_else(|| {
                StoreError::corrupt(id, "column status", format!("unknown status {status:?}"))
            })?,
            metadata: serde_json::from_str::<RunMetadata>(&metadata)
                .map_err(|e| StoreError::corrupt(id, "metadata", e))?,
            events: 0,
        })
    }

    /// Reads one row of [`list`](StateStore::list)'s query (see [`Self::list_query`]).
    fn read_listed(&self, row: &rusqlite::Row<'_>) -> Result<RunInfo, StoreError> {
        let id: String = match row.get(0) {
            Ok(id) => id,
            Err(e) => {
                let rowid: i64 = row.get(7).unwrap_or_default();
                return Err(StoreError::corrupt(
                    &format!("(row {rowid})"),
                    "column id",
                    e,
                ));
            }
        };
        let mut info = Self::read_header(&id, row)?;
        if self.inner.layout >= STORE_SCHEMA {
            let records: Option<i64> = row
                .get(5)
                .map_err(|e| StoreError::corrupt(&id, "column records", e))?;
            info.events = match records {
                Some(n) => u64::try_from(n).map_err(|_| {
                    StoreError::corrupt(&id, "column records", format!("{n} is negative"))
                })?,
                None => {
                    return Err(StoreError::corrupt(
                        &id,
                        "column seq of its records",
                        "the records could not be counted when the store was upgraded; \
                         loading the run names the damaged record",
                    ))
                }
            };
        } else {
            info.events = legacy_count(row.get(5))
                .map_err(|e| StoreError::corrupt(&id, "column seq of its records", e))?;
            let last: Option<String> = row.get(6).unwrap_or_default();
            if let Some(at) = last.as_deref().and_then(record_time) {
                info.updated_at = info.updated_at.max(at);
            }
        }
        Ok(info)
    }

    /// The query behind `list`: columns as [`Self::read_header`] reads them, then the record
    /// count (layout 1: the highest record number), the last record (layout 1 only) and the
    /// rowid.
    fn list_query(&self) -> &'static str {
        if self.inner.layout >= STORE_SCHEMA {
            "SELECT id, created_us, updated_us, status, metadata, records, NULL, rowid
             FROM runs
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR pipeline = ?2)
             ORDER BY created_us DESC, rowid DESC"
        } else {
            // A store of layout 1 opened read-only: it cannot be upgraded, so the count and
            // the latest time come from the records themselves.
            "SELECT id, created_us, updated_us, status, metadata,
                    (SELECT MAX(seq) FROM events WHERE run_id = runs.id),
                    (SELECT body FROM events WHERE run_id = runs.id ORDER BY seq DESC LIMIT 1),
                    rowid
             FROM runs
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR pipeline = ?2)
             ORDER BY created_us DESC, rowid DESC"
        }
    }

    fn insert_header(conn: &Connection, info: &RunInfo) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&info.metadata).map_err(|e| StoreError::Backend {
            context: "writing metadata".into(),
            source: Box::new(e),
        })?;
        conn.execute(
            "INSERT INTO runs (id, created_us, updated_us, status, pipeline, metadata, records)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
            params![
                info.id,
                checked_us(&info.id, "start", info.created_at)?,
                checked_us(&info.id, "update", info.updated_at)?,
                info.status.as_str(),
                info.metadata.pipeline,
                metadata
            ],
        )
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => StoreError::AlreadyExists {
                id: info.id.clone(),
            },
            _ => db("creating a run")(e),
        })?;
        Ok(())
    }

    fn delete_rows(conn: &Connection, id: &str) -> Result<bool, StoreError> {
        for table in ["events", "storage", "artifacts"] {
            conn.execute(&format!("DELETE FROM {table} WHERE run_id = ?1"), [id])
                .map_err(db("deleting a run"))?;
        }
        let runs = conn
            .execute("DELETE FROM runs WHERE id = ?1", [id])
            .map_err(db("deleting a run"))?;
        Ok(runs > 0)
    }

    /// Inserts records that continue the stored numbering. One record is checked and written
    /// by one statement (the check and the write cannot be separated); a batch is checked once
    /// against the store and then in itself, and written row by row in the caller's
    /// transaction. A gap would make the run unloadable, so it is refused.
    fn insert_events(conn: &Connection, id: &str, events: &[Arc<Event>]) -> Result<(), StoreError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let refuse = |event: &Event| -> StoreError {
            match Self::run_exists(conn, id) {
                Ok(false) => StoreError::NotFound { id: id.to_owned() },
                Err(e) => e,
                Ok(true) => StoreError::Conflict {
                    id: id.to_owned(),
                    reason: format!(
                        "record #{} does not continue the stored numbering (already stored, \
                         or records before it are missing)",
                        event.id
                    ),
                },
            }
        };
        if let [one] = events {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO events (run_id, seq, body)
                     SELECT ?1, ?2, ?3
                     WHERE ?2 = (SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?1)",
                )
                .and_then(|mut insert| insert.execute(params![id, seq_of(one), one.to_json()]))
                .map_err(|e| Self::insert_error(conn, id, one, e))?;
            return if inserted == 1 {
                Self::note_records(conn, id, one)
            } else {
                Err(refuse(one))
            };
        }
        let next: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run_id = ?1",
                [id],
                |r| r.get(0),
            )
            .map_err(db("appending records"))?;
        if seq_of(first) != next {
            return Err(refuse(first));
        }
        if let Some(pair) = events.windows(2).find(|w| w[1].id != w[0].id + 1) {
            return Err(refuse(&pair[1]));
        }
        let mut insert = conn
            .prepare_cached("INSERT INTO events (run_id, seq, body) VALUES (?1, ?2, ?3)")
            .map_err(db("appending records"))?;
        for event in events {
            insert
                .execute(params![id, seq_of(event), event.to_json()])
                .map_err(|e| Self::insert_error(conn, id, event, e))?;
        }
        match events.last() {
            Some(last) => Self::note_records(conn, id, last),
            None => Ok(()),
        }
    }

    /// Keeps what listing needs in the run's row, in the transaction that appended `last`:
    /// the record count and the time of the latest record.
    fn note_records(conn: &Connection, id: &str, last: &Event) -> Result<(), StoreError> {
        conn.prepare_cached(
            "UPDATE runs SET records = ?2, updated_us = MAX(updated_us, COALESCE(?3, updated_us))
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                seq_of(last).saturating_add(1),
                to_us(last.timestamp)
            ])
        })
        .map_err(db("appending records"))?;
        Ok(())
    }

    fn insert_error(conn: &Connection, id: &str, event: &Event, e: rusqlite::Error) -> StoreError {
        match e.sqlite_error_code() {
            Some(ErrorCode::ConstraintViolation) => match Self::run_exists(conn, id) {
                Ok(false) => StoreError::NotFound { id: id.to_owned() },
                Err(e) => e,
                Ok(true) => StoreError::Conflict {
                    id: id.to_owned(),
                    reason: format!("record #{} is stored already", event.id),
                },
            },
            _ => db("appending records")(e),
        }
    }

    fn put_storage_row(
        conn: &Connection,
        id: &str,
        key: &str,
        value: &Value,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "INSERT INTO storage (run_id, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut s| s.execute(params![id, key, value.to_string()]))
        .map_err(|e| not_found_or(id, e, "saving storage"))?;
        Ok(())
    }

    fn put_artifact_row(
        conn: &Connection,
        id: &str,
        name: &str,
        artifact: &ArtifactRef,
    ) -> Result<(), StoreError> {
        conn.execute(
            "INSERT INTO artifacts (run_id, name, sha256, size, media_type)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (run_id, name) DO UPDATE SET
               sha256 = excluded.sha256, size = excluded.size, media_type = excluded.media_type",
            params![
                id,
                name,
                artifact.sha256,
                i64::try_from(artifact.size).unwrap_or(i64::MAX),
                artifact.media_type
            ],
        )
        .map_err(|e| not_found_or(id, e, "naming an artifact"))?;
        Ok(())
    }
}

fn seq_of(event: &Event) -> i64 {
    i64::try_from(event.id).unwrap_or(i64::MAX)
}

/// Runs `f` again while SQLite answers "busy", for up to the busy timeout.
fn busy_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match f() {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// When a stored record was made (`None` if it cannot be read: listing is not where a
/// corrupt record is reported; loading the run is).
fn record_time(body: &str) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Stamp {
        #[serde(with = "crate::serde_time::timestamp")]
        timestamp: SystemTime,
    }
    serde_json::from_str::<Stamp>(body)
        .ok()
        .map(|s| s.timestamp)
}

/// The error for a store path with no file.
fn not_here(path: &Path) -> StoreError {
    StoreError::io(
        path,
        std::io::Error::new(std::io::ErrorKind::NotFound, "no store here"),
    )
}

/// `path` as an SQLite URI for reading only (`immutable`: no locks, no write-ahead log).
fn file_uri(path: &Path, immutable: bool) -> String {
    use std::os::unix::ffi::OsStrExt as _;
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str(if immutable {
        "?mode=ro&immutable=1"
    } else {
        "?mode=ro"
    });
    uri
}

/// Whether commits may wait in the write-ahead log beside `path` (which an immutable read
/// would miss).
fn has_wal(path: &Path) -> bool {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).is_ok_and(|m| m.len() > 0)
}

/// Reads what tells an rh-agents store from any other file (the first read of a database);
/// returns its layout (0: an empty file).
fn check_header(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let refuse = |reason: String| StoreError::ForeignStore {
        path: path.to_path_buf(),
        reason,
    };
    let (app_id, version, tables): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT application_id FROM pragma_application_id),
                    (SELECT user_version FROM pragma_user_version),
                    (SELECT count(*) FROM sqlite_master)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| foreign(path, &e))?;
    if tables > 0 && app_id != APPLICATION_ID {
        return Err(refuse(
            "this SQLite database belongs to another program (it is not an rh-agents \
             store); choose another path"
                .into(),
        ));
    }
    if version > STORE_SCHEMA {
        return Err(refuse(format!(
            "this store was written by a newer rh-agents (store layout {version}; this \
             build knows layout {STORE_SCHEMA}); upgrade rh-agents to read it"
        )));
    }
    Ok(version)
}

/// Brings the tables to [`STORE_SCHEMA`], inside the caller's write transaction (so that of
/// several processes opening the store at once, one migrates and the others see it done).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        conn.execute_batch(SCHEMA)?;
    } else if version == LAYOUT_1 {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN records INTEGER")?;
        // Once per store: count each run's records and read the time of its last one. A count
        // that cannot be made (a damaged `seq`) stays NULL, which listing reports.
        let mut counted = Vec::new();
        {
            let mut rows = conn.prepare(LEGACY_COUNTS)?;
            let mut rows = rows.query([])?;
            while let Some(row) = rows.next()? {
                let rowid: i64 = row.get(0)?;
                let records = legacy_count(row.get(1)).ok();
                let last = row
                    .get::<_, Option<String>>(2)
                    .ok()
                    .flatten()
                    .and_then(|body| record_time(&body))
                    .and_then(to_us);
                counted.push((rowid, records, last));
            }
        }
        let mut update = conn.prepare(
            "UPDATE runs SET records = ?2, updated_us = MAX(updated_us, COALESCE(?3, updated_us))
             WHERE rowid = ?1",
        )?;
        for (rowid, records, last) in counted {
            update.execute(params![rowid, records, last])?;
        }
    }
    conn.execute_batch(&format!(
        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {STORE_SCHEMA};"
    ))
}

/// Per run of a layout-1 store: its row, its highest record number and its last record.
const LEGACY_COUNTS: &str = "
SELECT rowid, (SELECT MAX(seq) FROM events WHERE run_id = runs.id),
       (SELECT body FROM events WHERE run_id = runs.id ORDER BY seq DESC LIMIT 1)
FROM runs";

/// The record count from the highest record number (`None`: no records).
fn legacy_count(max_seq: rusqlite::Result<Option<i64>>) -> Result<u64, String> {
    match max_seq {
        Ok(None) => Ok(0),
        Ok(Some(seq)) => seq
            .checked_add(1)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("record number {seq} is out of range")),
        Err(e) => Err(format!("a record number is not an integer: {e}")),
    }
}

/// A foreign-key failure means the run is not there.
fn not_found_or(id: &str, e: rusqlite::Error, context: &'static str) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => StoreError::NotFound { id: id.to_owned() },
        _ => db(context)(e),
    }
}

/// Explains an error met while opening: a file that is not a database says so.
fn foreign(path: &Path, e: &rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::ForeignStore {
            path: path.to_path_buf(),
            reason: "this file is not an SQLite database (it may be corrupt, or not a store at \
                     all); choose another path or restore it from a backup"
                .into(),
        },
        _ => StoreError::ForeignStore {
            path: path.to_path_buf(),
            reason: format!("cannot open it as a store: {e}"),
        },
    }
}

/// Takes the writer lock file at `path`: `Ok(Err(holder))` when another writer holds it.
///
/// The holder removes the file when it lets go, while it still holds the lock: so the
/// directory keeps no file per finished run. Another process may have opened the file just
/// before it was removed and then lock that removed file; it would hold nothing, since a
/// third process creates a new file at the path. So after locking, the file locked must
/// still be the one at the path (same device and inode); if not, it is opened anew.
fn lock_path(path: &Path) -> Result<Result<LockedFile, String>, StoreError> {
    // Each round needs a holder to finish between our open and our lock: a few rounds are
    // plenty, and the bound keeps a pathological file system from spinning.
    for _ in 0..100 {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        // A reader probing the lock (`is_writing`) holds it for an instant: wait that out
        // before calling the run taken.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        let mut attempt = file.try_lock();
        while matches!(attempt, Err(std::fs::TryLockError::WouldBlock))
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
            attempt = file.try_lock();
        }
        match attempt {
            Ok(()) => {
                if !is_at(&file, path).map_err(|e| StoreError::io(path, e))? {
                    // Removed (or replaced) by the writer that held it: lock what is there now.
                    continue;
                }
                // Who holds it, for the message another writer gets.
                let holder = format!("process {}", std::process::id());
                let written = file
                    .set_len(0)
                    .and_then(|()| file.rewind())
                    .and_then(|()| file.write_all(holder.as_bytes()));
                written.map_err(|e| StoreError::io(path, e))?;
                return Ok(Ok(LockedFile {
                    _file: file,
                    path: path.to_path_buf(),
                }));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // A best-effort read of who holds it; the refusal stands either way.
                let _ = file.read_to_string(&mut holder);
                if holder.is_empty() {
                    holder = "another process".to_owned();
                }
                return Ok(Err(holder));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io(path, e)),
        }
    }
    Err(StoreError::io(
        path,
        std::io::Error::other(
            "the lock file kept being replaced while it was being taken; try again",
        ),
    ))
}

/// Whether `file` is the file at `path` now (not removed or replaced since it was opened).
fn is_at(file: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let held = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(there) => Ok(there.dev() == held.dev() && there.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A locked file: the OS releases the lock when the file is closed or the process dies.
/// Dropping it removes the file first, while the lock is still held (see [`lock_path`]); a
/// killed writer leaves its file, which the next writer takes and removes in turn.
struct LockedFile {
    /// Held open for the lock; closed after the file is removed (fields drop after `drop`).
    _file: File,
    path: PathBuf,
}

impl Drop for LockedFile {
    fn drop(&mut self) {
        // Still locked here: nobody else can be holding this file. Best effort: a file left
        // behind (a read-only directory) is harmless, the next writer takes it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Releases an in-memory writer's claim.
struct LocalClaim {
    writers: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for LocalClaim {
    fn drop(&mut self) {
        self.writers.lock().remove(&self.id);
    }
}

impl StateStore for SqliteStore {
    fn create(&self, info: &RunInfo) -> Result<(), StoreError> {
        let conn = self.conn();
        Self::insert_header(&conn, info)
    }

    fn save(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        snapshot.schema_version.check()?;
        snapshot.check_ids()?;
        // Held while writing: nobody else may write this run meanwhile.
        let _writer = self.lock_writer(&snapshot.state_id)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db("saving a run"))?;
        Self::delete_rows(&tx, &snapshot.state_id)?;
        Self::insert_header(
            &tx,
            &RunInfo {
                id: snapshot.state_id.clone(),
                status: snapshot.status,
                created_at: snapshot.created_at,
                updated_at: snapshot.updated_at,
                metadata: snapshot.metadata.clone(),
                events: 0,
            },
        )?;
        let events: Vec<Arc<Event>> = snapshot.events.iter().cloned().map(Arc::new).collect();
        Self::insert_events(&tx, &snapshot.state_id, &events)?;
        for (key, value) in &snapshot.storage {
            Self::put_storage_row(&tx, &snapshot.state_id, key, value)?;
        }
        for (name, artifact) in &snapshot.artifacts {
            Self::put_artifact_row(&tx, &snapshot.state_id, name, artifact)?;
        }
        tx.commit().map_err(db("saving a run"))
    }

    fn load(&self, id: &str) -> Result<Snapshot, StoreError> {
        if self.inner.layout == 0 {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        let mut conn = self.conn();
        // One read transaction: a consistent view even while the writer appends.
        let tx = conn.transaction().map_err(db("loading a run"))?;
        let info = tx
            .query_row(
                "SELECT id, created_us, updated_us, status, metadata FROM runs WHERE id = ?1",
                [id],
                |row| Ok(Self::read_header(id, row)),
            )
            .optional()
            .map_err(db("loading a run"))?
            .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })??;

        let mut events = Vec::new();
        {
            let mut rows = tx
                .prepare("SELECT seq, body FROM events WHERE run_id = ?1 ORDER BY seq")
                .map_err(db("loading records"))?;
            let mut rows = rows.query([id]).map_err(db("loading records"))?;
            while let Some(row) = rows.next().map_err(db("loading records"))? {
                let seq: i64 = row.get(0).map_err(db("loading records"))?;
                let record = format!("event #{seq}");
                if seq != events.len() as i64 {
                    return Err(StoreError::corrupt(
                        id,
                        record,
                        format!(
                            "expected record #{} here: records are missing",
                            events.len()
                        ),
                    ));
                }
                let body: String = row
                    .get(1)
                    .map_err(|e| StoreError::corrupt(id, record.clone(), e))?;
                let event: Event = serde_json::from_str(&body)
                    .map_err(|e| StoreError::corrupt(id, record.clone(), e))?;
                if event.id != seq as u64 {
                    return Err(StoreError::corrupt(
                        id,
                        record,
                        format!("it carries id {}", event.id),
                    ));
                }
                events.push(event);
            }
        }

        let mut storage = BTreeMap::new();
        {
            let mut rows = tx
                .prepare("SELECT key, value FROM storage WHERE run_id = ?1")
                .map_err(db("loading storage"))?;
            let mut rows = rows.query([id]).map_err(db("loading storage"))?;
            while let Some(row) = rows.next().map_err(db("loading storage"))? {
                let key: String = row.get(0).map_err(db("loading storage"))?;
                let text: String = row
                    .get(1)
                    .map_err(|e| StoreError::corrupt(id, format!("storage key {key:?}"), e))?;
                let value = serde_json::from_str(&text)
                    .map_err(|e| StoreError::corrupt(id, format!("storage key {key:?}"), e))?;
                storage.insert(key, value);
            }
        }

        let mut artifacts = BTreeMap::new();
        {
            let mut rows = tx
                .prepare("SELECT name, sha256, size, media_type FROM artifacts WHERE run_id = ?1")
                .map_err(db("loading artifacts"))?;
            let mut rows = rows.query([id]).map_err(db("loading artifacts"))?;
            while let Some(row) = rows.next().map_err(db("loading artifacts"))? {
                let name: String = row.get(0).map_err(db("loading artifacts"))?;
                let record = format!("artifact {name:?}");
                let sha256: String = row
                    .get(1)
                    .map_err(|e| StoreError::corrupt(id, record.clone(), e))?;
                if !is_sha256_hex(&sha256) {
                    return Err(StoreError::corrupt(id, record, "its hash is not a SHA-256"));
                }
                let size: i64 = row
                    .get(2)
                    .map_err(|e| StoreError::corrupt(id, record.clone(), e))?;
                let media_type: Option<String> = row
                    .get(3)
                    .map_err(|e| StoreError::corrupt(id, record.clone(), e))?;
                artifacts.insert(
                    name,
                    ArtifactRef {
                        sha256,
                        size: u64::try_from(size).unwrap_or(0),
                        media_type,
                    },
                );
            }
        }
        tx.commit().map_err(db("loading a run"))?;
        let last_record = events.last().map(|e| e.timestamp);
        Ok(Snapshot {
            schema_version: SchemaVersion::CURRENT,
            state_id: info.id,
            created_at: info.created_at,
            updated_at: last_record.map_or(info.updated_at, |at| info.updated_at.max(at)),
            status: info.status,
            metadata: info.metadata,
            events,
            storage,
            artifacts,
        })
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<RunInfo>, StoreError> {
        self.list_rows(filter)?.into_iter().collect()
    }

    fn list_rows(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<Result<RunInfo, StoreError>>, StoreError> {
        if self.inner.layout == 0 {
            // An empty file opened read-only: no tables, no runs.
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let mut query = conn
            .prepare_cached(self.list_query())
            .map_err(db("listing runs"))?;
        let mut rows = query
            .query(params![
                filter.status.map(RunStatus::as_str),
                filter.pipeline
            ])
            .map_err(db("listing runs"))?;
        let mut runs = Vec::new();
        let mut listed = 0;
        let limit = filter.limit.unwrap_or(usize::MAX);
        while listed < limit {
            let Some(row) = rows.next().map_err(db("listing runs"))? else {
                break;
            };
            match self.read_listed(row) {
                Ok(info) if filter.matches(&info) => {
                    listed += 1;
                    runs.push(Ok(info));
                }
                Ok(_) => {}
                Err(e) => runs.push(Err(e)),
            }
        }
        Ok(runs)
    }

    fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let _writer = self.lock_writer(id)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db("deleting a run"))?;
        let existed = Self::delete_rows(&tx, id)?;
        tx.commit().map_err(db("deleting a run"))?;
        Ok(existed)
    }

    fn exists(&self, id: &str) -> Result<bool, StoreError> {
        if self.inner.layout == 0 {
            return Ok(false);
        }
        Self::run_exists(&self.conn(), id)
    }

    fn append_events(&self, id: &str, events: &[Arc<Event>]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        // One transaction: the records and the run's row (its count and latest time) change
        // together. Immediate, so that it waits for another writer of the file up front
        // rather than failing when it turns from reading to writing.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db("appending records"))?;
        Self::insert_events(&tx, id, events)?;
        tx.commit().map_err(db("appending records"))
    }

    fn set_status(&self, id: &str, status: RunStatus) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET status = ?1, updated_us = ?2 WHERE id = ?3",
                params![
                    status.as_str(),
                    checked_us(id, "update", crate::serde_time::now())?,
                    id
                ],
            )
            .map_err(db("saving the status"))?;
        if changed == 0 {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        Ok(())
    }

    fn put_storage(&self, id: &str, key: &str, value: Option<&Value>) -> Result<(), StoreError> {
        let conn = self.conn();
        match value {
            Some(value) => Self::put_storage_row(&conn, id, key, value),
            None => {
                let removed = conn
                    .execute(
                        "DELETE FROM storage WHERE run_id = ?1 AND key = ?2",
                        params![id, key],
                    )
                    .map_err(db("removing a storage key"))?;
                if removed == 0 && !Self::run_exists(&conn, id)? {
                    return Err(StoreError::NotFound { id: id.to_owned() });
                }
                Ok(())
            }
        }
    }

    fn put_blob(&self, artifact: &ArtifactRef, bytes: &[u8]) -> Result<(), StoreError> {
        artifact.verify(bytes)?;
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO blobs (sha256, size, data) VALUES (?1, ?2, ?3)",
                params![artifact.sha256, bytes.len() as i64, bytes],
            )
            .map_err(db("storing an artifact"))?;
        Ok(())
    }

    fn get_blob(&self, artifact: &ArtifactRef) -> Result<Vec<u8>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .conn()
            .query_row(
                "SELECT data FROM blobs WHERE sha256 = ?1",
                [&artifact.sha256],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("reading an artifact"))?;
        let bytes = bytes.ok_or_else(|| StoreError::ArtifactMissing {
            sha256: artifact.sha256.clone(),
        })?;
        artifact.verify(&bytes)?;
        Ok(bytes)
    }

    fn put_artifact(&self, id: &str, name: &str, artifact: &ArtifactRef) -> Result<(), StoreError> {
        Self::put_artifact_row(&self.conn(), id, name, artifact)
    }

    fn lock_writer(&self, id: &str) -> Result<WriteLock, StoreError> {
        let Some(path) = self.lock_file(id) else {
            let writers = &self.inner.local_writers;
            if !writers.lock().insert(id.to_owned()) {
                return Err(StoreError::Locked {
                    id: id.to_owned(),
                    holder: "a state in this process".into(),
                });
            }
            return Ok(WriteLock::new(LocalClaim {
                writers: Arc::clone(writers),
                id: id.to_owned(),
            }));
        };
        if self.inner.read_only {
            return Err(StoreError::io(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "this store was opened read-only (SqliteStore::open_read_only); open it \
                     with SqliteStore::open to write a run",
                ),
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        }
        match lock_path(&path)? {
            Ok(locked) => Ok(WriteLock::new(locked)),
            Err(holder) => Err(StoreError::Locked {
                id: id.to_owned(),
                holder,
            }),
        }
    }

    fn is_writing(&self, id: &str) -> Result<bool, StoreError> {
        let Some(path) = self.lock_file(id) else {
            return Ok(self.inner.local_writers.lock().contains(id));
        };
        // A probe takes the lock shared, for an instant, and writes nothing.
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(StoreError::io(&path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(std::fs::TryLockError::WouldBlock) => Ok(true),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&path, e)),
        }
    }

    fn request_interrupt(&self, id: &str, signal: &InterruptSignal) -> Result<(), StoreError> {
        let body = serde_json::to_string(signal).map_err(|e| StoreError::Backend {
            context: "writing an interrupt request".into(),
            source: Box::new(e),
        })?;
        let changed = self
            .conn()
            .execute(
                "UPDATE runs SET interrupt = ?1 WHERE id = ?2",
                params![body, id],
            )
            .map_err(db("writing an interrupt request"))?;
        if changed == 0 {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        self.inner.requests.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn pending_interrupt(&self, id: &str) -> Result<Option<InterruptSignal>, StoreError> {
        let body: Option<Option<String>> = self
            .conn()
            .prepare_cached("SELECT interrupt FROM runs WHERE id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(db("reading interrupt requests"))?;
        match body.flatten() {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| StoreError::corrupt(id, "interrupt request", e)),
        }
    }

    fn clear_interrupt(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("UPDATE runs SET interrupt = NULL WHERE id = ?1", [id])
            .map_err(db("clearing an interrupt request"))?;
        Ok(())
    }

    /// `PRAGMA data_version`, which changes when another connection (in this process or
    /// another) commits, combined with the count of requests left through this connection.
    /// It reads one number from the shared-memory index: microseconds, no table read.
    fn mailbox_version(&self) -> Result<Option<u64>, StoreError> {
        let others: i64 = self
            .conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db("reading the data version"))?;
        let local = self.inner.requests.load(Ordering::Acquire);
        Ok(Some(others.unsigned_abs().wrapping_shl(32) ^ local))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed test

    use super::{is_at, lock_path, SqliteStore};

    #[test]
    fn the_write_ahead_log_is_kept_small_after_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("state.db")).unwrap();
        let limit: i64 = store
            .conn()
            .query_row("PRAGMA journal_size_limit", [], |r| r.get(0))
            .unwrap();
        assert_eq!(limit, 64 * 1024 * 1024);
    }

    #[test]
    fn a_lock_taken_on_a_file_removed_meanwhile_is_taken_again_on_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.lock");
        let first = lock_path(&path).unwrap().unwrap();
        // A second process opened the file before the first writer let go...
        let stale = std::fs::File::open(&path).unwrap();
        drop(first);
        assert!(
            !path.exists(),
            "the writer removes its file while holding the lock"
        );
        // ...and gets the lock on the removed file: it must see that it holds nothing.
        stale.try_lock().unwrap();
        assert!(!is_at(&stale, &path).unwrap());
        // A file made anew at the path is not the stale one either.
        let second = lock_path(&path).unwrap().unwrap();
        assert!(!is_at(&stale, &path).unwrap());
        assert!(path.exists());
        // And it is the lock: a third taker is refused, naming the holder.
        let holder = lock_path(&path).unwrap().err().unwrap();
        assert!(holder.starts_with("process "), "{holder}");
        drop(second);
        assert!(!path.exists());
    }
}
