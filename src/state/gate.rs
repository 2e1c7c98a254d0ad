//! The credential gate's records (`cloud::auth` decides what they mean), shared by the
//! processes using the state directory: each credential's last rejection, the hosts that
//! accepted it lately, and the lock held while its first call is out (`auth.json`,
//! `auth.lock`, `auth-probe-<key>.lock`).
//!
//! They never fail open. Records that cannot be read are an error, not an empty file (the gate
//! then lets no call out), and are never overwritten. When the state directory cannot take a
//! write (or there is none), the per-user runtime directory takes the records; reads look in
//! both, so a rejection recorded in either counts.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::runtime::RuntimeDir;
use super::{now_ms, StateDir, StateFileError};
use crate::domain::failure::{Rejection, ACCEPTED_FOR};
use crate::files::Durability;
use crate::log;

pub(super) const AUTH_FILE: &str = "auth.json";
pub(super) const AUTH_LOCK: &str = "auth.lock";

/// What `auth.json` holds.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GateRecords {
    /// Credential key -> its last rejection.
    #[serde(default)]
    pub rejections: BTreeMap<String, Rejection>,
    /// Credential key -> host -> when a call that host accepted was sent (ms since the epoch).
    #[serde(default)]
    pub accepted: BTreeMap<String, BTreeMap<String, u64>>,
}

/// `auth.json` as written now, or as written before acceptances were kept (fingerprint ->
/// rejection).
#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Records(GateRecords),
    Rejections(BTreeMap<String, Rejection>),
}

impl GateRecords {
    /// Drops what no longer counts: rejections out of force, acceptances too old to spare a
    /// probe.
    fn prune(&mut self, now: u64) {
        self.rejections.retain(|_, r| r.in_force(now));
        let fresh = |at: &u64| *at <= now && now - at < ACCEPTED_FOR.as_millis() as u64;
        for hosts in self.accepted.values_mut() {
            hosts.retain(|_, at| fresh(at));
        }
        self.accepted.retain(|_, hosts| !hosts.is_empty());
    }
}

impl StateDir {
    /// The gate's records; a missing file is none, one that cannot be read or understood is an
    /// error (what it held is lost).
    pub fn gate_records(&self) -> Result<GateRecords, StateFileError> {
        Ok(match self.read_json_strict::<Stored>(AUTH_FILE)? {
            None => GateRecords::default(),
            Some(Stored::Records(r)) => r,
            Some(Stored::Rejections(rejections)) => GateRecords {
                rejections,
                ..GateRecords::default()
            },
        })
    }

    /// Changes the records under their lock, dropping what has expired. A file that cannot be
    /// read is not replaced: it may hold other credentials' rejections.
    fn update_gate(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut GateRecords),
    ) -> Result<(), String> {
        let _guard = self.lock(AUTH_LOCK).map_err(|e| e.to_string())?;
        let mut records = self.gate_records().map_err(|e| e.to_string())?;
        records.prune(now_ms());
        f(&mut records);
        self.write_json(AUTH_FILE, &records, durability)
            .map_err(|e| e.to_string())
    }

    /// Forgets every record, even of a file that could not be read (a FIFO or a socket there
    /// is removed first; a directory is not). Returns how many rejections were in force.
    pub fn reset_gate(&self) -> std::io::Result<usize> {
        let _guard = self.lock(AUTH_LOCK)?;
        let path = self.path().join(AUTH_FILE);
        let in_force = match self.gate_records() {
            Ok(r) => {
                let now = now_ms();
                r.rejections.values().filter(|r| r.in_force(now)).count()
            }
            Err(_) => {
                let special = std::fs::symlink_metadata(&path)
                    .is_ok_and(|m| !m.is_file() && !m.is_dir() && !m.is_symlink());
                if special {
                    std::fs::remove_file(&path)?;
                }
                0
            }
        };
        self.write_json(AUTH_FILE, &GateRecords::default(), Durability::Synced)?;
        Ok(in_force)
    }

    /// The lock held while a credential's first call (its probe) is out. Its time is touched,
    /// so that housekeeping knows it is in use.
    fn probe_lock(&self, key: &str, deadline: Instant) -> std::io::Result<Option<File>> {
        let never = || false;
        let lock = self.lock_until(&format!("auth-probe-{key}.lock"), deadline, &never)?;
        if let Some(f) = &lock {
            let _ = f.set_modified(SystemTime::now());
        }
        Ok(lock)
    }
}

/// Where the gate's records are kept: the state directory, else (it cannot take a write, or
/// there is none) the per-user runtime directory, found and made on first need.
pub struct GateFiles {
    state: Option<StateDir>,
    runtime_dir: RuntimeDir,
    runtime: OnceLock<Result<StateDir, String>>,
    /// Said once per process: the state directory could not take a record.
    warned: AtomicBool,
}

