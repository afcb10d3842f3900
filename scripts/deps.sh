#!/usr/bin/env bash
# Installs the Debian packages Tandem's tests, demo and benchmarks use (as root). Quiet and
# quick when they are all present already. It never starts, stops or disables a service of the
# host: the tests start their own keepalived, conntrackd and ucarp inside network namespaces.
# systemd (systemd-analyze verify), util-linux (setpriv) and dpkg-dev (dpkg-shlibdeps) serve
# the package build and its test (scripts/package.sh, crates/tandem/tests/package.rs).
# kea-dhcp4-server (with its HA and lease_cmds hooks) and udhcpc serve the dhcp area's test.
set -euo pipefail
pkgs=(iproute2 iputils-ping iputils-arping ucarp keepalived nftables conntrack conntrackd tcpdump python3
    chromium systemd util-linux dpkg-dev unbound dnsutils kea-dhcp4-server udhcpc)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts a package's service when it is installed. A policy-rc.d that says "no"
    # (exit 101) stops that for this install only; an existing one is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
