#!/usr/bin/env bash
# e2e: the data plane's workers under bulk TCP, with real TAPs and UDP.
#  - a file sent over TCP across the overlay arrives byte for byte (nc, sha256), both ways;
#  - with offloads on (the default) the TAP hands over TSO super-frames that are segmented,
#    sent with UDP GSO, received with UDP GRO and coalesced back (counters say so); with
#    MESHD_DP_OFFLOAD=0 none of that happens and the same transfer still arrives intact;
#  - a tenant whose MTU is above what the underlay carries gets ICMP "fragmentation
#    needed" with the right MTU for a DF ping, and its TCP still works (super-frames are
#    cut to the path; plain frames learn the path MTU from the ICMP).
# CTest runs every e2e test twice: as is, and with MESHD_DP_OFFLOAD=0 MESHD_DP_WORKERS=1.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin dataplane me2e-dp-
for b in iperf3 nc sha256sum; do
  command -v "$b" >/dev/null || { echo "dataplane: SKIP: $b not installed (scripts/deps.sh)"; exit 77; }
done

offload=1
case "${MESHD_DP_OFFLOAD:-1}" in 0 | off) offload=0 ;; esac
log "offloads: $offload, workers: ${MESHD_DP_WORKERS:-default}"

e2e_underlay 2

step "bad data-plane settings are refused at start"
mraw 1 init --state "$E2E_WORK/bad" --name bad --listen "$(uip 1):51999" >/dev/null || fail "init for the bad-settings check"
for kv in MESHD_DP_WORKERS=99 MESHD_DP_WORKERS=x MESHD_DP_OFFLOAD=maybe MESHD_CIPHERS=rot13; do
  rc=0
  err=$(env "$kv" timeout -k 2 20 ip netns exec "${H[1]}" "$MESHD" run --state "$E2E_WORK/bad" 2>&1 >/dev/null) || rc=$?
  [ "$rc" = 2 ] || fail "$kv: exit $rc, want 2 ($err)"
  [ "$(wc -l <<<"$err")" = 1 ] && grep -q "${kv%%=*}" <<<"$err" || fail "$kv: want one line naming it, got: $err"
  ok "$kv refused: $err"
done

mesh_up 2
tenant_add t1
tenant_add t2
attach 1 100 t1 10.10.0.1/24
attach 2 100 t2 10.10.0.2/24
expect_ping "${T[t1]}" 10.10.0.2

counter() { mjson "$1" status | jq -r ".counters.$2 // 0"; }

step "the session's cipher"
cipher=$(mjson 1 peers | jq -r '.peers[0].cipher')
case "${MESHD_CIPHERS:-auto}" in
  chacha20-poly1305) [ "$cipher" = chacha20-poly1305 ] || fail "MESHD_CIPHERS=chacha20-poly1305 but the session uses $cipher" ;;
  aes-256-gcm) [ "$cipher" = aes-256-gcm ] || fail "MESHD_CIPHERS=aes-256-gcm but the session uses $cipher" ;;
  *) [ "$cipher" = aes-256-gcm ] || [ "$cipher" = chacha20-poly1305 ] || fail "no cipher reported: $cipher" ;;
esac
[ "$(mjson 2 peers | jq -r '.peers[0].cipher')" = "$cipher" ] || fail "h1 and h2 disagree on the cipher"
ok "both ends use $cipher"


# transfer FROM_NS TO_NS TO_IP: 24 MiB of random bytes over one TCP connection (nc),
# compared by sha256; then iperf3 for the rate (printed, not judged).
transfer() {
  local from=$1 to=$2 ip=$3 src="$E2E_WORK/in.bin" dst="$E2E_WORK/out.bin" rpid
  [ -f "$src" ] || head -c $((24 << 20)) /dev/urandom >"$src"
  rm -f "$dst"
  timeout -k 2 60 ip netns exec "$to" nc -l "$ip" 5300 >"$dst" 2>"$E2E_WORK/nc-l.log" &
  rpid=$!
  wait_until 10 "nc listening in $to" in_ns "$to" bash -c "ss -ltn | grep -q ':5300 '" \
    || fail "nc -l did not start: $(cat "$E2E_WORK/nc-l.log")"
  in_ns "$from" nc -N "$ip" 5300 <"$src" || fail "nc $from -> $ip failed"
  wait "$rpid" || fail "nc -l in $to failed: $(cat "$E2E_WORK/nc-l.log")"
  [ "$(sha256sum <"$src")" = "$(sha256sum <"$dst")" ] \
    || fail "$from -> $ip: the received file differs ($(stat -c %s "$dst") bytes; $(cmp "$src" "$dst" 2>&1 | head -n 1))"
  timeout -k 2 30 ip netns exec "$to" iperf3 -s -1 -B "$ip" >/dev/null 2>&1 &
  rpid=$!
  wait_until 10 "iperf3 server in $to" in_ns "$to" bash -c "ss -ltn | grep -q ':5201 '" || fail "iperf3 -s did not start"
  in_ns "$from" iperf3 -c "$ip" -t 2 -J >"$E2E_WORK/iperf-c.json" 2>&1 || fail "iperf3 $from -> $ip failed"
  wait "$rpid" || true
  ok "$from -> $ip: 24 MiB over TCP arrived intact; iperf3 $(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | floor / 100' "$E2E_WORK/iperf-c.json") Gbit/s"
}

