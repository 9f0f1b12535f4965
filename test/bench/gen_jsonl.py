#!/usr/bin/env python3
"""Writes N JSON lines for `statemesh savepoint from-jsonl` (docs/savepoints.md
"JSON lines"): address bench/counter "kI" with an int64 state n and a string
state label; every 10th address also has a queued message, every 50th a
delayed one. Deterministic, so runs compare.

    test/bench/gen_jsonl.py 1000000 > /tmp/1m.jsonl
"""
import sys


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    out = sys.stdout
    for i in range(n):
        line = ('{"type":"bench/counter","id":"k%d","state":{'
                '"label":{"typename":"statemesh/string","value":"address number %d"},'
                '"n":{"typename":"statemesh/int64","value":%d}}' % (i, i, i * 7))
        if i % 10 == 0:
            line += ',"messages":[{"typename":"statemesh/int64","value":1}]'
        if i % 50 == 0:
            line += (',"delayed":[{"due_at_ms":%d,"typename":"statemesh/int64","value":2,'
                     '"token":"t%d"}]' % (1800000000000 + i, i))
        out.write(line + "}\n")


if __name__ == "__main__":
    main()
