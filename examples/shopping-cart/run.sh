#!/usr/bin/env bash
# Runs the shopping-cart example: the Python function server (shop/cart,
# shop/stock) in the background, then statemeshd in the foreground. Ctrl-C
# (or SIGTERM to this script) stops both. Run from anywhere.
#   make run EXAMPLE=shopping-cart     (after `make`)
# Environment (optional): SHOP_CART_TTL, SHOP_REMINDER_DELAY (seconds),
# SHOP_INITIAL_STOCK, STATEMESH_INGRESS, STATEMESH_DATA_DIR, PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/../lib.sh
source "$here/../lib.sh"
sock="${STATEMESH_SOCK_DIR:-/tmp}/statemesh-shop-py.sock"

sm_require_bins "$sm_runtime"
sm_require_python_stubs
sm_start_python_server "the Python function server" "$sock" "$here/functions.py" --listen "unix:$sock"

echo "shopping-cart: serving shop/cart and shop/stock on unix:$sock"
echo "try: build/statemesh call shop/cart alice '{\"add\":\"apple\",\"qty\":2}' --type json"
echo "     build/statemesh call shop/cart alice '{\"checkout\":true}' --type json"
echo "     PYTHONPATH=sdk-python /usr/bin/python3 examples/shopping-cart/receipts.py   (Ctrl-C stops everything)"
SHOP_TARGET="unix:$sock" sm_run_runtime "$here/statemesh.conf"
