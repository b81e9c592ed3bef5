#!/usr/bin/env bash
# e2e: host (sidecar) mode: `attach` without --netns puts the address on the VNI bridge in
# the agent's own namespace. A tenant namespace on h1 and h2's own namespace talk over
# VNI 100. h2 also joins without --listen (default 0.0.0.0:51900).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin host_mode me2e-host-

e2e_underlay 2
agent_init 1
agent_run 1
tok=$(token_create 1 --all-vnis)

step "h2 joins with the default listen address"
agent_bg 2 join "$tok" --name h2
wait_agent_ready 2
wait_mesh 2 20
st=$(mjson 2 status)
jq_check "h2 listens on 0.0.0.0:51900" "$st" '.listen == "0.0.0.0:51900"'
jq_check "h2 advertises its underlay address as a locator" "$st" '.locators | index("10.77.0.2:51900") != null'

step "attach: tenant namespace on h1, host mode on h2"
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
run_capture mcli 2 attach --vni 100 --ip 10.10.0.2/24
[ "$RC" = 0 ] || fail "host-mode attach on h2: exit $RC: $ERR"
ip -n "${H[2]}" -4 -o addr show dev vni100 | grep -q '10.10.0.2/24' \
  || fail "10.10.0.2/24 is not on vni100 in h2: $(ip -n "${H[2]}" -o addr show)"
ok "10.10.0.2/24 is on bridge vni100 in h2's namespace"
has_endpoint 2 100 10.10.0.2 h2 true || fail "h2 does not list its host-mode endpoint: $(mjson 2 endpoints | jq -c .)"
ok "h2 lists its host-mode endpoint"

step "traffic both ways"
expect_ping "${T[t1a]}" 10.10.0.2
expect_ping "${H[2]}" 10.10.0.1

step "detach host mode"
run_capture mcli 2 detach --vni 100
[ "$RC" = 0 ] || fail "host-mode detach: exit $RC: $ERR"
! ip -n "${H[2]}" -4 -o addr show 2>/dev/null | grep -q '10.10.0.2/' || fail "10.10.0.2 still present on h2 after detach"
ok "host-mode detach removed 10.10.0.2"
expect_no_ping "${T[t1a]}" 10.10.0.2
