//! The commands: glue from parsed flags to the pipeline spec -> plan -> collect -> emit.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;

use crate::budget::{Budget, Limiter};
use crate::cli::{Cli, CloudArgs, Command, DemoArgs, QueryArgs, QueryFormat, SimulatorArgs};
use crate::cloud::credentials::{Credentials, Secret};
use crate::cloud::{self, ConnectOptions, Connection};
use crate::collect::{self, Collected, RunStats};
use crate::emit::{self, Report};
use crate::error::Error;
use crate::log;
use crate::model::{InferType, ServiceType};
use crate::plan::{self, Plan};
use crate::range::{self, Bound, RangeExpr};
use crate::sim::{self, SimConfig, SimCredential, Simulator};
use crate::spec::{self, CloudSpec, Limits, QuerySpec, Spec};
use crate::zone::{self, OsZoneHints, Zone};

/// Runs the command line and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    log::set_verbose(cli.verbose);
    let result = match cli.command {
        Command::Query(a) => query(a, None),
        Command::Demo(a) => demo(a),
        Command::Simulator(a) => simulator(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error(&e.to_string());
            e.exit_code()
        }
    }
}

pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

pub fn parse_now(now: Option<&str>) -> Result<DateTime<Utc>, Error> {
    match now {
        None => Ok(Utc::now()),
        Some(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Error::Usage(format!(
                    "--now `{s}` is not an RFC 3339 instant (e.g. 2026-05-21T10:00:00+08:00)"
                ))
            }),
    }
}

pub fn resolve_zone(explicit: Option<&str>) -> Result<Zone, Error> {
    let (zone, warnings) = zone::resolve(explicit, &OsZoneHints::read())?;
    for w in warnings {
        log::warn(&w);
    }
    Ok(zone)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a message.
pub fn write_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Runtime(format!("cannot write the output: {e}"))),
    }
}

/// Flags over spec over defaults.
pub fn connect_options(
    cloud: &CloudSpec,
    flags: &CloudArgs,
    call_timeout: Duration,
) -> ConnectOptions {
    ConnectOptions {
        region: flags
            .region
            .clone()
            .or_else(|| cloud.region.clone())
            .unwrap_or_else(|| spec::DEFAULT_REGION.to_string()),
        project_id: flags
            .project_id
            .clone()
            .or_else(|| cloud.project_id.clone()),
        endpoint: flags.endpoint.clone().or_else(|| cloud.endpoint.clone()),
        iam_endpoint: flags
            .iam_endpoint
            .clone()
            .or_else(|| cloud.iam_endpoint.clone()),
        credentials_file: flags
            .credentials_file
            .clone()
            .or_else(|| cloud.credentials_file.clone()),
        ca_file: flags.ca_file.clone(),
        call_timeout,
    }
}

/// The longest a single HTTP exchange may take; the run's deadline shortens it further.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What a collection produced.
pub struct Outcome {
    pub collected: Collected,
    pub stats: RunStats,
}

/// Connects (credentials, client, project id) within the run's budget and deadline.
/// `creds` overrides the environment and file (the demo uses the simulator's pair).
pub fn open(
    opts: &ConnectOptions,
    limits: &Limits,
    deadline: Instant,
    creds: Option<Credentials>,
) -> Result<Connection, Error> {
    let creds = match creds {
        Some(c) => c,
        None => cloud::load_credentials(&env, opts.credentials_file.as_deref())?,
    };
    let budget: Arc<dyn Budget> = Arc::new(Limiter::new(limits.requests_per_minute, rate_window()));
    cloud::connect(opts, creds, budget, &env, deadline)
}

