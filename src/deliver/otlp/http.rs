//! OTLP/HTTP: `POST .../v1/metrics` with a protobuf or JSON body, optionally gzipped.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use super::{Accepted, AttemptError, ExportConfig, HeaderProblem, Protocol, CA_OPTION};
use crate::retry::parse_retry_after;
use crate::text::{sanitize_remote, REMOTE_TEXT_MAX};

const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// `google.rpc.Status`, the error body of OTLP/HTTP.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Why HTTP cannot carry a header, by the rules of the `http` crate ureq builds requests with.
pub(super) fn header_problem(name: &str, value: &str) -> Option<HeaderProblem> {
    if ureq::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Some(HeaderProblem::Name("HTTP accepts"));
    }
    if ureq::http::HeaderValue::from_str(value).is_err() {
        return Some(HeaderProblem::Value("HTTP headers cannot carry"));
    }
    None
}

/// Whether a failed send is worth another attempt: a refused or cut connection, a timeout, a
/// name not resolved may pass; a request that cannot be built (a header, the URL) never will,
/// and is the configuration's.
fn transient(e: &ureq::Error) -> bool {
    !matches!(
        e,
        ureq::Error::Http(_)
            | ureq::Error::BadUri(_)
            | ureq::Error::InvalidProxyUrl
            | ureq::Error::BodyExceedsLimit(_)
    )
}

/// The collector's error text, from a `Status` body (JSON or protobuf) or the raw body, with
/// `scrub` applied to the whole of it first: one capped line with control characters escaped,
/// whatever the collector sent.
fn error_message(body: &[u8], json: bool, scrub: impl Fn(&str) -> String) -> String {
    let text = if json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
    } else {
        Status::decode(body).ok().map(|s| s.message)
    };
    let text = match text.filter(|m| !m.is_empty()) {
        Some(m) => m,
        None => String::from_utf8_lossy(body).into_owned(),
    };
    sanitize_remote(&scrub(&text), REMOTE_TEXT_MAX)
}

pub fn export(
    cfg: &ExportConfig,
    req: &ExportMetricsServiceRequest,
    timeout: Duration,
) -> Result<Accepted, AttemptError> {
    let json = cfg.protocol == Protocol::HttpJson;
    let raw = if json {
        serde_json::to_vec(req).unwrap_or_default()
    } else {
        req.encode_to_vec()
    };
    let body = if cfg.gzip { gzip(&raw) } else { raw };
    let resp = send(cfg, &body, json, timeout)?;
    answer(cfg, resp)
}

/// POSTs `body` to the collector, or says why it could not be sent.
fn send(
    cfg: &ExportConfig,
    body: &[u8],
    json: bool,
    timeout: Duration,
) -> Result<ureq::http::Response<ureq::Body>, AttemptError> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Only a 2xx from the configured endpoint is a delivery: a redirect would turn the POST
        // into a GET carrying the headers (credentials) to wherever it points.
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .tls_config(cfg.tls.ureq())
        .user_agent(concat!("maas-usage/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let mut rb = agent.post(&cfg.url).header(
        "Content-Type",
        if json {
            "application/json"
        } else {
            "application/x-protobuf"
        },
    );
    if cfg.gzip {
        rb = rb.header("Content-Encoding", "gzip");
    }
    for (k, v) in &cfg.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    rb.send(body)
        .map_err(|e| match crate::tls::untrusted_certificate(&e) {
            // An untrusted certificate will not be trusted on the next attempt either.
            Some(why) => AttemptError {
                local: true,
                ..AttemptError::remote(false, cfg.tls.untrusted_message(&why, CA_OPTION))
            },
            None if transient(&e) => {
                AttemptError::remote(true, cfg.scrub(&format!("cannot reach the collector: {e}")))
            }
            None => AttemptError {
                local: true,
                ..AttemptError::remote(
                    false,
                    cfg.scrub(&format!("cannot send to the collector: {e}")),
                )
            },
        })
}

/// What the collector's answer says: accepted (with the points it rejected, a partial
/// success), or why not and whether to try again.
fn answer(
    cfg: &ExportConfig,
    mut resp: ureq::http::Response<ureq::Body>,
) -> Result<Accepted, AttemptError> {
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let answer_is_json = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let answer = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .unwrap_or_default();
    if (200..300).contains(&status) {
        let decoded = if answer_is_json {
            serde_json::from_slice::<ExportMetricsServiceResponse>(&answer).ok()
        } else {
            ExportMetricsServiceResponse::decode(&answer[..]).ok()
        };
        let partial = decoded.and_then(|r| r.partial_success).unwrap_or_default();
        return Ok(Accepted {
            rejected: partial.rejected_data_points,
            message: partial.error_message,
        });
    }
    if (300..400).contains(&status) {
        return Err(AttemptError::remote(
            false,
            format!(
                "HTTP {status}: the endpoint redirects, and redirects are not followed (nothing was delivered); set the endpoint to the collector itself"
            ),
        ));
    }
    Err(AttemptError {
        retry_after,
        ..AttemptError::remote(
            matches!(status, 429 | 502 | 503 | 504),
            format!(
                "HTTP {status}: {}",
                error_message(&answer, answer_is_json, |t| cfg.scrub(t))
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "denied\nE! fake line\u{1b}[2J\u{202e}";

    #[test]
    fn collector_error_text_is_one_capped_line() {
        let expected = "denied\\u{a}E! fake line\\u{1b}[2J\\u{202e}";
        let error_message = |body: &[u8], json| error_message(body, json, str::to_string);
        let json = serde_json::json!({"code": 3, "message": HOSTILE}).to_string();
        assert_eq!(error_message(json.as_bytes(), true), expected);
        let proto = Status {
            code: 3,
            message: HOSTILE.into(),
        }
        .encode_to_vec();
        assert_eq!(error_message(&proto, false), expected);
        assert_eq!(error_message(HOSTILE.as_bytes(), true), expected);
        let long = format!("{HOSTILE}{}", "x".repeat(10_000));
        let m = error_message(long.as_bytes(), false);
        assert!(
            m.chars().count() <= REMOTE_TEXT_MAX + 1 && m.ends_with('…'),
            "{m}"
        );
        assert!(!m.contains('\n') && !m.contains('\u{1b}'));
    }

    #[test]
    fn a_secret_is_scrubbed_whole_before_the_cut() {
        let body = format!("{}SECRETVALUE", "x".repeat(REMOTE_TEXT_MAX - 5));
        let m = error_message(body.as_bytes(), false, |t| t.replace("SECRETVALUE", "***"));
        assert!(!m.contains("SECR"), "{m}");
    }

    #[test]
    fn headers_http_cannot_carry_are_named_as_such() {
        assert!(header_problem("x-scope-orgid", "Bearer abc").is_none());
        assert!(matches!(
            header_problem("x a", "v"),
            Some(HeaderProblem::Name(_))
        ));
        for v in ["b\nc", "a\u{1}", "a\u{7f}"] {
            assert!(
                matches!(header_problem("x-a", v), Some(HeaderProblem::Value(_))),
                "{v:?}"
            );
        }
    }
}
