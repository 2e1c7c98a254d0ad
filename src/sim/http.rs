//! Just enough HTTP/1.1 for the simulator, written by hand so that faults (a body cut in half,
//! one byte a second, a reset) can be produced on purpose.

use std::io::{self, BufRead, Write};

const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query, not decoded.
    pub path: String,
    /// The raw query string (after `?`), may be empty.
    pub query: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub enum ReadOutcome {
    Request(Request),
    /// The peer closed the connection between requests.
    Closed,
    /// Something the simulator will not parse; answer 400 and close.
    Bad(String),
}

/// Reads one request head; the body is read only when `read_body` says so (a reset fault
/// closes with the body unread, which makes the kernel send RST).
pub fn read_head(reader: &mut impl BufRead) -> io::Result<ReadOutcome> {
    let mut line = String::new();
    let mut total = 0usize;
    if reader.read_line(&mut line)? == 0 {
        return Ok(ReadOutcome::Closed);
    }
    total += line.len();
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(_version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Ok(ReadOutcome::Bad("malformed request line".into()));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
    };
    loop {
        let mut h = String::new();
        let n = reader.read_line(&mut h)?;
        total += n;
        if n == 0 || total > MAX_HEAD_BYTES {
            return Ok(ReadOutcome::Bad(
                "request head too large or truncated".into(),
            ));
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            req.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Ok(ReadOutcome::Request(req))
}

/// A body the simulator will not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("bad or too large content-length")]
    Length,
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub fn read_body(reader: &mut impl BufRead, req: &mut Request) -> Result<(), BodyError> {
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= MAX_BODY_BYTES => n,
            _ => return Err(BodyError::Length),
        },
    };
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    req.body = body;
    Ok(())
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Response head with a Content-Length of `declared_len`.
pub fn head(
    status: u16,
    request_id: &str,
    declared_len: usize,
    extra: &[(String, String)],
    close: bool,
) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {declared_len}\r\nX-Request-Id: {request_id}\r\n",
        reason(status)
    );
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    h.into_bytes()
}

pub fn write_all(stream: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}
