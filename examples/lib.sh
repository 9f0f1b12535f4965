# shellcheck shell=bash
# Shared launcher code for the examples' run.sh scripts (bash; sourced, not
# run). A run.sh sets `set -euo pipefail`, sources this file, checks what it
# needs, starts its function server(s) in the background and then runs
# statemeshd in the foreground:
#
#   here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
#   source "$here/../lib.sh"
#   sm_require_bins "$sm_build/examples/greeter/greeter" "$sm_runtime"
#   sm_start_server "the greeter function server" "$sock" \
#     "$sm_build/examples/greeter/greeter" --listen "unix:$sock"
#   echo "try: ..."
#   sm_run_runtime "$here/statemesh.conf"      # does not return
#
# Sourcing it sets these variables:
#   sm_root     the repository root (the parent of examples/)
#   sm_build    $sm_root/build
#   sm_runtime  $sm_build/statemeshd
#   sm_python   the Python interpreter: $PYTHON, default /usr/bin/python3
# and installs traps: on INT, TERM and EXIT every process started by
# sm_start_server / sm_start_bg / sm_run_runtime gets SIGTERM and is waited
# for, the runtime first, then the others in reverse start order (further
# INT/TERM are ignored while waiting); INT then exits with 130 and TERM with
# 143 (EXIT keeps the script's own status).
# Every message starts with "run.sh:" and goes to stderr.
#
# Two people (or tests) can run the examples side by side: every config takes
# its ingress from $STATEMESH_INGRESS (default 127.0.0.1:7070), its unix
# sockets from $STATEMESH_SOCK_DIR (default /tmp) and its data dir from
# $STATEMESH_DATA_DIR (default the example's ./data). The runtime's pid is in
# DATA_DIR/statemeshd.lock: `kill -9 $(cat examples/greeter/data/statemeshd.lock)`
# kills exactly that runtime.
#
# Functions:
#   sm_require_bins PATH...
#       Exits 1 with "run.sh: PATH is missing; build it first with 'make'"
#       unless every PATH is an executable file.
#   sm_require_files PATH...
#       The same, for PATHs that need only exist (a shared library, ...).
#   sm_require_python_stubs
#       Exits 1 with "run.sh: the Python protocol modules are missing; run
#       'make' first" unless `make` has generated sdk-python/statemesh/v1.
#   sm_start_server NAME SOCKET CMD [ARG...]
#       Starts CMD ARG... in the background and waits up to $sm_socket_wait
#       seconds (default 5) for the unix socket SOCKET to appear. If a server
#       started so far exits meanwhile, exits 1 with "run.sh: NAME exited (see
#       its log above)" (NAME of that server, e.g. "the ride function
#       server"). When the time is up without the socket, it returns anyway:
#       statemeshd retries the endpoint. CMD must be a program (not a shell
#       function), so that the process stopped later is the server itself.
#   sm_start_python_server NAME SOCKET SCRIPT [ARG...]
#       sm_start_server for a Python function server: removes a stale SOCKET
#       first, runs "$sm_python" SCRIPT ARG... with $sm_root/sdk-python put
#       in front of PYTHONPATH (an existing PYTHONPATH is kept after it), and
#       waits up to 10 s (the interpreter and grpc take a while to load).
#   sm_start_bg NAME CMD [ARG...]
#       Starts CMD ARG... in the background, to be stopped like the servers
#       (a second runtime of a cluster, etcd), without waiting for anything.
#   sm_run_runtime CONFIG
#       Runs statemeshd -c CONFIG (with the caller's environment, so
#       `VAR=value sm_run_runtime CONFIG` passes VAR to it) until it exits,
#       then exits with its status, stopping the function servers on the way
#       out (EXIT trap). Never returns.

sm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sm_build="$sm_root/build"
sm_runtime="$sm_build/statemeshd"
sm_python="${PYTHON:-/usr/bin/python3}"

sm_runtime_pid=""
sm_server_pids=()
sm_server_names=()

sm__missing() {
  echo "run.sh: $1 is missing; build it first with 'make'" >&2
  exit 1
}

sm_require_bins() {
  local f
  for f in "$@"; do [ -x "$f" ] || sm__missing "$f"; done
}

sm_require_files() {
  local f
  for f in "$@"; do [ -e "$f" ] || sm__missing "$f"; done
}

sm_require_python_stubs() {
  if [ ! -f "$sm_root/sdk-python/statemesh/v1/function_pb2.py" ]; then
    echo "run.sh: the Python protocol modules are missing; run 'make' first" >&2
    exit 1
  fi
}

# Stops the runtime first, then the other processes in reverse start order
# (a cluster's other nodes before etcd), each gone before the next gets its
# TERM. A second INT or TERM meanwhile (make passes on the TERM it gets;
# Ctrl-C twice) is ignored, and since one that came in before the `trap ''`
# cuts a `wait` short, each process is waited for until it is gone.
sm__term_wait() {
  kill -TERM "$1" 2>/dev/null || true
  while kill -0 "$1" 2>/dev/null; do wait "$1" 2>/dev/null || sleep 0.05; done
}
sm__stop() {
  local i
  trap '' INT TERM
  trap - EXIT
  if [ -n "$sm_runtime_pid" ]; then sm__term_wait "$sm_runtime_pid"; fi
  for ((i = ${#sm_server_pids[@]} - 1; i >= 0; i--)); do
    sm__term_wait "${sm_server_pids[$i]}"
  done
}
trap 'sm__stop; exit 130' INT
trap 'sm__stop; exit 143' TERM
trap sm__stop EXIT

sm_start_server() {
  local name="$1" sock="$2" i _
  shift 2
  "$@" &
  sm_server_pids+=($!)
  sm_server_names+=("$name")
  for _ in $(seq $((${sm_socket_wait:-5} * 10))); do
    [ -S "$sock" ] && break
    for i in "${!sm_server_pids[@]}"; do
      if ! kill -0 "${sm_server_pids[$i]}" 2>/dev/null; then
        echo "run.sh: ${sm_server_names[$i]} exited (see its log above)" >&2
        exit 1
      fi
    done
    sleep 0.1
  done
}

sm_start_bg() {
  local name="$1"
  shift
  "$@" &
  sm_server_pids+=($!)
  sm_server_names+=("$name")
}

sm_start_python_server() {
  local name="$1" sock="$2" sm_socket_wait=10
  shift 2
  rm -f "$sock"
  sm_start_server "$name" "$sock" \
    env PYTHONPATH="$sm_root/sdk-python${PYTHONPATH:+:$PYTHONPATH}" "$sm_python" "$@"
}

sm_run_runtime() {
  local rc=0
  if [ -n "${STATEMESH_INGRESS:-}" ]; then
    echo "run.sh: the ingress is $STATEMESH_INGRESS: use build/statemesh --address $STATEMESH_INGRESS ..." \
         "(or export STATEMESH_ADDRESS=$STATEMESH_INGRESS)" >&2
  fi
  "$sm_runtime" -c "$1" &
  sm_runtime_pid=$!
  wait "$sm_runtime_pid" || rc=$?
  sm_runtime_pid=""
  exit "$rc"
}
