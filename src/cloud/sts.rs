//! STS AssumeAgency: the temporary credentials of an agency (usually of another account),
//! obtained with a cloud's base credentials (`POST {sts}/v5/agencies/assume`, signed like every
//! other call), as a credential provider wrapping the base chain.
//!
//! The base credentials sign the STS call only: every other call of the cloud is signed with the
//! agency's temporary credentials, so the base secret never reaches the other account's
//! services. The STS call goes through the base identity's request budget and credential gate:
//! a refused assumption (401 or 403) is a rejected signature of the base credentials, and none
//! is tried again with them for the gate's lockout, here or in another process sharing the
//! state. The temporary credentials name the agency's URN as their identity (`agency`), so the
//! budget, the project cache and the gate of the assumed identity stay one across renewals.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::auth::{Blocked, GateStore, Rejection};
use super::client::{Call, Client, ClientOptions, RetryPolicy};
use super::credentials::{
    CredentialChain, CredentialProvider, Credentials, CredentialsError, Loaded, Secret, Services,
};
use super::metadata::{due, parse_expiry};
use super::{auth, ConnectError};
use crate::domain::failure::{Api, DecodeError};
use crate::domain::ApiError;
use crate::endpoint::{redact_url, Endpoint};
use crate::log;
use crate::tls::{self, TlsFiles};

/// The API's path.
pub const PATH: &str = "/v5/agencies/assume";

/// The longest life STS grants credentials assumed with temporary ones (an agency chain).
pub const CHAINED_MAX: Duration = Duration::from_secs(3600);

/// The region's STS endpoint.
pub fn default_endpoint(region: &str) -> String {
    format!("https://sts.{region}.myhuaweicloud.com")
}

/// The agency to assume, as the spec names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agency {
    pub urn: String,
    pub session_name: String,
    pub duration: Duration,
    pub external_id: Option<String>,
}

impl Agency {
    /// The request's body; `chained` (the base credentials are temporary) caps the duration at
    /// what STS grants a chain.
    pub fn body(&self, chained: bool) -> Vec<u8> {
        let mut body = serde_json::json!({
            "agency_urn": self.urn,
            "agency_session_name": self.session_name,
            "duration_seconds": self.duration_for(chained).as_secs(),
        });
        if let Some(id) = &self.external_id {
            body["external_id"] = serde_json::Value::String(id.clone());
        }
        body.to_string().into_bytes()
    }

    fn duration_for(&self, chained: bool) -> Duration {
        match chained {
            true => self.duration.min(CHAINED_MAX),
            false => self.duration,
        }
    }
}

/// Where STS is, and how a call to it is made.
#[derive(Clone, Debug)]
pub struct StsSettings {
    /// Its base URL.
    pub endpoint: String,
    /// A private CA's PEM bundle to trust (the cloud's).
    pub ca_file: Option<PathBuf>,
    /// The longest one call may take.
    pub call_timeout: Duration,
}

#[derive(Deserialize)]
struct Answer {
    credentials: AnswerCredentials,
}

#[derive(Deserialize)]
struct AnswerCredentials {
    access_key_id: String,
    secret_access_key: String,
    security_token: String,
    expiration: String,
}

impl Client {
    /// One AssumeAgency call with this client's credentials (the base ones): the agency's
    /// temporary credentials, which name `agency.urn` as their identity.
    pub fn assume_agency(
        &self,
        agency: &Agency,
        chained: bool,
        deadline: Instant,
    ) -> Result<Credentials, ApiError> {
        let body = agency.body(chained);
        let ep = &self.opts.sts;
        let mut call = Call::post(ep, PATH, &body);
        call.api = Api::Sts;
        // A 403 is STS refusing this agency to this caller: the key itself signed well, and
        // may serve its other clouds (the provider holds the refused pair back).
        call.forbidden_is_permission = true;
        let a = self.call(&call, deadline)?;
        // The answer holds the secret: nothing of it is ever quoted.
        let unusable = |what: &str| {
            self.decode_failure(
                ep,
                DecodeError::Shape(what.to_string()),
                a.request_id.clone(),
            )
        };
        let answer: Answer = serde_json::from_str(&a.body).map_err(|_| {
            unusable("expected {\"credentials\": {access_key_id, secret_access_key, security_token, expiration}}")
        })?;
        let c = answer.credentials;
        if c.access_key_id.is_empty()
            || c.secret_access_key.is_empty()
            || c.security_token.is_empty()
        {
            return Err(unusable(
                "an empty access_key_id, secret_access_key or security_token",
            ));
        }
        let expires_at =
            parse_expiry(&c.expiration).ok_or_else(|| unusable("expiration is not a time"))?;
        if expires_at <= Utc::now() {
            return Err(unusable(&format!(
                "the credentials expired at {}; check this host's clock (NTP)",
                expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )));
        }
        Ok(Credentials {
            ak: Secret::new(c.access_key_id),
            sk: Secret::new(c.secret_access_key),
            token: Some(Secret::new(c.security_token)),
            source: format!("the agency {} (assumed through STS)", agency.urn),
            expires_at: Some(expires_at),
            agency: Some(agency.urn.clone()),
        })
    }
}

