//! The Cloud Eye source against a fake Cloud Eye: datapoints folded once each into their
//! windows, counts it cannot have refused, and the calls planned against the budget (the
//! series left out fail by name and come first next run; no call is made that cannot produce
//! output).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::{Api, CloudEye, DiscoveryCache, Setup};
use crate::collect::{Collection, Run, Source};
use crate::domain::cloud_eye::{
    metric, BatchAnswer, BatchRequest, Dims, Discovered, InstancePage, MetricPage, Names, Reading,
    Unread,
};
use crate::domain::{ApiError, Shape, Window};
use crate::plan::cloud_eye::{Plan, QueryPlan};
use crate::spec::CloudEyeQuery;

const H: i64 = 3_600_000;

/// Cloud Eye as a careless server could be: `models` models (`m0`, `m1`...), every bucket of
/// `[from, to]` (`to` included) worth `value` an hour; the calls whose number `fails` picks
/// fail, the answers of those `unreadable` picks cannot be read, and reading those of
/// `read_panics` panics.
struct Fake {
    models: usize,
    value: f64,
    fails: fn(usize) -> bool,
    unreadable: fn(usize) -> bool,
    read_panics: fn(usize) -> bool,
    budget: usize,
    batches: Mutex<Vec<BatchRequest>>,
}

