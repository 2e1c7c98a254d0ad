//! Spec + now -> every series and every call, with identical calls made once.
//!
//! Pure: `plan` prints this without credentials or network, and `run` executes exactly it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cloud::api::StatsRequest;
use crate::model::{InferType, ServiceType};
use crate::range::{self, RangeError, Window};
use crate::spec::Spec;
use crate::zone::Zone;

/// The identity of a series: what its tags are made of.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct SeriesKey {
    pub query: String,
    pub service_type: ServiceType,
    pub infer_type: InferType,
    pub key_group: String,
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "query={} service_type={} infer_type={} key_group={}",
            self.query, self.service_type, self.infer_type, self.key_group
        )
    }
}

#[derive(Clone, Debug)]
pub struct PlannedSeries {
    pub key: SeriesKey,
    pub window: Window,
    /// Indices into `Plan::calls`, one per segment, in time order.
    pub calls: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct PlannedCall {
    pub start_ms: i64,
    pub end_ms: i64,
    pub request: StatsRequest,
    /// The serialised body: signed and sent as is.
    pub body: Arc<[u8]>,
    /// Indices into `Plan::series` that use this call.
    pub used_by: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub series: Vec<PlannedSeries>,
    pub calls: Vec<PlannedCall>,
    pub zone: Zone,
    pub now: DateTime<Utc>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("queries[{index}] ({query}): {error}")]
    Range {
        index: usize,
        query: String,
        error: RangeError,
    },
    #[error("queries[{index}] ({query}): key group `{group}` is not defined in key_groups")]
    UnknownKeyGroup {
        index: usize,
        query: String,
        group: String,
    },
}

/// The key group name of a series without a key filter.
pub const ALL_KEYS: &str = "all";

pub fn build(spec: &Spec, now: DateTime<Utc>, zone: &Zone) -> Result<Plan, PlanError> {
    // The API's resolution is the millisecond; truncating here keeps every window stable.
    let now = DateTime::<Utc>::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
    let mut plan = Plan {
        series: Vec::new(),
        calls: Vec::new(),
        zone: zone.clone(),
        now,
        warnings: Vec::new(),
    };
    let mut by_body: HashMap<Arc<[u8]>, usize> = HashMap::new();
    for (qi, q) in spec.queries.iter().enumerate() {
        let window = range::resolve(&q.range, now, &zone.tz).map_err(|error| PlanError::Range {
            index: qi,
            query: q.name.clone(),
            error,
        })?;
        if let Some(w) = range::retention_warning(&window, now) {
            plan.warnings.push(format!("query {}: {w}", q.name));
        }
        let groups: Vec<(String, Option<Vec<String>>)> = match &q.key_groups {
            None => vec![(ALL_KEYS.to_string(), None)],
            Some(names) => names
                .iter()
                .map(|g| match spec.key_groups.get(g) {
                    Some(keys) => Ok((g.clone(), Some(keys.clone()))),
                    None => Err(PlanError::UnknownKeyGroup {
                        index: qi,
                        query: q.name.clone(),
                        group: g.clone(),
                    }),
                })
                .collect::<Result<_, _>>()?,
        };
        for st in &q.service_types {
            for (group, keys) in &groups {
                let si = plan.series.len();
                let mut calls = Vec::new();
                for (s, e) in range::segments(window.start_ms, window.end_ms) {
                    let mut req = StatsRequest::new(*st, q.infer_type, s, e);
                    req.timezone = Some(zone.name.clone());
                    req.api_keys = keys.clone();
                    req.ips = q.ips.clone();
                    let body: Arc<[u8]> = req.to_bytes().into();
                    let ci = *by_body.entry(body.clone()).or_insert_with(|| {
                        plan.calls.push(PlannedCall {
                            start_ms: s,
                            end_ms: e,
                            request: req,
                            body,
                            used_by: Vec::new(),
                        });
                        plan.calls.len() - 1
                    });
                    plan.calls[ci].used_by.push(si);
                    calls.push(ci);
                }
                plan.series.push(PlannedSeries {
                    key: SeriesKey {
                        query: q.name.clone(),
                        service_type: *st,
                        infer_type: q.infer_type,
                        key_group: group.clone(),
                    },
                    window,
                    calls,
                });
            }
        }
    }
    Ok(plan)
}

impl Plan {
    /// Calls the series need in total, before deduplication.
    pub fn calls_before_dedup(&self) -> usize {
        self.series.iter().map(|s| s.calls.len()).sum()
    }

