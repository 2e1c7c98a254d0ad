//! `maas-usage demo`: the README's first command. The built-in simulator on loopback answers
//! `examples/spec.yaml`, so a newcomer sees real output without a cloud account.

use super::error::{Error, Outcome};
use super::run::{run_spec, Mode, RunOptions};
use super::settings::{Flags, OutputFlags, Settings};
use crate::cli::DemoArgs;
use crate::log;
use crate::sim::{SimConfig, Simulator};
use crate::spec::load::load_str;
use crate::spec::Format;

pub const EXAMPLE_SPEC: &str = include_str!("../../examples/spec.yaml");

/// What the demo (and the simulator's printed spec) adds to the example, to show the cost and
/// budget series: made-up prices, not anyone's (examples/spec.yaml ships none).
pub const DEMO_SPEND: &str = "
# The demo's own prices and budget, to show the cost and budget series: made-up numbers, not
# anyone's prices. Put your contract's prices in your spec (see examples/spec.yaml).
prices:
  currency: CNY
  per: 1M
  models:
    - {model: DeepSeek-V3, input: 2.0, output: 8.0}
    - {model: Qwen3-32B, input: 0.5, output: 2.0}
budgets:
  - {name: demo-monthly, amount: 1000, period: month}
";

/// The demo's spec: the example and [`DEMO_SPEND`].
pub fn demo_spec_text() -> String {
    format!("{EXAMPLE_SPEC}{DEMO_SPEND}")
}

pub fn demo(a: DemoArgs) -> Result<Outcome, Error> {
    let mut spec = load_str("examples/spec.yaml", &demo_spec_text())?;
    let flags = Flags {
        now: Some(&a.now),
        timezone: a.timezone.as_deref(),
        output: Some(OutputFlags {
            format: Some(match a.serve {
                true => Format::Prometheus,
                false => a.format.unwrap_or(Format::Influx),
            }),
        }),
        ..Flags::default()
    };
    let mut settings = Settings::from_process(&spec, flags)?;
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
    // The demo's own world: no credentials, project id or state directory of the environment.
    settings.demo(&sim.url());
    log::info!(
        "demo: examples/spec.yaml against the built-in simulator on {}, with temporary credentials from its metadata service; no cloud account is used",
        sim.url()
    );
    let mode = match a.serve {
        true => {
            // SIGTERM or Ctrl-C ends it as it ends `serve`: exit 0.
            super::run::signals::install();
            log::info!("demo: serving its collections on the pull endpoint below (GET /metrics, /healthz) until Ctrl-C");
            Mode::Serve {
                listen: a.listen,
                interval: a.interval,
            }
        }
        false => Mode::Once,
    };
    let opts = RunOptions {
        output: None,
        identity: "demo".into(),
        mode,
        ascii: false,
        // The demo leaves the user's state directory alone, and its simulated agency's
        // records stay in the process.
        store: super::wiring::open_store(&settings.state)?,
    };
    run_spec(spec, settings, opts)
}
