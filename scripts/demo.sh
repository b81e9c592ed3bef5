#!/usr/bin/env bash
# meshd in two minutes, on one machine (as root, Debian 12):
#   three "hosts" (network namespaces md-h1..md-h3) on an underlay switch (md-sw),
#   a mesh with no controller, two tenants whose VNIs use the same subnet 10.10.0.0/24:
#     VNI 100: md-t1a 10.10.0.1 (h1), md-t2a 10.10.0.2 (h2)
#     VNI 200: md-t1b 10.10.0.1 (h1), md-t2b 10.10.0.2 (h2), md-t3b 10.10.0.3 (h3)
#   pings inside each VNI across hosts, and none across VNIs.
# Everything it creates (namespaces, agents, temp dirs) is removed on exit, also on failure.
# Exit status 0 and a last line "demo OK" when every check passed.
# MESHD_BIN=path skips the build and uses that binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (it creates network namespaces)" >&2
  exit 1
fi
[ -c /dev/net/tun ] || { echo "demo.sh: /dev/net/tun is missing" >&2; exit 1; }

if [ -z "${MESHD_BIN:-}" ]; then
  echo "===== 0. dependencies and build"
  bash scripts/build.sh --target meshd
  MESHD_BIN=$PWD/build/meshd
fi

# shellcheck source-path=SCRIPTDIR/..
source tests/e2e/lib.sh
E2E_NAME=demo
E2E_PREFIX=md-
E2E_SHOW=1                 # echo every meshd command
E2E_PASS_LINE="demo OK"    # printed last, after the cleanup succeeded
e2e_start

step "1. underlay: switch md-sw, hosts md-h1..md-h3 on 10.77.0.0/24"
e2e_underlay 3

step "2. h1 creates the mesh and runs the first agent"
agent_init 1
agent_run 1

step "3. h2 and h3 join with one-line tokens (no controller involved)"
for i in 2 3; do
  tok=$(token_create 1 --all-vnis --uses 1)
  log "token for h$i: ${tok:0:40}... (${#tok} characters)"
  agent_join "$i" "$tok"
done

step "4. membership: every node sees 2 alive peers"
wait_mesh 3 30

step "5. tenants: VNI 100 and VNI 200, both 10.10.0.0/24"
tenant_add t1a; attach 1 100 t1a 10.10.0.1/24
tenant_add t1b; attach 1 200 t1b 10.10.0.1/24
tenant_add t2a; attach 2 100 t2a 10.10.0.2/24
tenant_add t2b; attach 2 200 t2b 10.10.0.2/24
tenant_add t3b; attach 3 200 t3b 10.10.0.3/24

step "6. traffic inside each VNI, across hosts"
expect_ping md-t1a 10.10.0.2
expect_ping md-t1b 10.10.0.2
expect_ping md-t1b 10.10.0.3

step "7. isolation: VNI 100 cannot reach 10.10.0.3, which exists only in VNI 200"
expect_no_ping md-t1a 10.10.0.3

step "8. what h1 sees"
mcli 1 peers
echo
mcli 1 endpoints

echo
