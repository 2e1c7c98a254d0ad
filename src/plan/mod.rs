//! Spec + now -> each source's part of the run: ShowStatistics' series and deduplicated calls
//! (`statistics`), Cloud Eye's aligned windows and call spans (`cloud_eye`).
//!
//! Pure: `plan` prints this without credentials or network, and `run` executes exactly it.

pub mod cloud_eye;
pub mod statistics;

use chrono::{DateTime, Utc};

use std::sync::Arc;

use crate::domain::RangeError;
use crate::spec::Spec;
use crate::spend::groups::Groups;
use crate::time;
use crate::time::period::Checkpoints;
use crate::time::zone::Zone;

/// How far behind a period-mode series is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodStatus {
    pub id: String,
    /// Settled buckets not emitted yet.
    pub pending: usize,
    /// Of those, planned in this run.
    pub planned: usize,
    pub oldest_pending: Option<i64>,
}

/// One source's part of a plan.
#[derive(Clone, Debug)]
pub enum SourcePlan {
    Statistics(statistics::Plan),
    CloudEye(cloud_eye::Plan),
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub zone: Zone,
    pub now: DateTime<Utc>,
    pub warnings: Vec<String>,
    /// The ShowStatistics period series (Cloud Eye's say theirs in their own part).
    pub periods: Vec<PeriodStatus>,
    /// Each source's part, in collection order.
    pub sources: Vec<SourcePlan>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("queries[{index}] ({query}): {error}")]
    Range {
        index: usize,
        query: String,
        error: RangeError,
    },
    #[error("queries[{index}] ({query}): key group `{group}` is not defined in key_groups")]
    UnknownKeyGroup {
        index: usize,
        query: String,
        group: String,
    },
}

pub fn build(spec: &Spec, now: DateTime<Utc>, zone: &Zone) -> Result<Plan, PlanError> {
    build_with(
        spec,
        now,
        zone,
        &Checkpoints::new(),
        spec.limits.requests_per_minute as usize,
    )
}

/// What a run, `plan` and `validate` say of a window that ended before the retention horizon.
pub const BEYOND_RETENTION: &str = "this window lies entirely beyond the 30-day retention: nothing is left to read, so it makes no call and emits nothing (a zero would overwrite what was stored for it)";

/// Plans every query, each by its source, in spec order; period-mode series get their settled,
/// unemitted buckets after `checkpoints`, oldest first. ShowStatistics' take no more calls than
/// the run's budget (`requests_per_minute`, less the calls of the other series and of
/// `affordable`, what the shared budget still allows), shared round-robin so no series
/// starves; Cloud Eye's are sized against its own budget at run time, once discovery says how
/// many series there are.
pub fn build_with(
    spec: &Spec,
    now: DateTime<Utc>,
    zone: &Zone,
    checkpoints: &Checkpoints,
    affordable: usize,
) -> Result<Plan, PlanError> {
    // The API's resolution is the millisecond; truncating here keeps every window stable.
    let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let scope = spec.checkpoint_scope();
    let region = scope.as_str();
    let mut warnings = Vec::new();
    let mut periods = Vec::new();
    // Series whose checkpoint is later than now: what, and the checkpoint.
    let mut ahead: Vec<(String, i64)> = Vec::new();
    let mut stats = statistics::Builder::new(zone, now, region);
    let mut cloud_eye = cloud_eye::Plan::default();
    let schedule = spec
        .prices
        .as_ref()
        .map(|p| Arc::new(p.schedule(|d| time::start_of_day(d, &zone.tz).timestamp_millis())));
    for (qi, q) in spec.queries.iter().enumerate() {
        match q.cloud_eye() {
            Some(ce) => {
                let (mut m, cp) = cloud_eye::plan_query(qi, q, ce, now, zone, region, checkpoints)?;
                m.schedule = schedule.clone();
                m.grouping = spec.grouped.get(&q.name).map(|g| cloud_eye::Grouping {
                    per_model: g.per_model,
                    groups: Arc::new(Groups::new(&spec.key_groups)),
                });
                ahead.extend(cp.map(|cp| (format!("query {}", q.name), cp)));
                warnings.extend(m.warnings.iter().cloned());
                cloud_eye.queries.push(m);
            }
            None => stats.query(qi, q, spec, checkpoints, &mut warnings)?,
        }
    }
    for m in budget_queries(spec, now, zone, region, checkpoints)? {
        let mut m = m;
        m.schedule = schedule.clone();
        warnings.extend(m.warnings.iter().cloned());
        cloud_eye.queries.push(m);
    }
    let budget = (spec.limits.requests_per_minute as usize).min(affordable);
    let stats = stats.finish(budget, &mut warnings, &mut periods, &mut ahead);
    warnings.extend(ahead_warning(&ahead, now, zone));
    Ok(Plan {
        zone: zone.clone(),
        now,
        warnings,
        periods,
        sources: vec![
            SourcePlan::Statistics(stats),
            SourcePlan::CloudEye(cloud_eye),
        ],
    })
}

