#!/usr/bin/env python3
"""libpq tracing cost (issue 3): `pgbench -S -T SECS -c 1` over the Unix socket, -M simple
and -M prepared, without and with the shim (a spanshimd receiving), in the same run,
against a throwaway cluster. Prints TPS for each, the ratio (targets: >= 0.98 simple,
>= 0.97 prepared) and the spans exported vs dropped. Reports; never fails on timing.

    python3 tests/bench/bench_libpq.py [BUILD]     (BENCH_PQ_SECS=10, BENCH_PQ_ROUNDS=2)
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pg as pgmod  # noqa: E402

SECS = int(os.environ.get("BENCH_PQ_SECS", "10"))
ROUNDS = int(os.environ.get("BENCH_PQ_ROUNDS", "2"))


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SPANSHIM_", "OTEL_", "PG")) and k != "LD_PRELOAD"}


def pgbench(cluster, mode, env):
    r = subprocess.run(["pgbench", "-n", "-S", "-T", str(SECS), "-c", "1", "-M", mode,
                        "-h", cluster.sockdir, "-p", str(cluster.port), "-U",
                        cluster.superuser, "postgres"],
                       env=env, capture_output=True, text=True, timeout=SECS + 60)
    if r.returncode != 0:
        raise RuntimeError("pgbench: " + r.stderr[-300:])
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout)
    if not m:
        m = re.search(r"tps = ([0-9.]+)", r.stdout)
    return float(m.group(1))


def count_spans(path):
    spans = dropped = 0
    with open(path) as f:
        for line in f:
            doc = json.loads(line)
            for rs in doc.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    spans += len(ss.get("spans", []))
                    for a in ss.get("scope", {}).get("attributes", []):
                        if a["key"] == "spanshim.spans.dropped":
                            dropped = max(dropped, int(a["value"]["intValue"]))
    return spans, dropped


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
        print("pgbench -S -T %d -c 1 over the Unix socket, %d rounds (best of each)"
              % (SECS, ROUNDS))
        rows = []
        for mode in ("simple", "prepared"):
            sock = os.path.join(tmp, "c-%s.sock" % mode)
            out = os.path.join(tmp, "spans-%s.jsonl" % mode)
            col = subprocess.Popen([os.path.join(build, "spanshimd"), "--socket", sock,
                                    "--out", out], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=clean_env())
            while not os.path.exists(sock):
                time.sleep(0.01)
            traced_env = dict(clean_env(), LD_PRELOAD=os.path.join(build, "libspanshim.so"),
                              SPANSHIM_ENDPOINT="unix:" + sock)
            plain, traced = [], []
            for _ in range(ROUNDS):
                plain.append(pgbench(cluster, mode, clean_env()))
                traced.append(pgbench(cluster, mode, traced_env))
            col.terminate()
            col.wait(20)
            spans, dropped = count_spans(out)
            ratio = max(traced) / max(plain)
            print("  -M %-8s without %9.0f tps  with %9.0f tps  ratio %.3f  spans exported %d,"
                  " dropped %d" % (mode, max(plain), max(traced), ratio, spans, dropped))
            rows.append((mode, max(plain), max(traced), ratio, spans, dropped))
        print("\n| pgbench -S -c 1, Unix socket | without | with | ratio | spans exported / dropped |")
        print("|---|---|---|---|---|")
        for mode, p, t, ratio, spans, dropped in rows:
            print("| -M %s | %.0f tps | %.0f tps | %.3f | %d / %d |" % (mode, p, t, ratio, spans,
                                                                      dropped))
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
