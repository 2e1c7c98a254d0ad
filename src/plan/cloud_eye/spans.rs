//! How a Cloud Eye window or run of period buckets is cut into call spans for the fewest calls:
//! a call carries at most 500 metric objects and its answer at most 3,000 datapoints (objects x
//! periods), so each span is read at the coarsest period its ends fall on, and cut where that
//! lets each call carry more objects. Which models and keys exist is only known at run time, so
//! the cut is made for a [`Load`] (objects per filter) then.

use super::Span;
use crate::domain::cloud_eye::{self, MAX_METRICS_PER_CALL, MAX_POINTS_PER_ANSWER, PERIODS};

pub(super) const fn ms(period_s: u32) -> i64 {
    period_s as i64 * 1000
}

pub(super) fn floor(t: i64, p: i64) -> i64 {
    t.div_euclid(p) * p
}

pub(super) fn ceil(t: i64, p: i64) -> i64 {
    -floor(-t, p)
}

/// The metric objects a span's calls carry, per filter: counts (`sum`) and latency (`max`);
/// objects of different filters never share a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub sum: usize,
    pub max: usize,
}

impl Load {
    /// The load of `series` series, each with this one's objects.
    pub fn times(self, series: usize) -> Load {
        Load {
            sum: self.sum.saturating_mul(series),
            max: self.max.saturating_mul(series),
        }
    }

    pub fn is_empty(self) -> bool {
        self.sum == 0 && self.max == 0
    }
}

/// Objects one call of `points` periods each may carry: 500, fewer when their datapoints would
/// pass 3,000; none past 3,000 periods.
pub fn per_call(points: i64) -> usize {
    match usize::try_from(points) {
        Ok(p) if p > 0 => (MAX_POINTS_PER_ANSWER / p).min(MAX_METRICS_PER_CALL),
        _ => 0,
    }
}

/// The calls a span of `points` periods costs for `load` (`usize::MAX`: it cannot be read).
pub fn cost(points: i64, load: Load) -> usize {
    let each = per_call(points);
    [load.sum, load.max]
        .iter()
        .map(|&n| match (n, each) {
            (0, _) => 0,
            (_, 0) => usize::MAX,
            (n, each) => n.div_ceil(each),
        })
        .fold(0, usize::saturating_add)
}

/// The calls `spans` cost for `load`.
pub fn total(spans: &[Span], load: Load) -> usize {
    spans
        .iter()
        .map(|s| cost(s.points(), load))
        .fold(0, usize::saturating_add)
}

impl Span {
    /// Datapoints per object: the periods it covers.
    pub fn points(&self) -> i64 {
        (self.to - self.from) / ms(self.period_s)
    }
}

/// The most periods of `period_s` one span may cover: the server's window for the period, and
/// 3,000 datapoints for a single object.
fn longest(period_s: u32) -> i64 {
    (cloud_eye::span_limit_ms(period_s) / ms(period_s)).min(MAX_POINTS_PER_ANSWER as i64)
}

/// [`run_lengths`] of the longest span of `period_s`, worked out once per period.
fn runs_of(period_s: u32) -> &'static [i64] {
    static RUNS: std::sync::OnceLock<Vec<(u32, Vec<i64>)>> = std::sync::OnceLock::new();
    let all = RUNS.get_or_init(|| {
        PERIODS
            .iter()
            .map(|&(p, _)| (p, run_lengths(longest(p))))
            .collect()
    });
    match all.iter().find(|(p, _)| *p == period_s) {
        Some((_, runs)) => runs,
        None => &[],
    }
}

