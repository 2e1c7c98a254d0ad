//! The simulator's side of HTTP/1.1: its requests read with the crate's one parser
//! (`crate::http`, which `serve` uses too) and owned, with their bodies, and its answers written
//! by hand so that faults (a body cut in half, one byte a second, a reset) can be produced on
//! purpose.

use std::io::{self, BufRead, Write};

use crate::http::{self, Limits, Received};

/// A request head may be this large, its request line included (Cloud Eye's queries are long);
/// more is refused.
const LIMITS: Limits = Limits {
    head: 64 * 1024,
    request_line: 64 * 1024,
};
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

impl From<http::Request<'_>> for Request {
    fn from(r: http::Request<'_>) -> Request {
        let (path, query) = r.path_and_query();
        Request {
            method: r.method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            headers: r
                .headers()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }
}

pub enum ReadOutcome {
    Request(Request),
    /// The peer closed the connection between requests.
    Closed,
    /// A head the simulator will not take: answer this status (and why) and close.
    Bad(u16, String),
}

/// Reads one request head; the body is read only when `read_body` says so (a reset fault
/// closes with the body unread, which makes the kernel send RST).
pub fn read_head(reader: &mut impl BufRead) -> io::Result<ReadOutcome> {
    let refused = |status| ReadOutcome::Bad(status, http::refusal(status, LIMITS));
    Ok(match http::read_head(reader, LIMITS)? {
        Received::Closed => ReadOutcome::Closed,
        Received::Refused(status) => refused(status),
        Received::Head(head) => match head.parse() {
            Ok(req) => ReadOutcome::Request(req.into()),
            Err(status) => refused(status),
        },
    })
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

/// Response head with a Content-Length of `declared_len`.
pub fn head(
    status: u16,
    request_id: &str,
    declared_len: usize,
    extra: &[(String, String)],
    close: bool,
) -> Vec<u8> {
    let mut h = format!(
        "{}Content-Type: application/json;charset=UTF-8\r\nContent-Length: {declared_len}\r\nX-Request-Id: {request_id}\r\n",
        http::status_line(status)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> (ReadOutcome, Vec<u8>) {
        let mut reader = io::BufReader::new(bytes);
        let outcome = read_head(&mut reader).expect("no I/O error from a slice");
        let mut rest = Vec::new();
        io::Read::read_to_end(&mut reader, &mut rest).unwrap();
        (outcome, rest)
    }

    #[test]
    fn requests_are_read_by_the_shared_parser_and_owned() {
        let (got, rest) = read(
            b"POST /v1/p/maas?a=1&b=2 HTTP/1.1\r\nHost: h\r\nX-Sdk-Date: 20250101T000000Z\r\n\
              Content-Length: 4\r\n\r\nbodyGET",
        );
        let ReadOutcome::Request(mut req) = got else {
            panic!("a request");
        };
        assert_eq!(
            (req.method.as_str(), req.path.as_str(), req.query.as_str()),
            ("POST", "/v1/p/maas", "a=1&b=2")
        );
        assert_eq!(req.header("x-sdk-date"), Some("20250101T000000Z"));
        // The body is left for read_body, and the next request after it.
        assert_eq!(rest, b"bodyGET");
        read_body(&mut &rest[..], &mut req).unwrap();
        assert_eq!(req.body, b"body");
        assert!(matches!(read(b"").0, ReadOutcome::Closed));
    }

    #[test]
    fn a_head_the_parser_refuses_is_answered_with_its_status() {
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(LIMITS.head)
        );
        for (head, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], 400),
            (b"GET / HTTP/3\r\nHost: h\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHo", 400),
            (big.as_bytes(), 431),
        ] {
            let (got, _) = read(head);
            assert!(
                matches!(got, ReadOutcome::Bad(s, _) if s == status),
                "{status}"
            );
        }
        assert!(String::from_utf8_lossy(&head(431, "-", 0, &[], true))
            .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }
}
