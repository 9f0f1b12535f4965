"""
The shopping-cart example (examples/shopping-cart/functions.py) against the
real runtime: carts reserve stock by messaging shop/stock, checkout confirms
the reservations and writes a receipt to the `receipts` egress, an abandoned
cart gets a delayed reminder that releases its reservations (and that
checkout cancels), and the cart state expires by TTL. Short timings come
from the example's environment variables.
"""

import os
import subprocess
import sys
import time

import pytest

from harness import PYTHON, REPO, binary, endpoint, python_env, scaled, wait_until

sys.path.insert(0, str(REPO / "sdk-python"))
from statemesh import Client  # noqa: E402

EXAMPLE = REPO / "examples" / "shopping-cart"
TTL, REMINDER, STOCK = 6.0, 3.0, 5
EGRESSES = 'egresses = ( { name = "receipts"; }, { name = "reminders"; } );'


class Shop:
    def __init__(self, sandbox):
        self.fn = sandbox.server(
            [PYTHON, str(EXAMPLE / "functions.py")], name="shop",
            env=python_env({"SHOP_CART_TTL": str(TTL), "SHOP_REMINDER_DELAY": str(REMINDER),
                            "SHOP_INITIAL_STOCK": str(STOCK)}))
        self.rt = sandbox.runtime(endpoints=[endpoint("shop/*", self.fn)], extra_config=EGRESSES)
        self.c = Client(self.rt.ingress, timeout=scaled(20), wait_for_ready=True)

    def cart(self, user, cmd):
        return self.c.call("shop/cart", user, cmd)

    def stock(self, item):
        return self.c.call("shop/stock", item, {"get": True})

    def records(self, egress):
        return [r.value.as_json() for r in self.c.subscribe(egress, follow=False,
                                                            timeout=scaled(20))]

    def restart_runtime(self):
        self.rt.kill9()
        self.rt.start()
        self.c.close()
        self.c = Client(self.rt.ingress, timeout=scaled(20), wait_for_ready=True)


@pytest.fixture
def shop(sandbox, require):
    require("statemeshd")
    s = Shop(sandbox)
    yield s
    s.c.close()


def item(reserved=0, pending=0, missing=0):
    return {"reserved": reserved, "pending": pending, "missing": missing}


def test_example_config_is_valid():
    r = subprocess.run([str(binary("statemeshd")), "--check-config",
                        str(EXAMPLE / "statemesh.conf")], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, STATEMESH_DATA_DIR="/tmp/unused"))
    assert r.returncode == 0, r.stderr
    text = (EXAMPLE / "statemesh.conf").read_text()
    assert 'name = "receipts"' in text and 'name = "reminders"' in text


def test_add_reserve_checkout_receipt(shop):
    assert shop.cart("alice", {"add": "apple", "qty": 2}) == {
        "user": "alice", "items": {"apple": item(reserved=2)}}
    # More than the stock holds: recorded as missing, nothing reserved.
    assert shop.cart("alice", {"add": "pear", "qty": STOCK + 1})["items"]["pear"] == \
        item(missing=STOCK + 1)
    assert shop.stock("apple") == {"item": "apple", "available": STOCK - 2,
                                   "held": {"alice": 2}, "sold": 0}
    receipt = shop.cart("alice", {"checkout": True})
    assert receipt == {"order": "alice-1", "user": "alice",
                       "items": [{"item": "apple", "qty": 2}],
                       "unavailable": [{"item": "pear", "qty": STOCK + 1}]}
    # The receipt is in the egress log, written by the cart.
    recs = list(shop.c.subscribe("receipts", follow=False, timeout=scaled(20)))
    assert [(r.offset, r.source, r.value.as_json()) for r in recs] == [
        (1, ("shop/cart", "alice"), receipt)]
    wait_until(lambda: shop.stock("apple")["sold"] == 2, 10, message="confirm applied")
    assert shop.stock("apple") == {"item": "apple", "available": STOCK - 2, "held": {},
                                   "sold": 2}
    assert shop.stock("pear")["available"] == STOCK
    # The cart is cleared; a second checkout has nothing to buy.
    assert shop.cart("alice", {"get": True}) == {"user": "alice", "items": {}}
    assert "error" in shop.cart("alice", {"checkout": True})
    # Checkout cancelled the reminder: nothing fires after its delay.
    time.sleep(REMINDER + scaled(1.0))
    assert shop.records("reminders") == []
    assert shop.stock("apple")["sold"] == 2
    # The next order gets the next number.
    shop.cart("alice", {"add": "apple"})
    assert shop.cart("alice", {"checkout": True})["order"] == "alice-2"
    assert [r["order"] for r in shop.records("receipts")] == ["alice-1", "alice-2"]


