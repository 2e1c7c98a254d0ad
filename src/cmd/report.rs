//! `maas-usage report`: the month's Cloud Eye figures per local day (per model, and per model and
//! API key) and ShowStatistics' month total, collected through the ordinary plan and collection
//! (daily period buckets read by the hour: a few calls a month), priced and summed by
//! `spend::ledger`, rendered by `generate::report`. The seam to the collection is
//! [`rows_of`]: the only code that reads collected Cloud Eye series.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Datelike, NaiveDate, Utc};

use super::error::{Error, Outcome};
use super::run::load_spec;
use super::settings::{Flags, Settings};
use super::{log_failures, outcome_of, wiring};
use crate::cli::ReportArgs;
use crate::cloud::CloudSettings;
use crate::collect::{self, CloudEyeSeries, Collection};
use crate::deliver::sink::Sink;
use crate::domain::cloud_eye;
use crate::domain::range::{Bound, PeriodSpec, DAY_MS, RETENTION_MS};
use crate::domain::{InferType, RangeExpr, ServiceType};
use crate::generate::report::{render, Page};
use crate::log::{self, Style};
use crate::plan::{self, cloud_eye::QueryPlan};
use crate::spec::{CloudEyeQuery, QuerySpec, Source, Spec};
use crate::spend::budget::Period;
use crate::spend::ledger::{summarize, Row, Usage};
use crate::time::start_of_day;

const MODELS: &str = "report-models";
const KEYS: &str = "report-keys";
const MODELS_TODAY: &str = "report-models-today";
const KEYS_TODAY: &str = "report-keys-today";
const STATISTICS: &str = "report-statistics";
/// The Cloud Eye counts the report reads.
const METRICS: [&str; 5] = [
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "req_count",
    "req_count_error",
];

/// `YYYY-MM` -> its first day.
fn parse_month(s: &str) -> Result<NaiveDate, Error> {
    NaiveDate::parse_from_str(&format!("{}-01", s.trim()), "%Y-%m-%d").map_err(|_| {
        Error::Usage(format!(
            "--month `{s}` is not a month (YYYY-MM, e.g. 2026-11)"
        ))
    })
}

fn cloud_eye(name: &str, range: RangeExpr, by_key: bool) -> QuerySpec {
    QuerySpec {
        name: name.into(),
        clouds: None,
        range,
        service_types: Vec::new(),
        infer_type: InferType::default(),
        key_groups: None,
        ips: None,
        source: Source::CloudEye(CloudEyeQuery {
            by_key,
            models: None,
            api_keys: None,
            metrics: METRICS
                .iter()
                .filter_map(|m| cloud_eye::metric(m))
                .collect(),
        }),
    }
}

/// The report's own queries: daily buckets of the month from its first day (a period query
/// whose checkpoint is the month's start), today's part when the month is this one, and
/// ShowStatistics' month total.
fn report_spec(spec: &Spec, first: NaiveDate, last: NaiveDate, today: bool) -> Spec {
    let daily = RangeExpr::Period(PeriodSpec {
        every_ms: DAY_MS,
        delay_ms: 0,
        backfill_ms: RETENTION_MS,
    });
    let mut queries = vec![
        cloud_eye(MODELS, daily.clone(), false),
        cloud_eye(KEYS, daily, true),
    ];
    if today {
        queries.push(cloud_eye(MODELS_TODAY, RangeExpr::Today, false));
        queries.push(cloud_eye(KEYS_TODAY, RangeExpr::Today, true));
    }
    queries.push(QuerySpec {
        name: STATISTICS.into(),
        clouds: None,
        range: RangeExpr::Between {
            from: Bound::Date(first),
            to: Some(Bound::Date(last)),
        },
        service_types: vec![ServiceType::Preset, ServiceType::MyService],
        infer_type: InferType::default(),
        key_groups: None,
        ips: None,
        source: Source::Statistics,
    });
    Spec {
        cloud: spec.cloud.clone(),
        timezone: spec.timezone.clone(),
        names: spec.names.clone(),
        limits: spec.limits.clone(),
        queries,
        ..Spec::default()
    }
}

