//! The simulator's instance metadata service: temporary credentials of an "agency", handed out
//! as ECS does (`GET /openstack/latest/securitykey`) and accepted by the simulator's gateway
//! until they expire, so tests and the demo can show the credential chain's last step.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::SimCredential;

/// Credentials issued so far, each with its end.
#[derive(Default)]
pub struct Issuer {
    /// Starts the access keys it hands out (`TEMPAK` by default).
    prefix: &'static str,
    seq: AtomicU64,
    fetches: AtomicU64,
    issued: Mutex<Vec<(SimCredential, DateTime<Utc>)>>,
}

impl Issuer {
    /// The securitykey document: a fresh credential valid for `lifetime`, or with `reuse` the
    /// last one again while an eighth of its life is left (ECS hands out new ones near the end).
    pub fn issue(&self, lifetime: Duration, reuse: bool) -> String {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let last = self
            .issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned();
        match last {
            Some((cred, until)) if reuse && Utc::now() + lifetime / 8 < until => {
                document(&cred, until)
            }
            _ => self.issue_fresh(lifetime),
        }
    }

    fn issue_fresh(&self, lifetime: Duration) -> String {
        let (cred, expires_at) = self.mint(lifetime);
        document(&cred, expires_at)
    }

    /// An issuer whose access keys start with `prefix` (STS's, say).
    pub fn with_prefix(prefix: &'static str) -> Self {
        Issuer {
            prefix,
            ..Issuer::default()
        }
    }

    /// Fresh temporary credentials valid for `lifetime`, accepted from now until they expire.
    pub fn mint(&self, lifetime: Duration) -> (SimCredential, DateTime<Utc>) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let prefix = if self.prefix.is_empty() {
            "TEMP"
        } else {
            self.prefix
        };
        let cred = SimCredential {
            ak: format!("{prefix}AK{n:014}"),
            sk: format!("temporary-secret-{n:08}-of-the-simulated-agency-{prefix}"),
            token: Some(format!("temporary-security-token-{n:08}-{prefix}")),
        };
        let expires_at =
            Utc::now() + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((cred.clone(), expires_at));
        (cred, expires_at)
    }

    /// The issued credential with this access key, and whether it has expired.
    pub fn find(&self, ak: &str) -> Option<(SimCredential, bool)> {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(c, _)| c.ak == ak)
            .map(|(c, until)| (c.clone(), Utc::now() >= *until))
    }

    /// When the last credentials handed out expire.
    pub fn last_expiry(&self) -> Option<DateTime<Utc>> {
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .map(|(_, until)| *until)
    }

    /// How many distinct credentials were handed out.
    pub fn count(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// How many answers were given.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

fn document(cred: &SimCredential, expires_at: DateTime<Utc>) -> String {
    serde_json::json!({"credential": {
        "access": cred.ak,
        "secret": cred.sk,
        "securitytoken": cred.token,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    }})
    .to_string()
}
