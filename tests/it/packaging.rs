//! The Debian package stays honest without building a .deb: every asset of
//! `[package.metadata.deb]` exists in the repository or is one `scripts/package-deb.sh` makes
//! with the built binary, the conffiles are what the docs say, the systemd units' command lines
//! parse with the built binary, and `systemd-analyze verify` accepts the units where it is
//! installed.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `[package.metadata.deb]` of Cargo.toml.
fn deb() -> toml_edit::Table {
    let doc: toml_edit::DocumentMut = read("Cargo.toml").parse().unwrap();
    doc["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

struct Asset {
    source: String,
    dest: String,
    mode: String,
}

fn assets() -> Vec<Asset> {
    let deb = deb();
    let list = deb["assets"].as_array().expect("assets = [...]");
    list.iter()
        .map(|a| {
            let a: Vec<String> = a
                .as_array()
                .expect("each asset is [source, dest, mode]")
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(a.len(), 3, "{a:?}");
            Asset {
                source: a[0].clone(),
                dest: a[1].clone(),
                mode: a[2].clone(),
            }
        })
        .collect()
}

/// The sources `scripts/package-deb.sh` makes before `cargo deb --no-build`, each with a string
/// the script must contain to make it.
const GENERATED: &[(&str, &str)] = &[
    (
        "target/release/maas-usage",
        "cargo build --release --locked",
    ),
    ("target/package/man/*.1.gz", "man --dir \"$out/man\""),
    (
        "target/package/completions/maas-usage.bash",
        "completions bash >\"$out/completions/maas-usage.bash\"",
    ),
    (
        "target/package/completions/_maas-usage",
        "completions zsh >\"$out/completions/_maas-usage\"",
    ),
    (
        "target/package/completions/maas-usage.fish",
        "completions fish >\"$out/completions/maas-usage.fish\"",
    ),
];

/// Files matching `dir/prefix*suffix` (one `*` in the file name at most).
fn glob(pattern: &str) -> Vec<PathBuf> {
    let path = root().join(pattern);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let Some((prefix, suffix)) = name.split_once('*') else {
        return vec![path].into_iter().filter(|p| p.is_file()).collect();
    };
    assert!(!suffix.contains('*'), "{pattern}: one * at most");
    let mut found: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        let n = p.file_name().unwrap().to_str().unwrap();
        p.is_file() && n.starts_with(prefix) && n.ends_with(suffix)
    });
    found
}

#[test]
fn every_asset_exists_or_is_made_by_the_script() {
    let script = read("scripts/package-deb.sh");
    assert!(
        script.contains("cargo deb --no-build"),
        "the script packs what it built"
    );
    let assets = assets();
    assert!(assets.len() > 10, "the asset list parsed: {}", assets.len());
    for a in &assets {
        assert!(
            !a.dest.starts_with('/'),
            "{}: destinations are relative to /",
            a.dest
        );
        assert!(
            u32::from_str_radix(&a.mode, 8).is_ok_and(|m| m <= 0o777),
            "{}: mode {}",
            a.source,
            a.mode
        );
        if a.source.starts_with("target/") {
            let Some((_, how)) = GENERATED.iter().find(|(src, _)| *src == a.source) else {
                panic!(
                    "{}: under target/ but not one of the files scripts/package-deb.sh makes",
                    a.source
                )
            };
            assert!(
                script.contains(how),
                "{}: scripts/package-deb.sh no longer runs `{how}`",
                a.source
            );
        } else {
            assert!(
                !glob(&a.source).is_empty(),
                "{}: no such file in the repository",
                a.source
            );
        }
    }
    // Every generated source is packaged (a new one is added to both lists).
    for (src, _) in GENERATED {
        assert!(
            assets.iter().any(|a| a.source == *src),
            "{src} is made but not packaged"
        );
    }
    // The maintainer scripts: POSIX sh, executable, syntactically valid.
    let dir = deb()["maintainer-scripts"].as_str().unwrap().to_string();
    for name in ["postinst", "prerm", "postrm"] {
        let path = root().join(&dir).join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.starts_with("#!/bin/sh\n"), "{name}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is not executable");
        let out = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
    }
    let depends = deb()["depends"].as_str().unwrap().to_string();
    assert!(depends.contains("$auto") && depends.contains("adduser"));
}

