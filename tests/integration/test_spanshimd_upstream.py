"""spanshimd forwarding to an upstream OTLP/HTTP endpoint, checked against a real OTLP/HTTP
server written here (Python's http.server and a protobuf wire decoder of its own, sharing
no code with the C side): exact delivery, gzip, the retry rules (503 then 200 delivered
once, 400 never retried), an upstream that is down and comes back, the queue bound and
its drop counter, partial_success, TLS, and a slow upstream that must not slow the
receiver. Also home of OtlpServer and the helpers the other test_spanshimd_* files use."""
import gzip
import http.server
import os
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

import harness
import test_spanshimd as t

# ---- an independent protobuf decoder (wire format) ----


def _varint(b, i):
    x = sh = 0
    while True:
        c = b[i]
        i += 1
        x |= (c & 0x7F) << sh
        if not c & 0x80:
            return x, i
        sh += 7


def fields(b):
    """Yields (field number, wire type, value) of a message; value is int or bytes."""
    i = 0
    while i < len(b):
        tag, i = _varint(b, i)
        fn, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v = struct.unpack_from("<Q", b, i)[0]
            i += 8
        elif wt == 5:
            v = struct.unpack_from("<I", b, i)[0]
            i += 4
        elif wt == 2:
            n, i = _varint(b, i)
            v = bytes(b[i:i + n])
            if len(v) != n:
                raise ValueError("truncated field")
            i += n
        else:
            raise ValueError("wire type %d" % wt)
        yield fn, wt, v


def any_value(b):
    for fn, _, v in fields(b):
        if fn == 1:
            return v.decode()
        if fn == 2:
            return bool(v)
        if fn == 3:
            return v - (1 << 64) if v >= 1 << 63 else v
        if fn == 4:
            return struct.unpack("<d", struct.pack("<Q", v))[0]
        if fn == 5:
            return [any_value(x) for f, _, x in fields(v) if f == 1]
    return None


def kvs(items):
    d = {}
    for b in items:
        k = val = None
        for fn, _, v in fields(b):
            if fn == 1:
                k = v.decode()
            elif fn == 2:
                val = any_value(v)
        d[k] = val
    return d


def decode_traces(body):
    """ExportTraceServiceRequest → list of span dicts (with their resource attributes)."""
    out = []
    for fn, _, rs in fields(body):
        if fn != 1:
            continue
        res = {}
        for f2, _, v2 in fields(rs):
            if f2 == 1:
                res = kvs([v for f, _, v in fields(v2) if f == 1])
        for f2, _, ss in fields(rs):
            if f2 != 2:
                continue
            for f3, _, sp in fields(ss):
                if f3 != 2:
                    continue
                d = {"resource": res, "attrs": {}, "status": 0, "parent": ""}
                attrs = []
                for f4, _, v in fields(sp):
                    if f4 == 1:
                        d["trace_id"] = v.hex()
                    elif f4 == 2:
                        d["span_id"] = v.hex()
                    elif f4 == 4:
                        d["parent"] = v.hex()
                    elif f4 == 5:
                        d["name"] = v.decode()
                    elif f4 == 6:
                        d["kind"] = v
                    elif f4 == 7:
                        d["start"] = v
                    elif f4 == 8:
                        d["end"] = v
                    elif f4 == 9:
                        attrs.append(v)
                    elif f4 == 15:
                        for f5, _, v5 in fields(v):
                            if f5 == 3:
                                d["status"] = v5
                d["attrs"] = kvs(attrs)
                out.append(d)
    return out


# ---- the OTLP/HTTP server ----


