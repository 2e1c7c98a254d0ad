//! Temporary credentials of an ECS/CCE instance's agency, from the instance metadata service
//! (`GET {endpoint}/openstack/latest/securitykey`): the recommended set-up, with no long-lived
//! key on the host. The last provider of the credential chain: its credentials are kept in
//! memory only and fetched again before they expire.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::credentials::{CredentialProvider, Credentials, CredentialsError, Loaded, Secret};
use crate::endpoint::redact_url;
use crate::text::{sanitize_remote, REMOTE_TEXT_MAX};

/// Where the metadata service answers on Huawei Cloud instances.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
pub const PATH: &str = "/openstack/latest/securitykey";
/// Hosts without the service should fail fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_ANSWER: u64 = 64 * 1024;

/// Why the metadata service gave no credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Nothing answers there (refused, no route within the connect timeout): a host without
    /// the service.
    #[error("{endpoint} did not answer ({why})")]
    Unreachable { endpoint: String, why: String },
    /// Connected, and then no answer came (a timeout, a reset): the service is failing.
    #[error("{endpoint} failed to answer ({why})")]
    Failed { endpoint: String, why: String },
    #[error("{endpoint} answered HTTP {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("{endpoint} answered something that is not a securitykey document ({why})")]
    Unusable { endpoint: String, why: String },
    /// Credentials already past their end: every call signed with them would be rejected.
    #[error(
        "{endpoint} handed out credentials that expired at {at}; check this host's clock (NTP)"
    )]
    Expired { endpoint: String, at: String },
}

impl MetadataError {
    /// The service is there and failing (a 5xx or 429, no answer after connecting, expired
    /// credentials): the cloud's failure, not a sign that no credentials were configured.
    pub fn is_outage(&self) -> bool {
        match self {
            MetadataError::Failed { .. } | MetadataError::Expired { .. } => true,
            MetadataError::Status { status, .. } => *status >= 500 || *status == 429,
            MetadataError::Unreachable { .. } | MetadataError::Unusable { .. } => false,
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    credential: Credential,
}

#[derive(Deserialize)]
struct Credential {
    access: String,
    secret: String,
    securitytoken: String,
    expires_at: String,
}

/// `2026-11-30T05:36:20.123000Z`, with or without fraction or zone (UTC then).
pub(super) fn parse_expiry(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s.trim_end_matches('Z'), f).ok())
                .map(|t| t.and_utc())
        })
}

