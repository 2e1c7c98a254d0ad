//! Two jobs: the metric tables the emitters use, generated from plugin.yaml (as the
//! OpenTelemetry Collector's mdatagen generates code from metadata.yaml), and link settings
//! for the executable.
//!
//! ## Metric tables
//!
//! `plugin.yaml` declares every metric (`metrics`, `collector_metrics`, `model_metrics`); this
//! script writes them as Rust constants into `$OUT_DIR` (`names_tables.rs`, included by
//! `src/domain/names.rs`; `cloud_eye_tables.rs`, by `src/domain/cloud_eye.rs`), so a metric is added or
//! renamed in the manifest alone. A manifest the generator cannot read fails the build with
//! the reason.
//!
//! ## Link settings
//!
//! For the `maas-usage` executable on Linux (GNU toolchain), they keep the pages a run touches
//! few; BENCHMARKS.md ("Memory") has the measurements behind both.
//!
//! - `-no-pie`: a position-independent executable carries ~44,000 relative relocations (1 MiB of
//!   `.rela.dyn`, read at every start), and the dynamic loader writes every page of
//!   `.data.rel.ro` (1.2 MiB, mostly chrono-tz's zone tables) to apply them, for every command,
//!   even `--version`. Linked at a fixed address there is nothing to relocate. The code stays
//!   position-independent (rustc's default); only the final link changes.
//! - `link/hot-text.txt`: the functions `--version`, `query`, `run` and `demo` execute, placed
//!   first and together (in `.text.hot`). Fat LTO otherwise scatters them over all of `.text`,
//!   and the kernel maps a file's pages 64 KiB at a time around each fault. Only placement
//!   changes: a function the list does not name is placed as without it. Regenerate the list
//!   with `scripts/hot-text.sh`.
//!
//! Only the executable's link changes (`rustc-link-arg-bins`): the library, unit tests and
//! benches link as before. Both apply to release builds; `-no-pie` to debug builds too.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/hot-text.txt");
    println!("cargo:rerun-if-changed=plugin.yaml");
    println!("cargo:rerun-if-changed=src/manifest/model.rs");
    let target = |k: &str| std::env::var(k).unwrap_or_default();
    let out_dir = PathBuf::from(target("OUT_DIR"));
    let manifest = PathBuf::from(target("CARGO_MANIFEST_DIR")).join("plugin.yaml");
    if let Err(e) = tables::generate(&manifest, &out_dir) {
        panic!("plugin.yaml: {e}");
    }
    if target("CARGO_CFG_TARGET_OS") != "linux" || target("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");

    // Release builds only (and so `cargo install`): matching ~1,600 names against the hundred
    // thousand sections of a debug build takes the linker over a minute (2 s in release).
    if target("PROFILE") != "release" {
        return;
    }
    let list = PathBuf::from(target("CARGO_MANIFEST_DIR")).join("link/hot-text.txt");
    let Ok(names) = std::fs::read_to_string(&list) else {
        return; // without the list, default placement
    };
    // The C runtime's start-up code (crt1.o, crtbegin.o, ...) first, then each function's
    // section, with or without LLVM's `unlikely.` prefix, and its numbered copies (`NAME.123`).
    let mut script = String::from("SECTIONS\n{\n  .text.hot : {\n    *crt*.o(.text)\n");
    for name in names
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        writeln!(
            script,
            "    *(.text.{name} .text.{name}.* .text.unlikely.{name} .text.unlikely.{name}.*)"
        )
        .unwrap();
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = PathBuf::from(target("OUT_DIR")).join("hot-text.ld");
    std::fs::write(&out, script).expect("write hot-text.ld to OUT_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", out.display());
}

/// The manifest's shape, the crate's own (not every field is read here).
#[path = "src/manifest/model.rs"]
#[allow(dead_code)]
mod model;

/// The metric tables, from plugin.yaml.
mod tables {
    use std::fmt::Write as _;
    use std::path::Path;

