//! Command-line definitions: parsing only; the commands live in `cmd`. Flags shared by several
//! commands are defined once (`CloudArgs`, `StateArgs`, `NowArg`) and flattened; enumerations
//! list their values in help, errors and completions.

use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::{InferType, ServiceType};
use crate::spec::Format;

mod help;
use help::{RUN_HELP, SERVE_HELP};

/// Parses a value with the domain's own `FromStr` (and its messages, such as "use 4 for Custom
/// Endpoint" for 3), while help and completions list the accepted names.
#[derive(Clone)]
pub struct Values<T: 'static> {
    names: &'static [&'static str],
    parse: fn(&str) -> Result<T, Box<dyn std::fmt::Display>>,
}

impl<T: Clone + Send + Sync + 'static> TypedValueParser for Values<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        (self.parse)(&text).map_err(|why| {
            let flag = arg.map(|a| a.to_string()).unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("{flag}: {why}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.names.iter().map(PossibleValue::new)))
    }
}

fn service_types() -> Values<ServiceType> {
    Values {
        names: &["my_service", "preset", "custom_endpoint", "1", "2", "4"],
        parse: |s| {
            s.parse()
                .map_err(|e| Box::new(e) as Box<dyn std::fmt::Display>)
        },
    }
}

fn infer_types() -> Values<InferType> {
    Values {
        names: &["real_time", "batch"],
        parse: |s| {
            s.parse()
                .map_err(|e| Box::new(e) as Box<dyn std::fmt::Display>)
        },
    }
}

fn formats() -> Values<Format> {
    Values {
        names: &Format::NAMES,
        parse: |s| {
            Format::parse(s).ok_or_else(|| {
                Box::new(format!(
                    "`{s}` is not a format; use one of: {}",
                    Format::NAMES.join(", ")
                )) as Box<dyn std::fmt::Display>
            })
        },
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "maas-usage",
    version,
    about = "Huawei Cloud MaaS usage statistics as metrics for Telegraf and the OpenTelemetry Collector",
    long_about = "Huawei Cloud MaaS usage statistics (tokens, requests, errors) as metrics.\n\n\
Credentials come from the environment (HW_ACCESS_KEY/HW_SECRET_KEY [+HW_SECURITY_TOKEN], or \
HUAWEICLOUD_SDK_AK/HUAWEICLOUD_SDK_SK [+HUAWEICLOUD_SDK_SECURITY_TOKEN]), a credentials file, \
or the instance's agency through the metadata service, in that order; never from the command \
line.\n\n\
Try it without a cloud account:  maas-usage demo",
    after_help = "Exit codes: 0 success (also when only some series failed); 1 nothing collected, or the cloud or the run failed; 2 invalid input (flags, spec, credentials)."
)]
pub struct Cli {
    /// Log every call (method, URL, status, request id, timing) on stderr.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Collect every series of a spec and write metrics (Telegraf exec/execd, OTLP, ...).
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Collect on a schedule and serve the last collection to Prometheus scrapes (/metrics).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Check spec files (schema and semantics); no credentials, no network.
    #[command(after_help = VALIDATE_HELP)]
    Validate(ValidateArgs),
    /// Show every series and every call a spec would make; no credentials, no network.
    Plan(PlanArgs),
    /// Print the spec's JSON Schema (for editors and CI).
    Schema,
    /// Ask once: usage totals for a time range, as a table or JSON.
    #[command(after_help = QUERY_EXAMPLES)]
    Query(QueryArgs),
    /// Try it without a cloud account: examples/spec.yaml against the built-in simulator
    /// (--serve: as a Prometheus pull endpoint).
    Demo(DemoArgs),
    /// Inspect or rewind period-mode checkpoints in the state directory.
    #[command(subcommand)]
    State(StateAction),
    /// Serve the MaaS + IAM + Cloud Eye simulator on loopback (for tests and trials).
    #[command(after_help = SIMULATOR_EXAMPLES)]
    Simulator(SimulatorArgs),
    /// Print Prometheus alert rules for a spec: collector health, model error ratio and TTFT,
    /// budgets.
    #[command(after_help = RULES_HELP)]
    Rules(RulesArgs),
    /// Print a Grafana dashboard (JSON) for a spec: spend, budgets, tokens, requests and
    /// errors, latency, collector health.
    #[command(after_help = DASHBOARD_HELP)]
    Dashboard(DashboardArgs),
    /// Write a month's spend report: one self-contained HTML file (inline SVG and CSS) from
    /// Cloud Eye, priced with the spec's prices.
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Print the plugin manifest (plugin.yaml), or its metric tables as Markdown.
    Describe(DescribeArgs),
    /// Print a shell completion script.
    ///
    /// Example: maas-usage completions bash > /etc/bash_completion.d/maas-usage
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one per command into a directory.
    ///
    /// Example: maas-usage man --dir /usr/local/share/man/man1
    Man(ManArgs),
}

