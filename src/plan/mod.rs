//! Spec + now -> every series and every call, with identical calls made once; Cloud Eye
//! queries get their aligned windows and call spans (`models`).
//!
//! Pure: `plan` prints this without credentials or network, and `run` executes exactly it.

pub mod models;

pub use models::ModelQuery;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{RangeError, RangeExpr, SeriesKey, Shape, StatsRequest, Window, ALL_KEYS};
use crate::spec::Spec;
use crate::time::period::{self, Checkpoints, Pending};
use crate::time::zone::Zone;
use crate::time::{self, Retained};

#[derive(Clone, Debug)]
pub struct PlannedSeries {
    pub key: SeriesKey,
    pub window: Window,
    /// Indices into `Plan::calls`, one per segment, in time order.
    pub calls: Vec<usize>,
    /// For a period-mode bucket, the checkpoint id of its series.
    pub period: Option<String>,
}

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

#[derive(Clone, Debug)]
pub struct PlannedCall {
    pub start_ms: i64,
    pub end_ms: i64,
    pub request: StatsRequest,
    /// The serialised body: signed and sent as is.
    pub body: Arc<[u8]>,
    /// Indices into `Plan::series` that use this call.
    pub used_by: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub series: Vec<PlannedSeries>,
    pub calls: Vec<PlannedCall>,
    pub zone: Zone,
    pub now: DateTime<Utc>,
    pub warnings: Vec<String>,
    pub periods: Vec<PeriodStatus>,
    /// The Cloud Eye queries (their series are found at run time).
    pub models: Vec<ModelQuery>,
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

/// One series before its calls are planned.
struct Pre {
    key: SeriesKey,
    keys: Option<Vec<String>>,
    ips: Option<Vec<String>>,
}

impl Plan {
    /// Adds a series for `window` with one call per segment of `segments` (none for a window
    /// beyond the retention: it reads as zero without asking), reusing identical calls.
    fn add(
        &mut self,
        by_body: &mut HashMap<Arc<[u8]>, usize>,
        pre: &Pre,
        window: Window,
        segments: Vec<(i64, i64)>,
        period: Option<String>,
    ) {
        let si = self.series.len();
        let mut calls = Vec::new();
        for (s, e) in segments {
            let mut req = StatsRequest::new(pre.key.service_type, pre.key.infer_type, s, e);
            req.timezone = Some(self.zone.name.clone());
            req.api_keys = pre.keys.clone();
            req.ips = pre.ips.clone();
            let body: Arc<[u8]> = req.to_bytes().into();
            let ci = *by_body.entry(body.clone()).or_insert_with(|| {
                self.calls.push(PlannedCall {
                    start_ms: s,
                    end_ms: e,
                    request: req,
                    body,
                    used_by: Vec::new(),
                });
                self.calls.len() - 1
            });
            self.calls[ci].used_by.push(si);
            calls.push(ci);
        }
        self.series.push(PlannedSeries {
            key: pre.key.clone(),
            window,
            calls,
            period,
        });
    }
}

/// Plans every series; period-mode series get their settled, unemitted buckets after
/// `checkpoints`, oldest first, within the run's call budget (`requests_per_minute`, less the
/// calls of the other series and of `affordable`, what the shared budget still allows), shared
/// round-robin so no series starves.
pub fn build_with(
    spec: &Spec,
    now: DateTime<Utc>,
    zone: &Zone,
    checkpoints: &Checkpoints,
    affordable: usize,
) -> Result<Plan, PlanError> {
    // The API's resolution is the millisecond; truncating here keeps every window stable.
    let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let mut plan = Plan {
        series: Vec::new(),
        calls: Vec::new(),
        zone: zone.clone(),
        now,
        warnings: Vec::new(),
        periods: Vec::new(),
        models: Vec::new(),
    };
    let scope = spec.checkpoint_scope();
    let region = scope.as_str();
    let mut by_body: HashMap<Arc<[u8]>, usize> = HashMap::new();
    let mut periodic: Vec<(Pre, String, Pending)> = Vec::new();
    // Series whose checkpoint is later than now: what, and the checkpoint.
    let mut ahead: Vec<(String, i64)> = Vec::new();
    for (qi, q) in spec.queries.iter().enumerate() {
        if let Some(ce) = q.cloud_eye() {
            let (m, cp) = models::plan_query(qi, q, ce, now, zone, region, checkpoints)?;
            ahead.extend(cp.map(|cp| (format!("query {}", q.name), cp)));
            plan.warnings.extend(m.warnings.iter().cloned());
            plan.models.push(m);
            continue;
        }
        let groups: Vec<(String, Option<Vec<String>>)> = match &q.key_groups {
            None => vec![(ALL_KEYS.to_string(), None)],
            Some(names) => names
                .iter()
                .map(|g| match spec.key_groups.get(g) {
                    Some(keys) => Ok((g.clone(), Some(keys.clone()))),
                    None => Err(PlanError::UnknownKeyGroup {
                        index: qi,
                        query: q.name.clone(),
                        group: g.clone(),
                    }),
                })
                .collect::<Result<_, _>>()?,
        };
        // A window is clamped to the retention horizon: older data does not exist, and asking
        // for it would cost calls (one per 30 days) that can only answer zero.
        let window = match &q.range {
            RangeExpr::Period(_) => None,
            r => {
                let w = time::resolve(r, now, &zone.tz).map_err(|error| PlanError::Range {
                    index: qi,
                    query: q.name.clone(),
                    error,
                })?;
                Some(match time::retain(w, now.timestamp_millis()) {
                    Retained::Whole(w) => (w, time::segments(w.start_ms, w.end_ms)),
                    Retained::Clamped {
                        window,
                        lost_ms,
                        horizon_ms,
                    } => {
                        plan.warnings.push(format!(
                            "query {}: the first {} days of this window are older than the 30-day retention and read as zero; it is queried from {}",
                            q.name,
                            time::fmt_days(lost_ms),
                            time::fmt_local(horizon_ms, &zone.tz)
                        ));
                        (window, time::segments(window.start_ms, window.end_ms))
                    }
                    Retained::Beyond => {
                        // Nothing is left to read, and a zero stamped with the window's end
                        // would overwrite what an earlier run stored for the same window.
                        plan.warnings
                            .push(format!("query {}: {BEYOND_RETENTION}", q.name));
                        continue;
                    }
                })
            }
        };
        for st in &q.service_types {
            for (group, keys) in &groups {
                let pre = Pre {
                    key: SeriesKey {
                        query: q.name.clone(),
                        service_type: *st,
                        infer_type: q.infer_type,
                        key_group: group.clone(),
                    },
                    keys: keys.clone(),
                    ips: q.ips.clone(),
                };
                match (&q.range, &window) {
                    (RangeExpr::Period(p), _) => {
                        let id = pre.key.checkpoint_id(region);
                        let pending = period::pending(
                            p,
                            &zone.tz,
                            now.timestamp_millis(),
                            checkpoints.get(&id).copied(),
                        );
                        periodic.push((pre, id, pending));
                    }
                    (_, Some((w, segments))) => {
                        plan.add(&mut by_body, &pre, *w, segments.clone(), None)
                    }
                    (_, None) => {}
                }
            }
        }
    }

    // Round-robin over the period series, oldest bucket first, within the remaining budget.
    let budget = (spec.limits.requests_per_minute as usize)
        .min(affordable)
        .saturating_sub(plan.calls.len());
    let mut taken = vec![0usize; periodic.len()];
    let mut left = budget;
    let mut round = 0;
    while left > 0 {
        let mut any = false;
        for (i, (_, _, pending)) in periodic.iter().enumerate() {
            if left > 0 && round < pending.buckets.len() {
                taken[i] += 1;
                left -= 1;
                any = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    for ((pre, id, pending), n) in periodic.into_iter().zip(taken) {
        for &(start_ms, end_ms) in &pending.buckets[..n] {
            plan.add(
                &mut by_body,
                &pre,
                Window {
                    start_ms,
                    end_ms,
                    shape: Shape::Bucket,
                },
                time::segments(start_ms, end_ms),
                Some(id.clone()),
            );
        }
        if n < pending.buckets.len() {
            plan.warnings.push(format!(
                "{}: {} settled buckets pending; this run emits the oldest {n} (the run's call budget is limits.requests_per_minute) and the rest follow in the next runs",
                pre.key,
                pending.buckets.len()
            ));
        }
        ahead.extend(pending.ahead.map(|cp| (pre.key.to_string(), cp)));
        if pending.lost_ms > 0 {
            plan.warnings.push(format!(
                "{}: {:.1} hours of buckets were never emitted and are now beyond the 30-day retention: they are lost",
                pre.key,
                pending.lost_ms as f64 / 3_600_000.0
            ));
        }
        plan.periods.push(PeriodStatus {
            id,
            pending: pending.buckets.len(),
            planned: n,
            oldest_pending: pending.buckets.first().map(|b| b.0),
        });
    }
    plan.warnings.extend(ahead_warning(&ahead, now, zone));
    Ok(plan)
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
    /// Calls the series need in total, before deduplication.
    pub fn calls_before_dedup(&self) -> usize {
        self.series.iter().map(|s| s.calls.len()).sum()
    }

    /// The plan for people: every series, every call with its window (local time and epoch
    /// ms) and body, and which calls serve several series.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let tz = &self.zone.tz;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan at {} ({}): {} series, {} calls ({} before deduplication)",
            time::fmt_local(self.now.timestamp_millis(), tz),
            self.zone.name,
            self.series.len(),
            self.calls.len(),
            self.calls_before_dedup()
        );
        let rows: Vec<[String; 6]> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                [
                    format!("{}", i + 1),
                    s.key.query.clone(),
                    s.key.service_type.name().to_string(),
                    s.key.infer_type.name().to_string(),
                    s.key.key_group.clone(),
                    format!(
                        "{} ~ {}  {}",
                        time::fmt_local(s.window.start_ms, tz),
                        time::fmt_local(s.window.end_ms, tz),
                        if s.calls.is_empty() {
                            "no call (an empty window)".to_string()
                        } else {
                            format!(
                                "calls {}",
                                s.calls
                                    .iter()
                                    .map(|c| (c + 1).to_string())
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )
                        }
                    ),
                ]
            })
            .collect();
        let header = [
            "#",
            "query",
            "service_type",
            "infer_type",
            "key_group",
            "window",
        ]
        .map(String::from);
        let widths: Vec<usize> = (0..6)
            .map(|c| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = writeln!(out, "\nSeries:");
        for r in [&header].into_iter().chain(rows.iter()) {
            // Padded by hand: `{:<w$}` panics on widths above u16::MAX (a row with thousands
            // of calls).
            let mut line = String::new();
            for c in 0..6 {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(&r[c]);
                let pad = widths[c].saturating_sub(r[c].chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "  {}", line.trim_end());
        }
        let _ = writeln!(out, "\nCalls:");
        for (i, c) in self.calls.iter().enumerate() {
            let users = c
                .used_by
                .iter()
                .map(|s| (s + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let shared = if c.used_by.len() > 1 {
                " (one call, shared)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>3}  {} ~ {}  [{}, {})  series {users}{shared}",
                i + 1,
                time::fmt_local(c.start_ms, tz),
                time::fmt_local(c.end_ms, tz),
                c.start_ms,
                c.end_ms
            );
            let _ = writeln!(out, "       {}", String::from_utf8_lossy(&c.body));
        }
        if !self.periods.is_empty() {
            let _ = writeln!(out, "\nPeriod series:");
            for p in &self.periods {
                let oldest = p
                    .oldest_pending
                    .map(|ms| format!(", oldest from {}", time::fmt_local(ms, tz)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {}: {} settled buckets pending{oldest}; {} planned in this run",
                    p.id, p.pending, p.planned
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "\nwarning: {w}");
        }
        models::describe(&self.models, &self.zone, &mut out);
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
        assert_eq!(plan.series.len(), 2);
        assert_eq!(plan.calls.len(), 1);
        assert_eq!(plan.calls[0].used_by, vec![0, 1]);
        assert_eq!(plan.calls_before_dedup(), 2);
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
        assert_eq!(plan.series.len(), 4);
        assert_eq!(
            plan.calls.len(),
            4,
            "one call each, clamped to the retention"
        );
        assert_eq!(plan.warnings.len(), 1, "one warning per query");
        let body = String::from_utf8(plan.calls[0].body.to_vec()).unwrap();
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
        assert_eq!(plan.calls.len(), 2, "one call per service type, shared");
        for s in &plan.series {
            assert_eq!(s.window.start_ms, horizon);
            assert_eq!(s.window.end_ms, now().timestamp_millis());
            assert_eq!(s.calls.len(), 1);
            assert_eq!(plan.calls[s.calls[0]].start_ms, horizon);
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
        assert!(plan.series.is_empty());
        assert!(plan.calls.is_empty());
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
        // A row wider than the formatter's width limit (u16::MAX) once panicked.
        plan.series[0].calls = vec![0; 40_000];
        plan.calls[0].start_ms = i64::MIN;
        plan.calls[0].end_ms = i64::MAX;
        plan.series[0].window.start_ms = -62_135_596_800_000; // 0001-01-01
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
            for s in &plan.series {
                prop_assert!(s.window.start_ms >= horizon, "clamped to the retention");
                prop_assert_eq!(s.calls.len(), 1);
                let mut at = s.window.start_ms;
                for &c in &s.calls {
                    let call = &plan.calls[c];
                    prop_assert_eq!(call.start_ms, at);
                    prop_assert!(call.end_ms - call.start_ms <= 30 * DAY_MS);
                    at = call.end_ms;
                }
                prop_assert_eq!(at, s.window.end_ms);
            }
        }
    }
}
