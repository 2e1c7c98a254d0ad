//! Link settings for the `maas-usage` executable on Linux (GNU toolchain) that keep the pages a
//! run touches few; BENCHMARKS.md ("Memory") has the measurements.
//!
//! `-no-pie`: a position-independent executable carries ~44,000 relative relocations (1 MiB of
//! `.rela.dyn`, read at every start), and the dynamic loader writes every page of
//! `.data.rel.ro` (1.2 MiB, mostly chrono-tz's zone tables) to apply them, for every command,
//! even `--version`. Linked at a fixed address there is nothing to relocate. The code stays
//! position-independent (rustc's default); only the final link changes.
//!
//! Tests, benches and the library are not affected (`rustc-link-arg-bins`).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = |k: &str| std::env::var(k).unwrap_or_default();
    if target("CARGO_CFG_TARGET_OS") != "linux" || target("CARGO_CFG_TARGET_ENV") != "gnu" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
