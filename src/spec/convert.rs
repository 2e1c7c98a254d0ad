//! One spec file, from YAML to typed parts: parsed with positions, checked against the schema,
//! read into raw shapes, then converted with the semantic checks the schema cannot make.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::errors::{display_path, SpecError};
use super::schema::{looks_secret, schema_errors, validator};
use super::yaml::{self, Located, Pos};
use super::QuerySpec;
use super::{CloudEyeQuery, CloudSpec, Coordination, Format, Limits, NamedCloud, OutputSpec};
use super::{OtlpSettings, Protocol};
use super::{RedisSpec, Source, SpecPath};
use crate::domain::cloud_eye::{self, Names};
use crate::domain::names as fields;
use crate::domain::range::{self, Bound, PeriodSpec, RangeExpr};
use crate::domain::{InferType, ServiceType};

pub use super::load::API_VERSION;

// The raw shapes of a file once the schema has passed: typed conversion below cannot meet a
// structural surprise, only semantic ones.
#[derive(Deserialize, Default)]
pub(super) struct RawFile {
    #[serde(rename = "apiVersion")]
    pub(super) _api_version: Option<String>,
    pub(super) cloud: Option<CloudSpec>,
    pub(super) clouds: Option<Vec<NamedCloud>>,
    pub(super) timezone: Option<String>,
    pub(super) key_groups: Option<BTreeMap<String, Vec<String>>>,
    pub(super) names: Option<RawNames>,
    pub(super) queries: Option<Vec<RawQuery>>,
    pub(super) output: Option<RawOutput>,
    pub(super) limits: Option<RawLimits>,
    pub(super) prices: Option<super::spend::RawPrices>,
    pub(super) budgets: Option<Vec<super::spend::RawBudget>>,
    pub(super) alerts: Option<super::spend::RawAlerts>,
    pub(super) coordination: Option<RawCoordination>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
pub(super) struct RawNames {
    pub(super) models: Option<BTreeMap<String, String>>,
    pub(super) api_keys: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
pub(super) struct RawQuery {
    pub(super) name: String,
    pub(super) clouds: Option<Vec<String>>,
    pub(super) range: Option<Value>,
    pub(super) service_types: Option<Vec<Value>>,
    pub(super) infer_type: Option<String>,
    pub(super) key_groups: Option<Vec<String>>,
    pub(super) ips: Option<Vec<String>>,
    pub(super) source: Option<String>,
    pub(super) breakdown: Option<Vec<String>>,
    pub(super) models: Option<Vec<String>>,
    pub(super) api_keys: Option<Vec<String>>,
    pub(super) metrics: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
pub(super) struct RawOutput {
    pub(super) format: Option<String>,
    pub(super) measurement: Option<String>,
    pub(super) tags: Option<BTreeMap<String, String>>,
    pub(super) otlp: Option<RawOtlp>,
    pub(super) destination: Option<String>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
pub(super) struct RawOtlp {
    pub(super) endpoint: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) headers: Option<BTreeMap<String, String>>,
    pub(super) timeout: Option<String>,
    pub(super) compression: Option<String>,
    pub(super) certificate: Option<String>,
    pub(super) client_certificate: Option<String>,
    pub(super) client_key: Option<String>,
    pub(super) insecure: Option<bool>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
pub(super) struct RawLimits {
    pub(super) timeout: Option<String>,
    pub(super) requests_per_minute: Option<u32>,
    pub(super) concurrency: Option<usize>,
    pub(super) max_series: Option<usize>,
    pub(super) ces_requests_per_minute: Option<u32>,
    pub(super) account_requests_per_minute: Option<u32>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
pub(super) struct RawCoordination {
    pub(super) engine: Option<String>,
    pub(super) url: Option<String>,
    pub(super) group: Option<String>,
    pub(super) lease: Option<String>,
    pub(super) on_unavailable: Option<String>,
    pub(super) ca_file: Option<String>,
    pub(super) client_certificate: Option<String>,
    pub(super) client_key: Option<String>,
}

/// One file, validated and typed, with the positions needed for cross-file checks.
pub struct FileSpec {
    pub(super) file: String,
    pub(super) doc: Located,
    pub(super) raw: RawFile,
}

impl FileSpec {
    pub(super) fn err(&self, pointer: &str, message: impl fmt::Display) -> SpecError {
        let pos = self.doc.pos(pointer);
        SpecError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: display_path(pointer),
            message: message.to_string(),
        }
    }
    pub(super) fn key_err(&self, pointer: &str, message: String) -> SpecError {
        let pos = self.doc.key_pos(pointer);
        SpecError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: display_path(pointer),
            message,
        }
    }
    pub(super) fn here(&self, pointer: &str) -> String {
        format!("{}:{}", self.file, self.doc.key_pos(pointer))
    }
}

/// Parses and schema-checks one document.
pub fn parse_file(file: &str, text: &str) -> Result<FileSpec, Vec<SpecError>> {
    let whole = |line, column, message: String| SpecError {
        file: file.to_string(),
        line,
        column,
        path: String::new(),
        message,
    };
    let doc = yaml::parse(text).map_err(|e| {
        let p = e.pos.unwrap_or(Pos { line: 1, column: 1 });
        vec![whole(p.line, p.column, e.message)]
    })?;
    if doc.value.is_null() {
        return Err(vec![whole(
            1,
            1,
            format!("the file is empty; a spec starts with apiVersion: {API_VERSION}"),
        )]);
    }
    let validator = validator().map_err(|m| vec![whole(1, 1, m.to_string())])?;
    let mut errors = Vec::new();
    for e in validator.iter_errors(&doc.value) {
        schema_errors(file, &doc, &e, &mut errors);
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        errors.dedup();
        return Err(errors);
    }
    let raw: RawFile = serde_json::from_value(doc.value.clone())
        .map_err(|e| vec![whole(1, 1, format!("unexpected shape: {e}"))])?;
    Ok(FileSpec {
        file: file.to_string(),
        doc,
        raw,
    })
}

pub(super) fn parse_range(
    f: &FileSpec,
    pointer: &str,
    v: Option<&Value>,
    errors: &mut Vec<SpecError>,
) -> Option<RangeExpr> {
    match v {
        None => Some(RangeExpr::LastDays(7)),
        Some(Value::String(s)) => match s.parse::<RangeExpr>() {
            Ok(r) => Some(r),
            Err(e) => {
                errors.push(f.err(pointer, e.to_string()));
                None
            }
        },
        Some(Value::Object(m)) if m.contains_key("every") => {
            let get = |k: &str| m.get(k).and_then(Value::as_str);
            match PeriodSpec::parse(get("every").unwrap_or(""), get("delay"), get("backfill")) {
                Ok(p) => Some(RangeExpr::Period(p)),
                Err(e) => {
                    errors.push(f.err(&format!("{pointer}/{}", e.key), e.message));
                    None
                }
            }
        }
        Some(Value::Object(m)) => {
            let bound = |key: &str, errors: &mut Vec<SpecError>| -> Option<Option<Bound>> {
                match m.get(key).and_then(Value::as_str) {
                    None => Some(None),
                    Some(s) => match s.parse::<Bound>() {
                        Ok(b) => Some(Some(b)),
                        Err(e) => {
                            errors.push(f.err(&format!("{pointer}/{key}"), e.to_string()));
                            None
                        }
                    },
                }
            };
            let from = bound("from", errors)?;
            let to = bound("to", errors)?;
            let from = from?;
            let after = match (from, to) {
                (Bound::Date(a), Some(Bound::Date(b))) => a > b,
                (Bound::Instant(a), Some(Bound::Instant(b))) => a > b,
                _ => false,
            };
            if after {
                errors.push(f.err(
                    &format!("{pointer}/to"),
                    format!(
                        "from ({from}) is after to ({})",
                        to.map(|t| t.to_string()).unwrap_or_default()
                    ),
                ));
                return None;
            }
            Some(RangeExpr::Between { from, to })
        }
        Some(_) => None,
    }
}

/// Semantic checks of one file and conversion of its queries.
pub(super) fn queries_of(f: &FileSpec, errors: &mut Vec<SpecError>) -> Vec<(QuerySpec, String)> {
    let mut out = Vec::new();
    for (i, q) in f.raw.queries.iter().flatten().enumerate() {
        let p = format!("/queries/{i}");
        let range = parse_range(f, &format!("{p}/range"), q.range.as_ref(), errors);
        let mut service_types = Vec::new();
        for (j, v) in q.service_types.iter().flatten().enumerate() {
            let parsed = match v {
                Value::Number(n) => ServiceType::from_code(n.as_i64().unwrap_or(0)),
                Value::String(s) => s.parse(),
                other => Err(crate::domain::ServiceTypeError::Name(other.to_string())),
            };
            match parsed {
                Ok(st) if service_types.contains(&st) => errors.push(f.err(
                    &format!("{p}/service_types/{j}"),
                    format!("{st} is listed twice (by name and by code)"),
                )),
                Ok(st) => service_types.push(st),
                Err(e) => errors.push(f.err(&format!("{p}/service_types/{j}"), e.to_string())),
            }
        }
        if q.service_types.is_none() {
            service_types.push(ServiceType::Preset);
        }
        let infer_type = q
            .infer_type
            .as_deref()
            .map(str::parse::<InferType>)
            .transpose()
            .unwrap_or_default()
            .unwrap_or_default();
        // A bad range is already an error; the query still takes part in the name checks.
        let range = range.unwrap_or(RangeExpr::LastDays(7));
        let source = source_of(f, &p, q, errors);
        out.push((
            QuerySpec {
                name: q.name.clone(),
                clouds: q.clouds.clone(),
                range,
                service_types,
                infer_type,
                key_groups: q.key_groups.clone(),
                ips: q.ips.clone(),
                source,
            },
            p,
        ));
    }
    out
}

/// A query's source, with the keys that belong to the other source refused where they stand.
fn source_of(f: &FileSpec, p: &str, q: &RawQuery, errors: &mut Vec<SpecError>) -> Source {
    let cloud_eye = q.source.as_deref() == Some("cloud_eye");
    let statistics_keys = [
        ("service_types", q.service_types.is_some()),
        ("infer_type", q.infer_type.is_some()),
        ("key_groups", q.key_groups.is_some()),
        ("ips", q.ips.is_some()),
    ];
    let cloud_eye_keys = [
        ("breakdown", q.breakdown.is_some()),
        ("models", q.models.is_some()),
        ("api_keys", q.api_keys.is_some()),
        ("metrics", q.metrics.is_some()),
    ];
    if !cloud_eye {
        for (key, set) in cloud_eye_keys {
            if set {
                errors.push(f.key_err(
                    &format!("{p}/{key}"),
                    format!("`{key}` applies to `source: cloud_eye` queries (per model and API key); this query reads ShowStatistics"),
                ));
            }
        }
        return Source::Statistics;
    }
    for (key, set) in statistics_keys {
        if set {
            errors.push(f.key_err(
                &format!("{p}/{key}"),
                format!("`{key}` applies to ShowStatistics; Cloud Eye's SYS.MaaS holds preset and My Services, real-time inference, per model and API key (use models:, api_keys:, breakdown:)"),
            ));
        }
    }
    let breakdown = q.breakdown.clone().unwrap_or_else(|| vec!["model".into()]);
    if super::spend::grouping(&breakdown).is_err() {
        errors.push(f.err(
            &format!("{p}/breakdown"),
            "a breakdown is [model], [model, api_key], [model, key_group] or [key_group] (Cloud Eye keeps API keys under their model; key groups sum them)",
        ));
    }
    // Key groups are sums of the per-key series.
    let by_key = breakdown.iter().any(|b| b == "api_key" || b == "key_group");
    if q.api_keys.is_some() && !by_key {
        errors.push(f.key_err(
            &format!("{p}/api_keys"),
            "filtering API keys needs `breakdown: [model, api_key]` (per-model totals cannot be split by key)".into(),
        ));
    }
    let metrics = match &q.metrics {
        None => cloud_eye::DEFAULT_METRICS
            .iter()
            .filter_map(|m| cloud_eye::metric(m))
            .collect(),
        // The schema lists the names the plugin knows.
        Some(names) => names.iter().filter_map(|m| cloud_eye::metric(m)).collect(),
    };
    Source::CloudEye(CloudEyeQuery {
        by_key,
        models: q.models.clone(),
        api_keys: q.api_keys.clone(),
        metrics,
    })
}

/// `names:` of one file.
pub(super) fn names_of(n: &RawNames) -> Names {
    Names {
        models: n.models.clone().unwrap_or_default(),
        keys: n.api_keys.clone().unwrap_or_default(),
    }
}

pub(super) fn output_of(f: &FileSpec, o: &RawOutput, errors: &mut Vec<SpecError>) -> OutputSpec {
    let mut out = OutputSpec::default();
    if let Some(fmt) = o.format.as_deref().and_then(Format::parse) {
        out.format = fmt;
    }
    if let Some(m) = &o.measurement {
        out.measurement = m.clone();
    }
    if let Some(otlp) = &o.otlp {
        out.otlp = otlp_of(f, otlp, errors);
    }
    out.destination = o.destination.clone();
    let reserved = fields::reserved_names();
    // Prometheus label -> the tag that makes it: two tags must not make one label (the
    // collector would refuse the duplicate and drop every metric).
    let mut labels: BTreeMap<String, &str> = BTreeMap::new();
    for (k, v) in o.tags.iter().flatten() {
        let label = fields::prometheus_label(k);
        if reserved.contains(k) || reserved.contains(&label) {
            errors.push(f.key_err(
                &format!("/output/tags/{k}"),
                format!("`{k}` is a tag or label the outputs already set (or the collector's Prometheus exporter does, as `{label}`); choose another key"),
            ));
        } else if let Some(first) = labels.get(&label) {
            errors.push(f.key_err(
                &format!("/output/tags/{k}"),
                format!("`{k}` and `{first}` are both the Prometheus label `{label}`; keep one"),
            ));
        } else {
            labels.insert(label, k);
            out.tags.insert(k.clone(), v.clone());
        }
    }
    out
}

pub(super) fn otlp_of(f: &FileSpec, o: &RawOtlp, errors: &mut Vec<SpecError>) -> OtlpSettings {
    let mut out = OtlpSettings {
        endpoint: o.endpoint.clone(),
        protocol: o.protocol.as_deref().and_then(Protocol::parse),
        gzip: o.compression.as_deref().map(|c| c == "gzip"),
        certificate: o.certificate.as_ref().map(PathBuf::from),
        client_certificate: o.client_certificate.as_ref().map(PathBuf::from),
        client_key: o.client_key.as_ref().map(PathBuf::from),
        insecure: o.insecure,
        ..Default::default()
    };
    if let Some(t) = &o.timeout {
        match range::parse_duration(t) {
            Ok(d) if !d.is_zero() => out.timeout = Some(d),
            Ok(_) => errors.push(f.err("/output/otlp/timeout", "must be more than zero")),
            Err(e) => errors.push(f.err("/output/otlp/timeout", e)),
        }
    }
    for (k, v) in o.headers.iter().flatten() {
        let lower = k.to_ascii_lowercase();
        if lower == "authorization"
            || looks_secret(&lower)
            || lower.contains("api-key")
            || lower.contains("apikey")
        {
            errors.push(f.key_err(
                &format!("/output/otlp/headers/{k}"),
                format!("`{k}` carries a credential; the spec is kept in git, so set it in OTEL_EXPORTER_OTLP_HEADERS instead"),
            ));
        } else {
            out.headers.insert(k.clone(), v.clone());
        }
    }
    out
}

pub(super) fn limits_of(f: &FileSpec, l: &RawLimits, errors: &mut Vec<SpecError>) -> Limits {
    let mut out = Limits::default();
    if let Some(t) = &l.timeout {
        match range::parse_duration(t) {
            Ok(d) if d.is_zero() => errors.push(f.err("/limits/timeout", "must be more than zero")),
            Ok(d) if d > std::time::Duration::from_secs(3600) => errors.push(f.err(
                "/limits/timeout",
                "more than an hour; a run should end well before the agent's next interval",
            )),
            Ok(d) => out.timeout = d,
            Err(e) => errors.push(f.err("/limits/timeout", e)),
        }
    }
    if let Some(r) = l.requests_per_minute {
        out.requests_per_minute = r;
    }
    if let Some(c) = l.concurrency {
        out.concurrency = c;
    }
    if let Some(m) = l.max_series {
        out.max_series = m;
    }
    if let Some(r) = l.ces_requests_per_minute {
        out.ces_requests_per_minute = r;
    }
    out.account_requests_per_minute = l.account_requests_per_minute;
    out
}

/// `coordination:` of one file: a Redis URL for engine redis only, without a password.
pub(super) fn coordination_of(
    f: &FileSpec,
    c: &RawCoordination,
    errors: &mut Vec<SpecError>,
) -> Coordination {
    let lease = c
        .lease
        .as_ref()
        .and_then(|t| match range::parse_duration(t) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                errors.push(f.err("/coordination/lease", "must be more than zero"));
                None
            }
            Err(e) => {
                errors.push(f.err("/coordination/lease", e));
                None
            }
        });
    if c.engine.as_deref() != Some("redis") {
        for (k, set) in [
            ("url", c.url.is_some()),
            ("group", c.group.is_some()),
            ("lease", c.lease.is_some()),
            ("on_unavailable", c.on_unavailable.is_some()),
            ("ca_file", c.ca_file.is_some()),
            ("client_certificate", c.client_certificate.is_some()),
            ("client_key", c.client_key.is_some()),
        ] {
            if set {
                errors.push(f.key_err(
                    &format!("/coordination/{k}"),
                    format!("`{k}` is for `engine: redis`; the state directory needs none"),
                ));
            }
        }
        return Coordination::default();
    }
    let Some(url) = &c.url else {
        errors.push(f.key_err(
            "/coordination",
            "`engine: redis` needs `url` (redis://HOST:PORT/DB, or rediss:// for TLS)".into(),
        ));
        return Coordination::default();
    };
    if redis_url_has_password(url) {
        errors.push(f.err(
            "/coordination/url",
            "carries a password; the spec is kept in git, so set it in MAAS_USAGE_REDIS_PASSWORD instead",
        ));
    }
    let (ca_file, client_certificate, client_key) = redis_tls_of(f, c, url, errors);
    Coordination {
        redis: Some(RedisSpec {
            url: url.clone(),
            group: c.group.clone(),
            lease,
            local_fallback: c.on_unavailable.as_deref() == Some("local"),
            ca_file,
            client_certificate,
            client_key,
        }),
    }
}

/// The TLS files of `coordination:` (`rediss://` only; the client's certificate and key
/// together), each with where the spec names it; read when a run connects, not here.
fn redis_tls_of(
    f: &FileSpec,
    c: &RawCoordination,
    url: &str,
    errors: &mut Vec<SpecError>,
) -> (Option<SpecPath>, Option<SpecPath>, Option<SpecPath>) {
    let tls = url.starts_with("rediss://");
    if tls && url.contains("#insecure") {
        errors.push(f.err(
            "/coordination/url",
            "`#insecure` turns certificate checks off, and TLS is always verified here; give the server's CA in `coordination.ca_file` instead",
        ));
    }
    let mut path = |key: &str, value: &Option<String>| {
        let v = value.as_ref()?;
        let pointer = format!("/coordination/{key}");
        if !tls {
            errors.push(f.key_err(
                &pointer,
                format!("`{key}` is for TLS: the url must be rediss://"),
            ));
        }
        Some(SpecPath {
            path: PathBuf::from(v),
            at: format!("{}:{}: coordination.{key}", f.file, f.doc.pos(&pointer)),
        })
    };
    let ca = path("ca_file", &c.ca_file);
    let cert = path("client_certificate", &c.client_certificate);
    let key = path("client_key", &c.client_key);
    match (&cert, &key) {
        (Some(_), None) => errors.push(f.key_err(
            "/coordination/client_certificate",
            "a client certificate needs its key too (`client_key`)".into(),
        )),
        (None, Some(_)) => errors.push(f.key_err(
            "/coordination/client_key",
            "a client key needs its certificate too (`client_certificate`)".into(),
        )),
        _ => {}
    }
    (ca, cert, key)
}

/// A Redis URL's authority carries a password (`redis://user:secret@host`, `redis://:secret@`).
pub fn redis_url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || rest.contains("password=")
}
