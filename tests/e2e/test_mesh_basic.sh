#!/usr/bin/env bash
# e2e: three hosts form a mesh; two tenants (VNI 100, VNI 200) with the same subnet
# 10.10.0.0/24 talk across hosts inside their VNI and never across VNIs.
# Also: endpoints/status JSON, control socket permissions.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin mesh_basic me2e-basic-

step "underlay and membership"
e2e_underlay 3
mesh_up 3

step "tenants: VNI 100 on h1,h2; VNI 200 on h1,h2,h3; both use 10.10.0.0/24"
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t1b; attach 1 200 t1b 10.10.0.1/24
tenant_add t2a; attach 2 100 t2a 10.10.0.2/24
tenant_add t2b; attach 2 200 t2b 10.10.0.2/24
tenant_add t3b; attach 3 200 t3b 10.10.0.3/24

step "ping inside each VNI across hosts"
expect_ping "${T[t1a]}" 10.10.0.2
expect_ping "${T[t2a]}" 10.10.0.1
expect_ping "${T[t1b]}" 10.10.0.2
expect_ping "${T[t1b]}" 10.10.0.3
expect_ping "${T[t3b]}" 10.10.0.2

step "isolation between VNIs"
expect_no_ping "${T[t1a]}" 10.10.0.3 # exists only in VNI 200
expect_no_ping "${T[t2a]}" 10.10.0.3
# 10.10.0.2 exists in both VNIs: the answer must come from the tenant in the same VNI.
mac_t2a=$(link_mac "${T[t2a]}" vni100)
mac_t2b=$(link_mac "${T[t2b]}" vni200)
[ "$mac_t2a" != "$mac_t2b" ] || fail "tenants t2a and t2b got the same MAC $mac_t2a"
got=$(neigh_mac "${T[t1a]}" 10.10.0.2)
[ "$got" = "$mac_t2a" ] || fail "VNI 100: t1a resolved 10.10.0.2 to '$got', want t2a's $mac_t2a (t2b has $mac_t2b)"
ok "VNI 100: 10.10.0.2 resolves to t2a ($mac_t2a)"
got=$(neigh_mac "${T[t1b]}" 10.10.0.2)
[ "$got" = "$mac_t2b" ] || fail "VNI 200: t1b resolved 10.10.0.2 to '$got', want t2b's $mac_t2b (t2a has $mac_t2a)"
ok "VNI 200: 10.10.0.2 resolves to t2b ($mac_t2b)"

step "endpoints --json on h1"
has_endpoint 1 100 10.10.0.1 h1 true || fail "h1 does not list its local endpoint 10.10.0.1 in VNI 100"
ok "h1 lists local 10.10.0.1 (VNI 100)"
has_endpoint 1 200 10.10.0.1 h1 true || fail "h1 does not list its local endpoint 10.10.0.1 in VNI 200"
ok "h1 lists local 10.10.0.1 (VNI 200)"
for want in "100 10.10.0.2 h2" "200 10.10.0.2 h2" "200 10.10.0.3 h3"; do
  read -r v ip n <<<"$want"
  wait_until 10 "h1 endpoint $ip vni $v on $n" has_endpoint 1 "$v" "$ip" "$n" false \
    || fail "h1 endpoints --json lacks remote $ip in VNI $v on $n: $(mjson 1 endpoints | jq -c .)"
  ok "h1 lists remote $ip (VNI $v) on node $n"
done
eps=$(mjson 1 endpoints)
jq_check "remote endpoint MAC matches t2a" "$eps" \
  "[.endpoints[] | select(.vni == 100 and .node == \"h2\") | .mac] | index(\"$mac_t2a\") != null"
jq_check "every endpoint has vni, mac, ips, node_id, node, local, seq" "$eps" \
  '.endpoints | length > 0 and all(has("vni") and has("mac") and has("ips") and has("node_id") and has("node") and has("local") and has("seq"))'

step "status --json"
st=$(mjson 1 status)
jq_check "node_id is 64 hex" "$st" '.node_id | test("^[0-9a-f]{64}$")'
jq_check "mesh_id is 16 hex and equals init's output ($MESH_ID)" "$st" ".mesh_id == \"$MESH_ID\" and (.mesh_id | test(\"^[0-9a-f]{16}$\"))"
jq_check "name and listen" "$st" '.name == "h1" and .listen == "10.77.0.1:51900"'
jq_check "locators is a list of ip:port" "$st" '.locators | type == "array" and length > 0 and all(test("^[0-9.]+:[0-9]+$"))'
jq_check "members: 2 alive, 0 failed" "$st" '.members.alive == 2 and .members.failed == 0 and (.members | has("suspect") and has("left"))'
jq_check "vnis == [100,200]" "$st" '.vnis | sort == [100, 200]'
jq_check "endpoints_local == 2" "$st" '.endpoints_local == 2'
jq_check "uptime_s and counters" "$st" '(.uptime_s | type == "number") and (.counters | type == "object" and length > 0)'
jq_check "counters of every subsystem, incl. bounds and Lifeguard" "$st" \
  '.counters | has("tunnel_drop_peers_full") and has("tunnel_drop_outbox_full") and has("tunnel_drop_handshake_timeout") and has("mesh_nacks_missed") and has("mesh_local_health") and has("fwd_dst_local_skipped") and has("control_bad_request") and has("store_write_errors")'
for i in 2 3; do
  mid=$(mjson "$i" status | jq -r .mesh_id)
  [ "$mid" = "$MESH_ID" ] || fail "h$i reports mesh_id $mid, want $MESH_ID"
done
ok "all nodes report mesh id $MESH_ID"

step "peers --json on h1"
pe=$(mjson 1 peers)
jq_check "self excluded, h2 and h3 listed" "$pe" '[.peers[].name] | sort == ["h2", "h3"]'
jq_check "h2: session up, endpoint its underlay address, traffic both ways" "$pe" \
  '.peers[] | select(.name == "h2") | .session == "up" and .endpoint == "10.77.0.2:51900" and .rx_bytes > 0 and .tx_bytes > 0'
jq_check "peer node_ids are 64 hex and locators lists" "$pe" \
  '.peers | all((.node_id | test("^[0-9a-f]{64}$")) and (.locators | type == "array"))'
h3_serves_200() { mjson 1 peers | jq -e '.peers[] | select(.name == "h3") | .vnis == [200]'; }
wait_until 10 "h1 sees h3 serving VNI 200 only" h3_serves_200 \
  || fail "h1's view of h3's VNIs: $(mjson 1 peers | jq -c '.peers[] | select(.name == "h3") | .vnis')"
ok "h3 serves [200] as seen from h1"

step "control socket"
mode=$(stat -c %a "${S[1]}/control.sock")
[ "$mode" = 600 ] || fail "control.sock mode is $mode, want 600"
ok "control.sock mode 0600"

step "no input was rejected at idle"
# Legitimate traffic must not be counted as spoofed or malformed: operators alert on
# drop counters. (The agent's own bridge and TAP send no IPv6/IGMP chatter into the
# overlay.) fwd_drop_no_route counts broadcasts sent before any other node served the
# VNI: nothing wrong with the input.
for i in 1 2 3; do
  jq_check "h$i: no forwarder or tunnel drops" "$(mjson "$i" status)" \
    '[.counters | to_entries[] | select((.key | test("^(fwd|tunnel)_drop_")) and .key != "fwd_drop_no_route") | .value] | add == 0'
done
