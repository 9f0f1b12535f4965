#!/usr/bin/env bash
# Runs the Python greeter example: the Python function server in the
# background, then statemeshd in the foreground. Ctrl-C (or SIGTERM to this
# script) stops both. Run from anywhere: paths resolve from this script.
#   make run EXAMPLE=greeter-python     (after `make`, which generates the
#                                        sdk-python/statemesh/v1 modules)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sock="/tmp/statemesh-greeter-py.sock"
python="${PYTHON:-/usr/bin/python3}"
runtime="$root/build/statemeshd"

if [ ! -x "$runtime" ]; then
  echo "run.sh: $runtime is missing; build it first with 'make'" >&2
  exit 1
fi
if [ ! -f "$root/sdk-python/statemesh/v1/function_pb2.py" ]; then
  echo "run.sh: the Python protocol modules are missing; run 'make' first" >&2
  exit 1
fi

greeter_pid=""
runtime_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$runtime_pid" ] && kill -TERM "$runtime_pid" 2>/dev/null || true
  [ -n "$greeter_pid" ] && kill -TERM "$greeter_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

rm -f "$sock"
PYTHONPATH="$root/sdk-python${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/greeter.py" --listen "unix:$sock" &
greeter_pid=$!

# Wait (up to 10 s) for the function server's socket.
for _ in $(seq 100); do
  [ -S "$sock" ] && break
  if ! kill -0 "$greeter_pid" 2>/dev/null; then
    echo "run.sh: the Python greeter exited (see its log above)" >&2
    exit 1
  fi
  sleep 0.1
done

echo "greeter-python: serving example/user and example/greeter on unix:$sock"
echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops everything)"

"$runtime" -c "$here/statemesh.conf" &
runtime_pid=$!
set +e
wait "$runtime_pid"
rc=$?
set -e
runtime_pid=""
exit "$rc"