class OtlpServer:
    """A real OTLP/HTTP receiver on 127.0.0.1. `script` is a list of responses
    (status, headers dict, body bytes) used one per request, then 200 with an empty
    ExportTraceServiceResponse. Every request is recorded (path, headers, raw and
    decompressed body, decoded spans, arrival time); `delay` seconds are slept before
    answering. start()/stop() may be called again on the same port."""

    def __init__(self, port=None, script=(), delay=0.0, tls=None):
        self.port = port or t_free_port()
        self.script = list(script)
        self.delay = delay
        self.tls = tls
        self.requests = []
        self.lock = threading.Lock()
        self.httpd = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def start(self):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                body = gzip.decompress(raw) if hdrs.get("content-encoding") == "gzip" else raw
                rec = {"path": self.path, "headers": hdrs, "raw": raw, "body": body,
                       "time": time.monotonic()}
                try:
                    rec["spans"] = decode_traces(body) if self.path.endswith("traces") else []
                except Exception as e:  # noqa: BLE001 - recorded, the test asserts on it
                    rec["error"] = repr(e)
                with outer.lock:
                    outer.requests.append(rec)
                    st, extra, payload = outer.script.pop(0) if outer.script else (200, {}, b"")
                if outer.delay:
                    time.sleep(outer.delay)
                self.send_response(st)
                self.send_header("Content-Type", "application/x-protobuf")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def spans(self):
        with self.lock:
            return [s for r in self.requests for s in r.get("spans", [])]

    def wait_spans(self, n, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.spans()) >= n:
                return self.spans()
            time.sleep(0.02)
        return self.spans()


def t_free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def otlp_server(ctx, **kw):
    s = OtlpServer(**kw).start()
    ctx._cleanup.append(s.stop)
    return s


def spans_req(names, trace_id=t.TRACE_ID, first=1, status=None, dur=1000, attrs=None,
              resource=None):
    """One ExportTraceServiceRequest with a span per name (ids first, first+1, ...)."""
    sps = [t.span(trace_id, struct.pack(">Q", first + i), nm, 3, 1000, 1000 + dur,
                  attrs or {"i": first + i}, status=status) for i, nm in enumerate(names)]
    return t.traces_request(sps, resource=resource)


def send(col, body):
    st, _, _ = t.exchange(col, t.post("/v1/traces", body))
    return st


