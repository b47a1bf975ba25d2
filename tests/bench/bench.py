#!/usr/bin/env python3
"""spanshim benchmarks (driven by tests/bench/run.sh BUILD). Prints numbers and a summary
table; never fails on timing (exit status is non-zero only when a benchmark could not run
at all).

  1. hot path: added ns per span on the app thread, a connect loop without vs with the
     shim (a spanshimd running), min of ROUNDS runs each, same run of this script.
  2. process start+exit: /bin/true x N with vs without LD_PRELOAD (posix_spawn loop);
     fork loop (300 forks from a 4-thread process); `spanshim run -- /bin/true` wall.
  3. spanshimd ingest: spans/s written by spanshimd while 4 shimmed processes each make
     200k UDP connects at once (spanshimd's /stats counters; line counting as fallback).
  4. memory: VmRSS/VmHWM of a program making 10k connects, with vs without the shim.
  5. real programs: TPS of pgbench (select-only; and with a new connection per
     transaction, -C) against a throwaway PostgreSQL, and requests/s of one curl process
     making BENCH_CURL requests with a new connection each, with vs without the shim.

Environment knobs: BENCH_N (connects, default 200000), BENCH_ROUNDS (3), BENCH_SPAWNS
(1000), BENCH_INGEST_PROCS (4), BENCH_INGEST_N (200000).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("BENCH_N", "200000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SPAWNS = int(os.environ.get("BENCH_SPAWNS", "1000"))
INGEST_PROCS = int(os.environ.get("BENCH_INGEST_PROCS", "4"))
INGEST_N = int(os.environ.get("BENCH_INGEST_N", "200000"))
PGBENCH_SECS = int(os.environ.get("BENCH_PGBENCH_SECS", "4"))
CURL_N = int(os.environ.get("BENCH_CURL", "300"))

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))


def kv(out):
    d = {}
    for w in out.split():
        if "=" in w:
            k, v = w.split("=", 1)
            d[k] = v
    return d


class Collector:
    def __init__(self, spanshimd, tmp, name):
        d = os.path.join(tmp, name)
        os.mkdir(d, 0o700)
        self.sock = os.path.join(d, "c.sock")
        self.out = os.path.join(d, "spans.jsonl")
        self.err = open(os.path.join(d, "spanshimd.err"), "w")
        self.proc = subprocess.Popen([spanshimd, "--socket", self.sock, "--out", self.out],
                                     stdout=subprocess.DEVNULL, stderr=self.err,
                                     env=clean_env())
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("spanshimd did not start")
            time.sleep(0.01)
        self.endpoint = "unix:" + self.sock

    def stats(self):
        """spanshimd's /stats document, or None if it has none."""
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(self.sock)
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: spanshimd\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                if body.endswith(b"\n") and body.strip().startswith(b"{"):
                    try:
                        json.loads(body)
                        break
                    except ValueError:
                        pass
            s.close()
            head, _, body = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                return None
            return json.loads(body)
        except (OSError, ValueError):
            return None

    def spans_written(self):
        """Spans received (from /stats), else spans in the output file."""
        st = self.stats()
        if st and "spans_received" in st:
            return int(st["spans_received"])
        return count_spans(self.out)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def count_spans(path):
    n = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                n += line.count(b'"spanId"')
    except OSError:
        pass
    return n


def spans_and_dropped(path, pid):
    """(spans delivered, max spanshim.spans.dropped) for one pid in an OTLP JSON file."""
    got, dropped = 0, 0
    try:
        f = open(path)
    except OSError:
        return 0, 0
    with f:
        for line in f:
            if ('"intValue":"%d"' % pid) not in line and ('"intValue":%d' % pid) not in line:
                continue
            doc = json.loads(line)
            for rs in doc.get("resourceSpans", []):
                attrs = {a["key"]: a["value"] for a in rs.get("resource", {}).get(
                    "attributes", [])}
                if int(attrs.get("process.pid", {}).get("intValue", -1)) != pid:
                    continue
                for ss in rs.get("scopeSpans", []):
                    got += len(ss.get("spans", []))
                    for a in ss.get("scope", {}).get("attributes", []):
                        if a["key"] == "spanshim.spans.dropped":
                            dropped = max(dropped, int(a["value"].get("intValue", 0)))
    return got, dropped


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SPANSHIM_", "OTEL_")) and k != "LD_PRELOAD"}


