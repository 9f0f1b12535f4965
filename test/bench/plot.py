#!/usr/bin/python3
"""plot.py — draws how throughput and latency scale from the results of
test/bench/run.py (build/bench/results.json) into one PNG.

    /usr/bin/python3 test/bench/plot.py build/bench/results.json build/bench/scaling.png
    /usr/bin/python3 test/bench/plot.py RESULTS.json OUT.png --title "make bench, full set"

run.py calls it after every run set (output BUILD/bench/scaling.png). Three
panels, one line per mode (embedded, c-sidecar, py-sidecar), only runs with
ok = true and sync = true:

  (a) counter-spread over SendStream: msgs/s against addresses (log x);
  (b) greeter over unary Call: calls/s against clients (log x);
  (c) the same Call runs: p50 latency (solid) and p99 (dotted) in ms against
      clients (log x, log y).

A panel without data says so and the others are still drawn (a QUICK run has
one or two points per line); when no panel has data nothing is written.

Needs matplotlib (Debian: python3-matplotlib), Agg backend, no display.
Exit status: 0 written (or nothing to plot), 3 matplotlib is not importable,
2 bad arguments or unreadable results, 1 anything else.
"""

import argparse
import json
import os
import sys
import time

MODES = ("embedded", "c-sidecar", "py-sidecar")
COLORS = {"embedded": "tab:blue", "c-sidecar": "tab:orange", "py-sidecar": "tab:green"}
EXIT_NO_MATPLOTLIB = 3


def si(v):
    """1000 -> 1k, 1000000 -> 1M, 466104 -> 466k, 7433 -> 7.4k, 103.81 -> 104, 0.66 -> 0.66."""
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            x = v / div
            return ("%.1f%s" % (x, suf)) if x < 10 and x != int(x) else ("%.0f%s" % (x, suf))
    return "%.3g" % v


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def series(results, workload, ingress, xkey, ykey):
    """{mode: [(x, y), ...]} sorted by x; several runs at the same x: the median."""
    pts = {}
    for r in results:
        if (r.get("workload") != workload or r.get("ingress") != ingress or not r.get("ok")
                or r.get("sync") is not True or r.get(ykey) is None or r.get(xkey) is None
                or r.get(ykey) < 0):
            continue
        pts.setdefault(r.get("mode"), {}).setdefault(r[xkey], []).append(r[ykey])
    return {m: sorted((x, median(ys)) for x, ys in byx.items()) for m, byx in pts.items()}


def ordered(modes):
    return [m for m in MODES if m in modes] + sorted(m for m in modes if m not in MODES)


def draw_lines(ax, data, annotate=True, style="-", marker="o", alpha=1.0, label_suffix="",
               floor=None):
    for mode in ordered(data):
        xs = [p[0] for p in data[mode]]
        ys = [p[1] for p in data[mode]]
        ax.plot(xs, ys, style, marker=marker, color=COLORS.get(mode), alpha=alpha,
                label=mode + label_suffix)
    if annotate:
        label_points(ax, data, floor)


def label_points(ax, data, floor=None):
    """Each point's value next to it. At one x the highest point's label goes
    above it, the lowest's below, any other's to the right, so close points
    of different modes do not overprint; floor: a label meant to go below a
    point lower than this goes right of it (a linear axis from 0 would cut it)."""
    at = {}
    for mode, pts in data.items():
        for x, y in pts:
            at.setdefault(x, []).append((y, mode))
    for x, pts in at.items():
        pts.sort()
        for i, (y, mode) in enumerate(pts):
            if i == len(pts) - 1:
                off, ha = (0, 9), "center"
            elif i == 0 and (floor is None or y >= floor):
                off, ha = (0, -10), "center"
            else:
                off, ha = (7, 0), "left"
            ax.annotate(si(y), (x, y), textcoords="offset points", xytext=off, ha=ha,
                        va="center", fontsize=7, color=COLORS.get(mode))


def log_x(ax, xs):
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator
    xs = sorted(set(xs))
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    if len(xs) == 1:   # one point: a decade either side, not matplotlib's zero-width range
        ax.set_xlim(xs[0] / 3.0, xs[0] * 3.0)
    else:
        ax.set_xlim(xs[0] / 1.6, xs[-1] * 1.6)


