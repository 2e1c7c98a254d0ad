//! Spec files -> a typed `Spec`, or every error, each located `file:line:column: path: message`.
//!
//! Order: size cap, YAML (with budgets), JSON Schema (`schema`), then typed conversion with
//! semantic checks (`convert`), then the merge of several files (`merge`). This module finds
//! and reads the files.

use std::path::{Path, PathBuf};

use super::convert::parse_file;
pub use super::errors::{display_path, SpecError, SpecErrors};
use super::merge::merge;
pub use super::schema::SCHEMA;
use super::Spec;
use crate::files::ReadFileError;

pub const API_VERSION: &str = "maas-usage/v1";
/// A spec is a few kilobytes; anything past this is refused before it is parsed.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// Reads a regular file with the size cap applied before any parsing (a FIFO or a device is
/// refused before it is opened).
fn read_capped(path: &Path) -> Result<String, SpecReadError> {
    let buf = crate::files::read_regular(path, MAX_SPEC_BYTES)?;
    String::from_utf8(buf).map_err(|_| SpecReadError::NotUtf8)
}

/// Why a spec file could not be read.
#[derive(Debug, thiserror::Error)]
enum SpecReadError {
    #[error("{}", read_message(.0))]
    Read(#[from] ReadFileError),
    #[error("not UTF-8 text")]
    NotUtf8,
}

fn read_message(e: &ReadFileError) -> String {
    match e {
        ReadFileError::TooLarge { .. } => format!(
            "larger than {} KiB; a spec is a few kilobytes",
            MAX_SPEC_BYTES / 1024
        ),
        ReadFileError::NotRegular { .. } => format!("{e}; a spec is a YAML file"),
        other => format!("cannot read: {other}"),
    }
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
                message: message.to_string(),
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
    use crate::domain::RangeExpr;
    use crate::domain::ServiceType;
    use crate::spec::schema::{schema_value, validator};
    use crate::spec::Limits;
    use crate::spec::{Format, Protocol};
    use serde_json::Value;

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
    fn builtin_tag_and_label_names_are_refused() {
        for key in [
            "query",
            "model",
            "cloud_region",
            "maas_model",
            "host_name",
            "maas_outcome",
        ] {
            let e = errs(&format!(
                "{HEAD}queries: [{{name: q}}]\noutput:\n  tags: {{{key}: x}}\n"
            ));
            assert!(
                e[0].contains(&format!(
                    "output.tags.{key}: `{key}` is a tag or label the outputs already set"
                )),
                "{e:?}"
            );
        }
    }

    #[test]
    fn tags_are_refused_by_the_label_the_collector_makes_of_them() {
        // `maas__query` is the label `maas_query`; `job` is the collector's own.
        for key in ["maas__query", "job", "otel_scope_name"] {
            let e = errs(&format!(
                "{HEAD}queries: [{{name: q}}]\noutput:\n  tags: {{{key}: x}}\n"
            ));
            assert!(
                e[0].contains(&format!(
                    "output.tags.{key}: `{key}` is a tag or label the outputs already set"
                )),
                "{e:?}"
            );
        }
        let e = errs(&format!(
            "{HEAD}queries: [{{name: q}}]\noutput:\n  tags: {{a_b: v1, a__b: v2}}\n"
        ));
        assert!(
            e[0].contains("`a_b` and `a__b` are both the Prometheus label `a_b`; keep one"),
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
