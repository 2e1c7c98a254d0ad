//! `serve`: collections at start and then every interval, each published to the scrape
//! endpoint when it succeeds; the endpoint answers on its own thread, so a scrape never waits
//! for (or starts) a collection. SIGTERM or SIGINT ends both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{collect_once, signals, Context};
use crate::cmd::error::{Error, Outcome};
use crate::deliver::scrape::Server;
use crate::log;

pub fn serve(ctx: &Context, server: &Server, interval: Duration) -> Result<Outcome, Error> {
    let Some(published) = ctx.published.clone() else {
        return Err(Error::System("serve without a page to publish".into()));
    };
    log::info!("listening on http://{}", server.addr);
    let stopped = || signals::received().is_some();
    // The endpoint could not go on (its workers would not start): no point collecting.
    let broken: Mutex<Option<String>> = Mutex::new(None);
    let ended = AtomicBool::new(false);
    let over = || stopped() || ended.load(Ordering::Relaxed);
    // A first collection that fails on this side (an untrusted certificate, credentials that
    // cannot be sent) will fail the same way every interval: end as `run` would, exit 2.
    let mut ending = Ok(Outcome::Done);
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Err(e) = server.serve(published, interval * 2, &over) {
                *broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            ended.store(true, Ordering::Relaxed);
        });
        let mut next = Instant::now();
        let mut first = true;
        while !over() {
            let now = Instant::now();
            if now < next {
                std::thread::sleep((next - now).min(Duration::from_millis(100)));
                continue;
            }
            // Fixed rate from the starts: a slow collection shortens the pause, never stacks.
            next = now + interval;
            ctx.renew_credentials();
            let outcome = collect_once(ctx, now);
            if std::mem::take(&mut first) {
                match outcome {
                    Ok(Outcome::Misconfigured | Outcome::Invalid) => {
                        ending = Ok(Outcome::Misconfigured);
                        break;
                    }
                    Err(e) if e.is_input() => {
                        ending = Err(e);
                        break;
                    }
                    other => report(other),
                }
            } else {
                report(outcome);
            }
        }
        // The collections are over (a signal, or a configuration that cannot work): the
        // endpoint stops too.
        ended.store(true, Ordering::Relaxed);
    });
    if let Some(why) = broken.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(Error::System(why));
    }
    if let Some(signal) = signals::received() {
        log::info!("stopped by {signal}");
    }
    ending
}

/// One collection's outcome, on stderr; the page keeps the last good collection.
fn report(outcome: Result<Outcome, Error>) {
    match outcome {
        // Held period series were said in an E! line; the rest was published.
        Ok(Outcome::Done | Outcome::PeriodHeld) => {}
        Ok(_) => {
            log::warn!("this collection delivered nothing: scrapes keep the last successful one")
        }
        Err(e) => log::lines(log::Level::Error, e.lines().iter().map(String::as_str)),
    }
}
