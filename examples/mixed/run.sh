#!/usr/bin/env bash
# Runs the mixed-language example: the Python function server (py/user) and
# the C greeter (example/greeter) in the background, then statemeshd in the
# foreground. Ctrl-C (or SIGTERM to this script) stops all three.
#   make run EXAMPLE=mixed      (after `make`)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
py_sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-mixed-py.sock"
c_sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-mixed-c.sock"
greeter="$sm_build/examples/greeter/greeter"

sm_require_bins "$greeter" "$sm_runtime"
sm_require_python_stubs
rm -f "$c_sock"
sm_start_python_server "a function server" "$py_sock" "$here/mixed.py" --listen "unix:$py_sock"
sm_start_server "a function server" "$c_sock" "$greeter" --listen "unix:$c_sock"

echo "mixed: py/user (Python) on unix:$py_sock, example/greeter (C) on unix:$c_sock"
echo "try: build/statemesh call py/user alice hi      (Ctrl-C stops everything)"
sm_run_runtime "$here/statemesh.conf"
