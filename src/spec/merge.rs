//! Several spec files into one: query names unique across files, key groups defined anywhere
//! (the same name meaning the same keys), `cloud`, `timezone`, `output` and `limits` set once
//! or identically.

use std::collections::HashMap;

use super::convert::{cloud_of, limits_of, names_of, output_of, queries_of, FileSpec};
use super::errors::{SpecError, SpecErrors};
use super::yaml;
use super::Spec;

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
        if let Some(n) = &f.raw.names {
            let n = names_of(n);
            for (kind, ours, theirs) in [
                ("models", &n.models, &mut spec.names.models),
                ("api_keys", &n.keys, &mut spec.names.keys),
            ] {
                for (id, name) in ours {
                    let p = format!("/names/{kind}/{}", yaml::escape_segment(id));
                    match theirs.get(id) {
                        Some(prev) if prev != name => errors.push(
                            f.key_err(&p, format!("`{id}` is named `{prev}` in another file")),
                        ),
                        _ => {
                            theirs.insert(id.clone(), name.clone());
                        }
                    }
                }
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
