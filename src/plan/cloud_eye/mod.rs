//! Cloud Eye queries: each window aligned to the CES period that fits it, or the settled period
//! buckets; the call spans that read them ([`spans`]) are cut at run time, once discovery says
//! how many series there are, for the fewest calls the server answers whole (it silently
//! shortens a longer one).

pub mod index;
pub mod spans;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use index::WindowIndex;
pub use spans::Load;

use super::PlanError;
use crate::domain::cloud_eye::PERIODS;
use crate::domain::{RangeExpr, Shape, Window};
use crate::spec::{CloudEyeQuery, QuerySpec};
use crate::spend::groups::Groups;
use crate::spend::Budget;
use crate::spend::Schedule;
use crate::time::period::{self, Checkpoints};
use crate::time::zone::Zone;
use crate::time::{self};

/// The Cloud Eye part of a plan: its queries (their series are found at run time).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub queries: Vec<QueryPlan>,
}

/// One Cloud Eye query, planned.
#[derive(Clone, Debug)]
pub struct QueryPlan {
    /// Its index in the spec.
    pub index: usize,
    pub name: String,
    pub query: CloudEyeQuery,
    /// The CES period its windows are on, in seconds: the finest its calls ask for.
    pub period_s: u32,
    /// What is reported: one aligned window, or the settled period buckets (oldest first).
    pub windows: Vec<Window>,
    /// The window as the range says it, before alignment (not for period mode).
    pub requested: Option<Window>,
    /// Period mode: the checkpoint id of the query (all its series move together).
    pub checkpoint: Option<String>,
    pub warnings: Vec<String>,
    /// The spec's prices in instants: its series are priced datapoint by datapoint, and a
    /// window is read in spans cut where a price changes.
    pub schedule: Option<Arc<Schedule>>,
    /// `breakdown: [model, key_group]` or `[key_group]`: its per-key series are summed into
    /// the spec's key groups.
    pub grouping: Option<Grouping>,
    /// A query of the plan's own, for the spec's budgets: its series are not emitted, they
    /// are summed into each budget's period-to-date use.
    pub budgets: Option<BudgetPlan>,
}

/// The budgets of one period (and scope kind) and what their status needs.
#[derive(Clone, Debug)]
pub struct BudgetPlan {
    pub budgets: Vec<Budget>,
    /// The period holding now, `[start, end)` in ms.
    pub bounds: (i64, i64),
    /// Where the use read ends: the window's aligned end (at most now), over which the
    /// forecast's rate so far is taken.
    pub now_ms: i64,
    pub groups: Arc<Groups>,
}

/// How a query's per-key series are summed into teams.
#[derive(Clone, Debug)]
pub struct Grouping {
    /// `[model, key_group]`: a series per model and group; `[key_group]`: per group.
    pub per_model: bool,
    pub groups: Arc<Groups>,
}

/// One call span: `[from, to)` read at `period_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
    pub period_s: u32,
}

impl QueryPlan {
    /// The checkpoint of a period-mode Cloud Eye query.
    pub fn checkpoint_id(region: &str, query: &str) -> String {
        format!("{region}/cloud_eye/{query}")
    }

    /// The spans that read every window (or bucket) of this query with the fewest calls for
    /// `load`, oldest first; a bucket is never split between two.
    pub fn spans(&self, load: Load) -> Vec<Span> {
        match self.windows.as_slice() {
            [w] if w.shape != Shape::Bucket => {
                let mut changes: Vec<i64> = self
                    .schedule
                    .iter()
                    .flat_map(|s| s.all_changes(w.start_ms, w.end_ms))
                    .collect();
                changes.sort_unstable();
                changes.dedup();
                off_grid_spans(w.start_ms, w.end_ms, self.period_s, load, &changes)
            }
            buckets => {
                let b: Vec<(i64, i64)> = buckets.iter().map(|w| (w.start_ms, w.end_ms)).collect();
                spans::bucket_spans(&b, self.period_s, load)
            }
        }
    }
}

