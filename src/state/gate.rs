//! Credential rejections shared by the processes using the state directory (`cloud::auth`
//! decides what they mean), and the lock held while a credential's first call is out.

use std::collections::BTreeMap;
use std::fs::File;
use std::time::Instant;

use super::{now_ms, StateDir};
use crate::domain::failure::Rejection;
use crate::files::Durability;
use crate::log;

pub(super) const AUTH_FILE: &str = "auth.json";
pub(super) const AUTH_LOCK: &str = "auth.lock";

impl StateDir {
    /// Credential rejections still recorded (fingerprint -> rejection).
    pub fn rejections(&self) -> BTreeMap<String, Rejection> {
        self.read_json(AUTH_FILE).unwrap_or_default()
    }

    /// Forgets every credential rejection; returns how many there were.
    pub fn reset_rejections(&self) -> std::io::Result<usize> {
        let _guard = self.lock(AUTH_LOCK)?;
        let all: BTreeMap<String, Rejection> = self.read_json(AUTH_FILE).unwrap_or_default();
        self.write_json(
            AUTH_FILE,
            &BTreeMap::<String, Rejection>::new(),
            Durability::Synced,
        )?;
        Ok(all.len())
    }

    fn update_rejections(&self, f: impl FnOnce(&mut BTreeMap<String, Rejection>)) {
        let result = self.lock(AUTH_LOCK).and_then(|_guard| {
            let mut all: BTreeMap<String, Rejection> =
                self.read_json(AUTH_FILE).unwrap_or_default();
            // Expired entries go, so the file stays small.
            let now = now_ms();
            all.retain(|_, r| r.in_force(now));
            f(&mut all);
            self.write_json(AUTH_FILE, &all, Durability::Synced)
        });
        if let Err(e) = result {
            log::warn(&format!(
                "cannot record the credential rejection in the state directory ({e}); other processes may try the same credentials once more"
            ));
        }
    }
}

/// Credential rejections, per credential fingerprint (`cloud::auth` decides what they mean).
impl StateDir {
    pub fn rejection(&self, fingerprint: &str) -> Option<Rejection> {
        self.rejections().remove(fingerprint)
    }

    pub fn record_rejection(&self, fingerprint: &str, rejection: &Rejection) {
        self.update_rejections(|all| {
            all.insert(fingerprint.to_string(), rejection.clone());
        });
    }

    pub fn clear_rejection(&self, fingerprint: &str) {
        if self.rejections().contains_key(fingerprint) {
            self.update_rejections(|all| {
                all.remove(fingerprint);
            });
        }
    }

    /// The lock held while a credential's first call (its probe) is out.
    pub fn probe_lock(&self, fingerprint: &str, deadline: Instant) -> Option<File> {
        let never = || false;
        self.lock_until(&format!("auth-probe-{fingerprint}.lock"), deadline, &never)
            .ok()
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fresh, not yet existing directory inside a temporary one that is removed on drop.
    fn tmp() -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state");
        (t, p)
    }

    #[test]
    fn rejections_are_shared_and_reset() {
        let (_t, p) = tmp();
        let d = StateDir::open(&p).unwrap();
        let r = Rejection {
            at_ms: now_ms(),
            status: 401,
            code: Some("APIGW.0301".into()),
        };
        d.record_rejection("f1", &r);
        assert_eq!(StateDir::open(&p).unwrap().rejection("f1"), Some(r));
        assert_eq!(d.rejection("f2"), None);
        let text = fs::read_to_string(p.join(AUTH_FILE)).unwrap();
        assert!(text.contains("f1") && !text.contains("secret"));
        assert_eq!(d.reset_rejections().unwrap(), 1);
        assert_eq!(d.rejection("f1"), None);
    }
}