/// The agency's temporary credentials as a provider: the base chain's credentials sign the
/// AssumeAgency call; the answer is kept in memory only and asked for again before it expires.
pub struct AgencyProvider {
    base: CredentialChain,
    agency: Agency,
    sts: StsSettings,
    services: Option<Services>,
    /// The client signing with the base credentials (STS only), made at the first call.
    client: Option<Client>,
    /// When the credentials in use were had, and when they expire.
    held: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The cap of an agency chain was said.
    capped_said: bool,
    /// STS refused the agency to the base credential (kept in the gate's store too).
    refused: Option<(String, Rejection)>,
}

impl AgencyProvider {
    pub fn new(base: CredentialChain, agency: Agency, sts: StsSettings) -> Self {
        AgencyProvider {
            base,
            agency,
            sts,
            services: None,
            client: None,
            held: None,
            capped_said: false,
            refused: None,
        }
    }

    /// The client of the base credentials `base`: made once with STS's endpoint, the base
    /// identity's budget and the shared gate records; given fresh base credentials after.
    fn client(&mut self, base: Credentials) -> Result<&Client, CredentialsError> {
        let urn = self.agency.urn.clone();
        let local = |e: String| CredentialsError::Assume {
            urn: urn.clone(),
            error: ApiError::Local(e),
        };
        if let Some(c) = &self.client {
            c.set_credentials(base);
        } else {
            let sts = Endpoint::parse(&self.sts.endpoint).map_err(|e| local(e.to_string()))?;
            let tls = TlsFiles {
                ca: self
                    .sts
                    .ca_file
                    .as_deref()
                    .map(|p| tls::named("--ca-file (or cloud.ca_file)", p)),
                ..TlsFiles::default()
            }
            .load()
            .map_err(|e| local(ConnectError::from(e).to_string()))?;
            super::connect::warn_if_plain_http(&sts, true);
            let opts = ClientOptions::only(sts, self.sts.call_timeout, RetryPolicy::default());
            let principal = auth::principal_id(&base);
            let mut client = Client::new(base, opts, tls);
            if let Some(s) = &self.services {
                client = client.with_budget(s.budgets.budget(&principal));
                if let Some(gate) = &s.gate {
                    client = client.with_gate_store(gate.clone());
                }
            }
            self.client = Some(client);
        }
        // Set just above.
        self.client
            .as_ref()
            .ok_or_else(|| local("no STS client".into()))
    }

