#!/usr/bin/env bash
# Runs the mixed-language example: the Python function server (py/user) and
# the C greeter (example/greeter) in the background, then statemeshd in the
# foreground. Ctrl-C (or SIGTERM to this script) stops all three.
#   make run EXAMPLE=mixed      (after `make`)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py_sock="/tmp/statemesh-mixed-py.sock"
c_sock="/tmp/statemesh-mixed-c.sock"
python="${PYTHON:-/usr/bin/python3}"
greeter="$root/build/examples/greeter/greeter"
runtime="$root/build/statemeshd"

for bin in "$greeter" "$runtime"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing; build it first with 'make'" >&2
    exit 1
  fi
done
if [ ! -f "$root/sdk-python/statemesh/v1/function_pb2.py" ]; then
  echo "run.sh: the Python protocol modules are missing; run 'make' first" >&2
  exit 1
fi

pids=()
runtime_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$runtime_pid" ] && kill -TERM "$runtime_pid" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

rm -f "$py_sock" "$c_sock"
PYTHONPATH="$root/sdk-python${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/mixed.py" --listen "unix:$py_sock" &
pids+=($!)
"$greeter" --listen "unix:$c_sock" &
pids+=($!)

# Wait (up to 10 s) for both sockets.
for _ in $(seq 100); do
  [ -S "$py_sock" ] && [ -S "$c_sock" ] && break
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "run.sh: a function server exited (see its log above)" >&2
      exit 1
    fi
  done
  sleep 0.1
done

echo "mixed: py/user (Python) on unix:$py_sock, example/greeter (C) on unix:$c_sock"
echo "try: build/statemesh call py/user alice hi      (Ctrl-C stops everything)"

"$runtime" -c "$here/statemesh.conf" &
runtime_pid=$!
set +e
wait "$runtime_pid"
rc=$?
set -e
runtime_pid=""
exit "$rc"
