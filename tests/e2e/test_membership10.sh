#!/usr/bin/env bash
# e2e (issue 3, membership that scales): 10 real agents in network namespaces. kill -9
# three of them at the same moment (h4, h7, h9); every one of the 7 survivors must see
# each of the 3 as failed within FAIL_ALL_MAX_S (default 8 s, E2E_M10_FAIL_MAX_S
# overrides). `meshd run` (no token) restarts the 3; all 10 must see the 9 others alive
# again. No survivor may ever see another survivor as failed (a false death): that is
# sampled in every poll of the whole test. Each poll is one `peers --json` and one jq
# call per observer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin membership10 me2e-m10-

N=10
VICTIMS=(4 7 9)                  # never h1: it holds the root key and issued the tokens
SURVIVORS=(1 2 3 5 6 8 10)
FORM_MAX_S=60                    # phase 1: all 10 see 9 alive
FAIL_ALL_MAX_S=${E2E_M10_FAIL_MAX_S:-8}  # phase 2: the 3 crashes known by all 7 survivors
FAIL_GRACE_S=4                   # keep polling this much longer to report the real time
REAGREE_MAX_S=20                 # phase 3: all 10 see 9 alive again after the restarts
if ! [[ "$FAIL_ALL_MAX_S" =~ ^[1-9][0-9]*$ ]]; then
  fail "E2E_M10_FAIL_MAX_S must be a positive whole number of seconds, got '$FAIL_ALL_MAX_S'"
fi

# ------------------------------------------------------------------ polling

declare -A ST=()      # "OBSERVER,NAME" -> state, as of the last poll of OBSERVER
declare -A SUSPECTED=()  # "hI>hJ" -> 1: survivor hI saw survivor hJ as suspect (not a failure)
declare -A RESTARTED_SAW_FAILED=()  # "hV>hS" -> 1: restarted hV showed survivor hS failed
PHASE=
PHASE_T0=0
POLLS=0
POLL_MS=0

# peer_states I: "NAME=STATE NAME=STATE ..." for every peer host I knows (one jq call).
peer_states() { mjson "$1" peers | jq -r '[.peers[] | "\(.name)=\(.state)"] | join(" ")'; }

is_survivor() {
  local j
  for j in "${SURVIVORS[@]}"; do [ "$j" = "$1" ] && return 0; done
  return 1
}

