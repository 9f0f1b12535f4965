#!/usr/bin/env bash
# Runs the Python greeter example: the Python function server in the
# background, then statemeshd in the foreground. Ctrl-C (or SIGTERM to this
# script) stops both. Run from anywhere: paths resolve from this script.
#   make run EXAMPLE=greeter-python     (after `make`, which generates the
#                                        sdk-python/statemesh/v1 modules)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-greeter-py.sock"

sm_require_bins "$sm_runtime"
sm_require_python_stubs
sm_start_python_server "the Python greeter" "$sock" "$here/greeter.py" --listen "unix:$sock"

echo "greeter-python: serving example/user and example/greeter on unix:$sock"
echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops everything)"
sm_run_runtime "$here/statemesh.conf"
