//! `run --execd`: Telegraf's `inputs.execd` with `signal = "STDIN"` writes a line at every
//! interval; each line is one collection, whose time limit and `duration_ms` start when its line
//! arrives. End of input means Telegraf is done with us; a stdout that cannot be written (closed,
//! or a full disk behind it) means nobody gets the batches, and ends the loop (exit 1).

use std::io::BufRead;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::{collect_once, signals, Context};
use crate::cmd::error::{Error, Outcome};
use crate::log;

pub fn serve(ctx: &Context) -> Result<Outcome, Error> {
    // Lines are read on their own thread so a stop signal is noticed while waiting for one.
    let (tx, rx) = mpsc::channel::<Instant>();
    let _ = std::thread::Builder::new()
        .name("execd-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                if line.is_err() || tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        });
    while signals::received().is_none() {
        let arrived = match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(t) => t,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        ctx.renew_credentials();
        match collect_once(ctx, arrived) {
            Ok(_) => {}
            // Nobody gets the output any more: stop at the first batch lost.
            Err(Error::Write(e)) if e.is_stdout() => return Err(Error::Write(e)),
            Err(e) => log::lines(log::Level::Error, e.lines().iter().map(String::as_str)),
        }
    }
    Ok(Outcome::Done)
}