impl GateFiles {
    /// The records of `state` (when there is one), with the runtime directory `runtime_dir`
    /// behind it.
    pub fn new(state: Option<StateDir>, runtime_dir: RuntimeDir) -> GateFiles {
        GateFiles {
            state,
            runtime_dir,
            runtime: OnceLock::new(),
            warned: AtomicBool::new(false),
        }
    }

    /// The state directory whose records are read, if any.
    pub fn state_path(&self) -> Option<&std::path::Path> {
        self.state.as_ref().map(StateDir::path)
    }

    /// The runtime directory in use, or why there is none.
    pub fn runtime_path(&self) -> Result<&std::path::Path, &str> {
        self.runtime().map(StateDir::path)
    }

    /// The file whose record of `key`'s rejection is the newest, if any records one.
    pub fn recorded_in(&self, key: &str) -> Option<String> {
        self.places()
            .filter_map(|dir| Some((dir.gate_records().ok()?.rejections.remove(key)?, dir)))
            .max_by_key(|(r, _)| r.at_ms)
            .map(|(_, dir)| dir.path().join(AUTH_FILE).display().to_string())
    }

    /// The command that forgets the records of both places: `state reset --auth` with this
    /// state directory and this runtime directory named, whoever runs it and whatever their
    /// environment.
    pub fn reset_command(&self) -> String {
        let mut command = "maas-usage state reset --auth".to_string();
        let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or(p.to_path_buf());
        if let Some(dir) = &self.state {
            command.push_str(" --state-dir ");
            command.push_str(&shell_word(&absolute(dir.path()).display().to_string()));
        }
        if let Ok(dir) = self.runtime() {
            command.push_str(" --runtime-dir ");
            command.push_str(&shell_word(&dir.path().display().to_string()));
        }
        command
    }

    fn runtime(&self) -> Result<&StateDir, &str> {
        self.runtime
            .get_or_init(|| self.runtime_dir.open())
            .as_ref()
            .map_err(String::as_str)
    }

    /// The directories to read, state directory first.
    fn places(&self) -> impl Iterator<Item = &StateDir> {
        self.state.iter().chain(self.runtime().ok())
    }

    /// Every place's records merged; an error when one cannot be read.
    fn records(&self) -> Result<GateRecords, String> {
        let mut all = GateRecords::default();
        for dir in self.places() {
            let r = dir.gate_records().map_err(|e| e.to_string())?;
            for (key, rejection) in r.rejections {
                let e = all.rejections.entry(key).or_insert(rejection.clone());
                if rejection.at_ms > e.at_ms {
                    *e = rejection;
                }
            }
            for (key, hosts) in r.accepted {
                let mine = all.accepted.entry(key).or_default();
                for (host, at) in hosts {
                    let e = mine.entry(host).or_insert(at);
                    *e = (*e).max(at);
                }
            }
        }
        Ok(all)
    }

    /// Applies `f` in the state directory, else in the runtime directory; why neither could.
    fn update(&self, durability: Durability, f: impl Fn(&mut GateRecords)) -> Result<(), String> {
        let state_failed = match &self.state {
            None => "no usable state directory".to_string(),
            Some(dir) => match dir.update_gate(durability, &f) {
                Ok(()) => return Ok(()),
                Err(e) => format!("the state directory {}: {e}", dir.path().display()),
            },
        };
        let runtime = self.runtime().map_err(|e| format!("{state_failed}; {e}"))?;
        runtime
            .update_gate(durability, &f)
            .map_err(|e| format!("{state_failed}; {}: {e}", runtime.path().display()))?;
        if self.state.is_some() && !self.warned.swap(true, Ordering::Relaxed) {
            log::warn!(
                "credential rejections cannot be recorded in {state_failed}; they are recorded in {} instead",
                runtime.path().display()
            );
        }
        Ok(())
    }

    pub fn rejection(&self, key: &str) -> Result<Option<Rejection>, String> {
        Ok(self.records()?.rejections.remove(key))
    }

    pub fn accepted(&self, key: &str, host: &str) -> Option<u64> {
        self.records().ok()?.accepted.get(key)?.get(host).copied()
    }

    /// Records a rejection, which forgets every acceptance of `key`.
    pub fn record_rejection(&self, key: &str, rejection: &Rejection) -> Result<(), String> {
        self.update(Durability::Synced, |all| {
            all.rejections.insert(key.to_string(), rejection.clone());
            all.accepted.remove(key);
        })
    }

