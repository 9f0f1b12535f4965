#!/usr/bin/python3
"""shopping-cart — carts and stock reservations as stateful functions (Python).

    functions.py [--listen unix:/path.sock | host:port]
                 (default unix:/tmp/statemesh-shop-py.sock)

Two function types exchange messages; every message is JSON:

  shop/stock  one per item (id = item name). State `stock`:
              {"available": n, "held": {cart: qty}, "sold": n}; an item never
              seen starts with SHOP_INITIAL_STOCK available (default 10).
                {"restock": n}   from anyone: available += n; replies the stock
                {"get": true}    replies the stock
                {"reserve": q}   from a cart: moves q from available to the
                                 cart's hold and answers the cart
                                 {"reservation": item, "qty": q, "ok": true},
                                 or {"ok": false, "available": n} when short
                {"release": q}   from a cart: its hold goes back to available
                {"confirm": q}   from a cart: its hold is sold

  shop/cart   one per user (id = user). State `cart` (expires SHOP_CART_TTL
              seconds after it was last written, default 1800) and `orders`
              (a counter, kept). A cart holds, per item, how many are
              reserved, pending (asked, not answered) and missing (out of
              stock or released).
                {"add": item, "qty": q}  asks shop/stock item to reserve q; the
                                 stock's answer updates the cart, and the cart
                                 then replies with itself: a Call of "add"
                                 returns once the reservation is decided
                {"remove": item} releases its reservation; replies the cart
                {"get": true}    replies the cart
                {"checkout": true}  confirms every reservation with its stock,
                                 writes a receipt to the `receipts` egress,
                                 replies the receipt and clears the cart
              Whenever the cart holds reservations, a delayed "reminder" to
              itself is pending (ctx.send_after, cancellation token
              "reminder", SHOP_REMINDER_DELAY seconds after the last change,
              default 600). Every change reschedules it (cancel + send_after
              with the same token); checkout cancels it. If it fires, the
              cart was abandoned: its reservations go back to the stocks, and
              a "cart-reminder" record goes to the `reminders` egress. The
              cart's state then expires by TTL unless the user comes back.

Bad commands get a reply {"error": ...} and change nothing (raising would
make the runtime retry the batch forever).

    $ build/statemesh call shop/cart alice '{"add":"apple","qty":2}' --type json
    {"user":"alice","items":{"apple":{"reserved":2,"pending":0,"missing":0}}}
    $ build/statemesh call shop/cart alice '{"checkout":true}' --type json
    {"order":"alice-1","user":"alice","items":[{"item":"apple","qty":2}],"unavailable":[]}

Run it all with examples/shopping-cart/run.sh (`make run EXAMPLE=shopping-cart`).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "sdk-python"))

from statemesh import IntType, JsonType, StatefulFunctions, ValueSpec, serve  # noqa: E402


def _env_seconds(name, default):
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        s = float(v)
    except ValueError:
        sys.exit("%s must be a number of seconds, got %r" % (name, v))
    if not s > 0:
        sys.exit("%s must be positive, got %r" % (name, v))
    return s


CART_TTL = _env_seconds("SHOP_CART_TTL", 1800.0)
REMINDER_DELAY = _env_seconds("SHOP_REMINDER_DELAY", 600.0)
INITIAL_STOCK = int(os.environ.get("SHOP_INITIAL_STOCK", "10"))
MAX_QTY = 1000
if REMINDER_DELAY >= CART_TTL:
    sys.exit("SHOP_REMINDER_DELAY (%gs) must be shorter than SHOP_CART_TTL (%gs): the "
             "reminder releases the reservations of an abandoned cart before it expires"
             % (REMINDER_DELAY, CART_TTL))

functions = StatefulFunctions()


# ---- shop/stock -------------------------------------------------------------------

@functions.bind("shop/stock", specs=[ValueSpec("stock", JsonType)])
def stock(ctx, message):
    s = ctx.storage.stock or {"available": INITIAL_STOCK, "held": {}, "sold": 0}
    cmd = message.as_json() if message.is_json() else None
    if not isinstance(cmd, dict):
        ctx.reply({"error": "shop/stock wants a JSON object, e.g. {\"restock\": 5}"})
        return
    item = ctx.address.id
    caller = ctx.caller
    cart = caller.id if caller is not None and caller.type == "shop/cart" else None

    if "restock" in cmd:
        n = cmd["restock"]
        if not _qty_ok(n):
            ctx.reply({"error": "restock wants a count 1..%d" % MAX_QTY})
            return
        s["available"] += n
    elif "reserve" in cmd or "release" in cmd or "confirm" in cmd:
        if cart is None:
            ctx.reply({"error": "reserve/release/confirm come from shop/cart only"})
            return
        held = s["held"].get(cart, 0)
        if "reserve" in cmd:
            q = cmd["reserve"]
            ok = s["available"] >= q
            if ok:
                s["available"] -= q
                s["held"][cart] = held + q
            ctx.send("shop/cart", cart, {"reservation": item, "qty": q, "ok": ok,
                                         "available": s["available"]})
        else:
            q = min(cmd.get("release", cmd.get("confirm")), held)
            if "release" in cmd:
                s["available"] += q
            else:
                s["sold"] += q
            if held - q:
                s["held"][cart] = held - q
            else:
                s["held"].pop(cart, None)
        # No reply: a Call of the cart's "add" is pending on this chain, and
        # the cart answers it once it has recorded the reservation.
        ctx.storage.stock = s
        return
    elif not cmd.get("get"):
        ctx.reply({"error": "unknown command; one of restock, get (reserve, release, "
                            "confirm come from carts)"})
        return
    ctx.storage.stock = s
    ctx.reply(dict(s, item=item))


# ---- shop/cart --------------------------------------------------------------------

def _qty_ok(q):
    return isinstance(q, int) and not isinstance(q, bool) and 1 <= q <= MAX_QTY


def _view(user, cart):
    return {"user": user, "items": cart["items"]}


def _holds_anything(cart):
    return any(i["reserved"] or i["pending"] for i in cart["items"].values())


@functions.bind("shop/cart", specs=[ValueSpec("cart", JsonType, expire_after_write=CART_TTL),
                                    ValueSpec("orders", IntType)])
def cart(ctx, message):
    user = ctx.address.id
    c = ctx.storage.cart or {"items": {}}
    items = c["items"]
    cmd = message.as_json() if message.is_json() else None
    if not isinstance(cmd, dict):
        ctx.reply({"error": "shop/cart wants a JSON object, e.g. {\"add\": \"apple\"}"})
        return
    caller = ctx.caller

    if "reservation" in cmd and caller is not None and caller.type == "shop/stock":
        # The stock's answer to a reserve.
        name, q = caller.id, cmd["qty"]
        it = items.get(name)
        if it is None or it["pending"] < q:
            # The item was removed (or the cart abandoned) while asking: give it back.
            if cmd["ok"]:
                ctx.send("shop/stock", name, {"release": q})
            return
        it["pending"] -= q
        if cmd["ok"]:
            it["reserved"] += q
        else:
            it["missing"] += q
        _save(ctx, c)
        ctx.reply(_view(user, c))               # answers the Call of the "add"

    elif "reminder" in cmd and caller == ctx.address:
        # Nothing happened for REMINDER_DELAY: the cart is abandoned.
        released = []
        for name, it in sorted(items.items()):
            if it["reserved"]:
                ctx.send("shop/stock", name, {"release": it["reserved"]})
                released.append({"item": name, "qty": it["reserved"]})
                it["missing"] += it["reserved"]
                it["reserved"] = 0
        if released:
            ctx.send_egress("reminders", {"type": "cart-reminder", "user": user,
                                          "released": released})
            _save(ctx, c)

    elif "add" in cmd:
        name, q = cmd["add"], cmd.get("qty", 1)
        if not isinstance(name, str) or not 0 < len(name.encode()) <= 1024:
            ctx.reply({"error": "add wants an item name (1..1024 bytes)"})
            return
        if not _qty_ok(q):
            ctx.reply({"error": "qty must be an integer 1..%d" % MAX_QTY})
            return
        it = items.setdefault(name, {"reserved": 0, "pending": 0, "missing": 0})
        it["pending"] += q
        # The pending Call travels with this message: the cart's reply to the
        # stock's answer (above) is what answers it.
        ctx.send("shop/stock", name, {"reserve": q})
        _save(ctx, c)

    elif "remove" in cmd:
        name = cmd["remove"]
        it = items.pop(name, None) if isinstance(name, str) else None
        if it is None:
            ctx.reply({"error": "%r is not in the cart" % (name,)})
            return
        if it["reserved"]:
            ctx.send("shop/stock", name, {"release": it["reserved"]})
        _save(ctx, c)
        ctx.reply(_view(user, c))

    elif cmd.get("checkout"):
        pending = sorted(n for n, it in items.items() if it["pending"])
        if pending:
            ctx.reply({"error": "reservations still pending, try again", "pending": pending})
            return
        bought = [{"item": n, "qty": it["reserved"]} for n, it in sorted(items.items())
                  if it["reserved"]]
        if not bought:
            ctx.reply({"error": "nothing reserved to check out", "items": items})
            return
        for b in bought:
            ctx.send("shop/stock", b["item"], {"confirm": b["qty"]})
        order = (ctx.storage.orders or 0) + 1
        ctx.storage.orders = order
        receipt = {"order": "%s-%d" % (user, order), "user": user, "items": bought,
                   "unavailable": [{"item": n, "qty": it["missing"]}
                                   for n, it in sorted(items.items()) if it["missing"]]}
        ctx.send_egress("receipts", receipt)
        ctx.cancel_delayed("reminder")
        del ctx.storage.cart
        ctx.reply(receipt)

    elif cmd.get("get"):
        ctx.reply(_view(user, c))

    else:
        ctx.reply({"error": "unknown command; one of add, remove, get, checkout"})


def _save(ctx, c):
    """Writes the cart and keeps exactly one reminder pending while it holds
    reservations (a cancellation applies before the new delayed message, so
    the same token can be reused at once)."""
    ctx.storage.cart = c
    ctx.cancel_delayed("reminder")
    if _holds_anything(c):
        ctx.send_after(REMINDER_DELAY, "shop/cart", ctx.address.id, {"reminder": True},
                       cancellation_token="reminder")


def main():
    ap = argparse.ArgumentParser(description="shop/cart and shop/stock, in Python")
    ap.add_argument("--listen", default="unix:/tmp/statemesh-shop-py.sock")
    args = ap.parse_args()
    serve(functions, args.listen)


if __name__ == "__main__":
    main()
