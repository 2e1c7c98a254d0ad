//! Teams: `breakdown: [model, key_group]` and `[key_group]`. A window's (or bucket's) per-key
//! series are summed into the spec's key groups (`spend::groups::Groups::sum`; a key in no
//! group goes to `ungrouped`): counts and costs exactly, latency as the highest of the keys'.
//! A group with a key that was not collected is not emitted (a part would pass for the whole):
//! it fails by name, with its first key's error.

use std::collections::{BTreeMap, BTreeSet};

use super::{subject, Figure, Series, Spent};
use crate::collect::{Failure, SourceId};
use crate::domain::cloud_eye::{CloudEyeKey, CloudEyeMetric, Named};
use crate::domain::{ApiError, Window};
use crate::plan::cloud_eye::{Grouping, QueryPlan};

/// What a group holds so far.
#[derive(Clone, Debug, Default)]
struct Sum {
    values: Vec<(&'static CloudEyeMetric, Figure)>,
    cost: Option<Spent>,
    /// Some key's cost is not known (its model unpriced, or not priced exactly): the group's
    /// cost would be a part passing for the whole, so it is left out.
    costless: bool,
    window: Option<Window>,
    checkpoint: Option<String>,
}

impl Sum {
    fn of(s: &Series) -> Sum {
        Sum {
            values: s.values.clone(),
            cost: s.cost.as_deref().copied(),
            costless: s.cost.is_none(),
            window: Some(s.window),
            checkpoint: s.checkpoint.clone(),
        }
    }

    fn add(&mut self, o: &Sum) {
        for (m, f) in &o.values {
            match self.values.iter_mut().find(|(x, _)| x.ces == m.ces) {
                Some((_, mine)) => *mine = combine(*mine, *f),
                None => self.values.push((m, *f)),
            }
        }
        self.costless |= o.costless;
        self.cost = match (self.cost, o.cost) {
            (Some(a), Some(b)) => match a.priced.checked_add(b.priced) {
                Ok(priced) => Some(Spent {
                    currency: a.currency,
                    priced,
                }),
                Err(_) => {
                    self.costless = true;
                    None
                }
            },
            (a, b) => a.or(b),
        };
        self.window = self.window.or(o.window);
        self.checkpoint = self.checkpoint.take().or_else(|| o.checkpoint.clone());
    }
}

/// Counts add up exactly; latency is the highest.
fn combine(a: Figure, b: Figure) -> Figure {
    match (a, b) {
        (Figure::Count(x), Figure::Count(y)) => Figure::Count(x.saturating_add(y)),
        (Figure::Millis(x), Figure::Millis(y)) => Figure::Millis(x.max(y)),
        (x, _) => x,
    }
}

/// The series a key's figures count in: its model's (or every model's) for each of its groups.
fn group_keys(plan: &QueryPlan, g: &Grouping, key: &CloudEyeKey) -> Vec<CloudEyeKey> {
    let name = key.api_key.as_ref().map_or("", |k| k.name.as_str());
    g.groups
        .of(name)
        .into_iter()
        .map(|group| CloudEyeKey {
            query: plan.name.clone(),
            model: if g.per_model {
                key.model.clone()
            } else {
                Named::default()
            },
            api_key: None,
            key_group: Some(group.to_string()),
        })
        .collect()
}

/// One window's (or bucket's) per-key series `per_key` summed into groups; `missing`: the keys
/// of the window that were not collected, and why. The groups, and a failure for each group
/// that misses a key.
pub(super) fn sum(
    plan: &QueryPlan,
    g: &Grouping,
    per_key: Vec<Series>,
    missing: &[(CloudEyeKey, ApiError)],
) -> (Vec<Series>, Vec<Failure>) {
    let mut failed: BTreeMap<CloudEyeKey, ApiError> = BTreeMap::new();
    for (key, error) in missing {
        for gk in group_keys(plan, g, key) {
            failed.entry(gk).or_insert_with(|| error.clone());
        }
    }
    // Per model (or one partition for all), the keys' sums per group.
    let mut parts: BTreeMap<Named, Vec<(String, Sum)>> = BTreeMap::new();
    for s in &per_key {
        let model = if g.per_model {
            s.key.model.clone()
        } else {
            Named::default()
        };
        let name = s.key.api_key.as_ref().map_or("", |k| k.name.as_str());
        parts
            .entry(model)
            .or_default()
            .push((name.to_string(), Sum::of(s)));
    }
    let mut series = Vec::new();
    let mut emitted: BTreeSet<CloudEyeKey> = BTreeSet::new();
    for (model, rows) in parts {
        for (group, total) in g.groups.sum(rows, Sum::add) {
            let key = CloudEyeKey {
                query: plan.name.clone(),
                model: model.clone(),
                api_key: None,
                key_group: Some(group),
            };
            let Some(window) = total.window else {
                continue;
            };
            if failed.contains_key(&key) || !emitted.insert(key.clone()) {
                continue;
            }
            series.push(Series {
                key,
                window,
                values: total.values,
                checkpoint: total.checkpoint,
                running: None,
                cost: total.cost.filter(|_| !total.costless).map(Box::new),
            });
        }
    }
    let failures = failed
        .into_iter()
        .map(|(key, error)| Failure::series(SourceId::CloudEye, &plan.name, subject(&key), error))
        .collect();
    (series, failures)
}
