#!/usr/bin/env python3
"""Real shim-produced OTLP batches for the spanshimd benchmarks.

record(build, tmp) runs three workloads under libspanshim.so with the shim exporting
straight to a recording OTLP/HTTP endpoint (the bodies exactly as the shim sends them):
  connect  tests/bench/connect_loop: UDP connect spans (a few attributes)
  libcurl  tests/progs/curl_loop: GETs on one handle to a local HTTP server, libcurl CLIENT
           spans (about 12 attributes) and the HTTP spans around them
  sql      pgbench's TPC-B-like script (-M simple) against a throwaway PostgreSQL: libpq
           spans with statements (db.query.text), enriched by spanshimd's SQL summaries
Each kind's spans are taken out of the recorded requests at the wire level (no protobuf
library: only the three message levels are walked) and packed, under their recorded
resource and scope, into requests of SPANS spans, written as otlp_blast's bodies file
([u32 span count][u32 length][body], little-endian). A kind that cannot be recorded here
(no PostgreSQL, no libcurl program) is left out with the reason printed."""
import http.server
import os
import shutil
import struct
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))


class Recorder:
    """An OTLP/HTTP endpoint on 127.0.0.1 that keeps every /v1/traces body."""

    def __init__(self):
        self.bodies = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if self.path.startswith("/v1/traces"):
                    outer.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Target(http.server.BaseHTTPRequestHandler):
    """The HTTP server curl_loop GETs from (keep-alive, a small body, one write)."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = b"hello from the benchmark target\n"
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d"
                         b"\r\n\r\n%s" % (len(body), body))


def clean_env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SPANSHIM_", "OTEL_", "PG")) and k != "LD_PRELOAD"}


# ---- the wire format, as far as the request → resource → scope → span levels go ----

def _varint(b, i):
    x = shift = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7f) << shift
        if not c & 0x80:
            return x, i
        shift += 7


def fields(b):
    """(field number, wire type, payload or int, the whole field's bytes) of message b."""
    i = 0
    while i < len(b):
        start = i
        tag, i = _varint(b, i)
        no, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError("wire type %d" % wt)
        yield no, wt, v, b[start:i]


def _enc_varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7f | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(no, payload):
    return _enc_varint(no << 3 | 2) + _enc_varint(len(payload)) + payload


def span_kind(sp):
    """'sql', 'libcurl', 'connect' or None for a Span message's bytes."""
    name, kind, keys = b"", 0, set()
    for no, wt, v, _ in fields(sp):
        if no == 5 and wt == 2:
            name = v
        elif no == 6 and wt == 0:
            kind = v
        elif no == 9 and wt == 2:
            for kno, kwt, kv, _ in fields(v):
                if kno == 1 and kwt == 2:
                    keys.add(kv)
    if b"db.query.text" in keys:
        return "sql"
    if kind == 3 and b"url.full" in keys and b"http.request.method" in keys:
        return "libcurl"
    if name == b"connect":
        return "connect"
    return None


def split_kinds(bodies):
    """{kind: {(resource fields, scope fields): [span bytes]}} from recorded requests."""
    out = {}
    for body in bodies:
        for no, wt, rs, _ in fields(body):
            if no != 1 or wt != 2:
                continue
            rrest = b"".join(raw for n2, w2, _, raw in fields(rs) if not (n2 == 2 and w2 == 2))
            for n2, w2, ss, _ in fields(rs):
                if n2 != 2 or w2 != 2:
                    continue
                srest = b"".join(raw for n3, w3, _, raw in fields(ss) if not (n3 == 2 and w3 == 2))
                for n3, w3, sp, _ in fields(ss):
                    if n3 == 2 and w3 == 2:
                        k = span_kind(sp)
                        if k:
                            out.setdefault(k, {}).setdefault((rrest, srest), []).append(sp)
    return out


def pack(groups, spans_per_req):
    """Requests of spans_per_req spans (the last of a group may have fewer): [(n, body)]."""
    reqs = []
    for (rrest, srest), sps in groups.items():
        for i in range(0, len(sps), spans_per_req):
            part = sps[i:i + spans_per_req]
            ss = srest + b"".join(ld(2, sp) for sp in part)
            reqs.append((len(part), ld(1, rrest + ld(2, ss))))
    return reqs


def write_bodies(path, reqs):
    with open(path, "wb") as f:
        for n, body in reqs:
            f.write(struct.pack("<II", n, len(body)) + body)


def attrs_per_span(groups):
    n = a = 0
    for sps in groups.values():
        for sp in sps:
            n += 1
            a += sum(1 for no, wt, _, _ in fields(sp) if no == 9 and wt == 2)
    return a / n if n else 0.0


# ---- the workloads ----

def _traced_env(build, url):
    return dict(clean_env(), LD_PRELOAD=os.path.join(build, "libspanshim.so"),
                SPANSHIM_ENDPOINT=url, OTEL_BSP_MAX_QUEUE_SIZE="65536")


def _connects(build, env, n):
    subprocess.run([os.path.join(build, "tests", "bench", "connect_loop"), str(n), "udp"],
                   env=env, capture_output=True, timeout=120, check=True)


def _curl(build, env, n):
    prog = os.path.join(build, "tests", "progs", "curl_loop")
    if not os.path.exists(prog):
        return "no %s (make the test programs)" % prog
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Target)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        subprocess.run([prog, "http://127.0.0.1:%d/items?page=2" % srv.server_address[1],
                        str(n)], env=env, capture_output=True, timeout=300, check=True)
    finally:
        srv.shutdown()
        srv.server_close()
    return None


def _sql(build, env, n):
    if shutil.which("pgbench") is None:
        return "no pgbench"
    try:
        import pg as pgmod
        cluster = pgmod.PgCluster()
    except Exception as e:  # noqa: BLE001  (no server binaries, no user to run them)
        return "no PostgreSQL cluster: %s" % e
    try:
        base = ["-h", cluster.sockdir, "-p", str(cluster.port), "-U", cluster.superuser]
        r = subprocess.run(["pgbench", "-i", "-q", "-s", "1"] + base + ["postgres"],
                           env=clean_env(), capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            return "pgbench -i: " + r.stderr[-200:]
        r = subprocess.run(["pgbench", "-n", "-M", "simple", "-c", "1", "-t", str(n)] + base
                           + ["postgres"], env=env, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            return "pgbench: " + r.stderr[-200:]
    finally:
        cluster.stop()
    return None


def record(build, n_per_kind=20000):
    """{kind: groups} of real shim spans; prints what could not be recorded."""
    rec = Recorder()
    try:
        env = _traced_env(build, rec.url)
        _connects(build, env, n_per_kind)
        why = _curl(build, env, n_per_kind // 3)
        if why:
            print("  libcurl spans not recorded: " + why)
        why = _sql(build, env, n_per_kind // 7)
        if why:
            print("  SQL spans not recorded: " + why)
    finally:
        rec.stop()
    return split_kinds(rec.bodies)
