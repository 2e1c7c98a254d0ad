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
pub mod zone;