    /// Records that `host` accepted a call of `key` sent at `sent_ms`; a rejection of `key` is
    /// forgotten only when it is older than that call, and one as new or newer keeps the
    /// acceptance out.
    pub fn record_acceptance(&self, key: &str, host: &str, sent_ms: u64) {
        let result = self.update(Durability::Cheap, |all| {
            if let Some(r) = all.rejections.get(key) {
                if r.at_ms >= sent_ms {
                    return;
                }
                all.rejections.remove(key);
            }
            let hosts = all.accepted.entry(key.to_string()).or_default();
            hosts.insert(host.to_string(), sent_ms);
        });
        if let Err(e) = result {
            log::debug!("the credential's acceptance is not recorded ({e})");
        }
    }

    /// Proves that an outcome can be recorded now (the records are written, unchanged).
    pub fn writable(&self) -> Result<(), String> {
        self.update(Durability::Cheap, |_| {})
    }

    pub fn probe_lock(&self, key: &str, deadline: Instant) -> Option<File> {
        self.places()
            .find_map(|dir| dir.probe_lock(key, deadline).ok().flatten())
    }

    /// Forgets every record in both places, each that can be whatever the other does; how many
    /// rejections were in force, or every place that could not be reset (a runtime directory
    /// that cannot be used is one: it may hold records).
    pub fn reset(&self) -> Result<usize, String> {
        let mut n = 0;
        let mut failed = Vec::new();
        for dir in self.places() {
            match dir.reset_gate() {
                Ok(k) => n += k,
                Err(e) => failed.push(format!("{}: {e}", dir.path().display())),
            }
        }
        if let Err(e) = self.runtime() {
            failed.push(format!("the runtime directory: {e}"));
        }
        match failed.is_empty() {
            true => Ok(n),
            false => Err(failed.join("; ")),
        }
    }

    /// The rejections in force, per key, or why the records cannot be read.
    pub fn rejections(&self) -> Result<BTreeMap<String, Rejection>, String> {
        let now = now_ms();
        let mut r = self.records()?.rejections;
        r.retain(|_, r| r.in_force(now));
        Ok(r)
    }
}

impl crate::cloud::auth::GateStore for GateFiles {
    fn rejection(&self, key: &str) -> Result<Option<Rejection>, String> {
        GateFiles::rejection(self, key)
    }
    fn accepted(&self, key: &str, host: &str) -> Option<u64> {
        GateFiles::accepted(self, key, host)
    }
    fn record_rejection(&self, key: &str, rejection: &Rejection) -> Result<(), String> {
        GateFiles::record_rejection(self, key, rejection)
    }
    fn record_acceptance(&self, key: &str, host: &str, sent_ms: u64) {
        GateFiles::record_acceptance(self, key, host, sent_ms)
    }
    fn writable(&self) -> Result<(), String> {
        GateFiles::writable(self)
    }
    fn probe_lock(&self, key: &str, deadline: Instant) -> Option<Box<dyn Send>> {
        GateFiles::probe_lock(self, key, deadline).map(|f| Box::new(f) as Box<dyn Send>)
    }
    fn recorded_in(&self, key: &str) -> Option<String> {
        GateFiles::recorded_in(self, key)
    }
    fn reset_command(&self) -> String {
        GateFiles::reset_command(self)
    }
}

