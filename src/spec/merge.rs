//! Several spec files into one: query names unique across files, key groups defined anywhere
//! (the same name meaning the same keys), `cloud` or `clouds`, `timezone`, `output` and
//! `limits` set once or identically.

use std::collections::HashMap;

use super::clouds::{both_set, check_refs, check_tags, cloud_of, clouds_of};
use super::convert::{limits_of, names_of, output_of, queries_of, FileSpec, RawNames};
use super::errors::{SpecError, SpecErrors};
use super::yaml;
use super::{CloudSpec, Limits, NamedCloud, OutputSpec, Spec};

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

/// The sections set once (or identically) across files.
struct Singles {
    cloud: Single<CloudSpec>,
    clouds: Single<Vec<NamedCloud>>,
    output: Single<OutputSpec>,
    limits: Single<Limits>,
    timezone: Single<String>,
}

/// What the files so far defined, and where, for the checks that span files.
#[derive(Default)]
struct Seen {
    /// Key group -> where it was first defined.
    group_at: HashMap<String, String>,
    /// Query name -> where it was first used.
    query_at: HashMap<String, String>,
    /// (file, query, pointer) of each query, for the key group references checked last.
    query_refs: Vec<(usize, usize, String)>,
    /// The file that set `clouds`, for the checks of its names against the queries.
    clouds_file: Option<usize>,
    /// The file that set `output`, for the check of its tags against `clouds`.
    output_file: Option<usize>,
}

/// Merges validated files into one spec, checking what spans files.
pub fn merge(files: &[FileSpec]) -> Result<Spec, SpecErrors> {
    let mut errors = Vec::new();
    let mut spec = Spec::default();
    let mut singles = Singles {
        cloud: Single { value: None },
        clouds: Single { value: None },
        output: Single { value: None },
        limits: Single { value: None },
        timezone: Single { value: None },
    };
    let mut seen = Seen::default();
    for (fi, f) in files.iter().enumerate() {
        if singles.take(f, &mut errors) {
            seen.clouds_file.get_or_insert(fi);
        }
        if f.raw.output.is_some() {
            seen.output_file.get_or_insert(fi);
        }
        if let Some(n) = &f.raw.names {
            merge_names(f, n, &mut spec, &mut errors);
        }
        merge_key_groups(f, &mut spec, &mut seen, &mut errors);
        merge_queries(fi, f, &mut spec, &mut seen, &mut errors);
    }
    // Key groups may be defined in any file, so references are checked after all are read.
    check_key_group_refs(files, &spec, &seen, &mut errors);
    spec.cloud = singles.cloud.value.map(|v| v.0).unwrap_or_default();
    spec.clouds = singles.clouds.value.map(|v| v.0).unwrap_or_default();
    spec.output = singles.output.value.map(|v| v.0).unwrap_or_default();
    spec.limits = singles.limits.value.map(|v| v.0).unwrap_or_default();
    spec.timezone = singles.timezone.value.map(|v| v.0);
    // The clouds' names and the cloud tag, against the queries and tags of every file.
    let queries: Vec<(usize, String)> = seen
        .query_refs
        .iter()
        .map(|(fi, _, p)| (*fi, p.clone()))
        .collect();
    check_refs(files, &spec, &queries, seen.clouds_file, &mut errors);
    check_tags(files, &spec, seen.output_file, &mut errors);
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
        return Err(in_file_order(files, errors));
    }
    Ok(spec)
}

