//! The shape of the code, checked: top-level modules of src/ import one another one way only
//! (no cycle, directly or through others), the simulator stays at the edge, no production file
//! grows past 700 lines, every module says in its first doc line what it owns, the process's
//! environment is read only by the settings' one resolution step, and the README stays an
//! introduction (under 20 KB).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 700;
const MAX_README: u64 = 20_000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text before the unit tests (`#[cfg(test)]` at the start of a line).
fn production(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// The top-level module a file belongs to (`src/cloud/client.rs` -> `cloud`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Every `crate::name` a text refers to, including `crate::{a, b::c}` groups.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(&src, f) else {
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        let refs = crate_refs(production(&text));
        g.entry(m.clone()).or_default().extend(refs);
    }
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for (m, deps) in g.iter_mut() {
        deps.retain(|d| d != m && modules.contains(d));
    }
    g
}

/// The modules reachable from `from`.
fn reachable(g: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![from.to_string()];
    while let Some(m) = stack.pop() {
        for d in g.get(&m).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_crate_refs_parser_sees_groups_and_paths() {
    let refs = crate_refs("use crate::{a, b::c};\nlet x = crate::d::e(); // crate::f");
    assert_eq!(
        refs,
        ["a", "b", "d", "f"].iter().map(|s| s.to_string()).collect()
    );
}

#[test]
fn top_level_modules_import_one_way() {
    let g = graph();
    assert!(g.len() > 10, "found the modules: {g:?}");
    let cycles: Vec<String> = g
        .keys()
        .filter(|m| reachable(&g, m).contains(*m))
        .cloned()
        .collect();
    assert!(
        cycles.is_empty(),
        "modules on an import cycle: {cycles:?}\n{g:#?}"
    );
}

#[test]
fn a_cycle_would_be_found() {
    // The check above cannot pass by accident: the same code finds a planted cycle.
    let mut g = graph();
    g.entry("domain".into()).or_default().insert("cmd".into());
    assert!(reachable(&g, "domain").contains("domain"));
}

#[test]
fn the_layers_are_the_documented_ones() {
    let g = graph();
    let deps = |m: &str| reachable(&g, m);
    // The vocabulary depends on nothing; the cloud only on the vocabulary and utilities; a
    // utility only on the vocabulary, files and text (the log writes through its sanitizer).
    assert!(deps("domain").is_empty(), "domain -> {:?}", deps("domain"));
    for lower in [
        "log", "text", "env", "endpoint", "retry", "files", "tls", "http",
    ] {
        assert!(
            deps(lower).is_subset(
                &[
                    "domain".to_string(),
                    "files".to_string(),
                    "text".to_string()
                ]
                .into()
            ),
            "{lower} -> {:?}",
            deps(lower)
        );
    }
    let cloud_may: BTreeSet<String> = [
        "domain", "budget", "retry", "log", "text", "env", "endpoint", "files", "tls",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(
        deps("cloud").is_subset(&cloud_may),
        "cloud -> {:?}",
        deps("cloud")
    );
    // Nothing in the product imports the simulator but the commands that serve it.
    for (m, d) in &g {
        if m != "cmd" && m != "sim" {
            assert!(!d.contains("sim"), "{m} imports the simulator");
        }
    }
    // Only the commands see the command line and the exit codes.
    for (m, d) in &g {
        if m != "cmd" {
            assert!(!d.contains("cmd"), "{m} imports cmd");
            assert!(!d.contains("cli") || m == "cmd", "{m} imports cli");
        }
    }
}

/// The files that may read the process's environment: `env` (which defines the reading), the
/// commands' settings (the one resolution step) and the test hooks (switches of test builds).
fn may_read_the_environment(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).unwrap_or(file);
    rel == Path::new("env.rs")
        || rel.starts_with("cmd/settings")
        || rel == Path::new("cmd/settings.rs")
        || rel == Path::new("cmd/hooks.rs")
}

/// The places in `text` that read the process's environment: `env::process` (the crate's one
/// reader) or the standard library's `env::var`, `env::vars`, `env::var_os`.
fn environment_reads(text: &str) -> Vec<String> {
    production(text)
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("env::process") || code.contains("env::var")
        })
        .map(|(i, l)| format!("{}: {}", i + 1, l.trim()))
        .collect()
}

#[test]
fn only_the_settings_read_the_environment() {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut readers = Vec::new();
    for f in files.iter().filter(|f| !may_read_the_environment(&src, f)) {
        let text = std::fs::read_to_string(f).unwrap();
        for line in environment_reads(&text) {
            readers.push(format!("{}:{line}", f.display()));
        }
    }
    assert!(
        readers.is_empty(),
        "read the environment behind the settings' back (resolve it in cmd::settings and hand the value down): {readers:#?}"
    );
    // The layers that connect, plan and collect do not even see how it is read.
    let g = graph();
    for m in ["cloud", "collect", "plan", "spec", "time", "domain"] {
        assert!(
            !g.get(m).is_some_and(|d| d.contains("env")),
            "{m} imports env"
        );
    }
}

#[test]
fn an_environment_read_would_be_found() {
    // The check above cannot pass by accident: it sees each form of a read, and not a comment.
    for read in [
        "let tz = std::env::var(\"TZ\");",
        "crate::env::process(\"HW_PROJECT_ID\")",
        "for (k, v) in std::env::vars() {}",
        "let v = env::var_os(\"X\");",
    ] {
        assert_eq!(environment_reads(read).len(), 1, "{read}");
    }
    assert!(environment_reads("// env::process is read in settings").is_empty());
    let src = root().join("src");
    assert!(!may_read_the_environment(&src, &src.join("cloud/mod.rs")));
    assert!(may_read_the_environment(
        &src,
        &src.join("cmd/settings/cloud.rs")
    ));
}

#[test]
fn no_production_file_is_over_700_lines_and_each_module_says_what_it_owns() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut long = Vec::new();
    let mut undocumented = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = production(&text).lines().count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", f.display()));
        }
        let is_module_root = f.file_name().is_some_and(|n| n != "main.rs");
        if is_module_root && !text.trim_start().starts_with("//!") {
            undocumented.push(f.display().to_string());
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:?}");
    assert!(
        undocumented.is_empty(),
        "no `//!` line saying what the module owns: {undocumented:?}"
    );
}

#[test]
fn the_readme_stays_an_introduction() {
    let size = std::fs::metadata(root().join("README.md")).unwrap().len();
    assert!(size < MAX_README, "README.md is {size} bytes");
}
