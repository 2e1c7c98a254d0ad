//! The credential gate: keeps a wrong key from getting the access key locked.
//!
//! The API gateway locks an access key after a few rejected signatures in a row. So:
//! - trust is kept per credential **and host**, for **one collection** (a run, an execd batch,
//!   a serve interval: [`AuthGate::new_collection`]): the first signed call to each host in
//!   each collection goes out alone (a probe) and the others wait for its outcome. At most one
//!   unproven call is in flight per credential, in this process and, through the store's lock,
//!   across processes sharing a state directory. A wrong key, a key that one service accepts
//!   and another rejects, or a key disabled between two collections costs one rejected call,
//!   not one per call in flight;
//! - after a 401 or 403, no signed call is made with the same credential for [`LOCKOUT`], here
//!   and (through the store) in every other process using the same state directory; a changed
//!   credential (another fingerprint) is tried at once.
//!
//! Credentials are known by a fingerprint (a truncated SHA-256 of AK, SK and token), never by
//! their values.

use std::collections::HashSet;
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

struct Inner {
    /// The credential's rejection (here or, as last seen, in the store).
    rejected: Option<Rejection>,
    /// The hosts that accepted the credential in this collection: calls to them go out at once.
    verified: HashSet<String>,
    /// A probe is in flight in this process (to whichever host).
    probing: bool,
}

