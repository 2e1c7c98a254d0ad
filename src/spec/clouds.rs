//! `cloud:` and `clouds:`: one cloud, or several, each named. The checks the schema cannot
//! make: a block's endpoints and its agency's duration; across files, `cloud` and `clouds` not
//! both; against the queries, the clouds they name exist and every cloud has a query.

use std::collections::HashMap;

use super::convert::FileSpec;
use super::errors::SpecError;
use super::{CloudSpec, NamedCloud, Spec};
use crate::endpoint::Endpoint;

/// The cloud block at `at` (`/cloud`, `/clouds/2`), its endpoints and agency checked.
pub(super) fn cloud_of(
    f: &FileSpec,
    at: &str,
    c: &CloudSpec,
    errors: &mut Vec<SpecError>,
) -> CloudSpec {
    for (key, url) in [
        ("endpoint", &c.endpoint),
        ("iam_endpoint", &c.iam_endpoint),
        ("metadata_endpoint", &c.metadata_endpoint),
        ("ces_endpoint", &c.ces_endpoint),
        ("maas_monitor_endpoint", &c.maas_monitor_endpoint),
        ("sts_endpoint", &c.sts_endpoint),
    ] {
        if let Some(u) = url {
            if let Err(e) = Endpoint::parse(u) {
                errors.push(f.err(&format!("{at}/{key}"), e.to_string()));
            }
        }
    }
    if let Some(Err(e)) = c.assume_agency.as_ref().map(|a| a.duration()) {
        errors.push(f.err(&format!("{at}/assume_agency/duration"), e));
    }
    c.clone()
}

/// `clouds:` of one file: each entry checked, and its name not taken by an earlier one.
pub(super) fn clouds_of(
    f: &FileSpec,
    list: &[NamedCloud],
    errors: &mut Vec<SpecError>,
) -> Vec<NamedCloud> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, c) in list.iter().enumerate() {
        let at = format!("/clouds/{i}");
        cloud_of(f, &at, &c.cloud, errors);
        match first.get(c.name.as_str()) {
            Some(j) => errors.push(f.err(
                &format!("{at}/name"),
                format!(
                    "cloud name `{}` is already used by clouds[{j}]; each cloud needs its own (it is the `cloud` tag of its series)",
                    c.name
                ),
            )),
            None => {
                first.insert(&c.name, i);
            }
        }
    }
    list.to_vec()
}

/// The error when a file sets `key` (`cloud` or `clouds`) and `other_at` (a file and position)
/// set the other.
pub(super) fn both_set(f: &FileSpec, key: &str, other_at: &str) -> SpecError {
    let other = if key == "cloud" { "clouds" } else { "cloud" };
    f.key_err(
        &format!("/{key}"),
        format!("`{key}` and `{other}` are both set ({other} at {other_at}): a spec has one cloud (`cloud`, whose series carry no cloud tag) or several (`clouds`, each named, its series tagged with the name); move the `cloud` block into `clouds` with a name"),
    )
}

/// Every cloud a query names is an entry of `clouds`, and every entry has a query.
/// `queries`: each query's file and pointer, in the order of `spec.queries`; `clouds_file`: the
/// file that set `clouds`.
pub(super) fn check_refs(
    files: &[FileSpec],
    spec: &Spec,
    queries: &[(usize, String)],
    clouds_file: Option<usize>,
    errors: &mut Vec<SpecError>,
) {
    let defined: Vec<&str> = spec.clouds.iter().map(|c| c.name.as_str()).collect();
    for (q, (fi, p)) in spec.queries.iter().zip(queries) {
        let Some(names) = &q.clouds else { continue };
        let f = &files[*fi];
        if defined.is_empty() {
            errors.push(f.key_err(
                &format!("{p}/clouds"),
                "`clouds` names entries of the top-level `clouds` list, and this spec has none (with `cloud`, every query runs in its one cloud)".into(),
            ));
            continue;
        }
        for (j, name) in names.iter().enumerate() {
            if !defined.contains(&name.as_str()) {
                errors.push(f.err(
                    &format!("{p}/clouds/{j}"),
                    format!("unknown cloud `{name}`; defined: {}", defined.join(", ")),
                ));
            }
        }
    }
    let Some(f) = clouds_file.map(|i| &files[i]) else {
        return;
    };
    for (i, c) in spec.clouds.iter().enumerate() {
        let used = spec
            .queries
            .iter()
            .any(|q| q.clouds.as_ref().is_none_or(|n| n.contains(&c.name)));
        if !used {
            errors.push(f.err(
                &format!("/clouds/{i}/name"),
                format!("no query runs in cloud `{}`: every query's `clouds` leaves it out; name it in one, or remove it", c.name),
            ));
        }
    }
}

/// With `clouds`, the static tags may not take the `cloud` tag (or its label): every series
/// carries it already. (With `cloud:` they may, as they always could.) `output_file`: the file
/// that set `output`.
pub(super) fn check_tags(
    files: &[FileSpec],
    spec: &Spec,
    output_file: Option<usize>,
    errors: &mut Vec<SpecError>,
) {
    use crate::domain::names::{otlp_attribute, prometheus_label, CLOUD_TAG};
    let (Some(f), false) = (output_file.map(|i| &files[i]), spec.clouds.is_empty()) else {
        return;
    };
    let label = prometheus_label(&otlp_attribute(CLOUD_TAG));
    for k in spec.output.tags.keys() {
        if k == CLOUD_TAG || prometheus_label(k) == label {
            errors.push(f.key_err(
                &format!("/output/tags/{k}"),
                format!("`{k}` is the tag (or label, `{label}`) every series of a spec with `clouds` carries: the name of its cloud; choose another key"),
            ));
        }
    }
}
