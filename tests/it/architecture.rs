//! The shape of the code, checked: top-level modules of src/ import one another one way only
//! (no cycle, directly or through others), the simulator stays at the edge, no production file
//! grows past 700 lines, every module says in its first doc line what it owns, the process's
//! environment is read only by the settings' one resolution step, the README stays an
//! introduction (under 20 KB), and sources are peers: each lives in its own module of
//! `collect`, implements `collect::Source` and is known by nothing outside `collect`, and no
//! shape of the pipeline keeps a source of its own on the side (`.models`).

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

/// What would make cargo build an integration-test binary other than `tests/it`: a `.rs` file
/// at the top of tests/, a directory of tests/ with a `main.rs` other than it/, a `[[test]]`
/// target in Cargo.toml; and a file of tests/it/ that main.rs does not declare (it would
/// never run).
fn test_binaries_besides_it(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let tests = root.join("tests");
    for e in std::fs::read_dir(&tests).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_file() && name.ends_with(".rs") {
            found.push(format!("tests/{name} is a test binary of its own"));
        }
        if p.is_dir() && name != "it" && p.join("main.rs").exists() {
            found.push(format!("tests/{name}/main.rs is a test binary of its own"));
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    if manifest.lines().any(|l| l.trim() == "[[test]]") {
        found.push("Cargo.toml declares a [[test]] target".into());
    }
    let it = tests.join("it");
    let main = std::fs::read_to_string(it.join("main.rs")).unwrap_or_default();
    for e in std::fs::read_dir(&it).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let module = if e.path().is_dir() {
            e.path().join("mod.rs").exists().then(|| name.clone())
        } else {
            name.strip_suffix(".rs").map(str::to_string)
        };
        match module {
            Some(m) if m != "main" && !main.lines().any(|l| l.trim() == format!("mod {m};")) => {
                found.push(format!(
                    "tests/it/{name} is not a module of tests/it/main.rs"
                ));
            }
            _ => {}
        }
    }
    found
}

/// A line without its comment and the contents of its string literals.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut chars = line.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        match (in_string, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => {
                in_string = false;
                code.push(c);
            }
            (true, _) => {}
            (false, '"') => {
                in_string = true;
                code.push(c);
            }
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, _) => code.push(c),
        }
    }
    code
}

/// The lines of `text` that sleep (`sleep(`, in code) without a comment that says why: the
/// comment lines right above the call, or the call's own line, must say `sleep allowed:`.
fn unexplained_sleeps(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !code_of(line).contains("sleep(") {
            continue;
        }
        let mut said = line.contains("sleep allowed:");
        for above in lines[..i].iter().rev() {
            if !above.trim_start().starts_with("//") {
                break;
            }
            said |= above.contains("sleep allowed:");
        }
        if !said {
            found.push(format!("{}: {}", i + 1, line.trim()));
        }
    }
    found
}

/// The integration tests are one binary (`tests/it/main.rs` with a module per behaviour):
/// linked once, its tests run on one pool of threads.
#[test]
fn the_integration_tests_are_one_binary() {
    let found = test_binaries_besides_it(&root());
    assert!(
        found.is_empty(),
        "move integration tests into tests/it/ as a module of main.rs: {found:#?}"
    );
}