/// `s` as one word of a shell command: as it is when it holds nothing the shell reads, else
/// single-quoted.
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@,=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// The records of `<t>/state`, with `<t>/run` as `XDG_RUNTIME_DIR`.
    fn files_in(t: &std::path::Path) -> GateFiles {
        let runtime = t.join("run");
        fs::create_dir_all(&runtime).unwrap();
        let state = StateDir::open(&t.join("state")).unwrap();
        let env = move |k: &str| (k == "XDG_RUNTIME_DIR").then(|| runtime.display().to_string());
        GateFiles::new(Some(state), RuntimeDir::from_env(&env))
    }

    /// Fresh records, in a temporary directory removed on drop.
    fn tmp() -> (tempfile::TempDir, GateFiles) {
        let t = tempfile::tempdir().unwrap();
        let g = files_in(t.path());
        (t, g)
    }

    fn rejection(at_ms: u64) -> Rejection {
        Rejection {
            at_ms,
            status: 401,
            code: Some("APIGW.0301".into()),
        }
    }

    #[test]
    fn rejections_are_shared_and_reset() {
        let (t, g) = tmp();
        let r = rejection(now_ms());
        g.record_rejection("f1", &r).unwrap();
        // Another process using the same directories.
        assert_eq!(files_in(t.path()).rejection("f1").unwrap(), Some(r));
        assert_eq!(g.rejection("f2").unwrap(), None);
        let text = fs::read_to_string(t.path().join("state").join(AUTH_FILE)).unwrap();
        assert!(text.contains("f1") && !text.contains("secret"));
        assert_eq!(g.reset().unwrap(), 1);
        assert_eq!(g.rejection("f1").unwrap(), None);
    }

    #[test]
    fn the_file_written_before_acceptances_were_kept_is_read() {
        let (t, g) = tmp();
        let at = now_ms();
        let old = format!(r#"{{"0123456789abcdef":{{"at_ms":{at},"status":401}}}}"#);
        fs::write(t.path().join("state").join(AUTH_FILE), old).unwrap();
        let r = g.rejection("0123456789abcdef").unwrap().unwrap();
        assert_eq!((r.at_ms, r.status), (at, 401));
    }

    #[test]
    fn records_that_cannot_be_understood_are_an_error_and_are_never_overwritten() {
        let (t, g) = tmp();
        let file = t.path().join("state").join(AUTH_FILE);
        for bad in [
            "".to_string(),
            r#"{"rejections":{"f1":{"at_ms":1"#.to_string(),
            r#"{"rejections":{"f1":{"at_ms":"yesterday","status":401}}}"#.to_string(),
        ] {
            fs::write(&file, &bad).unwrap();
            let e = g.rejection("f1").unwrap_err();
            assert!(e.contains(AUTH_FILE) && e.contains("not the JSON"), "{e}");
            g.record_acceptance("f1", "h", now_ms());
            assert_eq!(fs::read_to_string(&file).unwrap(), bad);
            assert_eq!(g.accepted("f1", "h"), None);
        }
        assert_eq!(g.reset().unwrap(), 0);
        assert_eq!(g.rejection("f1").unwrap(), None);
    }

    #[test]
    fn a_state_directory_that_cannot_write_leaves_the_records_to_the_runtime_directory() {
        let (t, g) = tmp();
        fs::create_dir(t.path().join("state").join(AUTH_LOCK)).unwrap();
        let r = rejection(now_ms());
        g.record_rejection("f1", &r).unwrap();
        assert!(t.path().join("run/maas-usage").join(AUTH_FILE).is_file());
        assert_eq!(g.rejection("f1").unwrap(), Some(r));
        // Nowhere at all: an error that names both.
        let nowhere = GateFiles::new(
            g.state.clone(),
            RuntimeDir::from_env(&|_| Some("/dev/null/x".into())),
        );
        let e = nowhere.writable().unwrap_err();
        assert!(
            e.contains("state directory") && e.contains(AUTH_LOCK),
            "{e}"
        );
    }

    #[test]
    fn a_rejection_names_its_file_and_the_command_that_forgets_both_places() {
        let (t, g) = tmp();
        assert_eq!(g.recorded_in("f1"), None);
        fs::create_dir(t.path().join("state").join(AUTH_LOCK)).unwrap();
        g.record_rejection("f1", &rejection(now_ms())).unwrap();
        let runtime = t.path().join("run/maas-usage");
        assert_eq!(
            g.recorded_in("f1"),
            Some(runtime.join(AUTH_FILE).display().to_string())
        );
        let state = t.path().join("state");
        assert_eq!(
            g.reset_command(),
            format!(
                "maas-usage state reset --auth --state-dir {} --runtime-dir {}",
                state.display(),
                runtime.display()
            )
        );
        // Another user's shell: this very runtime directory, whatever the environment says.
        let theirs = GateFiles::new(None, RuntimeDir::at(&runtime));
        assert!(theirs.rejection("f1").unwrap().is_some());
        assert_eq!(theirs.reset().unwrap(), 1);
        assert_eq!(g.rejection("f1").unwrap(), None);
        let missing = GateFiles::new(None, RuntimeDir::at(&t.path().join("x")));
        assert!(missing.reset().unwrap_err().contains("not a directory"));
        assert_eq!(shell_word("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_word("/var/lib/maas-usage"), "/var/lib/maas-usage");
    }

    #[test]
    fn an_acceptance_forgets_only_older_rejections_and_a_rejection_forgets_acceptances() {
        let (_t, g) = tmp();
        let now = now_ms();
        g.record_rejection("f1", &rejection(now)).unwrap();
        g.record_acceptance("f1", "h", now - 1);
        assert!(
            g.rejection("f1").unwrap().is_some(),
            "the call was sent before it"
        );
        assert_eq!(g.accepted("f1", "h"), None);
        g.record_acceptance("f1", "h", now + 1);
        assert_eq!(g.rejection("f1").unwrap(), None);
        assert_eq!(g.accepted("f1", "h"), Some(now + 1));
        g.record_rejection("f1", &rejection(now + 2)).unwrap();
        assert_eq!(g.accepted("f1", "h"), None);
    }
}
