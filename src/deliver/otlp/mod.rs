//! Pushing OTLP metrics to a collector: configuration by the exporter conventions, OTLP/HTTP
//! through ureq, OTLP/gRPC through tonic (feature `grpc`), retries per the OTLP specification.
//!
//! The configuration functions (`resolve`, `endpoint`, `temporality`) are pure: they read the
//! `OTEL_*` variables through the [`Lookup`] they are given, and only the commands' settings
//! (the one resolution step) call them with the process's environment.

#[cfg(feature = "grpc")]
mod grpc;
mod http;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use crate::emit::otlp::Temporality;
pub use crate::endpoint::redact_url;
use crate::endpoint::userinfo;
use crate::env::{self, Lookup};
use crate::log;
use crate::retry::{self, GaveUp, RetryPolicy, Step};
use crate::spec::{OtlpSettings, Protocol};
use crate::text::parse_kv_list;
use crate::text::{sanitize_remote, REMOTE_TEXT_MAX};
use crate::tls::{self, TlsError, TlsFiles, TlsMaterial};

/// Where and how to export, resolved.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// For HTTP the full URL (`.../v1/metrics`); for gRPC the server URL.
    pub url: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub gzip: bool,
    /// The collector's CA and this side's identity (mutual TLS), read and checked.
    pub tls: TlsMaterial,
}

impl ExportConfig {
    /// `text` (anything a collector or a transport library said) with the endpoint's user
    /// information and every configured header value replaced by `***`: a collector that
    /// echoes a rejected token must not print it. A value's credential part (`abc` in
    /// `Bearer abc`) goes too, and a password percent-encoded in the URL in both forms.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        for (_, v) in &self.headers {
            secrets.push(v.clone());
            secrets.extend(v.split_whitespace().skip(1).map(str::to_string));
        }
        if let Some(info) = userinfo(&self.url) {
            secrets.push(info.to_string());
            if let Some((_, password)) = info.split_once(':') {
                secrets.push(password.to_string());
                secrets.push(crate::text::percent_decode(password));
            }
        }
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        crate::text::redact(&scrub_userinfo(text, &self.url), &secrets)
    }
}

/// An export attempt's limit when nothing says otherwise (the exporter specification's).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative` (the default), `delta`, or
/// `lowmemory` (delta for monotonic sums, which is all this program sums). Window totals are
/// Gauges and have none. A value it does not know is a warning, as the SDKs treat it.
pub fn temporality(env: Lookup<'_>) -> Temporality {
    let var = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
    match env::get(env, var)
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("cumulative") => Temporality::Cumulative,
        Some("delta") | Some("lowmemory") => Temporality::Delta,
        Some(other) => {
            ignored(
                var,
                other,
                "use cumulative, delta or lowmemory",
                "cumulative",
            );
            Temporality::Cumulative
        }
    }
}

/// Where to point people when the collector's certificate is not trusted.
const CA_OPTION: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE (or output.otlp.certificate)";

