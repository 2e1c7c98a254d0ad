//! Specs for the tests: a spec pointed at a simulator, written where it is used
//! (`spec_for(&sim).query("name: a, range: today").write()`), or a fixture of tests/testdata
//! filled in (`fixture_for`), and the example spec.

use std::path::{Path, PathBuf};

use maas_usage::sim::Simulator;

use super::{tempdir, PROJECT, ZONE};

/// A spec against a simulator, built where the test needs it. The cloud block points MaaS and
/// Cloud Eye at the simulator and pins the project id; the zone is the pinned now's
/// (Asia/Shanghai). Queries and sections are YAML flow text (`name: a, range: today`), so a
/// test shows only what is particular to it. Without a query, the spec has one: `name: a`
/// (ShowStatistics, the default window).
#[derive(Clone, Debug)]
pub struct SpecBuilder {
    cloud: Vec<String>,
    timezone: String,
    queries: Vec<String>,
    sections: Vec<String>,
}

/// A spec against `sim` (see `SpecBuilder`).
pub fn spec_for(sim: &Simulator) -> SpecBuilder {
    spec_at(&sim.url())
}

/// A spec whose cloud endpoints are `url` (an HTTPS simulator, a port where nothing listens).
pub fn spec_at(url: &str) -> SpecBuilder {
    SpecBuilder {
        cloud: vec![
            format!("endpoint: {url}"),
            format!("ces_endpoint: {url}"),
            format!("project_id: {PROJECT}"),
        ],
        timezone: ZONE.to_string(),
        queries: Vec::new(),
        sections: Vec::new(),
    }
}

impl SpecBuilder {
    /// One more key of the cloud block: `metadata_endpoint: URL`, `ca_file: PATH`.
    pub fn cloud(mut self, key_value: &str) -> Self {
        self.cloud.push(key_value.to_string());
        self
    }

    pub fn timezone(mut self, zone: &str) -> Self {
        self.timezone = zone.to_string();
        self
    }

    /// One query, its keys in flow style: `name: models, source: cloud_eye, range: yesterday`.
    pub fn query(mut self, keys: &str) -> Self {
        self.queries.push(format!("  - {{{keys}}}\n"));
        self
    }

    /// Queries as YAML list items (`  - name: a\n`), for a test that receives them as text.
    pub fn queries(mut self, items: &str) -> Self {
        self.queries.push(items.to_string());
        self
    }

    /// The `limits` section in flow style: `timeout: 5s, max_series: 5`.
    pub fn limits(self, keys: &str) -> Self {
        self.section("limits", keys)
    }

    /// The `output` section in flow style: `format: otlp, otlp: {endpoint: URL}`.
    pub fn output(self, keys: &str) -> Self {
        self.section("output", keys)
    }

    /// Any other top-level key, its value a flow mapping: `names`, `models: {m1: qwen}`.
    pub fn section(mut self, key: &str, keys: &str) -> Self {
        self.sections.push(format!("{key}: {{{keys}}}\n"));
        self
    }

    /// The spec's text.
    pub fn text(&self) -> String {
        let mut out = String::from("apiVersion: maas-usage/v1\ncloud:\n");
        for c in &self.cloud {
            out.push_str(&format!("  {c}\n"));
        }
        out.push_str(&format!("timezone: {}\nqueries:\n", self.timezone));
        if self.queries.is_empty() {
            out.push_str("  - name: a\n");
        }
        out.extend(self.queries.iter().map(String::as_str));
        out.extend(self.sections.iter().map(String::as_str));
        out
    }

    /// The spec written to a file in a fresh directory.
    pub fn write(&self) -> PathBuf {
        spec_file(&self.text())
    }
}

/// The fixture `tests/testdata/<name>` pointed at `sim`: its `{{url}}`, its `{{project}}`
/// where it pins the project id (a fixture without one discovers it), and `vars`, as a spec
/// file in a fresh directory.
pub fn fixture_for(sim: &Simulator, name: &str, vars: &[(&str, &str)]) -> PathBuf {
    fixture_at(&sim.url(), name, vars)
}

/// As `fixture_for`, its `{{url}}` being `url` (an HTTPS simulator, a port where nothing
/// listens).
pub fn fixture_at(url: &str, name: &str, vars: &[(&str, &str)]) -> PathBuf {
    spec_file(&fixture_text_at(url, name, vars))
}