def run(argv, lib=None, endpoint=None, extra=None, timeout=600):
    env = clean_env()
    if lib:
        env["LD_PRELOAD"] = lib
    if endpoint:
        env["SPANSHIM_ENDPOINT"] = endpoint
    env.update(extra or {})
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr))
    return kv(r.stdout)


def hot_path(b, tmp, summary):
    print("== 1. added time per span on the app thread (connect loop, N=%d, min of %d)" %
          (N, ROUNDS), flush=True)
    col = Collector(b["spanshimd"], tmp, "hot")
    loop = b["connect_loop"]
    try:
        for mode in ("udp", "refused"):
            n = N if mode == "udp" else max(N // 4, 1000)
            variants = [("without shim", None, None),
                        ("shim, default queue (2048)", b["lib"], {}),
                        ("shim, queue fits all", b["lib"],
                         {"OTEL_BSP_MAX_QUEUE_SIZE": str(2 * n + 4096),
                          "SPANSHIM_EXIT_FLUSH_MS": "10000"})]
            res, cpu = {}, {}
            for name, lib, extra in variants:
                best, deliv = None, ""
                for _ in range(ROUNDS):
                    o = run([loop, str(n), mode], lib=lib, endpoint=col.endpoint,
                            extra=extra)
                    ns = float(o["ns_per_op"])
                    c = float(o["cpu_ns_per_op"])
                    cpu[name] = min(c, cpu.get(name, c))
                    if best is None or ns < best:
                        best = ns
                        if lib:
                            time.sleep(0.3)
                            got, dropped = spans_and_dropped(col.out, int(o["pid"]))
                            deliv = " (delivered %d, dropped %d of %s)" % (
                                got, dropped, o["n"])
                res[name] = best
                print("  %-8s %-28s %9.1f ns/op wall, %9.1f ns/op app-thread CPU%s" % (
                    mode, name, best, cpu[name], deliv), flush=True)
            base, cbase = res["without shim"], cpu["without shim"]
            for name in list(res)[1:]:
                d, dc = res[name] - base, cpu[name] - cbase
                short = name.split(", ")[1]
                print("  %-8s delta per span, %-16s %+9.1f ns wall, %+9.1f ns app-thread CPU" % (
                    mode, short, d, dc))
                summary.append(("ns/span added on app thread (CPU), %s, %s" % (mode, short),
                                "%+.1f ns" % dc, "%.1f -> %.1f ns/op" % (cbase, cpu[name])))
                summary.append(("ns/span added, wall, %s connect, %s" % (mode, short),
                                "%+.1f ns" % d, "%.1f -> %.1f ns/op" % (base, res[name])))
    finally:
        col.stop()


def spawn(b, tmp, summary):
    print("== 2. process start+exit: /bin/true x %d (posix_spawn loop)" % SPAWNS, flush=True)
    col = Collector(b["spanshimd"], tmp, "spawn")
    try:
        # An empty preloaded .so separates the dynamic loader's cost of any preload from
        # what the shim itself does at start and exit.
        empty = os.path.join(tmp, "empty.so")
        src = empty[:-3] + ".c"
        with open(src, "w") as f:
            f.write("int spanshim_bench_empty;\n")
        cc = os.environ.get("CC", "cc")
        if subprocess.run([cc, "-shared", "-fPIC", "-o", empty, src],
                          capture_output=True).returncode != 0:
            empty = None
        plan = [("without", "-"), ("with LD_PRELOAD", b["lib"])]
        if empty:
            plan.append(("empty .so preloaded", empty))
        res = {}
        for name, pre in plan * 2:  # interleaved, twice: the min of each is reported
            o = run([b["spawn_loop"], str(SPAWNS), pre], endpoint=col.endpoint)
            us = float(o["us_per_proc"])
            res[name] = min(us, res.get(name, us))
            print("  %-24s %8.1f us/process" % (name, us), flush=True)
        base, shim = res["without"], res["with LD_PRELOAD"]
        print("  delta %+8.1f us/process" % (shim - base))
        detail = "%.1f -> %.1f us/process" % (base, shim)
        if empty:
            print("  delta over an empty preloaded .so %+8.1f us/process" % (
                shim - res["empty .so preloaded"]))
            detail += "; %+.1f over an empty .so" % (shim - res["empty .so preloaded"])
        summary.append(("process start+exit added", "%+.1f us" % (shim - base), detail))
    finally:
        col.stop()


def fork_loop(b, tmp, summary):
    """Issue 12/16: 300 forks from a 4-thread process, each child one UDP connect then
    _exit (its span delivered at exit), without the shim, with SPANSHIM_HOOKS=none (the
    shim's fork and exit handling alone) and with the shim; interleaved, best of two."""
    n = 300
    print("== 2c. fork loop: %d forks from a 4-thread process, child: one connect, _exit" % n,
          flush=True)
    col = Collector(b["spanshimd"], tmp, "forkloop")
    try:
        plan = [("without", None, {}), ("hooks none", b["lib"], {"SPANSHIM_HOOKS": "none"}),
                ("with shim", b["lib"], {})]
        res = {}
        for name, lib, extra in plan * 2:
            o = run([b["fork_loop"], str(n), "4"], lib=lib, endpoint=col.endpoint, extra=extra)
            us = float(o["us_per_fork"])
            res[name] = min(us, res.get(name, us))
            print("  %-12s %9.1f us/fork" % (name, us), flush=True)
        base = res["without"]
        for name in ("hooks none", "with shim"):
            r = res[name] / base if base else 0
            print("  %-12s x%.2f (%+.1f us per fork)" % (name, r, res[name] - base))
            summary.append(("fork loop ratio, %s" % name, "x%.2f" % r,
                            "%.1f -> %.1f us/fork (child: connect, _exit)" % (base, res[name])))
    finally:
        col.stop()


def run_true(b, tmp, summary):
    """Issue 16: wall time of `spanshim run -- /bin/true` (private collector started and
    stopped), against /bin/true alone; best of 5."""
    print("== 2d. spanshim run -- /bin/true, wall", flush=True)
    out = os.path.join(tmp, "run-true.jsonl")
    best = {}
    for name, argv in [("/bin/true", ["/bin/true"]),
                       ("spanshim run", [b["spanshim"], "run", "-q", "--out", out, "--",
                                         "/bin/true"])] * 5:
        t0 = time.monotonic()
        subprocess.run(argv, env=clean_env(), check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ms = (time.monotonic() - t0) * 1e3
        best[name] = min(ms, best.get(name, ms))
    print("  /bin/true %.1f ms, spanshim run -- /bin/true %.1f ms" % (
        best["/bin/true"], best["spanshim run"]))
    summary.append(("spanshim run -- /bin/true, wall", "%.1f ms" % best["spanshim run"],
                    "/bin/true alone %.1f ms" % best["/bin/true"]))


def shell_loop(b, tmp, summary):
    """Issue 6: cost per traced process in a 1,000-process shell loop, process spans on
    (what `spanshim run` does), with vs without the shim, same collector."""
    n = 1000
    print("== 2b. shell loop: sh runs /bin/true x %d, process spans on" % n, flush=True)
    col = Collector(b["spanshimd"], tmp, "shloop")
    script = "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done" % n
    try:
        res = {}
        for name, lib in [("without", None), ("with shim", b["lib"])] * 2:
            env = clean_env()
            if lib:
                env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint,
                            "SPANSHIM_PROCESS_SPAN": "1"})
            t0 = time.monotonic()
            subprocess.run(["sh", "-c", script], env=env, check=True)
            us = (time.monotonic() - t0) * 1e6 / n
            res[name] = min(us, res.get(name, us))
            print("  %-10s %8.1f us/process" % (name, us), flush=True)
        time.sleep(0.5)
        got = count_spans(col.out)
        d = res["with shim"] - res["without"]
        print("  delta %+8.1f us/process (%d spans delivered for %d traced processes)" % (
            d, got, 2 * n))
        summary.append(("traced process in a shell loop (process spans on)", "%+.1f us" % d,
                        "%.1f -> %.1f us/process" % (res["without"], res["with shim"])))
    finally:
        col.stop()


