#!/usr/bin/env bash
# e2e: `meshd revoke` where the root key is: every member drops the node, its tenants
# are cut off, the revoked agent stops, and it cannot come back (not even by restart).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin revoke me2e-revoke-

DROP_MAX_S=5

e2e_underlay 3
mesh_up 3
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t2a; attach 2 100 t2a 10.10.0.2/24
tenant_add t3a; attach 3 100 t3a 10.10.0.3/24
expect_ping "${T[t1a]}" 10.10.0.3
expect_ping "${T[t1a]}" 10.10.0.2

step "only the node holding the root key can revoke"
expect_usage_error "meshd revoke on h2 (no root key)" mcli 2 revoke h3
expect_usage_error "meshd revoke of an unknown node" mcli 1 revoke no-such-node

step "meshd revoke h3 on h1"
t0=$(now_ms)
run_capture mcli 1 revoke h3
[ "$RC" = 0 ] || fail "meshd revoke h3: exit $RC: $ERR"
h3_gone_from() {
  local s
  s=$(peer_state "$1" h3)
  [ -z "$s" ]
}
for i in 1 2; do
  wait_until "$DROP_MAX_S" "h$i to drop h3" h3_gone_from "$i" \
    || fail "h$i still lists h3 as '$(peer_state "$i" h3)' ${DROP_MAX_S}s after revoke"
  ok "h$i dropped h3"
done
log "h3 dropped by h1 and h2 after $(($(now_ms) - t0)) ms"

step "h3's tenants are cut off, the others still talk"
expect_no_ping "${T[t1a]}" 10.10.0.3
expect_ping "${T[t1a]}" 10.10.0.2

step "the revoked agent stops and cannot come back"
agent_wait_exit 3 15 || fail "h3's agent still running 15 s after its revocation"
ok "h3's agent stopped (exit $AGENT_RC)"
agent_bg 3 run
sleep 3
expect_no_ping "${T[t1a]}" 10.10.0.3
for i in 1 2; do
  h3_gone_from "$i" || fail "h$i lists h3 as '$(peer_state "$i" h3)' after h3 restarted"
done
ok "a restarted h3 is still refused by h1 and h2"

step "h1 remembers the revocation across its own restart"
agent_stop 1
agent_run 1
wait_until 10 "h1 to see h2 alive" peer_is 1 h2 alive || fail "h1 did not rejoin h2"
h3_gone_from 1 || fail "h1 lists h3 as '$(peer_state 1 h3)' after restarting"
ok "revocation survived h1's restart"
