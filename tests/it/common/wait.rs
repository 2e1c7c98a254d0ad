//! Waiting for an event, never for a length of time: a test polls for what it waits for (a
//! request the simulator counted, a file, a port answering, a child's exit) with `wait_until`
//! or `wait_for`, or blocks on it (a line on stderr, bytes on a socket). `PATIENCE` only bounds
//! a failure: nothing is asserted about how soon the event came. Any other sleep in tests/it
//! says why it is not waiting for an event in a `sleep allowed:` comment right above it
//! (`the_tests_sleep_only_where_they_say_why` in tests/it/architecture.rs).

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Generous: these bound waiting for something that happens, they are not margins asserted.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often a condition is looked at again.
const POLL: Duration = Duration::from_millis(20);

/// Returns once `done()` holds; fails the test naming `what` after `PATIENCE`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    wait_for(what, || done().then_some(()));
}

/// The first `Some` that `probe()` gives; fails the test naming `what` after `PATIENCE`.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if Instant::now() >= until {
            panic!("waited {PATIENCE:?} for {what}");
        }
        // sleep allowed: the pause between two looks at the condition.
        std::thread::sleep(POLL);
    }
}

/// The exit status of `child`, which must end by itself (a hang is killed and fails the test,
/// naming `what`).
pub fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("waited {PATIENCE:?} for {what}");
        }
        // sleep allowed: the pause between two looks at the child.
        std::thread::sleep(POLL);
    }
}
