//! Any bytes as an export file: reading never panics, and a file that reads writes back to a
//! file that reads as the same run (nothing drifts through the JSON form).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rh_agents::store::json;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let input = dir.path().join("in.json");
    if std::fs::write(&input, data).is_err() {
        return;
    }
    let Ok((snapshot, blobs)) = json::read_file(&input) else {
        return;
    };
    let output = dir.path().join("out.json");
    json::write_file(&output, &snapshot, &blobs).expect("a snapshot that was read can be written");
    let (again, blobs_again) = json::read_file(&output).expect("what was written reads back");
    assert_eq!(snapshot.to_json(), again.to_json(), "the run changed through a round trip");
    assert_eq!(blobs, blobs_again);
});
