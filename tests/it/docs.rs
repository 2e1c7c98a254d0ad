//! The docs say what the binary does. Every sample of output in the README and docs/ (a fenced
//! block without a language, or `text`) follows a `<!-- sample: maas-usage ARGS -->` comment
//! naming the command that printed it, and re-running that command prints it again (against a
//! simulator whose clock is the command's `--now`, for `{simulator}`), so drift fails here.
//! docs/spec.md's "every key" block has every key of the spec's schema, and validates.

use crate::common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use maas_usage::sim::{SimConfig, Simulator};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every page of docs/.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// A fenced block: the line of its opening fence, its language, its lines.
struct Block {
    line: usize,
    lang: String,
    body: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && lines[i].trim() != "```" {
            body.push(lines[i].to_string());
            i += 1;
        }
        out.push(Block {
            line: start + 1,
            lang: lang.trim().to_string(),
            body,
        });
        i += 1;
    }
    out
}

/// What a sample comment asks for.
#[derive(Debug)]
struct Sample {
    stderr: bool,
    dir: Option<String>,
    args: Vec<String>,
}

/// `<!-- sample[ stderr][ in DIR]: maas-usage ARGS -->`.
fn sample(line: &str) -> Option<Sample> {
    let inner = line
        .trim()
        .strip_prefix("<!-- sample")?
        .strip_suffix("-->")?;
    let (how, command) = inner.split_once(':')?;
    let mut how = how.split_whitespace();
    let mut s = Sample {
        stderr: false,
        dir: None,
        args: Vec::new(),
    };
    while let Some(word) = how.next() {
        match word {
            "stderr" => s.stderr = true,
            "in" => s.dir = how.next().map(str::to_string),
            other => panic!("sample comment: unknown `{other}` in {line}"),
        }
    }
    let mut words = command.split_whitespace();
    assert_eq!(words.next(), Some("maas-usage"), "{line}");
    s.args = words.map(str::to_string).collect();
    Some(s)
}

/// What differs between machines and runs, the same on both sides: the host's name, the
/// collection's duration and end, and the project id the README abbreviates.
fn normalize(line: &str) -> String {
    let mut l = line.replace("0123456789abcdef0123456789abcdef", "0123...cdef");
    for (key, end) in [
        ("duration_ms=", 'i'),
        ("last_success_ms=", 'i'),
        ("host_name=\"", '"'),
    ] {
        if let Some(at) = l.find(key).map(|at| at + key.len()) {
            let stop = l[at..].find(end).map_or(l.len(), |e| at + e);
            l.replace_range(at..stop, "_");
        }
    }
    let timed = [
        "maas_collector_duration_seconds",
        "maas_collector_last_success_timestamp_seconds",
    ];
    if timed.iter().any(|m| l.starts_with(m)) {
        if let Some(space) = l.rfind(' ') {
            l.replace_range(space.., " _");
        }
    }
    l
}

/// `shown` (with `...` for lines left out) against `printed`: the runs between `...` appear in
/// order, each as consecutive lines, the first at the start and the last at the end unless a
/// `...` is there.
fn matches(shown: &[String], printed: &[String]) -> Result<(), String> {
    let runs: Vec<&[String]> = shown.split(|l| l.trim() == "...").collect();
    let mut at = 0;
    for (i, run) in runs.iter().enumerate() {
        if run.is_empty() {
            continue;
        }
        let anchored = i == 0;
        let found = (at..=printed.len().saturating_sub(run.len()))
            .find(|&p| printed[p..].starts_with(run) && (!anchored || p == 0));
        match found {
            Some(p) => at = p + run.len(),
            None => return Err(format!("not printed so:\n{}", run.join("\n"))),
        }
    }
    if runs.last().is_some_and(|r| !r.is_empty()) && at != printed.len() {
        return Err(format!(
            "printed more after the sample's last line:\n{}",
            printed[at..].join("\n")
        ));
    }
    Ok(())
}

