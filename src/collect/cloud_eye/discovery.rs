//! Which series Cloud Eye has and what people call them: ListMetrics, paged (once per metric
//! asked for), and the names of their ids (pinned in the spec, else the MaaS monitor, else the
//! ids), with the discovery cached between runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{Api, Setup};
use crate::domain::cloud_eye::{Dims, Discovered, Named, Names};
use crate::domain::failure::DecodeError;
use crate::domain::ApiError;

/// A ListMetrics paging that never ends (fresh markers, fresh entries forever) stops here.
const MAX_PAGES: usize = 1000;
/// The most the names of a run may take.
const NAMES_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What a run knows of the series: for each metric asked for, the series Cloud Eye reports
/// it for, and every id's name (the spec's pinned names winning over the monitor's).
pub(super) struct Known {
    pub available: BTreeMap<&'static str, BTreeSet<Dims>>,
    pub names: Names,
}

/// The series of `asked` and their names: from the cache while it is young enough, else
/// discovered (and cached, unless the paging broke off); the names from the monitor when some
/// id is not pinned. A failed discovery is the error.
pub(super) fn known(
    setup: &Setup<'_>,
    asked: &BTreeSet<&'static str>,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<Known, ApiError> {
    let cache = setup.cache;
    let mut found = cache
        .and_then(|c| c.load(setup.discovery_max_age))
        .unwrap_or_default();
    let discovered = discover(&*setup.api, asked, &mut found, deadline, warnings)?;
    let learnt_names = names(&*setup.api, setup.pinned, &mut found, deadline, warnings);
    if let (Some(c), true) = (cache, discovered.changed || learnt_names) {
        let mut whole = found.clone();
        whole
            .metrics
            .retain(|m, _| !discovered.partial.contains(m.as_str()));
        c.store(&whole);
    }
    let available: BTreeMap<&'static str, BTreeSet<Dims>> = asked
        .iter()
        .filter_map(|m| found.metrics.remove(*m).map(|s| (*m, s)))
        .collect();
    for (m, series) in &available {
        if series.is_empty() {
            warnings.push(format!(
                "Cloud Eye reports no `{m}` in SYS.MaaS for this project; it is left out"
            ));
        }
    }
    // The spec's names win over the monitor's.
    let mut names = found.names;
    names.models.extend(setup.pinned.models.clone());
    names.keys.extend(setup.pinned.keys.clone());
    Ok(Known { available, names })
}

/// What discovery did: whether it learnt anything, and which metrics' paging broke off (their
/// series are partial: used for this run, never cached).
#[derive(Default)]
struct Discovery {
    changed: bool,
    partial: BTreeSet<&'static str>,
}

