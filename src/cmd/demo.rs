//! `maas-usage demo`: the README's first command. The built-in simulator on loopback answers
//! `examples/spec.yaml`, so a newcomer sees real output without a cloud account.

use super::run::{run_spec, RunOptions};
use crate::cli::DemoArgs;
use crate::cloud::credentials::{Credentials, Secret};
use crate::error::Error;
use crate::log;
use crate::sim::{self, SimConfig, Simulator};
use crate::spec::load::load_str;
use crate::spec::Format;

pub const EXAMPLE_SPEC: &str = include_str!("../../examples/spec.yaml");

pub fn demo(a: DemoArgs) -> Result<i32, Error> {
    let now = a
        .now
        .as_deref()
        .map(|n| super::parse_now(Some(n)))
        .transpose()?;
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            now,
            ..SimConfig::default()
        },
    )
    .map_err(|e| Error::Runtime(format!("cannot start the simulator on loopback: {e}")))?;
    let mut spec =
        load_str("examples/spec.yaml", EXAMPLE_SPEC).map_err(|e| Error::Spec(e.to_string()))?;
    spec.cloud.endpoint = Some(sim.url());
    spec.cloud.iam_endpoint = Some(sim.url());
    spec.cloud.project_id = None;
    spec.cloud.credentials_file = None;
    if a.timezone.is_some() {
        spec.timezone = a.timezone.clone();
    }
    log::info(&format!(
        "demo: examples/spec.yaml against the built-in simulator on {}; no cloud account is used",
        sim.url()
    ));
    let creds = Credentials {
        ak: Secret::new(sim::DEMO_AK),
        sk: Secret::new(sim::DEMO_SK),
        token: None,
        source: "the built-in simulator's demo pair".into(),
    };
    // The demo leaves the user's state directory alone.
    let opts = RunOptions {
        format: Some(a.format.unwrap_or(Format::Influx)),
        output: None,
        now: a.now.clone(),
        execd: false,
        creds: Some(creds),
        state: None,
    };
    run_spec(spec, opts)
}