def ingest(b, tmp, summary):
    print("== 3. spanshimd ingest: %d shimmed processes x %d UDP connects at once" % (
        INGEST_PROCS, INGEST_N), flush=True)
    col = Collector(b["spanshimd"], tmp, "ingest")
    try:
        src = "/stats" if col.stats() is not None else "line count"
        env = clean_env()
        env.update({"LD_PRELOAD": b["lib"], "SPANSHIM_ENDPOINT": col.endpoint,
                    "OTEL_BSP_MAX_QUEUE_SIZE": "65536", "OTEL_BSP_SCHEDULE_DELAY": "50",
                    "SPANSHIM_EXIT_FLUSH_MS": "5000"})
        t0 = time.monotonic()
        procs = [subprocess.Popen([b["connect_loop"], str(INGEST_N), "udp"], env=env,
                                  stdout=subprocess.PIPE, text=True)
                 for _ in range(INGEST_PROCS)]
        first = last = None
        prev = 0
        stable_since = None
        while True:
            cur = col.spans_written() if src == "/stats" else count_spans(col.out)
            now = time.monotonic()
            if cur > prev:
                if first is None:
                    first = now
                last, prev, stable_since = now, cur, None
            elif all(p.poll() is not None for p in procs):
                stable_since = stable_since or now
                if now - stable_since > 0.5:
                    break
            if now - t0 > 120:
                break
            time.sleep(0.02)
        pids = [int(kv(p.communicate()[0])["pid"]) for p in procs]
        wall = (last - first) if first and last and last > first else 0
        total_dropped = 0
        col.stop()
        written = count_spans(col.out)
        for pid in pids:
            total_dropped += spans_and_dropped(col.out, pid)[1]
        produced = INGEST_PROCS * (INGEST_N + 1000)
        rate = written / wall if wall else 0
        print("  produced %d, written %d, dropped (reported) %d, collector busy %.2f s "
              "(%s)" % (produced, written, total_dropped, wall, src))
        print("  ingest %.0f spans/s" % rate, flush=True)
        summary.append(("spanshimd ingest", "%.0f spans/s" % rate,
                        "%d written in %.2f s, %d dropped by shims" % (written, wall,
                                                                      total_dropped)))
    finally:
        col.stop()


