#!/usr/bin/env bash
# e2e: `meshd leave` on h3: its agent exits 0, the others record it as left (not failed)
# within 5 s, its devices are removed, and its state cannot run again.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin leave me2e-leave-

LEFT_MAX_S=5

e2e_underlay 3
mesh_up 3
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t3a; attach 3 100 t3a 10.10.0.3/24
expect_ping "${T[t1a]}" 10.10.0.3
ip -n "${H[3]}" link show vni100 >/dev/null || fail "h3 has no bridge vni100 before leave"

step "meshd leave on h3"
t0=$(now_ms)
run_capture mcli 3 leave
[ "$RC" = 0 ] || fail "meshd leave: exit $RC: $ERR"
agent_wait_exit 3 10 || fail "h3's agent still running 10 s after leave"
[ "$AGENT_RC" = 0 ] || fail "h3's agent exited with $AGENT_RC after leave, want 0"
ok "h3's agent exited 0 after $(($(now_ms) - t0)) ms"

for i in 1 2; do
  wait_until "$LEFT_MAX_S" "h$i to see h3 left" peer_is "$i" h3 left \
    || fail "h$i sees h3 as '$(peer_state "$i" h3)', want left within ${LEFT_MAX_S}s"
  ok "h$i sees h3 left"
done
log "h3 left as seen by h1 and h2 after $(($(now_ms) - t0)) ms"
sleep 3
for i in 1 2; do
  s=$(peer_state "$i" h3)
  [ "$s" = left ] || [ -z "$s" ] || fail "3 s later h$i sees h3 as '$s' (a left node must not turn $s)"
done
ok "h3 still left (not failed) 3 s later"
jq_check "h1 status counts h3 as left" "$(mjson 1 status)" '.members.left == 1 and .members.failed == 0 and .members.alive == 1'

step "h3's devices are gone"
for d in vni100 vni100-tap; do
  ! ip -n "${H[3]}" link show "$d" >/dev/null 2>&1 || fail "h3 still has $d after leave"
done
! ip -n "${T[t3a]}" link show vni100 >/dev/null 2>&1 || fail "tenant t3a still has its vni100 veth after leave"
ok "bridge, TAP and tenant veth removed"

step "the mesh forgets h3's endpoints"
h3_endpoint_gone() {
  local e
  e=$(mjson 1 endpoints) && ! jq -e '.endpoints[] | select(.node == "h3")' <<<"$e"
}
wait_until 10 "h1 to drop h3's endpoint" h3_endpoint_gone \
  || fail "h1 still lists h3's endpoint 10.10.0.3"
expect_no_ping "${T[t1a]}" 10.10.0.3

step "left state cannot run"
expect_usage_error "meshd run on a node that left" mcli 3 run
