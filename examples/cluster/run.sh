#!/usr/bin/env bash
# Runs the cluster example: one database on three statemeshd nodes
# (docs/cluster.md), coordinated by a three-member etcd, with the greeter's
# function types. Used by `make run EXAMPLE=cluster`; Ctrl-C (or SIGTERM to
# this script) stops everything.
#
#   node n-0  ingress 127.0.0.1:7070   (STATEMESH_INGRESS; n-1 and n-2 take
#   node n-1  ingress 127.0.0.1:7071    the next two ports)
#   node n-2  ingress 127.0.0.1:7072
#   etcd      clients 127.0.0.1:23791..23793, peers 23801..23803
#             (STATEMESH_ETCD_PORT moves both)
#
# Data: examples/cluster/data/n-{0,1,2} and data/etcd-{0,1,2}
# (STATEMESH_DATA_DIR). The same nodes on the same data come back with
# their key groups; remove the data directory to start a new cluster.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
sock_dir="${STATEMESH_SOCK_DIR:-/tmp}"
sock="$sock_dir/statemesh-cluster-greeter.sock"
greeter="$sm_build/examples/greeter/greeter"
data="${STATEMESH_DATA_DIR:-$here/data}"
ingress="${STATEMESH_INGRESS:-127.0.0.1:7070}"
port="${ingress##*:}"
etcd_port="${STATEMESH_ETCD_PORT:-23791}"

sm_require_bins "$greeter" "$sm_runtime"
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "run.sh: etcd and etcdctl are missing; install them with ci/install-deps.sh" \
       "(Debian: etcd-server etcd-client)" >&2
  exit 1
fi
mkdir -p "$data"
export STATEMESH_DATA_DIR="$data" STATEMESH_SOCK_DIR="$sock_dir"

initial=""
for i in 0 1 2; do
  initial+="${initial:+,}e$i=http://127.0.0.1:$((etcd_port + 10 + i))"
  export "SM_ETCD$i=http://127.0.0.1:$((etcd_port + i))"
done
for i in 0 1 2; do
  sm_start_bg "etcd member e$i" etcd --name "e$i" --data-dir "$data/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:$((etcd_port + i))" \
    --advertise-client-urls "http://127.0.0.1:$((etcd_port + i))" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 10 + i))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 10 + i))" \
    --initial-cluster "$initial" --initial-cluster-state new \
    --initial-cluster-token statemesh-example --logger zap --log-level warn
done
endpoints="$SM_ETCD0,$SM_ETCD1,$SM_ETCD2"
for _ in $(seq 150); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --dial-timeout 1s endpoint health \
    >/dev/null 2>&1 && break
  sleep 0.1
done

sm_start_server "the greeter function server" "$sock" "$greeter" --listen "unix:$sock"
SM_NODE=1 SM_PORT=$((port + 1)) sm_start_bg "node n-1" "$sm_runtime" -c "$here/statemesh.conf"
SM_NODE=2 SM_PORT=$((port + 2)) sm_start_bg "node n-2" "$sm_runtime" -c "$here/statemesh.conf"

echo "cluster: nodes n-0, n-1, n-2 on 127.0.0.1:$port, :$((port + 1)), :$((port + 2)); etcd on $endpoints"
echo "try: build/statemesh --address 127.0.0.1:$port call example/user alice hi   (any node will do)"
echo "     build/statemesh --address 127.0.0.1:$port cluster status               (Ctrl-C stops everything)"
SM_NODE=0 SM_PORT=$port sm_run_runtime "$here/statemesh.conf"
