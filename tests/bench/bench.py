#!/usr/bin/env python3
"""spanshim benchmarks (driven by tests/bench/run.sh BUILD). Prints numbers and a summary
table; never fails on timing (exit status is non-zero only when a benchmark could not run
at all).

  1. cost per span: a UDP connect loop without the shim and with it (sampled with a
     queue that fits all, default queue, sampler always_off, no collector), interleaved
     ROUNDS times, medians: the loop thread's own CPU and the whole process's CPU
     (exporter included) per call, and spans delivered (spanshimd's /stats).
 1b. share of spans delivered by one process paced at 200k and 400k spans/s.
  2. process start+exit: /bin/true x N with vs without LD_PRELOAD (posix_spawn loop);
     fork loop (300 forks from a 4-thread process); `spanshim run -- /bin/true` wall.
  3. spanshimd ingest: spans/s written by spanshimd while 4 shimmed processes each make
     200k UDP connects at once (spanshimd's /stats counters; line counting as fallback).
  4. memory: VmRSS/VmHWM of a program making 10k connects, with vs without the shim.
  5. real programs: TPS of pgbench (select-only; and with a new connection per
     transaction, -C) against a throwaway PostgreSQL, and requests/s of one curl process
     making BENCH_CURL requests with a new connection each, with vs without the shim,
     interleaved BENCH_REAL_ROUNDS (5) times: medians, and the per-round ratios' spread.
  6. the anchor: the OTel JS SDK's CPU per span, measured in this run.
Rows of the issue 16 cost table go to tests/bench/table.py (printed by run.sh at the end).

Environment knobs: BENCH_N (connects, default 200000), BENCH_ROUNDS (3), BENCH_SPAWNS
(1000), BENCH_INGEST_PROCS (4), BENCH_INGEST_N (200000), BENCH_SHARE_N (200000),
BENCH_ANCHOR_N (50000); BENCH_PARTS=spawn,run_true,shell_loop runs only those parts (the
functions' names below).
"""
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import table  # tests/bench/table.py: the issue 16 cost table

