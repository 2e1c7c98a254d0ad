//! Which series Cloud Eye has and what people call them, cached between runs. A `[model]`
//! breakdown asks the MaaS monitor for the models alone (their ids and names in one listing of
//! about N / 100 pages), never for a key; a key breakdown lists one metric with ListMetrics
//! (every `SYS.MaaS` series carries every metric, so one listing finds them all: N x (K + 1) /
//! 1,000 pages) and names the models and keys from the monitor (N x (K + 1) / 100 pages).
//! The spec's pinned names win over the monitor's, and ids stand in for names nobody gives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::{Api, Setup};
use crate::domain::cloud_eye::{Dims, Discovered, Named, Names, DISCOVERY_METRIC};
use crate::domain::failure::DecodeError;
use crate::domain::ApiError;

/// A ListMetrics paging that never ends (fresh markers, fresh entries forever) stops here.
const MAX_PAGES: usize = 1000;
/// The most the names of a run may take.
const NAMES_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What a run knows of the series: the models and (when a query breaks down by key) the API
/// keys under them, and every id's name (the spec's pinned names winning over the monitor's).
pub(super) struct Known {
    pub series: BTreeSet<Dims>,
    pub names: Names,
}

/// The series and their names: from the cache while it is young enough and lists keys when
/// `keys` are asked for, else discovered (and cached, unless the paging broke off); the names
/// from the monitor when some id is not pinned. A failed discovery is the error.
pub(super) fn known(
    setup: &Setup<'_>,
    keys: bool,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<Known, ApiError> {
    let cache = setup.cache;
    let cached = cache
        .and_then(|c| c.load(setup.discovery_max_age))
        .filter(|d| d.keys || !keys);
    // (the discovery, whether it is new, whether it may be cached: its paging ended properly)
    let (mut found, fresh, whole) = match cached {
        Some(found) => (found, false, true),
        None => {
            let (found, whole) = discover(&*setup.api, keys, deadline, warnings)?;
            (found, true, whole)
        }
    };
    let learnt = names(&*setup.api, setup.pinned, &mut found, deadline, warnings);
    if let (Some(c), true) = (cache, whole && (fresh || learnt)) {
        c.store(&found);
    }
    if found.series.is_empty() {
        warnings.push(
            "Cloud Eye reports no model in SYS.MaaS for this project: there is nothing to query"
                .into(),
        );
    }
    // The spec's names win over the monitor's.
    let mut names = found.names;
    names.models.extend(setup.pinned.models.clone());
    names.keys.extend(setup.pinned.keys.clone());
    Ok(Known {
        series: found.series,
        names,
    })
}

/// A fresh discovery, and whether it may be cached (its paging did not break off). Models
/// alone come from the monitor, names and all; when it cannot answer (or keys are asked for),
/// from ListMetrics.
fn discover(
    api: &dyn Api,
    keys: bool,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<(Discovered, bool), ApiError> {
    if !keys {
        match models(api, deadline) {
            Ok(found) => return Ok((found, true)),
            // ListMetrics would meet the same: credentials refused, the run over.
            Err(e) if ends_the_run(&e, deadline) => return Err(e),
            Err(e) => warnings.push(format!(
                "cannot list the models from the MaaS monitor ({e}); listing them with ListMetrics instead (which lists every API key too), and ids stand in for the names the spec's `names:` does not pin, for the next hour"
            )),
        }
        let (mut found, whole) = list_metrics(api, deadline, warnings)?;
        // The monitor did not answer just now: not asked again for the names.
        found.named = true;
        return Ok((found, whole));
    }
    list_metrics(api, deadline, warnings)
}

/// A failure any other call of the run would meet too: the credentials refused (or their
/// gate closed), a signal, or the run's deadline (not the few seconds the monitor gets).
fn ends_the_run(e: &ApiError, deadline: Instant) -> bool {
    match e {
        ApiError::AuthBlocked(_) | ApiError::Unguarded(_) | ApiError::Expired(_) => true,
        ApiError::Stopped { .. } => true,
        ApiError::Deadline { .. } => Instant::now() >= deadline,
        e => e.status() == Some(401),
    }
}

/// The models as the monitor lists them, with their names.
fn models(api: &dyn Api, deadline: Instant) -> Result<Discovered, ApiError> {
    let mut found = Discovered {
        named: true,
        ..Discovered::default()
    };
    let deadline = deadline.min(Instant::now() + NAMES_TIME);
    pages(api, false, deadline, |i| {
        if !i.model_name.is_empty() {
            found
                .names
                .models
                .insert(i.dims.model_id.clone(), i.model_name);
        }
        found.series.insert(Dims {
            model_id: i.dims.model_id,
            key_id: None,
        })
    })?;
    Ok(found)
}

/// Pages of the monitor's instances from the first, each handed to `add` (which says whether
/// it was new), until the total is reached, a page is empty or brings nothing new.
fn pages(
    api: &dyn Api,
    keys: bool,
    deadline: Instant,
    mut add: impl FnMut(crate::domain::cloud_eye::Instance) -> bool,
) -> Result<(), ApiError> {
    let mut start = 0;
    for _ in 0..MAX_PAGES {
        let page = api.instances(start, keys, deadline)?;
        let mut new = false;
        for i in page.instances {
            new |= add(i);
        }
        start += page.listed;
        let done = page.listed == 0 || !new || page.total.is_some_and(|t| start >= t);
        if done {
            break;
        }
    }
    Ok(())
}

/// The series ListMetrics has for [`DISCOVERY_METRIC`], and whether the paging ended
/// properly. Paging stops at the end (an empty page or marker, the total reached, the marker
/// sent coming back) and also when it loops: a page that brings nothing new, or a marker seen
/// before (A, B, A...). A loop is one warning, and the series are what was found (a failure
/// when that is nothing): never the whole Cloud Eye budget spent on the same pages.
fn list_metrics(
    api: &dyn Api,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> Result<(Discovered, bool), ApiError> {
    let metric = DISCOVERY_METRIC;
    let mut found = BTreeSet::new();
    let mut marker = String::new();
    let mut sent = BTreeSet::new();
    let mut whole = true;
    for _ in 0..MAX_PAGES {
        let page = api.list_metrics(metric, &marker, deadline)?;
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
            whole = false;
            break;
        }
        marker = page.marker;
    }
    let found = Discovered {
        series: found,
        keys: true,
        ..Discovered::default()
    };
    Ok((found, whole))
}

/// Names from the monitor, unless `known` has them already or the spec pins every id; a
/// failure is one warning. Returns whether it asked (and learnt something worth keeping).
fn names(
    api: &dyn Api,
    pinned: &Names,
    known: &mut Discovered,
    deadline: Instant,
    warnings: &mut Vec<String>,
) -> bool {
    let unnamed = known.series.iter().any(|d| {
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
    let listed = pages(api, known.keys, deadline, |i| {
        let mut new = false;
        if !i.model_name.is_empty() {
            new |= found
                .models
                .insert(i.dims.model_id.clone(), i.model_name)
                .is_none();
        }
        if let (Some(k), false) = (i.dims.key_id, i.key_name.is_empty()) {
            new |= found.keys.insert(k, i.key_name).is_none();
        }
        new
    });
    if let Err(e) = listed {
        warnings.push(format!(
            "cannot read model and API key names from the MaaS monitor ({e}); ids stand in for the names the spec's `names:` does not pin, for the next hour"
        ));
        found = Names::default();
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
    use crate::domain::cloud_eye::{BatchRequest, InstancePage, MetricPage, Unread};

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
        fn batch(&self, _: &BatchRequest, _: Instant) -> Result<Unread, ApiError> {
            unreachable!()
        }
        fn instances(&self, _: usize, _: bool, _: Instant) -> Result<InstancePage, ApiError> {
            Ok(InstancePage::default())
        }
        fn affordable(&self, _: std::time::Duration) -> usize {
            usize::MAX
        }
    }

    fn discovered(l: &Looping) -> (Result<(Discovered, bool), ApiError>, Vec<String>) {
        let mut warnings = Vec::new();
        let d = list_metrics(l, Instant::now(), &mut warnings);
        (d, warnings)
    }

    #[test]
    fn discovery_stops_at_a_marker_given_before_or_a_page_with_nothing_new() {
        let fresh = |i: usize| {
            vec![(
                DISCOVERY_METRIC.to_string(),
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
        let (d, warnings) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 3);
        let (found, whole) = d.unwrap();
        assert!(!whole, "not cached");
        assert_eq!(found.series.len(), 3, "what was found is kept");
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
        let (d, _) = discovered(&l);
        assert_eq!(*l.calls.lock().unwrap(), 1);
        assert!(d.is_err_and(|e| e.to_string().contains("its paging loops")));
    }
}
