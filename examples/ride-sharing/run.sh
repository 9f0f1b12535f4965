#!/usr/bin/env bash
# Runs the ride-sharing example: the C function server in the background, then
# statemeshd in the foreground. Ctrl-C (or SIGTERM to this script) stops both.
# Used by `make run EXAMPLE=ride-sharing`; run from the repository root (or anywhere: paths are
# resolved from this script's location).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-ride.sock"
ride="$sm_build/examples/ride-sharing/ride"

sm_require_bins "$ride" "$sm_runtime"
sm_start_server "the ride function server" "$sock" "$ride" --listen "unix:$sock"

echo "ride-sharing: serving ride/driver, ride/geocell, ride/ride and ride/passenger on unix:$sock"
echo "try (in another terminal; Ctrl-C here stops everything):"
echo "  build/statemesh call ride/driver d1 '{\"cell\":\"c12\"}' --type json"
echo "  build/statemesh call ride/passenger alice '{\"op\":\"request\",\"cell\":\"c12\"}' --type json"
echo "  build/statemesh call ride/driver d1 '{\"op\":\"pickup\"}' --type json"
echo "  build/statemesh call ride/driver d1 '{\"op\":\"dropoff\"}' --type json"
echo "  build/statemesh egress tail ride-events"
sm_run_runtime "$here/statemesh.conf"
