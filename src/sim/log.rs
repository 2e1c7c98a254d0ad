//! The simulator's request log: each request as it saw it, kept in memory for the tests and,
//! with `--log`, as one JSON line in a file (what the benchmarks read).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;

use super::http::Request;
use super::lock;

/// One request as the simulator saw it (no header values: they may hold secrets).
#[derive(Clone, Debug)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    pub status: u16,
    /// When its head was read.
    pub arrived: Instant,
    /// When its answer was due to go: the latency after arrival, or when the answer was ready
    /// if that was later (recorded before the answer is sent).
    pub at: Instant,
}

/// Keeps `req` in `log` (and as a line in `file`), with the status and the size of its
/// answer's body; `at` is when the answer goes.
pub(super) fn record(
    log: &Mutex<Vec<Logged>>,
    file: Option<&Path>,
    req: &Request,
    (status, bytes): (u16, usize),
    (arrived, at): (Instant, Instant),
) {
    let entry = Logged {
        arrived,
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        status,
        at,
    };
    // Each line is formatted whole first, then written in one call under the log's lock:
    // concurrent requests never interleave their lines.
    let line = file.map(|_| {
        let mut line = serde_json::json!({
            "time": (Utc::now() + at.saturating_duration_since(Instant::now())).to_rfc3339(),
            "method": entry.method, "path": entry.path, "query": entry.query,
            "body": entry.body, "status": status, "bytes": bytes,
        })
        .to_string();
        line.push('\n');
        line
    });
    let mut log = lock(log);
    if let (Some(path), Some(line)) = (file, line) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    log.push(entry);
}