    use super::model::{CollectorMetric, Manifest, Metric, SpendMetric};

    /// The two fields that are not usage figures: each gets its own constant.
    const WINDOW: &str = "window_seconds";
    const PERIOD: &str = "period_seconds";
    /// Sent after an OTLP export only.
    const REJECTED: &str = "points_rejected";

    pub fn generate(manifest: &Path, out_dir: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(manifest).map_err(|e| e.to_string())?;
        let m: Manifest = serde_saphyr::from_str(&text).map_err(|e| e.to_string())?;
        let names = names_tables(&m)?;
        let ces = cloud_eye_tables(&m)?;
        let spend = spend_tables(&m)?;
        for (file, code) in [
            ("names_tables.rs", names),
            ("cloud_eye_tables.rs", ces),
            ("spend_tables.rs", spend),
        ] {
            std::fs::write(out_dir.join(file), code).map_err(|e| format!("{file}: {e}"))?;
        }
        Ok(())
    }

    fn opt(v: &Option<String>) -> String {
        match v {
            Some(s) => format!("Some({s:?})"),
            None => "None".into(),
        }
    }

    fn field(f: &Metric) -> Result<String, String> {
        let kind = match f.value.as_str() {
            "int" => "Kind::Count",
            "double" => "Kind::Ratio",
            other => {
                return Err(format!(
                    "metrics.{}: value `{other}` is not int or double",
                    f.field
                ))
            }
        };
        Ok(format!(
            "Field {{ name: {:?}, kind: {kind}, batch_only: {}, unit: {:?}, title: {:?}, \
             description: {:?}, otlp: {:?}, prometheus: {:?}, otlp_period: {}, \
             prometheus_period: {} }}",
            f.field,
            f.batch_only,
            f.unit,
            f.title,
            f.description,
            f.otlp.as_deref().unwrap_or(""),
            f.prometheus.as_deref().unwrap_or(""),
            opt(&f.otlp_period),
            opt(&f.prometheus_period),
        ))
    }

    fn collector(c: &CollectorMetric) -> String {
        format!(
            "CollectorField {{ name: {:?}, unit: {:?}, description: {:?}, otlp: {:?}, \
             otlp_unit: {:?}, outcome: {}, prometheus: {:?} }}",
            c.field,
            c.unit,
            c.description,
            c.otlp,
            c.otlp_unit,
            opt(&c.outcome),
            c.prometheus.as_deref().unwrap_or(""),
        )
    }

    fn names_tables(m: &Manifest) -> Result<String, String> {
        let mut out =
            String::from("// Generated by build.rs from plugin.yaml: edit the manifest.\n\n");
        let one = |name: &str| -> Result<String, String> {
            m.metrics
                .iter()
                .find(|f| f.field == name)
                .ok_or_else(|| format!("metrics: no `{name}`"))
                .and_then(field)
        };
        out.push_str(
            "/// Every usage figure, in the manifest's order.\npub const FIELDS: &[Field] = &[\n",
        );
        for f in m
            .metrics
            .iter()
            .filter(|f| f.field != WINDOW && f.field != PERIOD)
        {
            let _ = writeln!(out, "    {},", field(f)?);
        }
        out.push_str("];\n\n");
        let _ = writeln!(
            out,
            "/// The window's length: a field in line protocol, a Gauge in OTLP and Prometheus (where \
             a\n/// point has no start time to show it).\npub const WINDOW_FIELD: Field = {};\n",
            one(WINDOW)?
        );
        let _ = writeln!(
            out,
            "/// Period mode's buckets carry their length under this name in line protocol only \
             (OTLP has\n/// start and end times; Prometheus counters have no buckets).\n\
             pub const PERIOD_FIELD: Field = {};\n",
            one(PERIOD)?
        );
        out.push_str("/// The self-metrics of a collection.\npub const COLLECTOR_FIELDS: &[CollectorField] = &[\n");
        for c in m.collector_metrics.iter().filter(|c| !c.otlp_only) {
            let _ = writeln!(out, "    {},", collector(c));
        }
        out.push_str("];\n\n");
        let rejected = m
            .collector_metrics
            .iter()
            .find(|c| c.field == REJECTED && c.otlp_only)
            .ok_or_else(|| format!("collector_metrics: no otlp_only `{REJECTED}`"))?;
        let _ = writeln!(
            out,
            "/// Sent after an OTLP export only: how many points of it the collector rejected (a \
             partial\n/// success). No other output has a receiver that could reject points.\n\
             pub const EXPORT_REJECTED: CollectorField = {};",
            collector(rejected)
        );
        Ok(out)
    }

