#!/usr/bin/env bash
# Builds the Debian package: target/debian/tandem_VERSION-1_ARCH.deb (plain dpkg-deb: nothing
# from the network beyond the cargo build itself).
#
#   bash scripts/package.sh                 # release build, then the package
#   bash scripts/package.sh --binary PATH   # package an already built tandem binary (tests)
#   bash scripts/package.sh --out DIR       # write the .deb into DIR (default target/debian)
#
# Prints the path of the .deb as its last line. `lintian` on it shows no error or warning (the
# intended permissions are overridden in packaging/debian/lintian-overrides). Contents: /usr/sbin/tandem, the systemd unit
# in /lib/systemd/system, the example config /etc/tandem/tandem.toml (a conffile: an existing
# one is never overwritten), /var/lib/tandem (0700), the man pages in /usr/share/man/man8,
# /usr/share/doc/tandem (copyright, README). Maintainer scripts: packaging/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD

binary=""
out="$root_dir/target/debian"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$(realpath "$2"); shift 2 ;;
        --out) mkdir -p "$2"; out=$(realpath "$2"); shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR]" >&2; exit 2 ;;
    esac
done

for tool in dpkg-deb gzip; do
    command -v "$tool" >/dev/null || { echo "package.sh: $tool is missing (apt-get install dpkg)" >&2; exit 1; }
done

if [ -z "$binary" ]; then
    echo "== cargo build --release -p tandem" >&2
    cargo build --release -p tandem >&2
    binary="$root_dir/target/release/tandem"
fi
[ -x "$binary" ] || { echo "package.sh: $binary is not an executable" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' crates/tandem/Cargo.toml | head -n1)
[ -n "$version" ] || { echo "package.sh: no version in crates/tandem/Cargo.toml" >&2; exit 1; }
debversion="$version-1"
arch=$(dpkg --print-architecture)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/sbin" "$pkg/lib/systemd/system" "$pkg/etc/tandem" \
    "$pkg/usr/share/man/man8" "$pkg/usr/share/doc/tandem"
install -d -m 0700 "$pkg/var/lib/tandem"

install -m 0755 "$binary" "$pkg/usr/sbin/tandem"
if command -v strip >/dev/null; then
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg/usr/sbin/tandem"
fi
install -m 0644 packaging/tandem.service "$pkg/lib/systemd/system/tandem.service"
# The example holds a passphrase: root's only.
install -m 0600 packaging/tandem.toml "$pkg/etc/tandem/tandem.toml"

# The man pages, from the CLI's own definition.
"$pkg/usr/sbin/tandem" man "$stage/man" >&2
for page in "$stage"/man/*.8; do
    gzip -9n -c "$page" >"$pkg/usr/share/man/man8/$(basename "$page").gz"
done
chmod 0644 "$pkg"/usr/share/man/man8/*.gz

install -m 0644 packaging/debian/copyright "$pkg/usr/share/doc/tandem/copyright"
install -d -m 0755 "$pkg/usr/share/lintian/overrides"
install -m 0644 packaging/debian/lintian-overrides "$pkg/usr/share/lintian/overrides/tandem"
gzip -9n -c README.md >"$pkg/usr/share/doc/tandem/README.md.gz"
gzip -9n -c >"$pkg/usr/share/doc/tandem/changelog.Debian.gz" <<CHANGELOG
tandem ($debversion) unstable; urgency=medium

  * Built by scripts/package.sh from the Tandem source tree.

 -- Tandem developers <tandem@example.org>  $(date -R -u -d @"${SOURCE_DATE_EPOCH:-0}")
CHANGELOG
chmod 0644 "$pkg"/usr/share/doc/tandem/*

for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$pkg/DEBIAN/$script"
done
echo "/etc/tandem/tandem.toml" >"$pkg/DEBIAN/conffiles"
chmod 0644 "$pkg/DEBIAN/conffiles"

# The libraries the binary links (libc, libgcc_s), as dpkg-shlibdeps sees them.
depends="libc6 (>= 2.34), libgcc-s1 (>= 4.2)"
if command -v dpkg-shlibdeps >/dev/null; then
    mkdir -p "$stage/src/debian"
    printf 'Source: tandem\n\nPackage: tandem\nArchitecture: any\n' >"$stage/src/debian/control"
    if found=$(cd "$stage/src" && dpkg-shlibdeps -O "$pkg/usr/sbin/tandem" 2>/dev/null); then
        found=${found#shlibs:Depends=}
        [ -n "$found" ] && depends=$found
    fi
fi

size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: tandem
Version: $debversion
Architecture: $arch
Maintainer: Tandem developers <tandem@example.org>
Installed-Size: $size
Depends: $depends
Recommends: nftables
Section: net
Priority: optional
Description: high-availability cluster daemon for Linux firewalls
 Tandem makes two or more Linux firewalls act as one: virtual IPs that move
 between the nodes with CARP (wire-compatible with BSD CARP and ucarp),
 configuration sync from the primary to its peers, and connection state sync so
 that established connections survive a failover.
CONTROL
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/tandem_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2
echo "$deb"