/// Why the exporter's configuration cannot be used (an input error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}={value}: {expected}")]
    BadVariable {
        var: String,
        value: String,
        expected: &'static str,
    },
    #[error("OTLP endpoint `{0}` must start with http:// or https://")]
    Scheme(String),
    /// `origin` is the variable or spec key that set it; `url` has its user information hidden.
    #[error("{origin}: the OTLP endpoint `{url}` cannot be used: {why}")]
    Endpoint {
        origin: String,
        url: String,
        why: String,
    },
    /// A header the transport cannot carry. Its value is never shown (it is often a
    /// credential), nor a name that is not a valid one (a mistyped entry may hold the value).
    #[error("{origin}: {what}; nothing was sent")]
    Header { origin: String, what: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A variable's value it does not know: as the OpenTelemetry specification has it, a warning,
/// and the setting is ignored (`default` is used).
fn ignored(var: &str, value: &str, expected: &str, default: &str) {
    log::warn!(
        "{var}={}: {expected}; it is ignored and {default} is used",
        crate::text::sanitize_remote(value, 100)
    );
}

fn bad(var: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::BadVariable {
        var: var.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn env_ms(v: &str, name: &str) -> Result<Duration, ConfigError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| bad(name, v, "not a number of milliseconds"))
}

/// The value of the signal-specific variable `signal`, else of the generic one, with its name.
fn pick(env: Lookup<'_>, signal: &str, generic: &str) -> Option<(String, String)> {
    env::get(env, signal)
        .map(|v| (signal.to_string(), v))
        .or_else(|| env::get(env, generic).map(|v| (generic.to_string(), v)))
}

/// The protocol and the URL the metrics go to (for HTTP with `/v1/metrics`): spec first, then
/// the signal-specific variable, then the generic one, then the default. Reads nothing else
/// (no header, no certificate): the period checkpoints' destination is named by it.
pub fn endpoint(spec: &OtlpSettings, env: Lookup<'_>) -> Result<(Protocol, String), ConfigError> {
    let get = |k: &str| env::get(env, k);
    let pick = |signal: &str, generic: &str| pick(env, signal, generic);

    let protocol = match spec.protocol {
        Some(p) => p,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            // Enumerations are case-insensitive (the specification's rule for all of them).
            Some((name, v)) => Protocol::parse(&v.to_ascii_lowercase()).unwrap_or_else(|| {
                ignored(
                    &name,
                    &v,
                    "use grpc, http/protobuf or http/json",
                    "http/protobuf",
                );
                Protocol::HttpProtobuf
            }),
            None => Protocol::HttpProtobuf,
        },
    };
    let insecure = match spec.insecure {
        Some(i) => i,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
            "OTEL_EXPORTER_OTLP_INSECURE",
        ) {
            // Anything but `true` is false; a value that is neither warns.
            Some((_, v)) if v.trim().eq_ignore_ascii_case("true") => true,
            Some((_, v)) if v.trim().is_empty() || v.trim().eq_ignore_ascii_case("false") => false,
            Some((name, v)) => {
                ignored(&name, &v, "use true or false", "false");
                false
            }
            None => false,
        },
    };
    let default_base = if protocol == Protocol::Grpc {
        "http://localhost:4317"
    } else {
        "http://localhost:4318"
    };
    let with_path = |base: &str| match protocol {
        // gRPC without a scheme: TLS unless insecure (as the exporter specification says).
        Protocol::Grpc if !base.contains("://") => {
            format!("{}://{base}", if insecure { "http" } else { "https" })
        }
        Protocol::Grpc => base.to_string(),
        _ => signal_url(base),
    };
    let (origin, url) = match (
        &spec.endpoint,
        get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(base), _, _) => ("output.otlp.endpoint", with_path(base)),
        // A signal-specific endpoint is used as is (for gRPC, a missing scheme still means TLS
        // unless insecure).
        (None, Some(signal), _) if protocol == Protocol::Grpc => {
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", with_path(&signal))
        }
        (None, Some(signal), _) => ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", signal),
        (None, None, Some(base)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", with_path(&base)),
        (None, None, None) => ("the default endpoint", with_path(default_base)),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::Scheme(redact_url(&url)));
    }
    check_endpoint(&url).map_err(|why| ConfigError::Endpoint {
        origin: origin.to_string(),
        url: redact_url(&url),
        why,
    })?;
    Ok((protocol, url))
}

/// Spec first, then the signal-specific variable, then the generic one, then the default.
pub fn resolve(spec: &OtlpSettings, env: Lookup<'_>) -> Result<ExportConfig, ConfigError> {
    let (protocol, url) = endpoint(spec, env)?;
    Ok(ExportConfig {
        url,
        protocol,
        headers: headers(spec, protocol, env)?,
        timeout: timeout(spec, env),
        gzip: gzip(spec, env),
        tls: tls_files(spec, env).load()?,
    })
}

/// The headers: the generic variable's, then the signal's, then the spec's (a later one of
/// the same name wins), each checked that `protocol`'s transport can carry it.
fn headers(
    spec: &OtlpSettings,
    protocol: Protocol,
    env: Lookup<'_>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |origin: &str, k: &str, v: &str| {
        let name = k.to_ascii_lowercase();
        if let Some(what) = header_problem(protocol, &name, v) {
            return Err(ConfigError::Header {
                origin: origin.to_string(),
                what,
            });
        }
        headers.insert(name, v.to_string());
        Ok(())
    };
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
        let list = env::get(env, var);
        for (k, v) in list.as_deref().map(parse_kv_list).unwrap_or_default() {
            add(var, &k, &v)?;
        }
    }
    for (k, v) in &spec.headers {
        add("output.otlp.headers", k, v)?;
    }
    Ok(headers.into_iter().collect())
}

