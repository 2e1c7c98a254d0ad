//! The integration tests, one binary (as ripgrep's): a module per user-visible behaviour, each
//! opening with a comment that states the behaviour it proves, and the shared harness in
//! `common`. One binary is linked once and runs every test on one pool of threads.

// The 100-line limit (clippy.toml, denied in Cargo.toml) is for production code: a scenario test
// that reads top to bottom as the operator's story may run longer.
#![allow(clippy::too_many_lines)]

mod common;

mod architecture;
mod auth;
mod cloud_eye;
mod cloud_eye_scale;
mod clouds;
mod credentials;
mod dashboard;
mod delivery;
mod destinations;
mod docs;
mod faults;
mod first_run;
mod fleet;
mod fleet_collections;
mod fleet_failover;
mod fleet_tls;
mod hostile_answers;
mod hostile_files;
mod hostile_input;
mod influxdb_e2e;
mod names;
mod packaging;
mod period;
mod plugin;
mod query;
mod report;
mod rules;
mod run_influx;
mod run_otlp;
mod secrets;
mod serve;
mod spec_errors;
mod spend;
mod state;
mod tls;
