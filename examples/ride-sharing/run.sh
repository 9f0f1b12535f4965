#!/usr/bin/env bash
# Runs the ride-sharing example: the C function server in the background, then
# statemeshd in the foreground. Ctrl-C (or SIGTERM to this script) stops both.
# Used by `make run EXAMPLE=ride-sharing`; run from the repository root (or anywhere: paths are
# resolved from this script's location).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sock="/tmp/statemesh-ride.sock"
ride="$root/build/examples/ride-sharing/ride"
runtime="$root/build/statemeshd"

for bin in "$ride" "$runtime"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing; build it first with 'make'" >&2
    exit 1
  fi
done

ride_pid=""
runtime_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$runtime_pid" ] && kill -TERM "$runtime_pid" 2>/dev/null || true
  [ -n "$ride_pid" ] && kill -TERM "$ride_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

"$ride" --listen "unix:$sock" &
ride_pid=$!

# Wait (up to 5 s) for the function server's socket.
for _ in $(seq 50); do
  [ -S "$sock" ] && break
  if ! kill -0 "$ride_pid" 2>/dev/null; then
    echo "run.sh: the ride function server exited (see its log above)" >&2
    exit 1
  fi
  sleep 0.1
done

echo "ride-sharing: serving ride/driver, ride/geocell, ride/ride and ride/passenger on unix:$sock"
echo "try (in another terminal; Ctrl-C here stops everything):"
echo "  build/statemesh call ride/driver d1 '{\"cell\":\"c12\"}' --type json"
echo "  build/statemesh call ride/passenger alice '{\"op\":\"request\",\"cell\":\"c12\"}' --type json"
echo "  build/statemesh call ride/driver d1 '{\"op\":\"pickup\"}' --type json"
echo "  build/statemesh call ride/driver d1 '{\"op\":\"dropoff\"}' --type json"
echo "  build/statemesh egress tail ride-events"

"$runtime" -c "$here/statemesh.conf" &
runtime_pid=$!
set +e
wait "$runtime_pid"
rc=$?
set -e
runtime_pid=""
exit "$rc"
