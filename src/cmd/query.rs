//! `maas-usage query`: one question from flags, answered as a table or JSON. It is a one-query
//! spec built from the flags, through the same plan, collection and emitters as `run`.

use std::sync::Arc;
use std::time::Instant;

use super::error::{Error, Outcome};
use super::settings::{Flags, Settings};
use super::{log_failures, outcome_of, wiring};
use crate::cli::{QueryArgs, QueryFormat};
use crate::cloud::client::CallCounts;
use crate::collect;
use crate::deliver::sink::write_stdout;
use crate::domain::{Bound, RangeExpr};
use crate::emit::table::TableStyle;
use crate::emit::{self, Report};
use crate::log;
use crate::plan;
use crate::spec::{QuerySpec, Spec};

pub fn query(a: QueryArgs) -> Result<Outcome, Error> {
    let started = Instant::now();
    let timeout = crate::domain::range::parse_duration(&a.timeout)
        .map_err(|e| Error::Usage(format!("--timeout: {e}")))?;
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
    for st in &a.service_type {
        if !service_types.contains(st) {
            service_types.push(*st);
        }
    }

    let mut spec = Spec::default();
    let key_groups = a.api_keys.as_ref().map(|keys| {
        spec.key_groups.insert("selected".into(), keys.clone());
        vec!["selected".to_string()]
    });
    spec.queries.push(QuerySpec {
        name: "query".into(),
        clouds: None,
        range,
        service_types,
        infer_type: a.infer_type,
        key_groups,
        ips: a.ips.clone(),
        source: Default::default(),
    });
    spec.limits.timeout = timeout;
    let flags = Flags {
        cloud: Some(&a.cloud),
        state: Some(&a.state),
        now: Some(&a.now),
        timezone: a.timezone.as_deref(),
        output: None,
        plan_format: None,
    };
    let settings = Settings::from_process(&spec, flags)?;
    wiring::say_simulator(&settings);
    let plan = plan::build(&spec, settings.now(), &settings.zone)?;
    for w in &plan.warnings {
        log::warn!("{}", w);
    }

    let store = wiring::open_store(&settings.state)?;
    let conn = wiring::connect(settings.cloud(), deadline, &store)?;
    let conn = Arc::new(conn);
    let setup = super::run::setup(&conn, &spec, None);
    let run = collect::Run {
        concurrency: spec.limits.concurrency,
        deadline,
        stop: &collect::never_stop,
    };
    let collection = collect::collect(&plan, &setup, &run);
    log_failures(&collection);
    let report = Report {
        cloud: None,
        collection: &collection,
        stats: wiring::run_stats(&collection, Some(&conn), CallCounts::default(), started),
        region: &conn.region,
        project_id: &conn.project_id,
        zone: &plan.zone,
        now: plan.now,
        origin: &wiring::origin(&settings.host_name, "query", conn.account_id.clone()),
        totals: &Default::default(),
    };
    let text = match a.format {
        QueryFormat::Table => {
            let style = TableStyle {
                unicode: settings.utf8_terminal && !a.ascii,
                name_query: false,
            };
            emit::table::render(&report, a.raw, style)
        }
        QueryFormat::Json => emit::json::render(&report),
    };
    write_stdout(&text)?;
    // A question with several service types is answered only when every one is.
    Ok(match outcome_of(&collection) {
        Outcome::Done if !collection.failures.is_empty() => Outcome::NothingCollected,
        other => other,
    })
}
