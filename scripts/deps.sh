#!/usr/bin/env bash
# Install the Debian 12 packages meshd needs to build and test.
# Fast path: when everything is installed, apt is not touched at all.
# Usage: scripts/deps.sh            (as root; non-interactive)
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config
  libuv1-dev libsodium-dev libssl-dev libmsgpack-cxx-dev liblmdb-dev
  libnl-3-dev libnl-route-3-dev libmnl-dev
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  doctest-dev libbenchmark-dev
  # tests, demo, benchmarks
  iproute2 iputils-ping jq procps psmisc iperf3 netcat-openbsd
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages: ${missing[*]}; run as root (or install them yourself)" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
