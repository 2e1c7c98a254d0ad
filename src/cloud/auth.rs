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
//! - the probe is skipped when the store says the same host accepted the same credential less
//!   than [`ACCEPTED_FOR`] ago, and no rejection came after: a key disabled since then meets at
//!   most the calls in flight, as a key disabled in the middle of a collection does. That round
//!   still holds the store's lock until its first answer, so the other processes wait for that
//!   answer as they wait for a probe: the calls in flight of one process, not of each;
//! - after a 401 or 403, no signed call is made with the same credential for [`LOCKOUT`], here
//!   and (through the store) in every other process using the same state directory; a changed
//!   credential (another key) is tried at once. An acceptance never erases a rejection recorded
//!   after its call was sent;
//! - the gate never fails open: records that cannot be read count as a rejection now, and
//!   before a probe the store must prove it can record the outcome, or no call is sent.
//!
//! Credentials are known by a key: a permanent key's fingerprint (a truncated SHA-256 of AK, SK
//! and token), an agency's id (all its temporary keys are one credential); never by their
//! values.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::credentials::Credentials;
use super::sign::sha256_hex;
pub use crate::domain::failure::{Blocked, Rejection, ACCEPTED_FOR, LOCKOUT};
use crate::log;

/// Where the gate's records are shared with other processes (the state directory, and the
/// per-user runtime directory when that cannot take a write).
pub trait GateStore: Send + Sync {
    /// The rejection recorded for `key`, in force or not; `Err` (why) when the records cannot
    /// be read, which the gate takes as a rejection now: what they held is lost.
    fn rejection(&self, key: &str) -> Result<Option<Rejection>, String>;
    /// When a call of `key` that `host` accepted was sent (ms since the epoch), if recorded.
    fn accepted(&self, key: &str, host: &str) -> Option<u64>;
    /// Records a rejection, which forgets every acceptance of `key`; `Err` (why) when it could
    /// be recorded nowhere.
    fn record_rejection(&self, key: &str, rejection: &Rejection) -> Result<(), String>;
    /// Records that `host` accepted a call of `key` sent at `sent_ms`. A rejection of `key` is
    /// forgotten only if it is older than that call; one as new or newer keeps the acceptance
    /// from being recorded.
    fn record_acceptance(&self, key: &str, host: &str, sent_ms: u64);
    /// Proves, before a probe, that its outcome can be recorded: `Err` (why) when it cannot.
    fn writable(&self) -> Result<(), String>;
    /// An exclusive cross-process lock for probing `key`, waited for until `deadline`; `None`
    /// when it cannot be had (the probe is then serialised in this process only).
    fn probe_lock(&self, key: &str, deadline: Instant) -> Option<Box<dyn Send>>;
    /// The file that records `key`'s rejection, if one does.
    fn recorded_in(&self, key: &str) -> Option<String>;
    /// The exact command that forgets every record these processes read (its directories
    /// named).
    fn reset_command(&self) -> String;
}

/// A short, stable, one-way key for an access key.
pub fn access_key_id(ak: &str) -> String {
    sha256_hex(ak.as_bytes())[..16].to_string()
}

/// Who the API's limits count, as a short one-way id: the IAM user of a permanent key (its AK,
/// hashed), or the agency whose temporary credentials a metadata service hands out (one id per
/// metadata service, whatever temporary AK it hands out). Request budgets and the project-id
/// cache are kept under it.
pub fn principal_id(creds: &Credentials) -> String {
    match &creds.agency {
        Some(endpoint) => sha256_hex(format!("agency\n{endpoint}").as_bytes())[..16].to_string(),
        None => access_key_id(creds.ak.expose()),
    }
}

