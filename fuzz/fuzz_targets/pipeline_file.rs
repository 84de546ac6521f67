//! Any text as a pipeline file: validation never panics, and every diagnostic points inside
//! the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(diagnostics) = rh_agents_cli::pipeline::parse(text, Path::new("fuzz.toml")) {
        let lines = text.split('\n').count();
        for d in diagnostics {
            assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}", d.line);
            let _ = d.to_string();
        }
    }
});
