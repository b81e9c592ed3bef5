#!/usr/bin/env bash
# Agent CPU per GB at a fixed rate: an A/B for data-plane changes whose throughput gain is
# smaller than the rig's run-to-run noise. As root.
#
#   bench/agent_cpu.sh BIN [BIN...]      e.g. bench/agent_cpu.sh /tmp/old/meshd build/meshd
#
# For each binary in turn (ROUNDS rounds, alternating), two namespaces joined by a veth
# (MTU 1500), meshd on each (init + token on A, join on B, attach --ip on both, the same
# steps as bench/dataplane.sh), then `iperf3 -b RATE -t SECS` A -> B over the overlay.
# Prints the bytes carried and the utime+stime of both agents per GB. Knobs: RATE=1500M
# SECS=5 ROUNDS=3; MESHD_* variables pass through to the agents.
set -euo pipefail

RATE=${RATE:-1500M}
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
[ "$(id -u)" = 0 ] || { echo "agent_cpu.sh: run as root" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: bench/agent_cpu.sh BIN [BIN...]" >&2; exit 2; }
for b in "$@"; do [ -x "$b" ] || { echo "agent_cpu.sh: $b is not executable" >&2; exit 2; }; done
bins=()
for b in "$@"; do bins+=("$(readlink -f "$b")"); done
command -v iperf3 >/dev/null || { echo "agent_cpu.sh: needs iperf3" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/meshd-agentcpu.XXXXXX)
ns_a=mcpu-a-$$
ns_b=mcpu-b-$$

down() {
  local p
  for p in $(ip netns pids "$ns_a" 2>/dev/null) $(ip netns pids "$ns_b" 2>/dev/null); do
    kill "$p" 2>/dev/null || true
  done
  sleep 0.5
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
}
trap 'down; rm -rf "$work"' EXIT

up() { # binary
  down
  rm -rf "$work/run" && mkdir -p "$work/run"
  ip netns add "$ns_a" && ip netns add "$ns_b"
  ip link add "ca$$" type veth peer name "cb$$"
  ip link set "ca$$" netns "$ns_a" && ip link set "cb$$" netns "$ns_b"
  ip -n "$ns_a" addr add 10.230.0.1/24 dev "ca$$" && ip -n "$ns_b" addr add 10.230.0.2/24 dev "cb$$"
  ip -n "$ns_a" link set "ca$$" up && ip -n "$ns_b" link set "cb$$" up
  ip -n "$ns_a" link set lo up && ip -n "$ns_b" link set lo up
  local env=(OVB_WORK="$work/run" OVB_UNDER_IP_A=10.230.0.1 OVB_UNDER_IP_B=10.230.0.2
             OVB_EXTRA_IP_A=10.239.0.1 OVB_EXTRA_IP_B=10.239.0.2 OVB_MTU=1400 MESHD_BIN="$1")
  ip netns exec "$ns_a" env "${env[@]}" timeout 600 bash "$root/bench/dataplane.sh" --side a \
    >"$work/a.log" 2>&1 &
  ip netns exec "$ns_b" env "${env[@]}" timeout 600 bash "$root/bench/dataplane.sh" --side b \
    >"$work/b.log" 2>&1 &
  local k
  for ((k = 0; k < 100; k++)); do
    ip netns exec "$ns_a" ping -c 1 -W 1 10.239.0.2 >/dev/null 2>&1 && return 0
    sleep 0.3
  done
  echo "agent_cpu.sh: overlay with $1 did not come up; logs:" >&2
  cat "$work/a.log" "$work/b.log" >&2
  return 1
}

agent_ticks() { # utime+stime of every meshd in the two namespaces, in clock ticks
  local t=0 p f
  for p in $(ip netns pids "$ns_a") $(ip netns pids "$ns_b"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = meshd ] || continue
    read -r -a f <"/proc/$p/stat"
    t=$((t + f[13] + f[14]))
  done
  echo "$t"
}

hz=$(getconf CLK_TCK)
echo "| round | binary | GB carried | agent CPU s | CPU s per GB |"
echo "|---|---|---|---|---|"
for ((r = 1; r <= ROUNDS; r++)); do
  for bin in "${bins[@]}"; do
    up "$bin"
    ip netns exec "$ns_b" iperf3 -s -D -1 >/dev/null 2>&1
    sleep 0.3
    c0=$(agent_ticks)
    gb=$(ip netns exec "$ns_a" iperf3 -c 10.239.0.2 -t "$SECS" -b "$RATE" -J |
      python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bytes"] / 1e9))')
    c1=$(agent_ticks)
    python3 -c "t=($c1-$c0)/$hz; print('| $r | $bin | $gb | %.2f | %.2f |' % (t, t/$gb))"
  done
done
