//! maas-usage: Huawei Cloud MaaS usage statistics as metrics.
//!
//! Layers, each importing only the ones before it (`tests/it/architecture.rs` checks it):
//! utilities (`log`, `text`, `files`, `endpoint`, `retry`, `budget`) and the vocabulary
//! (`domain`) <- `time` <- `spec` <- `plan` <- `collect`; `cloud` (depends on the vocabulary and
//! utilities only); `emit` (results -> bytes); `deliver` (where bytes go); `state` (what
//! processes share); `sim` (the simulator, at the edge); `cli` and `cmd` wire them together.
//! CONTRIBUTING.md draws the picture.
//!
//! The library exists for the binary, its tests and its benchmarks: only the modules they use
//! are public.

mod budget;
mod cli;
pub mod cloud;
pub mod cmd;
pub mod collect;
mod deliver;
pub mod domain;
pub mod emit;
mod endpoint;
mod env;
mod files;
pub mod generate;
mod http;
mod log;
pub mod manifest;
pub mod plan;
mod retry;
pub mod sim;
pub mod spec;
pub mod spend;
mod state;
mod text;
pub mod time;
mod tls;

/// For `benches/fleet.rs` only (builds with the `test-hooks` feature, as the benchmarks and
/// tests have it): the fleet's request budget as a run takes it.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub mod bench_support {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::state::fleet::{RedisStore, RedisTarget};
    use crate::state::{DirectoryStore, RuntimeDir, StateStore};

    /// One call slot per call of the closure, taken in two windows (an identity's and an
    /// account's, `window` long, with a limit never reached) at `url`, trusting the CA in
    /// `ca_file` when given; an error when the engine cannot be reached.
    pub fn redis_budget(
        url: &str,
        ca_file: Option<&Path>,
        window: Duration,
    ) -> Result<impl Fn(), String> {
        let files = crate::tls::TlsFiles {
            ca: ca_file.map(|p| crate::tls::named("coordination.ca_file", p)),
            ..Default::default()
        };
        let target = RedisTarget {
            url: url.to_string(),
            password: None,
            group: "bench".into(),
            lease: Duration::from_secs(60),
            tls: files.load().map_err(|e| e.to_string())?,
        };
        let local = DirectoryStore::new(None, None, None::<RuntimeDir>);
        let (store, _) = RedisStore::open(target, local, None).map_err(|e| e.to_string())?;
        let budget: Arc<dyn crate::budget::Budget> =
            store.budget_of(&[("identity", 1_000_000), ("account", 1_000_000)], window);
        let far = Instant::now() + Duration::from_secs(24 * 3600);
        Ok(move || {
            if let Err(e) = budget.acquire(far) {
                panic!("no slot: {e}");
            }
        })
    }
}

/// Helpers for the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;

    /// An environment of exactly these variables, in the form the crate reads it.
    pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }
}
