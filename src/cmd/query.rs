//! `maas-usage query`: one question from flags, answered as a table or JSON.

use std::sync::Arc;
use std::time::Instant;

use super::{
    connect_options, log_failures, open, parse_now, resolve_zone, run_stats, write_stdout,
    CALL_TIMEOUT,
};
use crate::cli::{QueryArgs, QueryFormat};
use crate::cloud::client::CallCounts;
use crate::cloud::credentials::Credentials;
use crate::emit::{self, Report};
use crate::error::Error;
use crate::log;
use crate::model::{InferType, ServiceType};
use crate::plan;
use crate::range::{self, Bound, RangeExpr};
use crate::spec::{Limits, QuerySpec, Spec};

/// `creds` overrides the environment (the demo passes the simulator's pair).
pub fn query(a: QueryArgs, creds: Option<Credentials>) -> Result<i32, Error> {
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
    let state = if creds.is_some() {
        None
    } else {
        super::open_state(a.cloud.state_dir.as_deref())
    };
    let conn = Arc::new(open(&opts, &limits, deadline, creds, state.as_ref())?);
    let collected = crate::collect::collect(
        &plan,
        conn.clone(),
        limits.concurrency,
        deadline,
        &crate::collect::never_stop,
    );
    log_failures(&collected);
    let report = Report {
        collected: &collected,
        stats: run_stats(&collected, &conn, CallCounts::default(), started),
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
    let local = collected
        .failures
        .iter()
        .all(|f| matches!(f.error, crate::cloud::client::ApiError::Local(_)));
    Ok(match (collected.failures.is_empty(), local) {
        (true, _) => 0,
        (false, true) => 2,
        (false, false) => 1,
    })
}