    fn cloud_eye_tables(m: &Manifest) -> Result<String, String> {
        let mut out =
            String::from("// Generated by build.rs from plugin.yaml: edit the manifest.\n\n");
        out.push_str(
            "/// Every metric the plugin knows, in output order. ListMetrics says at run time which \
             of them\n/// the account really has.\npub const METRICS: &[CloudEyeMetric] = &[\n",
        );
        for x in &m.model_metrics {
            let aggregate = match x.aggregate.as_str() {
                "sum" => "Aggregate::Sum",
                "max" => "Aggregate::Max",
                other => return Err(format!("model_metrics.{}: aggregate `{other}`", x.ces)),
            };
            let _ = writeln!(
                out,
                "    CloudEyeMetric {{ ces: {:?}, field: {:?}, unit: {:?}, aggregate: {aggregate}, \
                 title: {:?}, description: {:?}, otlp: {:?}, prometheus: {:?}, \
                 otlp_period: {}, prometheus_period: {} }},",
                x.ces,
                x.field,
                x.unit,
                x.title,
                x.description,
                x.otlp,
                x.prometheus,
                opt(&x.otlp_period),
                opt(&x.prometheus_period),
            );
        }
        out.push_str("];\n");
        Ok(out)
    }

    /// `COST` and `BUDGET`: the measurements of `spend_metrics`, in that order.
    fn spend_tables(m: &Manifest) -> Result<String, String> {
        let mut out =
            String::from("// Generated by build.rs from plugin.yaml: edit the manifest.\n\n");
        let find = |name: &str| -> Result<&SpendMetric, String> {
            m.spend_metrics
                .iter()
                .find(|s| s.measurement == name)
                .ok_or_else(|| format!("spend_metrics: no `{name}`"))
        };
        for (constant, name) in [("COST", "maas_model_cost"), ("BUDGET", "maas_budget")] {
            let s = find(name)?;
            let _ = writeln!(
                out,
                "/// {}\npub const {constant}: SpendMeasurement = SpendMeasurement {{ name: {:?}, \
                 description: {:?}, tags: &[",
                s.description, s.measurement, s.description
            );
            for a in &s.attributes {
                let _ = writeln!(
                    out,
                    "    SpendTag {{ tag: {:?}, otlp: {:?}, prometheus: {:?} }},",
                    a.tag, a.otlp, a.prometheus
                );
            }
            out.push_str("], fields: &[\n");
            for f in &s.fields {
                let int = match f.value.as_str() {
                    "int" => true,
                    "double" => false,
                    other => return Err(format!("spend_metrics.{}: value `{other}`", f.field)),
                };
                let _ = writeln!(
                    out,
                    "    SpendField {{ name: {:?}, unit: {:?}, int: {int}, description: {:?}, \
                     otlp: {:?}, prometheus: {:?}, otlp_period: {}, prometheus_period: {} }},",
                    f.field,
                    f.unit,
                    f.description,
                    f.otlp,
                    f.prometheus,
                    opt(&f.otlp_period),
                    opt(&f.prometheus_period),
                );
            }
            out.push_str("] };\n\n");
        }
        Ok(out)
    }
}