impl Fake {
    fn new(models: usize) -> Fake {
        Fake {
            models,
            value: 1.0,
            fails: |_| false,
            unreadable: |_| false,
            read_panics: |_| false,
            budget: usize::MAX,
            batches: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> usize {
        self.batches.lock().unwrap().len()
    }
}

fn model(i: usize) -> Dims {
    Dims {
        model_id: format!("m{i}"),
        key_id: None,
    }
}

impl Api for Fake {
    fn list_metrics(&self, _: &str, _: &str, _: Instant) -> Result<MetricPage, ApiError> {
        unreachable!("a [model] breakdown lists no metric")
    }
    fn batch(&self, req: &BatchRequest, _: Instant) -> Result<Unread, ApiError> {
        let n = {
            let mut b = self.batches.lock().unwrap();
            b.push(req.clone());
            b.len() - 1
        };
        if (self.fails)(n) {
            return Err(ApiError::Internal(format!("call {n} failed")));
        }
        if (self.read_panics)(n) {
            return Ok(Unread::new(move || panic!("a bug reading answer {n}")));
        }
        if (self.unreadable)(n) {
            return Ok(Unread::new(move || {
                Err(ApiError::Decode {
                    endpoint: "https://ces.test".into(),
                    error: crate::domain::failure::DecodeError::NotJson(format!("answer {n}")),
                    request_id: None,
                })
            }));
        }
        // Each hour worth `value`, whatever the period.
        let p = i64::from(req.period_s) * 1000;
        let value = self.value * p as f64 / H as f64;
        let points: Vec<(i64, Reading)> = (req.from_ms / p..=req.to_ms / p)
            .map(|b| (b * p, Reading::exact(value)))
            .collect();
        Ok(BatchAnswer {
            series: req
                .metrics
                .iter()
                .map(|(m, d)| ((m.ces.to_string(), d.clone()), points.clone()))
                .collect(),
            request_id: None,
            endpoint: "https://ces.test".into(),
        }
        .into())
    }
    fn instances(&self, start: usize, keys: bool, _: Instant) -> Result<InstancePage, ApiError> {
        assert!(!keys, "a [model] breakdown names no key");
        let instances: Vec<_> = (start..self.models.min(start + 100))
            .map(|i| crate::domain::cloud_eye::Instance {
                dims: model(i),
                model_name: String::new(),
                key_name: String::new(),
            })
            .collect();
        Ok(InstancePage {
            listed: instances.len(),
            instances,
            total: Some(self.models),
        })
    }
    fn affordable(&self, _: Duration) -> usize {
        self.budget
    }
}

/// The series owed, kept as the state store would.
#[derive(Default)]
struct Owed(Mutex<BTreeMap<String, Vec<Dims>>>);

impl DiscoveryCache for Owed {
    fn load(&self, _: Duration) -> Option<Discovered> {
        None
    }
    fn store(&self, _: &Discovered) {}
    fn owed(&self, query: &str) -> Vec<Dims> {
        self.0
            .lock()
            .unwrap()
            .get(query)
            .cloned()
            .unwrap_or_default()
    }
    fn store_owed(&self, query: &str, owed: &[Dims]) {
        self.0.lock().unwrap().insert(query.into(), owed.to_vec());
    }
}

fn query(windows: Vec<Window>, checkpoint: Option<&str>) -> QueryPlan {
    QueryPlan {
        index: 0,
        name: "q".into(),
        query: CloudEyeQuery {
            by_key: false,
            models: None,
            api_keys: None,
            metrics: vec![metric("total_tokens").unwrap(), metric("ttft_p99").unwrap()],
        },
        period_s: 3600,
        windows,
        requested: None,
        checkpoint: checkpoint.map(String::from),
        warnings: Vec::new(),
        schedule: None,
        grouping: None,
        budgets: None,
    }
}

fn buckets(n: i64) -> QueryPlan {
    let windows = (0..n)
        .map(|i| Window {
            start_ms: i * H,
            end_ms: (i + 1) * H,
            shape: Shape::Bucket,
        })
        .collect();
    query(windows, Some("r/cloud_eye/q"))
}

/// A day, 02:00 to 02:00: hours at the edges, four hours in the middle.
fn day() -> QueryPlan {
    let w = Window {
        start_ms: 2 * H,
        end_ms: 26 * H,
        shape: Shape::Rolling,
    };
    query(vec![w], None)
}

fn collect(q: QueryPlan, api: &Arc<Fake>, cache: Option<&dyn DiscoveryCache>) -> Collection {
    collect_by(q, api, cache, Instant::now() + Duration::from_secs(10))
}

fn collect_by(
    q: QueryPlan,
    api: &Arc<Fake>,
    cache: Option<&dyn DiscoveryCache>,
    deadline: Instant,
) -> Collection {
    let plan = Plan { queries: vec![q] };
    let pinned = Names::default();
    let setup = Setup {
        api: api.clone(),
        cache,
        pinned: &pinned,
        max_series: 10_000,
        discovery_max_age: Duration::from_secs(3600),
    };
    let run = Run {
        concurrency: 1,
        deadline,
        stop: &crate::collect::never_stop,
    };
    let mut source = CloudEye::new(&plan, &setup);
    let mut out = Collection::default();
    while let Some(round) = source.next_round(&run) {
        out.absorb(round);
    }
    out
}

fn counts(out: &Collection) -> Vec<u64> {
    out.cloud_eye()
        .map(|s| s.count("total_tokens").unwrap())
        .collect()
}

fn failed_series(out: &Collection) -> Vec<String> {
    out.failures.iter().map(|f| f.what.to_string()).collect()
}

#[test]
fn a_bucket_on_a_span_boundary_is_counted_once() {
    let out = collect(buckets(3), &Arc::new(Fake::new(1)), None);
    assert_eq!(counts(&out), vec![1, 1, 1]);
    assert_eq!(out.advance.get("r/cloud_eye/q"), Some(&(3 * H)));
    // A day read in three spans: each hour once.
    let out = collect(day(), &Arc::new(Fake::new(1)), None);
    assert_eq!(counts(&out), vec![24]);
}

#[test]
fn a_count_cloud_eye_cannot_have_holds_its_bucket_back_and_is_never_rounded() {
    for (value, why) in [
        (2.5, "is 2.5, not a whole number"),
        (-5.0, "is -5, negative"),
        (f64::NAN, "is not a number"),
        (u64::MAX as f64, "over 10^15"),
    ] {
        let api = Arc::new(Fake {
            value,
            ..Fake::new(1)
        });
        let out = collect(buckets(3), &api, None);
        assert!(
            out.cloud_eye().next().is_none(),
            "{value}: nothing rounded or clamped"
        );
        assert_eq!(out.advance.get("r/cloud_eye/q"), None, "{value}: held back");
        assert_eq!(out.failures.len(), 1, "{value}: {:?}", out.failures);
        let f = &out.failures[0];
        assert!(f
            .what
            .to_string()
            .starts_with("bucket 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z"));
        let e = f.error.to_string();
        assert!(
            e.contains("unusable answer from https://ces.test")
                && e.contains("model=m0: total_tokens at 1970-01-01T00:00:00Z")
                && e.contains(why),
            "{e}"
        );
    }
}

#[test]
fn the_budget_reads_the_series_first_in_line_and_the_rest_fail_by_name_and_come_next() {
    // 1,000 models, a day: 3 spans x (2 + 2 calls of 500 objects) = 12 calls for all.
    let owed = Owed::default();
    let api = Arc::new(Fake {
        budget: 6,
        ..Fake::new(1000)
    });
    let out = collect(day(), &api, Some(&owed));
    assert!(api.calls() <= 6, "{} calls", api.calls());
    assert_eq!(out.cloud_eye().count(), 500, "what 6 calls read whole");
    assert_eq!(out.failures.len(), 500);
    let first_out = out.failures[0].error.to_string();
    assert!(
        first_out.contains("affords 6 of the 12 calls")
            && first_out.contains("first in line next run"),
        "{first_out}"
    );
    assert!(matches!(out.failures[0].error, ApiError::Deferred(_)));
    let left: Vec<String> = failed_series(&out);
    assert_eq!(owed.owed("q").len(), 500);
    // The next run reads them first.
    let api = Arc::new(Fake {
        budget: 6,
        ..Fake::new(1000)
    });
    let out = collect(day(), &api, Some(&owed));
    let read: Vec<String> = out
        .cloud_eye()
        .map(|s| format!("model={}", s.key.model.name))
        .collect();
    assert_eq!(read, left);
    assert_eq!(counts(&out), vec![24; 500]);
    // With nothing to spend, nothing is called and every series says why.
    let api = Arc::new(Fake {
        budget: 0,
        ..Fake::new(3)
    });
    let out = collect(day(), &api, None);
    assert_eq!((api.calls(), out.failures.len()), (0, 3));
}

#[test]
fn a_failed_call_spends_no_more_calls_on_its_series() {
    // One model: 3 spans x 2 filters; the first call fails, the other five would be wasted.
    let api = Arc::new(Fake {
        fails: |n| n == 0,
        ..Fake::new(1)
    });
    let out = collect(day(), &api, None);
    assert_eq!(api.calls(), 1);
    assert_eq!(failed_series(&out), vec!["model=m0"]);
    // Period mode: a span that fails holds its buckets and every later one back, uncalled.
    let api = Arc::new(Fake {
        fails: |n| n == 2,
        ..Fake::new(1000)
    });
    let out = collect(buckets(30), &api, None);
    let calls = api.calls();
    assert_eq!(
        calls, 3,
        "the calls of the spans after the failed one are not made"
    );
    assert!(out.cloud_eye().next().is_none());
    assert_eq!(out.advance.get("r/cloud_eye/q"), None);
}

#[test]
fn an_answer_that_cannot_be_read_fails_like_a_failed_call_and_stops_its_series_calls() {
    // Answers are read where they are folded, while the call's thread goes on: the calls
    // after an unreadable answer stop once it is read, a call or two later at most (one call
    // thread here, with one result waiting), never the rest of the series' six (or the
    // period's twenty).
    let api = Arc::new(Fake {
        unreadable: |n| n == 0,
        ..Fake::new(1)
    });
    let out = collect(day(), &api, None);
    assert!(api.calls() <= 3, "{} calls", api.calls());
    assert_eq!(failed_series(&out), vec!["model=m0"]);
    let api = Arc::new(Fake {
        unreadable: |n| n == 2,
        ..Fake::new(1000)
    });
    let out = collect(buckets(30), &api, None);
    assert!((3..=5).contains(&api.calls()), "{} calls", api.calls());
    assert!(out.cloud_eye().next().is_none());
    assert_eq!(out.advance.get("r/cloud_eye/q"), None);
    // A bug in reading an answer costs that answer's series, as one in a call does, never
    // the run (the reading is no longer on a call thread, whose panics were always caught).
    let api = Arc::new(Fake {
        read_panics: |n| n == 0,
        ..Fake::new(1)
    });
    let out = collect(day(), &api, None);
    assert_eq!(failed_series(&out), vec!["model=m0"]);
}

#[test]
fn period_buckets_the_budget_cannot_afford_wait_for_the_next_run() {
    // 1,000 models and 30 hours: spans of 6 hours, 2 + 2 calls each.
    let api = Arc::new(Fake {
        budget: 9,
        ..Fake::new(1000)
    });
    let out = collect(buckets(30), &api, None);
    assert_eq!(api.calls(), 8);
    assert_eq!(out.cloud_eye().count(), 12 * 1000, "two spans of six hours");
    assert_eq!(out.advance.get("r/cloud_eye/q"), Some(&(12 * H)));
    assert!(out.failures.is_empty());
    assert!(out
        .warnings
        .iter()
        .any(|w| w.contains("the 18 others follow")));
    let api = Arc::new(Fake {
        budget: 3,
        ..Fake::new(1000)
    });
    let out = collect(buckets(30), &api, None);
    assert_eq!(api.calls(), 0);
    assert!(matches!(out.failures[0].error, ApiError::Deferred(_)));
}

#[test]
fn series_the_deadline_cut_off_fail_by_name_and_come_first_next_run() {
    let owed = Owed::default();
    let api = Arc::new(Fake::new(3));
    // The deadline has passed: no call goes out, every series says why and is owed.
    let out = collect_by(day(), &api, Some(&owed), Instant::now());
    assert_eq!(api.calls(), 0);
    assert_eq!(
        failed_series(&out),
        vec!["model=m0", "model=m1", "model=m2"]
    );
    assert!(out
        .failures
        .iter()
        .all(|f| matches!(f.error, ApiError::Deadline { .. })));
    assert!(out.cut_short);
    assert_eq!(owed.owed("q"), vec![model(0), model(1), model(2)]);
    // Collected in full, nothing is owed any more.
    let out = collect(day(), &api, Some(&owed));
    assert_eq!(counts(&out), vec![24; 3]);
    assert!(owed.owed("q").is_empty());
}

/// Keys k1, k2 (team-a) and k3 (no group) of model m, each with a count and a latency.
fn per_key() -> Vec<super::super::Series> {
    use crate::domain::cloud_eye::{CloudEyeKey, Named};
    let named = |id: &str| Named {
        id: id.into(),
        name: id.into(),
    };
    [("k1", 1, 5.0), ("k2", 2, 7.0), ("k3", 4, 1.0)]
        .into_iter()
        .map(|(k, n, ms)| super::super::Series {
            key: CloudEyeKey {
                query: "q".into(),
                model: named("m"),
                api_key: Some(named(k)),
                key_group: None,
            },
            window: Window {
                start_ms: 0,
                end_ms: H,
                shape: Shape::Closed,
            },
            values: vec![
                (
                    metric("total_tokens").unwrap(),
                    super::super::Figure::Count(n),
                ),
                (
                    metric("ttft_p99").unwrap(),
                    super::super::Figure::Millis(ms),
                ),
            ],
            checkpoint: None,
            running: None,
            cost: None,
        })
        .collect()
}

#[test]
fn keys_sum_into_their_groups_and_a_group_missing_a_key_fails_by_name() {
    use super::super::{groups, Figure};
    use crate::plan::cloud_eye::Grouping;
    use crate::spend::groups::Groups;
    let g = Grouping {
        per_model: true,
        groups: Arc::new(Groups::new(&BTreeMap::from([(
            "team-a".to_string(),
            vec!["k1".to_string(), "k2".to_string()],
        )]))),
    };
    let q = query(vec![], None);
    let (series, failures) = groups::sum(&q, &g, per_key(), &[]);
    let got: Vec<(String, Vec<Figure>)> = series
        .iter()
        .map(|s| {
            let figures = s.values.iter().map(|(_, f)| *f).collect();
            (s.key.key_group.clone().unwrap(), figures)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("team-a".into(), vec![Figure::Count(3), Figure::Millis(7.0)]),
            (
                "ungrouped".into(),
                vec![Figure::Count(4), Figure::Millis(1.0)]
            ),
        ]
    );
    assert!(failures.is_empty());
    assert!(series
        .iter()
        .all(|s| s.key.api_key.is_none() && s.key.model.id == "m"));
    // k2 was not read: team-a is not emitted (a part is not the whole), ungrouped is.
    let mut keys = per_key();
    let k2 = keys.remove(1).key;
    let (series, failures) = groups::sum(&q, &g, keys, &[(k2, ApiError::Deferred("later".into()))]);
    let groups: Vec<_> = series.iter().map(|s| s.key.key_group.clone()).collect();
    assert_eq!(groups, [Some("ungrouped".to_string())]);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].what.to_string(), "model=m key_group=team-a");
}
