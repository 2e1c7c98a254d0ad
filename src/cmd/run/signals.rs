//! Stop signals. SIGTERM is what Telegraf's exec timeout sends before SIGKILL (5 s later): the
//! collection stops, what was collected is written, and the process exits 0, which Telegraf
//! counts as a success. A watchdog makes sure the process is gone within a second even when the
//! main thread is stuck in a call (project discovery); it takes the stdout lock first, so a
//! batch being written is finished, never cut.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use crate::log;

/// The stop signal received (its number), 0 while none.
static STOP: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

pub fn install() {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if signal_hook::flag::register_usize(sig, STOP.clone(), sig as usize).is_err() {
            log::debug("cannot install the SIGTERM handler");
        }
    }
    let _ = std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(|| {
            while received().is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(900));
            let _out = std::io::stdout().lock();
            log::warn(&format!(
                "stopped by {} before the run could finish writing; exiting",
                received().unwrap_or("a signal")
            ));
            std::process::exit(0);
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
