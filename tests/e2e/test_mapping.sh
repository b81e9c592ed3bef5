#!/usr/bin/env bash
# e2e: the mapping system (issue 4) with real agents.
#  * On demand: a node knows only the remote endpoints its tenants talk to.
#  * ARP suppression: the first ARP request for a remote IP waits for the map-request,
#    then the local agent answers it; nothing is flooded (counters show it).
#  * Mobility: an endpoint moves from h2 to h3 (detach, then attach with the same MAC
#    and IP) while a ping from h1 runs; traffic resumes and the gap is reported.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin mapping me2e-map-

counter() { mjson "$1" status | jq -r ".counters.$2 // 0"; }
some_duplicate() {
  local i
  for i in 2 3; do
    mjson "$i" endpoints | jq -e '[.endpoints[] | select(.duplicate)] | length > 0' >/dev/null && return 0
  done
  return 1
}

step "underlay and membership"
e2e_underlay 3
mesh_up 3

# Tenants without IPv6: its multicast chatter (router solicitations, MLD) would reach
# every node of the VNI, which then resolves the sender (a frame from an endpoint it
# has not resolved is checked first) and caches it.
quiet_tenant() {
  tenant_add "$1"
  in_ns "${T[$1]}" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

step "tenants in VNI 100: t1 on h1 (10.20.0.1), t2 on h2 (10.20.0.2); h3 serves VNI 100 too"
quiet_tenant t1; attach 1 100 t1 10.20.0.1/24
quiet_tenant t2; attach 2 100 t2 10.20.0.2/24 --mac 02:00:00:20:00:02
quiet_tenant t3x; attach 3 100 t3x 10.20.0.3/24

step "on demand: before any traffic, h1 caches no remote endpoint"
sleep 1
n=$(mjson 1 endpoints | jq '[.endpoints[] | select(.local == false)] | length')
[ "$n" = 0 ] || fail "h1 lists $n remote endpoints before its tenants sent anything: $(mjson 1 endpoints | jq -c .)"
ok "h1 caches nothing yet"

step "ARP suppression: t1 -> t2 resolves through the mapping system, answered locally"
floods0=$(counter 1 map_lookup_floods)
expect_ping "${T[t1]}" 10.20.0.2
proxied=$(counter 1 fwd_arp_proxied)
lookups=$(counter 1 map_lookups)
floods=$(counter 1 map_lookup_floods)
log "h1: map lookups $lookups, ARP answered locally $proxied, lookups flooded $((floods - floods0))"
[ "$proxied" -ge 1 ] || fail "h1 answered no ARP request locally (fwd_arp_proxied=$proxied)"
[ "$lookups" -ge 1 ] || fail "h1 sent no map lookup (map_lookups=$lookups)"
[ "$floods" = "$floods0" ] || fail "h1 flooded $((floods - floods0)) frames it should have resolved"
ok "ARP for 10.20.0.2 answered by h1's agent after a map lookup, nothing flooded"
has_endpoint 1 100 10.20.0.2 h2 false || fail "h1 does not list the cached 10.20.0.2 on h2"
n=$(mjson 1 endpoints | jq '[.endpoints[] | select(.local == false and (.ips | index("10.20.0.3")))] | length')
[ "$n" = 0 ] || fail "h1 cached 10.20.0.3 although its tenants never talked to it"
ok "h1 caches 10.20.0.2 (on h2) and not 10.20.0.3"
held=0
for i in 1 2 3; do held=$((held + $(counter "$i" mesh_map_held))); done
# Three endpoints, two keys each (MAC, IP), 3 owners each, but only 3 nodes: all hold all.
[ "$held" = 18 ] || fail "owners hold $held keys in all, want 18 (3 endpoints x 2 keys x 3 owners)"
ok "owners hold 18 keys (3 endpoints x 2 keys x R=3)"

step "mobility: t2 moves from h2 to h3 (same MAC and IP) under a running ping"
quiet_tenant t2new
in_ns "${T[t1]}" ping -i 0.1 -c 150 -W 1 10.20.0.2 >"$E2E_WORK/ping.txt" 2>&1 &
ping_pid=$!
sleep 2
t_move=$(now_ms)
run_capture mcli 2 detach --vni 100 --netns "${T[t2]}"
[ "$RC" = 0 ] || fail "detach t2 on h2: exit $RC: $ERR"
attach 3 100 t2new 10.20.0.2/24 --mac 02:00:00:20:00:02
log "moved in $(($(now_ms) - t_move)) ms (detach + attach)"
wait "$ping_pid" || true
sent=$(grep -oE '[0-9]+ packets transmitted' "$E2E_WORK/ping.txt" | grep -oE '^[0-9]+')
recv=$(grep -oE '[0-9]+ received' "$E2E_WORK/ping.txt" | grep -oE '^[0-9]+')
lost=$((sent - recv))
log "ping during the move: $recv of $sent replies; gap ~$((lost * 100)) ms (at 100 ms per echo)"
[ "$recv" -gt 100 ] || fail "traffic did not resume after the move: $recv of $sent replies ($(tail -n 3 "$E2E_WORK/ping.txt"))"
[ "$lost" -le 30 ] || fail "the move cost $lost echoes (~$((lost * 100)) ms), want <= 3 s"
# The last echoes must have come from the new place.
expect_ping "${T[t1]}" 10.20.0.2
wait_until 5 "h1 to see 10.20.0.2 on h3" has_endpoint 1 100 10.20.0.2 h3 false \
  || fail "h1 still maps 10.20.0.2 elsewhere: $(mjson 1 endpoints | jq -c .)"
ok "h1 maps 10.20.0.2 to h3 after the move"
n=$(mjson 2 endpoints | jq '[.endpoints[] | select(.local and .mac == "02:00:00:20:00:02")] | length')
[ "$n" = 0 ] || fail "h2 still lists the endpoint it detached"
ok "h2 no longer lists it (its withdrawal is a tombstone; h3's live claim beats it at any seq)"

step "duplicate: the same MAC attached on h2 again while h3 has it"
quiet_tenant t2dup
attach 2 100 t2dup 10.20.0.22/24 --mac 02:00:00:20:00:02
wait_until 10 "a duplicate to be reported" some_duplicate \
  || fail "no node reports the MAC claimed on h2 and h3 as duplicate: $(mjson 2 endpoints | jq -c .) $(mjson 3 endpoints | jq -c .)"
dups=$(($(counter 2 mesh_map_duplicates) + $(counter 3 mesh_map_duplicates)))
[ "$dups" -ge 1 ] || fail "mesh_map_duplicates is 0 on h2 and h3"
ok "duplicate claim reported ($dups)"

step "drop counters (reported)"
for i in 1 2 3; do log "h$i drops: $(mjson "$i" status | jq -c '[.counters | to_entries[] | select(.value > 0 and (.key | test("drop")))] | from_entries')"; done
step "owners keep what they hold in LMDB: h1 and h2 stop, h3 restarts alone"
held3=$(counter 3 mesh_map_held)
[ "$held3" -ge 6 ] || fail "h3 holds $held3 keys before the restart, want >= 6"
agent_stop 1
agent_stop 2
agent_stop 3
agent_run 3
# Nobody is left to register anything again: what h3 holds now came from its state.
after=$(counter 3 mesh_map_held)
[ "$after" = "$held3" ] || fail "h3 holds $after keys after a restart, $held3 before"
ok "h3 holds the same $after keys after a restart with no other node up"

ok "mapping e2e done"
