#!/usr/bin/env bash
# Installs the Debian packages Tandem's tests, demo and benchmarks use (as root). Quiet and
# quick when they are all present already.
set -euo pipefail
pkgs=(iproute2 iputils-ping iputils-arping ucarp keepalived nftables conntrack conntrackd tcpdump python3)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian packages ship services we start ourselves, per test, in namespaces.
for s in keepalived conntrackd; do
    systemctl disable --now "$s" >/dev/null 2>&1 || true
done