/// As `fixture_for`, its `{{otlp_endpoint}}` being `otlp_endpoint` (a receiver's URL).
pub fn fixture_otlp(sim: &Simulator, otlp_endpoint: &str, name: &str) -> PathBuf {
    fixture_for(sim, name, &[("otlp_endpoint", otlp_endpoint)])
}

/// The text of `fixture_otlp`.
pub fn fixture_text_otlp(sim: &Simulator, otlp_endpoint: &str, name: &str) -> String {
    fixture_text_for(sim, name, &[("otlp_endpoint", otlp_endpoint)])
}

/// The text of `fixture_for`.
pub fn fixture_text_for(sim: &Simulator, name: &str, vars: &[(&str, &str)]) -> String {
    fixture_text_at(&sim.url(), name, vars)
}

/// The text of `fixture_at`.
pub fn fixture_text_at(url: &str, name: &str, vars: &[(&str, &str)]) -> String {
    let mut all = vec![("url", url)];
    if read_fixture(name).contains("{{project}}") {
        all.push(("project", PROJECT));
    }
    all.extend_from_slice(vars);
    fixture_text(name, &all)
}

fn read_fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// The text of the fixture `tests/testdata/<name>` with each `{{key}}` replaced by its value.
/// Panics on a placeholder left unfilled and on a value for a placeholder the fixture lacks.
pub fn fixture_text(name: &str, vars: &[(&str, &str)]) -> String {
    let mut text = read_fixture(name);
    for (key, value) in vars {
        let placeholder = format!("{{{{{key}}}}}");
        assert!(
            text.contains(&placeholder),
            "fixture {name} has no {placeholder}"
        );
        text = text.replace(&placeholder, value);
    }
    let unfilled = unfilled_placeholders(&text);
    assert!(
        unfilled.is_empty(),
        "fixture {name}: no value for {unfilled:?}"
    );
    text
}

/// The `{{key}}` placeholders left in `text`, in order, without duplicates.
pub fn unfilled_placeholders(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("{{") {
        rest = &rest[i + 2..];
        let end = rest.find("}}").unwrap_or(rest.len());
        let key = format!("{{{{{}}}}}", &rest[..end]);
        if !found.contains(&key) {
            found.push(key);
        }
    }
    found
}

/// The fixture `tests/testdata/<name>`, filled in (see `fixture_text`), as a spec file in a
/// fresh directory.
pub fn fixture(name: &str, vars: &[(&str, &str)]) -> PathBuf {
    spec_file(&fixture_text(name, vars))
}

/// The example spec (`examples/spec.yaml`) pointed at `sim` (endpoints and a pinned project
/// id).
pub fn example_spec_for(sim: &Simulator) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/spec.yaml"))
        .unwrap();
    let url = sim.url();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("  region:") {
            out.push_str(&format!(
                "  endpoint: {url}\n  iam_endpoint: {url}\n  ces_endpoint: {url}\n  project_id: {PROJECT}\n"
            ));
        }
    }
    assert!(
        out.contains("endpoint:"),
        "the example spec has a cloud.region line"
    );
    out
}

/// Writes `text` as a spec file in a fresh directory and returns its path.
pub fn spec_file(text: &str) -> PathBuf {
    let p = tempdir().join("spec.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The example spec's series: 13 from ShowStatistics, 3 from Cloud Eye (one per simulated
/// model), and the collector line.
pub const EXAMPLE_STATISTICS: usize = 13;
pub const EXAMPLE_MODELS: usize = 3;
pub const EXAMPLE_LINES: usize = EXAMPLE_STATISTICS + EXAMPLE_MODELS + 1;

/// `text` without its `source: cloud_eye` queries (for tests about ShowStatistics alone).
pub fn statistics_only(text: &str) -> String {
    let mut out = Vec::new();
    let mut item: Vec<&str> = Vec::new();
    let flush = |item: &mut Vec<&str>, out: &mut Vec<String>| {
        if !item.iter().any(|l| l.trim() == "source: cloud_eye") {
            out.extend(item.iter().map(|l| l.to_string()));
        }
        item.clear();
    };
    for line in text.lines() {
        let starts_item = line.starts_with("  - ");
        let leaves_list = !line.starts_with(' ') && !line.is_empty();
        if starts_item || leaves_list {
            flush(&mut item, &mut out);
        }
        if starts_item || !item.is_empty() {
            item.push(line);
        } else {
            out.push(line.to_string());
        }
    }
    flush(&mut item, &mut out);
    out.join("\n") + "\n"
}