impl Inner {
    /// The rejection still in force; an expired one is forgotten.
    fn in_force(&mut self, now: u64) -> Option<Rejection> {
        match &self.rejected {
            Some(r) if r.in_force(now) => Some(r.clone()),
            Some(_) => {
                self.rejected = None;
                None
            }
            None => None,
        }
    }
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
    /// The host this call probes, when it is the probe.
    probe: Option<String>,
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
                rejected: None,
                verified: HashSet::new(),
                probing: false,
            }),
            changed: Condvar::new(),
            store,
        }
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// A new collection: what the hosts said in the last one is no longer proof (the key may
    /// have been disabled since), so the first call to each host probes again. A rejection in
    /// force stays.
    pub fn new_collection(&self) {
        lock(&self.inner).verified.clear();
    }

    /// The rejection in force, from this process or the store; `None` when calls may go out.
    pub fn blocked(&self) -> Option<Rejection> {
        let now = now_ms();
        if let Some(r) = lock(&self.inner).in_force(now) {
            return Some(r);
        }
        let r = self.stored(now)?;
        lock(&self.inner).rejected = Some(r.clone());
        Some(r)
    }

    fn stored(&self, now: u64) -> Option<Rejection> {
        self.store
            .as_ref()?
            .rejection(&self.fingerprint)
            .filter(|r| r.in_force(now))
    }

    /// Waits for permission to send a signed call to `host`. A host that accepted the
    /// credential in this collection is passed at once; otherwise the call waits for any probe
    /// in flight (here, then in other processes) and becomes the probe itself.
    pub fn enter(&self, host: &str, deadline: Instant) -> Result<Permit<'_>, Refusal> {
        let mut inner = lock(&self.inner);
        loop {
            if let Some(r) = inner.in_force(now_ms()) {
                return Err(Refusal::Rejected(r));
            }
            if inner.verified.contains(host) {
                return Ok(Permit {
                    gate: self,
                    probe: None,
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
            self.settle(true, Some(r.clone()), None);
            return Err(Refusal::Rejected(r));
        }
        Ok(Permit {
            gate: self,
            probe: Some(host.to_string()),
            _cross_process: cross,
        })
    }

    /// Records an outcome: a rejection (which wins over any acceptance, and forgets every
    /// host's), or a host that accepted the credential; `probe` ends the probe in flight.
    fn settle(&self, probe: bool, rejected: Option<Rejection>, accepted_by: Option<String>) {
        let mut inner = lock(&self.inner);
        if probe {
            inner.probing = false;
        }
        if let Some(r) = rejected {
            inner.rejected = Some(r);
            inner.verified.clear();
        } else if let Some(host) = accepted_by {
            if inner.rejected.is_none() {
                inner.verified.insert(host);
            }
        }
        drop(inner);
        self.changed.notify_all();
    }
}

impl Permit<'_> {
    /// Records what the answer says about the credential.
    pub fn finish(mut self, code: Option<&str>, verdict: Verdict) -> Option<Rejection> {
        let gate = self.gate;
        let probe = self.probe.take();
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
                gate.settle(probe.is_some(), Some(r.clone()), None);
                Some(r)
            }
            Verdict::Accepted => {
                if let Some(host) = probe {
                    if let Some(s) = &gate.store {
                        s.clear_rejection(&gate.fingerprint);
                    }
                    gate.settle(true, None, Some(host));
                }
                None
            }
            Verdict::Unknown => {
                if probe.is_some() {
                    gate.settle(true, None, None);
                }
                None
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe that ends without a verdict (a panic, an early return) frees the way.
        if self.probe.is_some() {
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

    const H: &str = "https://modelarts.example";

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
        let p = gate.enter(H, soon()).unwrap();
        assert!(p
            .finish(Some("APIGW.0301"), Verdict::Rejected { status: 401 })
            .is_some());
        assert!(matches!(gate.enter(H, soon()), Err(Refusal::Rejected(_))));
        // Another process with the same credentials sees it without calling.
        let other = AuthGate::new(&creds("x"), Some(store.clone()));
        assert!(other.blocked().is_some());
        assert!(matches!(other.enter(H, soon()), Err(Refusal::Rejected(_))));
        // Other credentials are tried at once.
        let fixed = AuthGate::new(&creds("y"), Some(store));
        assert!(fixed.blocked().is_none());
        assert!(fixed.enter(H, soon()).is_ok());
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
        assert!(gate.enter(H, soon()).is_ok());
    }

    #[test]
    fn unverified_credentials_probe_one_at_a_time_then_run_free() {
        let gate = Arc::new(AuthGate::new(&creds("x"), None));
        let probe = gate.enter(H, soon()).unwrap();
        // A second caller waits for the probe: with a short deadline it gives up.
        let g = gate.clone();
        let waited = std::thread::spawn(move || {
            matches!(
                g.enter(H, Instant::now() + Duration::from_millis(50)),
                Err(Refusal::Deadline)
            )
        });
        assert!(waited.join().unwrap());
        // A blocked caller is let through once the probe is accepted.
        let g = gate.clone();
        let t = std::thread::spawn(move || g.enter(H, soon()).map(|p| p.probe.is_some()).ok());
        probe.finish(None, Verdict::Accepted);
        assert_eq!(t.join().unwrap(), Some(false), "verified: no probe");
    }

    #[test]
    fn a_probe_without_verdict_frees_the_way() {
        let gate = AuthGate::new(&creds("x"), None);
        drop(gate.enter(H, soon()).unwrap());
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe.is_some(), "still unverified, the next call probes");
        p.finish(None, Verdict::Unknown);
        assert!(gate.enter(H, soon()).unwrap().probe.is_some());
    }

    #[test]
    fn trust_is_per_host_and_per_collection() {
        let gate = Arc::new(AuthGate::new(&creds("x"), None));
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe.is_some());
        p.finish(None, Verdict::Accepted);
        assert!(
            gate.enter(H, soon()).unwrap().probe.is_none(),
            "H accepted it"
        );
        // Another host has proven nothing: its first call probes, and alone.
        let other = gate.enter("https://iam.example", soon()).unwrap();
        assert!(other.probe.is_some());
        let g = gate.clone();
        let waited = std::thread::spawn(move || {
            matches!(
                g.enter(
                    "https://ces.example",
                    Instant::now() + Duration::from_millis(50)
                ),
                Err(Refusal::Deadline)
            )
        });
        assert!(
            waited.join().unwrap(),
            "one probe at a time, whatever the host"
        );
        assert!(
            gate.enter(H, soon()).unwrap().probe.is_none(),
            "H is not held up"
        );
        other.finish(None, Verdict::Unknown);
        // The next collection proves it again.
        gate.new_collection();
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe.is_some(), "a new collection probes again");
        assert!(p
            .finish(Some("APIGW.0301"), Verdict::Rejected { status: 401 })
            .is_some());
        assert!(matches!(gate.enter(H, soon()), Err(Refusal::Rejected(_))));
        gate.new_collection();
        assert!(
            matches!(gate.enter(H, soon()), Err(Refusal::Rejected(_))),
            "a rejection outlives the collection"
        );
    }

    #[test]
    fn access_key_ids_are_one_way_and_stable() {
        let k = access_key_id("AKCANARY");
        assert_eq!(k.len(), 16);
        assert_eq!(k, access_key_id("AKCANARY"));
        assert!(!k.contains("CANARY"));
    }
}