const QUERY_EXAMPLES: &str = "Examples:
  maas-usage query                                   # preset service, last 7 days
  maas-usage query --from 2026-05-08 --to 2026-05-21 # both days included
  maas-usage query --range this_month --service-type 4
  maas-usage query --range last_30d --infer-type batch --format json
  maas-usage query --api-keys key1 key2              # only these API keys
  maas-usage query --api-keys ''                     # only the online-experience page";

const VALIDATE_HELP: &str = "Examples:
  maas-usage validate specs/                 # every *.yaml / *.yml in name order
  maas-usage validate a.yaml b.yaml --format github";

const SIMULATOR_EXAMPLES: &str = "Examples:
  maas-usage simulator --listen 127.0.0.1:8080
  maas-usage simulator --latency 50ms --rate-limit 200 --fail-ratio 0.1
  maas-usage simulator --models 100 --keys 20 --ips 400   # an organisation's Cloud Eye
  maas-usage simulator --listen 127.0.0.1:8080 --print-spec > sim.yaml

Then point a command at it (--simulator: every endpoint, and only the credentials its metadata
service hands out):
  maas-usage query --simulator http://127.0.0.1:8080
  maas-usage run --spec sim.yaml --simulator http://127.0.0.1:8080

Without HW_ACCESS_KEY/HW_SECRET_KEY in the environment it also accepts the built-in demo pair.";

/// Where and how to reach the cloud; shared by every command that calls it. Flags win over the
/// spec's `cloud` section, which wins over the environment (`clouds`: see `run --help`).
#[derive(Args, Debug, Clone, Default)]
pub struct CloudArgs {
    /// Huawei Cloud region [default: cloud.region, else cn-southwest-2].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Project id; else cloud.project_id, HW_PROJECT_ID, HUAWEICLOUD_SDK_PROJECT_ID, else IAM
    /// discovery.
    #[arg(long, value_name = "ID")]
    pub project_id: Option<String>,
    /// MaaS endpoint URL [default: https://modelarts.{region}.myhuaweicloud.com].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// IAM endpoint URL [default: https://iam.{region}.myhuaweicloud.com].
    #[arg(long, value_name = "URL")]
    pub iam_endpoint: Option<String>,
    /// Credentials file: AK and SK on two lines, one AK,SK line, KEY=VALUE lines, or the
    /// console's credentials.csv download. Environment variables win over it.
    #[arg(long, value_name = "PATH")]
    pub credentials_file: Option<PathBuf>,
    /// PEM bundle of a private CA to trust (TLS is always verified).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// A testing aid: send every call (MaaS, IAM, Cloud Eye, the MaaS monitor, the metadata
    /// service) to the simulator at URL (`maas-usage simulator`), signed with the temporary
    /// credentials its metadata service hands out. Nothing of a real account is used: no
    /// credentials are read from the environment or a file, the project id comes from the
    /// simulator's IAM (unless --project-id), the state directory is --state-dir's only, and
    /// the credential gate's records stay in the process.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with_all = ["endpoint", "iam_endpoint", "credentials_file"]
    )]
    pub simulator: Option<String>,
}

