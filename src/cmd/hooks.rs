//! Test hooks: switches the integration tests use to reach states a real run reaches only by
//! bad luck (a kill between delivery and checkpoint) or slowly (a minute-long budget window).
//! They exist only in builds with the `test-hooks` feature, which the test suite enables;
//! release builds read no such variable.

use std::time::Duration;

/// `MAAS_USAGE_RATE_WINDOW_MS`: the request budget's base window, shrunk for tests.
pub fn rate_window() -> Option<Duration> {
    if cfg!(feature = "test-hooks") {
        crate::env::process("MAAS_USAGE_RATE_WINDOW_MS")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    } else {
        None
    }
}

/// `MAAS_USAGE_TEST_CRASH_BEFORE_CHECKPOINT`: die between delivery and the checkpoint commit,
/// as a SIGKILL would.
pub fn crash_before_checkpoint() {
    if cfg!(feature = "test-hooks")
        && crate::env::process("MAAS_USAGE_TEST_CRASH_BEFORE_CHECKPOINT").is_some()
    {
        std::process::abort();
    }
}

/// `MAAS_USAGE_TEST_STOP_BEFORE_PREPARE`: stop (SIGSTOP to itself) once collected, before the
/// period checkpoints are prepared, as a long GC pause or a frozen VM would; the test sends
/// SIGCONT when it wants the process back.
pub fn stop_before_prepare() {
    if cfg!(feature = "test-hooks")
        && crate::env::process("MAAS_USAGE_TEST_STOP_BEFORE_PREPARE").is_some()
    {
        let _ = signal_hook::low_level::raise(signal_hook::consts::SIGSTOP);
    }
}

/// `MAAS_USAGE_TEST_PUSH_FIGURES`: OTLP pushes of period buckets of at most this many
/// figures instead of `figures`, so that a test's small collection takes several.
pub fn push_figures(figures: usize) -> usize {
    let hook = cfg!(feature = "test-hooks")
        .then(|| {
            crate::env::process("MAAS_USAGE_TEST_PUSH_FIGURES")?
                .parse()
                .ok()
        })
        .flatten();
    hook.unwrap_or(figures)
}
