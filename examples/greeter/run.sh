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
root="$(cd "$here/../.." && pwd)"
sock="/tmp/statemesh-greeter.sock"
greeter="$root/build/examples/greeter/greeter"
runtime="$root/build/statemeshd"
mode="${MODE:-sidecar}"

case "$mode" in
  sidecar) ;;
  embedded)
    lib="$root/build/examples/greeter/libgreeter.so"
    for f in "$runtime" "$lib"; do
      if [ ! -e "$f" ]; then
        echo "run.sh: $f is missing; build it first with 'make'" >&2
        exit 1
      fi
    done
    echo "greeter: example/user and example/greeter run inside statemeshd ($lib)"
    echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops it)"
    exec "$runtime" -c "$here/embedded.conf"
    ;;
  *)
    echo "run.sh: MODE must be sidecar or embedded, not '$mode'" >&2
    exit 2
    ;;
esac

for bin in "$greeter" "$runtime"; do
  if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is missing; build it first with 'make'" >&2
    exit 1
  fi
done

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

"$greeter" --listen "unix:$sock" &
greeter_pid=$!

# Wait (up to 5 s) for the function server's socket.
for _ in $(seq 50); do
  [ -S "$sock" ] && break
  if ! kill -0 "$greeter_pid" 2>/dev/null; then
    echo "run.sh: the greeter function server exited (see its log above)" >&2
    exit 1
  fi
  sleep 0.1
done

echo "greeter: serving example/user and example/greeter on unix:$sock"
echo "try: build/statemesh call example/user alice hi      (Ctrl-C stops everything)"

"$runtime" -c "$here/statemesh.conf" &
runtime_pid=$!
set +e
wait "$runtime_pid"
rc=$?
set -e
runtime_pid=""
exit "$rc"
