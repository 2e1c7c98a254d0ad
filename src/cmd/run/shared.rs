//! One collection per interval per coordination group (issue 20): with Redis, the processes
//! of a group (the same spec on many hosts, `serve` replicas) that reach the same interval make
//! one set of calls. The first takes the interval's lease and collects; what it delivered (the
//! data part of its output, already rendered: line protocol or the Prometheus page, no
//! secret in it) is stored in Redis for a few intervals; the others emit that, followed by
//! their own self-metrics (`leader` 0). Under OTLP the leader's export is the group's and is
//! not repeated: a follower sends only its self-metrics. A leader whose collection delivered nothing stores
//! nothing: each process then tries for itself, through the fleet's budget and credential
//! gate. Period specs are not shared this way: their buckets go once per destination through
//! the fenced checkpoints.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{deliver, lock, Context};
use crate::cmd::error::{Error, Outcome};
use crate::collect::{Collection, RunStats};
use crate::deliver::scrape::Page;
use crate::emit::Report;
use crate::log;
use crate::spec::Format;
use crate::state::store::{Claim, Lead};
use crate::time::period::Totals;

/// The interval of `run` (one collection): the minute, Telegraf's usual interval for this
/// plugin and the API's budget window.
pub const RUN_INTERVAL: Duration = Duration::from_secs(60);

/// How long a stored collection is kept, in intervals (a follower late by less finds it).
const KEPT_INTERVALS: u32 = 3;

/// How a process shares its collections with its group.
pub struct Sharing {
    /// What is shared: the output's kind (a group's processes with other outputs share
    /// nothing with them).
    kind: &'static str,
    interval: Duration,
    /// `serve` and `--execd` collect again and again: their interval is the clock's. A run's
    /// is its `--now` (the clock's without one).
    repeats: bool,
    /// Times this process took the collection over: after following another, or from a
    /// leader that held the lease and died without storing.
    failovers: AtomicU64,
    /// Whether the last collection of this process followed another's.
    followed: AtomicBool,
}

impl Sharing {
    /// How `run`, `--execd` or `serve` (`interval`) shares its collections: `None` without a
    /// coordination engine, for period specs, and for outputs other than line protocol,
    /// Prometheus and OTLP (each process then collects: JSON and the table are for people).
    pub fn of(
        engine: bool,
        period: bool,
        format: Format,
        serve: Option<Duration>,
        execd: bool,
    ) -> Option<Sharing> {
        if !engine || period {
            return None;
        }
        let kind = match (serve, format) {
            (Some(_), _) => "serve",
            (None, Format::Influx) => "influx",
            (None, Format::Prometheus) => "prometheus",
            // A push to a collector: the leader's export is the group's; a follower sends only
            // its own self-metrics (no series twice at the destination).
            (None, Format::Otlp) => "otlp",
            _ => return None,
        };
        Some(Sharing {
            kind,
            interval: serve.unwrap_or(RUN_INTERVAL),
            repeats: serve.is_some() || execd,
            failovers: AtomicU64::new(0),
            followed: AtomicBool::new(false),
        })
    }

    /// The name of the interval `now_ms` falls in (its start, aligned on the clock).
    fn interval_at(&self, now_ms: i64) -> String {
        let len = self.interval.as_millis().max(1) as i64;
        let start = now_ms - now_ms.rem_euclid(len);
        format!("{}/{start}/{len}", self.kind)
    }
}

/// What a process stores for its group: the data part of what it delivered, and how the
/// collection of each cloud went (a follower's self-metrics say the same counts).
#[derive(Serialize, Deserialize)]
pub struct Stored {
    text: String,
    openmetrics: String,
    /// Per cloud: series collected, series failed, whether it delivered fresh data.
    clouds: Vec<(u64, u64, bool)>,
}

/// What the group said for this collection.
pub enum Role {
    /// No group: collect alone.
    Alone,
    Lead(Lead),
    /// Emit this, collected by another process.
    Follow(Box<Stored>),
}

