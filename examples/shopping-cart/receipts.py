#!/usr/bin/python3
"""receipts — prints the shopping-cart example's egress logs as they grow.

    receipts.py [--address 127.0.0.1:7070] [--egress receipts|reminders|both]
                [--from OFFSET | --latest] [--no-follow]

Each record is printed as one line: offset, commit time, the function that
wrote it, and its JSON value. By default it replays both logs from their
oldest retained record and then waits for new ones (Ctrl-C stops it).
"""

import argparse
import json
import os
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "sdk-python"))

from statemesh import Client, StatemeshError  # noqa: E402


def tail(client, egress, args, lock):
    kw = {"follow": not args.no_follow}
    if args.from_offset is not None:
        kw["from_offset"] = args.from_offset
    elif args.latest:
        kw["latest"] = True
    try:
        for rec in client.subscribe(egress, **kw):
            line = "%-9s %5d  %s  %s/%s  %s" % (
                egress, rec.offset, rec.timestamp.strftime("%H:%M:%S.%f")[:-3],
                rec.source.type, rec.source.id,
                json.dumps(rec.value.as_json(), sort_keys=True))
            with lock:
                print(line, flush=True)
    except StatemeshError as e:
        with lock:
            print("%s: %s" % (egress, e), file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser(description="Print the shopping-cart egress logs")
    ap.add_argument("--address", default=os.environ.get("STATEMESH_ADDRESS", "127.0.0.1:7070"))
    ap.add_argument("--egress", default="both", choices=("receipts", "reminders", "both"))
    ap.add_argument("--from", dest="from_offset", type=int, help="start at this offset")
    ap.add_argument("--latest", action="store_true", help="only records from now on")
    ap.add_argument("--no-follow", action="store_true", help="stop once caught up")
    args = ap.parse_args()
    names = ["receipts", "reminders"] if args.egress == "both" else [args.egress]
    lock = threading.Lock()
    with Client(args.address, wait_for_ready=True) as client:
        threads = [threading.Thread(target=tail, args=(client, n, args, lock), daemon=True)
                   for n in names]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
