//! The simulator's fault switches: latency, throttling, 5xx, malformed answers, and answers
//! scripted one request at a time (a body cut in half, one byte a second, a reset...).

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use super::http;
use super::model;
use super::Reply;

/// A forced answer for the next request, for tests of one specific failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// Any status with a body and an optional `Retry-After` header value.
    Status {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// 200 with a JSON body cut in the middle.
    Malformed,
    /// 200 with an HTML body.
    NotJson,
    /// Declares the full length, sends half, closes.
    CutBody,
    /// Sends the answer one byte a second.
    Slow,
    /// Closes the connection without answering (with the body unread, so the peer sees a reset).
    Reset,
    /// A 10 MB answer.
    Huge,
    /// 200 with these exact bytes as body.
    Body(String),
    /// 200 with a JSON-looking body that is not UTF-8 (a byte 0xFF inside a string).
    NotUtf8,
}

#[derive(Clone, Debug)]
pub struct Faults {
    /// How long after its arrival a request is answered at the earliest.
    pub latency: Duration,
    /// At most this many admitted requests per `rate_window`; more get 429.
    pub rate_limit: Option<u32>,
    pub rate_window: Duration,
    /// `Retry-After` seconds sent with a rate-limit 429.
    pub retry_after: Option<u64>,
    /// Fraction of requests answered 503.
    pub fail_ratio: f64,
    /// Fraction of 200 answers with a cut JSON body.
    pub malformed_ratio: f64,
    /// The simulator's clock minus the real one, for X-Sdk-Date checks.
    pub clock_skew: chrono::Duration,
    /// Accept this many correctly signed requests, then answer every signed request 401
    /// `APIGW.0301`, as the gateway does once a key is deleted or disabled.
    pub reject_signatures_after: Option<u64>,
    pub script: VecDeque<Scripted>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency: Duration::ZERO,
            rate_limit: None,
            rate_window: Duration::from_secs(60),
            retry_after: None,
            fail_ratio: 0.0,
            malformed_ratio: 0.0,
            clock_skew: chrono::Duration::zero(),
            reject_signatures_after: None,
            script: VecDeque::new(),
        }
    }
}

pub(super) fn scripted(s: Scripted) -> Reply {
    match s {
        Scripted::Status {
            status,
            body,
            retry_after,
        } => {
            let mut r = Reply::json(status, body);
            if let Some(ra) = retry_after {
                r.headers.push(("Retry-After".into(), ra));
            }
            r
        }
        Scripted::Body(b) => Reply::json(200, b),
        other => Reply {
            status: 200,
            body: String::new(),
            headers: Vec::new(),
            fault: Some(other),
        },
    }
}

/// Writes the reply; false when the connection must close.
pub(super) fn send(out: &mut impl Write, reply: Reply, rid: &str) -> bool {
    let body = match &reply.fault {
        Some(Scripted::NotUtf8) => {
            let mut b = model::answer_json(&crate::domain::Usage::default(), false).into_bytes();
            b.truncate(b.len().saturating_sub(1));
            b.extend_from_slice(b",\"note\":\"\xff\xfe\"}");
            return write_reply(out, reply.status, rid, &reply.headers, b);
        }
        Some(Scripted::Malformed) => "{\"total_request_count\": 12, \"total_tok".to_string(),
        Some(Scripted::NotJson) => "<html><body>502 Bad Gateway</body></html>".to_string(),
        Some(Scripted::Huge) => format!("{{\"pad\":\"{}\"}}", "x".repeat(10 * 1024 * 1024)),
        Some(Scripted::CutBody) | Some(Scripted::Slow) => model::answer_json(
            &crate::domain::Usage {
                requests: 1,
                ..Default::default()
            },
            false,
        ),
        _ => reply.body,
    };
    let bytes = body.into_bytes();
    match reply.fault {
        Some(Scripted::CutBody) => {
            let head = http::head(reply.status, rid, bytes.len(), &reply.headers, true);
            let _ = http::write_all(out, &[head, bytes[..bytes.len() / 2].to_vec()].concat());
            false
        }
        Some(Scripted::Slow) => {
            let head = http::head(reply.status, rid, bytes.len(), &reply.headers, true);
            if http::write_all(out, &head).is_err() {
                return false;
            }
            for b in bytes {
                if out.write_all(&[b]).and_then(|_| out.flush()).is_err() {
                    return false;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            false
        }
        _ => write_reply(out, reply.status, rid, &reply.headers, bytes),
    }
}

/// A whole answer, the connection kept open; false when it must close.
fn write_reply(
    out: &mut impl Write,
    status: u16,
    rid: &str,
    headers: &[(String, String)],
    bytes: Vec<u8>,
) -> bool {
    let head = http::head(status, rid, bytes.len(), headers, false);
    http::write_all(out, &[head, bytes].concat()).is_ok()
}