/// The simulator a `{simulator}` sample runs against: its data clock is the command's --now,
/// and its metadata service hands out the credentials `--simulator` signs with.
fn simulator_for(s: &Sample) -> Simulator {
    let now = s
        .args
        .iter()
        .position(|a| a == "--now")
        .and_then(|i| s.args.get(i + 1))
        .expect("a sample against the simulator pins --now");
    start(SimConfig {
        now: Some(
            chrono::DateTime::parse_from_rfc3339(now)
                .unwrap()
                .with_timezone(&chrono::Utc),
        ),
        metadata: Some(Duration::from_secs(3600)),
        ..SimConfig::default()
    })
}

fn run_sample(s: &Sample) -> Vec<String> {
    let sim = s
        .args
        .iter()
        .any(|a| a.contains("{simulator}"))
        .then(|| simulator_for(s));
    let args: Vec<String> = s
        .args
        .iter()
        .map(|a| match &sim {
            Some(sim) => a.replace("{simulator}", &sim.url()),
            None => a.clone(),
        })
        .collect();
    let mut c = bin();
    c.args(&args);
    if let Some(dir) = &s.dir {
        c.current_dir(root().join(dir));
    }
    let out = c.output().unwrap();
    let text = if s.stderr { stderr(&out) } else { stdout(&out) };
    text.lines().map(normalize).collect()
}

#[test]
fn every_output_sample_is_what_its_command_prints() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let name = page.strip_prefix(root()).unwrap().display().to_string();
        for b in blocks(&text) {
            let comment = lines[..b.line - 1]
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| sample(l));
            let Some(s) = comment else {
                // Output is unlabelled (or `text`), and every output has its command.
                assert!(
                    !(b.lang.is_empty() || b.lang == "text"),
                    "{name}:{}: a sample of output without a `<!-- sample: maas-usage ... -->` comment above it",
                    b.line
                );
                continue;
            };
            let printed = run_sample(&s);
            let shown: Vec<String> = b.body.iter().map(|l| normalize(l)).collect();
            if let Err(why) = matches(&shown, &printed) {
                wrong.push(format!(
                    "{name}:{}: `maas-usage {}` {why}\n--- it prints:\n{}",
                    b.line,
                    s.args.join(" "),
                    printed.join("\n")
                ));
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
    assert!(checked >= 4, "{checked} samples");
}

#[test]
fn the_sample_matcher_takes_abridged_samples_and_only_those() {
    let v = |s: &str| -> Vec<String> { s.lines().map(str::to_string).collect() };
    let printed = v("a\nb\nc\nd");
    assert!(matches(&v("a\nb\nc\nd"), &printed).is_ok());
    assert!(matches(&v("a\n...\nd"), &printed).is_ok());
    assert!(matches(&v("a\nb\n..."), &printed).is_ok());
    assert!(matches(&v("...\nc"), &printed).is_err(), "d follows c");
    assert!(matches(&v("b\n...\nd"), &printed).is_err(), "a comes first");
    assert!(matches(&v("a\nc\n..."), &printed).is_err(), "b is between");
    assert!(matches(&v("a\nb\nc"), &printed).is_err(), "d is left out");
    assert_eq!(
        normalize("x,host=h duration_ms=504i,last_success_ms=9i 17"),
        "x,host=h duration_ms=_i,last_success_ms=_i 17"
    );
}

/// `at.key`, or `key` at the top.
fn child(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

/// Every property path of the schema (`cloud.region`, `queries[].range.every`), following
/// `$ref`, array items and the alternatives of `oneOf`; maps with free keys stop there.
fn schema_paths(
    schema: &serde_json::Value,
    node: &serde_json::Value,
    at: &str,
    out: &mut BTreeSet<String>,
) {
    let node = match node.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => schema
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r}")),
        None => node,
    };
    if let Some(props) = node.get("properties").and_then(|p| p.as_object()) {
        for (k, v) in props {
            let path = child(at, k);
            out.insert(path.clone());
            schema_paths(schema, v, &path, out);
        }
    }
    if let Some(items) = node.get("items") {
        schema_paths(schema, items, &format!("{at}[]"), out);
    }
    for alt in ["oneOf", "anyOf", "allOf"] {
        for v in node
            .get(alt)
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            schema_paths(schema, v, at, out);
        }
    }
}