/// Which (metric, series) pairs exist, for each metric asked for and not already `known`.
/// Paging stops at the end (an empty page or marker, the total reached, the marker sent coming
/// back) and also when it loops: a page that brings nothing new, or a marker seen before (A, B,
/// A...). A loop is one warning, and the metric's series are what was found (a failure when
/// that is nothing): never the whole Cloud Eye budget spent on the same pages.
fn discover(
    ce: &dyn Api,
    metrics: &BTreeSet<&'static str>,
    known: &mut Discovered,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<Discovery, ApiError> {
    let mut out = Discovery::default();
    for &metric in metrics {
        if known.metrics.contains_key(metric) {
            continue;
        }
        let mut found = BTreeSet::new();
        let mut marker = String::new();
        let mut sent = BTreeSet::new();
        for _ in 0..MAX_PAGES {
            let page = ce.list_metrics(metric, &marker, deadline)?;
            let (n, before) = (page.entries.len(), found.len());
            found.extend(
                page.entries
                    .into_iter()
                    .filter(|(m, _)| m == metric)
                    .map(|(_, d)| d),
            );
            let done = n == 0
                || page.marker.is_empty()
                || page.total.is_some_and(|t| found.len() >= t)
                || (page.marker == marker && found.len() > before);
            if done {
                break;
            }
            if found.len() == before || !sent.insert(page.marker.clone()) {
                let why = if found.len() == before {
                    "a page with nothing new"
                } else {
                    "a marker it had given before"
                };
                if found.is_empty() {
                    return Err(ApiError::Decode {
                        endpoint: page.endpoint,
                        error: DecodeError::Shape(format!(
                            "ListMetrics for `{metric}` answered {why} before any series: its paging loops"
                        )),
                        request_id: page.request_id,
                    });
                }
                let of = page
                    .total
                    .map(|t| format!(" of the {t} it counts"))
                    .unwrap_or_default();
                warnings.push(format!(
                    "ListMetrics for `{metric}` answered {why} (its paging loops): discovery stops at {} series{of}, so models or keys may be missing from this run; it is not cached, the next run asks again",
                    found.len()
                ));
                out.partial.insert(metric);
                break;
            }
            marker = page.marker;
        }
        known.metrics.insert(metric.to_string(), found);
        out.changed = true;
    }
    Ok(out)
}

/// Names from the monitor, unless `known` has them already; a failure is one warning. Returns
/// whether it asked (and learnt something worth keeping).
fn names(
    ce: &dyn Api,
    pinned: &Names,
    known: &mut Discovered,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> bool {
    let ids: BTreeSet<&Dims> = known.metrics.values().flatten().collect();
    let unnamed = ids.iter().any(|d| {
        !pinned.models.contains_key(&d.model_id)
            || d.key_id
                .as_ref()
                .is_some_and(|k| !pinned.keys.contains_key(k))
    });
    if !unnamed || known.named {
        return false;
    }
    // Names are a nicety: they get a few seconds, never the data's time.
    let deadline = deadline.min(Instant::now() + NAMES_TIME);
    let mut found = Names::default();
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        let before = found.models.len() + found.keys.len();
        match ce.instances(start, &mut found, deadline) {
            Ok(n) if n > 0 && found.models.len() + found.keys.len() > before => start += n,
            // The end (or a server that keeps answering the same page).
            Ok(_) => break,
            Err(e) => {
                warnings.push(format!(
                    "cannot read model and API key names from the MaaS monitor ({e}); ids stand in for the names the spec's `names:` does not pin, for the next hour"
                ));
                found = Names::default();
                break;
            }
        }
    }
    // Kept either way: a monitor that cannot answer is not asked again until the cache expires.
    known.names = found;
    known.named = true;
    true
}

pub(super) fn named(id: &str, names: &BTreeMap<String, String>) -> Named {
    Named {
        id: id.to_string(),
        name: names.get(id).cloned().unwrap_or_else(|| id.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::cloud_eye::{BatchAnswer, BatchRequest, MetricPage};

    /// ListMetrics as a looping server answers it: page `i` after the marker `markers[i - 1]`,
    /// with the entries `entries(i)` and the marker `markers[i]`.
    struct Looping {
        markers: Vec<&'static str>,
        entries: fn(usize) -> Vec<(String, Dims)>,
        calls: std::sync::Mutex<usize>,
    }

    impl Api for Looping {
        fn list_metrics(&self, _: &str, marker: &str, _: Instant) -> Result<MetricPage, ApiError> {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            let i = *calls - 1;
            assert!(i < 10, "the loop was not stopped (sent {marker:?})");
            Ok(MetricPage {
                entries: (self.entries)(i),
                marker: self.markers[i % self.markers.len()].to_string(),
                total: None,
                ..MetricPage::default()
            })
        }
        fn batch(&self, _: &BatchRequest, _: Instant) -> Result<BatchAnswer, ApiError> {
            unreachable!()
        }
        fn instances(&self, _: usize, _: &mut Names, _: Instant) -> Result<usize, ApiError> {
            Ok(0)
        }
    }

    fn discovered(l: &Looping) -> (Result<Discovery, ApiError>, Vec<String>, Discovered) {
        let (mut known, mut warnings) = (Discovered::default(), Vec::new());
        let asked = BTreeSet::from(["total_tokens"]);
        let d = discover(l, &asked, &mut known, Instant::now(), &mut warnings);
        (d, warnings, known)
    }

    #[test]
    fn discovery_stops_at_a_marker_given_before_or_a_page_with_nothing_new() {
        let fresh = |i: usize| {
            vec![(
                "total_tokens".to_string(),
                Dims {
                    model_id: format!("m{i}"),
                    key_id: None,
                },
            )]
        };
        // Fresh entries on every page, markers A, B, A: stopped when A comes back.
        let l = Looping {
            markers: vec!["A", "B"],
            entries: fresh,
            calls: Default::default(),
        };
        let (d, warnings, known) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 3);
        assert!(d.unwrap().partial.contains("total_tokens"));
        assert_eq!(
            known.metrics["total_tokens"].len(),
            3,
            "what was found is kept"
        );
        assert!(
            warnings[0].contains("a marker it had given before"),
            "{warnings:?}"
        );
        // Nothing of the metric asked, ever: a failure, not "Cloud Eye reports none".
        let l = Looping {
            markers: vec!["A", "B", "C"],
            entries: |_| {
                vec![(
                    "other".to_string(),
                    Dims {
                        model_id: "x".into(),
                        key_id: None,
                    },
                )]
            },
            calls: Default::default(),
        };
        let (d, _, _) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 1);
        assert!(d.is_err_and(|e| e.to_string().contains("its paging loops")));
    }
}