def test_abandoned_cart_reminder_releases_and_state_expires(shop):
    assert shop.cart("bob", {"add": "apple"})["items"]["apple"] == item(reserved=1)
    assert shop.stock("apple")["held"] == {"bob": 1}
    wait_until(lambda: shop.records("reminders"), REMINDER + 10, message="reminder record")
    t_reminder = time.monotonic()
    assert shop.records("reminders") == [
        {"type": "cart-reminder", "user": "bob", "released": [{"item": "apple", "qty": 1}]}]
    wait_until(lambda: shop.stock("apple")["available"] == STOCK, 10, message="released")
    assert shop.stock("apple")["held"] == {}
    # The cart still shows what it lost until the state expires (TTL after write).
    assert shop.cart("bob", {"get": True})["items"] == {"apple": item(missing=1)}
    assert "cart" in shop.c.state("shop/cart", "bob")
    wait_until(lambda: shop.cart("bob", {"get": True})["items"] == {}, TTL + 10,
               message="cart expired")
    assert time.monotonic() - t_reminder >= TTL - 1.0
    wait_until(lambda: "cart" not in shop.c.state("shop/cart", "bob"), 10,
               message="expired state purged")
    # Only one reminder: nothing was held any more.
    assert len(shop.records("reminders")) == 1


def test_every_change_reschedules_the_reminder(shop):
    t0 = time.monotonic()
    shop.cart("carol", {"add": "apple"})
    time.sleep(max(0, t0 + REMINDER / 2 - time.monotonic()))
    shop.cart("carol", {"add": "plum"})           # reminder now due at ~t0 + 1.5 * REMINDER
    time.sleep(max(0, t0 + REMINDER * 1.25 - time.monotonic()))
    assert shop.records("reminders") == [], "the first reminder was not rescheduled"
    assert shop.stock("apple")["held"] == {"carol": 1}
    wait_until(lambda: shop.records("reminders"), 10, message="rescheduled reminder")
    assert shop.records("reminders")[0]["released"] == [{"item": "apple", "qty": 1},
                                                        {"item": "plum", "qty": 1}]


@pytest.mark.time_limit(180)
def test_scarce_stock_many_carts_across_a_crash(shop):
    """20 carts compete for 5 GPUs: exactly 5 get one. The runtime is killed
    with -9 between reservation and checkout; nothing is lost or doubled."""
    users = ["u%02d" % i for i in range(20)]
    for u in users:
        shop.c.send("shop/cart", u, {"add": "gpu"})
    shop.rt.client().wait_drained(timeout=60)
    carts = {u: shop.cart(u, {"get": True})["items"]["gpu"] for u in users}
    winners = sorted(u for u, it in carts.items() if it == item(reserved=1))
    assert len(winners) == STOCK
    assert all(carts[u] == item(missing=1) for u in users if u not in winners)
    assert shop.stock("gpu") == {"item": "gpu", "available": 0,
                                 "held": {u: 1 for u in winners}, "sold": 0}
    shop.restart_runtime()
    for u in users:
        r = shop.cart(u, {"checkout": True})
        assert ("order" in r) == (u in winners), (u, r)
    wait_until(lambda: shop.stock("gpu")["sold"] == STOCK, 20, message="all confirmed")
    assert shop.stock("gpu") == {"item": "gpu", "available": 0, "held": {}, "sold": STOCK}
    assert sorted(r["user"] for r in shop.records("receipts")) == winners
    time.sleep(REMINDER + scaled(1.0))
    # Losers' carts held nothing, so no reminder; winners' were cancelled.
    assert shop.records("reminders") == []


def test_bad_commands_get_errors_and_change_nothing(shop):
    assert "error" in shop.c.call("shop/cart", "dan", "hello")          # not JSON
    assert "error" in shop.cart("dan", {"add": "apple", "qty": 0})
    assert "error" in shop.cart("dan", {"add": "apple", "qty": "two"})
    assert "error" in shop.cart("dan", {"add": ""})
    assert "error" in shop.cart("dan", {"remove": "apple"})
    assert "error" in shop.cart("dan", {"dance": True})
    assert "error" in shop.cart("dan", {"reminder": True})               # only from itself
    assert "error" in shop.c.call("shop/stock", "apple", {"reserve": 3})  # only from carts
    assert "error" in shop.c.call("shop/stock", "apple", {"restock": -1})
    assert shop.cart("dan", {"get": True}) == {"user": "dan", "items": {}}
    assert shop.stock("apple") == {"item": "apple", "available": STOCK, "held": {}, "sold": 0}
    # remove releases the reservation.
    shop.cart("dan", {"add": "apple", "qty": 3})
    assert shop.cart("dan", {"remove": "apple"}) == {"user": "dan", "items": {}}
    wait_until(lambda: shop.stock("apple")["available"] == STOCK, 10, message="released")
    assert shop.c.call("shop/stock", "apple", {"restock": 4})["available"] == STOCK + 4
