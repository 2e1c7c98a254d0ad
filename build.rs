//! Link settings for the `maas-usage` executable on Linux (GNU toolchain) that keep the pages a
//! run touches few; BENCHMARKS.md ("Memory") has the measurements behind both.
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
    let target = |k: &str| std::env::var(k).unwrap_or_default();
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