    /// Assumes the agency with `base`, and remembers until when the answer holds.
    fn assume(&mut self, base: Credentials) -> Result<Credentials, CredentialsError> {
        let chained = base.token.is_some();
        if chained
            && self.agency.duration > CHAINED_MAX
            && !std::mem::replace(&mut self.capped_said, true)
        {
            log::warn!(
                "{}: the base credentials ({}) are temporary, and STS grants an agency chain at most 1h: the agency's credentials last 1h, not the duration asked",
                self.agency.urn, base.source
            );
        }
        let urn = self.agency.urn.clone();
        let fail = |error| CredentialsError::Assume {
            urn: urn.clone(),
            error,
        };
        let deadline = Instant::now() + self.sts.call_timeout;
        let key = refusal_key(&base, &self.agency.urn);
        let store = self.services.as_ref().and_then(|s| s.gate.clone());
        // One refused assumption per pair and lockout, across processes too.
        let _turn = store.as_ref().and_then(|s| s.probe_lock(&key, deadline));
        if let Some(blocked) = self.refusal(&key, store.as_deref()).map_err(fail)? {
            return Err(fail(ApiError::Setup(held_back(&blocked))));
        }
        let agency = self.agency.clone();
        let client = self.client(base)?;
        client.begin_collection();
        let asked = Utc::now();
        match client.assume_agency(&agency, chained, deadline) {
            Ok(creds) => {
                self.held = Some((asked, creds.expires_at.unwrap_or(asked)));
                Ok(creds)
            }
            Err(ApiError::Http(f)) if f.status == 403 => {
                let rejection = Rejection {
                    at_ms: auth::now_ms(),
                    status: f.status,
                    code: f.code.clone(),
                };
                if let Some(Err(why)) = store.as_ref().map(|s| s.record_rejection(&key, &rejection))
                {
                    log::error!("the refusal of {urn} could not be recorded ({why}): the next run asks again");
                }
                self.refused = Some((key, rejection));
                Err(fail(ApiError::Http(f)))
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// A refusal of the pair `key` still in force (here, or recorded in the gate's store by
    /// another process): the assumption is not asked again before it ends. Records that cannot
    /// be read refuse too (the gate fails closed).
    fn refusal(
        &mut self,
        key: &str,
        store: Option<&dyn GateStore>,
    ) -> Result<Option<Blocked>, ApiError> {
        let now = auth::now_ms();
        let here = self
            .refused
            .as_ref()
            .filter(|(k, r)| k == key && r.in_force(now))
            .map(|(_, r)| r.clone());
        let stored = match store {
            Some(s) => s.rejection(key).map_err(ApiError::Unguarded)?,
            None => None,
        };
        Ok(here
            .or(stored)
            .filter(|r| r.in_force(now))
            .map(|rejection| Blocked {
                rejection,
                file: store.and_then(|s| s.recorded_in(key)),
                reset: store.map(|s| s.reset_command()),
            }))
    }
}

/// Why an assumption is not asked: STS refused it less than a lockout ago.
fn held_back(b: &Blocked) -> String {
    let r = &b.rejection;
    let at = |ms: u64| {
        DateTime::<Utc>::from_timestamp_millis(ms as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    };
    format!(
        "STS refused this agency to these credentials at {} (HTTP {}{}); not asked again until {} (check agency_urn, the agency's trust policy and external_id, and the base identity's sts:agencies:assume; or run '{}'){}",
        at(r.at_ms),
        r.status,
        r.code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        at(r.until_ms()),
        b.reset.as_deref().unwrap_or("maas-usage state reset --auth"),
        b.file
            .as_deref()
            .map(|f| format!("; recorded in {f}"))
            .unwrap_or_default()
    )
}

/// The key a refusal of `urn` to `base` is kept under in the gate's records: the pair, as a
/// one-way id (the base credential may be fine for its other clouds).
fn refusal_key(base: &Credentials, urn: &str) -> String {
    let pair = format!("assume\n{}\n{urn}", auth::gate_key(base));
    super::sign::sha256_hex(pair.as_bytes())[..16].to_string()
}

impl CredentialProvider for AgencyProvider {
    fn name(&self) -> String {
        format!(
            "the agency {} through STS {} (with {})",
            self.agency.urn,
            redact_url(&self.sts.endpoint),
            self.base.names().join(", ")
        )
    }

    /// The base chain's credentials, then the assumption; the base chain finding none is this
    /// provider having none (its error says what was tried).
    fn load(&mut self) -> Result<Loaded, CredentialsError> {
        let (base, warnings) = self.base.load()?;
        let credentials = self.assume(base)?;
        Ok(Loaded::Found {
            credentials,
            warnings,
        })
    }

    /// Assumed again once less than a quarter of the credentials' life (or five minutes) is
    /// left, with the base credentials renewed first when their provider has fresh ones.
    fn renew(&mut self) -> Result<Option<Credentials>, CredentialsError> {
        let fresh_base = self.base.renew()?;
        let Some((asked, expires_at)) = self.held else {
            return Ok(None);
        };
        if !due(asked, expires_at, Utc::now()) {
            if let (Some(base), Some(c)) = (fresh_base, &self.client) {
                c.set_credentials(base);
            }
            return Ok(None);
        }
        let base = match fresh_base {
            Some(b) => b,
            None => self.base.load()?.0,
        };
        self.assume(base).map(Some)
    }

    fn share(&mut self, services: &Services) {
        self.base.share(services);
        self.services = Some(services.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agency(duration: Duration, external_id: Option<&str>) -> Agency {
        Agency {
            urn: "iam::0a1b:agency:maas-readonly".into(),
            session_name: "maas-usage".into(),
            duration,
            external_id: external_id.map(String::from),
        }
    }

    fn creds(ak: &str) -> Credentials {
        Credentials {
            ak: Secret::new(ak),
            sk: Secret::new("SKCANARY-of-the-base-key"),
            token: None,
            source: "test".into(),
            expires_at: None,
            agency: None,
        }
    }

    #[test]
    fn a_refusal_is_kept_per_base_key_and_agency_by_a_one_way_id() {
        let (a, b) = (creds("AKCANARY1"), creds("AKCANARY2"));
        let k = refusal_key(&a, "iam::1:agency:x");
        assert_eq!(k, refusal_key(&a, "iam::1:agency:x"), "stable");
        assert_ne!(k, refusal_key(&a, "iam::1:agency:y"), "per agency");
        assert_ne!(k, refusal_key(&b, "iam::1:agency:x"), "per base key");
        assert_ne!(k, auth::gate_key(&a), "not the key's own record");
        assert!(k.len() == 16 && !k.contains("CANARY"));
    }

    #[test]
    fn the_body_is_what_the_sdk_sends_and_a_chain_asks_for_an_hour_at_most() {
        let a = agency(Duration::from_secs(7200), Some("ext-1"));
        let body: serde_json::Value = serde_json::from_slice(&a.body(false)).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"agency_urn": "iam::0a1b:agency:maas-readonly", "agency_session_name": "maas-usage", "duration_seconds": 7200, "external_id": "ext-1"})
        );
        let chained: serde_json::Value = serde_json::from_slice(&a.body(true)).unwrap();
        assert_eq!(chained["duration_seconds"], 3600);
        let plain: serde_json::Value =
            serde_json::from_slice(&agency(Duration::from_secs(900), None).body(true)).unwrap();
        assert_eq!(plain["duration_seconds"], 900);
        assert!(plain.get("external_id").is_none());
    }
}
