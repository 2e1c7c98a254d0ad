//! Why a call failed, in the words an operator needs: the HTTP status and error code, what to
//! check, the request id for support. Every layer reports failures with these types.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

/// How long a rejected credential is left alone.
pub const LOCKOUT: Duration = Duration::from_secs(5 * 60);

/// How long a host's acceptance of a credential spares the next collections their lone first
/// call (the probe). No longer than [`LOCKOUT`]: an acceptance older than a rejection has
/// expired by the time the rejection has.
pub const ACCEPTED_FOR: Duration = LOCKOUT;

/// A rejection as remembered: when, and what the server said (status and error code only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Wall-clock milliseconds since the epoch.
    pub at_ms: u64,
    pub status: u16,
    #[serde(default)]
    pub code: Option<String>,
}

impl Rejection {
    pub fn until_ms(&self) -> u64 {
        self.at_ms.saturating_add(LOCKOUT.as_millis() as u64)
    }

    /// Still in force at `now_ms`. A rejection up to one lockout in the future (the clock
    /// stepped back a little after it) is honoured to its own end; one dated further ahead
    /// cannot be right (a clock far off when it was recorded, or a forged file) and is not
    /// trusted, or it would silence a good key for as long as the date says.
    pub fn in_force(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms() && self.at_ms <= now_ms.saturating_add(LOCKOUT.as_millis() as u64)
    }
}