/// The plan's own Cloud Eye queries for the spec's budgets: for each period (month, day) and
/// kind of scope (models; key groups, which read keys), one window from the period's start to
/// now, read like any other (coarse periods for its whole days, fine ones for today, and within
/// the Cloud Eye budget); its series are summed into the budgets' use, never emitted.
fn budget_queries(
    spec: &Spec,
    now: DateTime<Utc>,
    zone: &Zone,
    region: &str,
    checkpoints: &Checkpoints,
) -> Result<Vec<cloud_eye::QueryPlan>, PlanError> {
    use crate::domain::cloud_eye::{metric, COMPLETION_TOKENS, PROMPT_TOKENS};
    use crate::spend::budget::{Period, Scope};
    let groups = Arc::new(Groups::new(&spec.key_groups));
    let mut out = Vec::new();
    for period in [Period::Month, Period::Day] {
        for by_key in [false, true] {
            let budgets: Vec<_> = spec
                .budgets
                .iter()
                .filter(|b| b.period == period && matches!(b.scope, Scope::KeyGroup(_)) == by_key)
                .cloned()
                .collect();
            if budgets.is_empty() {
                continue;
            }
            let ce = crate::spec::CloudEyeQuery {
                by_key,
                models: None,
                api_keys: None,
                metrics: [PROMPT_TOKENS, COMPLETION_TOKENS]
                    .iter()
                    .filter_map(|m| metric(m))
                    .collect(),
            };
            let q = crate::spec::QuerySpec {
                name: format!(
                    "budgets:{}:{}",
                    period.name(),
                    if by_key { "keys" } else { "models" }
                ),
                clouds: None,
                range: match period {
                    Period::Month => crate::domain::RangeExpr::ThisMonth,
                    Period::Day => crate::domain::RangeExpr::Today,
                },
                service_types: Vec::new(),
                infer_type: Default::default(),
                key_groups: None,
                ips: None,
                source: crate::spec::Source::CloudEye(ce.clone()),
            };
            let (mut m, _) =
                cloud_eye::plan_query(usize::MAX, &q, &ce, now, zone, region, checkpoints)?;
            let now_ms = now.timestamp_millis();
            let bounds = period.bounds(now_ms, &zone.tz);
            // The rate so far is the use read over the time it covers: the window's aligned
            // end, not now (an hour-aligned month read at 10:50 covers up to 10:00).
            let covered_ms = m.windows.last().map_or(now_ms, |w| w.end_ms);
            m.budgets = Some(cloud_eye::BudgetPlan {
                budgets,
                bounds,
                now_ms: covered_ms.clamp(bounds.0, now_ms),
                groups: groups.clone(),
            });
            out.push(m);
        }
    }
    Ok(out)
}

/// One warning for every period series whose checkpoint (`ahead`: what, and the checkpoint) is
/// later than now.
fn ahead_warning(ahead: &[(String, i64)], now: DateTime<Utc>, zone: &Zone) -> Option<String> {
    let (what, cp) = ahead.iter().max_by_key(|a| a.1)?;
    Some(format!(
        "checkpoints later than now ({}) hold {} period series (the latest: {what}, {}): the clock went back, or an earlier run used a later --now. A checkpoint never moves back, so they emit nothing until the clock passes it, and no bucket is sent or counted twice; `maas-usage state reset --series NAME` starts one over from its backfill (sending it again)",
        time::fmt_local(now.timestamp_millis(), &zone.tz),
        ahead.len(),
        time::fmt_local(*cp, &zone.tz)
    ))
}