/// The key the gate keeps a credential's records under: an agency's id (fresh temporary keys of
/// the same agency are no reason to try again), else the credential's [`fingerprint`] (a
/// changed SK or token is tried at once).
pub fn gate_key(creds: &Credentials) -> String {
    match creds.agency {
        Some(_) => principal_id(creds),
        None => fingerprint(creds),
    }
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
    /// The hosts whose calls go out at once in this collection: they accepted the credential in
    /// it, or (by the store) less than [`ACCEPTED_FOR`] ago.
    verified: HashSet<String>,
    /// The hosts whose acceptance was recorded in this collection (once each is enough).
    recorded: HashSet<String>,
    /// A probe is in flight in this process (to whichever host), or a round that skipped it
    /// has not had its first answer.
    probing: bool,
    /// The round that skipped the probe, until its first answer.
    skipping: Option<Skip>,
    /// Numbers the rounds that skipped the probe (a permit knows its own).
    skips: u64,
}

/// A round of calls sent without a probe, on the store's word that the host accepted the
/// credential minutes ago. Until its first answer it holds what a probe holds: the
/// cross-process lock, and this process's turn (other hosts wait).
struct Skip {
    id: u64,
    host: String,
    /// Its calls out and not yet answered.
    out: usize,
    _cross_process: Option<Box<dyn Send>>,
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
    key: String,
    inner: Mutex<Inner>,
    changed: Condvar,
    store: Option<Arc<dyn GateStore>>,
}

/// Why a signed call was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The credential was rejected less than [`LOCKOUT`] ago.
    Rejected(Blocked),
    /// The gate cannot vouch for the call: its records cannot be read, or the outcome could be
    /// recorded nowhere. The text says why and what to do.
    Unguarded(String),
    /// Another call is probing the credential and did not finish before the deadline.
    Deadline,
}

/// Permission to send one signed call; report its outcome with [`Permit::finish`].
pub struct Permit<'a> {
    gate: &'a AuthGate,
    host: String,
    /// This call is the probe of `host`.
    probe: bool,
    /// When the gate let it through (ms since the epoch): no later than it was sent.
    sent_ms: u64,
    /// The round that skipped the probe this call belongs to, while it waits for its first
    /// answer.
    unproven: Option<u64>,
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

/// The records could not be read: what they held is lost, so every credential counts as
/// rejected until they are fixed or reset (with `reset`).
fn unreadable(why: String, reset: &str) -> Refusal {
    Refusal::Unguarded(format!(
        "{why}: the credential rejections it held are lost, so every credential counts as rejected and no signed call is made until it is fixed or reset ({reset})"
    ))
}

/// No place can record a rejection: without a record every run could cost one.
fn unrecordable(why: String) -> Refusal {
    Refusal::Unguarded(format!(
        "no signed call is made: a credential rejection could be recorded nowhere ({why}), and without a record every run could cost one more rejected signature and get the key locked; fix the state directory"
    ))
}