# poll_host I: refreshes ST[I,*] from host I's `peers --json` (empty if the CLI call failed);
# POLL_MS = when the answer came back. Then the false-death check on that view.
poll_host() {
  local i=$1 v kv j
  v=$(peer_states "$i") || v=
  POLL_MS=$(now_ms)
  POLLS=$((POLLS + 1))
  for ((j = 1; j <= N; j++)); do ST[$i,h$j]=; done
  for kv in $v; do ST[$i,${kv%%=*}]=${kv#*=}; done
  [ -n "$v" ] || agent_running "$i" || fail "$PHASE: the agent on h$i is gone"
  check_false_death "$i" "$v"
}

# check_false_death I VIEW: in phase 1 every agent is alive, so nobody may be failed;
# afterwards a survivor must never see another survivor as failed. (A restarted agent
# that shows a survivor failed is only noted: it is not what this test bounds.)
check_false_death() {
  local i=$1 view=$2 j s
  if [ "$PHASE" != formation ] && ! is_survivor "$i"; then
    for j in "${SURVIVORS[@]}"; do
      if [ "${ST[$i,h$j]:-}" = failed ]; then RESTARTED_SAW_FAILED["h$i>h$j"]=1; fi
    done
    return 0
  fi
  for ((j = 1; j <= N; j++)); do
    [ "$j" = "$i" ] && continue
    [ "$PHASE" = formation ] || is_survivor "$j" || continue
    s=${ST[$i,h$j]:-}
    if [ "$s" = failed ]; then
      fail "false death: h$i sees live h$j as failed ($PHASE, $(($(now_ms) - PHASE_T0)) ms into it); h$i's view: $view"
    fi
    if [ "$s" = suspect ]; then SUSPECTED["h$i>h$j"]=1; fi
  done
  return 0
}

# all_see_alive HOSTS...: every listed host saw the other N-1 as alive in its last poll.
all_see_alive() {
  local i j
  for i in "$@"; do
    for ((j = 1; j <= N; j++)); do
      [ "$j" = "$i" ] || [ "${ST[$i,h$j]:-}" = alive ] || return 1
    done
  done
}

# not_alive_summary HOSTS...: "h3: h4=suspect h7=" for every host that does not see all alive.
not_alive_summary() {
  local i j out='' row
  for i in "$@"; do
    row=
    for ((j = 1; j <= N; j++)); do
      [ "$j" = "$i" ] || [ "${ST[$i,h$j]:-}" = alive ] || row+=" h$j=${ST[$i,h$j]:-?}"
    done
    [ -z "$row" ] || out+="h$i:$row; "
  done
  echo "${out:-none}"
}

# wait_all_alive SECONDS DESC: polls all N hosts until each sees the N-1 others alive;
# sets WAITED_MS (from PHASE_T0, to the last poll); fails on timeout.
wait_all_alive() {
  local secs=$1 desc=$2 i deadline=$((PHASE_T0 + $1 * 1000))
  local all=()
  for ((i = 1; i <= N; i++)); do all+=("$i"); done
  while :; do
    for i in "${all[@]}"; do poll_host "$i"; done
    if all_see_alive "${all[@]}"; then
      WAITED_MS=$((POLL_MS - PHASE_T0))
      return 0
    fi
    [ "$(now_ms)" -lt "$deadline" ] \
      || fail "$desc: not every host sees $((N - 1)) alive within ${secs}s; not alive: $(not_alive_summary "${all[@]}")"
    sleep 0.1
  done
}

# ------------------------------------------------------------------ phase 1

step "phase 1: underlay of $N hosts, h1 creates the mesh, h2..h$N join"
e2e_underlay "$N"
PHASE=formation
PHASE_T0=$(now_ms)
mesh_start "$N"
joined_ms=$(($(now_ms) - PHASE_T0))
wait_all_alive "$FORM_MAX_S" "formation"
form_ms=$WAITED_MS
ok "all $N agents see the $((N - 1)) others alive after $form_ms ms (all joins done after $joined_ms ms)"

# ------------------------------------------------------------------ phase 2

step "phase 2: kill -9 h4, h7, h9 at the same moment"
pids=()
for v in "${VICTIMS[@]}"; do
  p=$(agent_pid "$v")
  [ -n "$p" ] || fail "no meshd process found for h$v"
  pids+=("$p")
done
PHASE=crash
PHASE_T0=$(now_ms)
kill -KILL "${pids[@]}"
log "killed meshd on h4, h7, h9 (pids ${pids[*]}) at $(date +%T.%3N)"
for v in "${VICTIMS[@]}"; do
  agent_wait_exit "$v" 5 || fail "h$v's agent did not die after SIGKILL"
done

declare -A FAILED_AT=()  # "S,V" -> ms after the kill when survivor hS first showed hV failed
declare -A NOT_YET=()    # "S,V" -> ms after the kill of hS's last poll that did not show hV failed
first_suspect_ms=
rounds=0
deadline=$((PHASE_T0 + (FAIL_ALL_MAX_S + FAIL_GRACE_S) * 1000))
while :; do
  pending=0
  for s in "${SURVIVORS[@]}"; do
    poll_host "$s"
    for v in "${VICTIMS[@]}"; do
      st=${ST[$s,h$v]:-}
      if [ "$st" = failed ]; then
        [ -n "${FAILED_AT[$s,$v]:-}" ] || FAILED_AT[$s,$v]=$((POLL_MS - PHASE_T0))
      else
        # Not failed (any more): the pair counts from the next time it is seen failed.
        if [ -n "${FAILED_AT[$s,$v]:-}" ]; then
          log "h$s: h$v went from failed back to '$st' $((POLL_MS - PHASE_T0)) ms after the kill"
          unset "FAILED_AT[$s,$v]"
        fi
        NOT_YET[$s,$v]=$((POLL_MS - PHASE_T0))
        pending=$((pending + 1))
        if [ -z "$first_suspect_ms" ] && [ "$st" = suspect ]; then
          first_suspect_ms=$((POLL_MS - PHASE_T0))
        fi
      fi
    done
  done
  rounds=$((rounds + 1))
  [ "$pending" -gt 0 ] || break
  if [ "$(now_ms)" -ge "$deadline" ]; then
    miss=
    for s in "${SURVIVORS[@]}"; do
      for v in "${VICTIMS[@]}"; do
        [ -n "${FAILED_AT[$s,$v]:-}" ] || miss+=" h$s:h$v=${ST[$s,h$v]:-?}"
      done
    done
    fail "crashes not known by all ${#SURVIVORS[@]} survivors within $((FAIL_ALL_MAX_S + FAIL_GRACE_S)) s; still not failed (observer:victim=state):$miss"
  fi
  sleep 0.1
done
crash_ms=0 crash_lo_ms=0
for v in "${VICTIMS[@]}"; do
  vmax=0 vmin=
  for s in "${SURVIVORS[@]}"; do
    t=${FAILED_AT[$s,$v]}
    if [ "$t" -gt "$vmax" ]; then vmax=$t; fi
    lo=${NOT_YET[$s,$v]:-0}
    if [ "$lo" -gt "$crash_lo_ms" ]; then crash_lo_ms=$lo; fi
    if [ -z "$vmin" ] || [ "$t" -lt "$vmin" ]; then vmin=$t; fi
  done
  log "h$v: first survivor saw it failed after $vmin ms, the last after $vmax ms"
  if [ "$vmax" -gt "$crash_ms" ]; then crash_ms=$vmax; fi
done
log "3 crashes known by all ${#SURVIVORS[@]} survivors after ${crash_ms} ms (so between ${crash_lo_ms} and ${crash_ms} ms after the kill: $rounds poll rounds of the 7, ~$(((POLL_MS - PHASE_T0) / rounds)) ms each; first suspect seen after ${first_suspect_ms:-?} ms)"
[ "$crash_ms" -le $((FAIL_ALL_MAX_S * 1000)) ] \
  || fail "3 crashes known by all survivors after ${crash_ms} ms, limit ${FAIL_ALL_MAX_S} s"
ok "3 crashes known by all ${#SURVIVORS[@]} survivors in ${crash_ms} ms (<= ${FAIL_ALL_MAX_S} s), no false death"

# ------------------------------------------------------------------ phase 3

step "phase 3: restart h4, h7, h9 with meshd run (no token)"
PHASE=restart
PHASE_T0=$(now_ms)
for v in "${VICTIMS[@]}"; do agent_run "$v"; done
started_ms=$(($(now_ms) - PHASE_T0))
wait_all_alive "$REAGREE_MAX_S" "after the restarts"
reagree_ms=$WAITED_MS
ok "all $N agents see the $((N - 1)) others alive again $reagree_ms ms after the first restart (3 agents up after $started_ms ms)"

step "status --json"
for i in 1 4 10; do
  jq_check "h$i status: 9 alive members, none suspect or failed" "$(mjson "$i" status)" \
    '.members.alive == 9 and .members.suspect == 0 and .members.failed == 0'
done

if [ "${#SUSPECTED[@]}" -gt 0 ]; then
  log "note: survivors briefly suspected other survivors (refuted, never failed): ${!SUSPECTED[*]}"
fi
if [ "${#RESTARTED_SAW_FAILED[@]}" -gt 0 ]; then
  log "note: restarted agents briefly showed survivors as failed: ${!RESTARTED_SAW_FAILED[*]}"
fi
log "summary: formation ${form_ms} ms; 3 crashes known by all 7 survivors ${crash_ms} ms (limit ${FAIL_ALL_MAX_S} s); all agree again ${reagree_ms} ms after restart; no false death in $POLLS polls"