/// Fetches the agency's temporary credentials. `endpoint` is the service's base URL.
pub fn fetch(endpoint: &str) -> Result<Credentials, MetadataError> {
    let base = endpoint.trim_end_matches('/');
    let url = format!("{base}{PATH}");
    // Never through a proxy (169.254.169.254 is the instance's own), never redirected.
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(TIMEOUT))
        .user_agent(concat!("maas-usage/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let endpoint = redact_url(base);
    let mut resp = agent.get(&url).call().map_err(|e| {
        let endpoint = endpoint.clone();
        match e {
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => {
                MetadataError::Unreachable {
                    endpoint,
                    why: "timed out connecting".into(),
                }
            }
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => {
                MetadataError::Unreachable {
                    endpoint,
                    why: "connection failed".into(),
                }
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                MetadataError::Unreachable {
                    endpoint,
                    why: io.to_string(),
                }
            }
            ureq::Error::Timeout(_) => MetadataError::Failed {
                endpoint,
                why: "timed out".into(),
            },
            other => MetadataError::Failed {
                endpoint,
                why: other.to_string(),
            },
        }
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|e| MetadataError::Failed {
            endpoint: endpoint.clone(),
            why: format!("reading the answer failed: {e}"),
        })?;
    if !(200..300).contains(&status) {
        return Err(MetadataError::Status {
            endpoint: endpoint.clone(),
            status,
            message: sanitize_remote(&body, REMOTE_TEXT_MAX),
        });
    }
    let unusable = |why: &str| MetadataError::Unusable {
        endpoint: endpoint.clone(),
        why: why.to_string(),
    };
    // The answer holds the secret: nothing of it is ever quoted in an error.
    let answer: Answer = serde_json::from_str(&body).map_err(|_| {
        unusable("expected {\"credential\": {access, secret, securitytoken, expires_at}}")
    })?;
    let c = answer.credential;
    if c.access.is_empty() || c.secret.is_empty() || c.securitytoken.is_empty() {
        return Err(unusable("an empty access, secret or securitytoken"));
    }
    let expires_at =
        parse_expiry(&c.expires_at).ok_or_else(|| unusable("expires_at is not a time"))?;
    if expires_at <= Utc::now() {
        return Err(MetadataError::Expired {
            endpoint: endpoint.clone(),
            at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
    }
    Ok(Credentials {
        ak: Secret::new(c.access),
        sk: Secret::new(c.secret),
        token: Some(Secret::new(c.securitytoken)),
        source: format!("the metadata service {base} (the instance's agency)"),
        expires_at: Some(expires_at),
        agency: Some(endpoint),
    })
}

/// The metadata service as a credential provider. Its credentials name the agency by the
/// service's URL (`agency`), so that every temporary key it hands out is one identity.
pub struct MetadataProvider {
    endpoint: String,
    /// When the credentials in use were fetched, and when they expire.
    fetched: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl MetadataProvider {
    /// The service at `endpoint` (its base URL).
    pub fn new(endpoint: impl Into<String>) -> Self {
        MetadataProvider {
            endpoint: endpoint.into(),
            fetched: None,
        }
    }
}

impl CredentialProvider for MetadataProvider {
    fn name(&self) -> String {
        format!("the metadata service {}", redact_url(&self.endpoint))
    }

    /// A host without the service (nothing answers, or something else does) has no
    /// credentials here; a service that is there and failing is an error (the cloud's).
    fn load(&mut self) -> Result<Loaded, CredentialsError> {
        let fetched_at = Utc::now();
        match fetch(&self.endpoint) {
            Ok(credentials) => {
                self.fetched = Some((fetched_at, credentials.expires_at.unwrap_or(fetched_at)));
                Ok(Loaded::Found {
                    credentials,
                    warnings: Vec::new(),
                })
            }
            Err(e) if e.is_outage() => Err(CredentialsError::Metadata(e)),
            Err(e) => Ok(Loaded::Absent(format!("the metadata service: {e}"))),
        }
    }

    /// Fetched again once [`due`]; until then, `None`.
    fn renew(&mut self) -> Result<Option<Credentials>, CredentialsError> {
        let Some((fetched_at, expires_at)) = self.fetched else {
            return Ok(None);
        };
        let now = Utc::now();
        if !due(fetched_at, expires_at, now) {
            return Ok(None);
        }
        let creds = fetch(&self.endpoint).map_err(CredentialsError::Metadata)?;
        self.fetched = Some((now, creds.expires_at.unwrap_or(now)));
        Ok(Some(creds))
    }
}

/// Whether credentials that expire at `expires_at` (fetched at `fetched_at`) should be fetched
/// again at `now`: once less than a quarter of their life, or five minutes, is left.
pub fn due(fetched_at: DateTime<Utc>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let life = expires_at - fetched_at;
    let margin = (life / 4).min(chrono::Duration::minutes(5));
    now + margin >= expires_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_in_the_forms_the_service_writes() {
        let want = DateTime::parse_from_rfc3339("2026-11-30T05:36:20Z")
            .unwrap()
            .with_timezone(&Utc);
        for s in [
            "2026-11-30T05:36:20Z",
            "2026-11-30T05:36:20.000000Z",
            "2026-11-30T05:36:20",
            "2026-11-30T13:36:20+08:00",
        ] {
            assert_eq!(parse_expiry(s), Some(want), "{s}");
        }
        assert_eq!(parse_expiry("tomorrow"), None);
    }

    #[test]
    fn refreshed_before_a_quarter_of_the_life_or_five_minutes_is_left() {
        let t0 = DateTime::parse_from_rfc3339("2026-11-30T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let day = t0 + chrono::Duration::hours(24);
        assert!(!due(t0, day, t0 + chrono::Duration::hours(23)));
        assert!(due(t0, day, day - chrono::Duration::minutes(4)));
        let short = t0 + chrono::Duration::seconds(4);
        assert!(!due(t0, short, t0 + chrono::Duration::seconds(2)));
        assert!(due(t0, short, t0 + chrono::Duration::seconds(3)));
    }

    #[test]
    fn a_service_that_is_there_and_failing_is_an_outage_not_missing_credentials() {
        let status = |status| MetadataError::Status {
            endpoint: "e".into(),
            status,
            message: String::new(),
        };
        assert!(status(500).is_outage() && status(503).is_outage() && status(429).is_outage());
        assert!(!status(404).is_outage() && !status(401).is_outage());
        let (endpoint, why) = ("e".to_string(), "x".to_string());
        assert!(MetadataError::Failed {
            endpoint: endpoint.clone(),
            why: why.clone()
        }
        .is_outage());
        assert!(!MetadataError::Unreachable { endpoint, why }.is_outage());
    }

    #[test]
    fn a_host_without_the_service_fails_fast_and_says_where() {
        // A port nothing listens on: refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("http://127.0.0.1:{port}")).unwrap_err();
        assert!(matches!(e, MetadataError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains(&port.to_string()));
        // As a provider: none here, said in its line of the chain's error; nothing to renew.
        let mut p = MetadataProvider::new(format!("http://127.0.0.1:{port}"));
        let Ok(Loaded::Absent(line)) = p.load() else {
            panic!("credentials from nowhere");
        };
        assert!(
            line.starts_with("the metadata service: http://127.0.0.1:"),
            "{line}"
        );
        assert!(p.renew().unwrap().is_none());
    }
}