/// A call kept back by a rejection in force: the rejection, the file that records it and the
/// command that forgets it (`None`: known to this process only, or the default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub rejection: Rejection,
    pub file: Option<String>,
    pub reset: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64) -> Rejection {
        Rejection {
            at_ms,
            status: 401,
            code: None,
        }
    }

    #[test]
    fn a_rejection_holds_for_five_minutes_and_a_far_future_one_not_at_all() {
        let now = 1_800_000_000_000;
        let five = LOCKOUT.as_millis() as u64;
        assert!(at(now).in_force(now));
        assert!(at(now - five + 1).in_force(now));
        assert!(!at(now - five).in_force(now));
        // The clock stepped back a minute after the rejection: still honoured.
        assert!(at(now + 60_000).in_force(now));
        // Dated a year ahead: not a reason to silence the key for a year.
        assert!(!at(now + 365 * 86_400_000).in_force(now));
        assert!(!at(u64::MAX).in_force(now));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request budget ({limit} calls per {window_s} s, shared by every process using the same IAM user or agency) has no free slot before the run's deadline; collect fewer series per run or run less often")]
pub struct BudgetExhausted {
    pub limit: u32,
    pub window_s: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("the answer is not JSON ({0})")]
    NotJson(String),
    /// Bytes that are not UTF-8: no JSON at all, whatever they look like.
    #[error("the answer is not UTF-8 text (so not JSON)")]
    NotText,
    #[error("the answer is not a statistics object (no total_request_count or total_token)")]
    NotStatistics,
    #[error("field {field}: {reason}")]
    BadField { field: &'static str, reason: String },
    #[error("field {field} is missing (or null); an answer without it is incomplete")]
    Missing { field: &'static str },
    #[error("total_error_count ({errors}) is larger than total_request_count ({requests})")]
    MoreErrorsThanRequests { errors: u64, requests: u64 },
    /// A Cloud Eye or MaaS monitor answer that is JSON but not the documented shape.
    #[error("the answer is not the documented shape: {0}")]
    Shape(String),
}

impl DecodeError {
    /// The same error with `f` applied to each text that came from the answer (a parser's
    /// message, a quoted value, a name), which can be anything the server wrote.
    pub fn map_text(self, f: impl Fn(&str) -> String) -> DecodeError {
        match self {
            DecodeError::NotJson(t) => DecodeError::NotJson(f(&t)),
            DecodeError::BadField { field, reason } => DecodeError::BadField {
                field,
                reason: f(&reason),
            },
            DecodeError::Shape(t) => DecodeError::Shape(f(&t)),
            other @ (DecodeError::NotText
            | DecodeError::NotStatistics
            | DecodeError::Missing { .. }
            | DecodeError::MoreErrorsThanRequests { .. }) => other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFailure {
    pub status: u16,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    /// Which API answered: it decides what a 403 asks for.
    pub api: Api,
}

/// The APIs the plugin calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Api {
    /// MaaS (ShowStatistics, the monitor's names) and IAM.
    #[default]
    Maas,
    /// Cloud Eye (`source: cloud_eye`).
    CloudEye,
    /// STS (`assume_agency`), called with the base credentials.
    Sts,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("{}", fmt_http(.0))]
    Http(HttpFailure),
    #[error("cannot reach {endpoint}: {message}; check the endpoint, DNS, the proxy (HTTPS_PROXY, NO_PROXY) and the firewall")]
    Transport { endpoint: String, message: String },
    #[error("unusable answer from {endpoint}{}: {error}; it was not used (retry later; if it persists, report the request id to Huawei Cloud support)", fmt_rid(.request_id))]
    Decode {
        endpoint: String,
        error: DecodeError,
        request_id: Option<String>,
    },
    #[error("the run's time limit was reached before this call could finish{}; raise limits.timeout (and the agent's timeout) or collect fewer series per run", .last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    Deadline { last: Option<Box<ApiError>> },
    /// Not retried: the server asked for a wait (`Retry-After`) that ends after the deadline.
    #[error("{last}; not retried, as the server asked for a wait (Retry-After: {wait_s} s) that ends after the run's time limit")]
    WaitTooLong { last: Box<ApiError>, wait_s: u64 },
    #[error("{0}")]
    Budget(BudgetExhausted),
    #[error("{0}")]
    Setup(String),
    /// Not sent: the credential was rejected less than five minutes ago.
    #[error("{}", fmt_blocked(.0))]
    AuthBlocked(Blocked),
    /// Not sent: the credential gate cannot vouch for the call (its records cannot be read,
    /// or an outcome could not be recorded anywhere). The text says why and what to do.
    #[error("{0}")]
    Unguarded(String),
    /// Not sent: the temporary credentials in use have expired, and fresh ones could not be
    /// had. The text says when and from where.
    #[error("{0}")]
    Expired(String),
    /// Not asked: the run's request budget could not afford every call of it before the
    /// deadline, and a call that cannot produce output is never made. The text says what the
    /// budget afforded; what was left out is first in line next run.
    #[error("{0}")]
    Deferred(String),
    /// Not finished: a stop signal ended the run first.
    #[error("stopped by {signal} before this call could finish")]
    Stopped { signal: &'static str },
    /// A failure on this side that a retry would meet again: an input error (exit 2).
    #[error("{0}")]
    Local(String),
    /// A bug: the call's thread panicked. The series fails; the rest of the run goes on.
    #[error("internal error while calling the API ({0}); please report it")]
    Internal(String),
}

/// `credentials were rejected at T; not retrying until T+5min ...`, then what the server said.
fn fmt_blocked(b: &Blocked) -> String {
    let r = &b.rejection;
    let at = |ms: u64| {
        chrono::DateTime::<Utc>::from_timestamp_millis(ms as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| ms.to_string())
    };
    let failure = HttpFailure {
        status: r.status,
        code: r.code.clone(),
        message: String::new(),
        request_id: None,
        api: Api::Maas,
    };
    let mut s = format!(
        "credentials were rejected at {}; not retrying until {} to avoid locking the key (fix the credentials or run '{}'){}; the server answered HTTP {}",
        at(r.at_ms),
        at(r.until_ms()),
        b.reset.as_deref().unwrap_or("maas-usage state reset --auth"),
        b.file
            .as_ref()
            .map(|f| format!("; recorded in {f}"))
            .unwrap_or_default(),
        r.status
    );
    if let Some(code) = &r.code {
        s.push(' ');
        s.push_str(code);
    }
    if let Some(h) = hint(&failure) {
        s.push_str(": ");
        s.push_str(h);
    }
    s
}

fn fmt_rid(rid: &Option<String>) -> String {
    rid.as_ref()
        .map(|r| format!(" (request id {r})"))
        .unwrap_or_default()
}

/// `HTTP 401 APIGW.0301: <message> (request id ...)`, then what to do about it.
fn fmt_http(f: &HttpFailure) -> String {
    let mut s = format!("HTTP {}", f.status);
    if let Some(code) = &f.code {
        s.push(' ');
        s.push_str(code);
    }
    s.push_str(": ");
    s.push_str(if f.message.is_empty() {
        "(no message)"
    } else {
        &f.message
    });
    s.push_str(&fmt_rid(&f.request_id));
    if let Some(hint) = hint(f) {
        s.push_str("; ");
        s.push_str(hint);
    }
    s
}

fn hint(f: &HttpFailure) -> Option<&'static str> {
    match (f.status, f.code.as_deref()) {
        (_, Some("APIGW.0303")) => Some("check the system clock: X-Sdk-Date must be within 15 minutes of the server's time (enable NTP)"),
        (401, _) => Some("the signature was rejected: check the AK/SK pair (and the security token for temporary credentials)"),
        (403, _) if f.api == Api::CloudEye => Some("Cloud Eye refused: the IAM user (or agency) needs the CES ReadOnlyAccess policy for source: cloud_eye queries; the other series are not affected"),
        (403, _) if f.api == Api::Sts => Some("STS refused to hand out the agency's credentials: the base identity needs sts:agencies:assume on the agency, whose trust policy must name the base account (and ask for the external_id given, if any); the base credentials are held back as after a rejected signature"),
        (403, _) => Some("the IAM user needs the permission modelarts:monitoring:get (and iam:projects:get for project discovery)"),
        (429, _) => Some("throttled: the API allows 200 calls a minute per user; lower limits.requests_per_minute or run less often"),
        (404, _) => Some("check the region, the endpoint and the project id"),
        _ => None,
    }
}

impl ApiError {
    /// A failure on this side (configuration, input) that every retry would meet again.
    pub fn is_local(&self) -> bool {
        matches!(self, ApiError::Local(_))
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http(f) => Some(f.status),
            ApiError::Deadline { last: Some(l) } | ApiError::WaitTooLong { last: l, .. } => {
                l.status()
            }
            _ => None,
        }
    }
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Http(f) => f.code.as_deref(),
            ApiError::Deadline { last: Some(l) } | ApiError::WaitTooLong { last: l, .. } => {
                l.code()
            }
            _ => None,
        }
    }
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ApiError::Http(f) => f.request_id.as_deref(),
            ApiError::Decode { request_id, .. } => request_id.as_deref(),
            ApiError::Deadline { last: Some(l) } | ApiError::WaitTooLong { last: l, .. } => {
                l.request_id()
            }
            _ => None,
        }
    }
}
