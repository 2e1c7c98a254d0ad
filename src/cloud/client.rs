//! The one place that talks to the cloud: signed HTTP with ureq, retries, error decoding, IAM
//! project discovery and ShowStatistics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::api;
use super::auth::{self, AuthGate, GateStore, Refusal, Verdict};
use super::credentials::Credentials;
use super::sign::{self, SignInput};
use crate::budget::{Budget, Unlimited};
use crate::domain::failure::{Api, DecodeError, HttpFailure};
use crate::domain::{ApiError, StatsAnswer};
pub use crate::endpoint::Endpoint;
use crate::log;
pub use crate::retry::RetryPolicy;
use crate::retry::{self, parse_retry_after, GaveUp, Step};
use crate::text::{sanitize_remote, REMOTE_TEXT_MAX};
use crate::tls::{self, TlsMaterial};

/// Answers larger than this are not statistics; reading stops there.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

pub fn default_maas_endpoint(region: &str) -> String {
    format!("https://modelarts.{region}.myhuaweicloud.com")
}

pub fn default_ces_endpoint(region: &str) -> String {
    format!("https://ces.{region}.myhuaweicloud.com")
}

pub fn default_sts_endpoint(region: &str) -> String {
    super::sts::default_endpoint(region)
}

pub fn default_iam_endpoint(region: &str) -> String {
    format!("https://iam.{region}.myhuaweicloud.com")
}

/// Call counters of one client, read for the run's self-metrics.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: AtomicU64,
    pub retries: AtomicU64,
    pub throttled: AtomicU64,
}

/// The counters at one moment; a collection reports the difference between two.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallCounts {
    pub calls: u64,
    pub retries: u64,
    pub throttled: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CallCounts {
        CallCounts {
            calls: self.calls.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
        }
    }
}

impl CallCounts {
    /// What happened after `earlier`.
    pub fn since(self, earlier: CallCounts) -> CallCounts {
        CallCounts {
            calls: self.calls.saturating_sub(earlier.calls),
            retries: self.retries.saturating_sub(earlier.retries),
            throttled: self.throttled.saturating_sub(earlier.throttled),
        }
    }
}

/// Client settings that do not come from credentials.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub maas: Endpoint,
    pub iam: Endpoint,
    /// Cloud Eye's API (`source: cloud_eye` queries).
    pub ces: Endpoint,
    /// The MaaS monitor's instances API (names of Cloud Eye's ids).
    pub monitor: Endpoint,
    /// STS (`assume_agency`), called with the base credentials.
    pub sts: Endpoint,
    /// Upper bound for one HTTP exchange; the run's deadline shortens it.
    pub call_timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientOptions {
    /// A client of one service at `ep` (every endpoint there).
    pub fn only(ep: Endpoint, call_timeout: Duration, retry: RetryPolicy) -> Self {
        ClientOptions {
            maas: ep.clone(),
            iam: ep.clone(),
            ces: ep.clone(),
            monitor: ep.clone(),
            sts: ep,
            call_timeout,
            retry,
        }
    }
}

/// One HTTP exchange's result.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    /// The body as text; bytes that are not UTF-8 are replaced (see `utf8`).
    pub(super) body: String,
    /// The body was UTF-8 text.
    utf8: bool,
    pub(super) request_id: Option<String>,
    retry_after: Option<Duration>,
}

/// One signed request: where, what, how large an answer may be, which budget it takes.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    pub(super) method: &'a str,
    pub(super) ep: &'a Endpoint,
    pub(super) path: &'a str,
    pub(super) query: &'a [(String, String)],
    pub(super) body: &'a [u8],
    pub(super) max_body: u64,
    /// `None`: the MaaS budget.
    pub(super) budget: Option<&'a dyn Budget>,
    /// The API called. A 403 from MaaS or IAM rejects the credential (see [`auth`]); one from
    /// another API (Cloud Eye, the monitor's names) is that API's permission, and says nothing
    /// about the key.
    pub(super) api: Api,
    /// A 403 is a missing permission of this API, not a rejected credential.
    pub(super) forbidden_is_permission: bool,
}

