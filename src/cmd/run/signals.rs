//! Stop signals. SIGTERM is what Telegraf's exec timeout sends before SIGKILL (5 s later): the
//! collection stops, what was collected is written, and the process exits 0, which Telegraf
//! counts as a success. Waits (calls, the period lock) notice the signal and give up, so the run
//! ends through its normal path and exit code.
//!
//! A watchdog makes sure the process is gone within a second even when the main thread is stuck
//! in a call that cannot notice (project discovery). A delivery in progress (the output written
//! or pushed, then the checkpoints committed) is let finish, until its own deadline: cutting it
//! would leave data the collector has without the checkpoint that says so, and the next run
//! would send them again. The watchdog takes the stdout lock first, so a batch being written is
//! finished, never cut, and exits with the status the exit-code map gives a stopped run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::cmd::error::{self, Outcome};
use crate::log;

/// The stop signal received (its number), 0 while none.
static STOP: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// How long the main thread has, after a signal or after a delivery ends, to finish on its own.
const GRACE: Duration = Duration::from_millis(900);

/// The delivery in progress, if any, and when the last one ended.
#[derive(Default)]
struct Delivery {
    /// The deadline of the delivery in progress.
    until: Option<Instant>,
    ended: Option<Instant>,
}

static DELIVERY: Mutex<Delivery> = Mutex::new(Delivery {
    until: None,
    ended: None,
});

fn delivery() -> MutexGuard<'static, Delivery> {
    DELIVERY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A delivery in progress while it lives (see [`delivering`]).
pub struct Delivering(());

impl Drop for Delivering {
    fn drop(&mut self) {
        let mut d = delivery();
        d.until = None;
        d.ended = Some(Instant::now());
    }
}

/// Marks a delivery (output, then checkpoint commit) in progress until the returned guard
/// drops: a stop signal then waits for it, until `deadline` at most.
pub fn delivering(deadline: Instant) -> Delivering {
    delivery().until = Some(deadline);
    Delivering(())
}

/// Whether the watchdog should still wait, `signalled` being when it saw the signal: while a
/// delivery is in progress and before its deadline, and for a grace period after the signal
/// and after the last delivery ended.
fn keep_waiting(now: Instant, signalled: Instant) -> bool {
    let d = delivery();
    if d.until.is_some_and(|until| now < until) {
        return true;
    }
    let quiet_since = d.ended.map_or(signalled, |e| e.max(signalled));
    now.saturating_duration_since(quiet_since) < GRACE
}

pub fn install() {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if signal_hook::flag::register_usize(sig, STOP.clone(), sig as usize).is_err() {
            log::debug!("cannot install the SIGTERM handler");
        }
    }
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            while received().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            let signalled = Instant::now();
            while keep_waiting(Instant::now(), signalled) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _out = std::io::stdout().lock();
            log::warn!(
                "stopped by {} before the run could finish writing; exiting",
                received().unwrap_or("a signal")
            );
            // What a stopped run exits with (see `run_spec`).
            std::process::exit(i32::from(error::status(&Ok(Outcome::Done))));
        });
}

/// The stop signal received, by name.
pub fn received() -> Option<&'static str> {
    match STOP.load(Ordering::Relaxed) {
        0 => None,
        n if n == signal_hook::consts::SIGINT as usize => Some("SIGINT"),
        _ => Some("SIGTERM"),
    }
}

/// Whether a stop signal was received.
pub fn stopping() -> bool {
    received().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_in_progress_is_waited_for_until_its_deadline_then_given_a_grace() {
        let t0 = Instant::now();
        let signalled = t0;
        let long_after = t0 + GRACE * 10;
        assert!(keep_waiting(t0, signalled), "the grace after the signal");
        assert!(!keep_waiting(long_after, signalled));
        let guard = delivering(t0 + GRACE * 100);
        assert!(
            keep_waiting(long_after, signalled),
            "a delivery in progress"
        );
        assert!(
            !keep_waiting(t0 + GRACE * 101, signalled),
            "not past its deadline"
        );
        drop(guard);
        let ended = delivery().ended.unwrap();
        assert!(keep_waiting(ended, signalled), "a grace after it ends");
        assert!(!keep_waiting(ended + GRACE, signalled));
    }
}
