//! OTLP/gRPC through the generated tonic client, on a current-thread runtime made for the call
//! (the rest of the program is synchronous).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use super::{Accepted, AttemptError, ExportConfig, HeaderProblem, CA_OPTION};
use crate::text::{sanitize_remote, REMOTE_TEXT_MAX};

fn fatal(message: String) -> AttemptError {
    AttemptError::remote(false, message)
}

/// A failure of this side's configuration (exit 2): no attempt will do better.
fn local(message: String) -> AttemptError {
    AttemptError {
        local: true,
        ..fatal(message)
    }
}

/// Why gRPC cannot carry a header as ASCII metadata, by tonic's own rules.
pub(super) fn header_problem(name: &str, value: &str) -> Option<HeaderProblem> {
    if MetadataKey::<tonic::metadata::Ascii>::from_bytes(name.as_bytes()).is_err() {
        return Some(HeaderProblem::Name(
            "gRPC metadata accepts (lower-case letters, digits, `-`, `_` and `.`, not ending in `-bin`)",
        ));
    }
    if MetadataValue::<tonic::metadata::Ascii>::try_from(value).is_err() {
        return Some(HeaderProblem::Value("gRPC metadata cannot carry"));
    }
    None
}

/// The client's TLS: the configured CA (else the Mozilla roots) and identity.
fn tls_config(cfg: &ExportConfig) -> ClientTlsConfig {
    let mut tls = match &cfg.tls.ca_pem {
        Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem.as_slice())),
        None => ClientTlsConfig::new().with_webpki_roots(),
    };
    if let Some(id) = &cfg.tls.identity {
        tls = tls.identity(Identity::from_pem(
            id.cert_pem.as_slice(),
            id.key_pem.as_slice(),
        ));
    }
    tls
}

pub fn export(
    cfg: &ExportConfig,
    req: &ExportMetricsServiceRequest,
    timeout: Duration,
) -> Result<Accepted, AttemptError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fatal(format!("cannot start the gRPC runtime: {e}")))?;
    rt.block_on(async {
        let mut endpoint = Endpoint::from_shared(cfg.url.clone())
            .map_err(|e| {
                local(cfg.scrub(&format!(
                    "bad gRPC endpoint {}: {e}",
                    super::redact_url(&cfg.url)
                )))
            })?
            .timeout(timeout)
            .connect_timeout(timeout);
        if cfg.url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls_config(cfg))
                .map_err(|e| local(cfg.scrub(&format!("TLS setup: {e}"))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            // An untrusted certificate will not be trusted on the next attempt either.
            match crate::tls::untrusted_certificate(&e) {
                Some(why) => AttemptError {
                    local: true,
                    ..fatal(cfg.tls.untrusted_message(&why, CA_OPTION))
                },
                None => AttemptError::remote(
                    true,
                    cfg.scrub(&format!("cannot reach the collector: {e}")),
                ),
            }
        })?;
        let mut client = MetricsServiceClient::new(channel);
        if cfg.gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut request = tonic::Request::new(req.clone());
        for (k, v) in &cfg.headers {
            // Checked when the configuration was resolved; never the value in a message.
            let key = MetadataKey::from_bytes(k.as_bytes())
                .map_err(|_| local("a header name gRPC cannot carry".into()))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| local(format!("header `{k}` has a value gRPC cannot carry")))?;
            request.metadata_mut().insert(key, value);
        }
        match client.export(request).await {
            Ok(resp) => {
                let partial = resp.into_inner().partial_success.unwrap_or_default();
                Ok(Accepted {
                    rejected: partial.rejected_data_points,
                    message: partial.error_message,
                })
            }
            Err(status) => Err(AttemptError::remote(
                // The codes the OTLP specification lists as retryable.
                matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::ResourceExhausted
                        | Code::Cancelled
                        | Code::DeadlineExceeded
                        | Code::Aborted
                        | Code::OutOfRange
                        | Code::DataLoss
                ),
                status_message(&status, |t| cfg.scrub(t)),
            )),
        }
    })
}

/// A gRPC error status in one capped line: the message is the collector's text, with `scrub`
/// applied to the whole of it first.
fn status_message(status: &tonic::Status, scrub: impl Fn(&str) -> String) -> String {
    format!(
        "gRPC {:?}: {}",
        status.code(),
        sanitize_remote(&scrub(status.message()), REMOTE_TEXT_MAX)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_one_capped_line() {
        let status_message = |s: &tonic::Status| status_message(s, str::to_string);
        let s = tonic::Status::new(Code::PermissionDenied, "no\nE! fake\u{1b}[2J");
        assert_eq!(
            status_message(&s),
            "gRPC PermissionDenied: no\\u{a}E! fake\\u{1b}[2J"
        );
        let s = tonic::Status::new(Code::Unavailable, "y".repeat(5000));
        assert!(status_message(&s).ends_with("y…"));
        assert!(status_message(&s).len() < 400);
    }

    #[test]
    fn status_messages_are_scrubbed_and_headers_checked() {
        let s = tonic::Status::new(Code::Unauthenticated, "bad token SECRETVALUE");
        assert_eq!(
            status_message(&s, |t| t.replace("SECRETVALUE", "***")),
            "gRPC Unauthenticated: bad token ***"
        );
        assert!(header_problem("x-scope-orgid", "a b").is_none());
        for name in ["x a", "x-data-bin"] {
            assert!(
                matches!(header_problem(name, "v"), Some(HeaderProblem::Name(_))),
                "{name}"
            );
        }
        assert!(matches!(
            header_problem("x-a", "b\nc"),
            Some(HeaderProblem::Value(_))
        ));
    }
}