/// The state directory; shared by the commands that keep or read state.
#[derive(Args, Debug, Clone, Default)]
pub struct StateArgs {
    /// State shared between runs and processes: request budget per IAM user or agency,
    /// credential rejections, project id cache, period checkpoints
    /// [default: $XDG_STATE_HOME/maas-usage or ~/.local/state/maas-usage].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// A pinned "now"; shared by every command that plans.
#[derive(Args, Debug, Clone, Default)]
pub struct NowArg {
    /// Pretend it is this instant (RFC 3339), for reproducible output [default: now].
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// last_7d, last_14d, last_30d, last_month (= last_30d: now-30d ~ now), last_<N>d,
    /// last_<N>h, today, yesterday, this_month, previous_month (the calendar month before)
    /// [default: last_7d].
    #[arg(long, value_name = "RANGE", conflicts_with_all = ["from", "to"])]
    pub range: Option<String>,
    /// Start: YYYY-MM-DD (local midnight) or an RFC 3339 instant.
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// End: YYYY-MM-DD (that day included) or an RFC 3339 instant; capped at now.
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<String>,
    /// my_service (1), preset (2), custom_endpoint (4); repeat or separate with commas.
    #[arg(
        long,
        value_name = "TYPE",
        value_delimiter = ',',
        default_value = "preset",
        value_parser = service_types()
    )]
    pub service_type: Vec<ServiceType>,
    /// real_time or batch (batch adds completed tasks and inference count).
    #[arg(long, value_name = "TYPE", default_value = "real_time", value_parser = infer_types())]
    pub infer_type: InferType,
    /// Only these API keys; '' selects calls from the online experience page. Omit for all keys.
    #[arg(long, value_name = "KEY", num_args = 1..)]
    pub api_keys: Option<Vec<String>>,
    /// Only calls from these client IPs.
    #[arg(long, value_name = "IP", num_args = 1..)]
    pub ips: Option<Vec<String>>,
    /// IANA time zone for calendar ranges and display [default: the OS zone].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    #[command(flatten)]
    pub now: NowArg,
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// Also show each segment's window and the raw API answer.
    #[arg(long)]
    pub raw: bool,
    /// Draw the table with ASCII only (box-drawing is used on a UTF-8 terminal).
    #[arg(long)]
    pub ascii: bool,
    /// Give up after this long, in total.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub timeout: String,
    #[command(flatten)]
    pub cloud: CloudArgs,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Args, Debug)]