/// The rows of the month from collected Cloud Eye series (each a local day, or today's part).
pub fn rows_of<'a>(
    series: impl IntoIterator<Item = &'a CloudEyeSeries>,
    tz: &chrono_tz::Tz,
    month: (i32, u32),
) -> (Vec<Row>, Vec<Row>) {
    let (mut models, mut keys) = (Vec::new(), Vec::new());
    for s in series {
        let Some(start) = chrono::DateTime::from_timestamp_millis(s.window.start_ms) else {
            continue;
        };
        let day = start.with_timezone(tz).date_naive();
        if (day.year(), day.month()) != month {
            continue;
        }
        let count = |m: &str| s.count(m).unwrap_or(0);
        let row = Row {
            day,
            start_ms: s.window.start_ms,
            end_ms: s.window.end_ms,
            model: s.key.model.name.clone(),
            model_id: s.key.model.id.clone(),
            api_key: s.key.api_key.as_ref().map(|k| k.name.clone()),
            usage: Usage {
                input: count("prompt_tokens"),
                output: count("completion_tokens"),
                total: count("total_tokens"),
                requests: count("req_count"),
                errors: count("req_count_error"),
            },
        };
        match row.api_key {
            Some(_) => keys.push(row),
            None => models.push(row),
        }
    }
    (models, keys)
}

/// The report's queries, planned (the daily buckets from the month's start) and collected; and
/// the project they are of.
fn collect_month(
    spec: &Spec,
    cloud: &CloudSettings,
    settings: &Settings,
    rspec: &Spec,
    start_ms: i64,
    started: Instant,
) -> Result<(Collection, String), Error> {
    let now = settings.now();
    let store = wiring::open_store(&settings.state)?;
    let deadline = started + spec.limits.timeout.max(std::time::Duration::from_secs(60));
    let conn = Arc::new(wiring::connect(cloud, deadline, &store)?);
    // The report's own checkpoints, as its plan names them.
    let scope = rspec.checkpoint_scope();
    let checkpoints: BTreeMap<String, i64> = [MODELS, KEYS]
        .iter()
        .map(|q| (QueryPlan::checkpoint_id(&scope, q), start_ms))
        .collect();
    let affordable = conn
        .client
        .available_calls(deadline.saturating_duration_since(Instant::now()));
    let plan = plan::build_with(rspec, now, &settings.zone, &checkpoints, affordable)?;
    let cache = wiring::discovery_cache(&store, &conn, cloud.name.as_deref());
    let setup = collect::Setup {
        statistics: conn.clone(),
        cloud_eye: collect::CloudEyeSetup {
            api: conn.clone(),
            cache: cache.as_ref().map(|c| c as &dyn collect::DiscoveryCache),
            pinned: &spec.names,
            max_series: spec.limits.max_series,
            discovery_max_age: std::time::Duration::from_secs(3600),
        },
    };
    let run = collect::Run {
        concurrency: spec.limits.concurrency,
        deadline,
        stop: &collect::never_stop,
    };
    let collected = collect::collect(&plan, &setup, &run);
    Ok((collected, conn.project_id.clone()))
}

/// The cloud a report is of: the spec's one (`cloud:`), or with `clouds` the one `name` names;
/// its index among the settings' clouds, and its spec.
fn one_cloud(spec: &Spec, name: Option<&str>) -> Result<(usize, Spec), Error> {
    let clouds = spec.per_cloud();
    let names: Vec<&str> = clouds.iter().filter_map(|(n, _)| *n).collect();
    let found = clouds
        .iter()
        .position(|(n, _)| *n == name)
        .or_else(|| (name.is_none() && names.is_empty()).then_some(0));
    match found {
        Some(i) => Ok((i, clouds[i].1.clone())),
        None if names.is_empty() => Err(Error::Usage(
            "--cloud names an entry of `clouds`, and this spec has one `cloud`".into(),
        )),
        None => Err(Error::Usage(format!(
            "this spec has several clouds: name the one to report on with --cloud ({})",
            names.join(", ")
        ))),
    }
}

