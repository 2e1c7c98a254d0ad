//! Executes a plan: calls go out on `concurrency` worker threads (the client's budget spaces
//! them), results come back over a channel, and the run ends at its deadline or on a stop
//! signal with whatever has arrived. Series are then assembled from their segments' answers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub mod models;

use crate::domain::{ApiError, SeriesKey, Shape, StatsAnswer, Usage, Window};
use crate::log;
use crate::plan::Plan;
use crate::time::period::{Checkpoints, ModelRunning, Running, Totals};

/// Something that answers one ShowStatistics body; the cloud client in production, a fake in
/// unit tests.
pub trait Executor: Send + Sync {
    fn execute(&self, body: &[u8], deadline: Instant) -> Result<StatsAnswer, ApiError>;
}

#[derive(Clone, Debug, Serialize)]
pub struct Segment {
    pub start_ms: i64,
    pub end_ms: i64,
    pub usage: Usage,
    pub request_id: Option<String>,
    pub raw: String,
}

/// A collected series: exact totals over its window.
#[derive(Clone, Debug)]
pub struct Series {
    pub key: SeriesKey,
    pub window: Window,
    pub usage: Usage,
    pub segments: Vec<Segment>,
    /// For a period-mode bucket, the checkpoint id of its series.
    pub period: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub key: SeriesKey,
    pub error: ApiError,
}

/// What the plugin reports about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunStats {
    pub series_ok: u64,
    pub series_failed: u64,
    pub api_calls: u64,
    pub api_retries: u64,
    pub throttled: u64,
    pub duration_ms: u64,
    /// When the process's last successful collection started (Unix ms; 0: none yet).
    pub last_success_ms: u64,
    /// Failed collections in a row, this one included (0 when it succeeded).
    pub consecutive_failures: u64,
}

#[derive(Clone, Debug)]
pub struct Collected {
    pub series: Vec<Series>,
    pub failures: Vec<Failure>,
    /// True when the run stopped early (deadline or signal) with calls outstanding.
    pub cut_short: bool,
    /// The signal that stopped the run early, if one did.
    pub stopped_by: Option<&'static str>,
    /// The Cloud Eye queries' series and failures.
    pub models: models::ModelCollected,
}

/// Tells whether (and by which signal) the run was asked to stop.
pub type StopCheck<'a> = &'a dyn Fn() -> Option<&'static str>;

/// A stop check that never stops.
pub fn never_stop() -> Option<&'static str> {
    None
}

/// What a panic carried, in a sentence.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// What a pool of calls came back with: each job's result (`None`: not back by the deadline or
/// the stop signal), and whether (and by which signal) it was cut short.
pub struct Pooled<R> {
    pub results: Vec<Option<Result<R, ApiError>>>,
    pub cut_short: bool,
    pub stopped_by: Option<&'static str>,
}

/// One call of the pool: a job, and the run's deadline.
pub type PoolCall<J, R> = Arc<dyn Fn(&J, Instant) -> Result<R, ApiError> + Send + Sync>;

/// Runs `call` on every job on `concurrency` worker threads until the deadline or a stop
/// signal, with whatever has arrived by then.
pub fn pool<J, R>(
    jobs: Arc<Vec<J>>,
    call: PoolCall<J, R>,
    concurrency: usize,
    deadline: Instant,
    stop: StopCheck<'_>,
) -> Pooled<R>
where
    J: Send + Sync + 'static,
    R: Send + 'static,
{
    let n = jobs.len();
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(usize, Result<R, ApiError>)>();
    for _ in 0..concurrency.clamp(1, n.max(1)) {
        let (jobs, next, tx, call) = (jobs.clone(), next.clone(), tx.clone(), call.clone());
        // Workers are detached: when the deadline or a signal ends the run, the main thread
        // writes what it has and the process exits without waiting for calls in flight.
        let spawned = std::thread::Builder::new()
            .name("maas-call".into())
            .spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() || Instant::now() >= deadline {
                    break;
                }
                // A panic costs this call's series, reported at once, never the run.
                let r = catch_unwind(AssertUnwindSafe(|| call(&jobs[i], deadline)))
                    .unwrap_or_else(|p| Err(ApiError::Internal(panic_message(p.as_ref()))));
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        if spawned.is_err() {
            break;
        }
    }
    drop(tx);

    let mut results: Vec<Option<Result<R, ApiError>>> = (0..n).map(|_| None).collect();
    let mut received = 0;
    let mut stopped_by = None;
    while received < n {
        if let Some(signal) = stop() {
            stopped_by = Some(signal);
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // Short waits so a stop signal is noticed within a fraction of a second.
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(50))) {
            Ok((i, r)) => {
                results[i] = Some(r);
                received += 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Pooled {
        results,
        cut_short: received < n,
        stopped_by,
    }
}

/// Runs every call of `plan` and assembles the series.
pub fn collect(
    plan: &Plan,
    exec: Arc<dyn Executor>,
    concurrency: usize,
    deadline: Instant,
    stop: StopCheck<'_>,
) -> Collected {
    let bodies: Arc<Vec<Arc<[u8]>>> = Arc::new(plan.calls.iter().map(|c| c.body.clone()).collect());
    let Pooled {
        results,
        cut_short,
        stopped_by,
    } = pool(
        bodies,
        Arc::new(move |body: &Arc<[u8]>, deadline| exec.execute(body, deadline)),
        concurrency,
        deadline,
        stop,
    );

    let mut out = Collected {
        series: Vec::new(),
        failures: Vec::new(),
        cut_short,
        stopped_by,
        models: Default::default(),
    };
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
                    failed = Some(match stopped_by {
                        Some(signal) => ApiError::Stopped { signal },
                        None => ApiError::Deadline { last: None },
                    });
                    break;
                }
            }
        }
        match failed {
            None => out.series.push(Series {
                key: s.key.clone(),
                window: s.window,
                usage,
                segments,
                period: s.period.clone(),
            }),
            Some(error) => out.failures.push(Failure {
                key: s.key.clone(),
                error,
            }),
        }
    }
    out
}

