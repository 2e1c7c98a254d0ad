//! maas-usage: Huawei Cloud MaaS usage statistics as metrics.
//!
//! Data flows one way: spec -> plan -> collect -> emit. See the README's design notes.

pub mod budget;
pub mod cli;
pub mod cloud;
pub mod cmd;
pub mod collect;
pub mod emit;
pub mod error;
pub mod files;
pub mod fsread;
pub mod log;
pub mod manifest;
pub mod model;
pub mod otlp;
pub mod period;
pub mod plan;
pub mod range;
pub mod retry;
pub mod sim;
pub mod spec;
pub mod state;
pub mod text;
pub mod zone;

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
