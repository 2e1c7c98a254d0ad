//! Pushing OTLP metrics to a collector: configuration by the exporter conventions, OTLP/HTTP
//! through ureq, OTLP/gRPC through tonic (feature `grpc`), retries per the OTLP specification.

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
            log::warn(&format!(
                "{var}={other}: use cumulative, delta or lowmemory; cumulative is used"
            ));
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
    #[error(transparent)]
    Tls(#[from] TlsError),
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

/// Spec first, then the signal-specific variable, then the generic one, then the default.
pub fn resolve(spec: &OtlpSettings, env: Lookup<'_>) -> Result<ExportConfig, ConfigError> {
    let get = |k: &str| env::get(env, k);
    let pick = |signal: &str, generic: &str| {
        get(signal)
            .map(|v| (signal.to_string(), v))
            .or_else(|| get(generic).map(|v| (generic.to_string(), v)))
    };

    let protocol = match spec.protocol {
        Some(p) => p,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ) {
            Some((name, v)) => Protocol::parse(&v)
                .ok_or_else(|| bad(&name, &v, "use grpc, http/protobuf or http/json"))?,
            None => Protocol::HttpProtobuf,
        },
    };
    let insecure = match spec.insecure {
        Some(i) => i,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
            "OTEL_EXPORTER_OTLP_INSECURE",
        ) {
            Some((_, v)) if v.eq_ignore_ascii_case("true") => true,
            Some((_, v)) if v.eq_ignore_ascii_case("false") => false,
            Some((name, v)) => return Err(bad(&name, &v, "use true or false")),
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
        _ => format!("{}/v1/metrics", base.trim_end_matches('/')),
    };
    let url = match (
        &spec.endpoint,
        get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        get("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(base), _, _) => with_path(base),
        // A signal-specific endpoint is used as is (for gRPC, a missing scheme still means TLS
        // unless insecure).
        (None, Some(signal), _) if protocol == Protocol::Grpc => with_path(&signal),
        (None, Some(signal), _) => signal,
        (None, None, Some(base)) => with_path(&base),
        (None, None, None) => with_path(default_base),
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::Scheme(redact_url(&url)));
    }

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    ] {
        for (k, v) in get(var).as_deref().map(parse_kv_list).unwrap_or_default() {
            headers.insert(k.to_ascii_lowercase(), v);
        }
    }
    for (k, v) in &spec.headers {
        headers.insert(k.to_ascii_lowercase(), v.clone());
    }

    let timeout = match spec.timeout {
        Some(t) => t,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ) {
            // As the SDKs do: a bad value is a warning, and the default holds.
            Some((name, v)) => env_ms(&v, &name).unwrap_or_else(|e| {
                log::warn(&format!("{e}; the default, 10 s, is used"));
                DEFAULT_TIMEOUT
            }),
            None => DEFAULT_TIMEOUT,
        },
    };
    let gzip = match spec.gzip {
        Some(g) => g,
        None => match pick(
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
            "OTEL_EXPORTER_OTLP_COMPRESSION",
        ) {
            Some((_, v)) if v == "gzip" => true,
            Some((_, v)) if v == "none" => false,
            Some((name, v)) => return Err(bad(&name, &v, "use gzip or none")),
            None => false,
        },
    };
    let file = |spec_path: &Option<std::path::PathBuf>, key: &str, var: &str| {
        let (signal, generic) = (
            format!("OTEL_EXPORTER_OTLP_METRICS_{var}"),
            format!("OTEL_EXPORTER_OTLP_{var}"),
        );
        match spec_path {
            Some(p) => Some(tls::named(&format!("output.otlp.{key}"), p)),
            None => {
                pick(&signal, &generic).map(|(name, v)| tls::named(&name, std::path::Path::new(&v)))
            }
        }
    };
    let tls = TlsFiles {
        ca: file(&spec.certificate, "certificate", "CERTIFICATE"),
        client_cert: file(
            &spec.client_certificate,
            "client_certificate",
            "CLIENT_CERTIFICATE",
        ),
        client_key: file(&spec.client_key, "client_key", "CLIENT_KEY"),
    }
    .load()?;
    Ok(ExportConfig {
        url,
        protocol,
        headers: headers.into_iter().collect(),
        timeout,
        gzip,
        tls,
    })
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
            log::debug(&format!(
                "OTLP export retry in {} ms after: {}",
                wait.as_millis(),
                scrub_userinfo(&e.message, &cfg.url)
            ))
        },
    );
    let fail = |e: AttemptError, suffix: &str| ExportError {
        url: redact_url(&cfg.url),
        attempts,
        message: scrub_userinfo(&format!("{}{suffix}", e.message), &cfg.url),
        local: e.local,
    };
    let accepted = result.map_err(|gave_up| match gave_up {
        GaveUp::Fatal(e) | GaveUp::Attempts(e) => fail(e, ""),
        GaveUp::Deadline(e) => fail(e, " (no time left to retry)"),
    })?;
    if accepted.rejected > 0 {
        log::warn(&format!(
            "the collector rejected {} data point(s): {}",
            accepted.rejected,
            if accepted.message.is_empty() {
                "(no message)".to_string()
            } else {
                sanitize_remote(&accepted.message, REMOTE_TEXT_MAX)
            }
        ));
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
    fn bad_environment_values_are_errors() {
        assert!(resolve(
            &OtlpSettings::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")])
        )
        .is_err());
        // A bad timeout is a warning and the default, as the SDKs have it.
        let c = resolve(
            &OtlpSettings::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]),
        )
        .unwrap();
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert!(resolve(
            &OtlpSettings::default(),
            &env_of(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")])
        )
        .is_err());
    }
}
