//! Cloud Eye discovery, cached: which metric and series pairs exist and the names of their
//! ids, per region and project, for an hour, so a run every minute does not list them again.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{now_ms, StateDir};
use crate::domain::ces::Discovered;
use crate::files::Durability;
use crate::log;

/// How long a discovery stands.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

const FILE: &str = "ces-discovery.json";
const LOCK: &str = "ces-discovery.lock";

#[derive(Serialize, Deserialize)]
struct Cached {
    at_ms: u64,
    found: Discovered,
}

impl StateDir {
    /// The discovery of `key` (region and project), while it is younger than the TTL.
    pub fn cached_discovery(&self, key: &str) -> Option<Discovered> {
        let all: BTreeMap<String, Cached> = self.read_json(FILE)?;
        let c = all.get(key)?;
        let age = now_ms().saturating_sub(c.at_ms);
        (age < DISCOVERY_TTL.as_millis() as u64).then(|| c.found.clone())
    }

    pub fn store_discovery(&self, key: &str, found: &Discovered) {
        let _guard = self.lock(LOCK);
        let mut all: BTreeMap<String, Cached> = self.read_json(FILE).unwrap_or_default();
        let now = now_ms();
        all.retain(|_, c| now.saturating_sub(c.at_ms) < DISCOVERY_TTL.as_millis() as u64);
        all.insert(
            key.to_string(),
            Cached {
                at_ms: now,
                found: found.clone(),
            },
        );
        if let Err(e) = self.write_json(FILE, &all, Durability::Cheap) {
            log::warn(&format!(
                "cannot cache Cloud Eye's discovery in the state directory: {e}"
            ));
        }
    }

    /// Forgets every cached discovery (`state reset`).
    pub fn reset_discovery(&self) -> std::io::Result<()> {
        let _guard = self.lock(LOCK)?;
        self.write_json(FILE, &BTreeMap::<String, Cached>::new(), Durability::Cheap)
    }
}
