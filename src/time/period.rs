//! Period mode's buckets: settled, aligned to local midnight, each emitted once.
//!
//! A query with `range: {every: 1h, delay: 2h, backfill: 24h}` yields, at each run, every bucket
//! of length `every` (aligned to local midnight in the spec's zone) that has settled
//! (`end <= now - delay`) and was not emitted before, oldest first. Which buckets were emitted
//! is a checkpoint per series in the state directory, written only after the output was
//! delivered. Pure functions of the spec, now, the zone and the checkpoints.

use std::collections::BTreeMap;

use chrono::{Days, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use serde::{Deserialize, Serialize};

use crate::domain::cloud_eye::CloudEyeKey;
use crate::domain::range::{PeriodSpec, DAY_MS, RETENTION_MS};
use crate::domain::{SeriesKey, Usage};

/// Bucket boundaries in `[from_ms, to_ms]`: local midnight plus multiples of `every`, in `tz`.
/// A boundary that does not exist locally (a DST gap) is skipped; an ambiguous one (DST end)
/// takes its first occurrence.
pub fn boundaries(every_ms: i64, tz: &Tz, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let per_day = (DAY_MS / every_ms).max(1);
    let date_of = |ms: i64| {
        Utc.timestamp_millis_opt(ms)
            .single()
            .map(|t| t.with_timezone(tz).date_naive())
    };
    let (Some(first), Some(last)) = (date_of(from_ms), date_of(to_ms)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut day = first.checked_sub_days(Days::new(1)).unwrap_or(first);
    let end_day = last.checked_add_days(Days::new(1)).unwrap_or(last);
    while day <= end_day {
        for k in 0..per_day {
            let local = day.and_time(NaiveTime::MIN) + chrono::Duration::milliseconds(k * every_ms);
            let t = match tz.from_local_datetime(&local) {
                LocalResult::Single(t) => t,
                LocalResult::Ambiguous(t, _) => t,
                LocalResult::None => continue,
            };
            let ms = t.timestamp_millis();
            if ms >= from_ms && ms <= to_ms {
                out.push(ms);
            }
        }
        match day.checked_add_days(Days::new(1)) {
            Some(d) => day = d,
            None => break,
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// What a series has to emit at `now`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pending {
    /// Settled buckets not emitted yet, oldest first.
    pub buckets: Vec<(i64, i64)>,
    /// Time that should have been emitted but is beyond the retention horizon (a forced gap).
    pub lost_ms: i64,
    /// A checkpoint later than now (the clock went back, or a run used a later `--now`). It
    /// holds: the series emits nothing until the clock passes it, since a bucket delivered is
    /// never delivered, nor counted, again.
    pub ahead: Option<i64>,
}

/// The settled, unemitted buckets of a series with checkpoint `done_until` (end of the last
/// emitted bucket), or from `now - backfill` for a fresh state.
pub fn pending(p: &PeriodSpec, tz: &Tz, now_ms: i64, done_until: Option<i64>) -> Pending {
    let settled_until = now_ms - p.delay_ms;
    let horizon = now_ms - RETENTION_MS;
    // A checkpoint never moves back: one later than now (the clock went back) holds the series
    // until the clock passes it, rather than send (and count) its backfill again.
    let ahead = done_until.filter(|&d| d > now_ms);
    let mut start = done_until.unwrap_or(now_ms - p.backfill_ms);
    let mut lost_ms = 0;
    if start < horizon {
        lost_ms = horizon - start;
        start = horizon;
    }
    if settled_until <= start {
        return Pending {
            buckets: Vec::new(),
            lost_ms,
            ahead,
        };
    }
    let b = boundaries(p.every_ms, tz, start, settled_until);
    Pending {
        buckets: b.windows(2).map(|w| (w[0], w[1])).collect(),
        lost_ms,
        ahead,
    }
}

/// Checkpoints: series id -> end (ms) of the last bucket delivered.
pub type Checkpoints = BTreeMap<String, i64>;

/// Moves the checkpoint `id` of `checkpoints` to `end`, never back.
pub fn move_forward(checkpoints: &mut Checkpoints, id: &str, end: i64) {
    match checkpoints.get_mut(id) {
        Some(e) => *e = (*e).max(end),
        None => {
            checkpoints.insert(id.to_string(), end);
        }
    }
}

/// A period series' running total since its first delivered bucket: what a cumulative counter
/// reports (OTLP with cumulative temporality, Prometheus). A bucket is counted once: one that
/// would overlap what it already counts leaves it as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub key: SeriesKey,
    /// The start of the first bucket counted: the counter's start time.
    pub start_ms: i64,
    /// The end of the last bucket counted.
    pub through_ms: i64,
    pub usage: Usage,
}

impl Running {
    /// Adds the bucket `[start_ms, end_ms)`; a bucket that overlaps what is counted is not
    /// counted again.
    pub fn add(
        previous: Option<&Running>,
        key: &SeriesKey,
        start_ms: i64,
        end_ms: i64,
        usage: Usage,
    ) -> Running {
        match previous {
            Some(r) if start_ms < r.through_ms => r.clone(),
            Some(r) => {
                let mut total = r.usage;
                total += usage;
                Running {
                    key: key.clone(),
                    start_ms: r.start_ms,
                    through_ms: end_ms,
                    usage: total,
                }
            }
            None => Running {
                key: key.clone(),
                start_ms,
                through_ms: end_ms,
                usage,
            },
        }
    }
}

/// A Cloud Eye period series' running totals (its counts), as `Running` is for a
/// ShowStatistics one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEyeRunning {
    pub key: CloudEyeKey,
    pub start_ms: i64,
    pub through_ms: i64,
    /// Cloud Eye metric name -> its running total.
    pub counts: BTreeMap<String, u64>,
    /// Latency (ms) of the latest bucket, which a scrape shows between buckets.
    #[serde(default)]
    pub latest: BTreeMap<String, f64>,
    /// A priced model's running cost: the currency, and input and output in its femto-units
    /// (`spend::Cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<(String, [u128; 2])>,
}

impl CloudEyeRunning {
    /// Adds the bucket `[start_ms, end_ms)`; a bucket that overlaps what is counted is not
    /// counted again.
    pub fn add(
        previous: Option<&CloudEyeRunning>,
        key: &CloudEyeKey,
        start_ms: i64,
        end_ms: i64,
        counts: impl IntoIterator<Item = (String, u64)>,
        latest: BTreeMap<String, f64>,
        cost: Option<(String, [u128; 2])>,
    ) -> CloudEyeRunning {
        let (start, mut total, before) = match previous {
            Some(r) if start_ms < r.through_ms => return r.clone(),
            Some(r) => (r.start_ms, r.counts.clone(), r.cost.clone()),
            None => (start_ms, BTreeMap::new(), None),
        };
        let cost = match (before, cost) {
            (Some((_, [i, o])), Some((currency, [di, d_o]))) => {
                Some((currency, [i.saturating_add(di), o.saturating_add(d_o)]))
            }
            (b, c) => c.or(b),
        };
        for (m, c) in counts {
            let t = total.entry(m).or_insert(0);
            *t = t.saturating_add(c);
        }
        CloudEyeRunning {
            key: key.clone(),
            start_ms: start,
            through_ms: end_ms,
            counts: total,
            latest,
            cost,
        }
    }
}

/// Running totals of period series, kept with the checkpoints: series id -> its counter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    #[serde(default)]
    pub series: BTreeMap<String, Running>,
    /// Stored as `models`, the name state files have always given it.
    #[serde(default, rename = "models")]
    pub cloud_eye: BTreeMap<String, CloudEyeRunning>,
}

impl Totals {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.cloud_eye.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SH: Tz = chrono_tz::Asia::Shanghai;
    const H: i64 = 3_600_000;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn day_buckets_start_at_local_midnight() {
        let b = boundaries(
            DAY_MS,
            &SH,
            at("2026-05-19T12:00:00Z"),
            at("2026-05-21T12:00:00Z"),
        );
        assert_eq!(
            b,
            vec![at("2026-05-19T16:00:00Z"), at("2026-05-20T16:00:00Z")]
        );
    }

    #[test]
    fn only_settled_unemitted_buckets() {
        let p = PeriodSpec::parse("1h", Some("2h"), Some("6h")).unwrap();
        let now = at("2026-05-21T10:30:00+08:00");
        let fresh = pending(&p, &SH, now, None);
        assert_eq!(
            fresh.buckets.first().unwrap().0,
            at("2026-05-21T05:00:00+08:00")
        );
        assert_eq!(
            fresh.buckets.last().unwrap().1,
            at("2026-05-21T08:00:00+08:00")
        );
        assert_eq!(fresh.buckets.len(), 3);
        let next = pending(&p, &SH, now + H, Some(at("2026-05-21T08:00:00+08:00")));
        assert_eq!(
            next.buckets,
            vec![(
                at("2026-05-21T08:00:00+08:00"),
                at("2026-05-21T09:00:00+08:00")
            )]
        );
        assert!(pending(&p, &SH, now, Some(at("2026-05-21T08:00:00+08:00")))
            .buckets
            .is_empty());
    }

    #[test]
    fn a_checkpoint_past_retention_loses_only_what_is_gone() {
        let p = PeriodSpec::parse("1d", Some("0s"), Some("1d")).unwrap();
        let now = at("2026-05-21T00:00:00+08:00");
        let r = pending(&p, &SH, now, Some(now - 40 * DAY_MS));
        assert_eq!(r.lost_ms, 10 * DAY_MS);
        assert_eq!(r.buckets.len(), 30);
    }

    #[test]
    fn a_checkpoint_from_the_future_holds_and_is_reported() {
        let p = PeriodSpec::parse("1h", Some("0s"), Some("3h")).unwrap();
        let now = at("2026-05-21T10:00:00+08:00");
        let r = pending(&p, &SH, now, Some(now + 5 * H));
        assert_eq!(r.ahead, Some(now + 5 * H));
        assert!(r.buckets.is_empty(), "nothing before it, ever again");
        let later = pending(&p, &SH, now + 6 * H, Some(now + 5 * H));
        assert_eq!(
            (later.ahead, later.buckets),
            (None, vec![(now + 5 * H, now + 6 * H)])
        );
        let ok = pending(&p, &SH, now, Some(now - H));
        assert_eq!((ok.ahead, ok.buckets.len()), (None, 1));
    }

    #[test]
    fn running_totals_add_contiguous_buckets_and_count_an_overlap_never_again() {
        let key = SeriesKey {
            query: "q".into(),
            service_type: crate::domain::ServiceType::Preset,
            infer_type: crate::domain::InferType::RealTime,
            key_group: "all".into(),
        };
        let u = |n| Usage {
            requests: n,
            ..Default::default()
        };
        let a = Running::add(None, &key, 0, H, u(1));
        let b = Running::add(Some(&a), &key, H, 2 * H, u(2));
        assert_eq!((b.start_ms, b.through_ms, b.usage.requests), (0, 2 * H, 3));
        let gap = Running::add(Some(&b), &key, 5 * H, 6 * H, u(4));
        assert_eq!(
            (gap.start_ms, gap.usage.requests),
            (0, 7),
            "a gap keeps counting"
        );
        let again = Running::add(Some(&gap), &key, H, 2 * H, u(5));
        assert_eq!(again, gap, "an overlap is not counted again, nor reset");
    }

    #[test]
    fn dst_days_keep_buckets_contiguous() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let b = boundaries(
            H,
            &ny,
            at("2026-03-07T00:00:00Z"),
            at("2026-03-10T00:00:00Z"),
        );
        for w in b.windows(2) {
            assert!(w[1] > w[0]);
            assert!(w[1] - w[0] <= 2 * H);
        }
    }

    proptest! {
        /// Whatever buckets come (in order, repeated, overlapping, with gaps), a running total
        /// never falls and keeps its start: a counter made of it never resets, and no bucket
        /// is counted twice.
        #[test]
        fn a_running_total_never_falls(
            buckets in prop::collection::vec((0i64..48, 1i64..4, 0u64..1000), 1..30),
        ) {
            let key = SeriesKey {
                query: "q".into(),
                service_type: crate::domain::ServiceType::Preset,
                infer_type: crate::domain::InferType::RealTime,
                key_group: "all".into(),
            };
            let mut total: Option<Running> = None;
            for (start_h, len_h, n) in buckets {
                let usage = Usage { requests: n, ..Default::default() };
                let next = Running::add(total.as_ref(), &key, start_h * H, (start_h + len_h) * H, usage);
                if let Some(t) = &total {
                    prop_assert!(next.usage.requests >= t.usage.requests);
                    prop_assert_eq!(next.start_ms, t.start_ms);
                    prop_assert!(next.through_ms >= t.through_ms);
                }
                total = Some(next);
            }
        }

        /// Across any sequence of runs that each deliver what is pending, the buckets tile the
        /// time after the first one exactly: no overlap, no gap, none before it settled.
        #[test]
        fn successive_runs_tile_time(
            every in prop::sample::select(vec![5 * 60_000i64, 15 * 60_000, H, 3 * H, 6 * H, DAY_MS]),
            delay_h in 0i64..5,
            steps in prop::collection::vec(1i64..400, 1..40),
            tz in prop::sample::select(vec![Tz::UTC, SH, chrono_tz::Asia::Kathmandu]),
        ) {
            let p = PeriodSpec { every_ms: every, delay_ms: delay_h * H, backfill_ms: 2 * DAY_MS };
            let mut now = at("2026-05-01T00:00:00Z");
            let mut done: Option<i64> = None;
            let mut all = Vec::new();
            for s in steps {
                now += s * 60_000;
                let r = pending(&p, &tz, now, done);
                for &(a, b) in &r.buckets {
                    prop_assert!(b <= now - p.delay_ms, "emitted before it settled");
                    prop_assert_eq!(b - a, every);
                }
                if let Some(&(_, end)) = r.buckets.last() {
                    done = Some(end);
                }
                all.extend(r.buckets);
            }
            for w in all.windows(2) {
                prop_assert_eq!(w[0].1, w[1].0, "gap or overlap");
            }
        }
    }
}
