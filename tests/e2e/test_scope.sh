#!/usr/bin/env bash
# e2e: a token scoped to VNI 100 admits a node that may attach to VNI 100 only.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin scope me2e-scope-

e2e_underlay 2
agent_init 1
agent_run 1
tok=$(token_create 1 --vni 100 --uses 1)
agent_join 2 "$tok"
wait_mesh 2 20

step "h2 (token scoped to VNI 100) may not attach to VNI 200"
tenant_add t2b
expect_usage_error "attach --vni 200 on h2" mcli 2 attach --vni 200 --netns "${T[t2b]}" --ip 10.10.0.2/24
if ! grep -qi vni <<<"$ERR" || ! grep -qiE "allow|scope|permit|not in" <<<"$ERR"; then
  fail "refusal does not say the VNI is not allowed: $ERR"
fi
ok "refusal names the VNI scope"
left=$(ip -n "${T[t2b]}" -o link show | awk -F': ' '$2 != "lo" {print $2}')
[ -z "$left" ] || fail "refused attach left interfaces in the tenant: $left"
! ip -n "${H[2]}" link show vni200 >/dev/null 2>&1 || fail "refused attach created bridge vni200 on h2"
ok "refused attach left no devices behind"
jq_check "h2 has no local endpoints" "$(mjson 2 status)" '.endpoints_local == 0'

step "VNI 100 works"
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t2a; attach 2 100 t2a 10.10.0.2/24
expect_ping "${T[t1a]}" 10.10.0.2
expect_ping "${T[t2a]}" 10.10.0.1
