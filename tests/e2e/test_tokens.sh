#!/usr/bin/env bash
# e2e: join tokens. Garbage, tampered and expired tokens are refused (exit 2, one line);
# a --uses 1 token admits one node and refuses the next, whose state stays unenrolled;
# the token may also come from MESHD_TOKEN or --token-file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
e2e_begin tokens me2e-tokens-

e2e_underlay 4
agent_init 1
agent_run 1

step "token format"
tok=$(token_create 1 --all-vnis --uses 1)
[[ "$tok" != *[[:space:]]* ]] || fail "token contains whitespace: $tok"
ok "token is one line without spaces (${#tok} characters)"

step "bad tokens are refused with exit 2"
expect_usage_error "garbage token" join_fg 3 'this-is-not-a-token'
mid=$((${#tok} / 2))
c=${tok:mid:1}
r=A
[ "$c" = A ] && r=B
tampered="${tok:0:mid}$r${tok:mid+1}"
[ "$tampered" != "$tok" ] || fail "tampering did not change the token"
expect_usage_error "tampered token (char $mid '$c' -> '$r')" join_fg 3 "$tampered"
short=$(token_create 1 --all-vnis --ttl 1s)
sleep 2
expect_usage_error "expired token" join_fg 3 "$short"
grep -qi 'expir' <<<"$ERR" || fail "expired token: message does not say expired: $ERR"
ok "expired token message mentions expiry"
[ ! -S "${S[3]}/control.sock" ] || fail "a refused join left a control socket in ${S[3]}"

step "a --uses 1 token admits exactly one node"
agent_join 2 "$tok"
wait_mesh 2 20
expect_usage_error "second use of a --uses 1 token" join_fg 3 "$tok"
grep -qiE 'used.?up' <<<"$ERR" || fail "used token: message does not say used up: $ERR"
ok "second use refused as used up"
expect_usage_error "h3 is not enrolled after the refused join (meshd run)" mcli 3 run
jq_check "h1 still sees exactly 1 peer (h2)" "$(mjson 1 peers)" '[.peers[].name] == ["h2"]'

step "token from MESHD_TOKEN (same state dir as the refused join)"
tok_env=$(token_create 1 --all-vnis --uses 1)
MESHD_TOKEN=$tok_env agent_bg 3 join --name h3 --listen "$(uip 3):$E2E_PORT"
wait_agent_ready 3

step "token from --token-file"
tfile="$E2E_WORK/h4.token"
(umask 077 && token_create 1 --all-vnis --uses 1 >"$tfile")
agent_bg 4 join --token-file "$tfile" --name h4 --listen "$(uip 4):$E2E_PORT"
wait_agent_ready 4
wait_mesh 4 30
ok "h3 (MESHD_TOKEN) and h4 (--token-file) are members"