def wait_for(cond, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    return cond()


class BareCollector(harness.Collector):
    """A real spanshimd started without --out (the harness's Collector always passes one);
    .out is where a default file would appear (spanshimd's cwd is ctx.tmp)."""

    def __init__(self, ctx, args=()):
        import tempfile
        self.ctx = ctx
        d = tempfile.mkdtemp(prefix="ss-bare-")
        ctx._cleanup.append(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
        os.chmod(d, 0o700)
        self.socket = os.path.join(d, "collector.sock")
        self.out = os.path.join(d, "spanshim-traces.jsonl")
        self.errlog = os.path.join(d, "spanshimd.err")
        self.endpoint = "unix:" + self.socket
        self.proc = subprocess.Popen([ctx.spanshimd, "--socket", self.socket] + list(args),
                                     cwd=d, stdout=subprocess.DEVNULL,
                                     stderr=open(self.errlog, "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("spanshimd did not start: " + self.stderr())
            time.sleep(0.01)
        ctx._cleanup.append(self.stop)


def up_stats(col):
    return t.stats(col).get("upstream", {})


# ---- tests ----


def test_upstream_receives_exactly_what_was_sent_and_no_file_by_default(ctx):
    srv = otlp_server(ctx)
    col = BareCollector(ctx, ["--otlp-endpoint", srv.url, "--otlp-header", "x-team=payments"])
    sent = []
    for k in range(3):
        names = ["op%d.%d" % (k, i) for i in range(4)]
        assert send(col, spans_req(names, first=10 * k + 1,
                                   resource={"service.name": "svc%d" % k})) == 200
        sent += names
    got = srv.wait_spans(12)
    assert sorted(s["name"] for s in got) == sorted(sent)
    s = [x for x in got if x["name"] == "op1.2"][0]
    assert s["trace_id"] == t.TRACE_ID.hex() and s["span_id"] == "%016x" % 13
    assert s["attrs"] == {"i": 13} and s["resource"] == {"service.name": "svc1"}
    assert s["kind"] == 3 and s["start"] == 1000 and s["end"] == 2000
    for r in srv.requests:
        assert r["path"] == "/v1/traces"
        assert r["headers"]["content-type"] == "application/x-protobuf"
        assert "content-encoding" not in r["headers"]
        assert r["headers"]["x-team"] == "payments"
    st = up_stats(col)
    assert st["exported_items"] == 12 and st["dropped_items"] == 0 and st["retries"] == 0
    col.stop()
    assert not os.path.exists(col.out), "--out not given with an upstream: no file"
    assert "upstream.exported_items=12" in col.stderr()


def test_upstream_logs_go_to_v1_logs(ctx):
    srv = otlp_server(ctx)
    col = ctx.collector(["--otlp-endpoint", srv.url + "/"])
    body = t.logs_request("exception", "boom", t.TRACE_ID, t.SPAN_ID)
    assert t.exchange(col, t.post("/v1/logs", body))[0] == 200
    assert wait_for(lambda: srv.requests)
    assert srv.requests[0]["path"] == "/v1/logs" and srv.requests[0]["body"] == body


def test_upstream_gzip_on_and_off_by_flag_and_env(ctx):
    for args, env, want in ((["--otlp-compression", "gzip"], {}, True),
                            ([], {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}, True),
                            ([], {"OTEL_EXPORTER_OTLP_COMPRESSION": "none"}, False)):
        srv = otlp_server(ctx)
        old = dict(os.environ)
        os.environ.update(env)
        try:
            col = ctx.collector(["--otlp-endpoint", srv.url] + args)
        finally:
            os.environ.clear()
            os.environ.update(old)
        body = spans_req(["a" * 50, "b" * 50, "c" * 50])
        assert send(col, body) == 200
        assert len(srv.wait_spans(3)) == 3
        r = srv.requests[0]
        assert (r["headers"].get("content-encoding") == "gzip") == want, (args, env)
        assert r["body"] == body
        if want:
            assert r["raw"][:2] == b"\x1f\x8b" and len(r["raw"]) < len(body)
        col.stop()


def test_upstream_env_endpoint_headers_and_traces_endpoint(ctx):
    srv = otlp_server(ctx)
    old = dict(os.environ)
    os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = srv.url + "/custom/traces"
    os.environ["OTEL_EXPORTER_OTLP_HEADERS"] = "authorization=Bearer%20tok,x-a = b "
    try:
        col = ctx.collector()
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert send(col, spans_req(["x"])) == 200
    assert srv.wait_spans(1)
    r = srv.requests[0]
    assert r["path"] == "/custom/traces"
    assert r["headers"]["authorization"] == "Bearer tok" and r["headers"]["x-a"] == "b"


def test_upstream_503_then_200_is_delivered_once_after_retry_after(ctx):
    srv = otlp_server(ctx, script=[(503, {"Retry-After": "1"}, b"")])
    col = ctx.collector(["--otlp-endpoint", srv.url, "--retry-initial", "50ms"])
    assert send(col, spans_req(["once1", "once2"])) == 200
    got = srv.wait_spans(4, timeout=6)  # the 503'd attempt carried them too
    assert len(srv.requests) == 2
    assert srv.requests[1]["time"] - srv.requests[0]["time"] >= 0.95, "Retry-After ignored"
    st = wait_for(lambda: (lambda s: s if s["exported_items"] == 2 else None)(up_stats(col)))
    assert st["retries"] == 1 and st["http_errors"] == 1 and st["failed_items"] == 0
    time.sleep(0.3)
    assert len(srv.requests) == 2, "delivered more than once"
    assert [s["name"] for s in got[2:]] == ["once1", "once2"]


def test_upstream_429_and_502_504_are_retried_with_backoff(ctx):
    srv = otlp_server(ctx, script=[(429, {}, b""), (502, {}, b""), (504, {}, b"")])
    col = ctx.collector(["--otlp-endpoint", srv.url, "--retry-initial", "100ms",
                         "--retry-max", "400ms"])
    assert send(col, spans_req(["r"])) == 200
    assert wait_for(lambda: len(srv.requests) == 4, timeout=8)
    gaps = [b["time"] - a["time"] for a, b in zip(srv.requests, srv.requests[1:])]
    assert all(g >= 0.045 for g in gaps), gaps  # jitter keeps at least half the backoff
    assert wait_for(lambda: up_stats(col)["exported_items"] == 1)
    assert up_stats(col)["retries"] == 3


def test_upstream_400_is_never_retried_and_is_logged(ctx):
    status = t.f_varint(1, 3) + t.f_str(2, "span name too long")
    srv = otlp_server(ctx, script=[(400, {}, status)])
    col = ctx.collector(["--otlp-endpoint", srv.url, "--retry-initial", "50ms"])
    assert send(col, spans_req(["bad1", "bad2"])) == 200
    assert wait_for(lambda: up_stats(col)["failed_items"] == 2)
    time.sleep(0.5)
    assert len(srv.requests) == 1
    st = up_stats(col)
    assert st["retries"] == 0 and st["exported_items"] == 0
    assert send(col, spans_req(["good"])) == 200  # the next batch is not held up
    assert wait_for(lambda: up_stats(col)["exported_items"] == 1)
    col.stop()
    assert "answered 400" in col.stderr() and "span name too long" in col.stderr()


def test_upstream_down_then_up_loses_nothing_within_the_queue_bound(ctx):
    port = t_free_port()
    srv = OtlpServer(port=port)
    ctx._cleanup.append(srv.stop)
    col = ctx.collector(["--otlp-endpoint", srv.url, "--retry-initial", "100ms",
                         "--retry-max", "500ms"])
    names = []
    t0 = time.monotonic()
    for k in range(30):
        batch = ["down%d.%d" % (k, i) for i in range(5)]
        assert send(col, spans_req(batch, first=k * 10 + 1)) == 200
        names += batch
        time.sleep(0.05)
    # 1.5 s of pauses; waiting behind the retries would be 30 x up to 500 ms more.
    assert time.monotonic() - t0 < 10, "the receiver waited for the dead upstream"
    time.sleep(max(0, 3 - (time.monotonic() - t0)))  # three seconds of outage in all
    st = up_stats(col)
    assert st["transport_errors"] >= 2 and st["queued_items"] == 150
    srv.start()
    got = srv.wait_spans(150, timeout=10)
    assert sorted(s["name"] for s in got) == sorted(names)
    # The upstream has the spans once it answered; spanshimd counts them when it reads that
    # answer, which on a loaded machine may be a moment later.
    deadline = time.monotonic() + 10
    while True:
        st = up_stats(col)
        if st["queued_items"] == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert st["dropped_items"] == 0 and st["exported_items"] == 150 and st["queued_items"] == 0, st


def test_upstream_queue_bound_drops_and_counts_exactly(ctx):
    port = t_free_port()
    srv = OtlpServer(port=port)
    ctx._cleanup.append(srv.stop)
    col = ctx.collector(["--otlp-endpoint", srv.url, "--queue-size", "4k",
                         "--retry-initial", "100ms", "--retry-max", "300ms"])
    sent = 0
    for k in range(40):  # each request is about 400 bytes: the queue takes about 10
        assert send(col, spans_req(["q%d.%d" % (k, i) for i in range(4)],
                                   first=k * 10 + 1)) == 200
        sent += 4
    st = up_stats(col)
    assert st["dropped_items"] > 0 and st["dropped_requests"] > 0
    assert st["queued_bytes"] <= 4096
    srv.start()
    assert wait_for(lambda: up_stats(col)["queued_items"] == 0)
    st = up_stats(col)
    got = srv.spans()
    assert len(got) == st["exported_items"]
    assert st["exported_items"] + st["dropped_items"] == sent
    assert len({s["name"] for s in got}) == len(got), "duplicates"


def test_upstream_partial_success_is_logged_and_counted(ctx):
    resp = t.f_bytes(1, t.f_varint(1, 2) + t.f_str(2, "2 spans had no name"))
    srv = otlp_server(ctx, script=[(200, {}, resp)])
    col = ctx.collector(["--otlp-endpoint", srv.url])
    assert send(col, spans_req(["p1", "", ""])) == 200
    assert wait_for(lambda: up_stats(col)["rejected_items"] == 2)
    col.stop()
    assert "2 spans rejected: 2 spans had no name" in col.stderr()
    assert len(srv.requests) == 1


def test_file_and_upstream_at_once(ctx):
    srv = otlp_server(ctx)
    col = ctx.collector(["--otlp-endpoint", srv.url])  # harness passes --out too
    assert send(col, spans_req(["both1", "both2"])) == 200
    assert len(srv.wait_spans(2)) == 2
    assert [s.name for s in col.spans()] == ["both1", "both2"]


def test_slow_upstream_never_stalls_the_receiver(ctx):
    srv = otlp_server(ctx, delay=6.0)
    col = ctx.collector(["--otlp-endpoint", srv.url])
    t0 = time.monotonic()
    for k in range(50):
        assert send(col, spans_req(["slow%d" % k], first=k + 1)) == 200
    elapsed = time.monotonic() - t0
    # Behind the upstream, one send at least would wait for its 6 s answer.
    assert elapsed < 5.5, "receiver took %.2fs behind a slow upstream" % elapsed
    assert t.stats(col)["spans_received"] == 50
    # Joined into few requests while the first one hangs; everything arrives.
    got = srv.wait_spans(50, timeout=40)
    assert len(got) == 50 and len(srv.requests) < 50


def test_upstream_tls_with_a_private_ca(ctx):
    key = os.path.join(ctx.tmp, "key.pem")
    crt = os.path.join(ctx.tmp, "crt.pem")
    if not shutil.which("openssl"):
        harness.skip("no openssl to make a certificate")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], capture_output=True)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    srv = otlp_server(ctx, tls=(crt, key))
    old = dict(os.environ)
    os.environ["OTEL_EXPORTER_OTLP_CERTIFICATE"] = crt
    try:
        col = ctx.collector(["--otlp-endpoint", srv.url])
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert send(col, spans_req(["tls"])) == 200
    assert [s["name"] for s in srv.wait_spans(1)] == ["tls"]
    # Without the CA the certificate is refused: retried, never delivered.
    srv2 = otlp_server(ctx, tls=(crt, key))
    col2 = ctx.collector(["--otlp-endpoint", srv2.url, "--retry-initial", "100ms"])
    assert send(col2, spans_req(["untrusted"])) == 200
    assert wait_for(lambda: up_stats(col2)["transport_errors"] >= 1)
    assert srv2.spans() == []


def test_shutdown_delivers_what_is_queued(ctx):
    srv = otlp_server(ctx, delay=0.3)
    col = ctx.collector(["--otlp-endpoint", srv.url])
    for k in range(5):
        assert send(col, spans_req(["bye%d" % k], first=k + 1)) == 200
    assert col.stop() == 0
    assert sorted(s["name"] for s in srv.spans()) == ["bye%d" % k for k in range(5)]


def test_bad_upstream_flags_are_refused(ctx):
    for args in (["--otlp-endpoint", "ftp://x"], ["--otlp-compression", "zstd"],
                 ["--otlp-header", "novalue"], ["--otlp-header", "a=b"],
                 ["--queue-size", "0"], ["--retry-initial", "soon"]):
        r = subprocess.run([ctx.spanshimd, "--socket", os.path.join(ctx.tmp, "x.sock")] + args,
                           capture_output=True, timeout=10)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr and r.stdout == b""

