//! The spec's JSON Schema (embedded from `schemas/`) and what its errors say to people: each
//! schema error located and rewritten ("3 is not a service type; use 4 ..." rather than "3 is
//! not one of ...").

use std::sync::OnceLock;

use serde_json::Value;

use super::errors::{display_path, SpecError};
use super::load::API_VERSION;
use super::yaml::{self, Located, Pos};
use crate::domain::{InferType, RangeExpr, ServiceType};
use crate::endpoint::redact_url;

/// The spec's JSON Schema, embedded so `validate` needs nothing but the binary.
pub const SCHEMA: &str = include_str!("../../schemas/maas-usage.schema.json");

pub(super) fn schema_value() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    // The schema is part of the binary and tested; a parse failure is a build defect.
    V.get_or_init(|| serde_json::from_str(SCHEMA).unwrap_or(Value::Null))
}

/// The embedded schema does not compile: a build defect (the tests compile it).
#[derive(Debug, Clone, thiserror::Error)]
#[error("embedded schema: {0}")]
pub(super) struct SchemaDefect(String);

pub(super) fn validator() -> Result<&'static jsonschema::Validator, SchemaDefect> {
    static V: OnceLock<Result<jsonschema::Validator, SchemaDefect>> = OnceLock::new();
    V.get_or_init(|| {
        jsonschema::draft202012::new(schema_value()).map_err(|e| SchemaDefect(e.to_string()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The sub-schema describing the value at `pointer`, following `$ref`, `items`,
/// `additionalProperties` and the object branch of `oneOf`.
pub(super) fn schema_at(pointer: &str) -> Option<&'static Value> {
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
        s = if let Some(p) = properties(s).into_iter().find_map(|p| p.get(seg)) {
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

/// The `properties` of a sub-schema: its own, and those of the schemas it extends (`$ref`,
/// `allOf`, as `clouds` entries extend `cloud`).
fn properties(s: &'static Value) -> Vec<&'static serde_json::Map<String, Value>> {
    let root = schema_value();
    let mut out: Vec<&serde_json::Map<String, Value>> = Vec::new();
    let mut todo = vec![s];
    while let Some(s) = todo.pop() {
        out.extend(s.get("properties").and_then(Value::as_object));
        todo.extend(
            s.get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|path| root.pointer(path)),
        );
        todo.extend(
            s.get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    out
}

pub(super) fn allowed_keys(pointer: &str) -> Vec<String> {
    schema_at(pointer)
        .map(properties)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|m| m.keys().cloned())
        .collect()
}

pub(super) fn looks_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "ak" | "sk" | "access_key" | "secret_key" | "accesskey" | "secretkey"
    ) || ["secret", "password", "token", "access_key", "credential"]
        .iter()
        .any(|w| k.contains(w))
        && k != "credentials_file"
}

pub(super) const SECRET_ADVICE: &str = "secrets do not belong in the spec (it is kept in git); set HW_ACCESS_KEY and HW_SECRET_KEY in the environment, or point cloud.credentials_file at a mode-600 file";

/// A value as text: a string as it is, anything else as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn short(v: &Value) -> String {
    let s = value_text(v);
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
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
pub(super) fn shape(pointer: &str) -> String {
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

pub(super) fn pattern_message(pointer: &str, value: &Value) -> String {
    let v = short(value);
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
        // Every endpoint key; the value is shown without its user information (a password).
        (_, key) if key.ends_with("endpoint") => format!(
            "`{}` is not an http(s) URL (no query, no user information)",
            short(&Value::String(redact_url(&value_text(value))))
        ),
        ("/coordination/url", _) => format!(
            "`{}` is not a Redis URL; use redis://HOST:PORT/DB, or rediss:// for TLS",
            short(&Value::String(redact_url(&value_text(value))))
        ),
        ("/limits/timeout", _) => {
            format!("`{v}` is not a duration; use a number with ms, s or m, e.g. 25s")
        }
        ("/output/measurement", _) => format!(
            "`{v}` is not a measurement name; start with a letter, then letters, digits and _"
        ),
        ("/output/destination", _) => format!(
            "`{v}` is not a destination name; use letters, digits, _, . and - (at most 64), starting with a letter or digit"
        ),
        _ if sh.starts_with("/output/tags/") => {
            "a tag value must be non-empty, on one line, and without backslashes".to_string()
        }
        _ => format!("`{v}` is not in the expected form"),
    }
}

pub(super) fn enum_message(pointer: &str, v: &Value, options: &Value) -> String {
    let sh = shape(pointer);
    if sh == "/queries/*/service_types/*" {
        let parsed = match v {
            Value::Number(n) => n.as_i64().map(ServiceType::from_code),
            Value::String(s) => Some(s.parse::<ServiceType>()),
            _ => None,
        };
        if let Some(Err(e)) = parsed {
            return e.to_string();
        }
    }
    if sh == "/queries/*/infer_type" {
        if let Err(e) = short(v).parse::<InferType>() {
            return e.to_string();
        }
    }
    let opts = options
        .as_array()
        .map(|a| a.iter().map(short).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    format!("`{}` is not allowed here; use one of: {opts}", short(v))
}

pub(super) fn range_message(v: &Value) -> String {
    match v {
        Value::String(s) => match s.parse::<RangeExpr>() {
            Err(e) => e.to_string(),
            Ok(_) => "invalid range".into(),
        },
        Value::Object(m) if m.contains_key("every") => period_message(m),
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

/// Why a period mapping failed the schema, naming the key at fault and what it allows.
fn period_message(m: &serde_json::Map<String, Value>) -> String {
    const KEYS: [&str; 3] = ["every", "delay", "backfill"];
    if let Some(k) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return format!(
            "a period range takes `every`, `delay` and `backfill` (durations like 1h), not `{}`",
            short(&Value::String(k.clone()))
        );
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    if let Some(k) = KEYS
        .iter()
        .find(|k| m.contains_key(**k) && text(k).is_none())
    {
        return format!(
            "{k}: expected a duration like 1h, found {}",
            type_name(&m[*k])
        );
    }
    let every = text("every").unwrap_or_default();
    match crate::domain::range::PeriodSpec::parse(every, text("delay"), text("backfill")) {
        Err(e) => e.to_string(),
        // Durations the domain reads but the schema's units refuse (`300s`).
        Ok(_) => {
            "`every` and `backfill` take minutes, hours or days (5m, 1h, 1d); `delay` seconds too"
                .into()
        }
    }
}

/// Turns one schema error into located, friendly errors.
pub(super) fn schema_errors(
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
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
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

pub(super) fn fmt_kind(kind: &jsonschema::error::TypeKind) -> String {
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