    /// The plan for people: every series, every call with its window (local time and epoch
    /// ms) and body, and which calls serve several series.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let tz = &self.zone.tz;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Plan at {} ({}): {} series, {} calls ({} before deduplication)",
            range::fmt_local(self.now.timestamp_millis(), tz),
            self.zone.name,
            self.series.len(),
            self.calls.len(),
            self.calls_before_dedup()
        );
        let rows: Vec<[String; 6]> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                [
                    format!("{}", i + 1),
                    s.key.query.clone(),
                    s.key.service_type.name().to_string(),
                    s.key.infer_type.name().to_string(),
                    s.key.key_group.clone(),
                    format!(
                        "{} ~ {}  calls {}",
                        range::fmt_local(s.window.start_ms, tz),
                        range::fmt_local(s.window.end_ms, tz),
                        s.calls
                            .iter()
                            .map(|c| (c + 1).to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ]
            })
            .collect();
        let header = [
            "#",
            "query",
            "service_type",
            "infer_type",
            "key_group",
            "window",
        ]
        .map(String::from);
        let widths: Vec<usize> = (0..6)
            .map(|c| {
                rows.iter()
                    .chain([&header])
                    .map(|r| r[c].len())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let _ = writeln!(out, "\nSeries:");
        for r in [&header].into_iter().chain(rows.iter()) {
            let line = (0..6)
                .map(|c| format!("{:<w$}", r[c], w = widths[c]))
                .collect::<Vec<_>>()
                .join("  ");
            let _ = writeln!(out, "  {}", line.trim_end());
        }
        let _ = writeln!(out, "\nCalls:");
        for (i, c) in self.calls.iter().enumerate() {
            let users = c
                .used_by
                .iter()
                .map(|s| (s + 1).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let shared = if c.used_by.len() > 1 {
                " (one call, shared)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {:>3}  {} ~ {}  [{}, {})  series {users}{shared}",
                i + 1,
                range::fmt_local(c.start_ms, tz),
                range::fmt_local(c.end_ms, tz),
                c.start_ms,
                c.end_ms
            );
            let _ = writeln!(out, "       {}", String::from_utf8_lossy(&c.body));
        }
        for w in &self.warnings {
            let _ = writeln!(out, "\nwarning: {w}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::{RangeExpr, DAY_MS};
    use crate::spec::QuerySpec;
    use proptest::prelude::*;

    fn query(name: &str, range: RangeExpr, groups: Option<Vec<&str>>) -> QuerySpec {
        QuerySpec {
            name: name.into(),
            range,
            service_types: vec![ServiceType::Preset],
            infer_type: InferType::RealTime,
            key_groups: groups.map(|g| g.into_iter().map(String::from).collect()),
            ips: None,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-21T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn identical_calls_are_made_once() {
        let spec = Spec {
            queries: vec![
                query("a", RangeExpr::LastDays(7), None),
                query("b", RangeExpr::LastDays(7), None),
            ],
            ..Default::default()
        };
        let plan = build(&spec, now(), &Zone::utc()).unwrap();
        assert_eq!(plan.series.len(), 2);
        assert_eq!(plan.calls.len(), 1);
        assert_eq!(plan.calls[0].used_by, vec![0, 1]);
        assert_eq!(plan.calls_before_dedup(), 2);
    }

    #[test]
    fn series_multiply_by_service_type_and_key_group() {
        let mut spec = Spec::default();
        spec.key_groups.insert("a".into(), vec!["k1".into()]);
        spec.key_groups.insert("web".into(), vec!["".into()]);
        let mut q = query("q", RangeExpr::LastDays(45), Some(vec!["a", "web"]));
        q.service_types = vec![ServiceType::Preset, ServiceType::CustomEndpoint];
        spec.queries = vec![q];
        let plan = build(&spec, now(), &Zone::utc()).unwrap();
        assert_eq!(plan.series.len(), 4);
        assert_eq!(plan.calls.len(), 8, "two segments each");
        assert_eq!(plan.warnings.len(), 1, "45 days reach past retention");
        let body = String::from_utf8(plan.calls[0].body.to_vec()).unwrap();
        assert!(body.contains(r#""api_keys":["k1"]"#), "{body}");
    }

    #[test]
    fn unknown_key_group_is_an_error() {
        let spec = Spec {
            queries: vec![query("q", RangeExpr::Today, Some(vec!["ghost"]))],
            ..Default::default()
        };
        assert!(matches!(
            build(&spec, now(), &Zone::utc()),
            Err(PlanError::UnknownKeyGroup { .. })
        ));
    }

    proptest! {
        #[test]
        fn every_series_segments_tile_its_window(days in 1u32..200, hours in 1u32..2000) {
            let spec = Spec {
                queries: vec![query("d", RangeExpr::LastDays(days), None), query("h", RangeExpr::LastHours(hours), None)],
                ..Default::default()
            };
            let plan = build(&spec, now(), &Zone::utc()).unwrap();
            for s in &plan.series {
                let mut at = s.window.start_ms;
                for &c in &s.calls {
                    let call = &plan.calls[c];
                    prop_assert_eq!(call.start_ms, at);
                    prop_assert!(call.end_ms - call.start_ms <= 30 * DAY_MS);
                    at = call.end_ms;
                }
                prop_assert_eq!(at, s.window.end_ms);
            }
        }
    }
}