/// The runs of periods worth trying as a span's length: those at which a call's objects change
/// (3,000 / k), and the longest a span may be.
fn run_lengths(most: i64) -> Vec<i64> {
    let mut out: Vec<i64> = (1..=MAX_POINTS_PER_ANSWER as i64)
        .map(|k| MAX_POINTS_PER_ANSWER as i64 / k)
        .chain([most])
        .filter(|&l| l >= 1 && l <= most)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `[from, to)` at `period_s`, cut into spans of at most `run` periods.
fn cut(from: i64, to: i64, period_s: u32, run: i64) -> Vec<Span> {
    let step = run * ms(period_s);
    let mut out = Vec::new();
    let mut s = from;
    while s < to {
        let e = (s + step).min(to);
        out.push(Span {
            from: s,
            to: e,
            period_s,
        });
        s = e;
    }
    out
}

/// What a cut of a window costs: calls, then datapoints.
type Cost = (usize, i64);
/// What a cut of buckets costs: calls, then spans (the more, the finer a budget takes them).
type BucketCost = (usize, std::cmp::Reverse<usize>);

/// The cheapest cut of `[from, to)` (both on periods of `period_s`) into spans at that period:
/// the fewest calls, then the fewest datapoints, then the fewest spans.
fn cheapest_cut(from: i64, to: i64, period_s: u32, load: Load) -> (usize, Vec<Span>) {
    let periods = (to - from) / ms(period_s);
    let mut best: Option<((usize, i64), i64)> = None;
    for &run in runs_of(period_s) {
        // `full` spans of `run` periods, and the rest in one more.
        let (full, rest) = (periods / run, periods % run);
        let calls = cost(run, load)
            .saturating_mul(full as usize)
            .saturating_add(if rest > 0 { cost(rest, load) } else { 0 });
        let key = (calls, full + i64::from(rest > 0));
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, run));
        }
    }
    match best {
        Some(((calls, _), run)) => (calls, cut(from, to, period_s, run)),
        None => (usize::MAX, Vec::new()),
    }
}

/// The spans that read `[start, end)` (on periods of `fine`) exactly with the fewest calls for
/// `load`: coarser periods where the window's boundaries allow them (a middle of whole hours, four
/// hours or days) and `fine` at the edges, each part cut where it lets calls carry more objects.
/// Of equally cheap cuts, the one with the fewest datapoints.
pub fn window_spans(start: i64, end: i64, fine: u32, load: Load) -> Vec<Span> {
    if start >= end {
        return Vec::new();
    }
    let periods: Vec<u32> = PERIODS
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| ms(*p) % ms(fine) == 0)
        .collect();
    let mut at: Vec<i64> = vec![start, end];
    for &p in &periods {
        at.extend([ceil(start, ms(p)), floor(end, ms(p))]);
    }
    at.retain(|t| (start..=end).contains(t));
    at.sort_unstable();
    at.dedup();
    // best[j]: the cheapest way to read [start, at[j]): (calls, datapoints), and its spans.
    let mut best: Vec<Option<(Cost, Vec<Span>)>> = vec![None; at.len()];
    best[0] = Some(((0, 0), Vec::new()));
    for j in 1..at.len() {
        for i in 0..j {
            let Some(((calls, points), before)) = best[i].clone() else {
                continue;
            };
            for &p in &periods {
                if at[i] % ms(p) != 0 || at[j] % ms(p) != 0 {
                    continue;
                }
                let (more, spans) = cheapest_cut(at[i], at[j], p, load);
                if more == usize::MAX {
                    continue;
                }
                let key = (calls.saturating_add(more), points + (at[j] - at[i]) / ms(p));
                if best[j].as_ref().is_none_or(|(k, _)| key < *k) {
                    let mut all = before.clone();
                    all.extend(spans);
                    best[j] = Some((key, all));
                }
            }
        }
    }
    best.pop().flatten().map(|(_, s)| s).unwrap_or_default()
}

