#!/usr/bin/env bash
# Data-plane comparison: meshd against kernel VXLAN, wireguard-go, Nebula and tinc, all
# measured in the same run between two namespaces by ../shared/bench/overlay-peers.sh
# (its OVB_EXTRA_* hook runs meshd). As root. Takes several minutes; installs iperf3,
# nebula, tinc and wireguard-go through apt unless OVB_NO_INSTALL=1.
#
#   bench/dataplane.sh                 all overlays + meshd
#   bench/dataplane.sh vxlan extra     only kernel VXLAN and meshd ("extra" is meshd)
#
# Prints overlay-peers' table, then meshd's figures as a ratio of each overlay's.
# MESHD_BIN=path skips the build. Other OVB_* knobs are documented in overlay-peers.sh.
set -euo pipefail

# ---------------------------------------------------------------- inside a namespace
# overlay-peers.sh runs `dataplane.sh --side a|b` inside ovb-a / ovb-b with OVB_* set.
# The agent must stay in the foreground (it is killed by pid), so the steps that need a
# running agent (token, attach) run in a background subshell, bounded.

wait_sock() { # state dir
  local k
  for ((k = 0; k < 300; k++)); do [ -S "$1/control.sock" ] && return 0; sleep 0.1; done
  echo "dataplane.sh: no control socket in $1 after 30 s" >&2
  return 1
}

attach_when_up() { # state dir, ip; retried while the node finishes enrolling
  local k
  wait_sock "$1" || return 1
  for ((k = 0; k < 100; k++)); do
    "$MESHD_BIN" attach --state "$1" --vni 1 --ip "$2/24" && break
    sleep 0.2
  done
  if [ "$OVB_MTU" != 1400 ]; then ip link set dev vni1 mtu "$OVB_MTU" || true; fi
}

side_a() {
  local s=$OVB_WORK/meshd-a
  "$MESHD_BIN" init --state "$s" --name a --listen "$OVB_UNDER_IP_A:51900" >/dev/null || exit 1
  (
    wait_sock "$s" || exit 1
    "$MESHD_BIN" token create --state "$s" --vni 1 --uses 1 >"$OVB_WORK/meshd.token.tmp" \
      && mv "$OVB_WORK/meshd.token.tmp" "$OVB_WORK/meshd.token"
    attach_when_up "$s" "$OVB_EXTRA_IP_A"
  ) &
  exec "$MESHD_BIN" run --state "$s"
}

side_b() {
  local s=$OVB_WORK/meshd-b k
  for ((k = 0; k < 300; k++)); do [ -s "$OVB_WORK/meshd.token" ] && break; sleep 0.1; done
  [ -s "$OVB_WORK/meshd.token" ] || { echo "dataplane.sh: no token from A within 30 s" >&2; exit 1; }
  attach_when_up "$s" "$OVB_EXTRA_IP_B" &
  exec "$MESHD_BIN" join --token-file "$OVB_WORK/meshd.token" --state "$s" --name b \
    --listen "$OVB_UNDER_IP_B:51900"
}

if [ "${1:-}" = --side ]; then
  case "${2:-}" in
    a) side_a ;;
    b) side_b ;;
  esac
  echo "dataplane.sh: --side a|b" >&2
  exit 2
fi

# ---------------------------------------------------------------- driver
cd "$(dirname "$0")/.."
root=$PWD

peers=${OVB_PEERS_SCRIPT:-$root/../shared/bench/overlay-peers.sh}
[ -f "$peers" ] || { echo "dataplane.sh: $peers not found (expects ../shared beside the repo)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "dataplane.sh: run as root" >&2; exit 1; }

if [ -z "${MESHD_BIN:-}" ]; then
  bash scripts/build.sh --target meshd >&2
  MESHD_BIN=$root/build/meshd
fi
MESHD_BIN=$(readlink -f "$MESHD_BIN")
export MESHD_BIN

self=$root/bench/dataplane.sh
OVB_EXTRA_CMD_A="bash $(printf %q "$self") --side a"
OVB_EXTRA_CMD_B="bash $(printf %q "$self") --side b"
export OVB_EXTRA_CMD_A OVB_EXTRA_CMD_B
export OVB_EXTRA_NAME=meshd

out=$(mktemp /tmp/meshd-overlay.XXXXXX)
trap 'rm -f "$out"' EXIT
rc=0
bash "$peers" "$@" | tee "$out" || rc=$?

# Relative table: meshd's throughput and latency divided by every row's (same run).
awk -F'|' -v t="${OVB_TIME:-8}" '
  function num(s) { gsub(/ /, "", s); return (s ~ /^[0-9.]+$/) ? s + 0 : -1 }
  /^\| [^ ]+ \| / && $2 !~ /overlay|---/ {
    name = $2; gsub(/ /, "", name)
    n++; names[n] = name; one[n] = num($3); four[n] = num($4); lat[n] = num($5); cpu[n] = num($6)
    if (name == "meshd") m = n
  }
  function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "-" }
  # CPU seconds per gigabit carried: the CPU of the whole 1-stream run (t + 1 s warm-up).
  function cpg(i) { return (cpu[i] > 0 && one[i] > 0) ? sprintf("%.3f", cpu[i] / (one[i] * (t + 1))) : "-" }
  END {
    if (!m) { print "\n(no meshd row: nothing to compare)"; exit }
    print "\n### meshd relative to each overlay (same run): meshd / overlay; throughput < 1 means meshd is slower, ping < 1 means meshd answers faster\n"
    print "| overlay | 1-stream | 4-stream | ping avg | ping diff ms | CPU s per Gbit (overlay; meshd " cpg(m) ") |"
    print "|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) if (i != m)
      printf "| %s | %s | %s | %s | %+.3f | %s |\n", names[i], ratio(one[m], one[i]), ratio(four[m], four[i]), ratio(lat[m], lat[i]), lat[m] - lat[i], cpg(i)
  }' "$out"
exit "$rc"