use spans::{ceil, floor, ms};

/// The spans of the window `[start, end)` for the price changes `changes`: a change off the
/// grid of `fine` (midnight in a zone with a half-hour offset) has the `fine` period around it
/// read at the coarsest of five minutes or a minute that falls on it, so no datapoint spans it;
/// the rest as [`priced_spans`] cuts them.
fn off_grid_spans(start: i64, end: i64, fine: u32, load: Load, changes: &[i64]) -> Vec<Span> {
    let p = ms(fine);
    let on_grid: Vec<i64> = changes.iter().copied().filter(|c| c % p == 0).collect();
    let mut out = Vec::new();
    let mut from = start;
    for c in changes.iter().copied().filter(|c| c % p != 0) {
        let lo = floor(c, p);
        let Some(finer) = [300u32, 60]
            .into_iter()
            .find(|&f| f < fine && c % ms(f) == 0 && lo % ms(f) == 0)
        else {
            continue;
        };
        // Two changes in one `fine` period, or one at the window's edge: left to the fold,
        // which refuses a datapoint across a change.
        if lo < from || lo + p > end {
            continue;
        }
        if lo > from {
            out.extend(priced_spans(from, lo, fine, load, &on_grid));
        }
        out.push(Span {
            from: lo,
            to: lo + p,
            period_s: finer,
        });
        from = lo + p;
    }
    if from < end {
        out.extend(priced_spans(from, end, fine, load, &on_grid));
    }
    out
}

/// The spans of the window `[start, end)` at `fine` and coarser periods, none of whose
/// datapoints spans a price change in `changes` (each on a period of `fine`): a span read at a
/// period a change does not fall on is cut there and each side read again, so a change costs
/// calls only when the cheapest reading would have averaged across it.
fn priced_spans(start: i64, end: i64, fine: u32, load: Load, changes: &[i64]) -> Vec<Span> {
    let mut out = Vec::new();
    for span in spans::window_spans(start, end, fine, load) {
        let across = changes
            .iter()
            .copied()
            .find(|&c| span.from < c && c < span.to && (c - span.from) % ms(span.period_s) != 0);
        match across {
            Some(c) => {
                out.extend(priced_spans(span.from, c, fine, load, changes));
                out.extend(priced_spans(c, span.to, fine, load, changes));
            }
            None => out.push(span),
        }
    }
    out
}

/// The CES period a window is aligned on: a rolling window keeps its length on the longest of
/// an hour, five minutes or a minute that divides it (Cloud Eye's figures trail by an hour or
/// two, so the hour in progress costs nothing); a fixed start (and a fixed end) on the longest
/// it falls on, an hour only for a window longer than a day (a day so far reads up to the last
/// five minutes), so calendar days in a zone with a half-hour offset still align. Coarser
/// periods read the middle of a window; this one its edges.
pub fn period_for(w: &Window) -> u32 {
    let long = w.len_ms() > 86_400_000;
    let candidates: &[u32] = if long { &[3600, 300, 60] } else { &[300, 60] };
    match w.shape {
        Shape::Rolling => [3600, 300, 60]
            .into_iter()
            .find(|&p| w.len_ms() % ms(p) == 0)
            .unwrap_or(60),
        _ => candidates
            .iter()
            .copied()
            .find(|&p| {
                w.start_ms % ms(p) == 0 && (w.shape != Shape::Closed || w.end_ms % ms(p) == 0)
            })
            .unwrap_or(60),
    }
}

/// `w` on whole periods of `period_s`: the end moves back to a period boundary (the period in
/// progress is not settled); a rolling window keeps its length (when it is whole periods), a
/// fixed start moves forward to a boundary. `None` when nothing whole is left.
pub fn align(w: &Window, period_s: u32) -> Option<Window> {
    let p = ms(period_s);
    let end = floor(w.end_ms, p);
    let start = match w.shape {
        Shape::Rolling => ceil(end - (w.end_ms - w.start_ms), p),
        _ => ceil(w.start_ms, p),
    };
    (start < end).then_some(Window {
        start_ms: start,
        end_ms: end,
        shape: w.shape,
    })
}

