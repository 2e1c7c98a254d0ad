//! Several spec files into one: query names unique across files, key groups defined anywhere
//! (the same name meaning the same keys), `cloud` or `clouds`, `timezone`, `output`, `limits`,
//! `coordination`, `prices` and `alerts` set once or identically, budget names unique.

use std::collections::HashMap;

use super::clouds::{both_set, check_refs, check_tags, cloud_of, clouds_of};
use super::convert::{coordination_of, limits_of, names_of, output_of, queries_of};
use super::convert::{FileSpec, RawNames};
use super::errors::{SpecError, SpecErrors};
use super::spend::{alerts_of, budgets_of, check_budgets, grouping, prices_of};
use super::yaml;
use super::{Alerts, CloudSpec, Coordination, Limits, NamedCloud, OutputSpec, Spec};
use crate::spend::{Budget, PriceTable};

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
    coordination: Single<Coordination>,
    timezone: Single<String>,
    prices: Single<PriceTable>,
    alerts: Single<Alerts>,
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
    /// (file, budget, pointer) of each budget, checked once every file is read.
    budgets: Vec<(usize, Budget, String)>,
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
        coordination: Single { value: None },
        timezone: Single { value: None },
        prices: Single { value: None },
        alerts: Single { value: None },
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
        for (b, p) in budgets_of(f, f.raw.budgets.as_deref().unwrap_or_default(), &mut errors) {
            seen.budgets.push((fi, b, p));
        }
    }
    // Key groups may be defined in any file, so references are checked after all are read.
    check_key_group_refs(files, &spec, &seen, &mut errors);
    spec.prices = singles.prices.value.take().map(|v| v.0);
    check_budgets(files, &seen.budgets, &spec, &mut errors);
    check_lease(files, &singles, &mut errors);
    // The clouds' names and the cloud tag, against the queries and tags of every file.
    spec.clouds = singles.clouds.value.take().map(|v| v.0).unwrap_or_default();
    spec.output = singles.output.value.take().map(|v| v.0).unwrap_or_default();
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
    spec.cloud = singles.cloud.value.map(|v| v.0).unwrap_or_default();
    spec.limits = singles.limits.value.map(|v| v.0).unwrap_or_default();
    spec.coordination = singles.coordination.value.map(|v| v.0).unwrap_or_default();
    spec.timezone = singles.timezone.value.map(|v| v.0);
    spec.alerts = singles.alerts.value.map(|v| v.0).unwrap_or_default();
    spec.budgets = seen.budgets.into_iter().map(|(_, b, _)| b).collect();
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
        if let Some(p) = &f.raw.prices {
            let p = prices_of(f, p, errors);
            self.prices.set(f, "/prices", p, "prices", errors);
        }
        if let Some(a) = &f.raw.alerts {
            let a = alerts_of(f, a, errors);
            self.alerts.set(f, "/alerts", a, "alerts", errors);
        }
        if let Some(c) = &f.raw.coordination {
            let c = coordination_of(f, c, errors);
            self.coordination
                .set(f, "/coordination", c, "coordination", errors);
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

/// A Redis lease outlives a run: at least twice `limits.timeout` (else a run still delivering
/// could see its lease given to another process, which would send its buckets again).
fn check_lease(files: &[FileSpec], singles: &Singles, errors: &mut Vec<SpecError>) {
    let Some(lease) = singles
        .coordination
        .value
        .as_ref()
        .and_then(|(c, _)| c.redis.as_ref()?.lease)
    else {
        return;
    };
    let timeout = singles
        .limits
        .value
        .as_ref()
        .map_or(Limits::default().timeout, |(l, _)| l.timeout);
    if lease < timeout * 2 {
        if let Some(f) = files.iter().find(|f| {
            f.raw
                .coordination
                .as_ref()
                .is_some_and(|c| c.lease.is_some())
        }) {
            errors.push(f.err(
                "/coordination/lease",
                format!(
                    "{} is less than twice limits.timeout ({} s): a run could outlive its lease; make it at least {} s",
                    f.raw.coordination.as_ref().and_then(|c| c.lease.as_deref()).unwrap_or(""),
                    timeout.as_secs(),
                    (timeout * 2).as_secs()
                ),
            ));
        }
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
        let raw = f.raw.queries.iter().flatten().find(|r| r.name == q.name);
        if let Some(Ok(Some(g))) = raw.and_then(|r| r.breakdown.as_deref()).map(grouping) {
            spec.grouped.insert(q.name.clone(), g);
        }
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

#[cfg(test)]
mod tests {
    use super::super::load::load_str;
    use std::time::Duration;

    const HEAD: &str = "apiVersion: maas-usage/v1\nqueries:\n  - name: q\n";

    fn errs(text: &str) -> Vec<String> {
        match load_str("spec.yaml", &format!("{HEAD}{text}")) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn coordination_through_redis_is_read_with_its_defaults() {
        let spec = load_str(
            "spec.yaml",
            &format!("{HEAD}coordination:\n  engine: redis\n  url: rediss://maas@redis.example:6380/0\n  on_unavailable: local\nlimits:\n  timeout: 10s\n  account_requests_per_minute: 1000\n"),
        )
        .unwrap();
        let r = spec.coordination.redis.unwrap();
        assert_eq!(r.url, "rediss://maas@redis.example:6380/0");
        assert!(r.local_fallback && r.lease.is_none() && r.group.is_none());
        assert_eq!(spec.limits.account_requests_per_minute, Some(1000));
        assert_eq!(spec.limits.timeout, Duration::from_secs(10));
        let state = load_str(
            "spec.yaml",
            &format!("{HEAD}coordination:\n  engine: state\n"),
        )
        .unwrap();
        assert!(state.coordination.redis.is_none());
    }

    #[test]
    fn coordination_errors_are_located_and_never_echo_a_password() {
        let e = errs(
            "coordination:\n  engine: redis\n  url: redis://u:hunter2@h:6379/0\n  lease: 30s\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("spec.yaml:6:8: coordination.url: carries a password"),
            "{e:?}"
        );
        assert!(e[0].contains("MAAS_USAGE_REDIS_PASSWORD"), "{e:?}");
        assert!(
            e[1].starts_with(
                "spec.yaml:7:10: coordination.lease: 30s is less than twice limits.timeout (25 s)"
            ),
            "{e:?}"
        );
        assert!(e.iter().all(|l| !l.contains("hunter2")), "{e:?}");
        let e = errs("coordination:\n  engine: redis\n");
        assert!(
            e[0].starts_with("spec.yaml:4:1: coordination: `engine: redis` needs `url`"),
            "{e:?}"
        );
        let e = errs("coordination:\n  url: redis://h:6379/0\n");
        assert!(
            e[0].starts_with("spec.yaml:5:3: coordination.url: `url` is for `engine: redis`"),
            "{e:?}"
        );
        let e = errs("coordination:\n  engine: redis\n  url: redis://h/0\n  lease: 50s\nlimits:\n  timeout: 30s\n");
        assert!(e[0].contains("make it at least 60 s"), "{e:?}");
        assert!(
            errs("coordination:\n  engine: redis\n  url: redis://h/0\n  lease: 50s\n").is_empty()
        );
        let e = errs("coordination:\n  engine: redis\n  url: http://u:hunter2@h/0\n");
        assert!(e.iter().all(|l| !l.contains("hunter2")), "{e:?}");
        let e = errs("coordination:\n  engine: etcd\n");
        assert!(e[0].contains("coordination.engine"), "{e:?}");
    }

    #[test]
    fn coordination_tls_files_are_for_rediss_only_in_pairs_and_located() {
        let ok = load_str(
            "spec.yaml",
            &format!("{HEAD}coordination:\n  engine: redis\n  url: rediss://h:6380/0\n  ca_file: /no/such/ca.pem\n"),
        )
        .unwrap();
        let ca = ok.coordination.redis.unwrap().ca_file.unwrap();
        assert_eq!(ca.path, std::path::Path::new("/no/such/ca.pem"));
        assert_eq!(
            ca.at, "spec.yaml:7:12: coordination.ca_file",
            "where a read error points"
        );
        let e = errs("coordination:\n  engine: redis\n  url: redis://h/0\n  ca_file: ca.pem\n");
        assert!(
            e[0].starts_with("spec.yaml:7:3: coordination.ca_file: `ca_file` is for TLS: the url must be rediss://"),
            "{e:?}"
        );
        let e = errs(
            "coordination:\n  engine: redis\n  url: rediss://h/0\n  client_certificate: c.pem\n",
        );
        assert!(e[0].contains("needs its key too"), "{e:?}");
        let e = errs("coordination:\n  engine: redis\n  url: rediss://h/0\n  client_key: c.key\n");
        assert!(e[0].contains("needs its certificate too"), "{e:?}");
        let e = errs("coordination:\n  engine: redis\n  url: rediss://h/0#insecure\n");
        assert!(
            e[0].starts_with("spec.yaml:6:8: coordination.url: `#insecure`"),
            "{e:?}"
        );
        let e = errs("coordination:\n  engine: state\n  ca_file: ca.pem\n");
        assert!(e[0].contains("`ca_file` is for `engine: redis`"), "{e:?}");
    }
}
