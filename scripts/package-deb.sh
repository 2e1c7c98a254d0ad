#!/usr/bin/env bash
# Builds the Debian package and prints its path:
#   scripts/package-deb.sh            -> target/debian/maas-usage_<version>-1_<arch>.deb
# One release build; the man pages and shell completions are written by that binary into
# target/package/; then `cargo deb --no-build` packs the assets listed under
# [package.metadata.deb] in Cargo.toml (sources in packaging/). Installs cargo-deb (pinned) when
# it is missing; `depends = "$auto"` needs dpkg-shlibdeps (Debian's dpkg-dev).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null || true)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi
command -v dpkg-shlibdeps >/dev/null || echo "W! dpkg-shlibdeps not found (apt-get install dpkg-dev): Depends will miss libc" >&2

cargo build --release --locked
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir:-target}/release/maas-usage"

out=target/package
rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
"$bin" man --dir "$out/man"
gzip -9n "$out"/man/*.1
"$bin" completions bash >"$out/completions/maas-usage.bash"
"$bin" completions zsh >"$out/completions/_maas-usage"
"$bin" completions fish >"$out/completions/maas-usage.fish"

# The profile already strips the binary (Cargo.toml [profile.release]).
deb=$(cargo deb --no-build --no-strip --quiet | tail -n 1)
echo "$deb"
