#!/usr/bin/env python3
"""spanshimd benchmarks: prints numbers, never fails on timing.

  1. ingest: spans/s acknowledged by spanshimd (file output) while otlp_blast keeps
     CONNS keep-alive connections busy with 512-span requests; spans per CPU-second of
     spanshimd (= per core, since the receiver is one thread).
  2. the same with an upstream (a local OTLP/HTTP sink) as the only output, and with
     file + upstream; the upstream's delivered and dropped counts.
  3. the same with tail sampling (--sample-ratio 0.1, 8 spans per trace, 1% errors).
  4. RSS of spanshimd at steady state, paced at 100k spans/s (file + upstream).
  5. latency from span end to upstream delivery: single-span requests paced at 200/s
     with endTime = now; p50/p99/max of (arrival at the upstream - span end).
  6. CPU per span by kind, from real shim batches (shim_batches.py records them from
     traced connect_loop, curl_loop and pgbench runs): spanshimd's utime + stime over the
     spans acknowledged, for connect, libcurl CLIENT and SQL spans, with the file sink,
     upstream forwarding, both, and tail sampling; a table row per kind for the README;
     then, when valgrind is here, the instructions per span of the file and upstream
     setups (callgrind), which the machine's load does not change.

Usage: bench_spanshimd.py BUILD. Knobs: BENCH_SD_SECONDS (5), BENCH_SD_CONNS (4).
"""
import http.server
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_spanshimd as t  # noqa: E402  (the independent protobuf encoder)
import table  # noqa: E402  (tests/bench/table.py: the issue 16 cost table)
import shim_batches  # noqa: E402

SECS = float(os.environ.get("BENCH_SD_SECONDS", "5"))
CONNS = int(os.environ.get("BENCH_SD_CONNS", "4"))


