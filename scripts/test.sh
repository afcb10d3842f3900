#!/usr/bin/env bash
# The whole test suite: formatting, lints, the pure crates' I/O-free dependency tree, and every
# test (unit, simulation, and network-namespace integration tests, which need root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== pure crates stay free of I/O runtimes"
for crate in carp conntrack firewall statesync configsync; do
    if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|socket2|nix|mio|netlink-sys) ' ; then
        echo "crate $crate depends on an I/O crate (see above); engines must stay sans-IO" >&2
        exit 1
    fi
done

echo "== layout: modules import one way, no file above 900 lines, one toml"
python3 scripts/layout.py
if cargo tree --workspace -e normal,build,dev --duplicates --prefix none | grep -E '^toml v'; then
    echo "more than one version of toml in the tree (see above); one version per dependency" >&2
    exit 1
fi

echo "== Debian package (release build; tests/package.rs unpacks it and runs it)"
deb=$(bash scripts/package.sh | tail -n1)
dpkg-deb --info "$deb" >/dev/null
dpkg-deb --contents "$deb" >/dev/null
echo "built $deb"

echo "== cargo test"
# The userspace WireGuard the namespace tests run (crates/wg-userspace): `cargo test` builds
# bin targets of other packages only as test harnesses, not as the program.
cargo build -p wg-userspace
TANDEM_DEB="$deb" cargo test --workspace --all-targets "$@"