/// Tests wait for the event (common/wait.rs), not for a length of time; a sleep that is the
/// behaviour under test says so.
#[test]
fn the_tests_sleep_only_where_they_say_why() {
    let mut files = Vec::new();
    rust_files(&root().join("tests/it"), &mut files);
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for line in unexplained_sleeps(&text) {
            found.push(format!("{}:{line}", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "wait for the event instead (common::wait_until), or say `// sleep allowed: why`: {found:#?}"
    );
}

#[test]
fn a_second_test_binary_or_an_unexplained_sleep_would_be_found() {
    // The checks above cannot pass by accident.
    let dir = crate::common::tempdir();
    std::fs::create_dir_all(dir.join("tests/it")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
    std::fs::write(dir.join("tests/it/main.rs"), "mod common;\nmod a;\n").unwrap();
    std::fs::write(dir.join("tests/it/a.rs"), "").unwrap();
    std::fs::create_dir_all(dir.join("tests/it/common")).unwrap();
    std::fs::write(dir.join("tests/it/common/mod.rs"), "").unwrap();
    assert_eq!(test_binaries_besides_it(&dir), Vec::<String>::new());
    std::fs::write(dir.join("tests/it/b.rs"), "").unwrap();
    std::fs::write(dir.join("tests/old.rs"), "").unwrap();
    std::fs::create_dir_all(dir.join("tests/other")).unwrap();
    std::fs::write(dir.join("tests/other/main.rs"), "").unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\n[[test]]\nname = \"x\"\n",
    )
    .unwrap();
    assert_eq!(test_binaries_besides_it(&dir).len(), 4);

    for slept in [
        "    std::thread::sleep(Duration::from_secs(1));",
        "    thread::sleep(PAUSE);",
        "    tokio::time::sleep(d).await;",
        "    // sleep allowed: a comment further up does not count\n    let x = 1;\n    sleep(d);",
    ] {
        assert_eq!(unexplained_sleeps(slept).len(), 1, "{slept}");
    }
    for said in [
        "    // sleep allowed: the client is slow on purpose\n    std::thread::sleep(d);",
        "    // sleep allowed: the idle time is the subject,\n    // longer than the timeout.\n    sleep(d);",
        "    sleep(d); // sleep allowed: a slow peer",
        "    // never sleep(d) for an event",
        "    assert!(text.contains(\"sleep(\"));",
    ] {
        assert!(unexplained_sleeps(said).is_empty(), "{said}");
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

/// The files of a directory of src/ (recursively), with their text before the unit tests.
fn production_files(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let dir = root().join("src").join(dir);
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let prod = production(&text).to_string();
            (f, prod)
        })
        .collect()
}

/// The sources: the modules of src/collect/ other than its machinery (the pool).
fn source_modules() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root().join("src/collect"))
        .unwrap()
        .flatten()
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .filter(|n| n != "mod" && n != "pool")
        .collect();
    out.sort();
    out
}

#[test]
fn every_source_lives_in_collect_and_implements_the_one_trait() {
    let sources = source_modules();
    assert_eq!(sources, ["cloud_eye", "statistics"], "the sources found");
    for (f, text) in production_files("") {
        let implementations = text.matches("impl Source for").count();
        let rel = f.strip_prefix(root().join("src")).unwrap().to_path_buf();
        let source = rel
            .strip_prefix("collect")
            .ok()
            .and_then(|r| r.components().next())
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            });
        match source {
            Some(s) if sources.contains(&s) => {}
            _ => assert_eq!(
                implementations,
                0,
                "{}: a source outside collect",
                rel.display()
            ),
        }
    }
    for s in &sources {
        let implementations: usize = production_files(&format!("collect/{s}"))
            .iter()
            .chain(
                &production_files("collect")
                    .into_iter()
                    .filter(|(f, _)| f.ends_with(format!("{s}.rs")))
                    .collect::<Vec<_>>(),
            )
            .map(|(_, t)| t.matches("impl Source for").count())
            .sum();
        assert_eq!(implementations, 1, "source {s}: one `impl Source for`");
    }
    // Each has its name: a variant of SourceId.
    let (_, collect) = production_files("collect")
        .into_iter()
        .find(|(f, _)| f.ends_with("collect/mod.rs"))
        .unwrap();
    for s in &sources {
        assert!(
            collect.contains(&format!("=> \"{s}\"")),
            "SourceId names {s}"
        );
    }
}

