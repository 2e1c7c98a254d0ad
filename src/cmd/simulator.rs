//! `maas-usage simulator`: the MaaS + IAM + Cloud Eye simulator as a process.

use std::time::Duration;

use super::error::{Error, Outcome};
use super::parse_now;
use super::settings::simulator_credentials;
use crate::cli::SimulatorArgs;
use crate::deliver::sink::write_stdout;
use crate::domain::range::parse_duration;
use crate::log;
use crate::sim::{SimConfig, SimCredential, Simulator, DEMO_PROJECT_ID, DEMO_REGION};

pub fn simulator(a: SimulatorArgs) -> Result<Outcome, Error> {
    let mut cfg = SimConfig::default();
    if let Some((creds, warnings)) = simulator_credentials(a.credentials_file.clone())? {
        for w in warnings {
            log::warn(&w);
        }
        cfg.credentials = vec![SimCredential {
            ak: creds.ak.expose().to_string(),
            sk: creds.sk.expose().to_string(),
            token: creds.token.as_ref().map(|t| t.expose().to_string()),
        }];
        log::info(&format!(
            "simulator: accepting the credentials from {}",
            creds.source
        ));
    } else {
        log::info("simulator: accepting the built-in demo credentials");
    }
    let region = a.region.clone().unwrap_or_else(|| DEMO_REGION.to_string());
    let project_id = a
        .project_id
        .clone()
        .unwrap_or_else(|| DEMO_PROJECT_ID.to_string());
    cfg.projects = vec![(region.clone(), project_id.clone())];
    if let Some(now) = &a.now {
        cfg.now = Some(parse_now(Some(now))?);
    }
    if let Some(seed) = a.seed {
        cfg.dataset.seed = seed;
    }
    let f = &mut cfg.faults;
    if let Some(l) = &a.latency {
        f.latency = parse_duration(l).map_err(|e| Error::Usage(format!("--latency: {e}")))?;
    }
    f.rate_limit = a.rate_limit;
    f.rate_window =
        parse_duration(&a.rate_window).map_err(|e| Error::Usage(format!("--rate-window: {e}")))?;
    f.retry_after = a.retry_after;
    for (name, v) in [
        ("--fail-ratio", a.fail_ratio),
        ("--malformed-ratio", a.malformed_ratio),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Error::Usage(format!("{name} must be between 0 and 1")));
        }
    }
    f.fail_ratio = a.fail_ratio;
    f.malformed_ratio = a.malformed_ratio;
    f.clock_skew = chrono::Duration::seconds(a.clock_skew);
    f.reject_signatures_after = a.reject_signatures_after;
    cfg.log_file = a.log.clone();
    let sim = Simulator::start(&a.listen, cfg)
        .map_err(|e| Error::System(format!("cannot listen on {}: {e}", a.listen)))?;
    write_stdout(&format!("{}\n", sim.url()))?;
    log::info(&format!(
        "simulator: MaaS, IAM and Cloud Eye (SYS.MaaS) on {url} (region {region}, project {project_id}): \
         point cloud.endpoint, cloud.iam_endpoint, cloud.ces_endpoint and cloud.maas_monitor_endpoint at it; stop with Ctrl-C",
        url = sim.url(),
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