/// Claims this interval's collection for `ctx`'s group; a collection that cannot wait longer
/// (`limits.timeout`) for a leader that stores nothing is an error.
pub fn claim(ctx: &Context, started: Instant) -> Result<Role, Error> {
    let (Some(sharing), Some(store)) = (&ctx.sharing, ctx.store.collections()) else {
        return Ok(Role::Alone);
    };
    let now_ms = if sharing.repeats {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    } else {
        ctx.settings.now().timestamp_millis()
    };
    let interval = sharing.interval_at(now_ms);
    let stop = || super::signals::received().is_some();
    // The follower's own delivery needs little time: it may wait for most of the run.
    let deadline = started + ctx.spec.limits.timeout * 3 / 4;
    match store.claim(&interval, deadline, &stop) {
        Ok(Claim::Lead(lead)) => {
            if lead.took_over || sharing.followed.swap(false, Ordering::Relaxed) {
                sharing.failovers.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "this process takes over the collections of coordination group {}",
                    group(ctx)
                );
            }
            Ok(Role::Lead(lead))
        }
        Ok(Claim::Stored(json)) => match serde_json::from_str::<Stored>(&json) {
            Ok(s) if s.clouds.len() == ctx.clouds.len() => {
                sharing.followed.store(true, Ordering::Relaxed);
                Ok(Role::Follow(Box::new(s)))
            }
            _ => {
                log::warn!("the stored collection of this interval cannot be read: this process collects alone");
                Ok(Role::Alone)
            }
        },
        Ok(Claim::Waited) => Err(Error::System(format!(
            "another process of coordination group {} held this interval's collection past limits.timeout and stored nothing: nothing is delivered this time",
            group(ctx)
        ))),
        Err(why) => {
            // The budget and the gate refuse every call without the engine (or use the state
            // directory under on_unavailable: local): collecting alone costs nothing more.
            crate::state::fleet::say_failed(
                ctx.settings.state.redis.as_ref().map_or("", |r| r.url.as_str()),
                &why,
            );
            Ok(Role::Alone)
        }
    }
}

fn group(ctx: &Context) -> &str {
    ctx.settings
        .state
        .redis
        .as_ref()
        .map_or("", |r| r.group.as_str())
}

/// The engine's round trip and this process's failovers, for the self-metrics.
pub fn fill(ctx: &Context, stats: &mut RunStats, leader: bool) {
    stats.leader = u64::from(leader);
    if let (Some(sharing), Some(store)) = (&ctx.sharing, ctx.store.collections()) {
        stats.engine_round_trip_us = store.round_trip().as_micros() as u64;
        stats.failovers = sharing.failovers.load(Ordering::Relaxed);
    }
}

/// After the leader's delivery: stores its data part when some cloud delivered fresh data,
/// else lets the lease go.
pub fn store(ctx: &Context, lead: Lead, data: Option<Page>, stats: &[(bool, RunStats)]) {
    let (Some(sharing), Some(store)) = (&ctx.sharing, ctx.store.collections()) else {
        return;
    };
    let clouds: Vec<(u64, u64, bool)> = stats
        .iter()
        .map(|(ok, s)| (s.series_ok, s.series_failed, *ok))
        .collect();
    // Dropped unstored, the lead lets the lease go.
    let Some(data) = data.filter(|_| clouds.iter().any(|c| c.2)) else {
        return;
    };
    let stored = Stored {
        text: data.text,
        openmetrics: data.openmetrics,
        clouds,
    };
    let Ok(json) = serde_json::to_string(&stored) else {
        return;
    };
    if let Err(e) = store.store(&lead, &json, sharing.interval * KEPT_INTERVALS) {
        log::warn!("this collection is not shared with the coordination group: {e}");
    }
}

/// A follower's collection: the group's stored data, then this process's self-metrics.
pub fn follow(ctx: &Context, stored: Stored, started: Instant) -> Result<Outcome, Error> {
    let (empty, totals) = (Collection::default(), Totals::default());
    let conns: Vec<_> = ctx.clouds.iter().map(|c| c.conn()).collect();
    let now = ctx.settings.now();
    let mut any = false;
    let mut reports = Vec::new();
    for ((cloud, conn), (ok_n, failed_n, ok)) in ctx.clouds.iter().zip(&conns).zip(&stored.clouds) {
        any |= *ok;
        let (last_success_ms, consecutive_failures) = lock(&cloud.health).record(*ok, started);
        let mut stats = RunStats {
            series_ok: *ok_n,
            series_failed: *failed_n,
            duration_ms: started.elapsed().as_millis() as u64,
            last_success_ms,
            consecutive_failures,
            ..RunStats::default()
        };
        fill(ctx, &mut stats, false);
        reports.push(Report {
            collection: &empty,
            stats,
            cloud: cloud.name.as_deref(),
            region: conn
                .as_ref()
                .map_or(&ctx.settings.clouds[cloud.index].region, |c| &c.region),
            project_id: conn.as_ref().map_or("", |c| c.project_id.as_str()),
            zone: &ctx.settings.zone,
            now,
            origin: &ctx.origin,
            totals: &totals,
        });
    }
    let data = Page {
        text: stored.text,
        openmetrics: stored.openmetrics,
    };
    deliver::deliver_stored(ctx, data, &reports, started + ctx.spec.limits.timeout)?;
    Ok(match any {
        true => Outcome::Done,
        false => Outcome::NothingCollected,
    })
}