/// Every key path of a YAML value, arrays as `[]`; under `free` paths (maps with free keys)
/// the keys are not paths.
fn value_paths(
    v: &serde_json::Value,
    at: &str,
    free: &BTreeSet<String>,
    out: &mut BTreeSet<String>,
) {
    match v {
        serde_json::Value::Object(m) if !free.contains(at) => {
            for (k, v) in m {
                let path = child(at, k);
                out.insert(path.clone());
                value_paths(v, &path, free, out);
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                value_paths(v, &format!("{at}[]"), free, out);
            }
        }
        _ => {}
    }
}

/// The YAML blocks of docs/spec.md's "## Every key" section: one spec with `cloud`, one with
/// `clouds` (a spec has one or the other).
fn every_key_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("docs/spec.md")).unwrap();
    let section = text
        .split_once("## Every key")
        .expect("docs/spec.md has an `Every key` section")
        .1;
    let section = section.split("\n## ").next().unwrap_or_default();
    let found: Vec<String> = blocks(section)
        .into_iter()
        .filter(|b| b.lang == "yaml")
        .map(|b| b.body.join("\n"))
        .collect();
    assert!(!found.is_empty(), "with yaml blocks");
    found
}

/// The schema's keys the blocks lack, and the blocks' keys the schema does not have.
fn key_drift(blocks: &[String]) -> (Vec<String>, Vec<String>) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("schemas/maas-usage.schema.json")).unwrap(),
    )
    .unwrap();
    let mut wanted = BTreeSet::new();
    schema_paths(&schema, &schema, "", &mut wanted);

    // Maps whose keys are the user's: key group, tag, header and id names.
    let free: BTreeSet<String> = [
        "key_groups",
        "output.tags",
        "output.otlp.headers",
        "names.models",
        "names.api_keys",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    let mut shown = BTreeSet::new();
    for block in blocks {
        let doc = maas_usage::spec::yaml::parse(block).unwrap().value;
        value_paths(&doc, "", &free, &mut shown);
    }
    (
        wanted.difference(&shown).cloned().collect(),
        shown.difference(&wanted).cloned().collect(),
    )
}

#[test]
fn the_spec_docs_every_key_block_has_every_key_of_the_schema_and_validates() {
    let blocks = every_key_blocks();
    let (missing, unknown) = key_drift(&blocks);
    assert!(
        missing.is_empty(),
        "docs/spec.md's every-key blocks lack {missing:?}"
    );
    assert!(unknown.is_empty(), "not in the schema: {unknown:?}");
    for block in &blocks {
        let out = bin()
            .arg("validate")
            .arg(spec_file(block))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}\n{block}", stderr(&out));
    }
}

#[test]
fn the_every_key_drift_check_sees_a_missing_key() {
    // The check itself: the blocks without `ces_endpoint` (or a range form, or an agency's
    // duration) lack it.
    let blocks = every_key_blocks();
    for (cut, key) in [
        ("ces_endpoint:", "cloud.ces_endpoint"),
        ("ces_endpoint:", "clouds[].ces_endpoint"),
        ("range: {every:", "queries[].range.every"),
        ("duration:", "clouds[].assume_agency.duration"),
    ] {
        let cut: Vec<String> = blocks
            .iter()
            .map(|b| {
                b.lines()
                    .filter(|l| !l.trim_start().starts_with(cut))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect();
        let (missing, _) = key_drift(&cut);
        assert!(missing.contains(&key.to_string()), "{key}: {missing:?}");
    }
}
