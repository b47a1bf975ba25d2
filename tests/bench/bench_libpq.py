#!/usr/bin/env python3
"""libpq tracing cost (issues 3 and 16): `pgbench -S -T SECS -c 1` over the Unix socket,
-M simple and -M prepared, and pipeline mode (a script of 10 SELECTs between
\\startpipeline and \\endpipeline, -M prepared), without and with the shim (a spanshimd
receiving), interleaved ROUNDS times against a throwaway cluster. Prints the median TPS of
each, their ratio (targets: >= 0.98 simple and prepared, >= 0.97 pipeline) and the spans
delivered per statement run (spanshimd's /stats; every statement is one span).
Reports; never fails on timing.

    python3 tests/bench/bench_libpq.py [BUILD]     (BENCH_PQ_SECS=5, BENCH_PQ_ROUNDS=3)
"""
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pg as pgmod  # noqa: E402

SECS = int(os.environ.get("BENCH_PQ_SECS", "5"))
ROUNDS = int(os.environ.get("BENCH_PQ_ROUNDS", "3"))
PIPELINE = 10  # SELECTs per pipeline

import table  # noqa: E402  (tests/bench/table.py: the issue 16 cost table)
from bench import Collector, med, settled  # noqa: E402


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
                    r0 = settled(col, 0.1)
                    traced, stmts = pgbench(cluster, mode, traced_env, sc)
                    r1 = settled(col)
                    got = r1[0] - r0[0]
                    res.setdefault(name, []).append((plain, traced, got, r1[1] - r0[1], stmts))
        finally:
            col.stop()
        print("\n| pgbench -c 1, Unix socket | without | with | ratio | spans delivered per "
              "statement | dropped |")
        print("|---|---|---|---|---|---|")
        for name, _, _ in plan:
            rs = res[name]
            p, t = med([x[0] for x in rs]), med([x[1] for x in rs])
            # Spans beyond the statements: pgbench's connect and its libpq connect spans.
            per = med([x[2] / x[4] for x in rs])
            dropped = med([x[3] for x in rs])
            print("| %s | %.0f tps | %.0f tps | %.3f | %.3f | %d |" % (name, p, t, t / p, per,
                                                                      dropped), flush=True)
            table.record("pgbench_" + name, "%.0f tps" % p, "%.0f tps" % t, "%.3f" % (t / p),
                         "%.3f spans delivered per statement, %d dropped; ratios of runs: %s"
                         % (per, dropped, " ".join("%.3f" % (x[1] / x[0]) for x in rs)))
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
