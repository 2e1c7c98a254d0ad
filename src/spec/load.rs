//! Spec files -> a typed `Spec`, or every error, each located `file:line:column: path: message`.
//!
//! Order: size cap, YAML (with budgets), JSON Schema (the embedded `schemas/` file), then typed
//! conversion with semantic checks, then the merge of several files.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::yaml::{self, Located, Pos};
use super::{CloudSpec, Format, Limits, OutputSpec, QuerySpec, Spec};
use super::{OtlpSettings, Protocol};
use crate::domain::names as fields;
use crate::domain::range::{self, Bound, PeriodSpec, RangeExpr};
use crate::domain::{InferType, ServiceType};
use crate::endpoint::Endpoint;
use crate::fsread::ReadFileError;

/// The spec's JSON Schema, embedded so `validate` needs nothing but the binary.
pub const SCHEMA: &str = include_str!("../../schemas/maas-usage.schema.json");
pub const API_VERSION: &str = "maas-usage/v1";
/// A spec is a few kilobytes; anything past this is refused before it is parsed.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// `queries[2].service_types[0]`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// All errors of a load, in file order.
#[derive(Debug, Clone, Default)]
pub struct SpecErrors(pub Vec<SpecError>);

impl std::error::Error for SpecErrors {}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// `/queries/2/service_types/0` -> `queries[2].service_types[0]`.
pub fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn schema_value() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    // The schema is part of the binary and tested; a parse failure is a build defect.
    V.get_or_init(|| serde_json::from_str(SCHEMA).unwrap_or(Value::Null))
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static V: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::draft202012::new(schema_value()).map_err(|e| format!("embedded schema: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The sub-schema describing the value at `pointer`, following `$ref`, `items`,
/// `additionalProperties` and the object branch of `oneOf`.
fn schema_at(pointer: &str) -> Option<&'static Value> {
    let root = schema_value();
    let resolve = |mut s: &'static Value| {
        while let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let path = r.strip_prefix("#")?;
            s = root.pointer(path)?;
        }
        Some(s)
    };
    let mut s = resolve(root)?;
    for seg in pointer.split('/').skip(1) {
        if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
            s = resolve(branches.iter().find(|b| b.get("properties").is_some())?)?;
        }
        s = if let Some(p) = s.get("properties").and_then(|p| p.get(seg)) {
            p
        } else if let Some(items) = s.get("items") {
            items
        } else {
            s.get("additionalProperties").filter(|a| a.is_object())?
        };
        s = resolve(s)?;
    }
    if let Some(branches) = s.get("oneOf").and_then(Value::as_array) {
        if let Some(b) = branches.iter().find(|b| b.get("properties").is_some()) {
            s = resolve(b)?;
        }
    }
    Some(s)
}

fn allowed_keys(pointer: &str) -> Vec<String> {
    schema_at(pointer)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "ak" | "sk" | "access_key" | "secret_key" | "accesskey" | "secretkey"
    ) || ["secret", "password", "token", "access_key", "credential"]
        .iter()
        .any(|w| k.contains(w))
        && k != "credentials_file"
}

