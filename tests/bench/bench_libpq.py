#!/usr/bin/env python3
"""libpq tracing cost (issues 3 and 16): `pgbench -S -T SECS -c 1` over the Unix socket,
-M simple and -M prepared, and pipeline mode (a script of 10 SELECTs between
\\startpipeline and \\endpipeline, -M prepared), without and with the shim (a spanshimd
receiving), interleaved ROUNDS times against a throwaway cluster. Prints the median TPS of
each, the with/without ratio of every round (median, quartiles, min-max; targets: >= 0.98
simple and prepared, >= 0.97 pipeline) and the statement spans delivered and dropped
(spanshimd's /stats; every statement is one span). Then, unless BENCH_PQ_CALLGRIND=0, the
instructions per statement under callgrind (exact at any load): pgbench's own thread
untraced and traced, and the exporter thread per span. Reports; never fails on timing.

    python3 tests/bench/bench_libpq.py [BUILD]     (BENCH_PQ_SECS=4, BENCH_PQ_ROUNDS=7)
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pg as pgmod  # noqa: E402

SECS = int(os.environ.get("BENCH_PQ_SECS", "4"))
ROUNDS = int(os.environ.get("BENCH_PQ_ROUNDS", "7"))
CALLGRIND = os.environ.get("BENCH_PQ_CALLGRIND", "1") != "0"
PIPELINE = 10  # SELECTs per pipeline

import table  # noqa: E402  (tests/bench/table.py: the issue 16 cost table)
from bench import Collector, marginal_ir, med, settled, spread  # noqa: E402


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SPANSHIM_", "OTEL_", "PG")) and k != "LD_PRELOAD"}


def pgbench(cluster, mode, env, script=None):
    """(TPS, statements run) of one pgbench run; script: a custom script file (-f)."""
    args = ["-f", script] if script else ["-S"]
    r = subprocess.run(["pgbench", "-n", "-T", str(SECS), "-c", "1", "-M", mode] + args +
                       ["-h", cluster.sockdir, "-p", str(cluster.port), "-U",
                        cluster.superuser, "postgres"],
                       env=env, capture_output=True, text=True, timeout=SECS + 60)
    if r.returncode != 0:
        raise RuntimeError("pgbench: " + r.stderr[-300:])
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    if not m:
        m = re.search(r"tps = ([0-9.]+)", r.stdout)
    tx = re.search(r"number of transactions actually processed: ([0-9]+)", r.stdout)
    return float(m.group(1)), int(tx.group(1)) * (PIPELINE if script else 1)


def sql_spans(col):
    """spanshimd's count of PostgreSQL spans with a statement received so far."""
    return int((col.stats() or {}).get("sql_spans", 0))


def pgbench_bin():
    """The pgbench executable itself (Debian's /usr/bin/pgbench is a Perl wrapper, which
    callgrind would measure instead), or None."""
    try:
        p = os.path.join(pgmod.find_bindir(), "pgbench")
    except RuntimeError:
        return None
    return p if os.access(p, os.X_OK) else None


def instructions(cluster, traced_env, script, tmp):
    """Instructions per statement (callgrind, the difference between two -t runs): pgbench's
    thread untraced and traced, the exporter thread per span. Printed; per mode a note for
    the cost table (empty without valgrind or the pgbench binary)."""
    exe = pgbench_bin()
    if exe is None:
        return {}
    notes = {}
    print("\ninstructions per statement (callgrind; pgbench's thread, the exporter thread)")
    for name, mode, sc, n1, n2, per in (("simple", "simple", None, 500, 1500, 1),
                                        ("prepared", "prepared", None, 500, 1500, 1),
                                        ("pipeline", "prepared", script, 100, 300, PIPELINE)):
        def argv(n, mode=mode, sc=sc):
            return [exe, "-n", "-t", str(n), "-c", "1", "-M", mode] + (
                ["-f", sc] if sc else ["-S"]) + ["-h", cluster.sockdir, "-p",
                                                 str(cluster.port), "-U", cluster.superuser,
                                                 "postgres"]
        plain = marginal_ir(argv, clean_env(), tmp, n1, n2)
        traced = marginal_ir(argv, traced_env, tmp, n1, n2)
        if plain is None or traced is None:
            print("  (callgrind: no valgrind, or a run failed)")
            return {}
        app, exp = (traced[0] - plain[0]) / per, traced[1] / per
        print("  %-9s untraced %.0f, traced %+.0f on pgbench's thread; exporter %.0f per span"
              % (name, plain[0] / per, app, exp), flush=True)
        notes[name] = "; callgrind per statement: %+.0f on pgbench's thread (untraced %.0f), " \
            "exporter %.0f per span" % (app, plain[0] / per, exp)
    return notes


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    tmp = tempfile.mkdtemp(prefix="ss-bpq-")
    cluster = pgmod.PgCluster()
    try:
        r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", cluster.sockdir, "-p",
                            str(cluster.port), "-U", cluster.superuser, "postgres"],
                           env=clean_env(), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("pgbench -i: " + r.stderr)
        script = os.path.join(tmp, "pipeline.sql")
        with open(script, "w") as f:
            f.write("\\set aid random(1, 100000 * :scale)\n\\startpipeline\n" +
                    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n" * PIPELINE +
                    "\\endpipeline\n")
        print("pgbench -T %d -c 1 over the Unix socket, %d interleaved rounds, medians"
              % (SECS, ROUNDS))
        col = Collector(os.path.join(build, "spanshimd"), tmp, "col", out="/dev/null")
        traced_env = dict(clean_env(), LD_PRELOAD=os.path.join(build, "libspanshim.so"),
                          SPANSHIM_ENDPOINT=col.endpoint)
        plan = [("simple", "simple", None), ("prepared", "prepared", None),
                ("pipeline", "prepared", script)]
        res = {}
        try:
            for _ in range(ROUNDS):
                for name, mode, sc in plan:
                    plain = pgbench(cluster, mode, clean_env(), sc)[0]
                    r0, q0 = settled(col, 0.1), sql_spans(col)
                    traced, stmts = pgbench(cluster, mode, traced_env, sc)
                    r1, q1 = settled(col), sql_spans(col)
                    res.setdefault(name, []).append((plain, traced, q1 - q0, r1[1] - r0[1], stmts))
            ir = instructions(cluster, traced_env, script, tmp) if CALLGRIND else {}
        finally:
            col.stop()
        print("\n| pgbench -c 1, Unix socket | without | with | ratio per round | statement "
              "spans delivered | dropped |")
        print("|---|---|---|---|---|---|")
        for name, _, _ in plan:
            rs = res[name]
            p, t = med([x[0] for x in rs]), med([x[1] for x in rs])
            ratios = [x[1] / x[0] for x in rs]
            # SQL spans delivered include pgbench's own setup queries (the scale check: two
            # a run in -S mode); every span is delivered or counted as dropped.
            got, stmts, dropped = (sum(x[2] for x in rs), sum(x[4] for x in rs),
                                   sum(x[3] for x in rs))
            print("| %s | %.0f tps | %.0f tps | %s | %d SQL spans for %d statements | %d |" % (
                name, p, t, spread(ratios), got, stmts, dropped), flush=True)
            table.record("pgbench_" + name, "%.0f tps" % p, "%.0f tps" % t,
                         "%.3f" % med(ratios),
                         "per-round ratio %s; %s statement spans delivered (%d SQL spans for %d "
                         "statements, %d dropped)%s" % (
                             spread(ratios), "all" if dropped == 0 else "not all", got, stmts,
                             dropped, ir.get(name, "")))
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
