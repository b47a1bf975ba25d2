#!/usr/bin/env python3
"""HTTP-at-the-socket-layer benchmarks (issue 11), run by tests/bench/run.sh BUILD. Prints
numbers and a summary; never fails on timing (non-zero exit only when a part cannot run).
Every ratio is measured in this one run, with and without the shim, runs interleaved, the
median of each side reported; a spanshimd collects whatever the shim exports.

  1. app-thread CPU per read/write on a non-HTTP fd: tests/bench/io_loop (write 64 bytes +
     read 64 bytes, BENCH_IO_N iterations) on a TCP loopback pair (HTTP candidates the
     first bytes rule out), a socketpair, a pipe and a file; without the shim, without it
     but with an idle second thread (glibc's multi-threaded read/write path, which the
     shim's exporter thread puts any process on), and with the shim. The syscalls cost
     1-3 us here, and the run-to-run noise is larger than the target, so when valgrind is
     installed the instructions per call (callgrind, the app thread only, the difference
     of two loop lengths) are reported too: a number that does not move between runs.
  2. app-thread CPU per HTTP request served: tests/bench/http_server (one thread, blocking,
     keep-alive, Content-Length responses), traced or not, driven by tests/bench/http_client
     (untraced, another process) with BENCH_HTTP_N keep-alive GETs on one connection; the
     server's own thread CPU per request, with the shim exporting, with the shim but the
     sampler always_off (the hooks alone), and without; the spans delivered.
  3. keep-alive request loop: `ab -k -c 1` (apache2-utils; else http_client) against the C
     server and against nginx (one worker, the Debian package, a throwaway config as in
     curl_nginx.py), traced vs not: requests/s ratio.

Knobs: BENCH_IO_N (100000), BENCH_IO_ROUNDS (7), BENCH_HTTP_N (20000), BENCH_HTTP_ROUNDS (5).
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (Collector, spans_and_dropped, clean_env, kv)
import curl_nginx  # noqa: E402  (the nginx config and its start helpers)

IO_N = int(os.environ.get("BENCH_IO_N", "100000"))
IO_ROUNDS = int(os.environ.get("BENCH_IO_ROUNDS", "7"))
HTTP_N = int(os.environ.get("BENCH_HTTP_N", "20000"))
HTTP_ROUNDS = int(os.environ.get("BENCH_HTTP_ROUNDS", "5"))

med = statistics.median


def env_for(lib, col, extra=None):
    env = bench.clean_env()
    if lib:
        env.update({"LD_PRELOAD": lib, "SPANSHIM_ENDPOINT": col.endpoint})
        env.update(extra or {})
    return env


# ---- 1. read/write on a non-HTTP fd ----
callgrind_ir = bench.callgrind_ir


def io_cost(b, tmp, summary):
    print("== H1. app-thread CPU per read/write on a non-HTTP fd (io_loop, %d write+read "
          "pairs, median of %d interleaved runs)" % (IO_N, IO_ROUNDS), flush=True)
    col = bench.Collector(b["spanshimd"], tmp, "io")
    variants = [("without", None, []), ("without, + idle thread", None, ["thread"]),
                ("with shim", b["lib"], [])]
    try:
        for mode in ("tcp", "socketpair", "pipe", "file"):
            cpu = {v[0]: [] for v in variants}
            threads = 1
            for _ in range(IO_ROUNDS):
                for name, lib, extra in variants:
                    o = bench.run([b["io_loop"], str(IO_N), mode] + extra, lib=lib,
                                  endpoint=col.endpoint if lib else None)
                    cpu[name].append(float(o["cpu_ns_per_call"]))
                    if lib:
                        threads = max(threads, int(o.get("threads", 1)))
            m = {k: med(v) for k, v in cpu.items()}
            spread = max(v[-1] - v[0] for v in (sorted(x) for x in cpu.values()))
            # The hooks' own cost: against the baseline with as many threads (the shim
            # starts its exporter at its first span: tcp makes two, connect and accept).
            ref = "without, + idle thread" if threads > 1 else "without"
            d = m["with shim"] - m["without"]
            dh = m["with shim"] - m[ref]
            print("  %-10s without %7.1f  +thread %7.1f  with %7.1f ns/call CPU (%d threads "
                  "with the shim); added %+6.1f ns, by the hooks (vs %s) %+6.1f ns; runs "
                  "spread up to %.0f ns" % (mode, m["without"], m["without, + idle thread"],
                                            m["with shim"], threads, d, ref, dh, spread),
                  flush=True)
            summary.append(("read/write on a non-HTTP fd, %s, CPU per call added by hooks"
                            % mode, "%+.1f ns" % dh,
                            "%.1f -> %.1f ns/call (vs %s; all added %+.1f; runs spread "
                            "%.0f ns)" % (m[ref], m["with shim"], ref, d, spread)))
        # Instructions: thread 1's count at 2N minus at N, per call; exact, noise-free.
        n1, n2 = 5000, 10000
        ir = {}
        for mode in ("tcp", "pipe"):
            for name, lib, extra in variants:
                env = env_for(lib, col)
                a = callgrind_ir([b["io_loop"], str(n1), mode] + extra, env, tmp)
                c = callgrind_ir([b["io_loop"], str(n2), mode] + extra, env, tmp)
                if a is None or c is None:
                    print("  (valgrind not installed or failed: no instruction counts)")
                    return
                ir[(mode, name)] = ((c[0] - a[0]) / (2.0 * (n2 - n1)), c[1])
            base, thr, shim = (ir[(mode, v[0])][0] for v in variants)
            threaded = ir[(mode, "with shim")][1] > 1
            hooks = shim - (thr if threaded else base)
            print("  %-10s instructions per read or write (callgrind, app thread): without "
                  "%.1f, + idle thread %.1f, with shim %.1f (%s): the hooks %+.1f%s" % (
                      mode, base, thr, shim, "exporter running" if threaded else
                      "no span made, no exporter thread", hooks,
                      ", glibc's threaded path %+.1f" % (thr - base) if threaded else ""),
                  flush=True)
            summary.append(("read/write on a non-HTTP fd, %s, instructions added per call"
                            % mode, "%+.1f" % (shim - base),
                            "hooks %+.1f%s (callgrind)" % (hooks, ", glibc threaded path "
                                                           "%+.1f" % (thr - base)
                                                           if threaded else "")))
    finally:
        col.stop()


# ---- 2./3. the C server ----
class CServer:
    def __init__(self, b, env):
        # One connection (the client's, or ab's with -k -c 1), then it exits by itself.
        self.proc = subprocess.Popen([b["http_server"], "1"], env=env, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port="):
            self.proc.kill()
            raise RuntimeError("http_server did not start")
        self.port = int(line.split("=")[1])

    def stop(self):
        """Its closing line (pid, requests, cpu_ns_per_req); SIGTERM if it does not end."""
        try:
            out = self.proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            out = self.proc.communicate(timeout=30)[0]
        return bench.kv(out)


def client(b, port, n):
    r = subprocess.run([b["http_client"], str(port), str(n)], env=bench.clean_env(),
                       capture_output=True, text=True, timeout=300)
    o = bench.kv(r.stdout)
    if r.returncode != 0 or int(o.get("ok", 0)) != n:
        raise RuntimeError("http_client: %r %r" % (r.stdout, r.stderr[-200:]))
    return float(o["rps"])


def ab(port, n, path="/"):
    """requests/s of `ab -k -c 1 -n n` (None when ab is not installed)."""
    exe = shutil.which("ab")
    if not exe:
        return None
    r = subprocess.run([exe, "-q", "-k", "-c", "1", "-n", str(n),
                        "http://127.0.0.1:%d%s" % (port, path)], env=bench.clean_env(),
                       capture_output=True, text=True, timeout=300)
    vals = {}
    for ln in r.stdout.splitlines():
        if ":" in ln:
            k, v = ln.split(":", 1)
            vals[k.strip()] = v.split()[0] if v.split() else ""
    if (r.returncode != 0 or vals.get("Failed requests") != "0" or
            vals.get("Complete requests") != str(n) or vals.get("Keep-Alive requests") != str(n)
            or "Non-2xx responses" in vals):
        raise RuntimeError("ab: %s" % (r.stdout[-400:] + r.stderr[-200:]))
    return float(vals["Requests per second"])


def server_cost(b, tmp, summary):
    print("== H2. C keep-alive server: app-thread CPU per request (http_client, %d GETs on "
          "one connection, median of %d interleaved runs)" % (HTTP_N, HTTP_ROUNDS), flush=True)
    col = bench.Collector(b["spanshimd"], tmp, "srv")
    variants = [("without", None, None),
                ("shim, hooks only (always_off)", b["lib"], {"OTEL_TRACES_SAMPLER": "always_off"}),
                ("shim, exporting", b["lib"], {})]
    try:
        cpu = {v[0]: [] for v in variants}
        rps = {v[0]: [] for v in variants}
        pids = []
        for _ in range(HTTP_ROUNDS):
            for name, lib, extra in variants:
                srv = CServer(b, env_for(lib, col, extra))
                try:
                    rps[name].append(client(b, srv.port, HTTP_N))
                finally:
                    o = srv.stop()
                if int(o.get("requests", 0)) != HTTP_N:
                    raise RuntimeError("http_server served %s of %d" % (o.get("requests"),
                                                                       HTTP_N))
                cpu[name].append(float(o["cpu_ns_per_req"]))
                if name == "shim, exporting":
                    pids.append(int(o["pid"]))
        time.sleep(1.0)
        col.stop()
        got = dropped = 0
        for pid in pids:
            g, d = bench.spans_and_dropped(col.out, pid)
            got += g
            dropped += d
        base = med(cpu["without"])
        for name, _, _ in variants:
            print("  %-30s %8.0f ns CPU/request (runs %s), %7.0f req/s" % (
                name, med(cpu[name]), " ".join("%.0f" % x for x in cpu[name]),
                med(rps[name])), flush=True)
        for name, _, _ in variants[1:]:
            d = med(cpu[name]) - base
            print("  %-30s %+8.0f ns CPU/request added on the app thread" % (name, d))
            summary.append(("C server, app-thread CPU added per request, %s" %
                            name.split(", ")[1], "%+.0f ns" % d, "%.0f -> %.0f ns/request" % (
                                base, med(cpu[name]))))
        want = HTTP_ROUNDS * (HTTP_N + 1)  # a SERVER span per request + the accept
        print("  spans delivered (exporting runs): %d of %d (%d requests + 1 accept, x %d), "
              "dropped (reported) %d" % (got, want, HTTP_N, HTTP_ROUNDS, dropped), flush=True)
        summary.append(("C server, spans delivered", "%d/%d" % (got, want),
                        "%d dropped (reported)" % dropped))
        # Instructions per request on the server's thread: 2N minus N requests.
        col = bench.Collector(b["spanshimd"], tmp, "srv-cg")
        n1, n2 = 1000, 2000
        ir = {}
        for name, lib, extra in variants:
            env = env_for(lib, col, extra)
            res = []
            for n in (n1, n2):
                def drive(p, n=n):
                    line = p.stdout.readline()
                    if line.startswith("port="):
                        client(b, int(line.split("=")[1]), n)
                r = callgrind_ir([b["http_server"], "1"], env, tmp, drive)
                if r is None:
                    print("  (valgrind not installed or failed: no instruction counts)")
                    return
                res.append(r[0])
            ir[name] = (res[1] - res[0]) / float(n2 - n1)
        for name, _, _ in variants[1:]:
            print("  %-30s %+8.0f instructions per request on the app thread (callgrind: "
                  "%.0f -> %.0f)" % (name, ir[name] - ir["without"], ir["without"], ir[name]),
                  flush=True)
            summary.append(("C server, instructions added per request, %s" %
                            name.split(", ")[1], "%+.0f" % (ir[name] - ir["without"]),
                            "%.0f -> %.0f (callgrind)" % (ir["without"], ir[name])))
    finally:
        col.stop()


def keepalive_loop(b, tmp, summary):
    tool = "ab -k -c 1" if shutil.which("ab") else "http_client"
    print("== H3. keep-alive request loop (%s, %d requests, median of %d interleaved runs)" % (
        tool, HTTP_N, HTTP_ROUNDS), flush=True)
    col = bench.Collector(b["spanshimd"], tmp, "ka")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ngs = []
    try:
        def loop(port):
            r = ab(port, HTTP_N)
            return r if r is not None else client(b, port, HTTP_N)

        # The C server: a fresh one per run.
        res = {"without": [], "with": []}
        for _ in range(HTTP_ROUNDS):
            for name, lib in (("without", None), ("with", b["lib"])):
                srv = CServer(b, env_for(lib, col))
                try:
                    res[name].append(loop(srv.port))
                finally:
                    srv.stop()
        report("C server", res, summary)
        # nginx: one untraced and one traced instance, both up, runs alternating.
        if not os.path.exists(nginx):
            print("  nginx not installed: skipped")
            summary.append(("keep-alive loop, nginx", "n/a", "nginx not installed"))
            return
        ports = {}
        for name, lib in (("without", None), ("with", b["lib"])):
            d = tempfile.mkdtemp(prefix="ng-", dir=tmp)
            os.chmod(d, 0o755)
            port = curl_nginx.free_port()
            with open(os.path.join(d, "nginx.conf"), "w") as f:
                f.write(curl_nginx.CONF % {"d": d, "port": port})
            ng = subprocess.Popen([nginx, "-p", d, "-c", os.path.join(d, "nginx.conf")],
                                  env=env_for(lib, col), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
            ngs.append(ng)
            if not curl_nginx.wait_port(port, ng):
                raise RuntimeError("nginx did not start (%s/error.log)" % d)
            ports[name] = (port, ng.pid)
        loop(ports["without"][0])  # warm up both
        loop(ports["with"][0])
        res = {"without": [], "with": []}
        for _ in range(HTTP_ROUNDS):
            for name in ("without", "with"):
                res[name].append(loop(ports[name][0]))
        for ng in ngs:
            ng.terminate()
            ng.wait(10)
        time.sleep(0.5)
        col.stop()
        got, dropped = bench.spans_and_dropped(col.out, ports["with"][1])
        want = (HTTP_ROUNDS + 1) * HTTP_N
        report("nginx", res, summary, "spans delivered %d of %d requests (+ %d accept, "
               "wait_port probes), dropped %d" % (got, want, got - want if got > want else 0,
                                                  dropped))
    finally:
        for ng in ngs:
            if ng.poll() is None:
                ng.kill()
                ng.wait()
        col.stop()


def report(what, res, summary, extra=""):
    w, s = med(res["without"]), med(res["with"])
    print("  %-9s %8.0f req/s without, %8.0f with (runs: %s | %s), ratio %.3f (target >= 0.97)"
          "%s" % (what, w, s, " ".join("%.0f" % x for x in res["without"]),
                  " ".join("%.0f" % x for x in res["with"]), s / w,
                  "; " + extra if extra else ""), flush=True)
    summary.append(("keep-alive loop req/s ratio, %s" % what, "%.3f" % (s / w),
                    "%.0f -> %.0f req/s%s" % (w, s, "; " + extra if extra else "")))


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    b = {"lib": os.path.join(build, "libspanshim.so"),
         "spanshimd": os.path.join(build, "spanshimd")}
    for p in ("io_loop", "http_server", "http_client"):
        b[p] = os.path.join(build, "tests", "bench", p)
    missing = [v for v in b.values() if not os.path.exists(v)]
    if missing:
        print("bench_http: missing %s (run make bench)" % ", ".join(missing))
        return 1
    tmp = tempfile.mkdtemp(prefix="spanshim-bench-http-")
    summary = []
    status = 0
    t0 = time.monotonic()
    load = os.getloadavg()
    try:
        for part in (io_cost, server_cost, keepalive_loop):
            try:
                part(b, tmp, summary)
            except Exception as e:  # a bench never fails on timing; report and go on
                print("  %s could not run: %s" % (part.__name__, e), flush=True)
                summary.append((part.__name__, "n/a", str(e)[:80]))
                status = 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n== HTTP summary (%d cores, %.0f s, load average at start %.2f %.2f %.2f)" % (
        os.cpu_count() or 0, time.monotonic() - t0, *load))
    w = max(len(r[0]) for r in summary) if summary else 10
    print("  %-*s  %-12s  %s" % (w, "measure", "value", "detail"))
    for name, val, detail in summary:
        print("  %-*s  %-12s  %s" % (w, name, val, detail))
    return status


if __name__ == "__main__":
    sys.exit(main())