/// An export attempt's limit. As the SDKs do: a bad value is a warning, and the default
/// holds; zero would end every attempt before it began.
fn timeout(spec: &OtlpSettings, env: Lookup<'_>) -> Duration {
    if let Some(t) = spec.timeout {
        return t;
    }
    let picked = pick(
        env,
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    );
    let Some((name, v)) = picked else {
        return DEFAULT_TIMEOUT;
    };
    env_ms(&v, &name)
        .and_then(|t| {
            if t.is_zero() {
                Err(bad(&name, &v, "zero would end every attempt at once"))
            } else {
                Ok(t)
            }
        })
        .unwrap_or_else(|e| {
            log::warn!("{e}; the default, 10 s, is used");
            DEFAULT_TIMEOUT
        })
}

/// Whether requests are compressed: `gzip` or `none` (anything else warns, and is none).
fn gzip(spec: &OtlpSettings, env: Lookup<'_>) -> bool {
    if let Some(g) = spec.gzip {
        return g;
    }
    match pick(
        env,
        "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ) {
        Some((_, v)) if v.trim().eq_ignore_ascii_case("gzip") => true,
        Some((_, v)) if v.trim().eq_ignore_ascii_case("none") => false,
        Some((name, v)) => {
            ignored(&name, &v, "use gzip or none", "none");
            false
        }
        None => false,
    }
}

/// The collector's CA and this side's certificate and key: each the spec's path, else the
/// signal's variable, else the generic one, named for the errors by where it was set.
fn tls_files(spec: &OtlpSettings, env: Lookup<'_>) -> TlsFiles {
    let file = |spec_path: &Option<std::path::PathBuf>, key: &str, var: &str| {
        let (signal, generic) = (
            format!("OTEL_EXPORTER_OTLP_METRICS_{var}"),
            format!("OTEL_EXPORTER_OTLP_{var}"),
        );
        match spec_path {
            Some(p) => Some(tls::named(&format!("output.otlp.{key}"), p)),
            None => pick(env, &signal, &generic)
                .map(|(name, v)| tls::named(&name, std::path::Path::new(&v))),
        }
    };
    TlsFiles {
        ca: file(&spec.certificate, "certificate", "CERTIFICATE"),
        client_cert: file(
            &spec.client_certificate,
            "client_certificate",
            "CLIENT_CERTIFICATE",
        ),
        client_key: file(&spec.client_key, "client_key", "CLIENT_KEY"),
    }
}

/// `base` with the signal's path, `v1/metrics`, appended to its path (query and fragment kept
/// after it), as the exporter specification has it for `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn signal_url(base: &str) -> String {
    let start = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[start..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| start + i);
    let path_end = base[authority_end..]
        .find(['?', '#'])
        .map_or(base.len(), |i| authority_end + i);
    format!(
        "{}{}/v1/metrics{}",
        &base[..authority_end],
        base[authority_end..path_end].trim_end_matches('/'),
        &base[path_end..]
    )
}

/// Why `url` (http or https) cannot be sent to, by the rules of the transports' own URI parser,
/// plus a port in range: such a URL fails every attempt alike, so it is the configuration's.
fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if uri.host().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    // The port is what follows the host (after an IPv6 address's `]`).
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.rfind(']') {
        Some(i) => &host_port[i + 1..],
        None => host_port.find(':').map_or("", |i| &host_port[i..]),
    };
    if let Some(port) = after_host.strip_prefix(':') {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err("the port must be a number from 1 to 65535".into());
        }
    } else if !after_host.is_empty() {
        return Err("something other than a port follows the host".into());
    }
    Ok(())
}