/// The request budget's window: the API's minute, with a small margin so that jitter between
/// our clock and the gateway's never lets N+1 calls land in its window. Tests shrink it with
/// `MAAS_USAGE_RATE_WINDOW_MS`, as they shrink the simulator's.
pub fn rate_window() -> Duration {
    let base = env("MAAS_USAGE_RATE_WINDOW_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(60));
    base + base / 50 + Duration::from_millis(50)
}

/// Runs the plan's calls on a connection.
pub fn execute(
    plan: &Plan,
    conn: &Arc<Connection>,
    limits: &Limits,
    started: Instant,
    deadline: Instant,
    stop: &AtomicBool,
) -> Outcome {
    let collected = collect::collect(plan, conn.clone(), limits.concurrency, deadline, stop);
    let c = &conn.client.counters;
    let stats = RunStats {
        series_ok: collected.series.len() as u64,
        series_failed: collected.failures.len() as u64,
        api_calls: c.calls.load(std::sync::atomic::Ordering::Relaxed),
        api_retries: c.retries.load(std::sync::atomic::Ordering::Relaxed),
        throttled: c.throttled.load(std::sync::atomic::Ordering::Relaxed),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    Outcome { collected, stats }
}

/// One stderr line per failed series: what failed and why, in the order the contract gives.
pub fn log_failures(collected: &Collected) {
    for f in &collected.failures {
        let mut line = format!(
            "query={} service_type={} infer_type={} key_group={}",
            f.key.query, f.key.service_type, f.key.infer_type, f.key.key_group
        );
        if let Some(s) = f.error.status() {
            line.push_str(&format!(" status={s}"));
        }
        if let Some(c) = f.error.code() {
            line.push_str(&format!(" code={c}"));
        }
        if let Some(r) = f.error.request_id() {
            line.push_str(&format!(" request_id={r}"));
        }
        line.push_str(&format!(": {}", f.error));
        log::error(&line);
    }
}

fn query(a: QueryArgs, creds: Option<Credentials>) -> Result<i32, Error> {
    let started = Instant::now();
    let timeout = range::parse_duration(&a.timeout).map_err(Error::Usage)?;
    let deadline = started + timeout;
    let range = match &a.from {
        Some(from) => RangeExpr::Between {
            from: from.parse::<Bound>()?,
            to: a.to.as_deref().map(str::parse::<Bound>).transpose()?,
        },
        None => a
            .range
            .as_deref()
            .unwrap_or("last_7d")
            .parse::<RangeExpr>()?,
    };
    let mut service_types = Vec::new();
    for s in &a.service_type {
        let st: ServiceType = s
            .parse()
            .map_err(|e: String| Error::Usage(format!("--service-type: {e}")))?;
        if !service_types.contains(&st) {
            service_types.push(st);
        }
    }
    let infer_type: InferType = a
        .infer_type
        .parse()
        .map_err(|e: String| Error::Usage(format!("--infer-type: {e}")))?;
    let zone = resolve_zone(a.timezone.as_deref())?;
    let now = parse_now(a.now.as_deref())?;

    let mut spec = Spec::default();
    let key_groups = a.api_keys.as_ref().map(|keys| {
        spec.key_groups.insert("selected".into(), keys.clone());
        vec!["selected".to_string()]
    });
    spec.queries.push(QuerySpec {
        name: "query".into(),
        range,
        service_types,
        infer_type,
        key_groups,
        ips: a.ips.clone(),
    });
    let plan = plan::build(&spec, now, &zone)?;
    for w in &plan.warnings {
        log::warn(w);
    }

    let limits = Limits {
        timeout,
        ..Limits::default()
    };
    let opts = connect_options(&spec.cloud, &a.cloud, CALL_TIMEOUT);
    let conn = Arc::new(open(&opts, &limits, deadline, creds)?);
    let outcome = execute(
        &plan,
        &conn,
        &limits,
        started,
        deadline,
        &AtomicBool::new(false),
    );
    log_failures(&outcome.collected);
    let report = Report {
        collected: &outcome.collected,
        stats: outcome.stats,
        region: &conn.region,
        project_id: &conn.project_id,
        zone: &plan.zone,
        now: plan.now,
    };
    let text = match a.format {
        QueryFormat::Table => emit::table::render(&report, a.raw),
        QueryFormat::Json => emit::json::render(&report),
    };
    write_stdout(&text)?;
    Ok(if outcome.collected.failures.is_empty() {
        0
    } else {
        1
    })
}

fn simulator(a: SimulatorArgs) -> Result<i32, Error> {
    let mut cfg = SimConfig::default();
    if env("HW_ACCESS_KEY").is_some()
        || env("HUAWEICLOUD_SDK_AK").is_some()
        || a.credentials_file.is_some()
    {
        let creds = cloud::load_credentials(&env, a.credentials_file.as_deref())?;
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
    cfg.projects = vec![(a.region.clone(), a.project_id.clone())];
    if let Some(now) = &a.now {
        cfg.now = Some(parse_now(Some(now))?);
    }
    if let Some(seed) = a.seed {
        cfg.dataset.seed = seed;
    }
    let f = &mut cfg.faults;
    if let Some(l) = &a.latency {
        f.latency = range::parse_duration(l).map_err(Error::Usage)?;
    }
    f.rate_limit = a.rate_limit;
    f.rate_window = range::parse_duration(&a.rate_window).map_err(Error::Usage)?;
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
    cfg.log_file = a.log.clone();
    let sim = Simulator::start(&a.listen, cfg)
        .map_err(|e| Error::Runtime(format!("cannot listen on {}: {e}", a.listen)))?;
    write_stdout(&format!("{}\n", sim.url()))?;
    log::info(&format!(
        "simulator: MaaS and IAM on {} (region {}, project {}); stop with Ctrl-C",
        sim.url(),
        a.region,
        a.project_id
    ));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts the simulator on loopback and answers the original script's question (preset
/// service, last 7 days) against it, with the simulator's own credentials.
fn demo(a: DemoArgs) -> Result<i32, Error> {
    let now = a.now.as_deref().map(|n| parse_now(Some(n))).transpose()?;
    let sim = Simulator::start(
        "127.0.0.1:0",
        SimConfig {
            now,
            ..SimConfig::default()
        },
    )
    .map_err(|e| Error::Runtime(format!("cannot start the simulator on loopback: {e}")))?;
    let url = sim.url();
    log::info(&format!(
        "demo: simulator on {url}; no cloud account is used"
    ));
    let mut argv = vec![
        "maas-usage",
        "query",
        "--endpoint",
        &url,
        "--iam-endpoint",
        &url,
    ];
    if let Some(n) = &a.now {
        argv.extend(["--now", n]);
    }
    if let Some(z) = &a.timezone {
        argv.extend(["--timezone", z]);
    }
    let Command::Query(q) = Cli::try_parse_from(argv)
        .map_err(|e| Error::Usage(e.to_string()))?
        .command
    else {
        return Err(Error::Runtime("demo: internal argument error".into()));
    };
    let creds = Credentials {
        ak: Secret::new(sim::DEMO_AK),
        sk: Secret::new(sim::DEMO_SK),
        token: None,
        source: "the built-in simulator's demo pair".into(),
    };
    query(q, Some(creds))
}
