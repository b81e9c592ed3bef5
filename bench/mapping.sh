#!/usr/bin/env bash
# Mapping-system figures (issue 4) from the deterministic simulator (build/mesh-sim
# --scenario mapping), one JSON line per run plus a Markdown table at the end. Times are
# simulated; wall and CPU time are the simulator's own.
#
#   bench/mapping.sh                                   # N = 100 and 1000, E = 100,000, V = 100
#   MS_NODES=1000 bench/mapping.sh                     # one size
#   MS_ENDPOINTS=20000 MS_VNIS=50 MS_NODES=200 bench/mapping.sh
#   MS_EXTRA="--lookups 3000 --zipf 1.2 --replicas 2" bench/mapping.sh   # other flags
#
# Each run: a preformed mesh of N nodes publishes E endpoints (one MAC + one IP each)
# over V VNIs, each node serving a few VNIs; then MS_TRAFFIC_S seconds of tenant traffic
# (MS_LOOKUPS lookups per node, Zipf popularity, half by IP key), MS_MOVES moves, and
# MS_KILL_ROUNDS rounds that kill R-1 owners of one key at once (build/mesh-sim --help).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sim=${MESH_SIM:-$here/../build/mesh-sim}
[ -x "$sim" ] || { echo "mapping.sh: $sim not built (./scripts/build.sh)" >&2; exit 2; }
command -v jq >/dev/null || { echo "mapping.sh: jq missing (scripts/deps.sh)" >&2; exit 2; }

nodes=${MS_NODES:-"100 1000"}
endpoints=${MS_ENDPOINTS:-100000}
vnis=${MS_VNIS:-100}
seed=${MS_SEED:-1}
lookups=${MS_LOOKUPS:-1000}
traffic_s=${MS_TRAFFIC_S:-60}
moves=${MS_MOVES:-10}
kill_rounds=${MS_KILL_ROUNDS:-3}
extra=${MS_EXTRA:-}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
for n in $nodes; do
  # shellcheck disable=SC2086  # $extra is a list of flags
  line=$("$sim" --nodes "$n" --seed "$seed" --preformed --no-storage --scenario mapping \
    --endpoints "$endpoints" --vnis "$vnis" --lookups "$lookups" --traffic-s "$traffic_s" \
    --moves "$moves" --kill-rounds "$kill_rounds" $extra) || status=1
  [ -n "$line" ] || { echo "mapping.sh: mesh-sim failed for N=$n" >&2; continue; }
  echo "$line" | tee -a "$out"
done

echo
echo "| N | E / V | result | resolve p50 / p99 | cache hit | map wire B/node/s (pkts) | held / cached per node | mapping mem/node (est / heap) | peak RSS/node | move seen p50 / max | lost | re-replicated p50 / max | wall s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
jq -r '
  def ms(x): if x == null then "—" else "\(x) ms" end;
  def kb(x): if x == null then "—" else "\(x / 1024 | floor) kB" end;
  .mapping as $m
  | "| \(.nodes) | \($m.endpoints) / \($m.vnis) | \(if .ok then "ok" else "**\(.violations | length) violations**" end)"
    + " | \(ms($m.resolve_ms.p50)) / \(ms($m.resolve_ms.p99))"
    + " | \($m.lookups.cache_hit_ratio * 1000 | floor / 10) %"
    + " | \($m.map_traffic_per_node_s.wire_bytes | floor) (\($m.map_traffic_per_node_s.packets * 10 | floor / 10))"
    + " | \($m.memory_per_node.held_keys | floor) / \($m.memory_per_node.cached_mappings | floor)"
    + " | \(kb($m.memory_per_node.est_bytes)) / \(kb($m.memory_per_node.heap_bytes))"
    + " | \(.peak_memory_per_node_kb | floor) kB"
    + " | \(ms($m.moves.seen_ms.p50)) / \(ms($m.moves.all_seen_ms.max)) (\($m.moves.stale) stale)"
    + " | \($m.owner_kills.mappings_lost) of \($m.owner_kills.keys_affected)"
    + " | \(ms($m.owner_kills.rereplicated_ms.p50)) / \(ms($m.owner_kills.rereplicated_ms.max))"
    + " | \(.wall_s | floor) |"
' "$out"
exit $status