#[test]
fn every_unit_and_conffile_is_packaged_where_the_docs_say() {
    let assets = assets();
    let dest_of = |source: &str| -> String {
        assets
            .iter()
            .find(|a| a.source == source)
            .map(|a| format!("{}:{}", a.dest, a.mode))
            .unwrap_or_else(|| panic!("{source} is not packaged"))
    };
    for entry in std::fs::read_dir(root().join("packaging/systemd")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let source = format!("packaging/systemd/{name}");
        if name.ends_with(".service") || name.ends_with(".timer") {
            assert_eq!(dest_of(&source), format!("lib/systemd/system/{name}:644"));
        }
    }
    assert_eq!(
        dest_of("packaging/etc/spec.yaml"),
        "etc/maas-usage/spec.yaml:644"
    );
    assert_eq!(
        dest_of("packaging/etc/credentials.env"),
        "etc/maas-usage/credentials.env:600"
    );
    assert_eq!(dest_of("target/release/maas-usage"), "usr/bin/:755");
    assert_eq!(
        dest_of("target/package/completions/maas-usage.bash"),
        "usr/share/bash-completion/completions/maas-usage:644"
    );
    assert_eq!(
        dest_of("target/package/completions/_maas-usage"),
        "usr/share/zsh/vendor-completions/_maas-usage:644"
    );
    assert_eq!(
        dest_of("target/package/completions/maas-usage.fish"),
        "usr/share/fish/vendor_completions.d/maas-usage.fish:644"
    );
    assert_eq!(
        dest_of("target/package/man/*.1.gz"),
        "usr/share/man/man1/:644"
    );
}

#[test]
fn the_generated_assets_are_what_the_binary_writes() {
    let dir = tempdir();
    let out = bin().args(["man", "--dir"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["maas-usage.1", "maas-usage-run.1", "maas-usage-validate.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && stdout(&out).contains("maas-usage"));
    }
}

#[test]
fn the_sample_spec_validates_and_the_credentials_template_holds_no_value() {
    let out = bin()
        .arg("validate")
        .arg(root().join("packaging/etc/spec.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = read("packaging/etc/credentials.env");
    for line in env.lines() {
        assert!(
            line.is_empty() || line.starts_with('#'),
            "credentials.env ships commented: {line}"
        );
    }
    for needed in ["#HW_ACCESS_KEY=", "#HW_SECRET_KEY=", "agency"] {
        assert!(env.contains(needed), "{needed}");
    }
}

/// `ExecStart=` command lines (not the empty resets of a drop-in) of a unit or drop-in.
fn exec_starts(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            assert!(
                !v.contains(['"', '\'', '\\', '$', '%']),
                "keep ExecStart= free of quoting, variables and specifiers: {v}"
            );
            v.split_whitespace().map(String::from).collect()
        })
        .collect()
}

#[test]
fn the_units_command_lines_use_flags_the_binary_accepts() {
    let mut checked = 0;
    for entry in std::fs::read_dir(root().join("packaging/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        for argv in exec_starts(&text) {
            assert_eq!(argv[0], "/usr/bin/maas-usage", "{name}");
            let sub = argv[1].as_str();
            // Every unit shares one state directory, the one StateDirectory= makes.
            let state = argv.iter().position(|a| a == "--state-dir");
            assert_eq!(
                state.map(|i| argv[i + 1].as_str()),
                Some("/var/lib/maas-usage"),
                "{name}: --state-dir /var/lib/maas-usage"
            );
            let spec = argv.iter().position(|a| a == "--spec");
            assert_eq!(
                spec.map(|i| argv[i + 1].as_str()),
                Some("/etc/maas-usage/spec.yaml"),
                "{name}: --spec /etc/maas-usage/spec.yaml"
            );
            let help = stdout(&bin().args([sub, "--help"]).output().unwrap());
            for flag in argv.iter().filter(|a| a.starts_with("--")) {
                assert!(
                    help.contains(flag.as_str()),
                    "{name}: `maas-usage {sub} --help` has no {flag}"
                );
            }
            // The whole line parses, values included (with --help appended nothing runs).
            let out = bin().args(&argv[1..]).arg("--help").output().unwrap();
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            checked += 1;
        }
    }
    assert!(checked >= 2, "{checked} command lines checked");
}

/// When the state directory cannot record a credential rejection, the per-user runtime
/// directory does; under `PrivateTmp=` each unit's /tmp is its own and gone after a run, so the
/// units name one runtime directory that outlives their runs.
#[test]
fn every_unit_shares_a_runtime_directory_that_outlives_its_runs() {
    let mut units = 0;
    for entry in std::fs::read_dir(root().join("packaging/systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for want in [
            "RuntimeDirectory=maas-usage",
            "RuntimeDirectoryPreserve=yes",
            "Environment=XDG_RUNTIME_DIR=/run/maas-usage",
        ] {
            assert!(lines.contains(&want), "{}: no {want}", path.display());
        }
        units += 1;
    }
    assert!(units >= 2, "{units} units checked");
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: the units are not verified");
        return;
    }
    // The units as installed, with the built binary in place of /usr/bin/maas-usage (verify
    // wants the executable to exist), and the textfile drop-in applied to a copy of the
    // service it changes.
    let dir = tempdir();
    let units = root().join("packaging/systemd");
    let exe = env!("CARGO_BIN_EXE_maas-usage");
    let install = |name: &str, text: String| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text.replace("/usr/bin/maas-usage", exe)).unwrap();
        path
    };
    let mut files = Vec::new();
    for name in [
        "maas-usage.service",
        "maas-usage.timer",
        "maas-usage-serve.service",
    ] {
        files.push(install(name, read(&format!("packaging/systemd/{name}"))));
    }
    let dropin = std::fs::read_to_string(units.join("prometheus-textfile.conf")).unwrap();
    files.push(install(
        "maas-usage-textfile.service",
        read("packaging/systemd/maas-usage.service") + &dropin,
    ));
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap();
    let noise: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| l.contains("maas-usage") || l.contains(dir.to_str().unwrap()))
        .collect();
    assert!(
        out.status.success() && noise.is_empty(),
        "systemd-analyze verify:\n{}",
        stderr(&out)
    );
}

