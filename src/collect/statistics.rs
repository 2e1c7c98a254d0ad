//! The ShowStatistics source: the plan's calls made once each on the pool, each series the
//! exact sum of its segments' answers, and in period mode the buckets delivered in order up to
//! the first that failed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::pool::{pool_all, Collected};
use super::{Collection, Failure, Run, Source, SourceId};
use crate::domain::{ApiError, SeriesKey, StatsAnswer, Usage, Window};
use crate::log;
use crate::plan::statistics::Plan;
use crate::time::period::{Running, Totals};

/// Something that answers one ShowStatistics body; the cloud client in production, a fake in
/// unit tests.
pub trait Api: Send + Sync {
    fn execute(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError>;
}

/// One call's share of a series: its stretch of the window and what it answered.
#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub start_ms: i64,
    pub end_ms: i64,
    pub usage: Usage,
    pub request_id: Option<String>,
    pub raw: String,
}

/// A collected ShowStatistics series: exact totals over its window.
#[derive(Clone, Debug)]
pub struct Series {
    pub key: SeriesKey,
    pub window: Window,
    pub usage: Usage,
    pub segments: Vec<Segment>,
    /// For a period-mode bucket, the checkpoint id of its series.
    pub checkpoint: Option<String>,
    /// For a delivered period bucket, its series' running total as of this bucket.
    pub running: Option<Running>,
}

impl Series {
    /// Adds this period bucket to its series' running total.
    pub(super) fn accumulate(&mut self, totals: &mut Totals) {
        let Some(id) = self.checkpoint.as_deref() else {
            return;
        };
        let r = Running::add(
            totals.series.get(id),
            &self.key,
            self.window.start_ms,
            self.window.end_ms,
            self.usage,
        );
        totals.series.insert(id.to_string(), r.clone());
        self.running = Some(r);
    }
}

/// `service_type=.. infer_type=.. key_group=..`: a series in a failure line, after its query.
pub fn subject(key: &SeriesKey) -> Vec<(&'static str, String)> {
    vec![
        ("service_type", key.service_type.name().to_string()),
        ("infer_type", key.infer_type.name().to_string()),
        ("key_group", key.key_group.clone()),
    ]
}

/// The ShowStatistics part of a run.
pub struct Statistics<'a> {
    plan: &'a Plan,
    api: Arc<dyn Api>,
    done: bool,
}

impl<'a> Statistics<'a> {
    pub fn new(plan: &'a Plan, api: Arc<dyn Api>) -> Self {
        Statistics {
            plan,
            api,
            done: false,
        }
    }
}

impl Source for Statistics<'_> {
    fn id(&self) -> SourceId {
        SourceId::Statistics
    }

    /// Everything in one round: its calls are few (one per series and 30 days), and the plan
    /// took only the period buckets its budget affords.
    fn next_round(&mut self, run: &Run<'_>) -> Option<Collection> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        Some(collect(self.plan, self.api.clone(), run))
    }
}

