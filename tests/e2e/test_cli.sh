#!/usr/bin/env bash
# e2e: the command-line contract. Bad input -> exit 2 with exactly one stderr line
# starting "meshd: "; runtime failure (no agent) -> exit 1; --json parses; init refuses
# an existing state; run refuses an empty one; attach/detach with --mac and --ifname.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin cli me2e-cli-

e2e_underlay 1
agent_init 1
agent_run 1
tenant_add t
A=(--netns "${E2E_PREFIX}t")

step "unknown subcommand and flags"
expect_usage_error "unknown subcommand" mraw 1 frobnicate --state "${S[1]}"
expect_usage_error "unknown flag on status" mcli 1 status --bogus
expect_usage_error "unknown flag on attach" mcli 1 attach --vni 100 --ip 10.10.0.9/24 --frob 1
expect_usage_error "token create without --state" mraw 1 token create
expect_usage_error "join without a token" mcli 1 join

step "bad --vni"
for v in 0 16777216 abc -1 100x; do
  expect_usage_error "attach --vni $v" mcli 1 attach --vni "$v" "${A[@]}" --ip 10.10.0.9/24
done
expect_usage_error "token create --vni 0" mcli 1 token create --vni 0
expect_usage_error "token create --vni 16777216" mcli 1 token create --vni 16777216

step "bad --ip"
for ip in 10.10.0.256/24 10.10.0.1/33 not-an-ip 10.10.0.1/ /24; do
  expect_usage_error "attach --ip $ip" mcli 1 attach --vni 100 "${A[@]}" --ip "$ip"
done

step "bad --mac"
for m in zz:zz:zz:zz:zz:zz 02:00:00:00:00 02:00:00:00:00:00:01 ff:ff:ff:ff:ff:ff 01:00:5e:00:00:01 00:00:00:00:00:00; do
  expect_usage_error "attach --mac $m" mcli 1 attach --vni 100 "${A[@]}" --ip 10.10.0.9/24 --mac "$m"
done

step "bad --listen, --ttl, --uses"
n=0
for l in 10.77.0.1 10.77.0.1:99999 300.1.1.1:51900 garbage :51900 10.77.0.1:-1; do
  n=$((n + 1))
  expect_usage_error "init --listen $l" mraw 1 init --state "$E2E_WORK/bad$n" --listen "$l"
done
expect_usage_error "token create --ttl abc" mcli 1 token create --ttl abc
expect_usage_error "token create --uses 0" mcli 1 token create --uses 0
expect_usage_error "token create --uses abc" mcli 1 token create --uses abc

step "state directory rules"
expect_usage_error "init twice on the same dir" mcli 1 init --name again
mkdir -p "$E2E_WORK/empty"
expect_usage_error "run on an empty dir" mraw 1 run --state "$E2E_WORK/empty"
expect_usage_error "run on a missing dir" mraw 1 run --state "$E2E_WORK/missing"
run_capture mraw 1 run --state "${S[1]}"
case "$RC" in 0 | 124) fail "second agent on the same state dir: exit $RC, want a refusal" ;; esac
ok "second agent on the same state dir refused (exit $RC: $ERR)"
agent_ready 1 || fail "the first agent stopped answering after a second run attempt"
ok "the first agent still answers"

step "no agent running -> exit 1"
idle="$E2E_WORK/idle"
run_capture mraw 1 init --state "$idle" --name idle --listen "$(uip 1):51901"
[ "$RC" = 0 ] || fail "init of a second state dir: exit $RC: $ERR"
for c in status peers endpoints routes; do
  run_capture mraw 1 "$c" --state "$idle"
  [ "$RC" = 1 ] || fail "$c with no agent: exit $RC, want 1 (stderr: $ERR)"
  if [ "$(grep -c "" <<<"$ERR")" != 1 ] || [[ "$ERR" != "meshd: "* ]]; then fail "$c with no agent: stderr not one 'meshd: ' line: $ERR"; fi
  ok "$c with no agent -> exit 1: $ERR"
done

step "--json outputs parse"
for c in status peers endpoints routes; do
  run_capture mcli 1 "$c" --json
  [ "$RC" = 0 ] || fail "$c --json: exit $RC: $ERR"
  jq -e . >/dev/null <<<"$OUT" || fail "$c --json is not JSON: ${OUT:0:300}"
  ok "$c --json parses"
  run_capture mcli 1 "$c"
  [ "$RC" = 0 ] || fail "$c (text): exit $RC: $ERR"
done
jq_check "peers --json is {peers: []} on a lone node" "$(mjson 1 peers)" '.peers == []'
jq_check "endpoints --json is {endpoints: []} before any attach" "$(mjson 1 endpoints)" '.endpoints == []'

step "attach and detach with --mac and --ifname"
run_capture mcli 1 attach --vni 100 "${A[@]}" --ip 10.10.0.9/24 --mac 02:aa:bb:cc:dd:01 --ifname eth9
[ "$RC" = 0 ] || fail "attach with --mac/--ifname: exit $RC: $ERR"
[ "$(link_mac "${E2E_PREFIX}t" eth9)" = 02:aa:bb:cc:dd:01 ] || fail "eth9 in the tenant has MAC $(link_mac "${E2E_PREFIX}t" eth9)"
ip -n "${E2E_PREFIX}t" -4 -o addr show dev eth9 | grep -q '10.10.0.9/24' || fail "eth9 lacks 10.10.0.9/24"
mtu=$(ip -n "${E2E_PREFIX}t" -j link show dev eth9 | jq '.[0].mtu')
[ "$mtu" = 1400 ] || fail "tenant MTU is $mtu, want 1400"
ok "tenant interface eth9: MAC 02:aa:bb:cc:dd:01, 10.10.0.9/24, MTU 1400"
ip -n "${H[1]}" link show vni100 >/dev/null 2>&1 || fail "no bridge vni100 in h1"
ip -n "${H[1]}" link show vni100-tap >/dev/null 2>&1 || fail "no TAP vni100-tap in h1"
ok "bridge vni100 and TAP vni100-tap exist in h1"
has_endpoint 1 100 10.10.0.9 h1 true || fail "endpoint 10.10.0.9 not listed: $(mjson 1 endpoints | jq -c .)"
jq_check "endpoint MAC is the one given" "$(mjson 1 endpoints)" '.endpoints[0].mac == "02:aa:bb:cc:dd:01"'
jq_check "status: vnis [100], endpoints_local 1" "$(mjson 1 status)" '.vnis == [100] and .endpoints_local == 1'
run_capture mcli 1 detach --vni 100 "${A[@]}" --ifname eth9
[ "$RC" = 0 ] || fail "detach: exit $RC: $ERR"
! ip -n "${E2E_PREFIX}t" link show eth9 >/dev/null 2>&1 || fail "eth9 still in the tenant after detach"
has_endpoint 1 100 10.10.0.9 h1 true && fail "endpoint still listed after detach"
ok "detach removed the interface and the endpoint"