/// Why a header cannot be carried by `protocol`, by the transport's own rules; never quotes
/// the value, and quotes the name only when it is a valid one.
fn header_problem(protocol: Protocol, name: &str, value: &str) -> Option<String> {
    // The exporter frames, types and encodes the request itself: a configured one of these
    // would contradict it (a `content-length: 5` cut the body; each attempt failed).
    const OWN: [&str; 11] = [
        "host",
        "content-length",
        "transfer-encoding",
        "content-type",
        "content-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ];
    if OWN.contains(&name) {
        return Some(format!(
            "header `{name}` is the exporter's own (framing, type or encoding of the request) and cannot be configured"
        ));
    }
    // Only visible ASCII: bytes beyond it reach a collector in an encoding it may read
    // differently (and then echo back in a form no scrub recognises).
    if value
        .chars()
        .any(|c| !(c == ' ' || c == '\t' || c.is_ascii_graphic()))
    {
        return Some(format!(
            "the value of header `{}` holds a character outside visible ASCII (a line break, a control character or a non-ASCII letter); the value is not shown",
            sanitize_remote(name, 64)
        ));
    }
    let problem = match protocol {
        #[cfg(feature = "grpc")]
        Protocol::Grpc => grpc::header_problem(name, value),
        _ => http::header_problem(name, value),
    }?;
    Some(match problem {
        HeaderProblem::Name(rule) => {
            format!("a header name is not one {rule}; it is not shown, in case it holds a value (entries are `name=value`, separated by commas)")
        }
        HeaderProblem::Value(rule) => format!(
            "the value of header `{}` holds a character {rule} (a line break or another control character); the value is not shown",
            sanitize_remote(name, 64)
        ),
    })
}

/// What is wrong with a header, with the transport's rule.
enum HeaderProblem {
    Name(&'static str),
    Value(&'static str),
}

/// A successful export; `rejected` > 0 is a partial success.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    pub rejected: i64,
    pub message: String,
}

/// One attempt's failure.
#[derive(Debug)]
pub struct AttemptError {
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    pub message: String,
    /// A failure on this side (the collector's certificate is not trusted): the
    /// configuration's, exit 2.
    pub local: bool,
}

impl AttemptError {
    /// An error worth another attempt (or not), not of this side's making.
    pub fn remote(retryable: bool, message: String) -> Self {
        AttemptError {
            retryable,
            retry_after: None,
            message,
            local: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("OTLP export to {url} failed after {attempts} attempt(s): {message}")]
pub struct ExportError {
    /// The endpoint with any user information replaced by `***` (`redact_url`).
    pub url: String,
    pub attempts: u32,
    /// With any user information of the endpoint replaced by `***`.
    pub message: String,
    /// The failure was on this side (configuration): exit 2.
    pub local: bool,
}

/// `text` (an error from a transport library, which may quote the URL) with the user
/// information of `url` replaced by `***`.
fn scrub_userinfo(text: &str, url: &str) -> String {
    match userinfo(url) {
        Some(info) => text.replace(&format!("{info}@"), "***@"),
        None => text.to_string(),
    }
}

fn attempt(
    cfg: &ExportConfig,
    req: &ExportMetricsServiceRequest,
    timeout: Duration,
) -> Result<Accepted, AttemptError> {
    match cfg.protocol {
        Protocol::HttpProtobuf | Protocol::HttpJson => http::export(cfg, req, timeout),
        #[cfg(feature = "grpc")]
        Protocol::Grpc => grpc::export(cfg, req, timeout),
        #[cfg(not(feature = "grpc"))]
        Protocol::Grpc => Err(AttemptError::remote(
            false,
            "this build has no gRPC support (cargo feature `grpc`); use protocol http/protobuf"
                .into(),
        )),
    }
}

/// Exports with retries (429/502/503/504, gRPC UNAVAILABLE and friends) until `deadline`.
pub fn export(
    cfg: &ExportConfig,
    req: &ExportMetricsServiceRequest,
    deadline: Instant,
) -> Result<Accepted, ExportError> {
    let mut attempts = 0;
    let result = retry::run(
        &RetryPolicy::default(),
        deadline,
        |_| {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Step::Fatal(AttemptError::remote(
                    false,
                    "no time left before the run's deadline".into(),
                ));
            }
            match attempt(cfg, req, remaining.min(cfg.timeout)) {
                Ok(a) => Step::Done(a),
                Err(e) if e.retryable => {
                    let wait = e.retry_after;
                    Step::Retry { error: e, wait }
                }
                Err(e) => Step::Fatal(e),
            }
        },
        |_, wait, e| {
            log::debug!(
                "OTLP export retry in {} ms after: {}",
                wait.as_millis(),
                cfg.scrub(&e.message)
            )
        },
    );
    let fail = |e: AttemptError, suffix: &str| ExportError {
        url: redact_url(&cfg.url),
        attempts,
        message: cfg.scrub(&format!("{}{suffix}", e.message)),
        local: e.local,
    };
    let accepted = result.map_err(|gave_up| match gave_up {
        GaveUp::Fatal(e) | GaveUp::Attempts(e) => fail(e, ""),
        GaveUp::Deadline(e) => fail(e, " (no time left to retry)"),
        GaveUp::TooLate { error, wait } => fail(
            error,
            &format!(
                " (not retried: the collector asked to wait {} s, past the export's deadline)",
                wait.as_secs()
            ),
        ),
    })?;
    if accepted.rejected > 0 {
        log::warn!(
            "the collector rejected {} data point(s): {}",
            accepted.rejected,
            if accepted.message.is_empty() {
                "(no message)".to_string()
            } else {
                sanitize_remote(&cfg.scrub(&accepted.message), REMOTE_TEXT_MAX)
            }
        );
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env_of;

    #[test]
    fn defaults_are_http_protobuf_on_4318() {
        let c = resolve(&OtlpSettings::default(), &env_of(&[])).unwrap();
        assert_eq!(
            (c.url.as_str(), c.protocol, c.gzip),
            (
                "http://localhost:4318/v1/metrics",
                Protocol::HttpProtobuf,
                false
            )
        );
        assert_eq!(c.timeout, Duration::from_secs(10));
    }

    #[test]
    fn signal_endpoint_is_used_as_is_and_wins_over_the_base() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://other:9999/custom",
            ),
        ]);
        assert_eq!(
            resolve(&OtlpSettings::default(), &env).unwrap().url,
            "http://other:9999/custom"
        );
        let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            resolve(&OtlpSettings::default(), &env).unwrap().url,
            "http://collector:4318/v1/metrics"
        );
    }

    #[test]
    fn spec_wins_over_the_environment() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://env:1/x"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=3"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]);
        let c = resolve(&OtlpSettings::default(), &env).unwrap();
        assert_eq!(c.protocol, Protocol::HttpJson);
        assert_eq!(
            c.headers,
            vec![("a".into(), "1".into()), ("b".into(), "3".into())]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.gzip);
        let spec = OtlpSettings {
            endpoint: Some("http://spec:4317".into()),
            protocol: Some(Protocol::Grpc),
            gzip: Some(false),
            ..Default::default()
        };
        let c = resolve(&spec, &env).unwrap();
        assert_eq!(
            (c.url.as_str(), c.protocol, c.gzip),
            ("http://spec:4317", Protocol::Grpc, false)
        );
    }

    #[test]
    fn user_information_in_an_endpoint_is_never_shown() {
        for (url, shown) in [
            (
                "http://user:pass@collector:4318/v1/metrics",
                "http://***@collector:4318/v1/metrics",
            ),
            ("https://token@collector:4317", "https://***@collector:4317"),
            (
                "http://u:p/a@ss@collector:4318/x",
                "http://***@collector:4318/x",
            ),
            ("user:pass@collector:4318", "***@collector:4318"),
            (
                "http://collector:4318/v1/metrics?x=a@b",
                "http://collector:4318/v1/metrics?x=a@b",
            ),
            ("http://collector:4318", "http://collector:4318"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
        let spec = OtlpSettings {
            endpoint: Some("user:pass@collector:4318".into()),
            ..Default::default()
        };
        let e = resolve(&spec, &env_of(&[])).unwrap_err().to_string();
        assert!(
            !e.contains("pass") && e.contains("***@collector:4318"),
            "{e}"
        );
        assert_eq!(
            scrub_userinfo(
                "bad uri: http://user:pass@collector:4318/v1/metrics",
                "http://user:pass@collector:4318"
            ),
            "bad uri: http://***@collector:4318/v1/metrics"
        );
    }

    #[test]
    fn export_errors_redact_the_endpoint() {
        let env = env_of(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://user:s3cret-pass@127.0.0.1:1",
        )]);
        let cfg = resolve(&OtlpSettings::default(), &env).unwrap();
        let req = ExportMetricsServiceRequest::default();
        // Nothing listens on port 1: the attempt fails at once, whatever the deadline.
        let e = export(&cfg, &req, Instant::now() + Duration::from_secs(2)).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("http://***@127.0.0.1:1/v1/metrics"),
            "{shown}"
        );
        let e = export(&cfg, &req, Instant::now()).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn the_signal_path_goes_into_the_path_before_any_query() {
        for (base, url) in [
            ("http://c:4318", "http://c:4318/v1/metrics"),
            ("http://c:4318/", "http://c:4318/v1/metrics"),
            ("http://c:1/?q=1", "http://c:1/v1/metrics?q=1"),
            ("http://c:1?q=1", "http://c:1/v1/metrics?q=1"),
            ("https://c/otlp/#f", "https://c/otlp/v1/metrics#f"),
            (
                "http://u:p@[::1]:4318/a?x=a@b",
                "http://u:p@[::1]:4318/a/v1/metrics?x=a@b",
            ),
        ] {
            assert_eq!(signal_url(base), url, "{base}");
        }
    }

    #[test]
    fn endpoints_no_attempt_could_reach_are_input_errors() {
        for ok in [
            "http://c:4318/v1/metrics",
            "https://[::1]:4317",
            "http://u:p@c/v1/metrics?q=1",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://host:99999",
            "http://host:0",
            "http://host:",
            "http://[::1",
            "http://[::1]x/",
            "http://:80",
            "http://a b/",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:s3cret@host:99999"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://[::1"),
        ] {
            let e = resolve(&OtlpSettings::default(), &env_of(&[(var, value)])).unwrap_err();
            let shown = e.to_string();
            assert!(matches!(e, ConfigError::Endpoint { .. }), "{shown}");
            assert!(
                shown.starts_with(var) && !shown.contains("s3cret"),
                "{shown}"
            );
        }
    }

    #[test]
    fn headers_that_cannot_be_sent_are_input_errors_that_never_show_a_value() {
        for protocol in ["http/protobuf", "grpc"] {
            for (var, value) in [
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=b\nSECRETVALUE"),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-a=SECRETVALUE\u{1}"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "Authorization: Bearer SECRETVALUE=x",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=%0ASECRETVALUE"),
                // Not ASCII: a collector may echo it re-encoded, past any scrub.
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-a=caf%C3%A9SECRETVALUE"),
                // The exporter's own framing.
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "content-length=5,x=SECRETVALUE",
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "Transfer-Encoding=chunked"),
            ] {
                let env = env_of(&[(var, value), ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)]);
                let e = resolve(&OtlpSettings::default(), &env).unwrap_err();
                let shown = e.to_string();
                assert!(matches!(e, ConfigError::Header { .. }), "{shown}");
                assert!(
                    shown.starts_with(var) && !shown.contains("SECRETVALUE"),
                    "{shown}"
                );
            }
        }
        let spec = OtlpSettings {
            headers: BTreeMap::from([("x-a".to_string(), "b\rc".to_string())]),
            ..Default::default()
        };
        let e = resolve(&spec, &env_of(&[])).unwrap_err().to_string();
        assert!(
            e.starts_with("output.otlp.headers") && e.contains("`x-a`"),
            "{e}"
        );
    }

    #[test]
    fn header_values_and_user_information_are_scrubbed_from_remote_text() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://user:pa%40ss@c:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer tok123,x-org=acme-prod",
            ),
        ]);
        let cfg = resolve(&OtlpSettings::default(), &env).unwrap();
        assert_eq!(
            cfg.scrub("bad Bearer tok123; token tok123 for acme-prod via http://user:pa%40ss@c:4318 (pa@ss)"),
            "bad ***; token *** for *** via http://***@c:4318 (***)"
        );
    }

    #[test]
    fn temporality_preference() {
        let t = |v: &str| {
            temporality(&env_of(&[(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
                v,
            )]))
        };
        assert_eq!(temporality(&env_of(&[])), Temporality::Cumulative);
        assert_eq!(t("Delta"), Temporality::Delta);
        assert_eq!(t("lowmemory"), Temporality::Delta);
        assert_eq!(t("cumulative"), Temporality::Cumulative);
        assert_eq!(t("sideways"), Temporality::Cumulative);
    }

    #[test]
    fn unknown_environment_values_are_ignored_and_enumerations_ignore_case() {
        let with =
            |k: &str, v: &str| resolve(&OtlpSettings::default(), &env_of(&[(k, v)])).unwrap();
        assert_eq!(
            with("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift").protocol,
            Protocol::HttpProtobuf
        );
        assert_eq!(
            with("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC").protocol,
            Protocol::Grpc
        );
        assert!(with("OTEL_EXPORTER_OTLP_COMPRESSION", "GZIP").gzip);
        assert!(!with("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd").gzip);
        // A bad (or zero) timeout is a warning and the default, as the SDKs have it.
        let zero = resolve(
            &OtlpSettings::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]),
        )
        .unwrap();
        assert_eq!(zero.timeout, DEFAULT_TIMEOUT);
        let c = resolve(
            &OtlpSettings::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
        )
        .unwrap();
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    }
}
