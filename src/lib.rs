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