/// After a collection: per period series, the buckets delivered are the successful ones up to
/// the first failure (later successes are held back, or the next run would skip the failed
/// bucket or send the later ones twice). Drops the held-back ones from `collected` and returns
/// the new checkpoints, to be written once the output is delivered.
pub fn settle(plan: &Plan, collected: &mut Collected) -> Checkpoints {
    use std::collections::HashSet;
    let done: HashSet<(SeriesKey, i64)> = collected
        .series
        .iter()
        .filter(|s| s.window.shape == Shape::Bucket)
        .map(|s| (s.key.clone(), s.window.start_ms))
        .collect();
    let mut updates = Checkpoints::new();
    let mut blocked: HashSet<&str> = HashSet::new();
    let mut keep: HashSet<(SeriesKey, i64)> = HashSet::new();
    // Plan order is time order within a series.
    for s in plan.series.iter() {
        let Some(id) = s.period.as_deref() else {
            continue;
        };
        if blocked.contains(id) {
            continue;
        }
        let k = (s.key.clone(), s.window.start_ms);
        if done.contains(&k) {
            updates.insert(id.to_string(), s.window.end_ms);
            keep.insert(k);
        } else {
            blocked.insert(id);
        }
    }
    let before = collected.series.len();
    collected.series.retain(|s| {
        s.window.shape != Shape::Bucket || keep.contains(&(s.key.clone(), s.window.start_ms))
    });
    let held = before - collected.series.len();
    if held > 0 {
        log::debug(&format!(
            "{held} bucket(s) held back behind a failed one; they come again next run"
        ));
    }
    updates
}

/// Drops every period bucket from `collected`: their checkpoints cannot be recorded, and sent,
/// they would be sent again at every run.
pub fn drop_buckets(collected: &mut Collected) {
    collected.series.retain(|s| s.window.shape != Shape::Bucket);
    collected
        .models
        .series
        .retain(|s| s.window.shape != Shape::Bucket);
    collected.models.advance.clear();
}

/// Running totals as of each delivered bucket (index-aligned with the collected series and
/// Cloud Eye series, `None` for what is not a bucket), and every total after this collection.
#[derive(Clone, Debug, Default)]
pub struct Accumulated {
    pub series: Vec<Option<Running>>,
    pub models: Vec<Option<ModelRunning>>,
    pub totals: Totals,
}

/// Adds each delivered bucket, in time order, to its series' running total (`stored`, from the
/// state directory).
pub fn accumulate(collected: &Collected, stored: &Totals) -> Accumulated {
    let mut totals = stored.clone();
    let mut series = Vec::with_capacity(collected.series.len());
    for s in &collected.series {
        let Some(id) = s
            .period
            .as_deref()
            .filter(|_| s.window.shape == Shape::Bucket)
        else {
            series.push(None);
            continue;
        };
        let r = Running::add(
            totals.series.get(id),
            &s.key,
            s.window.start_ms,
            s.window.end_ms,
            s.usage,
        );
        totals.series.insert(id.to_string(), r.clone());
        series.push(Some(r));
    }
    let mut models = Vec::with_capacity(collected.models.series.len());
    for s in &collected.models.series {
        let Some(cp) = s
            .checkpoint
            .as_deref()
            .filter(|_| s.window.shape == Shape::Bucket)
        else {
            models.push(None);
            continue;
        };
        let id = s.key.total_id(cp);
        let counts = s.values.iter().filter_map(|(m, f)| match f {
            models::Figure::Count(c) => Some((m.ces.to_string(), *c)),
            models::Figure::Millis(_) => None,
        });
        let latest = s
            .values
            .iter()
            .filter_map(|(m, f)| match f {
                models::Figure::Millis(ms) => Some((m.ces.to_string(), *ms)),
                models::Figure::Count(_) => None,
            })
            .collect();
        let r = ModelRunning::add(
            totals.models.get(&id),
            &s.key,
            s.window.start_ms,
            s.window.end_ms,
            counts,
            latest,
        );
        totals.models.insert(id, r.clone());
        models.push(Some(r));
    }
    Accumulated {
        series,
        models,
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RangeExpr;
    use crate::domain::{InferType, ServiceType};
    use crate::spec::{QuerySpec, Spec};
    use crate::time::zone::Zone;
    use std::sync::Mutex;

    struct Fake {
        seen: Mutex<Vec<Vec<u8>>>,
        fail_on: Option<usize>,
        sleep: Duration,
    }

    impl Executor for Fake {
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
        crate::plan::build(&spec, chrono::Utc::now(), &Zone::utc()).unwrap()
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
        let c = collect(
            &p,
            fake.clone(),
            3,
            Instant::now() + Duration::from_secs(5),
            &never_stop,
        );
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].usage.total_tokens, 3000, "three segments");
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
        let c = collect(
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

    impl Executor for Stuck {
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

    impl Executor for Panicky {
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
        let c = collect(
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
        let c = collect(&p, stuck, 2, started + Duration::from_secs(3600), &|| {
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
        let c = collect(
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