def memory(b, tmp, summary):
    print("== 4. memory: 10k connects then VmRSS/VmHWM", flush=True)
    col = Collector(b["spanshimd"], tmp, "rss")
    try:
        plain = run([b["rss"], "10000"])
        shim = run([b["rss"], "10000"], lib=b["lib"], endpoint=col.endpoint)
        for name, o in (("without", plain), ("with shim", shim)):
            print("  %-10s VmRSS %6s kB  VmHWM %6s kB" % (name, o["vmrss_kb"], o["vmhwm_kb"]))
        d = int(shim["vmrss_kb"]) - int(plain["vmrss_kb"])
        dh = int(shim["vmhwm_kb"]) - int(plain["vmhwm_kb"])
        print("  delta VmRSS %+d kB, VmHWM %+d kB" % (d, dh), flush=True)
        summary.append(("RSS added (10k connects)", "%+d kB" % d,
                        "%s -> %s kB; HWM %+d kB" % (plain["vmrss_kb"], shim["vmrss_kb"],
                                                      dh)))
    finally:
        col.stop()


def real_programs(b, tmp, summary):
    print("== 5. real programs with vs without the shim (ratio = with / without)",
          flush=True)
    import pg  # tests/integration/pg.py
    import harness
    col = Collector(b["spanshimd"], tmp, "real")
    cluster = srv = None
    try:
        if shutil.which("pgbench"):
            cluster = pg.PgCluster()
            base = ["pgbench", "-h", cluster.host, "-p", str(cluster.port), "-U",
                    cluster.superuser]
            r = subprocess.run(base + ["-i", "-q", "-s", "1", "postgres"], env=clean_env(),
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise RuntimeError("pgbench -i: " + r.stderr)
            for label, extra in (("pgbench -S", []), ("pgbench -S -C", ["-C"])):
                tps = {}
                for name, lib in (("without", None), ("with", b["lib"])):
                    env = clean_env()
                    if lib:
                        env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint})
                    r = subprocess.run(base + ["-S", "-n", "-c", "2", "-j", "2", "-T",
                                               str(PGBENCH_SECS)] + extra + ["postgres"],
                                       env=env, capture_output=True, text=True,
                                       timeout=PGBENCH_SECS + 60)
                    m = [ln for ln in r.stdout.splitlines() if ln.startswith("tps")]
                    if r.returncode != 0 or not m:
                        raise RuntimeError("pgbench: " + r.stderr[-300:])
                    tps[name] = float(m[0].split("=")[1].split()[0])
                ratio = tps["with"] / tps["without"]
                print("  %-14s %9.0f tps without, %9.0f with, ratio %.3f" % (
                    label, tps["without"], tps["with"], ratio), flush=True)
                summary.append(("TPS ratio, %s" % label, "%.3f" % ratio,
                                "%.0f -> %.0f tps" % (tps["without"], tps["with"])))
        else:
            print("  (pgbench not installed: skipped)")
        srv = harness.HttpServer()
        url = "http://127.0.0.1:%d/" % srv.port
        argv = ["curl", "-s", "-o", "/dev/null", "-H", "Connection: close"] + [url] * CURL_N
        rps = {}
        for name, lib in (("without", None), ("with", b["lib"]), ("without", None),
                          ("with", b["lib"])):
            env = clean_env()
            if lib:
                env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint})
            t0 = time.monotonic()
            r = subprocess.run(argv, env=env, capture_output=True, timeout=300)
            dt = time.monotonic() - t0
            if r.returncode != 0:
                raise RuntimeError("curl loop failed: %d" % r.returncode)
            rps[name] = max(rps.get(name, 0), CURL_N / dt)
        ratio = rps["with"] / rps["without"]
        print("  %-14s %9.0f req/s without, %9.0f with, ratio %.3f (%d requests, new "
              "connection each)" % ("curl", rps["without"], rps["with"], ratio, CURL_N))
        summary.append(("req/s ratio, curl loop", "%.3f" % ratio,
                        "%.0f -> %.0f req/s" % (rps["without"], rps["with"])))
    finally:
        if srv:
            srv.stop()
        if cluster:
            cluster.stop()
        col.stop()


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    b = {"lib": os.path.join(build, "libspanshim.so"),
         "spanshimd": os.path.join(build, "spanshimd")}
    b["spanshim"] = os.path.join(build, "spanshim")
    for p in ("connect_loop", "spawn_loop", "fork_loop", "rss"):
        b[p] = os.path.join(build, "tests", "bench", p)
    missing = [v for v in b.values() if not os.path.exists(v)]
    if missing:
        print("bench: missing %s (run make bench)" % ", ".join(missing))
        return 1
    tmp = tempfile.mkdtemp(prefix="spanshim-bench-")
    summary = []
    t0 = time.monotonic()
    status = 0
    try:
        for part in (hot_path, spawn, fork_loop, run_true, shell_loop, ingest, memory,
                     real_programs):
            try:
                part(b, tmp, summary)
            except Exception as e:  # report and go on: a bench never fails on timing
                print("  %s could not run: %s" % (part.__name__, e), flush=True)
                summary.append((part.__name__, "n/a", str(e)[:60]))
                status = 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n== summary (%d cores, %.0f s)" % (os.cpu_count() or 0, time.monotonic() - t0))
    w = max(len(r[0]) for r in summary) if summary else 10
    print("  %-*s  %-16s  %s" % (w, "measure", "value", "detail"))
    for name, val, detail in summary:
        print("  %-*s  %-16s  %s" % (w, name, val, detail))
    return status


if __name__ == "__main__":
    sys.exit(main())