impl Plan {
    /// The ShowStatistics part (empty when the spec has no such query).
    pub fn statistics(&self) -> &statistics::Plan {
        static EMPTY: statistics::Plan = statistics::Plan {
            series: Vec::new(),
            calls: Vec::new(),
        };
        self.sources
            .iter()
            .find_map(|s| match s {
                SourcePlan::Statistics(p) => Some(p),
                _ => None,
            })
            .unwrap_or(&EMPTY)
    }

    /// The Cloud Eye part (no query when the spec has none).
    pub fn cloud_eye(&self) -> &cloud_eye::Plan {
        static EMPTY: cloud_eye::Plan = cloud_eye::Plan {
            queries: Vec::new(),
        };
        self.sources
            .iter()
            .find_map(|s| match s {
                SourcePlan::CloudEye(p) => Some(p),
                _ => None,
            })
            .unwrap_or(&EMPTY)
    }

    /// What a run is asked for, in the terms of "0 of N": each ShowStatistics series and each
    /// Cloud Eye query (its series are found at run time).
    pub fn planned(&self) -> usize {
        self.sources
            .iter()
            .map(|s| match s {
                SourcePlan::Statistics(p) => p.series.len(),
                SourcePlan::CloudEye(p) => p.queries.len(),
            })
            .sum()
    }

