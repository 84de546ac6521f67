//! A tiny HTTP server for `examples/pipelines/http.toml` (std only, one connection at a time).
//!
//! - `GET /flaky` answers `503 Service Unavailable` with `Retry-After: 1` twice, then
//!   `200 token-<n>`, and so on in a cycle of three: every run of `http.toml` sees two retries.
//! - `POST /echo` answers `200` with the request body.
//! - anything else is `404`.
//!
//! Either let it run the pipeline itself (the server in a thread, then `rh-agents run` on
//! `http.toml`):
//!
//! ```text
//! cargo run -p rh-agents-cli --example http_server -- --run
//! ```
//!
//! or run it in one terminal and the pipeline in another:
//!
//! ```text
//! cargo run -p rh-agents-cli --example http_server          # listens on 127.0.0.1:8080
//! cargo run -p rh-agents-cli -- run examples/pipelines/http.toml
//! ```
#![allow(clippy::print_stdout)] // an example prints what happens: that is its job

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<std::process::ExitCode> {
    let arg = std::env::args().nth(1);
    if arg.as_deref() == Some("--run") {
        // The port the pipeline file names.
        let listener = TcpListener::bind("127.0.0.1:8080")?;
        std::thread::spawn(move || listen(&listener));
        let pipeline = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/pipelines/http.toml"
        );
        return Ok(
            match rh_agents_cli::cli::main_from(["rh-agents", "run", pipeline]) {
                Ok(code) => code,
                // Not reached with these arguments; shown as the command would show it.
                Err(usage) => {
                    usage.print()?;
                    std::process::ExitCode::from(2)
                }
            },
        );
    }
    let port = arg.unwrap_or_else(|| "8080".to_owned());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}"))?;
    println!("listening on http://127.0.0.1:{port} (Ctrl-C to stop)");
    listen(&listener)?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn listen(listener: &TcpListener) -> std::io::Result<()> {
    let mut flaky_calls = 0u64;
    for stream in listener.incoming() {
        let stream = stream?;
        if let Err(e) = serve(stream, &mut flaky_calls) {
            println!("connection error: {e}");
        }
    }
    Ok(())
}

fn serve(stream: TcpStream, flaky_calls: &mut u64) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    println!("{method} {path}");
    let (status, extra, text) = match (method, path) {
        ("GET", "/flaky") => {
            *flaky_calls += 1;
            if (*flaky_calls).is_multiple_of(3) {
                ("200 OK", "", format!("token-{}", *flaky_calls / 3))
            } else {
                (
                    "503 Service Unavailable",
                    "Retry-After: 1\r\n",
                    "warming up, try again in a second".to_owned(),
                )
            }
        }
        ("POST", "/echo") => ("200 OK", "", String::from_utf8_lossy(&body).into_owned()),
        _ => ("404 Not Found", "", "no such page".to_owned()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    out.flush()
}