pub struct SimulatorArgs {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The project id IAM lists for the region [default: the demo's project id].
    #[arg(long)]
    pub project_id: Option<String>,
    /// The region IAM lists the project in [default: cn-southwest-2].
    #[arg(long)]
    pub region: Option<String>,
    /// The data clock (RFC 3339): hours after it have no data yet [default: the real time].
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Seed of the synthetic traffic.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Model services in Cloud Eye (SYS.MaaS): the demo's three first, then generated ones with
    /// real-looking ids and names, one in three a My Service [default: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub models: Option<u16>,
    /// Named API keys, each with a Cloud Eye series per model: the demo's four first, then
    /// generated ones [default: 4]. The online-experience page's share comes on top, in the
    /// models' totals only.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub keys: Option<u16>,
    /// Client IPs the traffic comes from [default: 3]. Each hour of a key and IP goes to one
    /// model of its service type: with N models, 4 x N IPs give nearly every model-and-key
    /// series traffic in every hour.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub ips: Option<u16>,
    /// Every answer leaves no earlier than this after its request arrived, its computation
    /// included (a server's latency), e.g. 50ms.
    #[arg(long, value_name = "DURATION")]
    pub latency: Option<String>,
    /// Admit at most N requests per --rate-window; more get 429.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub rate_window: String,
    /// Retry-After seconds sent with a 429.
    #[arg(long, value_name = "SECONDS")]
    pub retry_after: Option<u64>,
    /// Fraction (0..1) of requests answered 503.
    #[arg(long, value_name = "RATIO", default_value_t = 0.0)]
    pub fail_ratio: f64,
    /// Fraction (0..1) of answers with a cut JSON body.
    #[arg(long, value_name = "RATIO", default_value_t = 0.0)]
    pub malformed_ratio: f64,
    /// Seconds the simulator's clock is ahead (negative: behind) for X-Sdk-Date checks.
    #[arg(
        long,
        value_name = "SECONDS",
        allow_hyphen_values = true,
        default_value_t = 0,
        value_parser = clap::value_parser!(i64).range(-31_536_000..=31_536_000)
    )]
    pub clock_skew: i64,
    /// Accept N correctly signed requests, then answer every signed request 401 APIGW.0301
    /// (a key disabled while in use).
    #[arg(long, value_name = "N")]
    pub reject_signatures_after: Option<u64>,
    /// An agency its STS lets the accepted credentials assume (repeatable; others get 403).
    #[arg(long, value_name = "URN")]
    pub agency: Vec<String>,
    /// Append one JSON line per request to this file (no header values).
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Credentials file the simulator accepts (else the environment, else the demo pair).
    #[arg(long, value_name = "PATH")]
    pub credentials_file: Option<PathBuf>,
    /// Print a spec for this simulator on stdout (examples/spec.yaml with every endpoint at
    /// it) instead of its URL; run it with `maas-usage run --spec FILE --simulator URL`.
    #[arg(long)]
    pub print_spec: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Spec file or directory (every *.yaml/*.yml in it); repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
    /// Output format [default: the spec's output.format, else influx]: influx (InfluxDB line
    /// protocol for Telegraf), otlp (push to a collector: output.otlp, OTEL_EXPORTER_OTLP_*),
    /// otlp-json (one OTLP/JSON request per line, for the collector's otlpjsonfile receiver),
    /// prometheus (node_exporter textfile), table (for people), json (for scripts).
    #[arg(long, value_name = "FORMAT", value_parser = formats())]
    pub format: Option<Format>,
    /// Write to FILE instead of stdout (`-`): replaced atomically, or appended for otlp-json.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Telegraf inputs.execd with signal = "STDIN": one collection per line read on stdin,
    /// flushed after each; exit 0 on end of input.
    #[arg(long)]
    pub execd: bool,
    /// With --format table: ASCII only (box-drawing is used on a UTF-8 terminal).
    #[arg(long)]
    pub ascii: bool,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Spec file or directory (every *.yaml/*.yml in it); repeatable. Its output section is
    /// ignored but for output.tags: the page is Prometheus text.
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
    /// Address to listen on; 0 as the port lets the system pick one (printed on stderr).
    /// Loopback by default: put a proxy in front to expose it.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// Time between the starts of two collections (1s to 1d; 60s suits the API's budget).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = interval)]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

/// Why `serve --interval` was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntervalError {
    #[error(transparent)]
    Duration(#[from] crate::domain::range::DurationError),
    #[error("the interval is between 1s and 1d")]
    OutOfRange,
}

fn interval(s: &str) -> Result<std::time::Duration, IntervalError> {
    let d = crate::domain::range::parse_duration(s)?;
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(86_400)).contains(&d) {
        return Err(IntervalError::OutOfRange);
    }
    Ok(d)
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    /// `file:line:column: path: message` on stderr.
    Text,
    /// GitHub Actions annotations (`::error file=...,line=...,col=...::message`) on stdout.
    Github,
    /// One JSON document on stdout.
    Json,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Spec files or directories.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// Spec file or directory; repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
    #[command(flatten)]
    pub now: NowArg,
    /// Period-mode checkpoints are read from its state directory (never written): those of the
    /// destination a `run` with the same --format and --output writes to (by default the
    /// spec's output.format to stdout, or its OTLP endpoint), or of --destination.
    #[command(flatten)]
    pub state: StateArgs,
    /// Plan for a run in this format (as `run --format`; the packaged timer's is otlp)
    /// [default: the spec's output.format].
    #[arg(long, value_name = "FORMAT", value_parser = formats())]
    pub format: Option<Format>,
    /// Plan for a run writing to this file (as `run --output`).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Plan with this destination's checkpoints (an id from `state show`, such as serve's).
    #[arg(long, value_name = "ID", conflicts_with_all = ["format", "output"])]
    pub destination: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output format [default: influx]: influx, otlp (push to a collector at
    /// OTEL_EXPORTER_OTLP_ENDPOINT, by default localhost:4318), otlp-json, prometheus, table or
    /// json.
    #[arg(long, value_name = "FORMAT", value_parser = formats())]
    pub format: Option<Format>,
    #[command(flatten)]
    pub now: NowArg,
    /// IANA time zone for calendar ranges and display [default: the OS zone].
    #[arg(long, value_name = "ZONE")]
    pub timezone: Option<String>,
    /// Show the pull endpoint instead: collect every --interval and serve the last collection
    /// on /metrics and /healthz, as `serve` does, until Ctrl-C (its URL is on stderr).
    #[arg(long, conflicts_with = "format")]
    pub serve: bool,
    /// With --serve: where to listen [default: a free port on 127.0.0.1].
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:0",
        requires = "serve"
    )]
    pub listen: std::net::SocketAddr,
    /// With --serve: time between the starts of two collections (1s to 1d).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = interval, requires = "serve")]
    pub interval: std::time::Duration,
}

const RULES_HELP: &str = "The thresholds come from the spec's alerts: section (error_ratio 0.05,
ttft_p99 10s, budget_warning 0.8, for 10m by default). Every metric name is the one the outputs
write (plugin.yaml), so the rules work on serve, the textfile and OTLP through the collector.

Examples:
  maas-usage rules --spec /etc/maas-usage/spec.yaml > /etc/prometheus/rules/maas-usage.yml
  promtool check rules /etc/prometheus/rules/maas-usage.yml
Prometheus (prometheus.yml):
  rule_files: [rules/maas-usage.yml]";

const DASHBOARD_HELP: &str =
    "Import the JSON in Grafana (Dashboards > New > Import); pick the Prometheus
data source that scrapes maas-usage (serve, the textfile, or the collector's exporter).

Example:
  maas-usage dashboard --spec /etc/maas-usage/spec.yaml > maas-usage.json";

const REPORT_HELP: &str =
    "Cloud Eye keeps 30 days of hourly and daily data: a month reported in its
last days, or just after, is whole; an older one is partial and the report says so. Costs are
estimates from the spec's prices, not the bill.

Examples:
  maas-usage report --spec spec.yaml --month 2026-11 --output report-2026-11.html
  maas-usage report --spec spec.yaml --simulator http://127.0.0.1:8080 --month 2026-05";

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Spec file or directory; repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
    /// The time between collections (serve's --interval, Telegraf's interval): a collector is
    /// stale after two.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = interval)]
    pub interval: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// Spec file or directory; repeatable.
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Spec file or directory; repeatable (its prices, budgets, key groups and timezone).
    #[arg(long, value_name = "PATH", required = true)]
    pub spec: Vec<PathBuf>,
    /// The month, YYYY-MM, in the spec's timezone [default: the current month].
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// Write the HTML to FILE (replaced atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// With `clouds:` in the spec: the one to report on, by name.
    #[arg(long = "cloud", value_name = "NAME")]
    pub cloud_name: Option<String>,
    #[command(flatten)]
    pub now: NowArg,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub cloud: CloudArgs,
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The metric, self-metric and tag tables (docs/metrics.md) as Markdown instead of the YAML.
    #[arg(long)]
    pub markdown: bool,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write maas-usage.1 and maas-usage-<command>.1 for every command into DIR.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

const STATE_RESET_HELP: &str =
    "Period checkpoints belong to a destination: the output a run's buckets go to,
named by its format and target (stdout, an --output file, an OTLP endpoint, serve's listen
address) or by the spec's output.destination. `maas-usage state show` lists them by id.

Examples:
  maas-usage state reset --destination otlp-1a2b3c4d5e6f  # it starts again from the backfill
  maas-usage state reset --series hourly   # the query hourly, in every destination
  maas-usage state reset --destination influx-stdout --series hourly
  maas-usage state reset                   # everything, and Cloud Eye's discovery cache
  maas-usage state reset --auth            # credential rejections, after fixing the key
  maas-usage state reset --auth --spec spec.yaml     # those Redis holds for the fleet
  maas-usage state reset --engine --spec spec.yaml   # Redis lost its state: go on from here
  maas-usage state reset --auth --state-dir /var/lib/maas-usage --runtime-dir /run/maas-usage/maas-usage
                                           # the packaged units' (run it as their user)";

const STATE_ADOPT_HELP: &str =
    "Versions up to 0.1 kept one checkpoints.json for every output. While it holds
checkpoints of a spec's series, a destination that has not taken them over holds its period
series back (its runs say so in an E! line, with its id). Adopt them when that version sent its
buckets to this destination: nothing is sent twice (if several outputs shared the directory,
buckets that version gave another one are not sent here either). Or start the destination from
its backfill instead: maas-usage state reset --destination ID. Each destination decides once;
checkpoints.json can be deleted when every one has.

Example:
  maas-usage state adopt --destination otlp-1a2b3c4d5e6f --state-dir /var/lib/maas-usage";

const RUNTIME_DIR_HELP: &str = "The runtime directory whose credential rejections to read or forget (those recorded while the state directory could not take them), as a blocked run's E! line and `state show` name it: the packaged units' is /run/maas-usage/maas-usage [default: $XDG_RUNTIME_DIR/maas-usage, else maas-usage-<uid> in $TMPDIR]";

#[derive(Subcommand, Debug)]
pub enum StateAction {
    /// List every period-mode destination with its checkpoints (the end of the last bucket
    /// delivered to it, per series), and the credential rejections in force.
    Show {
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_name = "DIR", help = RUNTIME_DIR_HELP)]
        runtime_dir: Option<PathBuf>,
    },
    /// Forget checkpoints so their buckets are emitted again (from `backfill` back), or with
    /// --auth the credential rejections that keep runs from calling for five minutes.
    #[command(after_help = STATE_RESET_HELP)]
    Reset {
        /// Only this destination's checkpoints (an id from `state show`, such as
        /// influx-stdout or otlp-1a2b3c4d5e6f); every destination's without it.
        #[arg(long, value_name = "ID")]
        destination: Option<String>,
        /// A query name (all its series) or a full series id from `state show`; all without it.
        #[arg(long, value_name = "NAME")]
        series: Option<String>,
        /// Forget credential rejections instead (after fixing the credentials; those in the
        /// per-user runtime directory too): the next run calls at once instead of waiting out
        /// the five minutes. Also forgets records that cannot be read, which block every call.
        #[arg(long, conflicts_with_all = ["series", "destination"])]
        auth: bool,
        /// Accept the coordination engine (Redis) as it is after it lost its state (restarted
        /// without persistence, FLUSHALL, a failover to a lagging replica): its period series
        /// are held back until then. Buckets the engine forgot are sent again from the
        /// backfill. Needs --spec.
        #[arg(long, requires = "spec", conflicts_with_all = ["series", "destination", "auth"])]
        engine: bool,
        /// The spec whose `coordination:` names the engine (with --engine, or with --auth to
        /// forget the rejections Redis holds for the fleet).
        #[arg(long, value_name = "FILE")]
        spec: Vec<PathBuf>,
        #[command(flatten)]
        state: StateArgs,
        #[arg(long, value_name = "DIR", requires = "auth", help = RUNTIME_DIR_HELP)]
        runtime_dir: Option<PathBuf>,
    },
    /// Let a destination go on from the checkpoints of an earlier version (checkpoints.json),
    /// which did not record the output they were for.
    #[command(after_help = STATE_ADOPT_HELP)]
    Adopt {
        /// The destination, as its runs' E! line or `state show` names it.
        #[arg(long, value_name = "ID")]
        destination: String,
        #[command(flatten)]
        state: StateArgs,
    },
}