#[test]
fn nothing_outside_collect_knows_a_source_s_internals() {
    let sources = source_modules();
    for (f, text) in production_files("") {
        if f.starts_with(root().join("src/collect")) {
            continue;
        }
        for s in &sources {
            assert!(
                !text.contains(&format!("collect::{s}")),
                "{} reaches into collect::{s}: use what collect re-exports",
                f.display()
            );
        }
    }
}

/// The fields of `pub struct name` in `text`, if it defines it.
fn struct_fields(text: &str, name: &str) -> Option<Vec<String>> {
    let at = text.find(&format!("pub struct {name}"))?;
    let after = &text[at + "pub struct ".len() + name.len()..];
    if !after.starts_with([' ', '<']) {
        return None;
    }
    let body = &after[after.find('{')?..];
    let end = body.find("\n}")?;
    Some(
        body[..end]
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.starts_with("//") && !l.starts_with('#'))
            .filter_map(|l| l.trim_start_matches("pub ").split(':').next())
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty())
            .collect(),
    )
}

#[test]
fn no_shape_keeps_a_source_on_the_side() {
    // One name per concept: Cloud Eye is `cloud_eye` in code, a `model` a MaaS model.
    let shapes = [
        ("collect", "Collection"),
        ("plan", "Plan"),
        ("emit", "Report"),
        ("time", "Totals"),
    ];
    for (dir, name) in shapes {
        let fields: Vec<String> = production_files(dir)
            .iter()
            .find_map(|(_, t)| struct_fields(t, name))
            .unwrap_or_else(|| panic!("{name} in src/{dir}"));
        assert!(!fields.is_empty(), "{name}: {fields:?}");
        assert!(
            !fields.iter().any(|f| f == "models" || f.contains("model_")),
            "{name} keeps a source on the side: {fields:?}"
        );
    }
    for (f, text) in production_files("") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name != "models.rs" && name != "ces.rs",
            "{}: Cloud Eye is cloud_eye in code",
            f.display()
        );
        for old in [
            "ModelSeries",
            "ModelKey",
            "ModelFailure",
            "ModelCollected",
            "ModelQuery",
            "ModelRunning",
            "CesMetric",
        ] {
            assert!(!text.contains(old), "{}: {old}", f.display());
        }
    }
}

#[test]
fn the_struct_reader_sees_fields() {
    let text = "pub struct Collection {\n    /// doc\n    pub series: Vec<Series>,\n    pub models: M,\n}\n";
    assert_eq!(
        struct_fields(text, "Collection").unwrap(),
        ["series", "models"]
    );
}

/// The 100-line rule for production functions is clippy's, not a convention: clippy.toml sets
/// the threshold and Cargo.toml makes the lint an error, so `cargo clippy -- -D warnings` (CI)
/// fails on a longer function. Only the integration tests (tests/it/main.rs) allow it.
#[test]
fn production_functions_are_at_most_100_lines_by_clippy() {
    let root = root();
    let clippy = std::fs::read_to_string(root.join("clippy.toml")).unwrap();
    let threshold: Vec<&str> = clippy
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| l.contains("too-many-lines-threshold"))
        .collect();
    assert_eq!(threshold.len(), 1, "clippy.toml: {clippy}");
    assert_eq!(
        threshold[0].split('=').nth(1).map(str::trim),
        Some("100"),
        "clippy.toml: {clippy}"
    );
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let lints = manifest
        .split("[lints.clippy]")
        .nth(1)
        .expect("Cargo.toml has a [lints.clippy] table");
    let table = lints.split("\n[").next().unwrap_or_default();
    assert!(
        table
            .lines()
            .any(|l| l.replace(' ', "") == "too_many_lines=\"deny\""),
        "[lints.clippy] must deny too_many_lines: {table}"
    );
    let allowed: Vec<PathBuf> = {
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        files
            .into_iter()
            .filter(|f| {
                std::fs::read_to_string(f)
                    .unwrap_or_default()
                    .contains("allow(clippy::too_many_lines)")
            })
            .collect()
    };
    assert!(allowed.is_empty(), "production code opts out: {allowed:?}");
}
