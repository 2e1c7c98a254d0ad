//! Which of a query's windows holds a datapoint: by arithmetic when the windows are of one
//! length end to end (hourly buckets, days in a zone without a clock change), else by binary
//! search over their starts (days across a clock change, months); never a scan of them all.

use crate::domain::Window;

/// A query's windows (oldest first, never overlapping), indexed by time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowIndex {
    /// `n` windows of `len` ms from `start`, end to end.
    Even { start: i64, len: i64, n: usize },
    /// Their starts and ends, in order.
    Sorted(Vec<(i64, i64)>),
}

impl WindowIndex {
    pub fn new(windows: &[Window]) -> WindowIndex {
        let bounds: Vec<(i64, i64)> = windows.iter().map(|w| (w.start_ms, w.end_ms)).collect();
        let Some(&(start, end)) = bounds.first() else {
            return WindowIndex::Sorted(bounds);
        };
        let len = end - start;
        let even = len > 0
            && bounds
                .iter()
                .enumerate()
                .all(|(i, &(s, e))| e - s == len && Some(s) == start.checked_add(len * i as i64));
        if even {
            WindowIndex::Even {
                start,
                len,
                n: bounds.len(),
            }
        } else {
            WindowIndex::Sorted(bounds)
        }
    }

    /// The index of the window holding the instant `t` (ms), if one does.
    pub fn find(&self, t: i64) -> Option<usize> {
        match self {
            WindowIndex::Even { start, len, n } => {
                let i = usize::try_from(t.checked_sub(*start)?.div_euclid(*len)).ok()?;
                (t >= *start && i < *n).then_some(i)
            }
            WindowIndex::Sorted(bounds) => {
                let i = bounds.partition_point(|&(s, _)| s <= t).checked_sub(1)?;
                (t < bounds[i].1).then_some(i)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Shape;
    use proptest::prelude::*;

    const H: i64 = 3_600_000;

    fn windows(bounds: &[(i64, i64)]) -> Vec<Window> {
        bounds
            .iter()
            .map(|&(start_ms, end_ms)| Window {
                start_ms,
                end_ms,
                shape: Shape::Bucket,
            })
            .collect()
    }

    /// What the index must agree with: the first window holding `t`.
    fn scan(w: &[Window], t: i64) -> Option<usize> {
        w.iter().position(|w| w.start_ms <= t && t < w.end_ms)
    }

    #[test]
    fn hourly_buckets_are_found_by_arithmetic_and_a_clock_change_by_search() {
        let hours = windows(&(0..720).map(|i| (i * H, (i + 1) * H)).collect::<Vec<_>>());
        let ix = WindowIndex::new(&hours);
        assert_eq!(
            ix,
            WindowIndex::Even {
                start: 0,
                len: H,
                n: 720
            }
        );
        assert_eq!(ix.find(0), Some(0));
        assert_eq!(ix.find(719 * H + 1), Some(719));
        assert_eq!((ix.find(720 * H), ix.find(-1)), (None, None));
        // Days of 24, 23 and 25 hours.
        let days = windows(&[(0, 24 * H), (24 * H, 47 * H), (47 * H, 72 * H)]);
        let ix = WindowIndex::new(&days);
        assert!(matches!(ix, WindowIndex::Sorted(_)));
        assert_eq!(ix.find(47 * H - 1), Some(1));
        assert_eq!(ix.find(47 * H), Some(2));
        assert_eq!(WindowIndex::new(&[]).find(0), None);
    }

    proptest! {
        /// Whatever the windows (end to end or with gaps, of one length or not), the index
        /// finds exactly the window a scan of them all finds.
        #[test]
        fn the_index_agrees_with_a_scan(
            start in -10_000i64..10_000,
            lens in prop::collection::vec(1i64..50, 0..60),
            gaps in prop::collection::vec(0i64..3, 60),
            even in any::<bool>(),
            probes in prop::collection::vec(-20_000i64..20_000, 40),
        ) {
            let mut bounds = Vec::new();
            let mut at = start;
            for (i, len) in lens.iter().enumerate() {
                let (len, gap) = if even { (lens[0], 0) } else { (*len, gaps[i]) };
                at += gap;
                bounds.push((at, at + len));
                at += len;
            }
            let w = windows(&bounds);
            let ix = WindowIndex::new(&w);
            for t in probes.into_iter().chain(bounds.iter().flat_map(|&(s, e)| [s, e - 1, e])) {
                prop_assert_eq!(ix.find(t), scan(&w, t), "at {}", t);
            }
        }
    }
}
