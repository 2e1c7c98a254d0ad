//! ShowStatistics queries: a series per service type and key group, each window clamped to
//! the 30-day retention and cut into calls of at most 30 days, identical calls made once; a
//! period query's settled buckets within the run's call budget, shared round-robin.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{PeriodStatus, PlanError, BEYOND_RETENTION};
use crate::domain::{RangeExpr, SeriesKey, Shape, StatsRequest, Window, ALL_KEYS};
use crate::spec::{QuerySpec, Spec};
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

/// The ShowStatistics part of a plan: every series and every call.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub series: Vec<PlannedSeries>,
    pub calls: Vec<PlannedCall>,
}

impl Plan {
    /// Calls the series need in total, before deduplication.
    pub fn calls_before_dedup(&self) -> usize {
        self.series.iter().map(|s| s.calls.len()).sum()
    }
}

/// One series before its calls are planned.
struct Pre {
    key: SeriesKey,
    keys: Option<Vec<String>>,
    ips: Option<Vec<String>>,
}

/// Builds the ShowStatistics part, query by query, then the period buckets within the budget.
pub(super) struct Builder<'a> {
    plan: Plan,
    by_body: HashMap<Arc<[u8]>, usize>,
    periodic: Vec<(Pre, String, Pending)>,
    zone: &'a Zone,
    now: DateTime<Utc>,
    region: &'a str,
}

impl<'a> Builder<'a> {
    pub(super) fn new(zone: &'a Zone, now: DateTime<Utc>, region: &'a str) -> Self {
        Builder {
            plan: Plan::default(),
            by_body: HashMap::new(),
            periodic: Vec::new(),
            zone,
            now,
            region,
        }
    }

    /// Adds a series for `window` with one call per segment of `segments` (none for a window
    /// beyond the retention: it reads as zero without asking), reusing identical calls.
    fn add(
        &mut self,
        pre: &Pre,
        window: Window,
        segments: Vec<(i64, i64)>,
        period: Option<String>,
    ) {
        let plan = &mut self.plan;
        let si = plan.series.len();
        let mut calls = Vec::new();
        for (s, e) in segments {
            let mut req = StatsRequest::new(pre.key.service_type, pre.key.infer_type, s, e);
            req.timezone = Some(self.zone.name.clone());
            req.api_keys = pre.keys.clone();
            req.ips = pre.ips.clone();
            let body: Arc<[u8]> = req.to_bytes().into();
            let ci = *self.by_body.entry(body.clone()).or_insert_with(|| {
                plan.calls.push(PlannedCall {
                    start_ms: s,
                    end_ms: e,
                    request: req,
                    body,
                    used_by: Vec::new(),
                });
                plan.calls.len() - 1
            });
            plan.calls[ci].used_by.push(si);
            calls.push(ci);
        }
        plan.series.push(PlannedSeries {
            key: pre.key.clone(),
            window,
            calls,
            period,
        });
    }