N = int(os.environ.get("BENCH_N", "200000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SPAWNS = int(os.environ.get("BENCH_SPAWNS", "1000"))
INGEST_PROCS = int(os.environ.get("BENCH_INGEST_PROCS", "4"))
INGEST_N = int(os.environ.get("BENCH_INGEST_N", "200000"))
PGBENCH_SECS = int(os.environ.get("BENCH_PGBENCH_SECS", "4"))
CURL_N = int(os.environ.get("BENCH_CURL", "300"))
REAL_ROUNDS = int(os.environ.get("BENCH_REAL_ROUNDS", "5"))
SHARE_N = int(os.environ.get("BENCH_SHARE_N", "200000"))
ANCHOR_N = int(os.environ.get("BENCH_ANCHOR_N", "50000"))

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
    def __init__(self, spanshimd, tmp, name, out=None, args=()):
        d = os.path.join(tmp, name)
        os.mkdir(d, 0o700)
        self.sock = os.path.join(d, "c.sock")
        self.out = out or os.path.join(d, "spans.jsonl")
        self.err = open(os.path.join(d, "spanshimd.err"), "w")
        self.proc = subprocess.Popen([spanshimd, "--socket", self.sock, "--out", self.out] +
                                     list(args),
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
    """Runs argv (preloading lib, sending to endpoint, extra environment); its key=value
    output. Raises RuntimeError when it fails."""
    return run_cpu(argv, lib, endpoint, extra, timeout)[0]


def run_cpu(argv, lib=None, endpoint=None, extra=None, timeout=600):
    """run(), and the child's whole CPU time in seconds (all its threads, user + system)."""
    env = clean_env()
    if lib:
        env["LD_PRELOAD"] = lib
    if endpoint:
        env["SPANSHIM_ENDPOINT"] = endpoint
    env.update(extra or {})
    before = os.times()
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    after = os.times()
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr))
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    return kv(r.stdout), cpu


def settled(col, secs=0.3, limit=20):
    """spanshimd's (spans_received, shim_spans_dropped) once they stop moving."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        st = col.stats() or {}
        cur = (int(st.get("spans_received", 0)), int(st.get("shim_spans_dropped", 0)))
        if cur != last:
            last, since = cur, time.monotonic()
        elif time.monotonic() - since >= secs:
            break
        time.sleep(0.05)
    return last or (0, 0)


def med(xs):
    return statistics.median(xs) if xs else 0.0


def spread(xs, fmt="%.3f"):
    """'median M (quartiles Q1-Q3, min-max A-B, N rounds)' of xs: how far a timed figure
    moved between rounds, for a reader to judge a median by."""
    if not xs:
        return "no rounds"
    xs = sorted(xs)
    if len(xs) >= 4:
        q = statistics.quantiles(xs, n=4)
        quart = ("quartiles " + fmt + "-" + fmt + ", ") % (q[0], q[2])
    else:
        quart = ""
    return ("median " + fmt + " (%smin-max " + fmt + "-" + fmt + ", %d rounds)") % (
        statistics.median(xs), quart, xs[0], xs[-1], len(xs))


def marginal_ir(argv_of, env, tmp, n1, n2, during=None):
    """Instructions per unit of work under callgrind, exact at any load: argv_of(n) runs n
    units; the difference between a run of n2 and one of n1, divided by n2 - n1, leaves
    out start and exit. (app thread, all other threads) per unit, or None without
    valgrind or when a run failed."""
    a = callgrind_ir(argv_of(n1), env, tmp, during)
    b = callgrind_ir(argv_of(n2), env, tmp, during)
    if a is None or b is None:
        return None
    return (b[0] - a[0]) / (n2 - n1), (b[2] - a[2]) / (n2 - n1)


def callgrind_ir(argv, env, tmp, during=None):
    """(instructions executed by thread 1 of argv under callgrind, threads seen, instructions
    of all its other threads), or None without valgrind. `during(proc)` runs while it does
    (e.g. a client for a server)."""
    vg = shutil.which("valgrind")
    if not vg:
        return None
    out = os.path.join(tmp, "cg.%d" % time.monotonic_ns())
    p = subprocess.Popen([vg, "--tool=callgrind", "--separate-threads=yes",
                          "--callgrind-out-file=" + out + ".%p"] + argv, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if during:
            during(p)
        p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0:
        return None
    files = [f for f in os.listdir(tmp) if f.startswith(os.path.basename(out) + ".")]
    ir, others = None, 0
    for f in files:
        with open(os.path.join(tmp, f)) as fh:
            for line in fh:
                if line.startswith("summary:"):
                    if f.endswith("-01"):
                        ir = int(line.split()[1])
                    else:
                        others += int(line.split()[1])
                    break
    return None if ir is None else (ir, len([f for f in files if "-0" in f]), others)


def instructions(b, tmp, col, variants):
    """Per variant: (app-thread instructions per call, other threads' per call), from
    callgrind runs of 5,000 and 10,000 connects (the difference: no start or exit)."""
    n1, n2 = 5000, 10000
    res = {}
    for name, lib, ep, extra in variants:
        env = clean_env()
        if lib:
            env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": ep})
            env.update(extra)
        a = callgrind_ir([b["connect_loop"], str(n1), "udp"], env, tmp)
        c = callgrind_ir([b["connect_loop"], str(n2), "udp"], env, tmp)
        if a is None or c is None:
            return None
        res[name] = ((c[0] - a[0]) / float(n2 - n1), (c[2] - a[2]) / float(n2 - n1))
    return res


def hot_path(b, tmp, summary):
    """Issue 16 rows 1-3: a UDP connect loop of N calls, without the shim and with it in
    five settings, interleaved ROUNDS times; medians. App-thread CPU is the loop thread's
    own (CLOCK_THREAD_CPUTIME_ID); whole-process CPU is the child's rusage (exporter
    thread and exit flush included), so its difference per call is what a traced process
    pays in all; delivered and dropped come from spanshimd's /stats."""
    print("== 1. cost per span: UDP connect loop, N=%d, %d interleaved rounds, medians" %
          (N, ROUNDS), flush=True)
    col = Collector(b["spanshimd"], tmp, "hot", out="/dev/null")
    loop = b["connect_loop"]
    missing = "unix:" + os.path.join(tmp, "no-such-dir", "c.sock")
    fits = {"OTEL_BSP_MAX_QUEUE_SIZE": str(2 * N + 4096), "SPANSHIM_EXIT_FLUSH_MS": "10000"}
    variants = [("without", None, None, {}),
                ("sampled, queue fits all", b["lib"], col.endpoint, fits),
                ("sampled, default queue", b["lib"], col.endpoint, {}),
                ("sampler says no", b["lib"], col.endpoint, {"OTEL_TRACES_SAMPLER": "always_off"}),
                ("no collector", b["lib"], missing, {})]
    app, proc, deliv, drop = {}, {}, {}, {}
    try:
        for _ in range(ROUNDS):
            for name, lib, ep, extra in variants:
                r0 = settled(col, 0.1) if lib else None
                o, cpu = run_cpu([loop, str(N), "udp"], lib=lib, endpoint=ep, extra=extra)
                app.setdefault(name, []).append(float(o["cpu_ns_per_op"]))
                proc.setdefault(name, []).append(cpu * 1e9 / int(o["n"]))
                if r0 is not None:
                    r1 = settled(col)
                    deliv.setdefault(name, []).append(r1[0] - r0[0])
                    drop.setdefault(name, []).append(r1[1] - r0[1])
        n = N + 1000
        a0, p0 = med(app["without"]), med(proc["without"])
        for name, _, _, _ in variants:
            d = " delivered %d dropped %d of %d" % (med(deliv[name]), med(drop[name]), n) \
                if name in deliv else ""
            print("  %-26s app thread %7.1f ns/call (%+6.1f)   process %7.1f ns/call (%+6.1f)%s"
                  % (name, med(app[name]), med(app[name]) - a0, med(proc[name]),
                     med(proc[name]) - p0, d), flush=True)

        def ns(x):
            return "%.0f ns" % x

        fit, dflt = "sampled, queue fits all", "sampled, default queue"
        da = med(app[dflt]) - a0  # the app thread's cost as a program pays it
        off = med(app["sampler says no"]) - a0
        got = med(deliv[fit])
        per = (med(proc[fit]) - p0) * n / got if got else 0
        table.record("proc_cpu", ns(p0), ns(med(proc[fit])), "%+.2f us" % (per / 1e3),
                     "a queue that fits all (its ring's first touch included): %d of %d "
                     "delivered, %d dropped" % (got, n, med(drop[fit])))
        got_d = med(deliv[dflt])
        table.record("proc_cpu_default", ns(p0), ns(med(proc[dflt])),
                     "%+.2f us per call" % ((med(proc[dflt]) - p0) / 1e3),
                     "%.1f%% delivered (%d), %d counted dropped" % (
                         100.0 * got_d / n, got_d, med(drop[dflt])))
        nc = med(proc["no collector"]) - p0
        # Instructions (callgrind): what the run's load cannot change.
        ir = instructions(b, tmp, col, variants)
        if ir:
            i0 = ir["without"][0]
            for name, _, _, _ in variants[1:]:
                print("  %-26s %+6.0f instructions per call on the app thread, %6.0f on the "
                      "shim's exporter thread (callgrind)" % (name, ir[name][0] - i0,
                                                              ir[name][1]), flush=True)
            ir_note = "; callgrind: %+.0f instructions on the app thread, %.0f on the " \
                      "exporter per span" % (ir[dflt][0] - i0, ir[fit][1])
            ir_off = "; callgrind: %+.0f instructions" % (ir["sampler says no"][0] - i0)
            ir_nc = "; callgrind: %+.0f instructions on the app thread" % (
                ir["no collector"][0] - i0)
        else:
            ir_note = ir_off = ir_nc = ""
            print("  (valgrind not installed or failed: no instruction counts)")
        table.record("app_cpu", ns(a0), ns(med(app[dflt])), "%+.0f ns" % da,
                     "default queue; the loop thread's own CPU, runs: %s%s" % (
                         " ".join("%.0f" % x for x in app[dflt]), ir_note))
        table.record("app_cpu_off", ns(a0), ns(med(app["sampler says no"])), "%+.0f ns" % off,
                     "OTEL_TRACES_SAMPLER=always_off, runs: %s%s" % (
                         " ".join("%.0f" % x for x in app["sampler says no"]), ir_off))
        table.record("no_collector", ns(p0), ns(med(proc["no collector"])), "%+.0f ns" % nc,
                     "app thread %+.0f ns%s" % (med(app["no collector"]) - a0, ir_nc))
        summary.append(("ns/span added on app thread (CPU), udp, sampled", "%+.1f ns" % da,
                        "%.1f -> %.1f ns/op" % (a0, med(app[dflt]))))
        summary.append(("ns/span added on app thread (CPU), udp, sampler says no",
                        "%+.1f ns" % off, ""))
        summary.append(("whole-process CPU per delivered span", "%+.2f us" % (per / 1e3), ""))
        summary.append(("whole-process CPU per call, no collector", "%+.0f ns" % nc, ""))

        # A failing call: span, stack capture and exception record (refused TCP connect).
        nr = max(N // 4, 1000)
        res = {}
        for _ in range(ROUNDS):
            for name, lib in (("without", None), ("with", b["lib"])):
                o = run([loop, str(nr), "refused"], lib=lib, endpoint=col.endpoint,
                        extra=fits if lib else None)
                res.setdefault(name, []).append(float(o["cpu_ns_per_op"]))
        d = med(res["with"]) - med(res["without"])
        print("  refused TCP connect (span + stack + exception record): %+.1f ns app-thread CPU"
              " (%.1f -> %.1f)" % (d, med(res["without"]), med(res["with"])), flush=True)
        summary.append(("ns/span added on app thread (CPU), refused connect", "%+.1f ns" % d,
                        "%.1f -> %.1f ns/op" % (med(res["without"]), med(res["with"]))))
    finally:
        col.stop()


def share(b, tmp, summary):
    """Issue 16 row 4: one process paced at 200k (and 400k) connects per second with the
    default queue; the share of its spans spanshimd received (medians of ROUNDS runs)."""
    n = SHARE_N
    print("== 1b. share of spans delivered, one process paced, default queue, %d spans" % n,
          flush=True)
    col = Collector(b["spanshimd"], tmp, "share", out="/dev/null")
    try:
        for rate, key in ((200000, "share_200k"), (400000, "share_400k")):
            shares, drops, speeds = [], [], []
            for _ in range(ROUNDS):
                r0 = settled(col, 0.1)
                o = run([b["connect_loop"], str(n), "udp", str(rate)], lib=b["lib"],
                        endpoint=col.endpoint)
                r1 = settled(col)
                total = int(o["n"])
                shares.append(100.0 * (r1[0] - r0[0]) / total)
                drops.append(r1[1] - r0[1])
                speeds.append(1e9 / float(o["ns_per_op"]))
            print("  %6d spans/s asked (%.0f reached): delivered %s%%, counted dropped %s" % (
                rate, med(speeds), " ".join("%.2f" % x for x in shares),
                " ".join(str(x) for x in drops)), flush=True)
            table.record(key, "", "%.0f spans/s reached" % med(speeds), "%.2f%%" % med(shares),
                         "runs: %s%%; dropped (counted) %s" % (
                             " ".join("%.2f" % x for x in shares),
                             " ".join(str(x) for x in drops)))
            summary.append(("spans delivered at %dk/s, default queue" % (rate // 1000),
                            "%.2f%%" % med(shares), ""))
    finally:
        col.stop()


def spawn(b, tmp, summary):
    """Issue 16 row 9: /bin/true x SPAWNS via posix_spawn without preload, with an empty
    preloaded .so, with the shim and with the shim making process spans; interleaved, twice.
    Reported as the children's CPU per process (what the machine's load changes least),
    wall time per process, and page faults per process (which the load does not change at
    all; each costs 15-40 us on the 2-core VM); the target is against the empty .so."""
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
            raise RuntimeError("cannot build an empty .so with " + cc)
        plan = [("without", "-", {}), ("empty .so", empty, {}),
                ("shim", b["lib"], {}),
                ("shim + process spans", b["lib"], {"SPANSHIM_PROCESS_SPAN": "1"})]
        wall, cpu, flt = {}, {}, {}
        for _ in range(2):
            for name, pre, extra in plan:
                o = run([b["spawn_loop"], str(SPAWNS), pre], endpoint=col.endpoint,
                        extra=extra)
                wall.setdefault(name, []).append(float(o["us_per_proc"]))
                cpu.setdefault(name, []).append(float(o["cpu_us_per_proc"]))
                flt.setdefault(name, []).append(float(o.get("faults_per_proc", "nan")))
                print("  %-22s %8.1f us/process wall, %8.1f us CPU, %5.1f page faults" % (
                    name, wall[name][-1], cpu[name][-1], flt[name][-1]), flush=True)
        e, ew, ef = min(cpu["empty .so"]), min(wall["empty .so"]), min(flt["empty .so"])
        for name in ("shim", "shim + process spans"):
            c, w, f = min(cpu[name]), min(wall[name]), min(flt[name])
            print("  %-22s %+8.1f us CPU, %+8.1f us wall, %+5.1f page faults per process over "
                  "the empty .so" % (name, c - e, w - ew, f - ef))
            table.record("spawn", "%.0f us CPU (empty .so)" % e, "%.0f us CPU" % c,
                         "%+.0f us" % (c - e), "%s; wall %.0f -> %.0f us; %+.1f page faults "
                         "(%.1f -> %.1f); no preload %.0f us CPU"
                         % (name, ew, w, f - ef, ef, f, min(cpu["without"])))
            summary.append(("process start+exit added over an empty .so, %s" % name,
                            "%+.1f us" % (c - e), "CPU per process; wall %+.1f us; %+.1f page "
                            "faults" % (w - ew, f - ef)))
    finally:
        col.stop()


def fork_loop(b, tmp, summary):
    """Issue 12 "done when": 300 forks from a 4-thread process (its threads idle in a
    condition wait), (a) children that do nothing and _exit: the fork loop's ratio with
    the shim to without (target <= 1.5x); (b) children that make one span (a UDP connect)
    and _exit, the span delivered at exit: the time added per child (target <= +1 ms).
    Without the shim, with SPANSHIM_HOOKS=none (the shim's fork and exit handling alone)
    and with it, one collector; interleaved rounds, the best (lowest) of each. Wall time
    and CPU (the loop and its children, user + system) per fork."""
    n, rounds = 300, 3
    print("== 2c. fork loop: %d forks from a 4-thread process, best of %d" % (n, rounds),
          flush=True)
    col = Collector(b["spanshimd"], tmp, "forkloop")
    try:
        plan = [("without", None, {}), ("hooks none", b["lib"], {"SPANSHIM_HOOKS": "none"}),
                ("with shim", b["lib"], {})]
        wall, cpu = {}, {}
        for _ in range(rounds):
            for child in ("none", "connect"):
                for name, lib, extra in plan:
                    o = run([b["fork_loop"], str(n), "4", child], lib=lib, endpoint=col.endpoint,
                            extra=extra)
                    k = (child, name)
                    wall[k] = min(float(o["us_per_fork"]), wall.get(k, 1e18))
                    cpu[k] = min(float(o["cpu_us_per_fork"]), cpu.get(k, 1e18))
        for child, what in (("none", "child does nothing"), ("connect", "child: one span, _exit")):
            base, base_cpu = wall[(child, "without")], cpu[(child, "without")]
            for name in ("hooks none", "with shim"):
                w, c = wall[(child, name)], cpu[(child, name)]
                print("  %-24s %-10s %8.1f -> %8.1f us/fork wall (x%.2f, %+.1f us), "
                      "CPU %7.1f -> %7.1f us (%+.1f)" % (what, name, base, w, w / base, w - base,
                                                        base_cpu, c, c - base_cpu), flush=True)
            w, c = wall[(child, "with shim")], cpu[(child, "with shim")]
            if child == "none":
                summary.append(("fork loop ratio (300 forks, 4 threads)", "x%.2f" % (w / base),
                                "%.0f -> %.0f us/fork wall; CPU %.0f -> %.0f us (target <= 1.5x)"
                                % (base, w, base_cpu, c)))
            else:
                summary.append(("fork child: one span, _exit", "%+.2f ms" % ((w - base) / 1e3),
                                "%.0f -> %.0f us/fork wall; CPU %+.0f us (target <= +1 ms)"
                                % (base, w, c - base_cpu)))
                nw = wall[("none", "with shim")] / wall[("none", "without")]
                table.record("fork_loop", "%.0f us/fork" % base, "%.0f us/fork" % w,
                             "x%.2f" % (w / base),
                             "wall, best of %d; CPU %.0f -> %.0f us (%+.0f); children that "
                             "make no span x%.2f" % (rounds, base_cpu, c, c - base_cpu, nw))
    finally:
        col.stop()


def run_true(b, tmp, summary):
    """Issue 16 row 10: wall time of `spanshim run -- /bin/true` (private collector started
    and stopped, waterfall printed) against /bin/true alone; 5 interleaved runs, median and
    best, the CPU the whole run took and its page faults (spanshim, spanshimd and the
    command: a figure the machine's load does not change)."""
    print("== 2d. spanshim run -- /bin/true, wall", flush=True)
    out = os.path.join(tmp, "run-true.jsonl")
    wall, cpu, flt = {}, {}, {}
    for name, argv in [("/bin/true", ["/bin/true"]),
                       ("spanshim run", [b["spanshim"], "run", "-q", "--out", out, "--",
                                         "/bin/true"])] * 5:
        t0 = time.monotonic()
        c0, f0 = os.times(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, env=clean_env(), check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c1, f1 = os.times(), resource.getrusage(resource.RUSAGE_CHILDREN)
        flt.setdefault(name, []).append(f1.ru_minflt + f1.ru_majflt - f0.ru_minflt - f0.ru_majflt)
        wall.setdefault(name, []).append((time.monotonic() - t0) * 1e3)
        cpu.setdefault(name, []).append((c1.children_user - c0.children_user +
                                         c1.children_system - c0.children_system) * 1e3)
    w0, w1 = med(wall["/bin/true"]), med(wall["spanshim run"])
    f0, f1 = med(flt["/bin/true"]), med(flt["spanshim run"])
    print("  /bin/true %.1f ms, spanshim run -- /bin/true %.1f ms (best %.1f); CPU %.1f ms; "
          "page faults %.0f -> %.0f" % (w0, w1, min(wall["spanshim run"]),
                                         med(cpu["spanshim run"]), f0, f1))
    table.record("run_true", "%.1f ms" % w0, "%.1f ms" % w1, "%.1f ms" % w1,
                 "best %.1f ms; CPU of the whole run %.1f ms; page faults %.0f (/bin/true %.0f)"
                 % (min(wall["spanshim run"]), med(cpu["spanshim run"]), f1, f0))
    summary.append(("spanshim run -- /bin/true, wall", "%.1f ms" % w1,
                    "/bin/true alone %.1f ms; page faults %.0f (/bin/true %.0f)" % (w0, f1, f0)))


def shell_loop(b, tmp, summary):
    """Issue 6: cost per traced process in a 1,000-process shell loop, process spans on
    (what `spanshim run` does), with vs without the shim, same collector."""
    n = 1000
    print("== 2b. shell loop: sh runs /bin/true x %d, process spans on" % n, flush=True)
    col = Collector(b["spanshimd"], tmp, "shloop")
    script = "i=0; while [ $i -lt %d ]; do /bin/true; i=$((i+1)); done" % n
    try:
        res, cpu = {}, {}
        for name, lib in [("without", None), ("with shim", b["lib"])] * 2:
            env = clean_env()
            if lib:
                env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint,
                            "SPANSHIM_PROCESS_SPAN": "1"})
            t0, c0 = time.monotonic(), os.times()
            subprocess.run(["sh", "-c", script], env=env, check=True)
            us = (time.monotonic() - t0) * 1e6 / n
            c1 = os.times()
            cus = (c1.children_user - c0.children_user + c1.children_system -
                   c0.children_system) * 1e6 / n
            res[name] = min(us, res.get(name, us))
            cpu[name] = min(cus, cpu.get(name, cus))
            print("  %-10s %8.1f us/process wall, %8.1f us CPU (sh and its children)" % (
                name, us, cus), flush=True)
        time.sleep(0.5)
        got = count_spans(col.out)
        d, dc = res["with shim"] - res["without"], cpu["with shim"] - cpu["without"]
        print("  delta %+8.1f us/process wall, %+8.1f us CPU (%d spans delivered for %d traced "
              "processes)" % (d, dc, got, 2 * n))
        table.record("shell_loop", "%.0f us" % res["without"], "%.0f us" % res["with shim"],
                     "%+.0f us wall" % d, "CPU %.0f -> %.0f us (%+.0f); %d spans for %d "
                     "processes" % (cpu["without"], cpu["with shim"], dc, got, 2 * n))
        summary.append(("traced process in a shell loop (process spans on)", "%+.1f us" % d,
                        "%.1f -> %.1f us/process; CPU %+.1f us" % (
                            res["without"], res["with shim"], dc)))
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
    """Issue 16 row 12: VmRSS/VmHWM of a program after 10k connects, with vs without the
    shim, interleaved 3 times; medians."""
    print("== 4. memory: 10k connects then VmRSS/VmHWM", flush=True)
    col = Collector(b["spanshimd"], tmp, "rss")
    try:
        res = {}
        for _ in range(3):
            for name, lib in (("without", None), ("with shim", b["lib"])):
                o = run([b["rss"], "10000"], lib=lib, endpoint=col.endpoint)
                res.setdefault(name, []).append((int(o["vmrss_kb"]), int(o["vmhwm_kb"])))
        rss = {k: med([x[0] for x in v]) for k, v in res.items()}
        hwm = {k: med([x[1] for x in v]) for k, v in res.items()}
        for name in ("without", "with shim"):
            print("  %-10s VmRSS %6d kB  VmHWM %6d kB" % (name, rss[name], hwm[name]))
        d, dh = rss["with shim"] - rss["without"], hwm["with shim"] - hwm["without"]
        print("  delta VmRSS %+d kB, VmHWM %+d kB" % (d, dh), flush=True)
        table.record("rss", "%d kB" % rss["without"], "%d kB" % rss["with shim"],
                     "%+d kB" % d, "VmHWM %+d kB" % dh)
        summary.append(("RSS added (10k connects)", "%+d kB" % d,
                        "%d -> %d kB; HWM %+d kB" % (rss["without"], rss["with shim"], dh)))
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
                tps = {"without": [], "with": []}
                for _ in range(REAL_ROUNDS):  # interleaved: each round's pair shares its load
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
                        tps[name].append(float(m[0].split("=")[1].split()[0]))
                ratios = [w / o for w, o in zip(tps["with"], tps["without"])]
                print("  %-14s %9.0f tps without, %9.0f with (medians), ratio per round %s" % (
                    label, med(tps["without"]), med(tps["with"]), spread(ratios)), flush=True)
                summary.append(("TPS ratio, %s" % label, "%.3f" % med(ratios),
                                "%.0f -> %.0f tps; %s" % (med(tps["without"]),
                                                          med(tps["with"]), spread(ratios))))
        else:
            print("  (pgbench not installed: skipped)")
        srv = harness.HttpServer()
        url = "http://127.0.0.1:%d/" % srv.port
        argv = ["curl", "-s", "-o", "/dev/null", "-H", "Connection: close"] + [url] * CURL_N
        rps = {"without": [], "with": []}
        for _ in range(REAL_ROUNDS):
            for name, lib in (("without", None), ("with", b["lib"])):
                env = clean_env()
                if lib:
                    env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint})
                t0 = time.monotonic()
                r = subprocess.run(argv, env=env, capture_output=True, timeout=300)
                dt = time.monotonic() - t0
                if r.returncode != 0:
                    raise RuntimeError("curl loop failed: %d" % r.returncode)
                rps[name].append(CURL_N / dt)
        ratios = [w / o for w, o in zip(rps["with"], rps["without"])]
        print("  %-14s %9.0f req/s without, %9.0f with (medians), ratio per round %s (%d "
              "requests, new connection each)" % ("curl", med(rps["without"]), med(rps["with"]),
                                                  spread(ratios), CURL_N))
        summary.append(("req/s ratio, curl loop", "%.3f" % med(ratios),
                        "%.0f -> %.0f req/s; %s" % (med(rps["without"]), med(rps["with"]),
                                                    spread(ratios))))
    finally:
        if srv:
            srv.stop()
        if cluster:
            cluster.stop()
        col.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anchor_js(b, tmp, summary):
    """The anchor: the OTel JS SDK's CPU per span (BatchSpanProcessor, OTLP/HTTP protobuf
    to a spanshimd on loopback TCP) in this same run, beside spanshim's whole-process
    figure (tests/bench/otel_js_anchor.js; the SDK comes from `make interop-deps`)."""
    print("== 6. anchor: OpenTelemetry JS SDK, CPU per span, %d spans" % ANCHOR_N, flush=True)
    modules = os.path.join(os.path.dirname(b["lib"]), "interop", "node_modules")
    if not shutil.which("node") or not os.path.isdir(modules):
        print("  (node or %s missing: make interop-deps)" % modules)
        table.record("anchor_js", "", "", "not run", "node or the JS SDK missing")
        return
    port = free_port()
    col = Collector(b["spanshimd"], tmp, "anchor", out="/dev/null",
                    args=["--listen", "127.0.0.1:%d" % port])
    try:
        env = dict(clean_env(), NODE_PATH=modules)
        res = []
        for _ in range(2):
            r = subprocess.run(["node", os.path.join(HERE, "otel_js_anchor.js"),
                                "http://127.0.0.1:%d/v1/traces" % port, str(ANCHOR_N)],
                               env=env, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError("otel_js_anchor.js: " + r.stderr[-300:])
            res.append(kv(r.stdout))
        best = min(res, key=lambda o: float(o["sdk_cpu_ns_per_span"]))
        sdk = float(best["sdk_cpu_ns_per_span"]) - float(best["noop_cpu_ns_per_span"])
        print("  JS SDK: %.2f us CPU per span over the no-op API (%s of %s exported)" % (
            sdk / 1e3, best["exported"], best["n"]), flush=True)
        table.record("anchor_js", "%.2f us (no-op API)" % (float(best["noop_cpu_ns_per_span"])
                                                           / 1e3),
                     "%.2f us" % (float(best["sdk_cpu_ns_per_span"]) / 1e3),
                     "+%.2f us per span" % (sdk / 1e3),
                     "best of 2; %s of %s exported" % (best["exported"], best["n"]))
        summary.append(("OTel JS SDK CPU per span (anchor)", "+%.2f us" % (sdk / 1e3), ""))
    finally:
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
        only = [p for p in os.environ.get("BENCH_PARTS", "").split(",") if p]
        for part in (hot_path, share, spawn, fork_loop, run_true, shell_loop, ingest, memory,
                     real_programs, anchor_js):
            if only and part.__name__ not in only:  # BENCH_PARTS=spawn,run_true: just those
                continue
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