#[test]
fn the_ci_installs_the_package_it_builds() {
    let ci = read(".ci/run");
    for step in [
        "scripts/package-deb.sh",
        "dpkg -i",
        "/usr/bin/maas-usage --version",
        "/usr/bin/maas-usage demo",
        "dpkg -r",
    ] {
        assert!(ci.contains(step), ".ci/run lost `{step}`");
    }
    assert!(Path::new(&root().join("scripts/package-deb.sh")).is_file());
}

/// postinst sets the credentials file's owner and mode (maas-usage, 0600: no group can read
/// it) on the first install only, so an admin's later choice survives upgrades. Run with every
/// system command stubbed out and the paths moved into a temporary directory.
#[test]
fn postinst_sets_the_credentials_mode_on_first_install_only() {
    let dir = tempdir();
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("credentials.env"), "# template\n").unwrap();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    for cmd in [
        "chown",
        "chmod",
        "getent",
        "adduser",
        "addgroup",
        "dpkg-statoverride",
        "systemctl",
        "mkdir",
    ] {
        let stub = bin.join(cmd);
        // getent finds the user (not a fresh system), dpkg-statoverride lists no override.
        let status = if cmd == "dpkg-statoverride" { 1 } else { 0 };
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\necho \"{cmd} $*\" >> '{}'\nexit {status}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = read("packaging/debian/postinst")
        .replace("/etc/maas-usage", &etc.display().to_string())
        .replace(
            "/var/lib/maas-usage",
            &dir.join("state").display().to_string(),
        );
    let path = dir.join("postinst");
    std::fs::write(&path, script).unwrap();
    let calls = |args: &[&str]| {
        let _ = std::fs::remove_file(&log);
        let out = std::process::Command::new("sh")
            .arg(&path)
            .args(args)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read_to_string(&log).unwrap_or_default()
    };
    let creds = etc.join("credentials.env").display().to_string();
    let first = calls(&["configure"]);
    assert!(
        first.contains(&format!("chown maas-usage:root {creds}"))
            && first.contains(&format!("chmod 0600 {creds}")),
        "{first}"
    );
    let upgrade = calls(&["configure", "0.1.0-1"]);
    assert!(!upgrade.contains(&creds), "{upgrade}");
}