impl Singles {
    /// The sections of `f` that may be set once; `true` when it sets `clouds`.
    fn take(&mut self, f: &FileSpec, errors: &mut Vec<SpecError>) -> bool {
        if let Some(c) = &f.raw.cloud {
            if let Some((_, at)) = &self.clouds.value {
                errors.push(both_set(f, "cloud", at));
            }
            let c = cloud_of(f, "/cloud", c, errors);
            self.cloud.set(f, "/cloud", c, "cloud", errors);
        }
        if let Some(list) = &f.raw.clouds {
            if let Some((_, at)) = &self.cloud.value {
                errors.push(both_set(f, "clouds", at));
            }
            let list = clouds_of(f, list, errors);
            self.clouds.set(f, "/clouds", list, "clouds", errors);
        }
        if let Some(o) = &f.raw.output {
            let o = output_of(f, o, errors);
            self.output.set(f, "/output", o, "output", errors);
        }
        if let Some(l) = &f.raw.limits {
            let l = limits_of(f, l, errors);
            self.limits.set(f, "/limits", l, "limits", errors);
        }
        if let Some(tz) = &f.raw.timezone {
            match crate::time::parse_zone(tz) {
                Ok(_) => self
                    .timezone
                    .set(f, "/timezone", tz.clone(), "timezone", errors),
                Err(e) => errors.push(f.err("/timezone", e.to_string())),
            }
        }
        f.raw.clouds.is_some()
    }
}

/// `names:` of one file: an id named the same way wherever it is named.
fn merge_names(f: &FileSpec, n: &RawNames, spec: &mut Spec, errors: &mut Vec<SpecError>) {
    let n = names_of(n);
    for (kind, ours, theirs) in [
        ("models", &n.models, &mut spec.names.models),
        ("api_keys", &n.keys, &mut spec.names.keys),
    ] {
        for (id, name) in ours {
            let p = format!("/names/{kind}/{}", yaml::escape_segment(id));
            match theirs.get(id) {
                Some(prev) if prev != name => {
                    errors.push(f.key_err(&p, format!("`{id}` is named `{prev}` in another file")))
                }
                _ => {
                    theirs.insert(id.clone(), name.clone());
                }
            }
        }
    }
}

/// `key_groups:` of one file: a group defined again must have the same keys.
fn merge_key_groups(f: &FileSpec, spec: &mut Spec, seen: &mut Seen, errors: &mut Vec<SpecError>) {
    for (name, keys) in f.raw.key_groups.iter().flatten() {
        let p = format!("/key_groups/{}", yaml::escape_segment(name));
        match spec.key_groups.get(name) {
            Some(prev) if prev != keys => errors.push(f.key_err(
                &p,
                format!(
                    "key group `{name}` is also defined in {} with other keys",
                    seen.group_at
                        .get(name)
                        .map(String::as_str)
                        .unwrap_or("another file")
                ),
            )),
            Some(_) => {}
            None => {
                spec.key_groups.insert(name.clone(), keys.clone());
                seen.group_at.insert(name.clone(), f.here(&p));
            }
        }
    }
}

/// The queries of file `fi`: names unique across all files.
fn merge_queries(
    fi: usize,
    f: &FileSpec,
    spec: &mut Spec,
    seen: &mut Seen,
    errors: &mut Vec<SpecError>,
) {
    for (q, p) in queries_of(f, errors) {
        let name_ptr = format!("{p}/name");
        if let Some(first) = seen.query_at.get(&q.name) {
            errors.push(f.err(&name_ptr, format!("query name `{}` is already used at {first}; names must be unique across all spec files", q.name)));
            continue;
        }
        seen.query_at.insert(
            q.name.clone(),
            format!("{}:{}", f.file, f.doc.pos(&name_ptr)),
        );
        seen.query_refs.push((fi, spec.queries.len(), p));
        spec.queries.push(q);
    }
}

/// Every key group a query names is defined in some file.
fn check_key_group_refs(files: &[FileSpec], spec: &Spec, seen: &Seen, errors: &mut Vec<SpecError>) {
    for (fi, qi, p) in &seen.query_refs {
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
}

/// The errors in the order of the files as given, then of lines and columns.
fn in_file_order(files: &[FileSpec], mut errors: Vec<SpecError>) -> SpecErrors {
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
    SpecErrors(errors)
}