/// Consecutive period buckets (each on periods of `period_s`) in spans of whole buckets, as
/// many to a span as gives the fewest calls for `load` (then the most spans): each bucket in
/// exactly one span, so a span's buckets are complete when its calls are.
pub fn bucket_spans(buckets: &[(i64, i64)], period_s: u32, load: Load) -> Vec<Span> {
    let p = ms(period_s);
    let mut best: Option<(BucketCost, Vec<Span>)> = None;
    for &run in runs_of(period_s) {
        let mut spans: Vec<Span> = Vec::new();
        for &(s, e) in buckets {
            match spans.last_mut() {
                Some(last) if last.to == s && (e - last.from) / p <= run => last.to = e,
                _ => spans.push(Span {
                    from: s,
                    to: e,
                    period_s,
                }),
            }
        }
        // Of equally cheap cuts, the one of most spans: a budget or a round then takes the
        // buckets in finer steps (a month in spans of 650 calls would never fit a run).
        let key = (total(&spans, load), std::cmp::Reverse(spans.len()));
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, spans));
        }
    }
    best.map(|(_, s)| s).unwrap_or_default()
}

/// How many of `spans`, oldest first, `budget` calls can read for `load`.
pub fn spans_within(spans: &[Span], load: Load, budget: usize) -> usize {
    let mut spent = 0usize;
    spans
        .iter()
        .take_while(|s| {
            spent = spent.saturating_add(cost(s.points(), load));
            spent <= budget
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;
    const DAY: i64 = 24 * H;

    fn load(sum: usize, max: usize) -> Load {
        Load { sum, max }
    }

    #[test]
    fn a_call_carries_500_objects_or_what_3000_datapoints_allow() {
        assert_eq!(per_call(1), 500);
        assert_eq!(per_call(6), 500);
        assert_eq!(per_call(7), 428);
        assert_eq!(per_call(24), 125);
        assert_eq!(per_call(288), 10);
        assert_eq!(per_call(3000), 1);
        assert_eq!(per_call(3001), 0);
        assert_eq!(cost(24, load(16_000, 10_000)), 128 + 80);
        assert_eq!(cost(3001, load(1, 0)), usize::MAX);
        assert_eq!(cost(3001, load(0, 0)), 0);
    }

    #[test]
    fn a_day_of_two_thousand_series_reads_four_hours_in_the_middle() {
        // 100 models x 20 keys, 8 counts and 5 latencies: 16,000 and 10,000 objects.
        let big = load(16_000, 10_000);
        // From 02:00 UTC: hours to 04:00, four-hour periods to 00:00, hours to 02:00.
        let s = window_spans(2 * H, 26 * H, 3600, big);
        let periods: Vec<u32> = s.iter().map(|x| x.period_s).collect();
        assert_eq!(periods, [3600, 14_400, 3600], "{s:?}");
        assert_eq!(total(&s, big), 3 * 52);
        // A day on four-hour boundaries: one span of six datapoints, 52 calls.
        let s = window_spans(4 * H, 28 * H, 3600, big);
        assert_eq!(total(&s, big), 52, "{s:?}");
        // Three series: one span at hours is the cheapest (24 points x 39 objects).
        let small = load(24, 15);
        let s = window_spans(2 * H, 26 * H, 3600, small);
        assert_eq!(total(&s, small), 2, "{s:?}");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn thirty_days_of_hourly_buckets_come_six_to_a_span_for_500_objects() {
        let buckets: Vec<(i64, i64)> = (0..720).map(|i| (i * H, (i + 1) * H)).collect();
        let big = load(8000, 5000);
        let s = bucket_spans(&buckets, 3600, big);
        assert!(s.iter().all(|x| x.points() == 6), "{:?}", &s[..3]);
        assert_eq!(total(&s, big), 120 * 26);
        // One object: ten days a span, the server's limit at hours.
        let s = bucket_spans(&buckets, 3600, load(1, 0));
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|x| x.to - x.from <= 10 * DAY));
    }

    #[test]
    fn a_budget_takes_the_spans_whose_calls_all_fit() {
        let buckets: Vec<(i64, i64)> = (0..24).map(|i| (i * H, (i + 1) * H)).collect();
        let big = load(8000, 5000);
        let s = bucket_spans(&buckets, 3600, big);
        assert_eq!(spans_within(&s, big, 60), 2, "26 calls a span");
        assert_eq!(spans_within(&s, big, 25), 0);
        // Three series of a day fit two calls (one span of hours); two thousand need 156.
        let small = window_spans(2 * H, 26 * H, 3600, load(24, 15));
        assert_eq!(total(&small, load(24, 15)), 2);
        let all = window_spans(2 * H, 26 * H, 3600, load(16_000, 10_000));
        assert_eq!(total(&all, load(16_000, 10_000)), 156);
    }

    proptest! {
        /// Whatever the window and the load, its spans tile it exactly, each on whole periods of
        /// its own, within the server's window for the period and 3,000 datapoints, and never
        /// cost more calls than reading it all at the finest period.
        #[test]
        fn window_spans_tile_the_window_and_cost_no_more_than_the_fine_read(
            start_5m in 0i64..200_000, len_5m in 1i64..12 * 288,
            fine in prop::sample::select(vec![300u32, 3600]),
            sum in 0usize..3000, max in 0usize..2000,
        ) {
            let f = ms(fine);
            let start = ceil(start_5m * 300_000, f);
            let end = start + ceil(len_5m * 300_000, f);
            let l = load(sum, max);
            let s = window_spans(start, end, fine, l);
            prop_assert_eq!(s.first().map(|x| x.from), Some(start));
            prop_assert_eq!(s.last().map(|x| x.to), Some(end));
            for (i, x) in s.iter().enumerate() {
                prop_assert_eq!(x.from % ms(x.period_s), 0);
                prop_assert_eq!(x.to % ms(x.period_s), 0);
                prop_assert!(x.to - x.from <= cloud_eye::span_limit_ms(x.period_s));
                prop_assert!(x.points() as usize <= MAX_POINTS_PER_ANSWER);
                if i > 0 {
                    prop_assert_eq!(s[i - 1].to, x.from, "contiguous");
                }
            }
            let (fine_read, _) = cheapest_cut(start, end, fine, l);
            prop_assert!(total(&s, l) <= fine_read);
        }

        /// The cheapest cut of a window costs no less for more objects: the budget's search
        /// for the most series it affords relies on it.
        #[test]
        fn the_cheapest_cut_costs_more_for_more_objects(
            start_h in 0i64..1000, len_h in 1i64..24 * 40,
            sum in 0usize..3000, max in 0usize..2000, more in 1usize..500,
        ) {
            let (start, end) = (start_h * H, (start_h + len_h) * H);
            let (a, b) = (load(sum, max), load(sum + more, max + more / 2));
            let cost = |l: Load| total(&window_spans(start, end, 3600, l), l);
            prop_assert!(cost(a) <= cost(b), "{} > {}", cost(a), cost(b));
        }

        /// Each bucket lies in exactly one span, and every span keeps to the limits.
        #[test]
        fn bucket_spans_hold_whole_buckets(
            n in 1usize..400, every_h in 1i64..5, sum in 0usize..3000, max in 0usize..2000,
        ) {
            let buckets: Vec<(i64, i64)> =
                (0..n as i64).map(|i| (i * every_h * H, (i + 1) * every_h * H)).collect();
            let s = bucket_spans(&buckets, 3600, load(sum, max));
            let mut b = buckets.iter();
            for x in &s {
                prop_assert!(x.points() as usize <= MAX_POINTS_PER_ANSWER);
                prop_assert!(x.to - x.from <= cloud_eye::span_limit_ms(3600));
                let mut at = x.from;
                while at < x.to {
                    let &(bs, be) = b.next().unwrap();
                    prop_assert_eq!(bs, at);
                    at = be;
                }
                prop_assert_eq!(at, x.to);
            }
            prop_assert!(b.next().is_none());
        }
    }
}
