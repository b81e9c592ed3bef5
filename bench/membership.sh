#!/usr/bin/env bash
# Membership figures from the deterministic simulator (build/mesh-sim), one JSON line per
# run plus a Markdown table at the end. Everything is simulated time; wall and CPU time
# are the simulator's own.
#
#   bench/membership.sh                       # N = 100 and 1000, defaults (minutes)
#   MS_NODES="1000 10000" bench/membership.sh # 10,000 needs ~15 GB of RAM and ~1 h
#   MS_STEADY_S=600 MS_SCENARIOS="steady" bench/membership.sh
#   MS_EXTRA="--probe-interval-ms 1000 ..." bench/membership.sh   # other tunables
#   MS_PROFILE=memberlist bench/membership.sh # memberlist's LAN defaults, same runs
#
# Meshes start preformed (every node restores every member, as after a restart): only
# the join scenario's newcomer joins for real. Without --preformed a mesh is formed by
# joins, which is quadratic in N and only practical up to ~1,000 nodes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sim=${MESH_SIM:-$here/../build/mesh-sim}
[ -x "$sim" ] || { echo "membership.sh: $sim not built (./scripts/build.sh)" >&2; exit 2; }
command -v jq >/dev/null || { echo "membership.sh: jq missing (scripts/deps.sh)" >&2; exit 2; }

nodes=${MS_NODES:-"100 1000"}
scenarios=${MS_SCENARIOS:-"join crash partition steady lossy"}
seed=${MS_SEED:-1}
steady_s=${MS_STEADY_S:-60}
lossy_s=${MS_LOSSY_S:-600}
extra=${MS_EXTRA:-}
if [ "${MS_PROFILE:-}" = memberlist ]; then
  # hashicorp/memberlist DefaultLANConfig: probe 1 s / timeout 500 ms, 3 indirect
  # probes, suspicion mult 4 (max 6x), gossip 200 ms to 3, retransmit mult 4,
  # push-pull 30 s, no floor and no extra direct datagram (its fallback is TCP).
  extra="--probe-interval-ms 1000 --probe-timeout-ms 500 --indirect-probes 3 --suspicion-mult 4
    --suspicion-max-mult 6 --suspicion-floor-ms 0 --direct-retry 0 --gossip-interval-ms 200
    --gossip-fanout 3 --gossip-burst-max 1 --retransmit-mult 4 --push-pull-ms 30000 $extra"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for n in $nodes; do
  for sc in $scenarios; do
    case $sc in
      steady) args=(--scenario steady --duration-s "$steady_s") ;;
      lossy) args=(--scenario steady --duration-s "$lossy_s" --loss 0.1) ;;
      *) args=(--scenario "$sc") ;;
    esac
    # shellcheck disable=SC2086  # $extra is a list of flags
    line=$("$sim" --nodes "$n" --seed "$seed" --preformed --no-storage "${args[@]}" $extra || true)
    [ -n "$line" ] || { echo "membership.sh: mesh-sim failed for N=$n $sc" >&2; continue; }
    echo "$line" | jq -c --arg sc "$sc" '. + {run: $sc}' | tee -a "$out"
  done
done

echo
echo "| N | run | result | false deaths (nodes) | wire bytes/node/s | packets/node/s | mem/node | wall s |"
echo "|---|---|---|---|---|---|---|---|"
jq -r '
  def ms(x): if x == null then "—" else "\(x) ms" end;
  (if .run == "join" then "99.9 % know the join: \(ms(.join_known_ms.p99_9)), all: \(ms(.join_known_ms.p100))"
   elif .run == "crash" then "crash known by all: \(ms(.crash_known_ms.all)) (50 %: \(ms(.crash_known_ms.p50)))"
   elif .run == "partition" then "converged \(ms(.heal_converge_ms)) after the heal (push-pull \(.config.push_pull_interval_ms) ms)"
   elif .run == "lossy" then "\(.sim_ms / 1000 | floor) s at \(.loss * 100) % loss: \(.suspicions) suspicions, \(.false_suspicions_refuted) refuted"
   else "\(.sim_ms / 1000 | floor) s idle" end) as $r
  | "| \(.nodes) | \(.run) | \($r) | \(.false_deaths) (\(.false_dead_nodes)) | \(.steady_per_node_s.wire_bytes // (.steady_per_node_s.bytes + 64 * .steady_per_node_s.packets) | floor) | \(.steady_per_node_s.packets * 10 | floor / 10) | \(.peak_memory_per_node_kb | floor) kB | \(.wall_s | floor) |"
' "$out"