/// The longest CES period that divides every bucket (its length and its start).
fn period_for_buckets(every_ms: i64, buckets: &[(i64, i64)]) -> u32 {
    PERIODS
        .iter()
        .map(|(p, _)| *p)
        .find(|&p| every_ms % ms(p) == 0 && buckets.iter().all(|(s, _)| s % ms(p) == 0))
        .unwrap_or(60)
}

/// A Cloud Eye query's plan, and in period mode its checkpoint when it is later than now (the
/// clock went back: it holds, and the query emits nothing until the clock passes it).
pub fn plan_query(
    index: usize,
    q: &QuerySpec,
    ce: &CloudEyeQuery,
    now: DateTime<Utc>,
    zone: &Zone,
    region: &str,
    checkpoints: &Checkpoints,
) -> Result<(QueryPlan, Option<i64>), PlanError> {
    let mut m = QueryPlan {
        index,
        name: q.name.clone(),
        query: ce.clone(),
        period_s: 60,
        windows: Vec::new(),
        requested: None,
        checkpoint: None,
        warnings: Vec::new(),
        schedule: None,
        grouping: None,
        budgets: None,
    };
    if let RangeExpr::Period(p) = &q.range {
        let id = QueryPlan::checkpoint_id(region, &q.name);
        let pending = period::pending(
            p,
            &zone.tz,
            now.timestamp_millis(),
            checkpoints.get(&id).copied(),
        );
        m.period_s = period_for_buckets(p.every_ms, &pending.buckets);
        m.windows = pending
            .buckets
            .iter()
            .map(|&(start_ms, end_ms)| Window {
                start_ms,
                end_ms,
                shape: Shape::Bucket,
            })
            .collect();
        m.checkpoint = Some(id);
        return Ok((m, pending.ahead));
    }
    let w = time::resolve(&q.range, now, &zone.tz).map_err(|error| PlanError::Range {
        index,
        query: q.name.clone(),
        error,
    })?;
    m.requested = Some(w);
    m.period_s = period_for(&w);
    match align(&w, m.period_s) {
        Some(a) => m.windows = vec![a],
        None => m.warnings.push(format!(
            "query {}: no whole {}-second Cloud Eye period has ended in its window yet; nothing to report",
            q.name, m.period_s
        )),
    }
    Ok((m, None))
}

