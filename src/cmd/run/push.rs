//! An OTLP push of period buckets as they come. Each round's buckets go in requests of whole
//! buckets, oldest first (a query's checkpoint moves a bucket at a time, for all its series),
//! of at most [`PUSH_FIGURES`] figures unless one bucket holds more. Each request's checkpoints
//! and running totals are prepared before it goes and put in force as soon as the collector
//! accepted it: a request refused, or a stop signal, costs no accepted bucket twice, and a
//! request (and what the run holds to build it) stays small whatever the backfill.

use std::time::Instant;

use super::stream::Progress;
use super::{deliver, period, signals, Context};
use crate::cmd::error::Error;
use crate::cmd::hooks;
use crate::collect::{Collection, Series};
use crate::time::period::{move_forward, Totals};

/// The most figures (data points) of period buckets in one request, unless a single bucket
/// holds more: at about 300 bytes a point, 2.5 MB of protobuf, under a gRPC collector's
/// default 4 MiB message (a bucket of 1,000 series of 13 metrics alone is 4.0 MB).
pub const PUSH_FIGURES: usize = 8_192;

/// Pushes `round`'s period buckets through `send` (each request's series and the running
/// totals as of them), committing each request once accepted; its other series stay in it.
/// Buckets held back (checkpoints that cannot be recorded) are dropped, said once by
/// `prepare`. A request that fails is the error: what was accepted before it stays recorded. A
/// stop signal ends the round after the request in flight.
pub fn round(
    ctx: &Context,
    period: &mut period::Period,
    progress: &mut Progress,
    (round, deadline): (&mut Collection, Instant),
    send: &mut dyn FnMut(&Collection, &Totals) -> Result<(), Error>,
) -> Result<(), Error> {
    if progress.held {
        round.drop_buckets();
    }
    let totals = round.accumulate(&progress.totals);
    let (mut buckets, rest): (Vec<Series>, Vec<Series>) = std::mem::take(&mut round.series)
        .into_iter()
        .partition(Series::is_bucket);
    round.series = rest;
    // Oldest first, the series of one bucket together (the sort is stable).
    buckets.sort_by_key(|s| s.window().end_ms);
    for request in requests(buckets) {
        if signals::stopping() {
            // Stopped: what was accepted is recorded; the rest of the round comes next run.
            round.advance.clear();
            return Ok(());
        }
        let (mut next, mut next_totals) = (progress.advance.clone(), progress.totals.clone());
        for s in &request {
            s.record_running(&mut next_totals);
            if let Some(id) = s.checkpoint() {
                move_forward(&mut next, id, s.window().end_ms);
            }
        }
        let Some(prepared) = progress.prepare(ctx, period, &next, &next_totals) else {
            round.advance.clear();
            return Ok(());
        };
        let request = Collection {
            series: request,
            ..Collection::default()
        };
        {
            // The push and its commit are let finish by a stop signal (see `signals`).
            let _delivering = signals::delivering(deadline);
            send(&request, &next_totals)?;
            deliver::commit(ctx, prepared);
        }
        round.delivered += request.series.len();
        (progress.advance, progress.totals) = (next, next_totals);
    }
    // What the round recorded of no series (a bucket of a query without any) goes in force too.
    let next = progress.ahead(&round.advance);
    round.advance.clear();
    if next != progress.advance {
        let Some(prepared) = progress.prepare(ctx, period, &next, &totals) else {
            return Ok(());
        };
        deliver::commit(ctx, prepared);
        progress.advance = next;
    }
    progress.totals = totals;
    Ok(())
}

/// `buckets` (oldest first, a bucket's series together) cut into requests of whole buckets of
/// at most [`PUSH_FIGURES`] figures, at least one bucket each.
fn requests(buckets: Vec<Series>) -> Vec<Vec<Series>> {
    let sizes: Vec<(i64, usize)> = buckets
        .iter()
        .map(|s| (s.window().end_ms, s.figures()))
        .collect();
    let mut rest = buckets.into_iter();
    cuts(&sizes, hooks::push_figures(PUSH_FIGURES))
        .into_iter()
        .map(|n| rest.by_ref().take(n).collect())
        .collect()
}

/// How many of `series` (each its bucket's end and its figures, a bucket's series together)
/// go in each request: whole buckets, at most `most` figures unless one bucket holds more.
fn cuts(series: &[(i64, usize)], most: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut figures = 0;
    for bucket in series.chunk_by(|a, b| a.0 == b.0) {
        let size: usize = bucket.iter().map(|(_, f)| f).sum();
        match out.last_mut() {
            Some(n) if figures + size <= most => {
                *n += bucket.len();
                figures += size;
            }
            _ => {
                out.push(bucket.len());
                figures = size;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_hold_whole_buckets_within_the_figures() {
        let series = [(1, 4), (1, 4), (2, 4), (2, 4), (3, 20), (4, 1)];
        assert_eq!(cuts(&series, 16), vec![4, 1, 1]);
        assert_eq!(cuts(&series, 8), vec![2, 2, 1, 1]);
        assert_eq!(cuts(&series, 100), vec![6]);
        assert_eq!(cuts(&[], 8), Vec::<usize>::new());
    }

    proptest! {
        /// Every series goes in one request, in order; no bucket is cut; a request over the
        /// figures holds a single bucket.
        #[test]
        fn every_series_once_and_no_bucket_cut(
            sizes in proptest::collection::vec((0i64..6, 1usize..30), 0..40),
            most in 1usize..60,
        ) {
            let mut series = sizes;
            series.sort_by_key(|s| s.0);
            let cut = cuts(&series, most);
            prop_assert_eq!(cut.iter().sum::<usize>(), series.len());
            let mut at = 0;
            for n in cut {
                prop_assert!(n > 0);
                let request = &series[at..at + n];
                if at > 0 {
                    prop_assert_ne!(series[at - 1].0, request[0].0, "a bucket cut");
                }
                let figures: usize = request.iter().map(|s| s.1).sum();
                let buckets = request.chunk_by(|a, b| a.0 == b.0).count();
                prop_assert!(figures <= most || buckets == 1);
                at += n;
            }
        }
    }
}