def no_data(ax, what):
    ax.text(0.5, 0.5, "no data in these results\n(%s)" % what, ha="center", va="center",
            transform=ax.transAxes, fontsize=9, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def plot(results, out, title=None):
    """Writes out; returns a one-line summary. Raises ImportError without matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    stream = series(results, "counter-spread", "stream", "addresses", "msgs_per_s")
    calls = series(results, "greeter", "call", "clients", "msgs_per_s")
    p50 = series(results, "greeter", "call", "clients", "p50_ms")
    p99 = series(results, "greeter", "call", "clients", "p99_ms")
    if not stream and not calls:
        return "plot: nothing to plot (no ok, sync counter-spread stream or greeter call run); " \
               "%s not written" % out

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.2))
    def throughput_panel(ax, data, what, title, xlabel, ylabel):
        if data:
            top = max(y for pts in data.values() for _, y in pts)
            draw_lines(ax, data, floor=0.08 * top)
            log_x(ax, [x for pts in data.values() for x, _ in pts])
            ax.set_ylim(0, top * 1.18)
            ax.legend(loc="best", fontsize=8)
        else:
            no_data(ax, what)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))

    throughput_panel(axes[0], stream, "counter-spread, SendStream",
                     "(a) counter-spread, SendStream: throughput", "addresses (log)",
                     "messages/s (processed, durable)")
    throughput_panel(axes[1], calls, "greeter, unary Call", "(b) greeter, unary Call: throughput",
                     "concurrent clients (log)", "calls/s")

    ax = axes[2]
    if p50:
        draw_lines(ax, p50, label_suffix=" p50")
        if p99:
            draw_lines(ax, p99, annotate=False, style=":", marker=".", alpha=0.7,
                       label_suffix=" p99")
        log_x(ax, [x for pts in p50.values() for x, _ in pts])
        ax.set_yscale("log")
        ax.margins(y=0.12)   # room for the value labels below the lowest point
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.legend(loc="best", fontsize=7, ncol=2)
        ax.grid(True, which="major", axis="y", alpha=0.3)
    else:
        no_data(ax, "greeter, unary Call")
    ax.set_title("(c) greeter, unary Call: latency", fontsize=10)
    ax.set_xlabel("concurrent clients (log)")
    ax.set_ylabel("ms, request to reply (log)")

    for ax in axes[:2]:
        ax.grid(True, axis="y", alpha=0.3)
    plotted = sum(1 for r in results if r.get("ok") and r.get("sync") is True and (
        (r.get("workload"), r.get("ingress")) in (("counter-spread", "stream"), ("greeter", "call"))))
    note = "%d of %d runs plotted: ok, checkpoint.sync = true" % (plotted, len(results))
    color = "dimgray"
    if any(r.get("callgrind") or r.get("callgrind_report") for r in results):
        note += "; UNDER CALLGRIND (--callgrind): ~50x slower, not representative"
        color = "red"
    fig.suptitle(title or "statemesh bench", fontsize=12)
    fig.text(0.5, 0.905, note, ha="center", fontsize=8, color=color)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return "plot: wrote %s (%d of %d runs)" % (out, plotted, len(results))


def main(argv=None):
    ap = argparse.ArgumentParser(description="draws build/bench/results.json (test/bench/run.py) "
                                             "as a PNG: throughput vs addresses, calls/s and "
                                             "latency vs clients")
    ap.add_argument("results", help="results.json written by test/bench/run.py")
    ap.add_argument("out", help="the PNG to write, e.g. build/bench/scaling.png")
    ap.add_argument("--title", help="figure title (default: the results file and its time)")
    args = ap.parse_args(argv)
    try:
        with open(args.results) as f:
            results = json.load(f)
        if not isinstance(results, list):
            raise ValueError("not a list of runs")
    except (OSError, ValueError) as e:
        print("plot: cannot read %s: %s" % (args.results, e), file=sys.stderr)
        return 2
    title = args.title or "statemesh bench: %s, %s" % (
        os.path.basename(args.results),
        time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(args.results))))
    try:
        print(plot(results, args.out, title))
    except ImportError as e:
        print("plot skipped: python3-matplotlib not installed (apt-get install python3-matplotlib)"
              " [%s]" % e, file=sys.stderr)
        return EXIT_NO_MATPLOTLIB
    return 0


if __name__ == "__main__":
    sys.exit(main())
