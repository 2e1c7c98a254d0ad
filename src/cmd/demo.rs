//! `maas-usage demo`: the README's first command. The built-in simulator on loopback answers
//! `examples/spec.yaml`, so a newcomer sees real output without a cloud account.

use super::error::{Error, Outcome};
use super::run::{run_spec, Mode, RunOptions};
use super::settings::{Flags, Settings};
use crate::cli::DemoArgs;
use crate::log;
use crate::sim::{SimConfig, Simulator};
use crate::spec::load::load_str;
use crate::spec::Format;

pub const EXAMPLE_SPEC: &str = include_str!("../../examples/spec.yaml");

pub fn demo(a: DemoArgs) -> Result<Outcome, Error> {
    let mut spec = load_str("examples/spec.yaml", EXAMPLE_SPEC)?;
    let flags = Flags {
        now: Some(&a.now),
        timezone: a.timezone.as_deref(),
        ..Flags::default()
    };
    // The demo's own world: no environment (credentials, project id) and no state directory.
    let mut settings = Settings::resolve(&spec, flags, &|_| None)?;
    // Its metadata service hands out temporary credentials, as an ECS instance's agency does.
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            now: settings.now,
            metadata: Some(std::time::Duration::from_secs(3600)),
            ..SimConfig::default()
        },
    )
    .map_err(|e| Error::System(format!("cannot start the simulator on loopback: {e}")))?;
    spec.cloud.credentials_file = None;
    settings.connect.endpoint = Some(sim.url());
    settings.connect.iam_endpoint = Some(sim.url());
    settings.connect.ces_endpoint = Some(sim.url());
    settings.connect.maas_monitor_endpoint = Some(sim.url());
    settings.connect.project_id = None;
    settings.connect.credentials_file = None;
    settings.connect.metadata_endpoint = Some(sim.url());
    log::info(&format!(
        "demo: examples/spec.yaml against the built-in simulator on {}, with temporary credentials from its metadata service; no cloud account is used",
        sim.url()
    ));
    let mode = match a.serve {
        true => {
            // SIGTERM or Ctrl-C ends it as it ends `serve`: exit 0.
            super::run::signals::install();
            log::info("demo: serving its collections on the pull endpoint below (GET /metrics, /healthz) until Ctrl-C");
            Mode::Serve {
                listen: a.listen,
                interval: a.interval,
            }
        }
        false => Mode::Once,
    };
    let opts = RunOptions {
        format: Some(match a.serve {
            true => Format::Prometheus,
            false => a.format.unwrap_or(Format::Influx),
        }),
        output: None,
        identity: "demo".into(),
        mode,
        ascii: false,
        // No environment: the demo's credentials come from the simulated agency.
        env: &|_| None,
        // The demo leaves the user's state directory alone, and its simulated agency's
        // records stay in the process.
        state: None,
        share_gate: false,
    };
    run_spec(spec, settings, opts)
}