step "bulk TCP both ways"
transfer "${T[t1]}" "${T[t2]}" 10.10.0.2
transfer "${T[t2]}" "${T[t1]}" 10.10.0.1

step "flows spread over the workers (lanes)"
# Each datagram carries its sender's worker as the lane; h2's kernel hands it to the
# worker of that index. Without this one peer's datagrams all reach one worker (the
# outer 4-tuple never changes), and each TAP queue follows its flow's writer, so every
# flow ends up on that one worker at both ends.
workers=$(mjson 2 status | jq '.workers | length')
if [ "$workers" -ge 2 ]; then
  mapfile -t before < <(mjson 2 status | jq '.workers[].udp_rx_datagrams')
  timeout -k 2 30 ip netns exec "${T[t2]}" iperf3 -s -1 -B 10.10.0.2 >/dev/null 2>&1 &
  wait_until 10 "iperf3 server in t2" in_ns "${T[t2]}" bash -c "ss -ltn | grep -q ':5201 '" || fail "iperf3 -s did not start"
  # 16 flows: all of them hashed onto one of h1's TAP queues would be a 1 in 2^15 chance.
  in_ns "${T[t1]}" iperf3 -c 10.10.0.2 -t 2 -P 16 >/dev/null 2>&1 || fail "iperf3 -P 16 t1 -> t2 failed"
  mapfile -t after < <(mjson 2 status | jq '.workers[].udp_rx_datagrams')
  spread=""
  for ((w = 0; w < workers; w++)); do
    d=$((after[w] - before[w]))
    spread+=" w$w=$d"
    [ "$d" -gt 100 ] || fail "h2's worker $w received $d datagrams of 16 flows from one peer:$spread"
  done
  ok "16 flows from one peer reached all $workers of h2's workers:$spread"
else
  log "one worker: nothing to spread"
fi

step "offload counters"
super=$(counter 1 tap_rx_super_frames)
gso=$(counter 1 udp_tx_gso_sends)
gro=$(counter 2 udp_rx_gro_batches)
coal=$(counter 2 tap_tx_super_frames)
log "h1: tap_rx_super_frames=$super udp_tx_gso_sends=$gso; h2: udp_rx_gro_batches=$gro tap_tx_super_frames=$coal"
if [ "$offload" = 1 ]; then
  [ "$super" -gt 0 ] || fail "offloads on, but h1's TAP handed over no super-frames"
  [ "$gso" -gt 0 ] || fail "offloads on, but h1 sent nothing with UDP GSO"
  [ "$gro" -gt 0 ] || fail "offloads on, but h2 received no UDP GRO batches"
  [ "$coal" -gt 0 ] || fail "offloads on, but h2 wrote no coalesced super-frames to its TAP"
  ok "TSO super-frames segmented, sent with GSO, received with GRO and coalesced"
else
  [ "$super" = 0 ] && [ "$gso" = 0 ] && [ "$gro" = 0 ] && [ "$coal" = 0 ] \
    || fail "offloads off, yet offload counters moved"
  ok "offloads off: frame by frame"
fi
[ "$(counter 1 dp_slow_drop_full)" = 0 ] || fail "h1 dropped slow-path work"
[ "$(counter 2 tunnel_drop_decrypt)" = 0 ] || fail "h2 failed to decrypt datagrams"

step "a tenant MTU above the path: ICMP fragmentation needed"
# Every link of the tenants' paths goes to 1500; the underlay carries 1422-byte IPv4 packets.
for i in 1 2; do
  veth=$(ip -n "${H[i]}" -j link show master vni100 | jq -r '.[] | select(.ifname != "vni100-tap") | .ifname' | head -n 1)
  [ -n "$veth" ] || fail "no veth on vni100 in h$i"
  for dev in vni100 vni100-tap "$veth"; do ip -n "${H[i]}" link set dev "$dev" mtu 1500; done
done
ip -n "${T[t1]}" link set dev vni100 mtu 1500
ip -n "${T[t2]}" link set dev vni100 mtu 1500
before=$(counter 1 dp_icmp_too_big)
out=$(in_ns "${T[t1]}" ping -c 2 -i 0.3 -W 1 -M do -s 1472 10.10.0.2 2>&1) || true
log "ping -M do -s 1472: $(tr '\n' ' ' <<<"$out" | cut -c1-300)"
after=$(counter 1 dp_icmp_too_big)
[ "$after" -gt "$before" ] || fail "no ICMP too-big sent for a 1514-byte DF frame"
grep -Eq 'mtu ?= ?1422' <<<"$out" || fail "the tenant did not learn MTU 1422 from the ICMP: $out"
ok "DF ping of 1500 bytes: ICMP fragmentation needed, mtu 1422"
in_ns "${T[t1]}" ping -c 2 -i 0.3 -W 1 -M do -s 1394 10.10.0.2 >/dev/null || fail "a 1422-byte DF ping did not pass"
ok "a 1422-byte DF ping passes"
ip -n "${T[t1]}" route flush cache 2>/dev/null || true
transfer "${T[t1]}" "${T[t2]}" 10.10.0.2
log "PASS"
