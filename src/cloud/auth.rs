//! The credential gate: keeps a wrong key from getting the access key locked.
//!
//! The API gateway locks an access key after a few rejected signatures in a row. So:
//! - until a credential has been accepted once, its signed calls go out **one at a time** (a
//!   probe), in this process and, through the store's lock, across processes sharing a state
//!   directory: a wrong key costs one rejected call, not one per series;
//! - after a 401 or 403, no signed call is made with the same credential for [`LOCKOUT`], here
//!   and (through the store) in every other process using the same state directory; a changed
//!   credential (another fingerprint) is tried at once.
//!
//! Credentials are known by a fingerprint (a truncated SHA-256 of AK, SK and token), never by
//! their values.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::credentials::Credentials;
use super::sign::sha256_hex;
pub use crate::domain::failure::{Rejection, LOCKOUT};

/// Where rejections are shared with other processes (the state directory).
pub trait RejectionStore: Send + Sync {
    /// The rejection recorded for `fingerprint`, if any.
    fn rejection(&self, fingerprint: &str) -> Option<Rejection>;
    fn record_rejection(&self, fingerprint: &str, rejection: &Rejection);
    /// Forgets the rejection of `fingerprint` (the credential was accepted since).
    fn clear_rejection(&self, fingerprint: &str);
    /// An exclusive cross-process lock for probing `fingerprint`, waited for until `deadline`;
    /// `None` when it cannot be had (the probe is then serialised in this process only).
    fn probe_lock(&self, fingerprint: &str, deadline: Instant) -> Option<Box<dyn Send>>;
}

/// A short, stable, one-way key for an access key (the request budget and the project-id cache
/// are kept per access key, never under the key itself).
pub fn access_key_id(ak: &str) -> String {
    sha256_hex(ak.as_bytes())[..16].to_string()
}

/// A one-way, stable name for a credential.
pub fn fingerprint(creds: &Credentials) -> String {
    let mut material = Vec::new();
    for part in [
        Some(creds.ak.expose()),
        Some(creds.sk.expose()),
        creds.token.as_ref().map(|t| t.expose()),
    ] {
        material.extend_from_slice(part.unwrap_or("").as_bytes());
        material.push(0);
    }
    let h = sha256_hex(&material);
    material.iter_mut().for_each(|b| *b = 0);
    h[..16].to_string()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Trust {
    /// Not accepted yet: one probe at a time.
    Unverified,
    /// Accepted at least once by the server.
    Verified,
    Rejected(Rejection),
}

struct Inner {
    trust: Trust,
    /// A probe is in flight in this process.
    probing: bool,
}

/// The gate of one credential.
pub struct AuthGate {
    fingerprint: String,
    inner: Mutex<Inner>,
    changed: Condvar,
    store: Option<std::sync::Arc<dyn RejectionStore>>,
}

/// Why a signed call was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The credential was rejected less than [`LOCKOUT`] ago.
    Rejected(Rejection),
    /// Another call is probing the credential and did not finish before the deadline.
    Deadline,
}

/// Permission to send one signed call; report its outcome with [`Permit::finish`].
pub struct Permit<'a> {
    gate: &'a AuthGate,
    probe: bool,
    _cross_process: Option<Box<dyn Send>>,
}

/// What a signed call's answer says about the credential.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Rejected {
        status: u16,
    },
    /// Neither (throttled, server error, transport error): proves nothing.
    Unknown,
}