impl<'a> Call<'a> {
    pub(super) fn post(ep: &'a Endpoint, path: &'a str, body: &'a [u8]) -> Self {
        Call {
            method: "POST",
            ep,
            path,
            query: &[],
            body,
            max_body: MAX_BODY_BYTES,
            budget: None,
            api: Api::Maas,
            forbidden_is_permission: false,
        }
    }

    pub(super) fn get(ep: &'a Endpoint, path: &'a str, query: &'a [(String, String)]) -> Self {
        Call {
            method: "GET",
            ep,
            path,
            query,
            body: b"",
            max_body: MAX_BODY_BYTES,
            budget: None,
            api: Api::Maas,
            forbidden_is_permission: false,
        }
    }
}

enum Attempt {
    Answer(Answer),
    Transport(String),
    /// A failure on this side that the same request would meet again (an untrusted
    /// certificate, a header value that cannot be sent): not retried.
    Local(String),
    TooLarge(Option<String>),
}

/// The credentials a client signs with, and their gate; replaced when the credentials change
/// (a rotated file, refreshed temporary credentials), the gate with them unless they are the
/// same credential to it (an agency's next temporary key).
struct Identity {
    creds: Credentials,
    gate: Arc<AuthGate>,
}

pub struct Client {
    agent: ureq::Agent,
    /// The CA configured, for the message when a certificate is not trusted.
    tls: TlsMaterial,
    /// A failure on this side (an untrusted certificate, say): every later call would meet it
    /// again, so they fail at once with it instead of trying.
    local_failure: std::sync::Mutex<Option<String>>,
    identity: RwLock<Arc<Identity>>,
    /// Shares the gate's records with other processes (the state directory).
    gate_store: Option<Arc<dyn GateStore>>,
    pub(super) opts: ClientOptions,
    budget: Arc<dyn Budget>,
    /// Cloud Eye's own budget (its limits are per account and separate from MaaS's).
    pub(super) ces_budget: Arc<dyn Budget>,
    pub counters: Arc<Counters>,
}