/// Runs every call of `plan` and assembles the series; a period series' buckets after one that
/// failed are held back (sent, the next run would skip the failed bucket or send them twice).
fn collect(plan: &Plan, api: Arc<dyn Api>, run: &Run<'_>) -> Collection {
    let bodies: Arc<Vec<Arc<[u8]>>> = Arc::new(plan.calls.iter().map(|c| c.body.clone()).collect());
    let Collected {
        results,
        cut_short,
        stopped_by,
    } = pool_all(
        bodies,
        Arc::new(move |body: &Arc<[u8]>, deadline| api.execute(body, deadline)),
        run.concurrency,
        run.deadline,
        run.stop,
    );
    let mut out = Collection {
        cut_short,
        stopped_by,
        ..Collection::default()
    };
    // Period series behind a failed bucket: their later buckets wait for it.
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut held = 0;
    for s in &plan.series {
        let mut usage = Usage::default();
        let mut segments = Vec::with_capacity(s.calls.len());
        let mut failed = None;
        for &ci in &s.calls {
            match &results[ci] {
                Some(Ok(a)) => {
                    usage += a.usage;
                    let c = &plan.calls[ci];
                    segments.push(Segment {
                        start_ms: c.start_ms,
                        end_ms: c.end_ms,
                        usage: a.usage,
                        request_id: a.request_id.clone(),
                        raw: a.raw.clone(),
                    });
                }
                Some(Err(e)) => {
                    failed = Some(e.clone());
                    break;
                }
                None => {
                    failed = Some(run.unfinished(stopped_by));
                    break;
                }
            }
        }
        let period = s.period.as_deref();
        match failed {
            Some(error) => {
                period.map(|id| blocked.insert(id));
                out.failures.push(Failure::series(
                    SourceId::Statistics,
                    &s.key.query,
                    subject(&s.key),
                    error,
                ));
            }
            None if period.is_some_and(|id| blocked.contains(id)) => held += 1,
            None => {
                if let Some(id) = period {
                    out.advance.insert(id.to_string(), s.window.end_ms);
                }
                out.series.push(super::Series::Statistics(Series {
                    key: s.key.clone(),
                    window: s.window,
                    usage,
                    segments,
                    checkpoint: s.period.clone(),
                    running: None,
                }));
            }
        }
    }
    if held > 0 {
        log::debug!("{held} bucket(s) held back behind a failed one; they come again next run");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::never_stop;
    use crate::domain::RangeExpr;
    use crate::domain::{InferType, ServiceType};
    use crate::spec::{QuerySpec, Spec};
    use crate::time::zone::Zone;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    struct Fake {
        seen: Mutex<Vec<Vec<u8>>>,
        fail_on: Option<usize>,
        sleep: Duration,
    }

    impl Api for Fake {
        fn execute(&self, body: &[u8], _deadline: Instant) -> Result<StatsAnswer, ApiError> {
            std::thread::sleep(self.sleep);
            let mut seen = self.seen.lock().unwrap();
            seen.push(body.to_vec());
            if Some(seen.len()) == self.fail_on {
                return Err(ApiError::Setup("boom".into()));
            }
            Ok(StatsAnswer {
                usage: Usage {
                    total_tokens: 1000,
                    requests: 2,
                    ..Default::default()
                },
                raw: "{}".into(),
                request_id: None,
            })
        }
    }

    /// Collects `plan` on `concurrency` threads until `deadline` or `stop`.
    fn go(
        plan: &Plan,
        api: Arc<dyn Api>,
        concurrency: usize,
        deadline: Instant,
        stop: crate::collect::StopCheck<'_>,
    ) -> Collection {
        collect(
            plan,
            api,
            &Run {
                concurrency,
                deadline,
                stop,
            },
        )
    }

    fn plan(days: u32) -> Plan {
        let spec = Spec {
            queries: vec![QuerySpec {
                name: "q".into(),
                clouds: None,
                range: RangeExpr::LastDays(days),
                service_types: vec![ServiceType::Preset, ServiceType::MyService],
                infer_type: InferType::RealTime,
                key_groups: None,
                ips: None,
                source: Default::default(),
            }],
            ..Default::default()
        };
        crate::plan::build(&spec, chrono::Utc::now(), &Zone::utc())
            .unwrap()
            .statistics()
            .clone()
    }

    #[test]
    fn segments_are_summed_as_integers() {
        // Plans clamp windows to the 30-day retention (one call each), so the three segments
        // of each series are made here.
        let mut p = plan(7);
        for si in 0..p.series.len() {
            for _ in 0..2 {
                let call = p.calls[p.series[si].calls[0]].clone();
                p.calls.push(call);
                p.series[si].calls.push(p.calls.len() - 1);
            }
        }
        let fake = Arc::new(Fake {
            seen: Mutex::new(vec![]),
            fail_on: None,
            sleep: Duration::ZERO,
        });
        let c = go(
            &p,
            fake.clone(),
            3,
            Instant::now() + Duration::from_secs(5),
            &never_stop,
        );
        assert_eq!(c.series.len(), 2);
        let first = c.statistics().next().unwrap();
        assert_eq!(first.usage.total_tokens, 3000, "three segments");
        assert_eq!(fake.seen.lock().unwrap().len(), 6);
        assert!(!c.cut_short);
    }

    #[test]
    fn a_failed_segment_fails_only_its_series() {
        let p = plan(7);
        let fake = Arc::new(Fake {
            seen: Mutex::new(vec![]),
            fail_on: Some(1),
            sleep: Duration::ZERO,
        });
        let c = go(
            &p,
            fake,
            1,
            Instant::now() + Duration::from_secs(5),
            &never_stop,
        );
        assert_eq!((c.series.len(), c.failures.len()), (1, 1));
    }

    /// Answers the first `answered` calls at once and never answers the others.
    struct Stuck {
        answered: usize,
        seen: AtomicUsize,
    }

    impl Api for Stuck {
        fn execute(&self, _body: &[u8], _deadline: Instant) -> Result<StatsAnswer, ApiError> {
            if self.seen.fetch_add(1, Ordering::SeqCst) >= self.answered {
                std::thread::sleep(Duration::from_secs(3600));
            }
            Ok(StatsAnswer {
                usage: Usage::default(),
                raw: "{}".into(),
                request_id: None,
            })
        }
    }

    /// Panics on its first call.
    struct Panicky(AtomicUsize);

    impl Api for Panicky {
        fn execute(&self, _body: &[u8], _deadline: Instant) -> Result<StatsAnswer, ApiError> {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("simulated bug");
            }
            Ok(StatsAnswer {
                usage: Usage::default(),
                raw: "{}".into(),
                request_id: None,
            })
        }
    }

    #[test]
    fn the_deadline_ends_the_run_with_what_it_has() {
        let p = plan(7);
        let stuck = Arc::new(Stuck {
            answered: 1,
            seen: AtomicUsize::new(0),
        });
        // The first call is answered at once; the deadline ends the wait for the second.
        let c = go(
            &p,
            stuck,
            1,
            Instant::now() + Duration::from_secs(3),
            &never_stop,
        );
        assert_eq!(c.series.len(), 1);
        assert!(matches!(c.failures[0].error, ApiError::Deadline { .. }));
        assert!(c.cut_short);
        assert_eq!(c.stopped_by, None);
    }

    #[test]
    fn a_stop_signal_ends_the_run_and_is_named() {
        let p = plan(7);
        let stuck = Arc::new(Stuck {
            answered: 0,
            seen: AtomicUsize::new(0),
        });
        let started = Instant::now();
        let c = go(&p, stuck, 2, started + Duration::from_secs(3600), &|| {
            Some("SIGTERM")
        });
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not at the deadline"
        );
        assert_eq!(c.failures.len(), 2);
        assert_eq!(c.stopped_by, Some("SIGTERM"));
        let msg = c.failures[0].error.to_string();
        assert!(msg.contains("stopped by SIGTERM"), "{msg}");
        assert!(!msg.contains("limits.timeout"), "{msg}");
    }

    #[test]
    fn a_panicking_call_fails_its_series_at_once() {
        let p = plan(7);
        let started = Instant::now();
        let c = go(
            &p,
            Arc::new(Panicky(AtomicUsize::new(0))),
            2,
            started + Duration::from_secs(3600),
            &never_stop,
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not at the deadline"
        );
        assert_eq!((c.series.len(), c.failures.len()), (1, 1));
        assert!(
            matches!(&c.failures[0].error, ApiError::Internal(m) if m.contains("simulated bug"))
        );
        assert!(!c.cut_short);
    }
}