pub fn report(a: ReportArgs) -> Result<Outcome, Error> {
    log::set_style(Style::Telegraf);
    let started = Instant::now();
    let spec = load_spec(&a.spec)?;
    let flags = Flags {
        cloud: Some(&a.cloud),
        state: Some(&a.state),
        now: Some(&a.now),
        ..Flags::default()
    };
    let settings = Settings::from_process(&spec, flags)?;
    wiring::say_simulator(&settings);
    let (now, tz) = (settings.now(), settings.zone.tz);
    let today = now.with_timezone(&tz).date_naive();
    let first = match &a.month {
        Some(m) => parse_month(m)?,
        None => today.with_day(1).unwrap_or(today),
    };
    let start_ms = start_of_day(first, &tz).timestamp_millis();
    let (_, end_ms) = Period::Month.bounds(start_ms, &tz);
    if start_ms > now.timestamp_millis() {
        return Err(Error::Usage(format!(
            "--month {}: it has not started yet",
            first.format("%Y-%m")
        )));
    }
    let current = end_ms > now.timestamp_millis();
    let last = match current {
        true => today,
        false => chrono::DateTime::from_timestamp_millis(end_ms - 1)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive(),
    };
    let (index, base) = one_cloud(&spec, a.cloud_name.as_deref())?;
    let rspec = report_spec(&base, first, last, current);
    let cloud = &settings.clouds[index];
    let (collected, project) = collect_month(&spec, cloud, &settings, &rspec, start_ms, started)?;
    for w in &collected.warnings {
        log::warn!("{}", w);
    }
    log_failures(&collected);
    let outcome = outcome_of(&collected);
    if collected.cloud_eye().next().is_none() {
        return Ok(match outcome {
            Outcome::Done => Outcome::NothingCollected,
            other => other,
        });
    }
    let (models, keys) = rows_of(collected.cloud_eye(), &tz, (first.year(), first.month()));
    let schedule = spec
        .prices
        .as_ref()
        .map(|p| p.schedule(|d| start_of_day(d, &tz).timestamp_millis()));
    let summary = summarize(
        &models,
        &keys,
        schedule.as_ref(),
        &spec.key_groups,
        &spec.budgets,
    );
    let statistics_tokens = collected
        .statistics()
        .filter(|s| s.key.query == STATISTICS)
        .map(|s| s.usage.total_tokens)
        .reduce(|a, b| a.saturating_add(b));
    let mut notes = Vec::new();
    let horizon = now.timestamp_millis() - RETENTION_MS;
    if start_ms < horizon {
        let since = chrono::DateTime::from_timestamp_millis(horizon).unwrap_or_default();
        notes.push(format!(
            "Cloud Eye keeps 30 days: what came before {} is gone, and the report starts at the next local midnight, so this month is partial (ShowStatistics is asked from the same horizon).",
            since.with_timezone(&tz).format("%Y-%m-%d %H:%M")
        ));
    }
    if current {
        notes.push(format!(
            "The month is in progress: figures up to {}.",
            now.with_timezone(&tz).format("%Y-%m-%d %H:%M")
        ));
    }
    let page = Page {
        month: &first.format("%Y-%m").to_string(),
        zone: &settings.zone.name,
        project: &project,
        currency: spec.prices.as_ref().map(|p| p.currency),
        summary: &summary,
        statistics_tokens,
        notes,
        generated: Utc::now().with_timezone(&tz).to_rfc3339(),
    };
    if !summary.unpriced.is_empty() && spec.prices.is_some() {
        log::warn!(
            "no price for {}: no cost for them",
            summary.unpriced.join(", ")
        );
    }
    Sink::new(a.output).write(&render(&page))?;
    Ok(outcome)
}