impl AuthGate {
    /// The gate of the credential known by `key` ([`gate_key`]).
    pub fn new(key: String, store: Option<Arc<dyn GateStore>>) -> Self {
        AuthGate {
            key,
            inner: Mutex::new(Inner {
                rejected: None,
                verified: HashSet::new(),
                recorded: HashSet::new(),
                probing: false,
                skipping: None,
                skips: 0,
            }),
            changed: Condvar::new(),
            store,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// A new collection: what the hosts said in the last one is no longer proof (the key may
    /// have been disabled since), so the first call to each host probes again, unless the
    /// store says it accepted the credential minutes ago. A rejection in force stays.
    pub fn new_collection(&self) {
        let mut inner = lock(&self.inner);
        inner.verified.clear();
        inner.recorded.clear();
    }

    /// Waits for permission to send a signed call to `host`. A host that accepted the
    /// credential in this collection is passed at once; otherwise the call waits for any probe
    /// in flight (here, then in other processes), and becomes the probe itself unless the
    /// store says the host accepted the credential less than [`ACCEPTED_FOR`] ago.
    pub fn enter(&self, host: &str, deadline: Instant) -> Result<Permit<'_>, Refusal> {
        let mut inner = lock(&self.inner);
        loop {
            if let Some(r) = inner.in_force(now_ms()) {
                drop(inner);
                return Err(self.blocked(r));
            }
            if inner.verified.contains(host) {
                // A call of the round that skipped the probe is unproven until its first answer.
                let unproven = match inner.skipping.as_mut() {
                    Some(skip) if skip.host == host => {
                        skip.out += 1;
                        Some(skip.id)
                    }
                    _ => None,
                };
                let mut permit = self.permit(host, false, None);
                permit.unproven = unproven;
                return Ok(permit);
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
            .and_then(|s| s.probe_lock(&self.key, deadline));
        if Instant::now() >= deadline {
            // Waited for another process's probe until the end: it decides, not this call.
            self.settle(true, None, None);
            return Err(Refusal::Deadline);
        }
        match self.consult(host) {
            Err(refusal) => {
                let rejected = match &refusal {
                    Refusal::Rejected(b) => Some(b.rejection.clone()),
                    _ => None,
                };
                self.settle(true, rejected, None);
                Err(refusal)
            }
            Ok(true) => {
                // Accepted minutes ago: no probe, calls to this host go out at once; but until
                // the first answer this round keeps the probe's place (the cross-process lock,
                // this process's turn), so other processes wait for that answer and meet its
                // rejection rather than send their own calls in flight.
                let mut inner = lock(&self.inner);
                if let Some(r) = inner.in_force(now_ms()) {
                    inner.probing = false;
                    drop(inner);
                    self.changed.notify_all();
                    return Err(self.blocked(r));
                }
                inner.skips += 1;
                let id = inner.skips;
                inner.skipping = Some(Skip {
                    id,
                    host: host.to_string(),
                    out: 1,
                    _cross_process: cross,
                });
                inner.verified.insert(host.to_string());
                drop(inner);
                self.changed.notify_all();
                let mut permit = self.permit(host, false, None);
                permit.unproven = Some(id);
                Ok(permit)
            }
            Ok(false) => Ok(self.permit(host, true, cross)),
        }
    }

    fn permit(&self, host: &str, probe: bool, cross: Option<Box<dyn Send>>) -> Permit<'_> {
        Permit {
            gate: self,
            host: host.to_string(),
            probe,
            sent_ms: now_ms(),
            unproven: None,
            _cross_process: cross,
        }
    }

    /// A call of the round `id` that skipped the probe has its answer: `decided` (accepted or
    /// rejected, and recorded) ends the round's hold; an answer that proves nothing ends it
    /// only with the round's last call out, and the host must then be proven again.
    fn unproven_answered(&self, id: u64, decided: bool) {
        let mut inner = lock(&self.inner);
        let Some(skip) = inner.skipping.as_mut().filter(|s| s.id == id) else {
            return;
        };
        if !decided {
            skip.out = skip.out.saturating_sub(1);
            if skip.out > 0 {
                return;
            }
            let host = skip.host.clone();
            inner.verified.remove(&host);
        }
        // Releases the cross-process lock, after the answer was recorded.
        inner.skipping = None;
        inner.probing = false;
        drop(inner);
        self.changed.notify_all();
    }

    /// A refusal for the rejection `r`, with the file that records it and the command that
    /// forgets it.
    fn blocked(&self, r: Rejection) -> Refusal {
        Refusal::Rejected(Blocked {
            rejection: r,
            file: self.store.as_ref().and_then(|s| s.recorded_in(&self.key)),
            reset: self.store.as_ref().map(|s| s.reset_command()),
        })
    }

    /// What the store says before a probe: a rejection in force (or records that cannot be
    /// read) refuses; a store that cannot record the outcome refuses; `Ok(true)` when `host`
    /// accepted the credential recently, with no rejection since.
    fn consult(&self, host: &str) -> Result<bool, Refusal> {
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let now = now_ms();
        let rejection = store
            .rejection(&self.key)
            .map_err(|why| unreadable(why, &store.reset_command()))?;
        if let Some(r) = rejection.as_ref().filter(|r| r.in_force(now)) {
            return Err(self.blocked(r.clone()));
        }
        store.writable().map_err(unrecordable)?;
        Ok(store.accepted(&self.key, host).is_some_and(|at| {
            let recent = at <= now && now - at < ACCEPTED_FOR.as_millis() as u64;
            recent && rejection.as_ref().is_none_or(|r| at > r.at_ms)
        }))
    }

    /// Records an outcome in this process: a rejection (which wins over any acceptance, and
    /// forgets every host's), or a host that accepted the credential; `probe` ends the probe in
    /// flight.
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
    /// Records what the answer says about the credential; returns the rejection it met.
    pub fn finish(mut self, code: Option<&str>, verdict: Verdict) -> Option<Rejection> {
        let gate = self.gate;
        let probe = std::mem::take(&mut self.probe);
        let unproven = self.unproven.take();
        let decided = !matches!(verdict, Verdict::Unknown);
        let rejection = self.record(probe, code, verdict);
        if let Some(id) = unproven {
            gate.unproven_answered(id, decided);
        }
        rejection
    }

    fn record(&self, probe: bool, code: Option<&str>, verdict: Verdict) -> Option<Rejection> {
        let gate = self.gate;
        match verdict {
            Verdict::Rejected { status } => {
                let r = Rejection {
                    at_ms: now_ms(),
                    status,
                    code: code.map(str::to_string),
                };
                if let Some(Err(why)) = gate
                    .store
                    .as_ref()
                    .map(|s| s.record_rejection(&gate.key, &r))
                {
                    // This process keeps it; the next run would not know.
                    log::error!(
                        "the credential rejection could be recorded nowhere ({why}): the next run may try the same credentials once more; fix the state directory"
                    );
                }
                gate.settle(probe, Some(r.clone()), None);
                Some(r)
            }
            Verdict::Accepted => {
                if probe {
                    gate.settle(true, None, Some(self.host.clone()));
                }
                // Once per host and collection: the next collections may skip their probe.
                let first = lock(&gate.inner).recorded.insert(self.host.clone());
                if let (true, Some(s)) = (first, &gate.store) {
                    s.record_acceptance(&gate.key, &self.host, self.sent_ms);
                }
                None
            }
            Verdict::Unknown => {
                if probe {
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
        if let Some(id) = self.unproven.take() {
            self.gate.unproven_answered(id, false);
        }
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

    fn creds(sk: &str) -> Credentials {
        Credentials {
            ak: Secret::new("AK"),
            sk: Secret::new(sk),
            token: None,
            source: "test".into(),
            expires_at: None,
            agency: None,
        }
    }

    fn gate(sk: &str, store: Option<Arc<MemStore>>) -> AuthGate {
        AuthGate::new(gate_key(&creds(sk)), store.map(|s| s as Arc<dyn GateStore>))
    }

    /// The store's rules, in memory.
    #[derive(Default)]
    struct MemStore {
        rejections: Mutex<HashMap<String, Rejection>>,
        accepted: Mutex<HashMap<(String, String), u64>>,
        /// `rejection` fails (records that cannot be read).
        unreadable: bool,
        /// `writable` and `record_rejection` fail (nowhere to record).
        unwritable: bool,
        /// The cross-process probe lock: held or not.
        probe_lock: Arc<(Mutex<bool>, Condvar)>,
    }

    /// The probe lock of a [`MemStore`], released on drop.
    struct Held(Arc<(Mutex<bool>, Condvar)>);

    impl Drop for Held {
        fn drop(&mut self) {
            *self.0 .0.lock().unwrap() = false;
            self.0 .1.notify_all();
        }
    }

    impl GateStore for MemStore {
        fn rejection(&self, f: &str) -> Result<Option<Rejection>, String> {
            if self.unreadable {
                return Err("cannot read auth.json".into());
            }
            Ok(self.rejections.lock().unwrap().get(f).cloned())
        }
        fn accepted(&self, f: &str, host: &str) -> Option<u64> {
            let key = (f.to_string(), host.to_string());
            self.accepted.lock().unwrap().get(&key).copied()
        }
        fn record_rejection(&self, f: &str, r: &Rejection) -> Result<(), String> {
            self.writable()?;
            self.rejections.lock().unwrap().insert(f.into(), r.clone());
            self.accepted.lock().unwrap().retain(|(k, _), _| k != f);
            Ok(())
        }
        fn record_acceptance(&self, f: &str, host: &str, sent_ms: u64) {
            let mut rejections = self.rejections.lock().unwrap();
            match rejections.get(f) {
                Some(r) if r.at_ms >= sent_ms => return,
                Some(_) => {
                    rejections.remove(f);
                }
                None => {}
            }
            let key = (f.to_string(), host.to_string());
            self.accepted.lock().unwrap().insert(key, sent_ms);
        }
        fn writable(&self) -> Result<(), String> {
            match self.unwritable {
                true => Err("read-only".into()),
                false => Ok(()),
            }
        }
        fn recorded_in(&self, f: &str) -> Option<String> {
            let held = self.rejections.lock().unwrap().contains_key(f);
            held.then(|| "memory".to_string())
        }
        fn reset_command(&self) -> String {
            "maas-usage state reset --auth".into()
        }
        fn probe_lock(&self, _: &str, deadline: Instant) -> Option<Box<dyn Send>> {
            let (held, released) = &*self.probe_lock;
            let mut held = held.lock().unwrap();
            while *held {
                let left = deadline.checked_duration_since(Instant::now())?;
                held = released.wait_timeout(held, left).unwrap().0;
            }
            *held = true;
            Some(Box::new(Held(self.probe_lock.clone())))
        }
    }

    const H: &str = "https://modelarts.example";

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    fn rejected(p: Permit<'_>) -> Option<Rejection> {
        p.finish(Some("APIGW.0301"), Verdict::Rejected { status: 401 })
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
    fn an_agency_is_one_principal_and_one_credential_whatever_its_temporary_key() {
        let temporary = |ak: &str, endpoint: &str| Credentials {
            ak: Secret::new(ak),
            token: Some(Secret::new(format!("token-of-{ak}"))),
            agency: Some(endpoint.to_string()),
            ..creds("temporary-sk")
        };
        let (a, b) = (
            temporary("TEMPAK1", "http://169.254.169.254"),
            temporary("TEMPAK2", "http://169.254.169.254"),
        );
        assert_eq!(principal_id(&a), principal_id(&b));
        assert_eq!(gate_key(&a), gate_key(&b));
        let other = temporary("TEMPAK1", "http://127.0.0.1:8080");
        assert_ne!(principal_id(&a), principal_id(&other));
        // A permanent key: its AK for the limits, all of it for the gate.
        let (k, l) = (creds("SK1"), creds("SK2"));
        assert_eq!(principal_id(&k), access_key_id("AK"));
        assert_eq!(principal_id(&k), principal_id(&l));
        assert_ne!(gate_key(&k), gate_key(&l));
        for id in [principal_id(&a), gate_key(&a), gate_key(&k)] {
            assert!(id.len() == 16 && !id.contains("TEMPAK") && !id.contains("169"));
        }
    }

    #[test]
    fn a_rejection_closes_the_gate_here_and_in_the_store() {
        let store = Arc::new(MemStore::default());
        let gate1 = gate("x", Some(store.clone()));
        assert!(rejected(gate1.enter(H, soon()).unwrap()).is_some());
        assert!(matches!(gate1.enter(H, soon()), Err(Refusal::Rejected(_))));
        // Another process with the same credentials sees it without calling.
        let other = gate("x", Some(store.clone()));
        assert!(matches!(other.enter(H, soon()), Err(Refusal::Rejected(_))));
        // Other credentials are tried at once.
        let fixed = gate("y", Some(store));
        assert!(fixed.enter(H, soon()).is_ok());
    }

    #[test]
    fn a_rejection_expires_after_the_lockout() {
        let store = Arc::new(MemStore::default());
        let g = gate("x", Some(store.clone()));
        let old = Rejection {
            at_ms: now_ms() - LOCKOUT.as_millis() as u64 - 1,
            status: 401,
            code: None,
        };
        store.record_rejection(g.key(), &old).unwrap();
        assert!(g.enter(H, soon()).is_ok());
    }

    #[test]
    fn records_that_cannot_be_read_or_written_let_no_call_out() {
        let unreadable = Arc::new(MemStore {
            unreadable: true,
            ..MemStore::default()
        });
        let g = gate("x", Some(unreadable));
        match g.enter(H, soon()) {
            Err(Refusal::Unguarded(why)) => {
                assert!(why.contains("maas-usage state reset --auth"), "{why}")
            }
            _ => panic!("an unreadable store must refuse"),
        }
        let unwritable = Arc::new(MemStore {
            unwritable: true,
            ..MemStore::default()
        });
        let g = gate("x", Some(unwritable));
        match g.enter(H, soon()) {
            Err(Refusal::Unguarded(why)) => assert!(why.contains("no signed call"), "{why}"),
            _ => panic!("a store that cannot record must refuse"),
        }
        // Neither is a rejection remembered in this process: fixed, the store lets calls out.
        assert!(!lock(&g.inner).probing && lock(&g.inner).rejected.is_none());
    }

    #[test]
    fn an_acceptance_never_erases_a_rejection_recorded_after_its_call_was_sent() {
        let store = Arc::new(MemStore::default());
        let g = gate("x", Some(store.clone()));
        let probe = g.enter("https://iam.example", soon()).unwrap();
        // Another process's rejection, after the probe went out.
        let newer = Rejection {
            at_ms: now_ms() + 1,
            status: 401,
            code: None,
        };
        store.record_rejection(g.key(), &newer).unwrap();
        probe.finish(None, Verdict::Accepted);
        assert_eq!(store.rejection(g.key()).unwrap(), Some(newer));
        assert!(matches!(g.enter(H, soon()), Err(Refusal::Rejected(_))));
    }

    #[test]
    fn a_recent_acceptance_spares_the_probe_until_it_expires_and_a_rejection_wins() {
        let store = Arc::new(MemStore::default());
        let first = gate("x", Some(store.clone()));
        let p = first.enter(H, soon()).unwrap();
        assert!(p.probe);
        p.finish(None, Verdict::Accepted);
        // The next process (or collection) skips the probe to that host only.
        let next = gate("x", Some(store.clone()));
        assert!(!next.enter(H, soon()).unwrap().probe);
        assert!(next.enter("https://ces.example", soon()).unwrap().probe);
        // Expired: probed again.
        let key = (first.key().to_string(), H.to_string());
        let old = now_ms() - ACCEPTED_FOR.as_millis() as u64 - 1;
        store.accepted.lock().unwrap().insert(key.clone(), old);
        assert!(
            gate("x", Some(store.clone()))
                .enter(H, soon())
                .unwrap()
                .probe
        );
        // A rejection wins over an older acceptance: in force, it refuses; out of force (a
        // record dated far ahead, not trusted to silence the key), the next call still probes.
        store.accepted.lock().unwrap().insert(key, now_ms() - 1000);
        let recorded = |at_ms| {
            let r = Rejection {
                at_ms,
                status: 401,
                code: None,
            };
            let k = first.key().to_string();
            store.rejections.lock().unwrap().insert(k, r);
        };
        recorded(now_ms());
        let g = gate("x", Some(store.clone()));
        assert!(matches!(g.enter(H, soon()), Err(Refusal::Rejected(_))));
        recorded(now_ms() + 2 * LOCKOUT.as_millis() as u64);
        assert!(
            gate("x", Some(store.clone()))
                .enter(H, soon())
                .unwrap()
                .probe
        );
    }

    /// Two processes sharing a store, the host having accepted the credential minutes ago: the
    /// first skips the probe and sends its calls at once, but holds the probe lock until its
    /// first answer; the second waits for it, and meets its rejection instead of sending calls
    /// of its own.
    #[test]
    fn a_round_that_skips_the_probe_holds_the_other_processes_until_its_first_answer() {
        let store = Arc::new(MemStore::default());
        let earlier = gate("x", Some(store.clone()));
        earlier
            .enter(H, soon())
            .unwrap()
            .finish(None, Verdict::Accepted);
        let first = gate("x", Some(store.clone()));
        let calls: Vec<Permit<'_>> = (0..4).map(|_| first.enter(H, soon()).unwrap()).collect();
        assert!(calls.iter().all(|p| !p.probe), "four calls at once");
        let second = Arc::new(gate("x", Some(store.clone())));
        let short = Instant::now() + Duration::from_millis(50);
        assert!(
            matches!(second.enter(H, short), Err(Refusal::Deadline)),
            "the second process waits for the first answer"
        );
        // Another host of the first process waits too, as for a probe.
        let other = "https://iam.example";
        let short = Instant::now() + Duration::from_millis(50);
        assert!(matches!(first.enter(other, short), Err(Refusal::Deadline)));
        let waiting = {
            let second = second.clone();
            std::thread::spawn(move || second.enter(H, soon()).map(|p| p.probe).err())
        };
        let mut calls = calls.into_iter();
        assert!(rejected(calls.next().unwrap()).is_some());
        assert!(matches!(
            waiting.join().unwrap(),
            Some(Refusal::Rejected(_))
        ));
        // The calls already in flight meet the rejection too: that is all it costs.
        calls.for_each(|p| drop(rejected(p)));
        assert!(matches!(first.enter(H, soon()), Err(Refusal::Rejected(_))));
    }

    /// The first answer of a round that skipped the probe, when it proves nothing, holds the
    /// others until the round's last call is answered; then the host is proven again.
    #[test]
    fn a_skipped_probe_whose_answers_prove_nothing_is_proven_again() {
        let store = Arc::new(MemStore::default());
        gate("x", Some(store.clone()))
            .enter(H, soon())
            .unwrap()
            .finish(None, Verdict::Accepted);
        let g = gate("x", Some(store.clone()));
        let (a, b) = (g.enter(H, soon()).unwrap(), g.enter(H, soon()).unwrap());
        a.finish(None, Verdict::Unknown);
        let short = Instant::now() + Duration::from_millis(50);
        let other = gate("x", Some(store.clone()));
        assert!(matches!(other.enter(H, short), Err(Refusal::Deadline)));
        drop(b);
        assert!(lock(&g.inner).skipping.is_none() && !lock(&g.inner).verified.contains(H));
        assert!(
            !other.enter(H, soon()).unwrap().probe,
            "the store's word again"
        );
    }

    #[test]
    fn unverified_credentials_probe_one_at_a_time_then_run_free() {
        let gate = Arc::new(gate("x", None));
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
        let t = std::thread::spawn(move || g.enter(H, soon()).map(|p| p.probe).ok());
        probe.finish(None, Verdict::Accepted);
        assert_eq!(t.join().unwrap(), Some(false), "verified: no probe");
    }

    #[test]
    fn a_probe_without_verdict_frees_the_way() {
        let gate = gate("x", None);
        drop(gate.enter(H, soon()).unwrap());
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe, "still unverified, the next call probes");
        p.finish(None, Verdict::Unknown);
        assert!(gate.enter(H, soon()).unwrap().probe);
    }

    #[test]
    fn trust_is_per_host_and_per_collection() {
        let gate = Arc::new(gate("x", None));
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe);
        p.finish(None, Verdict::Accepted);
        assert!(!gate.enter(H, soon()).unwrap().probe, "H accepted it");
        // Another host has proven nothing: its first call probes, and alone.
        let other = gate.enter("https://iam.example", soon()).unwrap();
        assert!(other.probe);
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
        assert!(!gate.enter(H, soon()).unwrap().probe, "H is not held up");
        other.finish(None, Verdict::Unknown);
        // The next collection proves it again.
        gate.new_collection();
        let p = gate.enter(H, soon()).unwrap();
        assert!(p.probe, "a new collection probes again");
        assert!(rejected(p).is_some());
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