/// The Cloud Eye part of `plan`'s output.
pub fn describe(queries: &[QueryPlan], zone: &Zone, out: &mut String) {
    use std::fmt::Write;
    if queries.is_empty() {
        return;
    }
    let tz = &zone.tz;
    let _ = writeln!(
        out,
        "\nCloud Eye queries (SYS.MaaS; models and keys are found at run time with ListMetrics):"
    );
    for m in queries {
        let breakdown = if m.query.by_key {
            "model, api_key"
        } else {
            "model"
        };
        let metrics: Vec<&str> = m.query.metrics.iter().map(|x| x.ces).collect();
        let _ = writeln!(
            out,
            "  {}: breakdown [{breakdown}], period {} s, metrics {}",
            m.name,
            m.period_s,
            metrics.join(", ")
        );
        if let (Some(r), Some(w)) = (&m.requested, m.windows.first()) {
            let moved = if (r.start_ms, r.end_ms) == (w.start_ms, w.end_ms) {
                "already on whole periods".to_string()
            } else {
                format!(
                    "aligned from {} ~ {}",
                    time::fmt_local(r.start_ms, tz),
                    time::fmt_local(r.end_ms, tz)
                )
            };
            let _ = writeln!(
                out,
                "    window {} ~ {} ({moved})",
                time::fmt_local(w.start_ms, tz),
                time::fmt_local(w.end_ms, tz)
            );
        } else if m.checkpoint.is_some() {
            let _ = writeln!(out, "    {} settled buckets pending", m.windows.len());
        }
        // The spans for one series; more series are cut for the fewest calls for their number.
        let one = Load {
            sum: m.query.metrics.iter().filter(|x| x.is_count()).count(),
            max: m.query.metrics.iter().filter(|x| !x.is_count()).count(),
        };
        for (i, sp) in m.spans(one).iter().enumerate() {
            let _ = writeln!(
                out,
                "    call span {}: {} ~ {}  [{}, {}) at {} s (for one series; more are cut for the fewest calls: at most 500 metric objects and 3,000 datapoints a call, per filter)",
                i + 1,
                time::fmt_local(sp.from, tz),
                time::fmt_local(sp.to, tz),
                sp.from,
                sp.to,
                sp.period_s
            );
        }
        for w in &m.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    // 2026-05-21T10:17:00Z
    const NOW: i64 = 1_779_358_620_000;

    fn w(start_ms: i64, end_ms: i64, shape: Shape) -> Window {
        Window {
            start_ms,
            end_ms,
            shape,
        }
    }

    /// A datapoint of `s` spans `c`: the change is inside the span, not on one of its periods.
    fn straddles(s: &Span, c: i64) -> bool {
        s.from < c && c < s.to && (c - s.from) % ms(s.period_s) != 0
    }

    proptest! {
        /// For any load and any Shanghai midnight in a 30-day window, the spans tile the window
        /// and none of their datapoints spans the price change.
        #[test]
        fn spans_are_cut_where_a_price_changes(sum in 1usize..20_000, day in 1i64..29) {
            let end = floor(NOW, 86_400_000) + 16 * H;
            let start = end - 30 * 24 * H;
            let change = start + day * 24 * H;
            let load = Load { sum, max: 0 };
            let spans = priced_spans(start, end, 3600, load, &[change]);
            prop_assert_eq!(spans.first().map(|s| s.from), Some(start));
            prop_assert!(spans.windows(2).all(|p| p[0].to == p[1].from));
            prop_assert_eq!(spans.last().map(|s| s.to), Some(end));
            prop_assert!(!spans.iter().any(|s| straddles(s, change)), "{spans:?}");
        }
    }

    #[test]
    fn a_daily_reading_across_a_change_is_cut_there() {
        // Thirty days of many series read in days (UTC) in the middle: a Shanghai midnight
        // (16:00 UTC) falls inside one of them, unless the window is cut there.
        let end = floor(NOW, 86_400_000) + 16 * H;
        let start = end - 30 * 24 * H;
        let change = start + 10 * 24 * H;
        let load = Load { sum: 5_000, max: 0 };
        let plain = spans::window_spans(start, end, 3600, load);
        assert!(plain.iter().any(|s| straddles(s, change)), "{plain:?}");
        let cut = priced_spans(start, end, 3600, load, &[change]);
        assert!(!cut.iter().any(|s| straddles(s, change)), "{cut:?}");
        assert!(cut.iter().any(|s| s.to == change));
    }

    #[test]
    fn rolling_windows_keep_their_length_on_whole_periods() {
        // A day (or a week) on whole hours: its hours in the middle read at four hours.
        for days in [1, 7] {
            let asked = w(NOW - days * 24 * H, NOW, Shape::Rolling);
            assert_eq!(period_for(&asked), 3600);
            let a = align(&asked, 3600).unwrap();
            assert_eq!(a.end_ms, floor(NOW, H));
            assert_eq!(a.len_ms(), days * 24 * H);
        }
        // 90 minutes: on five minutes.
        let short = w(NOW - 90 * 60_000, NOW, Shape::Rolling);
        assert_eq!(period_for(&short), 300);
        assert_eq!(align(&short, 300).unwrap().end_ms, floor(NOW, 300_000));
    }

    #[test]
    fn fixed_starts_pick_a_period_they_fall_on() {
        // Midnight in Kolkata (+05:30) is not on an hour.
        let start = floor(NOW, 86_400_000) - 5 * H - 30 * 60_000;
        let today = w(start, NOW, Shape::Anchored);
        assert_eq!(period_for(&today), 300);
        let month = w(start - 20 * 24 * H, NOW, Shape::Anchored);
        assert_eq!(
            period_for(&month),
            300,
            "a half-hour start is not on an hour"
        );
        let hour_start = w(floor(NOW, H) - 48 * H, NOW, Shape::Anchored);
        assert_eq!(period_for(&hour_start), 3600);
        let odd = w(floor(NOW, H) - 48 * H + 1000, NOW, Shape::Closed);
        assert_eq!(period_for(&odd), 60);
    }

    #[test]
    fn a_month_from_a_half_hour_midnight_reads_hours_in_the_middle() {
        // Midnight in Kolkata (+05:30), twenty days, read at five minutes at the edges only.
        let start = floor(NOW, H) - 20 * 24 * H - 30 * 60_000;
        let one = Load { sum: 8, max: 5 };
        let s = spans::window_spans(start, floor(NOW, 300_000), 300, one);
        assert_eq!(s.first().map(|x| x.period_s), Some(300));
        assert_eq!(s.last().map(|x| x.period_s), Some(300));
        assert!(
            s[1..s.len() - 1].iter().all(|x| x.period_s >= 3600),
            "{s:?}"
        );
    }

    #[test]
    fn buckets_merge_into_spans_and_pick_their_period() {
        let buckets: Vec<(i64, i64)> = (0..30).map(|i| (i * H, (i + 1) * H)).collect();
        assert_eq!(period_for_buckets(H, &buckets), 3600);
        let s = spans::bucket_spans(&buckets, 3600, Load { sum: 1, max: 0 });
        assert_eq!(
            s,
            vec![Span {
                from: 0,
                to: 30 * H,
                period_s: 3600
            }]
        );
        // Daily buckets at 16:00 UTC (midnight in Shanghai): 4-hour periods fit, a day does not.
        let daily: Vec<(i64, i64)> = (0..3)
            .map(|i| (16 * H + i * 24 * H, 16 * H + (i + 1) * 24 * H))
            .collect();
        assert_eq!(period_for_buckets(24 * H, &daily), 14_400);
    }

    proptest! {
        #[test]
        fn an_aligned_window_is_on_whole_periods_inside_the_asked_one(
            start in 0i64..4_000_000_000_000, len in 60_000i64..40 * 86_400_000,
            shape in prop_oneof![Just(Shape::Rolling), Just(Shape::Anchored), Just(Shape::Closed)],
        ) {
            let asked = w(start, start + len, shape);
            let p = period_for(&asked);
            if let Some(a) = align(&asked, p) {
                prop_assert_eq!(a.start_ms % ms(p), 0);
                prop_assert_eq!(a.end_ms % ms(p), 0);
                prop_assert!(a.end_ms <= asked.end_ms);
                match shape {
                    Shape::Rolling if asked.len_ms() % ms(p) == 0 => {
                        prop_assert_eq!(a.len_ms(), asked.len_ms())
                    }
                    Shape::Rolling => prop_assert!(a.len_ms() <= asked.len_ms()),
                    _ => prop_assert!(a.start_ms >= asked.start_ms),
                }
                let s = spans::window_spans(a.start_ms, a.end_ms, p, Load { sum: 8, max: 5 });
                prop_assert_eq!(s.first().map(|x| x.from), Some(a.start_ms));
                prop_assert_eq!(s.last().map(|x| x.to), Some(a.end_ms));
                for (i, x) in s.iter().enumerate() {
                    prop_assert!(
                        x.to - x.from <= crate::domain::cloud_eye::span_limit_ms(x.period_s)
                    );
                    prop_assert_eq!(x.from % ms(x.period_s), 0);
                    prop_assert_eq!(x.to % ms(x.period_s), 0);
                    if i > 0 {
                        prop_assert_eq!(s[i - 1].to, x.from, "contiguous");
                    }
                }
                // A month costs a handful of spans, whatever the zone's offset.
                prop_assert!(s.len() <= 6, "{} spans", s.len());
            }
        }
    }
}
