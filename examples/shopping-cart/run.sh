#!/usr/bin/env bash
# Runs the shopping-cart example: the Python function server (shop/cart,
# shop/stock) in the background, then statemeshd in the foreground. Ctrl-C
# (or SIGTERM to this script) stops both. Run from anywhere.
#   make run EXAMPLE=shopping-cart     (after `make`)
# Environment (optional): SHOP_CART_TTL, SHOP_REMINDER_DELAY (seconds),
# SHOP_INITIAL_STOCK, STATEMESH_INGRESS, STATEMESH_DATA_DIR, PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
sock="/tmp/statemesh-shop-py.sock"
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

fn_pid=""
runtime_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$runtime_pid" ] && kill -TERM "$runtime_pid" 2>/dev/null || true
  [ -n "$fn_pid" ] && kill -TERM "$fn_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

rm -f "$sock"
PYTHONPATH="$root/sdk-python${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" "$here/functions.py" --listen "unix:$sock" &
fn_pid=$!

# Wait (up to 10 s) for the function server's socket.
for _ in $(seq 100); do
  [ -S "$sock" ] && break
  if ! kill -0 "$fn_pid" 2>/dev/null; then
    echo "run.sh: the Python function server exited (see its log above)" >&2
    exit 1
  fi
  sleep 0.1
done

echo "shopping-cart: serving shop/cart and shop/stock on unix:$sock"
echo "try: build/statemesh call shop/cart alice '{\"add\":\"apple\",\"qty\":2}' --type json"
echo "     build/statemesh call shop/cart alice '{\"checkout\":true}' --type json"
echo "     PYTHONPATH=sdk-python /usr/bin/python3 examples/shopping-cart/receipts.py   (Ctrl-C stops everything)"

SHOP_TARGET="unix:$sock" "$runtime" -c "$here/statemesh.conf" &
runtime_pid=$!
set +e
wait "$runtime_pid"
rc=$?
set -e
runtime_pid=""
exit "$rc"
