#!/usr/bin/env python3
"""The cost table (issue 16) that `make bench` prints at its end.

Every benchmark script that measures a row of it calls record(KEY, ...) where it measures;
the rows go as JSON lines to the file named by $BENCH_TABLE (tests/bench/run.sh sets it;
without it record() does nothing). `table.py FILE` prints them in the order below, each
with its target, and says which rows no script measured.

    record(key, without, with_, result, note="")
      key      one of ROWS' keys
      without  the measure without the shim (a string with its unit), or ""
      with_    the same with the shim
      result   the row's figure: a ratio, a difference, a share
      note     what else a reader needs (delivered counts, the run's spread)
"""
import json
import os
import sys

# (key, measure, target), in the order.
ROWS = [
    ("app_cpu", "app-thread CPU per span, UDP connect loop (sampled)", "<= +100 ns"),
    ("app_cpu_off", "app-thread CPU per span, the sampler says no", "<= +30 ns"),
    ("proc_cpu", "whole-process CPU per delivered span (exporter included)", "<= +0.5 us"),
    ("proc_cpu_default", "whole-process CPU per span, default queue, loop at full speed", ""),
    ("no_collector", "whole-process CPU per call, no collector reachable", "<= +100 ns"),
    ("share_200k", "spans delivered, one process at 200k spans/s, default queue", ">= 99.9%"),
    ("share_400k", "spans delivered, one process at 400k spans/s, default queue", ""),
    ("pgbench_simple", "pgbench -S -M simple, 1 client, Unix socket (TPS ratio)", ">= 0.98"),
    ("pgbench_prepared", "pgbench -S -M prepared, 1 client, Unix socket (TPS ratio)", ">= 0.98"),
    ("pgbench_pipeline", "pgbench pipeline mode, 10 SELECTs per pipeline (TPS ratio)",
     ">= 0.97, all spans delivered"),
    ("libcurl", "libcurl, 2,000 GETs on one handle to nginx (req/s ratio)", ">= 0.97"),
    ("fork_loop", "fork loop, child: one connect, _exit (time ratio)", "<= x1.2"),
    ("spawn", "/bin/true via posix_spawn x1000, added per process over an empty .so",
     "<= +150 us"),
    ("run_true", "spanshim run -- /bin/true, wall", "<= 10 ms"),
    ("shell_loop", "traced process in a shell loop (sh runs /bin/true x1000, process spans "
     "on), added per process", ""),
    ("spanshimd_cpu", "spanshimd spans per CPU-second (connect / libcurl / SQL spans)",
     ">= 3 M each"),
    ("rss", "RSS added to a process after 10k connects", "<= +1 MiB"),
    ("anchor_js", "anchor: OTel JS SDK, CPU per span (BatchSpanProcessor, OTLP/protobuf)",
     "(spanshim's whole-process figure above)"),
]
KEYS = {k for k, _, _ in ROWS}


def record(key, without, with_, result, note=""):
    """Appends one row to $BENCH_TABLE (no-op when unset). key must be one of ROWS'."""
    if key not in KEYS:
        raise ValueError("bench table: unknown row %r" % key)
    path = os.environ.get("BENCH_TABLE")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"key": key, "without": without, "with": with_,
                            "result": result, "note": note}) + "\n")


def load_average():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def show(path, title="issue 16 cost table"):
    got = {}
    try:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                got.setdefault(r["key"], []).append(r)
    except OSError:
        pass
    print("\n== %s (%d cores, load average now %s; with / without the shim, same run)"
          % (title, os.cpu_count() or 0, load_average()))
    hdr = ("measure", "without", "with", "result", "target", "note")
    lines = []
    for key, measure, target in ROWS:
        for r in got.get(key, [{"without": "", "with": "", "result": "not measured",
                                "note": ""}]):
            lines.append((measure, r["without"], r["with"], r["result"], target, r["note"]))
    widths = [max(len(str(x[i])) for x in lines + [hdr]) for i in range(5)]
    for row in [hdr] + lines:
        print("  " + "  ".join("%-*s" % (widths[i], row[i]) for i in range(5)) +
              ("  " + row[5] if row[5] else ""))


if __name__ == "__main__":
    show(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_TABLE", ""))
