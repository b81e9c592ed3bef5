#!/usr/bin/env bash
# e2e: bad input is normal input. While tenants ping h1 -> h2, a third host sprays h2's
# agent port with thousands of random UDP datagrams (random sizes 0..1500, a quarter of
# them starting with a valid packet type byte 1..4). The agent must stay up, tenant
# traffic must not suffer (loss <= 5 %), and the drops must be counted.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin garbage me2e-garbage-

NOISE_DATAGRAMS=${NOISE_DATAGRAMS:-6000}
LOSS_MAX_PCT=5

step "mesh of 2 plus a noise host"
e2e_underlay 3 # h3 runs no agent: it is the source of garbage
mesh_up 2
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t2a; attach 2 100 t2a 10.10.0.2/24
expect_ping "${T[t1a]}" 10.10.0.2
drops0=$(drop_total 2)
log "h2 drop counters before: $drops0"

step "ping (200 x 50 ms) while $NOISE_DATAGRAMS garbage datagrams hit $(uip 2):$E2E_PORT"
bg_start "$E2E_WORK/ping.log" ip netns exec "${T[t1a]}" ping -i 0.05 -c 200 -W 1 10.10.0.2
ping_pid=$BG_PID
# perl-base is Essential on Debian; bash's /dev/udp cannot send empty datagrams.
# shellcheck disable=SC2016 # perl code, not shell
noise_out=$(timeout -k 2 60 ip netns exec "${H[3]}" perl -e '
  use strict; use warnings; use IO::Socket::INET;
  my ($host, $port, $n) = @ARGV;
  srand(20261121);
  my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => "udp")
    or die "socket: $!";
  my ($sent, $typed) = (0, 0);
  for my $k (1 .. $n) {
    my $len = int(rand(1501));
    my $d = pack("C*", map { int(rand(256)) } 1 .. $len);
    if ($k % 4 == 0 && $len >= 4) {   # type byte 1..4, zero reserved bytes, random rest
      substr($d, 0, 4) = pack("C4", 1 + int(rand(4)), 0, 0, 0);
      $typed++;
    }
    $sent++ if defined send($s, $d, 0);
    select(undef, undef, undef, 40.0 / $n) if $k % 5 == 0;   # ~8 s: spread over the ping run
  }
  print "sent $sent of $n datagrams, $typed typed\n";
' "$(uip 2)" "$E2E_PORT" "$NOISE_DATAGRAMS") || fail "noise sender failed: $noise_out"
log "noise: $noise_out"

wait_until 30 "ping to finish" pid_gone "$ping_pid" || fail "ping did not finish"
wait "$ping_pid" || true
loss=$(grep -o '[0-9.]*% packet loss' "$E2E_WORK/ping.log" | cut -d% -f1)
[ -n "$loss" ] || fail "no ping summary: $(tail -n 3 "$E2E_WORK/ping.log")"
log "ping: $(grep -E 'packet loss|rtt' "$E2E_WORK/ping.log" | tr '\n' ' ')"

step "checks"
agent_running 2 || fail "h2's agent died under garbage"
agent_running 1 || fail "h1's agent died"
ok "both agents still running"
awk -v l="$loss" -v m="$LOSS_MAX_PCT" 'BEGIN { exit !(l <= m) }' \
  || fail "tenant ping loss ${loss}% > ${LOSS_MAX_PCT}% under garbage"
ok "tenant ping loss ${loss}% <= ${LOSS_MAX_PCT}%"
drops1=$(drop_total 2)
log "h2 drop counters after: $drops1"
[ "$drops1" -gt "$drops0" ] || fail "h2's drop_* counters did not increase ($drops0 -> $drops1)"
ok "h2 counted $((drops1 - drops0)) dropped datagrams"
mjson 2 status | jq -c '.counters | with_entries(select((.key | test("(^|_)drop_")) and .value > 0))'
peer_is 1 h2 alive || fail "h1 no longer sees h2 alive: $(peer_state 1 h2)"
ok "h2 still alive in h1's view"
expect_ping "${T[t1a]}" 10.10.0.2
