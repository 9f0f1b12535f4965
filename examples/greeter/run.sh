#!/usr/bin/env bash
# Runs the greeter example: the C function server in the background, then
# statemeshd in the foreground. Ctrl-C (or SIGTERM to this script) stops both.
# Used by `make run`; run from the repository root (or anywhere: paths are
# resolved from this script's location).
#
# MODE=embedded (make run EXAMPLE=greeter MODE=embedded): no function server;
# statemeshd loads build/examples/greeter/libgreeter.so in-process
# (embedded.conf).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-greeter.sock"
greeter="$sm_build/examples/greeter/greeter"
mode="${MODE:-sidecar}"

case "$mode" in
  sidecar) ;;
  embedded)
    lib="$sm_build/examples/greeter/libgreeter.so"
    sm_require_files "$sm_runtime" "$lib"
    echo "greeter: example/user and example/greeter run inside statemeshd ($lib)"
    echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops it)"
    exec "$sm_runtime" -c "$here/embedded.conf"
    ;;
  *)
    echo "run.sh: MODE must be sidecar or embedded, not '$mode'" >&2
    exit 2
    ;;
esac

sm_require_bins "$greeter" "$sm_runtime"
sm_start_server "the greeter function server" "$sock" "$greeter" --listen "unix:$sock"

echo "greeter: serving example/user and example/greeter on unix:$sock"
echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops everything)"
sm_run_runtime "$here/statemesh.conf"
