//! Cloud Eye discovery, cached: which series exist and the names of their ids, per region and
//! project, for an hour, so a run every minute does not list them again; and the series a run
//! left out (its budget or deadline could not read them), first in line next run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{now_ms, StateDir};
use crate::domain::cloud_eye::{Dims, Discovered};
use crate::files::Durability;
use crate::log;

/// How long a discovery stands.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

const FILE: &str = "ces-discovery.json";
const LOCK: &str = "ces-discovery.lock";
/// The series owed, per region, project and query.
const OWED: &str = "ces-owed.json";
const OWED_LOCK: &str = "ces-owed.lock";

#[derive(Serialize, Deserialize)]
struct Cached {
    at_ms: u64,
    found: Discovered,
}

impl StateDir {
    /// The discovery of `key` (region and project), while it is younger than `max_age` (at most
    /// the TTL).
    pub fn cached_discovery(&self, key: &str, max_age: Duration) -> Option<Discovered> {
        let all: BTreeMap<String, Cached> = self.read_json(FILE)?;
        let c = all.get(key)?;
        let age = now_ms().saturating_sub(c.at_ms);
        (age < max_age.min(DISCOVERY_TTL).as_millis() as u64).then(|| c.found.clone())
    }

    /// Keeps `found` for `key`. What is added to a discovery still standing (a metric asked for
    /// the first time, names) keeps its age: the whole expires together, on time.
    pub fn store_discovery(&self, key: &str, found: &Discovered) {
        let _guard = self.lock(LOCK);
        let mut all: BTreeMap<String, Cached> = self.read_json(FILE).unwrap_or_default();
        let now = now_ms();
        all.retain(|_, c| now.saturating_sub(c.at_ms) < DISCOVERY_TTL.as_millis() as u64);
        let at_ms = all.get(key).map(|c| c.at_ms).unwrap_or(now);
        all.insert(
            key.to_string(),
            Cached {
                at_ms,
                found: found.clone(),
            },
        );
        if let Err(e) = self.write_json(FILE, &all, Durability::Cheap) {
            log::warn!("cannot cache Cloud Eye's discovery in the state directory: {e}");
        }
    }

    /// The series of `key` (region, project and query) the last run left out, in line.
    pub fn owed(&self, key: &str) -> Vec<Dims> {
        let mut all: BTreeMap<String, Vec<Dims>> = self.read_json(OWED).unwrap_or_default();
        all.remove(key).unwrap_or_default()
    }

    /// Keeps `owed` for `key` (none: forgets it). Only a matter of order: a file that cannot
    /// be written is one warning.
    pub fn store_owed(&self, key: &str, owed: &[Dims]) {
        let _guard = self.lock(OWED_LOCK);
        let mut all: BTreeMap<String, Vec<Dims>> = self.read_json(OWED).unwrap_or_default();
        match owed.is_empty() {
            true => all.remove(key),
            false => all.insert(key.to_string(), owed.to_vec()),
        };
        if let Err(e) = self.write_json(OWED, &all, Durability::Cheap) {
            log::warn!(
                "cannot keep in the state directory which Cloud Eye series wait for the next run: {e}"
            );
        }
    }

    /// Forgets every cached discovery (`state reset`).
    pub fn reset_discovery(&self) -> std::io::Result<()> {
        let _guard = self.lock(LOCK)?;
        self.write_json(FILE, &BTreeMap::<String, Cached>::new(), Durability::Cheap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cloud_eye::Dims;

    fn found(models: &[&str]) -> Discovered {
        let mut d = Discovered::default();
        for m in models {
            d.series.insert(Dims {
                model_id: m.to_string(),
                key_id: None,
            });
        }
        d
    }

    #[test]
    fn additions_keep_the_discoverys_age_and_max_age_is_honoured() {
        let tmp = tempfile::tempdir().unwrap();
        let d = StateDir::open(&tmp.path().join("s")).unwrap();
        d.store_discovery("r/p", &found(&["m1"]));
        let first: BTreeMap<String, Cached> = d.read_json(FILE).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        d.store_discovery("r/p", &found(&["m1", "m2"]));
        let second: BTreeMap<String, Cached> = d.read_json(FILE).unwrap();
        assert_eq!(first["r/p"].at_ms, second["r/p"].at_ms, "same age");
        assert_eq!(second["r/p"].found.series.len(), 2);
        assert!(d.cached_discovery("r/p", DISCOVERY_TTL).is_some());
        assert!(d.cached_discovery("r/p", Duration::ZERO).is_none());
        assert!(d.cached_discovery("other", DISCOVERY_TTL).is_none());
        d.reset_discovery().unwrap();
        assert!(d.cached_discovery("r/p", DISCOVERY_TTL).is_none());
    }

    #[test]
    fn owed_series_are_kept_per_query_until_none_are() {
        let tmp = tempfile::tempdir().unwrap();
        let d = StateDir::open(&tmp.path().join("s")).unwrap();
        let owed: Vec<Dims> = found(&["m2", "m1"]).series.into_iter().rev().collect();
        assert!(d.owed("r/p/q").is_empty());
        d.store_owed("r/p/q", &owed);
        d.store_owed("r/p/other", &owed[..1]);
        assert_eq!(d.owed("r/p/q"), owed, "in line order");
        d.store_owed("r/p/q", &[]);
        assert!(d.owed("r/p/q").is_empty());
        assert_eq!(d.owed("r/p/other").len(), 1);
    }
}
