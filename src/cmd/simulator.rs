//! `maas-usage simulator`: the MaaS + IAM + Cloud Eye simulator as a process.

use std::time::Duration;

use super::error::{Error, Outcome};
use super::parse_now;
use super::settings::simulator_credentials;
use crate::cli::SimulatorArgs;
use crate::deliver::sink::write_stdout;
use crate::domain::range::parse_duration;
use crate::log;
use crate::sim::{
    Dataset, SimAgency, SimConfig, SimCredential, Simulator, Size, DEMO_PROJECT_ID, DEMO_REGION,
};

pub fn simulator(a: SimulatorArgs) -> Result<Outcome, Error> {
    let mut cfg = SimConfig::default();
    if let Some((creds, warnings)) = simulator_credentials(a.credentials_file.clone())? {
        for w in warnings {
            log::warn!("{}", w);
        }
        cfg.credentials = vec![SimCredential {
            ak: creds.ak.expose().to_string(),
            sk: creds.sk.expose().to_string(),
            token: creds.token.as_ref().map(|t| t.expose().to_string()),
        }];
        log::info!("simulator: accepting the credentials from {}", creds.source);
    } else {
        log::info!("simulator: accepting the built-in demo credentials");
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
    let size = Size::default();
    cfg.dataset = Dataset::sized(Size {
        models: a.models.map_or(size.models, usize::from),
        keys: a.keys.map_or(size.keys, usize::from),
        ips: a.ips.map_or(size.ips, usize::from),
    });
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
    cfg.sts.agencies = a.agency.iter().map(|urn| SimAgency::new(urn)).collect();
    // Its metadata service hands out the credentials `--simulator` signs with.
    cfg.metadata = Some(Duration::from_secs(3600));
    let sim = Simulator::start(&a.listen, cfg)
        .map_err(|e| Error::System(format!("cannot listen on {}: {e}", a.listen)))?;
    write_stdout(&match a.print_spec {
        true => spec_for(&sim.url(), &region, &project_id),
        false => format!("{}\n", sim.url()),
    })?;
    log::info!(
        "simulator: MaaS, IAM, Cloud Eye (SYS.MaaS) and a metadata service on {url} (region {region}, project {project_id}): \
         run a command with --simulator {url}; stop with Ctrl-C",
        url = sim.url(),
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// `examples/spec.yaml` with its `cloud` block pointing every endpoint at the simulator on
/// `url` (`--print-spec`).
pub fn spec_for(url: &str, region: &str, project_id: &str) -> String {
    let example = super::demo::EXAMPLE_SPEC;
    // Values as YAML double-quoted scalars: a project id of digits stays a string.
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let mut out = format!(
        "# A spec for the maas-usage simulator on {url} (`maas-usage simulator --print-spec`):\n\
         # examples/spec.yaml with every endpoint at the simulator. Run it with\n\
         #   maas-usage run --spec FILE --simulator {url}\n\
         # which signs with the temporary credentials the simulator's metadata service hands out\n\
         # and reads none from the environment or a file.\n"
    );
    let body = example
        .find("apiVersion:")
        .map_or(example, |at| &example[at..]);
    let (before, rest) = body.split_once("\ncloud:\n").unwrap_or((body, ""));
    let after = rest.find("\n\n").map_or("", |end| &rest[end..]);
    out.push_str(before);
    out.push_str("\ncloud:\n");
    for (key, value) in [
        ("region", region),
        ("project_id", project_id),
        ("endpoint", url),
        ("iam_endpoint", url),
        ("ces_endpoint", url),
        ("maas_monitor_endpoint", url),
        ("metadata_endpoint", url),
    ] {
        out.push_str(&format!("  {key}: {}\n", q(value)));
    }
    out.push_str(after.strip_prefix('\n').unwrap_or(after));
    out.push_str(super::demo::DEMO_SPEND);
    out
}

#[cfg(test)]
mod tests {
    use crate::spec::load::load_str;

    #[test]
    fn the_printed_spec_is_the_example_with_every_endpoint_at_the_simulator() {
        let url = "http://127.0.0.1:8080";
        let text = super::spec_for(url, "ap-southeast-1", "12345678901234567890123456789012");
        let spec = load_str("sim.yaml", &text).unwrap();
        let example = load_str("examples/spec.yaml", super::super::demo::EXAMPLE_SPEC).unwrap();
        let c = &spec.cloud;
        for e in [
            &c.endpoint,
            &c.iam_endpoint,
            &c.ces_endpoint,
            &c.maas_monitor_endpoint,
            &c.metadata_endpoint,
        ] {
            assert_eq!(e.as_deref(), Some(url), "{text}");
        }
        assert_eq!(c.region.as_deref(), Some("ap-southeast-1"));
        assert_eq!(
            c.project_id.as_deref(),
            Some("12345678901234567890123456789012")
        );
        // Everything but the cloud block is the example's.
        let names = |s: &crate::spec::Spec| -> Vec<String> {
            s.queries.iter().map(|q| q.name.clone()).collect()
        };
        assert_eq!(names(&spec), names(&example));
        assert_eq!(spec.output.tags, example.output.tags);
        assert_eq!(spec.timezone, example.timezone);
        assert!(text.contains("\n\n# Calendar ranges"), "{text}");
    }
}
