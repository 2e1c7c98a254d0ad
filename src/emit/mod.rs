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

/// `OTEL_RESOURCE_ATTRIBUTES` the Prometheus outputs cannot carry as the collector's
/// prometheus exporter would: it would drop every metric.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("OTEL_RESOURCE_ATTRIBUTES: `{key}` makes the Prometheus label `{label}`, which the collector's prometheus exporter refuses (dropping every metric); rename it")]
    Refused { key: String, label: String },
    #[error("OTEL_RESOURCE_ATTRIBUTES: `{key}` makes the Prometheus label `{label}`, which {other} makes too: the collector's prometheus exporter would refuse the duplicate (dropping every metric); rename it")]
    Taken {
        key: String,
        label: String,
        other: String,
    },
}

/// Who makes a Prometheus label, for `ResourceEnv::check_labels`.
enum Owner {
    /// A resource attribute the run sets itself (its value wins over the environment's).
    Run(String),
    /// A point attribute the outputs set.
    Point(String),
    /// The collector's own label.
    Collector,
    /// A static tag of the spec.
    Tag(String),
    /// An earlier key of `OTEL_RESOURCE_ATTRIBUTES`.
    Env(String),
}

impl Owner {
    fn describe(&self, label: &str) -> String {
        match self {
            Owner::Run(k) => format!("the resource attribute `{k}`"),
            Owner::Point(k) => format!("the point attribute `{k}`"),
            Owner::Collector => format!("the collector itself (`{label}`)"),
            Owner::Tag(k) => format!("the spec's tag `{k}`"),
            Owner::Env(k) => format!("`{k}` (also in OTEL_RESOURCE_ATTRIBUTES)"),
        }
    }
}

impl ResourceEnv {
    /// For the Prometheus outputs: every attribute of `OTEL_RESOURCE_ATTRIBUTES` must make a
    /// label the collector accepts and that nothing else makes from another key, or the
    /// collector's translation of the OTLP export (which drops such metrics) and the textfile
    /// could not agree. The same key as a static tag is allowed: the resource's value wins, as
    /// with `resource_to_telemetry_conversion`; those tags are returned.
    pub fn check_labels(&self, tags: &BTreeMap<String, String>) -> Result<Vec<String>, LabelError> {
        use fields::{label_refused, otlp_attribute, prometheus_label};
        let mut owners: BTreeMap<String, Owner> = BTreeMap::new();
        for a in fields::RESOURCE_ATTRIBUTES {
            owners.insert(prometheus_label(a), Owner::Run(a.into()));
        }
        let points = fields::BUILTIN_TAGS[..4]
            .iter()
            .chain(fields::MODEL_TAGS.iter())
            .map(|t| otlp_attribute(t))
            .chain([fields::OUTCOME_ATTRIBUTE.to_string()]);
        for a in points {
            owners.insert(prometheus_label(&a), Owner::Point(a));
        }
        for l in fields::COLLECTOR_LABELS {
            owners.insert(l.into(), Owner::Collector);
        }
        for k in tags.keys() {
            owners
                .entry(prometheus_label(k))
                .or_insert_with(|| Owner::Tag(k.clone()));
        }
        let mut overridden = Vec::new();
        for (key, _) in self
            .attributes
            .as_deref()
            .map(parse_kv_list)
            .unwrap_or_default()
        {
            let label = prometheus_label(&key);
            if label_refused(&label) {
                return Err(LabelError::Refused { key, label });
            }
            match owners.get(&label) {
                None => {
                    owners.insert(label, Owner::Env(key));
                }
                Some(Owner::Run(k) | Owner::Env(k)) if *k == key => {}
                Some(Owner::Tag(k)) if *k == key => overridden.push(key),
                Some(other) => {
                    let other = other.describe(&label);
                    return Err(LabelError::Taken { key, label, other });
                }
            }
        }
        Ok(overridden)
    }
}

/// Everything an emitter may print.
pub struct Report<'a> {
    /// What was collected, of every source; a period bucket carries its series' running total
    /// as of that bucket.
    pub collection: &'a Collection,
    pub stats: RunStats,
    pub region: &'a str,
    pub project_id: &'a str,
    pub zone: &'a Zone,
    pub now: DateTime<Utc>,
    pub origin: &'a Origin,
    /// Every period series' running total after this collection (Prometheus counters).
    pub totals: &'a Totals,
}

impl Report<'_> {
    /// The resource attributes (OTLP) or source labels (Prometheus), the same in both: the
    /// environment's attributes, then the facts of this run, which win.
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
        attrs.insert("cloud.region".into(), self.region.into());
        attrs.insert("huaweicloud.project.id".into(), self.project_id.into());
        if !self.origin.host_name.is_empty() {
            attrs.insert("host.name".into(), self.origin.host_name.clone());
        }
        if !self.origin.instance_id.is_empty() {
            attrs.insert(
                "service.instance.id".into(),
                self.origin.instance_id.clone(),
            );
        }
        if let Some(a) = &self.origin.account_id {
            attrs.insert("cloud.account.id".into(), a.clone());
        }
        attrs
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