def bodies_file(path, n_bodies=64, spans=512, per_trace=8, err_share=0.01):
    rnd = random.Random(1)
    now = time.time_ns()
    with open(path, "wb") as f:
        for _ in range(n_bodies):
            sps = []
            for k in range(spans // per_trace):
                tid = bytes(rnd.getrandbits(8) for _ in range(16))
                for i in range(per_trace):
                    err = (2, "boom") if rnd.random() < err_share else None
                    sps.append(t.span(tid, struct.pack(">Q", rnd.getrandbits(63)),
                                      "connect", 3, now, now + 50_000,
                                      {"server.address": "db%d.internal" % (k % 8),
                                       "network.peer.port": 5432}, status=err))
            body = t.traces_request(sps, resource={"service.name": "bench",
                                                   "process.pid": 4242})
            f.write(struct.pack("<II", len(sps), len(body)) + body)


class Sink:
    """A fast OTLP/HTTP upstream: reads bodies, answers 200, counts bytes; with keep, also
    keeps the last bodies with their arrival times (for the latency measure)."""

    def __init__(self, keep=False):
        self.requests = 0
        self.bytes = 0
        self.arrivals = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                outer.requests += 1
                outer.bytes += n
                if keep:
                    outer.arrivals.append((time.time_ns(), body))
                    if len(outer.arrivals) > 5000:
                        del outer.arrivals[:1000]
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    d = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            d[k] = v.strip()
    return int(d["VmRSS"].split()[0]), int(d["VmHWM"].split()[0])


def stats(sock):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    import json
    return json.loads(buf.split(b"\r\n\r\n", 1)[1])


def start(build, tmp, args):
    d = tempfile.mkdtemp(prefix="sd-", dir=tmp)
    sock = os.path.join(d, "c.sock")
    p = subprocess.Popen([os.path.join(build, "spanshimd"), "--socket", sock] + args,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    deadline = time.monotonic() + 10
    while not os.path.exists(sock):
        if time.monotonic() > deadline:
            raise RuntimeError("spanshimd did not start")
        time.sleep(0.01)
    return p, sock, d


def blast(build, sock, bodies, secs=SECS, conns=CONNS, depth=4, rate=0):
    out = subprocess.run([os.path.join(build, "tests", "bench", "otlp_blast"), sock, bodies,
                          str(conns), str(secs), str(depth), str(rate)],
                         capture_output=True, text=True, timeout=secs + 60).stdout
    return {k: float(v) for k, v in (w.split("=") for w in out.split())}


def ingest(build, tmp, bodies, label, args, sink=None, quiet=False):
    """One blast; (spans/s, spans per CPU-second, upstream spans dropped). With an upstream,
    the CPU is read once its queue has drained, so forwarding is counted in it."""
    p, sock, d = start(build, tmp, args)
    try:
        c0 = cpu_seconds(p.pid)
        r = blast(build, sock, bodies)
        st = stats(sock)
        deadline = time.monotonic() + 20
        while st.get("upstream") and st["upstream"]["queued_items"] and \
                time.monotonic() < deadline:
            time.sleep(0.1)
            st = stats(sock)
        cpu = cpu_seconds(p.pid) - c0
        rate = r["spans"] / r["seconds"]
        per_core = r["spans"] / cpu if cpu > 0 else float("nan")
        line = "%-34s %9.0f spans/s  %9.0f spans/CPU-s  (%d errors)" % (
            label, rate, per_core, r["errors"])
        up = st.get("upstream")
        dropped = 0
        if up:
            dropped = up["dropped_items"]
            line += "  upstream: %d exported, %d dropped, %d queued" % (
                up["exported_items"], up["dropped_items"], up["queued_items"])
        samp = st.get("sampling")
        if samp:
            line += "  sampling: kept %d of %d" % (samp["kept_spans"],
                                                  samp["kept_spans"] + samp["dropped_spans"]
                                                  + samp["held_spans"])
        if not quiet:
            print(line, flush=True)
        return rate, per_core, dropped
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        # Each run's gigabytes of JSON go, so every run starts with the page cache as the
        # last one found it: on this VM, writing into memory the guest has not used lately
        # (a page cache grown by the runs before) costs the writer up to 7 times the
        # system time per byte (dd: 0.2 ns per byte for 1 GB, 1.3 for 5 GB).
        shutil.rmtree(d, ignore_errors=True)


def steady_rss(build, tmp, bodies, sink):
    p, sock, d = start(build, tmp, ["--out", "o.jsonl", "--otlp-endpoint", sink.url])
    try:
        r = blast(build, sock, bodies, secs=max(SECS, 5), conns=2, depth=2, rate=100000)
        rss, hwm = rss_kb(p.pid)
        print("%-34s %9.1f MiB RSS, %.1f MiB peak (paced at %.0f spans/s)" % (
            "RSS at steady state", rss / 1024, hwm / 1024, r["spans"] / r["seconds"]),
            flush=True)
        return rss / 1024
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)


def latency(build, tmp):
    import test_spanshimd_upstream as u
    sink = Sink(keep=True)
    p, sock, d = start(build, tmp, ["--otlp-endpoint", sink.url])
    lat = []
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            for i in range(400):
                end = time.time_ns()
                body = t.traces_request([t.span(t.TRACE_ID, struct.pack(">Q", i + 1), "l%d" % i,
                                                1, end - 1000, end, {})])
                s.sendall(t.post("/v1/traces", body))
                t.read_response(s)
                time.sleep(0.005)
        time.sleep(0.5)
        for arrived, body in sink.arrivals:
            for sp in u.decode_traces(body):
                lat.append((arrived - sp["end"]) / 1e6)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        sink.stop()
    lat.sort()
    if lat:
        print("%-34s p50 %.2f ms, p99 %.2f ms, max %.2f ms (%d spans)" % (
            "span end -> upstream delivery", lat[len(lat) // 2], lat[int(len(lat) * 0.99)],
            lat[-1], len(lat)), flush=True)


def callgrind_per_span(build, tmp, bodies, args, secs=4):
    """Instructions per span of the whole spanshimd (every thread) under callgrind, fed by
    one otlp_blast connection for secs, less what a run that receives nothing costs
    (start and exit): exact whatever the machine's load. None without valgrind."""
    if shutil.which("valgrind") is None:
        return None

    def run(blast_bodies):
        d = tempfile.mkdtemp(prefix="cg-", dir=tmp)
        sock = os.path.join(d, "c.sock")
        out = os.path.join(d, "cg.out")
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                              os.path.join(build, "spanshimd"), "--socket", sock] + args,
                             cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not os.path.exists(sock):
            if time.monotonic() > deadline or p.poll() is not None:
                p.kill()
                return None, 0
            time.sleep(0.05)
        spans = 0
        if blast_bodies:
            spans = blast(build, sock, blast_bodies, secs=secs, conns=1, depth=1)["spans"]
            st = stats(sock)  # an upstream's queue drains first: forwarding is counted
            deadline = time.monotonic() + 30
            while st.get("upstream") and st["upstream"]["queued_items"] and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
                st = stats(sock)
        p.send_signal(signal.SIGTERM)
        p.wait(60)
        ir = 0
        for fn in os.listdir(d):
            if fn.startswith("cg.out"):
                with open(os.path.join(d, fn)) as f:
                    ir += next((int(l.split()[1]) for l in f
                                if l.startswith(("totals:", "summary:"))), 0)
        shutil.rmtree(d, ignore_errors=True)
        return ir, spans

    idle, _ = run(None)
    ir, spans = run(bodies)
    if idle is None or ir is None or not spans:
        return None
    return (ir - idle) / spans


KIND_LABELS = {"connect": "connect spans", "libcurl": "libcurl CLIENT spans",
               "sql": "SQL spans (pgbench TPC-B)"}


def per_kind(build, tmp, sink):
    """CPU per span for each kind of real shim span, under each output setup."""
    groups = shim_batches.record(build)
    setups = [("file", ["--out", "o.jsonl"]),
              ("upstream", ["--otlp-endpoint", sink.url]),
              ("file+upstream", ["--out", "o.jsonl", "--otlp-endpoint", sink.url]),
              ("tail sampling", ["--out", "o.jsonl", "--sample-ratio", "0.1",
                                 "--decision-wait", "1s"])]
    print("\nspanshimd CPU per span (utime+stime / spans), real shim batches of 512 spans:",
          flush=True)
    print("%-28s %6s  %s" % ("kind", "attrs", "  ".join("%-22s" % s for s, _ in setups)))
    rows = []
    for kind in ("connect", "libcurl", "sql"):
        if kind not in groups:
            continue
        bodies = os.path.join(tmp, "bodies-%s.bin" % kind)
        shim_batches.write_bodies(bodies, shim_batches.pack(groups[kind], 512))
        cells = []
        for label, args in setups:
            _, per_core, dropped = ingest(build, tmp, bodies, label, args, quiet=True)
            cells.append(per_core)
            if dropped:
                print("  (%s, %s: the upstream queue dropped %d spans: not forwarded, so not in"
                      " that CPU figure)" % (kind, label, dropped))
        attrs = shim_batches.attrs_per_span(groups[kind])
        print("%-28s %6.1f  %s" % (KIND_LABELS[kind], attrs, "  ".join(
            "%5.2f us (%5.2f M/s)    " % (1e6 / c, c / 1e6) for c in cells)), flush=True)
        rows.append((kind, attrs, cells, bodies))
    print("\n| spanshimd CPU per span (spans per CPU-second) | file | upstream | file + upstream"
          " | tail sampling 0.1 |")
    print("|---|---|---|---|---|")
    for kind, attrs, cells, _ in rows:
        print("| %s, %.0f attributes | %s |" % (KIND_LABELS[kind], attrs, " | ".join(
            "%.2f µs (%.2f M)" % (1e6 / c, c / 1e6) for c in cells)))
    print("(target: >= 3 M spans per CPU-second for every kind; the OpenTelemetry Collector's"
          " published testbed figure is ~87k spans per CPU-second)", flush=True)
    # Instructions per span (callgrind): what the load cannot change, for the file and
    # the upstream setups.
    instr = {}
    for kind, _, _, bodies in rows:
        for label, args in setups[:2]:
            n = callgrind_per_span(build, tmp, bodies, args)
            if n is not None:
                instr[(kind, label)] = n
    if instr:
        print("\nspanshimd instructions per span (callgrind, whole process, less start and "
              "exit): " + "; ".join(
                  "%s: file %s, upstream %s" % (kind, "%.0f" % instr[(kind, "file")]
                                                if (kind, "file") in instr else "-",
                                                "%.0f" % instr[(kind, "upstream")]
                                                if (kind, "upstream") in instr else "-")
                  for kind, _, _, _ in rows), flush=True)
    if rows:
        cg = ""
        if instr:
            cg = "; callgrind, instructions per span, file: %s, upstream: %s" % tuple(
                " / ".join("%.0f" % instr[(k, lab)] if (k, lab) in instr else "-"
                           for k, _, _, _ in rows) for lab in ("file", "upstream"))
        table.record("spanshimd_cpu", "", "", " / ".join(
            "%.2f M" % (cells[0] / 1e6) for _, _, cells, _ in rows) + " spans/CPU-s",
            "%s; real shim batches of 512 spans, file output; upstream only: %s%s; OTel "
            "Collector testbed: ~0.087 M" % (" / ".join(k for k, _, _, _ in rows), " / ".join(
                "%.2f M" % (cells[1] / 1e6) for _, _, cells, _ in rows), cg))


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    tmp = tempfile.mkdtemp(prefix="bench-sd-")
    try:
        bodies = os.path.join(tmp, "bodies.bin")
        bodies_file(bodies)
        print("spanshimd benchmarks: %d connections, 512 spans per request, %.0f s each, "
              "%d CPUs" % (CONNS, SECS, os.cpu_count()), flush=True)
        ingest(build, tmp, bodies, "ingest, file", ["--out", "o.jsonl"])
        sink = Sink()
        ingest(build, tmp, bodies, "ingest, upstream only", ["--otlp-endpoint", sink.url])
        ingest(build, tmp, bodies, "ingest, file + upstream",
               ["--out", "o.jsonl", "--otlp-endpoint", sink.url])
        ingest(build, tmp, bodies, "ingest, gzip upstream only",
               ["--otlp-endpoint", sink.url, "--otlp-compression", "gzip"])
        ingest(build, tmp, bodies, "ingest, tail sampling 0.1, file",
               ["--out", "o.jsonl", "--sample-ratio", "0.1", "--decision-wait", "1s"])
        steady_rss(build, tmp, bodies, sink)
        per_kind(build, tmp, sink)
        sink.stop()
        latency(build, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