const SECRET_ADVICE: &str = "secrets do not belong in the spec (it is kept in git); set HW_ACCESS_KEY and HW_SECRET_KEY in the environment, or point cloud.credentials_file at a mode-600 file";

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Normalises a pointer for matching: array indices become `*`.
fn shape(pointer: &str) -> String {
    pointer
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn pattern_message(pointer: &str, v: &Value) -> String {
    let v = short(v);
    let sh = shape(pointer);
    let last = sh.rsplit('/').next().unwrap_or("");
    match (sh.as_str(), last) {
        ("/queries/*/name", _) => format!(
            "`{v}` is not a valid query name; use lowercase letters, digits, _ and - (at most 63)"
        ),
        ("/cloud/project_id", _) => {
            format!("`{v}` is not a project id; it is 32 lowercase letters and digits")
        }
        ("/cloud/region", _) => format!("`{v}` is not a region name like cn-southwest-2"),
        (_, "endpoint" | "iam_endpoint") => {
            format!("`{v}` is not an http(s) URL (no query, no user information)")
        }
        ("/limits/timeout", _) => {
            format!("`{v}` is not a duration; use a number with ms, s or m, e.g. 25s")
        }
        ("/output/measurement", _) => format!(
            "`{v}` is not a measurement name; start with a letter, then letters, digits and _"
        ),
        _ if sh.starts_with("/output/tags/") => {
            "a tag value must be non-empty, on one line, and without backslashes".to_string()
        }
        _ => format!("`{v}` is not in the expected form"),
    }
}

fn enum_message(pointer: &str, v: &Value, options: &Value) -> String {
    let sh = shape(pointer);
    if sh == "/queries/*/service_types/*" {
        let parsed = match v {
            Value::Number(n) => n.as_i64().map(ServiceType::from_code),
            Value::String(s) => Some(s.parse::<ServiceType>()),
            _ => None,
        };
        if let Some(Err(e)) = parsed {
            return e;
        }
    }
    if sh == "/queries/*/infer_type" {
        if let Err(e) = short(v).parse::<InferType>() {
            return e;
        }
    }
    let opts = options
        .as_array()
        .map(|a| a.iter().map(short).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    format!("`{}` is not allowed here; use one of: {opts}", short(v))
}

fn range_message(v: &Value) -> String {
    match v {
        Value::String(s) => match s.parse::<RangeExpr>() {
            Err(e) => e.to_string(),
            Ok(_) => "invalid range".into(),
        },
        Value::Object(m) if m.contains_key("every") => {
            "a period range takes `every`, `delay` and `backfill` (durations like 1h), nothing else"
                .into()
        }
        Value::Object(m) if !m.contains_key("from") => {
            "a range mapping needs `from` (and optionally `to`), or `every` for period mode".into()
        }
        Value::Object(_) => "a range mapping takes only `from` and `to`, both strings".into(),
        other => format!(
            "a range is a string like last_7d or a mapping {{from, to}}, not {}",
            type_name(other)
        ),
    }
}

/// Turns one schema error into located, friendly errors.
fn schema_errors(
    file: &str,
    doc: &Located,
    err: &jsonschema::ValidationError<'_>,
    out: &mut Vec<SpecError>,
) {
    use jsonschema::error::ValidationErrorKind as K;
    let pointer = err.instance_path().as_str().to_string();
    let at = |pos: Pos, pointer: &str, message: String| SpecError {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        path: display_path(pointer),
        message,
    };
    let instance: &Value = err.instance();
    let message = match err.kind() {
        K::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(&pointer).join(", ");
            for key in unexpected {
                let child = format!("{pointer}/{}", yaml::escape_segment(key));
                let message = if looks_secret(key) {
                    format!("`{key}`: {SECRET_ADVICE}")
                } else {
                    format!("unknown key `{key}`; allowed here: {allowed}")
                };
                out.push(at(doc.key_pos(&child), &child, message));
            }
            return;
        }
        K::PropertyNames { error } => {
            let name = short(error.instance());
            let child = format!("{pointer}/{}", yaml::escape_segment(&name));
            let what = if shape(&pointer) == "/key_groups" {
                "key group name"
            } else {
                "tag key"
            };
            let rule = if what == "key group name" {
                "lowercase letters, digits, _ and - (at most 63)"
            } else {
                "a letter, then letters, digits and _"
            };
            out.push(at(
                doc.key_pos(&child),
                &child,
                format!("`{name}` is not a valid {what}; use {rule}"),
            ));
            return;
        }
        K::Required { property } => format!("missing required key `{}`", short(property)),
        K::Constant { .. } if pointer == "/apiVersion" => {
            format!("apiVersion must be {API_VERSION}")
        }
        K::Enum { options } => enum_message(&pointer, instance, options),
        K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. }
            if shape(&pointer) == "/queries/*/range" =>
        {
            range_message(instance)
        }
        K::Type { kind } => format!("expected {}, found {}", fmt_kind(kind), type_name(instance)),
        K::Pattern { .. } => pattern_message(&pointer, instance),
        K::MinItems { .. } => "must not be empty".into(),
        K::UniqueItems => "lists the same entry twice".into(),
        K::Minimum { limit } => format!("{} is below the minimum {limit}", short(instance)),
        K::Maximum { limit } => format!("{} is above the maximum {limit}", short(instance)),
        K::MinLength { .. } => "must not be empty".into(),
        K::MaxLength { limit } => format!("is longer than {limit} characters"),
        _ => err.to_string(),
    };
    out.push(at(doc.pos(&pointer), &pointer, message));
}

