#!/usr/bin/env python3
"""libcurl benchmark (issue 4): BENCH_CURL_N (2000) sequential GETs on one reused easy
handle (tests/progs/curl_loop) to a local nginx (the Debian package, started here on a
loopback port with a throwaway config), without the shim, with it (a spanshimd
collecting) and with it sampling nothing (hooks only), interleaved, BENCH_CURL_ROUNDS (15)
rounds. Reports each setup's median requests/s and the with/without ratio of every round
(a round's runs are seconds apart, so its ratio shares the machine's load of the moment):
median, quartiles, min-max. Then, unless BENCH_CURL_CALLGRIND=0, the instructions per
request under callgrind (exact at any load): the app thread untraced, sampled and with
the sampler always_off, and the exporter thread per span. Never fails on timing; exits
non-zero only when it cannot run (no nginx, no build).  Usage: curl_nginx.py BUILD"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import table  # tests/bench/table.py: the issue 16 cost table
from bench import marginal_ir, spread  # noqa: E402

N = int(os.environ.get("BENCH_CURL_N", "2000"))
ROUNDS = int(os.environ.get("BENCH_CURL_ROUNDS", "15"))
CALLGRIND = os.environ.get("BENCH_CURL_CALLGRIND", "1") != "0"

CONF = """daemon off;
master_process off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(d)s/body; proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fcgi; uwsgi_temp_path %(d)s/uwsgi; scgi_temp_path %(d)s/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%(port)d;
    location / { return 200 "hello\\n"; }
  }
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SPANSHIM_", "OTEL_", "LD_PRELOAD"))}


def wait_port(port, proc, secs=10):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def run_loop(prog, url, env):
    r = subprocess.run([prog, url, str(N)], env=env, capture_output=True, timeout=300)
    kv = dict(l.split("=", 1) for l in r.stdout.decode().split() if "=" in l)
    if r.returncode != 0 or int(kv.get("ok", 0)) != N:
        raise RuntimeError("curl_loop failed: %r" % (r,))
    return float(kv["rps"])


def instructions(prog, url, plain, shim, hooks_only, tmp):
    """Instructions per request (callgrind, the difference between 500 and 1,500
    requests): printed, and a note for the cost table ("" without valgrind)."""
    def argv(n):
        return [prog, url, str(n)]
    got = {}
    for name, env in (("untraced", plain), ("sampled", shim), ("always_off", hooks_only)):
        got[name] = marginal_ir(argv, env, tmp, 500, 1500)
        if got[name] is None:
            print("  (callgrind: no valgrind, or a run failed: no instruction counts)")
            return ""
    base = got["untraced"][0]
    print("  instructions per request (callgrind): app thread untraced %.0f, sampled %+.0f, "
          "sampler always_off %+.0f; exporter thread %.0f per span" % (
              base, got["sampled"][0] - base, got["always_off"][0] - base, got["sampled"][1]))
    return "; callgrind per request: app thread %+.0f sampled, %+.0f always_off (untraced " \
        "%.0f), exporter %.0f per span" % (got["sampled"][0] - base,
                                           got["always_off"][0] - base, base, got["sampled"][1])


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prog = os.path.join(build, "tests", "progs", "curl_loop")
    if not os.path.exists(nginx) or not os.path.exists(prog):
        print("curl/nginx bench: cannot run (nginx at %s, %s built?)" % (nginx, prog))
        return 1
    d = tempfile.mkdtemp(prefix="ss-nginx-")
    os.chmod(d, 0o755)
    port = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(CONF % {"d": d, "port": port})
    ng = subprocess.Popen([nginx, "-p", d, "-c", os.path.join(d, "nginx.conf")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    col = None
    try:
        if not wait_port(port, ng):
            print("curl/nginx bench: nginx did not start (%s/error.log)" % d)
            return 1
        cd = os.path.join(d, "col")
        os.mkdir(cd, 0o700)
        sock = os.path.join(cd, "c.sock")
        col = subprocess.Popen([os.path.join(build, "spanshimd"), "--socket", sock, "--out",
                                os.path.join(cd, "spans.jsonl")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=clean_env())
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        url = "http://127.0.0.1:%d/" % port
        plain = clean_env()
        shim = dict(plain, LD_PRELOAD=os.path.join(build, "libspanshim.so"),
                    SPANSHIM_ENDPOINT="unix:" + sock)
        # The hooks alone (spans made and injected, none sampled so none exported): what
        # the app thread pays, apart from the exporter and spanshimd competing for CPUs.
        hooks_only = dict(shim, OTEL_TRACES_SAMPLER="always_off")
        run_loop(prog, url, plain)  # warm up
        res = {"without": [], "with": [], "hooks": []}
        for _ in range(ROUNDS):
            res["without"].append(run_loop(prog, url, plain))
            res["with"].append(run_loop(prog, url, shim))
            res["hooks"].append(run_loop(prog, url, hooks_only))
        mw, ms = statistics.median(res["without"]), statistics.median(res["with"])
        mh = statistics.median(res["hooks"])
        rw = [w / o for w, o in zip(res["with"], res["without"])]
        rh = [h / o for h, o in zip(res["hooks"], res["without"])]
        print("curl/nginx: %d sequential GETs, one reused easy handle, %d interleaved rounds, "
              "%d CPUs, load average %s" % (N, ROUNDS, os.cpu_count() or 0, table.load_average()))
        print("  without shim: median %.0f req/s; with: %.0f; hooks only (sampler always_off, "
              "nothing exported): %.0f" % (mw, ms, mh))
        print("  ratio with/without, per round: %s (target >= 0.97)" % spread(rw))
        print("  ratio hooks only/without, per round: %s" % spread(rh))
        print("  per request added (medians): %.1f us; hooks only %.1f us" %
              (1e6 / ms - 1e6 / mw, 1e6 / mh - 1e6 / mw))
        ir = instructions(prog, url, plain, shim, hooks_only, d) if CALLGRIND else None
        table.record("libcurl", "%.0f req/s" % mw, "%.0f req/s" % ms, "%.3f" % statistics.median(rw),
                     "per-round ratio %s; hooks only (always_off) %s%s" % (
                         spread(rw), spread(rh), ir or ""))
        return 0
    finally:
        if col:
            col.terminate()
            col.wait(10)
        ng.terminate()
        try:
            ng.wait(10)
        except subprocess.TimeoutExpired:
            ng.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