impl Client {
    /// A client for `opts`'s endpoints, trusting `tls`'s CA when it has one (else the Mozilla
    /// roots).
    pub fn new(creds: Credentials, opts: ClientOptions, tls: TlsMaterial) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.ureq())
            .user_agent(concat!("maas-usage/", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            // Answers are a few hundred bytes: ureq's 128 KiB buffers per connection would be most
            // of the process's memory with eight calls in flight.
            .max_response_header_size(16 * 1024)
            .input_buffer_size(32 * 1024)
            .output_buffer_size(16 * 1024)
            .timeout_global(Some(opts.call_timeout))
            .build();
        Client {
            agent: config.new_agent(),
            tls,
            local_failure: std::sync::Mutex::new(None),
            identity: RwLock::new(Arc::new(Identity {
                gate: Arc::new(AuthGate::new(auth::gate_key(&creds), None)),
                creds,
            })),
            gate_store: None,
            opts,
            budget: Arc::new(Unlimited),
            ces_budget: Arc::new(Unlimited),
            counters: Arc::new(Counters::default()),
        }
    }

    pub fn with_budget(mut self, budget: Arc<dyn Budget>) -> Self {
        self.budget = budget;
        self
    }

    pub fn with_ces_budget(mut self, budget: Arc<dyn Budget>) -> Self {
        self.ces_budget = budget;
        self
    }

    /// Calls the request budget still allows within `within`.
    pub fn available_calls(&self, within: Duration) -> usize {
        self.budget.available(within)
    }

    /// Shares the credential gate's records with other processes through `store`.
    pub fn with_gate_store(mut self, store: Arc<dyn GateStore>) -> Self {
        let creds = self.identity().creds.clone();
        *self.identity.get_mut().unwrap_or_else(|p| p.into_inner()) = Arc::new(Identity {
            gate: Arc::new(AuthGate::new(auth::gate_key(&creds), Some(store.clone()))),
            creds,
        });
        self.gate_store = Some(store);
        self
    }

    fn identity(&self) -> Arc<Identity> {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signs with `creds` from now on; `false` when they are the ones in use already. The same
    /// credential to the gate (the same key, or the same agency's next temporary key) keeps its
    /// gate and what it learnt; another starts unverified.
    pub fn set_credentials(&self, creds: Credentials) -> bool {
        let mut slot = self.identity.write().unwrap_or_else(|p| p.into_inner());
        if auth::fingerprint(&slot.creds) == auth::fingerprint(&creds) {
            return false;
        }
        let key = auth::gate_key(&creds);
        let gate = match slot.gate.key() == key {
            true => slot.gate.clone(),
            false => Arc::new(AuthGate::new(key, self.gate_store.clone())),
        };
        *slot = Arc::new(Identity { gate, creds });
        true
    }

    /// A new collection (an execd batch, a serve interval): the first signed call to each host
    /// probes the credential again, alone, before the others go (see [`auth`]).
    pub fn begin_collection(&self) {
        self.identity().gate.new_collection();
    }

    /// Where the credentials in use came from.
    pub fn credentials_source(&self) -> String {
        self.identity().creds.source.clone()
    }

    fn local_failure(&self) -> Option<String> {
        self.local_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `text` with every secret of the credentials in use replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.identity().creds.redact(text)
    }

    /// One signed exchange, no retry.
    #[allow(clippy::too_many_arguments)]
    fn exchange(&self, creds: &Credentials, req: &Call<'_>, timeout: Duration) -> Attempt {
        let Call {
            method,
            ep,
            path,
            query,
            body,
            max_body,
            ..
        } = *req;
        let full_path = format!("{}{}", ep.base_path, path);
        let host = ep.host_header();
        let date = sign::sdk_date(Utc::now());
        let mut headers: Vec<(String, String)> =
            vec![("Host".into(), host), ("X-Sdk-Date".into(), date.clone())];
        if method == "POST" {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        if let Some(token) = &creds.token {
            headers.push(("X-Security-Token".into(), token.expose().to_string()));
        }
        let input = SignInput {
            method,
            path: &full_path,
            query,
            headers: &headers,
            body,
        };
        let authorization = sign::authorization(
            &input,
            &date,
            creds.ak.expose(),
            creds.sk.expose().as_bytes(),
        );
        let url = ep.url(path, &sign::canonical_query(query));

        let started = Instant::now();
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder = builder.header("Authorization", authorization.as_str());
        let result = match builder.body(body) {
            Ok(req) => self.agent.run(
                self.agent
                    .configure_request(req)
                    .timeout_global(Some(timeout))
                    .build(),
            ),
            Err(e) => Err(ureq::Error::Http(e)),
        };
        let elapsed = started.elapsed().as_millis();
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let header = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|s| s.trim().to_string())
                };
                // A header is server text too: one short, visible token at most.
                let request_id = header("x-request-id").map(|id| sanitize_remote(&id, 64));
                let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v));
                log::debug!(
                    "{method} {url} -> {status} (request id {}) in {elapsed} ms",
                    request_id.as_deref().unwrap_or("-")
                );
                // Bytes first: an answer that is not UTF-8 is the server's, not a failure
                // of the network (reading it as a string would say so, and be retried).
                let read = resp.body_mut().with_config().limit(max_body).read_to_vec();
                match read {
                    Ok(bytes) => {
                        let (body, utf8) = match String::from_utf8(bytes) {
                            Ok(text) => (text, true),
                            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
                        };
                        Attempt::Answer(Answer {
                            status,
                            body,
                            utf8,
                            request_id,
                            retry_after,
                        })
                    }
                    Err(ureq::Error::BodyExceedsLimit(_)) => Attempt::TooLarge(request_id),
                    Err(e) => {
                        Attempt::Transport(format!("reading the answer failed: {}", describe(&e)))
                    }
                }
            }
            Err(e) => {
                log::debug!(
                    "{method} {url} -> transport error after {elapsed} ms: {}",
                    describe(&e)
                );
                match local_failure(&e, &self.tls) {
                    Some(why) => Attempt::Local(why),
                    None => Attempt::Transport(describe(&e)),
                }
            }
        }
    }

    /// A signed call with retries for 429, 5xx and transport errors, within `deadline`.
    ///
    /// Every attempt passes the credential gate first (see [`auth`]): a rejected credential
    /// makes no call at all, and one not yet accepted by the host in this collection probes
    /// one call at a time.
    pub(super) fn call(&self, req: &Call<'_>, deadline: Instant) -> Result<Answer, ApiError> {
        retry::run(
            &self.opts.retry,
            deadline,
            |n| self.attempt(n, req, deadline),
            |n, wait, err| log::debug!("retry {n} in {} ms after: {err}", wait.as_millis()),
        )
        .map_err(|gave_up| match gave_up {
            GaveUp::Fatal(e) | GaveUp::Attempts(e) => e,
            GaveUp::Deadline(e) => ApiError::Deadline {
                last: Some(Box::new(e)),
            },
            GaveUp::TooLate { error, wait } => ApiError::WaitTooLong {
                last: Box::new(error),
                wait_s: wait.as_secs(),
            },
        })
    }

    /// One attempt of a call: the gate, the budget, the exchange, and what the answer means
    /// for retrying.
    fn attempt(&self, n: u32, req: &Call<'_>, deadline: Instant) -> Step<Answer, ApiError> {
        let budget = req.budget.unwrap_or(&*self.budget);
        let ep = req.ep;
        let id = self.identity();
        // Trust is per host: one service accepting the key says nothing about another's.
        let host = format!("{}://{}", ep.scheme, ep.host_header());
        // Expired temporary credentials would be a certain rejection: never signed with.
        if let Some(at) = id.creds.expires_at.filter(|at| *at <= Utc::now()) {
            return Step::Fatal(ApiError::Expired(format!(
                "the temporary credentials from {} expired at {} and fresh ones could not be had; no call is signed with them (each would be a rejected signature); check the metadata service and this host's clock",
                id.creds.source,
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        let permit = match id.gate.enter(&host, deadline) {
            Ok(p) => p,
            Err(Refusal::Rejected(b)) => return Step::Fatal(ApiError::AuthBlocked(b)),
            Err(Refusal::Unguarded(why)) => return Step::Fatal(ApiError::Unguarded(why)),
            Err(Refusal::Deadline) => return Step::Fatal(ApiError::Deadline { last: None }),
        };
        // Checked after the gate: a probe that failed on this side let the others through.
        if let Some(why) = self.local_failure() {
            return Step::Fatal(ApiError::Local(why));
        }
        if let Err(e) = budget.acquire(deadline) {
            return Step::Fatal(ApiError::Budget(e));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Step::Fatal(ApiError::Deadline { last: None });
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        let timeout = remaining.min(self.opts.call_timeout);
        match self.exchange(&id.creds, req, timeout) {
            Attempt::Answer(a) => {
                let verdict = match Verdict::of_status(a.status) {
                    Verdict::Rejected { status: 403 } if req.forbidden_is_permission => {
                        Verdict::Unknown
                    }
                    v => v,
                };
                if verdict == Verdict::Accepted {
                    permit.finish(None, verdict);
                    if !a.utf8 {
                        // The same bytes would come again: the series fails, not retried.
                        return Step::Fatal(self.decode_failure(
                            ep,
                            DecodeError::NotText,
                            a.request_id,
                        ));
                    }
                    return Step::Done(a);
                }
                let e = self.http_failure(&a, req.api);
                if permit.finish(e.code(), verdict).is_some() {
                    // 401/403: no further call with these credentials (the gate now says so).
                    return Step::Fatal(e);
                }
                match a.status {
                    429 => {
                        self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                        // The server's window is its own (a few seconds, a minute): without
                        // Retry-After, back off and try again while the deadline allows, each
                        // attempt taking its slot of the budget.
                        match a.retry_after {
                            Some(wait) => Step::Retry {
                                error: e,
                                wait: Some(wait),
                            },
                            None => Step::Throttled(e),
                        }
                    }
                    s if s >= 500 => Step::Retry {
                        error: e,
                        wait: a.retry_after,
                    },
                    // Other 4xx will not get better.
                    _ => Step::Fatal(e),
                }
            }
            Attempt::TooLarge(request_id) => Step::Fatal(ApiError::Decode {
                endpoint: ep.to_string(),
                error: DecodeError::NotJson(format!("larger than {} bytes", req.max_body)),
                request_id,
            }),
            Attempt::Local(message) => {
                *self.local_failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(message.clone());
                drop(permit);
                Step::Fatal(ApiError::Local(message))
            }
            Attempt::Transport(message) => Step::Retry {
                error: ApiError::Transport {
                    endpoint: ep.to_string(),
                    message,
                },
                wait: None,
            },
        }
    }

    /// Server text made fit for an error line: the credentials in use replaced by `***` (over
    /// the whole text, before anything is cut), control characters escaped, capped.
    pub(super) fn remote_text(&self, text: &str) -> String {
        sanitize_remote(&self.redact(text), REMOTE_TEXT_MAX)
    }

    /// An answer that could not be used. Whatever of it the error quotes goes through
    /// [`Client::remote_text`], as an error body does.
    pub(super) fn decode_failure(
        &self,
        ep: &Endpoint,
        error: DecodeError,
        request_id: Option<String>,
    ) -> ApiError {
        ApiError::Decode {
            endpoint: ep.to_string(),
            error: error.map_text(|t| self.remote_text(t)),
            request_id,
        }
    }

    fn http_failure(&self, a: &Answer, api: Api) -> ApiError {
        let body = api::parse_error_body(&a.body);
        // Secrets are redacted from the whole text before anything is cut, so no part of one
        // can survive at a cut.
        let message = self.redact(body.message.as_deref().unwrap_or(&a.body));
        // The gateway appends its canonical request to a signature failure: precious when
        // debugging, noise in the one stderr line Telegraf shows, so it goes to the debug log.
        let (head, echo) = match message.split_once(", canonicalRequest:") {
            Some((head, echo)) => (head, Some(echo)),
            None => (message.as_str(), None),
        };
        if let Some(echo) = echo {
            log::debug!(
                "the gateway's canonical request (| = newline): {}",
                sanitize_remote(echo, 4 * REMOTE_TEXT_MAX)
            );
        }
        // Whatever the server wrote is one capped line with its control characters escaped: it
        // can neither flood stderr nor forge a line of its own.
        let safe = |t: Option<String>| t.map(|t| sanitize_remote(&self.redact(&t), 64));
        ApiError::Http(HttpFailure {
            status: a.status,
            code: safe(body.code),
            message: sanitize_remote(head, REMOTE_TEXT_MAX),
            request_id: a.request_id.clone().or(safe(body.request_id)),
            api,
        })
    }

    /// ShowStatistics for one pre-serialised body (the bytes signed are the bytes sent).
    pub fn show_statistics(
        &self,
        project_id: &str,
        body: &[u8],
        deadline: Instant,
    ) -> Result<StatsAnswer, ApiError> {
        let path = api::stats_path(project_id);
        let a = self.call(&Call::post(&self.opts.maas, &path, body), deadline)?;
        let raw = self.redact(&a.body);
        match api::parse_statistics(&a.body, api::request_is_batch(body)) {
            Ok(usage) => Ok(StatsAnswer {
                usage,
                raw,
                request_id: a.request_id,
            }),
            Err(error) => Err(self.decode_failure(&self.opts.maas, error, a.request_id)),
        }
    }

    /// KeystoneListProjects filtered by region name.
    pub fn discover_project(
        &self,
        region: &str,
        deadline: Instant,
    ) -> Result<api::ProjectInfo, ApiError> {
        let query = vec![("name".to_string(), region.to_string())];
        let a = self.call(&Call::get(&self.opts.iam, "/v3/projects", &query), deadline)?;
        api::parse_projects(&a.body, region).map_err(|e| {
            let e = match e {
                api::ProjectsError::Unexpected(t) => {
                    api::ProjectsError::Unexpected(self.remote_text(&t))
                }
                other => other,
            };
            ApiError::Setup(e.to_string())
        })
    }
}

/// A failure that comes from this side's configuration or input and would happen again on a
/// retry: an untrusted server certificate, or a request that cannot be built (a header value
/// with a line break or a byte-order mark, say, from a credential).
fn local_failure(e: &ureq::Error, tls: &TlsMaterial) -> Option<String> {
    if let Some(why) = tls::untrusted_certificate(e) {
        return Some(tls.untrusted_message(&why, "--ca-file (or cloud.ca_file)"));
    }
    match e {
        ureq::Error::Http(h) => Some(format!(
            "the request cannot be sent ({h}); check the credentials and endpoint for stray characters (line breaks, a byte-order mark)"
        )),
        ureq::Error::BadUri(u) => Some(format!("the request URL is not valid ({u})")),
        _ => None,
    }
}

/// A transport error in a sentence, without ureq's internals.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::HostNotFound => {
            "host not found (check the region or endpoint, and DNS)".into()
        }
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Io(io) => format!("{io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let ep = Endpoint::parse("http://127.0.0.1:9").unwrap();
        let creds = Credentials {
            ak: crate::cloud::credentials::Secret::new("AKCANARY0123456789"),
            sk: crate::cloud::credentials::Secret::new("SKCANARY-abcdefghijklmnopqrstuvwxyz"),
            token: None,
            source: "test".into(),
            expires_at: None,
            agency: None,
        };
        let opts = ClientOptions::only(ep, Duration::from_secs(1), RetryPolicy::default());
        Client::new(creds, opts, TlsMaterial::default())
    }

    fn failure(status: u16, body: &str) -> HttpFailure {
        let a = Answer {
            status,
            body: body.into(),
            utf8: true,
            request_id: None,
            retry_after: None,
        };
        match client().http_failure(&a, Api::Maas) {
            ApiError::Http(f) => f,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn server_text_is_redacted_whole_then_escaped_and_capped() {
        // A secret straddling the cut is redacted before the cut, never shown in part.
        let body = format!(
            "{}SKCANARY-abcdefghijklmnopqrstuvwxyz{}",
            "a".repeat(280),
            "z".repeat(100)
        );
        let f = failure(502, &body);
        assert!(!f.message.contains("SKCANARY"), "{}", f.message);
        assert!(f.message.contains("a***zz"), "{}", f.message);
        assert!(f.message.ends_with("z…"), "{}", f.message);
        assert_eq!(f.message.chars().count(), REMOTE_TEXT_MAX + 1);
        let f = failure(
            400,
            r#"{"error_code":"X.1\n","error_msg":"no\nE! fake\u001b[2J\u202e"}"#,
        );
        assert_eq!(f.message, r"no\u{a}E! fake\u{1b}[2J\u{202e}");
        assert_eq!(f.code.as_deref(), Some("X.1"));
        let f = failure(
            401,
            r#"{"error_code":"APIGW.0301","error_msg":"bad sig, canonicalRequest: POST|/v1|AKCANARY0123456789"}"#,
        );
        assert_eq!(f.message, "bad sig");
    }

    #[test]
    fn decode_errors_quote_the_answer_redacted_escaped_and_capped() {
        let c = client();
        let hostile = format!(
            "metric AKCANARY0123456789 SKCANARY-abcdefghijklmnopqrstuvwxyz\nE! forged{}",
            "m".repeat(5000)
        );
        for error in [
            DecodeError::Shape(hostile.clone()),
            DecodeError::NotJson(hostile.clone()),
            DecodeError::BadField {
                field: "total_token",
                reason: hostile.clone(),
            },
        ] {
            let text = c
                .decode_failure(&c.opts.maas, error, Some("rid".into()))
                .to_string();
            assert!(!text.contains("CANARY"), "{text}");
            assert!(text.contains("metric *** ***\\u{a}E! forged"), "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(text.chars().count() < 600, "{}", text.chars().count());
        }
    }

    #[test]
    fn http_errors_read_like_the_contract() {
        let e = ApiError::Http(HttpFailure {
            status: 401,
            code: Some("APIGW.0301".into()),
            message: "Incorrect IAM authentication information".into(),
            request_id: Some("abc".into()),
            api: Api::Maas,
        });
        let s = e.to_string();
        assert!(
            s.starts_with(
                "HTTP 401 APIGW.0301: Incorrect IAM authentication information (request id abc); "
            ),
            "{s}"
        );
        let e = ApiError::Http(HttpFailure {
            status: 401,
            code: Some("APIGW.0303".into()),
            message: "x".into(),
            request_id: None,
            api: Api::Maas,
        });
        assert!(e.to_string().contains("check the system clock"));
    }
}
