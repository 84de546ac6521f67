//! A store whose rows were changed by something else (a disk error, another program, an
//! attacker): listing, loading and showing a run never panic, whatever a column holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rh_agents::store::{json, ListFilter, SqliteStore, StateStore};
use rusqlite::types::Value;

/// The columns a fuzz input may overwrite, with the row each one belongs to.
const COLUMNS: &[(&str, &str)] = &[
    ("runs", "created_us"),
    ("runs", "updated_us"),
    ("runs", "status"),
    ("runs", "pipeline"),
    ("runs", "metadata"),
    ("runs", "interrupt"),
    ("runs", "records"),
    ("runs", "id"),
    ("events", "seq"),
    ("events", "body"),
    ("storage", "key"),
    ("storage", "value"),
    ("artifacts", "sha256"),
    ("artifacts", "size"),
];

fn value(kind: u8, bytes: &[u8]) -> Value {
    let mut n = [0u8; 8];
    let len = bytes.len().min(8);
    n[..len].copy_from_slice(&bytes[..len]);
    match kind % 5 {
        0 => Value::Integer(i64::from_le_bytes(n)),
        1 => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
        2 => Value::Blob(bytes.to_vec()),
        3 => Value::Real(f64::from_le_bytes(n)),
        _ => Value::Null,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Some((&kind, bytes)) = rest.split_first() else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join("state.db");
    let (snapshot, _) = json::read_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/seeds/run.json"
    )))
    .expect("the seed run reads");
    {
        let store = SqliteStore::open(&path).expect("a new store opens");
        store.save(&snapshot).expect("the seed run saves");
    }
    let (table, column) = COLUMNS[usize::from(pick) % COLUMNS.len()];
    {
        let db = rusqlite::Connection::open(&path).expect("the store opens as a database");
        // Constraints may refuse the value: then there is nothing to read back.
        let _ = db.execute(
            &format!("UPDATE {table} SET {column} = ?1"),
            [value(kind, bytes)],
        );
    }
    let Ok(store) = SqliteStore::open_read_only(&path) else {
        return;
    };
    for row in store.list_rows(&ListFilter::default()).unwrap_or_default() {
        let Ok(info) = row else { continue };
        let _ = humantime::format_rfc3339_seconds(info.created_at).to_string();
        let _ = humantime::format_rfc3339_seconds(info.updated_at).to_string();
        if let Ok(loaded) = store.load(&info.id) {
            let _ = loaded.to_json_pretty();
            for event in &loaded.events {
                let _ = humantime::format_rfc3339_micros(event.timestamp).to_string();
            }
        }
    }
    let _ = store.load(&snapshot.state_id);
});
