# shellcheck shell=bash disable=SC2034  # globals (OUT, ERR, RC, AGENT_RC, ...) are read by the scripts that source this
# Shared plumbing for the end-to-end tests (tests/e2e/test_*.sh) and scripts/demo.sh.
#
#   source lib.sh
#   e2e_begin NAME PREFIX     # checks root + /dev/net/tun (exit 77 otherwise), cleanup trap
#   e2e_underlay 3            # PREFIXsw (bridge br0) + PREFIXh1..h3, underlay 10.77.0.i/24
#   agent_init 1; agent_run 1; tok=$(token_create 1); agent_join 2 "$tok"
#   wait_mesh 3 20; tenant_add t1a; attach 1 100 t1a 10.10.0.1/24; expect_ping t1a 10.10.0.2
#
# Everything lives in namespaces whose names start with PREFIX; the cleanup trap stops
# every agent it started (by pid), deletes those namespaces and the work directory, and on
# failure prints the tail of every agent log. Every wait is bounded.

MESHD=${MESHD_BIN:-}
E2E_NAME=e2e
E2E_PREFIX=                    # namespace names start with this
E2E_BASE=                      # PREFIX without the run's pid (tests) or equal to it (demo)
E2E_WORK=
E2E_PORT=51900
E2E_UNDERLAY=10.77.0           # .i = host i; only inside the namespaces made here
E2E_AGENT_MAX_S=${E2E_AGENT_MAX_S:-900}  # hard lifetime of every background process
E2E_CLI_MAX_S=20               # hard lifetime of every CLI call
E2E_SKIP=77
E2E_NS=()                      # namespaces we created (deleted on exit)
E2E_BG=()                      # pids of `timeout` wrappers we started (own process groups)
E2E_SW=
declare -a H=() S=() L=() APID=()   # per host i: namespace, state dir, agent log, wrapper pid
declare -A T=()                     # tenant short name -> namespace

log() { printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%H:%M:%S)" "$*"; }
step() { printf '\n===== %s\n' "$*"; }
ok() { log "ok: $*"; }
fail() { log "FAIL: $*" >&2; exit 1; }
now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((10#$t / 1000)); }

# ------------------------------------------------------------------ setup / cleanup

# e2e_begin NAME PREFIX: skip (77) unless root with /dev/net/tun and a meshd binary.
# Namespaces are named PREFIX<pid>-..., so two runs of the same test cannot collide.
e2e_begin() {
  E2E_NAME=$1 E2E_BASE=$2 E2E_PREFIX="$2$$-"
  [ "$(id -u)" = 0 ] || { echo "$E2E_NAME: SKIP: needs root"; exit "$E2E_SKIP"; }
  [ -c /dev/net/tun ] || { echo "$E2E_NAME: SKIP: /dev/net/tun missing"; exit "$E2E_SKIP"; }
  local b
  for b in ip jq ping timeout pgrep; do
    command -v "$b" >/dev/null || { echo "$E2E_NAME: SKIP: $b not installed (scripts/deps.sh)"; exit "$E2E_SKIP"; }
  done
  e2e_start
}

# e2e_start: work dir, traps, removal of leftovers of an earlier run with the same prefix.
e2e_start() {
  if [ -z "$MESHD" ] || [ ! -x "$MESHD" ]; then
    fail "MESHD_BIN is not set to an executable meshd (got '$MESHD')"
  fi
  MESHD=$(readlink -f "$MESHD")
  unset MESHD_TOKEN # a token from the caller must not leak into joins
  e2e_remove_stale
  E2E_WORK=$(mktemp -d "/tmp/${E2E_BASE:-$E2E_PREFIX}XXXXXX")
  trap e2e_cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM HUP
  log "meshd: $MESHD; work dir $E2E_WORK; namespaces ${E2E_PREFIX}*"
}

# Leftovers of earlier runs: namespaces named BASE<pid>-* whose run (pid) is gone, or
# BASE* without a pid (the demo's fixed md-* names).
e2e_remove_stale() {
  local ns p owner base=${E2E_BASE:-$E2E_PREFIX}
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    case "$ns" in "$base"*) ;; *) continue ;; esac
    owner=${ns#"$base"}
    owner=${owner%%-*}
    if [[ "$owner" =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null; then continue; fi
    log "removing leftover namespace $ns"
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

# bg_start LOG CMD...: run CMD under a hard timeout in its own process group; pid in BG_PID.
bg_start() {
  local logf=$1; shift
  # The child drops our traps before exec: a signal in that window must not run cleanup twice.
  (
    trap - EXIT INT TERM HUP
    exec timeout -k 5 "$E2E_AGENT_MAX_S" "$@" >>"$logf" 2>&1 </dev/null
  ) &
  BG_PID=$!
  # Until the child has exec-ed, a signal to it would run our traps there: wait (bounded).
  local k
  for ((k = 0; k < 100; k++)); do
    [ "$(cat "/proc/$BG_PID/comm" 2>/dev/null)" != bash ] && break
    sleep 0.01
  done
  E2E_BG+=("$BG_PID")
}

# bg_stop PID: TERM (timeout forwards it), up to 10 s, then KILL the whole group.
bg_stop() {
  local p=$1 i
  kill -0 "$p" 2>/dev/null || { wait "$p" 2>/dev/null || true; return 0; }
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

e2e_print_logs() {
  local f
  for f in "$E2E_WORK"/*.log; do
    [ -f "$f" ] || continue
    echo "----- tail of $f"
    tail -n "${E2E_LOG_LINES:-40}" "$f"
  done
}

e2e_cleanup() {
  local rc=$? p ns f
  # A forked child that got a signal before it could exec must not clean up for us.
  [ "$BASHPID" = "$$" ] || exit "$rc"
  trap - EXIT INT TERM HUP
  set +e
  for ((p = ${#E2E_BG[@]} - 1; p >= 0; p--)); do bg_stop "${E2E_BG[$p]}"; done
  # A sanitizer report in any agent log fails the test even if every check passed.
  local reports=
  [ -n "$E2E_WORK" ] && reports=$(grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$E2E_WORK"/*.log 2>/dev/null)
  if [ -n "$reports" ]; then
    log "FAIL: sanitizer reports in: ${reports//$'\n'/ }"
    [ "$rc" = 0 ] && rc=1
  fi
  if [ "$rc" != 0 ] && [ "$rc" != "$E2E_SKIP" ] && [ -n "$E2E_WORK" ]; then
    log "failed (exit $rc); agent logs follow"
    e2e_print_logs
  fi
  for ((p = ${#E2E_NS[@]} - 1; p >= 0; p--)); do
    ns=${E2E_NS[$p]}
    for f in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$f" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  if [ -n "$E2E_WORK" ] && [ -z "${E2E_KEEP:-}" ]; then rm -rf "$E2E_WORK"; fi
  [ -n "${E2E_KEEP:-}" ] && log "kept $E2E_WORK"
  if [ "$rc" = 0 ]; then
    if [ -n "${E2E_PASS_LINE:-}" ]; then echo "$E2E_PASS_LINE"; else log "PASS"; fi
  fi
  exit "$rc"
}

ns_add() {
  ip netns add "$1" || fail "ip netns add $1"
  E2E_NS+=("$1")
  ip -n "$1" link set lo up
}

# ------------------------------------------------------------------ underlay

# e2e_underlay N: switch namespace with bridge br0 and N hosts, each with u0 = 10.77.0.i/24.
e2e_underlay() {
  local n=$1 i
  E2E_SW="${E2E_PREFIX}sw"
  ns_add "$E2E_SW"
  ip -n "$E2E_SW" link add br0 type bridge || fail "bridge in $E2E_SW"
  ip -n "$E2E_SW" link set br0 up
  for ((i = 1; i <= n; i++)); do host_add "$i"; done
  for ((i = 2; i <= n; i++)); do
    wait_until 10 "underlay ping h1 -> h$i" \
      ip netns exec "${H[1]}" ping -c 1 -W 1 -q "$(uip "$i")" \
      || fail "underlay: h1 cannot reach $(uip "$i")"
  done
  log "underlay up: $n hosts on ${E2E_UNDERLAY}.0/24 through $E2E_SW/br0"
}

# host_add I: one more underlay host PREFIXhI (also usable as a plain traffic source).
host_add() {
  local i=$1
  H[i]="${E2E_PREFIX}h$i"
  S[i]="$E2E_WORK/h$i"
  L[i]="$E2E_WORK/h$i.log"
  ns_add "${H[i]}"
  ip -n "$E2E_SW" link add "p$i" type veth peer name u0 netns "${H[i]}" || fail "veth for h$i"
  ip -n "$E2E_SW" link set "p$i" master br0 up
  ip -n "${H[i]}" addr add "$(uip "$i")/24" dev u0
  ip -n "${H[i]}" link set u0 up
}

uip() { echo "${E2E_UNDERLAY}.$1"; }
hns() { echo "${H[$1]}"; }

# ------------------------------------------------------------------ waiting

# wait_until SECONDS DESC CMD...: poll CMD (output discarded) every 0.2 s; sets WAITED_MS;
# returns 1 on timeout.
wait_until() {
  local secs=$1 desc=$2 t0 deadline
  shift 2
  t0=$(now_ms)
  deadline=$((t0 + secs * 1000))
  while :; do
    if "$@" >/dev/null 2>&1; then
      WAITED_MS=$(($(now_ms) - t0))
      return 0
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      WAITED_MS=$(($(now_ms) - t0))
      log "timed out after ${secs}s waiting for: $desc"
      return 1
    fi
    sleep 0.2
  done
}

# ------------------------------------------------------------------ meshd

# redact ARGS...: the arguments with join tokens shortened (a token carries a secret).
redact() {
  local a words=()
  for a in "$@"; do
    [[ "$a" == meshd1.* ]] && a="${a:0:20}..."
    words+=("$a")
  done
  echo "${words[*]}"
}

# show I ARGS...: with E2E_SHOW=1 (the demo), echo a meshd command as a user would type it.
show() {
  local i=$1
  shift
  [ -z "${E2E_SHOW:-}" ] || echo "\$ ip netns exec ${H[i]} meshd $(redact "$@") --state ${S[i]}" >&2
}

# mcli I ARGS...: run the meshd CLI in host I's namespace with --state of host I appended.
mcli() {
  local i=$1
  shift
  timeout -k 2 "$E2E_CLI_MAX_S" ip netns exec "${H[i]}" "$MESHD" "$@" --state "${S[i]}"
}

# run_capture CMD...: runs CMD; sets RC, OUT, ERR (never exits on failure).
run_capture() {
  local o e
  o=$(mktemp "$E2E_WORK/out.XXXXXX") e=$(mktemp "$E2E_WORK/err.XXXXXX")
  RC=0
  "$@" >"$o" 2>"$e" || RC=$?
  OUT=$(cat "$o") ERR=$(cat "$e")
  rm -f "$o" "$e"
}

# expect_usage_error DESC CMD...: exit 2 and exactly one stderr line starting "meshd: ".
expect_usage_error() {
  local desc=$1 n
  shift
  run_capture "$@"
  n=$(printf '%s' "$ERR" | grep -c '' || true)
  [ "$RC" = 2 ] || fail "$desc: exit $RC, want 2 (stderr: ${ERR:0:300})"
  [ "$n" = 1 ] || fail "$desc: $n stderr lines, want exactly 1: ${ERR:0:300}"
  [[ "$ERR" == "meshd: "* ]] || fail "$desc: stderr does not start with 'meshd: ': $ERR"
  ok "$desc -> exit 2: $ERR"
}

# agent_init I [ARGS...]: new mesh in host I (name hI, listen on its underlay address).
agent_init() {
  local i=$1
  shift
  show "$i" init --name "h$i" --listen "$(uip "$i"):$E2E_PORT" "$@"
  run_capture mcli "$i" init --name "h$i" --listen "$(uip "$i"):$E2E_PORT" "$@"
  [ "$RC" = 0 ] || fail "meshd init on h$i: exit $RC: $ERR"
  MESH_ID=$OUT
  log "h$i: meshd init -> mesh id $MESH_ID"
}

# agent_bg I ARGS...: start `meshd ARGS... --state S[I]` in host I in the background.
agent_bg() {
  local i=$1
  shift
  show "$i" "$@"
  echo "=== $(date +%T) meshd $(redact "$@") (h$i)" >>"${L[i]}"
  bg_start "${L[i]}" ip netns exec "${H[i]}" "$MESHD" "$@" --state "${S[i]}"
  APID[i]=$BG_PID
}

agent_run() { agent_bg "$1" run; wait_agent_ready "$1"; }

# agent_join I TOKEN [ARGS...]: join as hI listening on its underlay address; waits for the socket.
agent_join() {
  local i=$1 tok=$2
  shift 2
  agent_bg "$i" join "$tok" --name "h$i" --listen "$(uip "$i"):$E2E_PORT" "$@"
  wait_agent_ready "$i"
}

agent_running() { kill -0 "${APID[$1]}" 2>/dev/null; }
agent_stopped() { ! agent_running "$1"; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# agent_pid I: pid of the meshd process itself (child of its timeout wrapper).
agent_pid() { pgrep -P "${APID[$1]}" | head -n 1; }

# agent_ready I: running and the control socket answers `status`.
agent_ready() {
  agent_running "$1" && [ -S "${S[$1]}/control.sock" ] && mcli "$1" status >/dev/null 2>&1
}

# wait_agent_ready I: up to 20 s for the control socket; fails fast if the agent died.
wait_agent_ready() {
  local i=$1 t0 deadline r
  t0=$(now_ms)
  deadline=$((t0 + 20000))
  until agent_ready "$i"; do
    if agent_stopped "$i"; then
      r=0
      wait "${APID[i]}" 2>/dev/null || r=$?
      fail "agent on h$i exited (status $r) before its control socket answered"
    fi
    [ "$(now_ms)" -lt "$deadline" ] || fail "agent on h$i: control socket did not answer within 20 s"
    sleep 0.2
  done
  log "h$i: agent up (pid $(agent_pid "$i")) after $(($(now_ms) - t0)) ms"
}

# agent_wait_exit I SECONDS: wait for the agent to exit by itself; sets AGENT_RC; 1 on timeout.
agent_wait_exit() {
  local i=$1 secs=$2
  wait_until "$secs" "agent on h$i to exit" agent_stopped "$i" || return 1
  AGENT_RC=0
  wait "${APID[i]}" 2>/dev/null || AGENT_RC=$?
}

agent_stop() { bg_stop "${APID[$1]}"; }

# token_create I [ARGS...]: prints one token line (fails the test otherwise).
token_create() {
  local i=$1
  shift
  show "$i" token create "$@"
  run_capture mcli "$i" token create "$@"
  [ "$RC" = 0 ] || fail "token create on h$i ($*): exit $RC: $ERR"
  if [ -z "$OUT" ] || [ "$(printf '%s\n' "$OUT" | wc -l)" != 1 ]; then
    fail "token create printed not exactly one line: $OUT"
  fi
  printf '%s\n' "$OUT"
}

# ------------------------------------------------------------------ JSON views

mjson() {
  local i=$1
  shift
  mcli "$i" "$@" --json
}

# peer_field I NAME FIELD: a field of peer NAME as seen by host I ("" if absent).
peer_field() {
  mjson "$1" peers | jq -r --arg n "$2" --arg f "$3" '.peers[] | select(.name == $n) | .[$f] // empty'
}
peer_state() { peer_field "$1" "$2" state; }
alive_peers() { mjson "$1" peers | jq '[.peers[] | select(.state == "alive")] | length'; }
peer_is() { [ "$(peer_state "$1" "$2")" = "$3" ]; }
has_alive_peers() { [ "$(alive_peers "$1")" = "$2" ]; }

# wait_mesh N SECONDS: every host 1..N sees N-1 alive peers.
wait_mesh() {
  local n=$1 secs=$2 i
  for ((i = 1; i <= n; i++)); do
    wait_until "$secs" "h$i to see $((n - 1)) alive peers" has_alive_peers "$i" $((n - 1)) || {
      mjson "$i" peers || true
      fail "membership: h$i does not see $((n - 1)) alive peers within ${secs}s"
    }
    log "h$i sees $((n - 1)) alive peers (after ${WAITED_MS} ms)"
  done
}

# drop_total I: sum of the status counters named drop_* or <subsystem>_drop_*.
drop_total() {
  mjson "$1" status | jq '[.counters | to_entries[] | select(.key | test("(^|_)drop_")) | .value] | add // 0'
}

# has_endpoint I VNI IP NODE LOCAL: endpoints --json of host I lists IP in VNI owned by NODE.
has_endpoint() {
  mjson "$1" endpoints | jq -e --argjson v "$2" --arg ip "$3" --arg n "$4" --argjson l "$5" \
    '[.endpoints[] | select(.vni == $v and (.ips | index($ip)) and .node == $n and .local == $l)] | length > 0' >/dev/null
}

# ------------------------------------------------------------------ tenants

# tenant_add SHORT: namespace PREFIX<SHORT> for a tenant interface.
tenant_add() {
  T[$1]="${E2E_PREFIX}$1"
  ns_add "${T[$1]}"
}

# attach I VNI TENANT CIDR [ARGS...]: attach tenant namespace to VNI on host I.
attach() {
  local i=$1 vni=$2 t=$3 cidr=$4
  shift 4
  show "$i" attach --vni "$vni" --netns "${T[$t]}" --ip "$cidr" "$@"
  run_capture mcli "$i" attach --vni "$vni" --netns "${T[$t]}" --ip "$cidr" "$@"
  [ "$RC" = 0 ] || fail "attach h$i vni $vni ${T[$t]} $cidr: exit $RC: $ERR"
  log "h$i: attached ${T[$t]} to VNI $vni as $cidr"
}

# in_ns NS CMD...: a bounded command inside a namespace.
in_ns() {
  local ns=$1
  shift
  timeout -k 2 60 ip netns exec "$ns" "$@"
}

# expect_ping NS IP [WAIT_S]: reachable within WAIT_S (first frames resolve mappings), then
# 5 of 5 echo replies.
expect_ping() {
  local ns=$1 ip=$2 secs=${3:-15} out
  wait_until "$secs" "ping $ns -> $ip" in_ns "$ns" ping -c 1 -W 1 -q "$ip" \
    || fail "ping $ns -> $ip: no reply within ${secs}s"
  out=$(in_ns "$ns" ping -c 5 -i 0.2 -W 1 -q "$ip" 2>&1) || true
  grep -q ' 0% packet loss' <<<"$out" || fail "ping $ns -> $ip lost packets: $(grep loss <<<"$out")"
  ok "ping $ns -> $ip (first reply after ${WAITED_MS} ms, then 5/5)"
}

# expect_no_ping NS IP: 3 probes, no reply.
expect_no_ping() {
  local ns=$1 ip=$2
  if in_ns "$ns" ping -c 3 -i 0.3 -W 1 -q "$ip" >/dev/null 2>&1; then
    fail "isolation: $ns reached $ip"
  fi
  ok "no reply from $ns -> $ip (as expected)"
}

# ------------------------------------------------------------------ composite steps

# mraw I ARGS...: the meshd CLI in host I's namespace, nothing appended.
mraw() {
  local i=$1
  shift
  timeout -k 2 "$E2E_CLI_MAX_S" ip netns exec "${H[i]}" "$MESHD" "$@"
}

# join_fg I TOKEN [ARGS...]: a join expected to be refused (runs in the foreground, bounded).
join_fg() {
  local i=$1 tok=$2
  shift 2
  timeout -k 2 30 ip netns exec "${H[i]}" "$MESHD" join "$tok" --state "${S[i]}" \
    --name "h$i" --listen "$(uip "$i"):$E2E_PORT" "$@"
}

# mesh_start N: h1 creates the mesh and runs; h2..hN join with one token each (all
# VNIs). Does not wait for the members to see each other (mesh_up does).
mesh_start() {
  local n=$1 i tok
  agent_init 1
  agent_run 1
  for ((i = 2; i <= n; i++)); do
    tok=$(token_create 1 --all-vnis --uses 1)
    agent_join "$i" "$tok"
  done
}

# mesh_up N: mesh_start N, then waits until everyone sees N-1 alive peers. The underlay
# must have >= N hosts.
mesh_up() {
  local n=$1 t0
  t0=$(now_ms)
  mesh_start "$n"
  wait_mesh "$n" 30
  log "mesh of $n nodes up in $(($(now_ms) - t0)) ms"
}

# jq_check DESC JSON FILTER: FILTER must yield true on JSON.
jq_check() {
  local desc=$1 json=$2 filter=$3
  if jq -e "$filter" >/dev/null 2>&1 <<<"$json"; then
    ok "$desc"
  else
    fail "$desc: '$filter' is not true for: $(jq -c . <<<"$json" 2>/dev/null | head -c 800 || echo "${json:0:800}")"
  fi
}

# link_mac NS IFNAME: MAC address of a link inside a namespace.
link_mac() { ip -n "$1" -j link show dev "$2" | jq -r '.[0].address'; }

# neigh_mac NS IP: the MAC the namespace's ARP cache holds for IP ("" if none).
neigh_mac() { ip -n "$1" -j neigh show "$2" | jq -r '.[0].lladdr // empty'; }