    /// Plans query `qi`: its series now, or for a period query its pending buckets for
    /// [`Builder::finish`] to share out.
    pub(super) fn query(
        &mut self,
        qi: usize,
        q: &QuerySpec,
        spec: &Spec,
        checkpoints: &Checkpoints,
        warnings: &mut Vec<String>,
    ) -> Result<(), PlanError> {
        let groups = key_groups(qi, q, spec)?;
        // A window is clamped to the retention horizon: older data does not exist, and asking
        // for it would cost calls (one per 30 days) that can only answer zero.
        let window = match &q.range {
            RangeExpr::Period(_) => None,
            r => match self.window(qi, q, r, warnings)? {
                Some(w) => Some(w),
                None => return Ok(()),
            },
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
                        let id = pre.key.checkpoint_id(self.region);
                        let pending = period::pending(
                            p,
                            &self.zone.tz,
                            self.now.timestamp_millis(),
                            checkpoints.get(&id).copied(),
                        );
                        self.periodic.push((pre, id, pending));
                    }
                    (_, Some((w, segments))) => self.add(&pre, *w, segments.clone(), None),
                    (_, None) => {}
                }
            }
        }
        Ok(())
    }

    /// The window of a query that is not a period, clamped to the retention, and its calls'
    /// segments; `None` for a window entirely beyond it (with a warning: nothing is left to
    /// read, and a zero stamped with the window's end would overwrite what an earlier run
    /// stored for the same window).
    #[allow(clippy::type_complexity)]
    fn window(
        &self,
        qi: usize,
        q: &QuerySpec,
        range: &RangeExpr,
        warnings: &mut Vec<String>,
    ) -> Result<Option<(Window, Vec<(i64, i64)>)>, PlanError> {
        let w =
            time::resolve(range, self.now, &self.zone.tz).map_err(|error| PlanError::Range {
                index: qi,
                query: q.name.clone(),
                error,
            })?;
        Ok(match time::retain(w, self.now.timestamp_millis()) {
            Retained::Whole(w) => Some((w, time::segments(w.start_ms, w.end_ms))),
            Retained::Clamped {
                window,
                lost_ms,
                horizon_ms,
            } => {
                warnings.push(format!(
                    "query {}: the first {} days of this window are older than the 30-day retention and read as zero; it is queried from {}",
                    q.name,
                    time::fmt_days(lost_ms),
                    time::fmt_local(horizon_ms, &self.zone.tz)
                ));
                Some((window, time::segments(window.start_ms, window.end_ms)))
            }
            Retained::Beyond => {
                warnings.push(format!("query {}: {BEYOND_RETENTION}", q.name));
                None
            }
        })
    }

    /// The period buckets, round-robin over the period series, oldest first, within `budget`
    /// calls (less those of the other series), so no series starves; their warnings and
    /// statuses, and the series whose checkpoint is later than now (`ahead`: what, and the
    /// checkpoint).
    pub(super) fn finish(
        mut self,
        budget: usize,
        warnings: &mut Vec<String>,
        periods: &mut Vec<PeriodStatus>,
        ahead: &mut Vec<(String, i64)>,
    ) -> Plan {
        let periodic = std::mem::take(&mut self.periodic);
        let taken = round_robin(
            &periodic
                .iter()
                .map(|p| p.2.buckets.len())
                .collect::<Vec<_>>(),
            budget.saturating_sub(self.plan.calls.len()),
        );
        for ((pre, id, pending), n) in periodic.into_iter().zip(taken) {
            for &(start_ms, end_ms) in &pending.buckets[..n] {
                let window = Window {
                    start_ms,
                    end_ms,
                    shape: Shape::Bucket,
                };
                self.add(
                    &pre,
                    window,
                    time::segments(start_ms, end_ms),
                    Some(id.clone()),
                );
            }
            if n < pending.buckets.len() {
                warnings.push(format!(
                    "{}: {} settled buckets pending; this run emits the oldest {n} (the run's call budget is limits.requests_per_minute) and the rest follow in the next runs",
                    pre.key,
                    pending.buckets.len()
                ));
            }
            ahead.extend(pending.ahead.map(|cp| (pre.key.to_string(), cp)));
            if pending.lost_ms > 0 {
                warnings.push(format!(
                    "{}: {:.1} hours of buckets were never emitted and are now beyond the 30-day retention: they are lost",
                    pre.key,
                    pending.lost_ms as f64 / 3_600_000.0
                ));
            }
            periods.push(PeriodStatus {
                id,
                pending: pending.buckets.len(),
                planned: n,
                oldest_pending: pending.buckets.first().map(|b| b.0),
            });
        }
        self.plan
    }
}

/// The key groups of a query: `all` without a filter, else each named group with its keys.
#[allow(clippy::type_complexity)]
fn key_groups(
    qi: usize,
    q: &QuerySpec,
    spec: &Spec,
) -> Result<Vec<(String, Option<Vec<String>>)>, PlanError> {
    match &q.key_groups {
        None => Ok(vec![(ALL_KEYS.to_string(), None)]),
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
            .collect(),
    }
}

/// How many of each series' `pending` buckets `budget` calls take, one per series per round.
fn round_robin(pending: &[usize], budget: usize) -> Vec<usize> {
    let mut taken = vec![0usize; pending.len()];
    let mut left = budget;
    let mut round = 0;
    while left > 0 {
        let mut any = false;
        for (i, &n) in pending.iter().enumerate() {
            if left > 0 && round < n {
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
    taken
}

/// The ShowStatistics part of `plan`'s output: every series, every call with its window (local
/// time and epoch ms) and body, which calls serve several series, and the period series.
pub(super) fn describe(plan: &Plan, periods: &[PeriodStatus], zone: &Zone, out: &mut String) {
    use std::fmt::Write;
    let tz = &zone.tz;
    let rows: Vec<[String; 6]> = plan
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
    let _ = writeln!(out, "\nSeries:");
    table(out, &header, &rows);
    let _ = writeln!(out, "\nCalls:");
    for (i, c) in plan.calls.iter().enumerate() {
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
    if !periods.is_empty() {
        let _ = writeln!(out, "\nPeriod series:");
        for p in periods {
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
}

/// Rows under a header, columns padded to their widest cell.
fn table(out: &mut String, header: &[String; 6], rows: &[[String; 6]]) {
    use std::fmt::Write;
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            rows.iter()
                .chain([header])
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in [header].into_iter().chain(rows.iter()) {
        // Padded by hand: `{:<w$}` panics on widths above u16::MAX (a row with thousands of
        // calls).
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
}