    /// The plan for people: every ShowStatistics series and call, the period series, the
    /// warnings, then the Cloud Eye queries.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let stats = self.statistics();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan at {} ({}): {} series, {} calls ({} before deduplication)",
            time::fmt_local(self.now.timestamp_millis(), &self.zone.tz),
            self.zone.name,
            stats.series.len(),
            stats.calls.len(),
            stats.calls_before_dedup()
        );
        statistics::describe(stats, &self.periods, &self.zone, &mut out);
        for w in &self.warnings {
            let _ = writeln!(out, "\nwarning: {w}");
        }
        cloud_eye::describe(&self.cloud_eye().queries, &self.zone, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::range::DAY_MS;
    use crate::domain::{InferType, RangeExpr, ServiceType};
    use crate::spec::QuerySpec;
    use proptest::prelude::*;

    fn query(name: &str, range: RangeExpr, groups: Option<Vec<&str>>) -> QuerySpec {
        QuerySpec {
            name: name.into(),
            clouds: None,
            range,
            service_types: vec![ServiceType::Preset],
            infer_type: InferType::RealTime,
            key_groups: groups.map(|g| g.into_iter().map(String::from).collect()),
            ips: None,
            source: Default::default(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-21T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn identical_calls_are_made_once() {
        let spec = Spec {
            queries: vec![
                query("a", RangeExpr::LastDays(7), None),
                query("b", RangeExpr::LastDays(7), None),
            ],
            ..Default::default()
        };
        let plan = build(&spec, now(), &Zone::utc()).unwrap();
        assert_eq!(plan.statistics().series.len(), 2);
        assert_eq!(plan.statistics().calls.len(), 1);
        assert_eq!(plan.statistics().calls[0].used_by, vec![0, 1]);
        assert_eq!(plan.statistics().calls_before_dedup(), 2);
    }

    #[test]
    fn series_multiply_by_service_type_and_key_group() {
        let mut spec = Spec::default();
        spec.key_groups.insert("a".into(), vec!["k1".into()]);
        spec.key_groups.insert("web".into(), vec!["".into()]);
        let mut q = query("q", RangeExpr::LastDays(45), Some(vec!["a", "web"]));
        q.service_types = vec![ServiceType::Preset, ServiceType::CustomEndpoint];
        spec.queries = vec![q];
        let plan = build(&spec, now(), &Zone::utc()).unwrap();
        assert_eq!(plan.statistics().series.len(), 4);
        assert_eq!(
            plan.statistics().calls.len(),
            4,
            "one call each, clamped to the retention"
        );
        assert_eq!(plan.warnings.len(), 1, "one warning per query");
        let body = String::from_utf8(plan.statistics().calls[0].body.to_vec()).unwrap();
        assert!(body.contains(r#""api_keys":["k1"]"#), "{body}");
    }

    #[test]
    fn unknown_key_group_is_an_error() {
        let spec = Spec {
            queries: vec![query("q", RangeExpr::Today, Some(vec!["ghost"]))],
            ..Default::default()
        };
        assert!(matches!(
            build(&spec, now(), &Zone::utc()),
            Err(PlanError::UnknownKeyGroup { .. })
        ));
    }

    fn between(from: &str, to: Option<&str>) -> RangeExpr {
        RangeExpr::Between {
            from: from.parse().unwrap(),
            to: to.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn a_window_before_the_retention_is_queried_from_the_horizon() {
        let zone = Zone {
            name: "Asia/Shanghai".into(),
            tz: chrono_tz::Asia::Shanghai,
        };
        let mut q = query("old", between("0001-01-01", None), None);
        q.service_types = vec![ServiceType::Preset, ServiceType::MyService];
        let spec = Spec {
            queries: vec![q, query("d45", RangeExpr::LastDays(45), None)],
            ..Default::default()
        };
        let plan = build(&spec, now(), &zone).unwrap();
        let horizon = now().timestamp_millis() - crate::domain::range::RETENTION_MS;
        assert_eq!(
            plan.statistics().calls.len(),
            2,
            "one call per service type, shared"
        );
        for s in &plan.statistics().series {
            assert_eq!(s.window.start_ms, horizon);
            assert_eq!(s.window.end_ms, now().timestamp_millis());
            assert_eq!(s.calls.len(), 1);
            assert_eq!(plan.statistics().calls[s.calls[0]].start_ms, horizon);
        }
        assert_eq!(
            plan.warnings,
            vec![
                "query old: the first 739726.4 days of this window are older than the 30-day retention and read as zero; it is queried from 2026-04-21 10:00:00".to_string(),
                "query d45: the first 15 days of this window are older than the 30-day retention and read as zero; it is queried from 2026-04-21 10:00:00".to_string(),
            ]
        );
        assert!(plan.describe().contains("2 calls (3 before deduplication)"));
    }

    #[test]
    fn a_window_entirely_beyond_the_retention_makes_no_call_and_no_series() {
        let spec = Spec {
            queries: vec![
                query("jan", between("2026-01-01", Some("2026-01-31")), None),
                query("ancient", between("0001-01-01", Some("1970-01-02")), None),
            ],
            ..Default::default()
        };
        let plan = build(&spec, now(), &Zone::utc()).unwrap();
        assert!(plan.statistics().series.is_empty());
        assert!(plan.statistics().calls.is_empty());
        assert_eq!(
            plan.warnings,
            vec![
                format!("query jan: {BEYOND_RETENTION}"),
                format!("query ancient: {BEYOND_RETENTION}")
            ]
        );
        let text = plan.describe();
        assert!(text.contains("0 calls"), "{text}");
    }

    #[test]
    fn describe_survives_huge_rows_and_extreme_instants() {
        let spec = Spec {
            queries: vec![query("q", RangeExpr::LastDays(7), None)],
            ..Default::default()
        };
        let mut plan = build(&spec, now(), &Zone::utc()).unwrap();
        let SourcePlan::Statistics(stats) = &mut plan.sources[0] else {
            panic!("ShowStatistics first");
        };
        // A row wider than the formatter's width limit (u16::MAX) once panicked.
        stats.series[0].calls = vec![0; 40_000];
        stats.calls[0].start_ms = i64::MIN;
        stats.calls[0].end_ms = i64::MAX;
        stats.series[0].window.start_ms = -62_135_596_800_000; // 0001-01-01
        let text = plan.describe();
        assert!(text.contains("calls 1,1,1"), "{}", &text[..200]);
        assert!(text.contains(&i64::MIN.to_string()));
    }

    proptest! {
        #[test]
        fn every_series_segments_tile_its_window(days in 1u32..200, hours in 1u32..2000) {
            let spec = Spec {
                queries: vec![query("d", RangeExpr::LastDays(days), None), query("h", RangeExpr::LastHours(hours), None)],
                ..Default::default()
            };
            let plan = build(&spec, now(), &Zone::utc()).unwrap();
            let horizon = now().timestamp_millis() - crate::domain::range::RETENTION_MS;
            for s in &plan.statistics().series {
                prop_assert!(s.window.start_ms >= horizon, "clamped to the retention");
                prop_assert_eq!(s.calls.len(), 1);
                let mut at = s.window.start_ms;
                for &c in &s.calls {
                    let call = &plan.statistics().calls[c];
                    prop_assert_eq!(call.start_ms, at);
                    prop_assert!(call.end_ms - call.start_ms <= 30 * DAY_MS);
                    at = call.end_ms;
                }
                prop_assert_eq!(at, s.window.end_ms);
            }
        }
    }
}
