//! Output formats. Each is a pure function of a `Report` (plus its own options) to bytes; the
//! names of fields, metrics and labels come from `fields` (`domain::names`).

pub mod fields;
pub mod influx;
pub mod json;
pub mod otlp;
pub mod prometheus;
pub mod table;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::collect::{Collection, RunStats};
use crate::text::parse_kv_list;
use crate::time::period::Totals;
use crate::time::zone::Zone;

/// The name every output gives the program (OTLP's scope and default `service.name`).
pub const SCOPE: &str = "maas-usage";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Who reports: what tells the self-metrics of several agents apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// `host.name`.
    pub host_name: String,
    /// `service.instance.id`: stable per host and spec.
    pub instance_id: String,
    /// `cloud.account.id` (the Huawei Cloud domain id), when project discovery told it.
    pub account_id: Option<String>,
}

/// Resource attributes from the environment, as the SDKs read them.
#[derive(Clone, Debug, Default)]
pub struct ResourceEnv {
    /// `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, values percent-encoded).
    pub attributes: Option<String>,
    /// `OTEL_SERVICE_NAME`, which wins over `service.name` in the attributes.
    pub service_name: Option<String>,
}

impl ResourceEnv {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        ResourceEnv {
            attributes: env("OTEL_RESOURCE_ATTRIBUTES"),
            service_name: env("OTEL_SERVICE_NAME"),
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES` the Prometheus outputs cannot carry on `target_info` as the
/// collector's prometheus exporter would.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("OTEL_RESOURCE_ATTRIBUTES: `{key}` makes the Prometheus label `{label}`, which the collector's prometheus exporter refuses (dropping target_info); rename it")]
    Refused { key: String, label: String },
    #[error("OTEL_RESOURCE_ATTRIBUTES: `{key}` makes the Prometheus label `{label}`, which the collector sets itself (from service.name and service.instance.id; a scrape, from its target), so its value would be lost; rename it")]
    Collector { key: String, label: String },
}

/// Two or more resource attributes that make one `target_info` label: the collector joins their
/// values with `;`, in the order of their keys, and so do the Prometheus outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    pub label: String,
    pub keys: Vec<String>,
}

impl ResourceEnv {
    /// For the Prometheus outputs, where the resource is one `target_info` series and never on
    /// the data series (so a spec tag or a data point attribute of the same name does not
    /// meet it): every attribute of `OTEL_RESOURCE_ATTRIBUTES` must make a label the collector
    /// accepts, other than its own `job` and `instance`, or the collector's translation of
    /// the OTLP export and the textfile could not agree. Keys that share a label are allowed
    /// (their values are joined, as the collector does) and returned, for a warning.
    pub fn check_labels(&self) -> Result<Vec<Merged>, LabelError> {
        use fields::{label_refused, prometheus_label};
        let env: Vec<String> = self
            .attributes
            .as_deref()
            .map(parse_kv_list)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut by_label: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let keys = fields::RESOURCE_ATTRIBUTES
            .iter()
            .map(|k| (k.to_string(), false))
            .chain(env.into_iter().map(|k| (k, true)));
        for (key, from_env) in keys {
            if fields::TARGET_ATTRIBUTES.contains(&key.as_str()) {
                continue;
            }
            let label = prometheus_label(&key);
            if from_env && label_refused(&label) {
                return Err(LabelError::Refused { key, label });
            }
            if from_env && fields::COLLECTOR_LABELS[..2].contains(&label.as_str()) {
                return Err(LabelError::Collector { key, label });
            }
            let keys = by_label.entry(label).or_default();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(by_label
            .into_iter()
            .filter(|(_, keys)| keys.len() > 1)
            .map(|(label, mut keys)| {
                keys.sort();
                Merged { label, keys }
            })
            .collect())
    }
}

/// Everything an emitter may print.
pub struct Report<'a> {
    /// What was collected, of every source; a period bucket carries its series' running total
    /// as of that bucket.
    pub collection: &'a Collection,
    pub stats: RunStats,
    /// With `clouds`, the cloud's name: the `cloud` tag of every series (the self-metrics'
    /// too); `None` for `cloud:`, whose series carry no such tag.
    pub cloud: Option<&'a str>,
    pub region: &'a str,
    pub project_id: &'a str,
    pub zone: &'a Zone,
    pub now: DateTime<Utc>,
    pub origin: &'a Origin,
    /// Every period series' running total after this collection (Prometheus counters).
    pub totals: &'a Totals,
}

impl Report<'_> {
    /// The resource attributes (OTLP) or `target_info`'s labels (Prometheus), the same in both:
    /// the environment's attributes, then the facts of this run, which win.
    pub fn resource(&self, env: &ResourceEnv) -> BTreeMap<String, String> {
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        attrs.insert("service.name".into(), SCOPE.into());
        for (k, v) in env
            .attributes
            .as_deref()
            .map(parse_kv_list)
            .unwrap_or_default()
        {
            attrs.insert(k, v);
        }
        if let Some(name) = env.service_name.as_deref().filter(|s| !s.is_empty()) {
            attrs.insert("service.name".into(), name.into());
        }
        attrs.insert("service.version".into(), VERSION.into());
        attrs.insert("cloud.provider".into(), "huawei_cloud".into());
        // With `clouds` they differ from cloud to cloud: each data point carries its own.
        if self.cloud.is_none() {
            attrs.insert("cloud.region".into(), self.region.into());
            attrs.insert("huaweicloud.project.id".into(), self.project_id.into());
        }
        if !self.origin.host_name.is_empty() {
            attrs.insert("host.name".into(), self.origin.host_name.clone());
        }
        if !self.origin.instance_id.is_empty() {
            attrs.insert(
                "service.instance.id".into(),
                self.origin.instance_id.clone(),
            );
        }
        if let Some(a) = self
            .origin
            .account_id
            .as_ref()
            .filter(|_| self.cloud.is_none())
        {
            attrs.insert("cloud.account.id".into(), a.clone());
        }
        attrs
    }

    /// The tags of the series' source: `project_id`, `region`, and with `clouds` the cloud's
    /// name (`cloud`).
    pub fn source_tags(&self) -> Vec<(&'static str, &str)> {
        let mut tags = fields::source_tags(self.project_id, self.region).to_vec();
        tags.extend(self.cloud.map(|c| (fields::CLOUD_TAG, c)));
        tags
    }

    /// Where the series come from, for people: the region, and with `clouds` the cloud's name.
    pub fn place(&self) -> String {
        match self.cloud {
            Some(c) => format!("{}, cloud {c}", self.region),
            None => self.region.to_string(),
        }
    }
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_separators() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(67188), "67,188");
        assert_eq!(super::thousands(1234567890), "1,234,567,890");
    }
}