impl Verdict {
    pub fn of_status(status: u16) -> Verdict {
        match status {
            200..=299 => Verdict::Accepted,
            401 | 403 => Verdict::Rejected { status },
            _ => Verdict::Unknown,
        }
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuthGate {
    pub fn new(creds: &Credentials, store: Option<std::sync::Arc<dyn RejectionStore>>) -> Self {
        AuthGate {
            fingerprint: fingerprint(creds),
            inner: Mutex::new(Inner {
                trust: Trust::Unverified,
                probing: false,
            }),
            changed: Condvar::new(),
            store,
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The rejection in force, from this process or the store; `None` when calls may go out.
    pub fn blocked(&self) -> Option<Rejection> {
        let now = now_ms();
        let mut inner = lock(&self.inner);
        if let Trust::Rejected(r) = &inner.trust {
            if r.in_force(now) {
                return Some(r.clone());
            }
            inner.trust = Trust::Unverified;
        }
        if inner.trust == Trust::Verified {
            return None;
        }
        drop(inner);
        let r = self.stored(now)?;
        lock(&self.inner).trust = Trust::Rejected(r.clone());
        Some(r)
    }

    fn stored(&self, now: u64) -> Option<Rejection> {
        self.store
            .as_ref()?
            .rejection(&self.fingerprint)
            .filter(|r| r.in_force(now))
    }

    /// Waits for permission to send a signed call. Verified credentials pass at once; an
    /// unverified one waits for any probe in flight (here, then in other processes) and
    /// becomes the probe itself.
    pub fn enter(&self, deadline: Instant) -> Result<Permit<'_>, Refusal> {
        let mut inner = lock(&self.inner);
        loop {
            if let Trust::Rejected(r) = &inner.trust {
                if r.in_force(now_ms()) {
                    return Err(Refusal::Rejected(r.clone()));
                }
                inner.trust = Trust::Unverified;
            }
            if inner.trust == Trust::Verified {
                return Ok(Permit {
                    gate: self,
                    probe: false,
                    _cross_process: None,
                });
            }
            if !inner.probing {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Refusal::Deadline);
            }
            // Short waits keep a stop signal or the deadline noticed.
            let wait = (deadline - now).min(Duration::from_millis(100));
            inner = self
                .changed
                .wait_timeout(inner, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        inner.probing = true;
        drop(inner);
        // Across processes: whoever probes first decides for the others.
        let cross = self
            .store
            .as_ref()
            .and_then(|s| s.probe_lock(&self.fingerprint, deadline));
        if let Some(r) = self.stored(now_ms()) {
            self.settle(Trust::Rejected(r.clone()));
            return Err(Refusal::Rejected(r));
        }
        Ok(Permit {
            gate: self,
            probe: true,
            _cross_process: cross,
        })
    }

    fn settle(&self, trust: Trust) {
        let mut inner = lock(&self.inner);
        inner.probing = false;
        // A rejection seen by a concurrent verified call wins over a later acceptance.
        if !matches!(inner.trust, Trust::Rejected(_)) || matches!(trust, Trust::Rejected(_)) {
            inner.trust = trust;
        }
        drop(inner);
        self.changed.notify_all();
    }
}

impl Permit<'_> {
    /// Records what the answer says about the credential.
    pub fn finish(self, code: Option<&str>, verdict: Verdict) -> Option<Rejection> {
        let gate = self.gate;
        match verdict {
            Verdict::Rejected { status } => {
                let r = Rejection {
                    at_ms: now_ms(),
                    status,
                    code: code.map(str::to_string),
                };
                if let Some(s) = &gate.store {
                    s.record_rejection(&gate.fingerprint, &r);
                }
                gate.settle(Trust::Rejected(r.clone()));
                Some(r)
            }
            Verdict::Accepted => {
                if self.probe {
                    if let Some(s) = &gate.store {
                        s.clear_rejection(&gate.fingerprint);
                    }
                    gate.settle(Trust::Verified);
                }
                None
            }
            Verdict::Unknown => {
                if self.probe {
                    gate.settle(Trust::Unverified);
                }
                None
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe that ends without a verdict (a panic, an early return) frees the way.
        if self.probe {
            let mut inner = lock(&self.gate.inner);
            if inner.probing {
                inner.probing = false;
                drop(inner);
                self.gate.changed.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::credentials::Secret;
    use std::collections::HashMap;
    use std::sync::Arc;

    fn creds(sk: &str) -> Credentials {
        Credentials {
            ak: Secret::new("AK"),
            sk: Secret::new(sk),
            token: None,
            source: "test".into(),
            expires_at: None,
        }
    }

    #[derive(Default)]
    struct MemStore(Mutex<HashMap<String, Rejection>>);

    impl RejectionStore for MemStore {
        fn rejection(&self, f: &str) -> Option<Rejection> {
            self.0.lock().unwrap().get(f).cloned()
        }
        fn record_rejection(&self, f: &str, r: &Rejection) {
            self.0.lock().unwrap().insert(f.into(), r.clone());
        }
        fn clear_rejection(&self, f: &str) {
            self.0.lock().unwrap().remove(f);
        }
        fn probe_lock(&self, _: &str, _: Instant) -> Option<Box<dyn Send>> {
            None
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn fingerprints_are_stable_one_way_and_change_with_any_part() {
        let a = fingerprint(&creds("SECRETSK"));
        assert_eq!(a, fingerprint(&creds("SECRETSK")));
        assert_ne!(a, fingerprint(&creds("SECRETSL")));
        let mut t = creds("SECRETSK");
        t.token = Some(Secret::new("T"));
        assert_ne!(a, fingerprint(&t));
        assert!(!a.contains("SECRET") && a.len() == 16);
    }

    #[test]
    fn a_rejection_closes_the_gate_here_and_in_the_store() {
        let store = Arc::new(MemStore::default());
        let gate = AuthGate::new(&creds("x"), Some(store.clone()));
        let p = gate.enter(soon()).unwrap();
        assert!(p
            .finish(Some("APIGW.0301"), Verdict::Rejected { status: 401 })
            .is_some());
        assert!(matches!(gate.enter(soon()), Err(Refusal::Rejected(_))));
        // Another process with the same credentials sees it without calling.
        let other = AuthGate::new(&creds("x"), Some(store.clone()));
        assert!(other.blocked().is_some());
        assert!(matches!(other.enter(soon()), Err(Refusal::Rejected(_))));
        // Other credentials are tried at once.
        let fixed = AuthGate::new(&creds("y"), Some(store));
        assert!(fixed.blocked().is_none());
        assert!(fixed.enter(soon()).is_ok());
    }

    #[test]
    fn a_rejection_expires_after_the_lockout() {
        let store = Arc::new(MemStore::default());
        let gate = AuthGate::new(&creds("x"), Some(store.clone()));
        let old = Rejection {
            at_ms: now_ms() - LOCKOUT.as_millis() as u64 - 1,
            status: 401,
            code: None,
        };
        store.record_rejection(gate.fingerprint(), &old);
        assert!(gate.blocked().is_none());
        assert!(gate.enter(soon()).is_ok());
    }

    #[test]
    fn unverified_credentials_probe_one_at_a_time_then_run_free() {
        let gate = Arc::new(AuthGate::new(&creds("x"), None));
        let probe = gate.enter(soon()).unwrap();
        // A second caller waits for the probe: with a short deadline it gives up.
        let g = gate.clone();
        let waited = std::thread::spawn(move || {
            matches!(
                g.enter(Instant::now() + Duration::from_millis(50)),
                Err(Refusal::Deadline)
            )
        });
        assert!(waited.join().unwrap());
        // A blocked caller is let through once the probe is accepted.
        let g = gate.clone();
        let t = std::thread::spawn(move || g.enter(soon()).map(|p| p.probe).ok());
        probe.finish(None, Verdict::Accepted);
        assert_eq!(t.join().unwrap(), Some(false), "verified: no probe");
    }

    #[test]
    fn a_probe_without_verdict_frees_the_way() {
        let gate = AuthGate::new(&creds("x"), None);
        drop(gate.enter(soon()).unwrap());
        let p = gate.enter(soon()).unwrap();
        assert!(p.probe, "still unverified, the next call probes");
        p.finish(None, Verdict::Unknown);
        assert!(gate.enter(soon()).unwrap().probe);
    }

    #[test]
    fn access_key_ids_are_one_way_and_stable() {
        let k = access_key_id("AKCANARY");
        assert_eq!(k.len(), 16);
        assert_eq!(k, access_key_id("AKCANARY"));
        assert!(!k.contains("CANARY"));
    }
}