fn fmt_kind(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "array" => "a list".to_string(),
        "object" => "a mapping".to_string(),
        "integer" => "an integer".to_string(),
        other => format!("a {other}"),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

// The raw shapes of a file once the schema has passed: typed conversion below cannot meet a
// structural surprise, only semantic ones.
#[derive(Deserialize, Default)]
struct RawFile {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    cloud: Option<RawCloud>,
    timezone: Option<String>,
    key_groups: Option<BTreeMap<String, Vec<String>>>,
    queries: Option<Vec<RawQuery>>,
    output: Option<RawOutput>,
    limits: Option<RawLimits>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
struct RawCloud {
    region: Option<String>,
    project_id: Option<String>,
    endpoint: Option<String>,
    iam_endpoint: Option<String>,
    credentials_file: Option<String>,
}

#[derive(Deserialize)]
struct RawQuery {
    name: String,
    range: Option<Value>,
    service_types: Option<Vec<Value>>,
    infer_type: Option<String>,
    key_groups: Option<Vec<String>>,
    ips: Option<Vec<String>>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
struct RawOutput {
    format: Option<String>,
    measurement: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    otlp: Option<RawOtlp>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
struct RawOtlp {
    endpoint: Option<String>,
    protocol: Option<String>,
    headers: Option<BTreeMap<String, String>>,
    timeout: Option<String>,
    compression: Option<String>,
}

#[derive(Deserialize, Default, Clone, PartialEq)]
struct RawLimits {
    timeout: Option<String>,
    requests_per_minute: Option<u32>,
    concurrency: Option<usize>,
}

/// One file, validated and typed, with the positions needed for cross-file checks.
pub struct FileSpec {
    file: String,
    doc: Located,
    raw: RawFile,
}

impl FileSpec {
    fn err(&self, pointer: &str, message: String) -> SpecError {
        let pos = self.doc.pos(pointer);
        SpecError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: display_path(pointer),
            message,
        }
    }
    fn key_err(&self, pointer: &str, message: String) -> SpecError {
        let pos = self.doc.key_pos(pointer);
        SpecError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: display_path(pointer),
            message,
        }
    }
    fn here(&self, pointer: &str) -> String {
        format!("{}:{}", self.file, self.doc.key_pos(pointer))
    }
}

/// Reads a regular file with the size cap applied before any parsing (a FIFO or a device is
/// refused before it is opened).
fn read_capped(path: &Path) -> Result<String, String> {
    let buf = crate::fsread::read_regular(path, MAX_SPEC_BYTES).map_err(|e| match e {
        ReadFileError::TooLarge { .. } => format!(
            "larger than {} KiB; a spec is a few kilobytes",
            MAX_SPEC_BYTES / 1024
        ),
        ReadFileError::NotRegular { .. } => format!("{e}; a spec is a YAML file"),
        other => format!("cannot read: {other}"),
    })?;
    String::from_utf8(buf).map_err(|_| "not UTF-8 text".to_string())
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
    let validator = validator().map_err(|m| vec![whole(1, 1, m)])?;
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

fn parse_range(
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
                Err((key, message)) => {
                    errors.push(f.err(&format!("{pointer}/{key}"), message));
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
fn queries_of(f: &FileSpec, errors: &mut Vec<SpecError>) -> Vec<(QuerySpec, String)> {
    let mut out = Vec::new();
    for (i, q) in f.raw.queries.iter().flatten().enumerate() {
        let p = format!("/queries/{i}");
        let range = parse_range(f, &format!("{p}/range"), q.range.as_ref(), errors);
        let mut service_types = Vec::new();
        for (j, v) in q.service_types.iter().flatten().enumerate() {
            let parsed = match v {
                Value::Number(n) => ServiceType::from_code(n.as_i64().unwrap_or(0)),
                Value::String(s) => s.parse(),
                _ => Err("not a service type".into()),
            };
            match parsed {
                Ok(st) if service_types.contains(&st) => errors.push(f.err(
                    &format!("{p}/service_types/{j}"),
                    format!("{st} is listed twice (by name and by code)"),
                )),
                Ok(st) => service_types.push(st),
                Err(e) => errors.push(f.err(&format!("{p}/service_types/{j}"), e)),
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
        out.push((
            QuerySpec {
                name: q.name.clone(),
                range,
                service_types,
                infer_type,
                key_groups: q.key_groups.clone(),
                ips: q.ips.clone(),
            },
            p,
        ));
    }
    out
}

fn cloud_of(f: &FileSpec, c: &RawCloud, errors: &mut Vec<SpecError>) -> CloudSpec {
    for (key, url) in [("endpoint", &c.endpoint), ("iam_endpoint", &c.iam_endpoint)] {
        if let Some(u) = url {
            if let Err(e) = Endpoint::parse(u) {
                errors.push(f.err(&format!("/cloud/{key}"), e.to_string()));
            }
        }
    }
    CloudSpec {
        region: c.region.clone(),
        project_id: c.project_id.clone(),
        endpoint: c.endpoint.clone(),
        iam_endpoint: c.iam_endpoint.clone(),
        credentials_file: c.credentials_file.as_ref().map(PathBuf::from),
    }
}

fn output_of(f: &FileSpec, o: &RawOutput, errors: &mut Vec<SpecError>) -> OutputSpec {
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
    for (k, v) in o.tags.iter().flatten() {
        if fields::BUILTIN_TAGS.contains(&k.as_str()) {
            errors.push(f.key_err(
                &format!("/output/tags/{k}"),
                format!("`{k}` is a tag every series already carries; choose another key"),
            ));
        } else {
            out.tags.insert(k.clone(), v.clone());
        }
    }
    out
}

fn otlp_of(f: &FileSpec, o: &RawOtlp, errors: &mut Vec<SpecError>) -> OtlpSettings {
    let mut out = OtlpSettings {
        endpoint: o.endpoint.clone(),
        protocol: o.protocol.as_deref().and_then(Protocol::parse),
        gzip: o.compression.as_deref().map(|c| c == "gzip"),
        ..Default::default()
    };
    if let Some(t) = &o.timeout {
        match range::parse_duration(t) {
            Ok(d) if !d.is_zero() => out.timeout = Some(d),
            Ok(_) => errors.push(f.err("/output/otlp/timeout", "must be more than zero".into())),
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

fn limits_of(f: &FileSpec, l: &RawLimits, errors: &mut Vec<SpecError>) -> Limits {
    let mut out = Limits::default();
    if let Some(t) = &l.timeout {
        match range::parse_duration(t) {
            Ok(d) if d.is_zero() => {
                errors.push(f.err("/limits/timeout", "must be more than zero".into()))
            }
            Ok(d) if d > std::time::Duration::from_secs(3600) => errors.push(f.err(
                "/limits/timeout",
                "more than an hour; a run should end well before the agent's next interval".into(),
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
    out
}

/// A section that may be set in one file only (or identically in several).
struct Single<T> {
    value: Option<(T, String)>,
}

impl<T: PartialEq> Single<T> {
    fn set(&mut self, f: &FileSpec, pointer: &str, v: T, name: &str, errors: &mut Vec<SpecError>) {
        match &self.value {
            Some((prev, at)) if *prev != v => errors.push(f.key_err(
                pointer,
                format!("{name} is also set in {at} with other values; set it in one file only"),
            )),
            Some(_) => {}
            None => self.value = Some((v, f.here(pointer))),
        }
    }
}

/// Merges validated files into one spec, checking what spans files.
pub fn merge(files: &[FileSpec]) -> Result<Spec, SpecErrors> {
    let mut errors = Vec::new();
    let mut spec = Spec::default();
    let mut cloud = Single { value: None };
    let mut output = Single { value: None };
    let mut limits = Single { value: None };
    let mut timezone = Single { value: None };
    let mut group_at: HashMap<String, String> = HashMap::new();
    let mut query_at: HashMap<String, String> = HashMap::new();
    let mut query_refs: Vec<(usize, usize, String)> = Vec::new();

    for (fi, f) in files.iter().enumerate() {
        if let Some(c) = &f.raw.cloud {
            cloud.set(
                f,
                "/cloud",
                cloud_of(f, c, &mut errors),
                "cloud",
                &mut errors,
            );
        }
        if let Some(o) = &f.raw.output {
            output.set(
                f,
                "/output",
                output_of(f, o, &mut errors),
                "output",
                &mut errors,
            );
        }
        if let Some(l) = &f.raw.limits {
            limits.set(
                f,
                "/limits",
                limits_of(f, l, &mut errors),
                "limits",
                &mut errors,
            );
        }
        if let Some(tz) = &f.raw.timezone {
            match crate::time::parse_zone(tz) {
                Ok(_) => timezone.set(f, "/timezone", tz.clone(), "timezone", &mut errors),
                Err(e) => errors.push(f.err("/timezone", e.to_string())),
            }
        }
        for (name, keys) in f.raw.key_groups.iter().flatten() {
            let p = format!("/key_groups/{}", yaml::escape_segment(name));
            match spec.key_groups.get(name) {
                Some(prev) if prev != keys => errors.push(f.key_err(
                    &p,
                    format!(
                        "key group `{name}` is also defined in {} with other keys",
                        group_at.get(name).map(String::as_str).unwrap_or("another file")
                    ),
                )),
                Some(_) => {}
                None => {
                    spec.key_groups.insert(name.clone(), keys.clone());
                    group_at.insert(name.clone(), f.here(&p));
                }
            }
        }
        for (q, p) in queries_of(f, &mut errors) {
            let name_ptr = format!("{p}/name");
            if let Some(first) = query_at.get(&q.name) {
                errors.push(f.err(&name_ptr, format!("query name `{}` is already used at {first}; names must be unique across all spec files", q.name)));
                continue;
            }
            query_at.insert(
                q.name.clone(),
                format!("{}:{}", f.file, f.doc.pos(&name_ptr)),
            );
            query_refs.push((fi, spec.queries.len(), p));
            spec.queries.push(q);
        }
    }
    // Key groups may be defined in any file, so references are checked after all are read.
    for (fi, qi, p) in &query_refs {
        let f = &files[*fi];
        for (j, g) in spec.queries[*qi].key_groups.iter().flatten().enumerate() {
            if !spec.key_groups.contains_key(g) {
                let defined = spec
                    .key_groups
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ");
                let hint = if defined.is_empty() {
                    "no key_groups are defined".to_string()
                } else {
                    format!("defined: {defined}")
                };
                errors.push(f.err(
                    &format!("{p}/key_groups/{j}"),
                    format!("unknown key group `{g}`; {hint}"),
                ));
            }
        }
    }
    if spec.queries.is_empty() && errors.is_empty() {
        let file = files.first().map(|f| f.file.clone()).unwrap_or_default();
        errors.push(SpecError {
            file,
            line: 1,
            column: 1,
            path: "queries".into(),
            message: "no queries: a spec needs at least one".into(),
        });
    }
    if !errors.is_empty() {
        let order: HashMap<&str, usize> = files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.file.as_str(), i))
            .collect();
        errors.sort_by_key(|e| {
            (
                order.get(e.file.as_str()).copied().unwrap_or(0),
                e.line,
                e.column,
            )
        });
        return Err(SpecErrors(errors));
    }
    spec.cloud = cloud.value.map(|v| v.0).unwrap_or_default();
    spec.output = output.value.map(|v| v.0).unwrap_or_default();
    spec.limits = limits.value.map(|v| v.0).unwrap_or_default();
    spec.timezone = timezone.value.map(|v| v.0);
    Ok(spec)
}

/// Paths as given: a directory means its `*.yaml` and `*.yml` files in name order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SpecErrors> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let whole = |p: &Path, message: String| SpecError {
        file: p.display().to_string(),
        line: 1,
        column: 1,
        path: String::new(),
        message,
    };
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|f| {
                            f.is_file()
                                && matches!(
                                    f.extension().and_then(|e| e.to_str()),
                                    Some("yaml" | "yml")
                                )
                        })
                        .collect();
                    files.sort();
                    if files.is_empty() {
                        errors.push(whole(
                            p,
                            "the directory holds no *.yaml or *.yml file".into(),
                        ));
                    }
                    out.extend(files);
                }
                Err(e) => errors.push(whole(p, format!("cannot read the directory: {e}"))),
            }
        } else {
            out.push(p.clone());
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SpecErrors(errors))
    }
}

/// Loads, validates and merges spec files; every error of every file is reported.
pub fn load(paths: &[PathBuf]) -> Result<Spec, SpecErrors> {
    let files = expand(paths)?;
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        match read_capped(path) {
            Ok(text) => match parse_file(&name, &text) {
                Ok(f) => parsed.push(f),
                Err(es) => errors.extend(es),
            },
            Err(message) => errors.push(SpecError {
                file: name,
                line: 1,
                column: 1,
                path: String::new(),
                message,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    merge(&parsed)
}

/// Loads one spec from text (the embedded example, tests).
pub fn load_str(name: &str, text: &str) -> Result<Spec, SpecErrors> {
    let f = parse_file(name, text).map_err(SpecErrors)?;
    merge(std::slice::from_ref(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match load_str("spec.yaml", text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const HEAD: &str = "apiVersion: maas-usage/v1\n";

    #[test]
    fn the_schema_compiles_and_documents_every_property() {
        assert!(validator().is_ok());
        fn walk(v: &Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    let has_doc = p.get("description").is_some();
                    let has_example = p.get("examples").is_some()
                        || p.get("$ref").is_some()
                        || p.get("items").is_some()
                            && p.get("type") == Some(&Value::from("array"))
                            && k == "queries";
                    if !has_doc || !has_example {
                        missing.push(format!("{path}.{k}"));
                    }
                    walk(p, &format!("{path}.{k}"), missing);
                }
            }
            for key in ["items", "additionalProperties"] {
                if let Some(sub) = v.get(key).filter(|s| s.is_object()) {
                    walk(sub, path, missing);
                }
            }
            for b in v
                .get("oneOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(b, path, missing);
            }
            for (k, d) in v
                .get("$defs")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                walk(d, &format!("$defs.{k}"), missing);
            }
        }
        let mut missing = Vec::new();
        walk(schema_value(), "", &mut missing);
        assert!(
            missing.is_empty(),
            "properties without description or examples: {missing:?}"
        );
        assert!(schema_value().get("$id").is_some());
    }

    #[test]
    fn format_names_are_the_schemas() {
        let schema_names: Vec<&str> = schema_value()
            .pointer("/properties/output/properties/format/enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert_eq!(schema_names, Format::NAMES);
        assert!(Format::NAMES.iter().all(|n| Format::parse(n).is_some()));
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = load_str("s.yaml", &format!("{HEAD}queries:\n  - name: q\n")).unwrap();
        assert_eq!(spec.queries[0].range, RangeExpr::LastDays(7));
        assert_eq!(spec.queries[0].service_types, vec![ServiceType::Preset]);
        assert_eq!(spec.limits, Limits::default());
        assert_eq!(spec.output.measurement, "maas_usage");
    }

    #[test]
    fn service_type_three_is_located_and_explained() {
        let e = errs(&format!(
            "{HEAD}queries:\n  - name: q\n    service_types: [preset, 3]\n"
        ));
        assert_eq!(e, vec!["spec.yaml:4:29: queries[0].service_types[1]: 3 is not a service type; use 4 for Custom Endpoint (the API refuses 3)"]);
    }

    #[test]
    fn unknown_keys_and_inline_secrets() {
        let e = errs(&format!(
            "{HEAD}cloud:\n  regoin: cn-southwest-2\n  sk: abc\nqueries:\n  - name: q\n"
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("spec.yaml:3:3: cloud.regoin: unknown key `regoin`; allowed here: region, project_id"), "{e:?}");
        assert!(
            e[1].starts_with("spec.yaml:4:3: cloud.sk: `sk`: secrets do not belong in the spec"),
            "{e:?}"
        );
        assert!(!e[1].contains("abc"));
    }

    #[test]
    fn every_error_is_listed() {
        let e = errs(&format!(
            "{HEAD}queries:\n  - name: Bad Name\n    range: last_week\n    infer_type: stream\n  - name: ok\n    key_groups: [ghost]\nlimits:\n  concurrency: 0\n"
        ));
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].contains("queries[0].name: `Bad Name` is not a valid query name"),
            "{e:?}"
        );
        assert!(
            e[1].contains("queries[0].range: `last_week` is not a range"),
            "{e:?}"
        );
        assert!(
            e[2].contains("queries[0].infer_type: `stream` is not an inference type"),
            "{e:?}"
        );
        assert!(
            e[3].contains("limits.concurrency: 0 is below the minimum 1"),
            "{e:?}"
        );
    }

    #[test]
    fn semantic_errors_are_located() {
        let e = errs(&format!(
            "{HEAD}key_groups:\n  a: [k1]\nqueries:\n  - name: q\n    key_groups: [a, ghost]\n  - name: q\n    range: {{from: 2026-05-09, to: 2026-05-08}}\n  - name: r\n    range: last_0d\n"
        ));
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with(
                "spec.yaml:7:11: queries[1].name: query name `q` is already used at spec.yaml:5:11"
            )),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m
                    .contains("queries[1].range.to: from (2026-05-09) is after to (2026-05-08)")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.contains("queries[2].range: last_0d must be at least 1")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with(
                "spec.yaml:6:21: queries[0].key_groups[1]: unknown key group `ghost`; defined: a"
            )),
            "{e:?}"
        );
    }

    #[test]
    fn wrong_api_version_and_types() {
        let e = errs("apiVersion: v2\nqueries: {name: q}\n");
        assert!(e[0].contains("apiVersion must be maas-usage/v1"), "{e:?}");
        assert!(
            e[1].contains("queries: expected a list, found a mapping"),
            "{e:?}"
        );
    }

    #[test]
    fn builtin_tag_names_are_refused() {
        let e = errs(&format!(
            "{HEAD}queries: [{{name: q}}]\noutput:\n  tags: {{query: x}}\n"
        ));
        assert!(
            e[0].contains("output.tags.query: `query` is a tag every series already carries"),
            "{e:?}"
        );
    }

    #[test]
    fn otlp_settings_and_credential_headers() {
        let spec = load_str(
            "s.yaml",
            &format!("{HEAD}queries: [{{name: q}}]\noutput:\n  format: otlp\n  otlp:\n    endpoint: http://c:4317\n    protocol: grpc\n    compression: gzip\n    timeout: 3s\n    headers: {{x-scope-orgid: finops}}\n"),
        )
        .unwrap();
        assert_eq!(spec.output.format, Format::Otlp);
        assert_eq!(spec.output.otlp.protocol, Some(Protocol::Grpc));
        assert_eq!(spec.output.otlp.gzip, Some(true));
        assert_eq!(
            spec.output.otlp.timeout,
            Some(std::time::Duration::from_secs(3))
        );
        let e = errs(&format!("{HEAD}queries: [{{name: q}}]\noutput:\n  otlp:\n    headers: {{Authorization: Bearer xyz}}\n"));
        assert!(
            e[0].contains(
                "output.otlp.headers.Authorization: `Authorization` carries a credential"
            ),
            "{e:?}"
        );
        assert!(!e[0].contains("xyz"));
    }

    use proptest::prelude::*;

    fn yamlish() -> impl Strategy<Value = String> {
        let keys = prop::sample::select(vec![
            "apiVersion",
            "cloud",
            "region",
            "queries",
            "- name",
            "range",
            "service_types",
            "key_groups",
            "output",
            "tags",
            "limits",
            "timeout",
            "from",
            "to",
            "ak",
            "&a",
            "*a",
            "<<",
            "?",
            "-",
            "",
            "otlp",
            "headers",
        ]);
        let values = prop::sample::select(vec![
            "",
            "maas-usage/v1",
            "last_7d",
            "[preset, 3]",
            "{from: 2026-05-01}",
            "*a",
            "&a x",
            "25s",
            "-1",
            "1e999",
            "\"\\u0000\"",
            "[",
            "{",
            "|",
            ">",
            "!!binary AAAA",
            "~",
            "null",
            "[*a, *a, *a]",
            "'",
            "\t",
        ]);
        prop::collection::vec((0usize..6, keys, values), 0..25).prop_map(|lines| {
            lines
                .into_iter()
                .map(|(indent, k, v)| format!("{}{k}: {v}\n", "  ".repeat(indent)))
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary text never panics the loader and always finishes quickly.
        #[test]
        fn loader_survives_arbitrary_text(s in "(?s).{0,400}") {
            let started = std::time::Instant::now();
            let _ = load_str("f.yaml", &s);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(2));
        }

        /// Spec-shaped noise (keys, anchors, aliases, odd scalars) never panics either, and every
        /// error it produces is located inside the text.
        #[test]
        fn loader_survives_spec_shaped_noise(s in yamlish()) {
            if let Err(errors) = load_str("f.yaml", &s) {
                let lines = s.lines().count().max(1) as u64;
                for e in errors.0 {
                    prop_assert!(e.line >= 1 && e.line <= lines + 1, "{e} outside {lines} lines");
                }
            }
        }
    }

    #[test]
    fn period_ranges() {
        let spec = load_str(
            "s.yaml",
            &format!(
                "{HEAD}queries:\n  - name: q\n    range: {{every: 1h, delay: 90m, backfill: 2d}}\n"
            ),
        )
        .unwrap();
        assert!(
            matches!(spec.queries[0].range, RangeExpr::Period(p) if p.every_ms == 3_600_000 && p.delay_ms == 5_400_000)
        );
        let e = errs(&format!(
            "{HEAD}queries:\n  - name: q\n    range: {{every: 7m}}\n"
        ));
        assert!(
            e[0].contains(
                "queries[0].range.every: `7m` must be between 5m and 1d and divide a day"
            ),
            "{e:?}"
        );
        let e = errs(&format!(
            "{HEAD}queries:\n  - name: q\n    range: {{every: 1h, backfill: 40d}}\n"
        ));
        assert!(
            e[0].contains("queries[0].range.backfill: at most 30d"),
            "{e:?}"
        );
    }

    #[test]
    fn display_paths() {
        assert_eq!(
            display_path("/queries/2/service_types/0"),
            "queries[2].service_types[0]"
        );
        assert_eq!(display_path("/key_groups/a~1b"), "key_groups.a/b");
        assert_eq!(display_path(""), "");
    }
}
