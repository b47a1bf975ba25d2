"""HTTPS through the TLS hooks (issue 11 item 4): HTTP/1.x spans from the plaintext of
OpenSSL (Python's `ssl`, whose libssl is loaded RTLD_LOCAL by the _ssl module) and GnuTLS
(`wget`). Real programs only: Python ThreadingHTTPServer services wrapped in TLS with a
self-signed certificate made by `openssl req`, urllib between them, the real curl (untraced,
as the caller) and the real wget (traced). Every assertion is on what a user sees: the
exported spans, the headers the services received (echoed in their bodies), and the
programs' own output and exit status, compared with an untraced run."""
import os
import re
import subprocess
import sys
import time

import harness
from harness import Service, http_spans, parse_kv, spans_of_pid

INTERNAL, SERVER, CLIENT = 1, 2, 3
ERROR = 2
PY = sys.executable
# Every hook family but tls (SPANSHIM_HOOKS): HTTPS must then be invisible as HTTP.
NO_TLS_HOOKS = "socket,dns,libpq,libcurl,process,http"


# --- helpers ---------------------------------------------------------------------------------

def make_cert(ctx):
    """A self-signed certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) made by the real
    `openssl req` in the test's temp dir. Returns (cert, key) paths."""
    cert, key = os.path.join(ctx.tmp, "cert.pem"), os.path.join(ctx.tmp, "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    return cert, key


def write(ctx, name, text):
    p = os.path.join(ctx.tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def server_spans(spans, path):
    return [s for s in http_spans(spans, SERVER) if s.attrs.get("url.path") == path]


def curl(ctx, cert, *args):
    """The real curl, untraced: the caller of the services (its own libcurl span would be a
    second client)."""
    r = ctx.run(["curl", "-sS", "--cacert", cert] + list(args), preload=False, timeout=30)
    assert r.returncode == 0, r
    return r.stdout


def handshake_us(span):
    v = span.attrs.get("spanshim.tls.handshake_us")
    assert isinstance(v, int) and 0 < v < 10_000_000, (
        "spanshim.tls.handshake_us expected on a connection's first span: %r" % span)
    return v


# A ThreadingHTTPServer wrapped in TLS. GET answers "<METHOD> <path> tp=<traceparent received
# or none>", then, with a downstream URL, " | " and the downstream's answer to the same path
# (fetched with urllib over HTTPS, blocking). /status/N answers N.
TLS_SERVICE_PY = r'''
import http.server, signal, ssl, sys, urllib.error, urllib.request
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
cert, key = sys.argv[1], sys.argv[2]
down = sys.argv[3] if len(sys.argv) > 3 else ""

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        code = int(self.path.split("/")[2]) if self.path.startswith("/status/") else 200
        tp = self.headers.get("traceparent") or "none"
        body = ("%s %s tp=%s" % (self.command, self.path, tp)).encode()
        if down:
            ctx = ssl.create_default_context(cafile=cert)
            with urllib.request.urlopen(down + self.path, context=ctx) as r:
                body += b" | " + r.read()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
srv.socket = tls.wrap_socket(srv.socket, server_side=True)
print("port=%d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
finally:
    srv.server_close()
'''


def tls_service(ctx, cert, key, collector=None, downstream=None, env=None, preload=True):
    script = write(ctx, "tls_service.py", TLS_SERVICE_PY)
    argv = [PY, script, cert, key] + ([downstream] if downstream else [])
    return Service(ctx, argv, collector, env=env, preload=preload, scheme="https")


def chain(ctx, cert, key, collector=None, env=None, preload=True):
    """Two HTTPS services: front calls back through urllib. Returns (front, back)."""
    back = tls_service(ctx, cert, key, collector, env=env, preload=preload)
    front = tls_service(ctx, cert, key, collector, downstream=back.url, env=env,
                        preload=preload)
    return front, back


# --- 1. two traced Python HTTPS services: one trace per request ------------------------------

def test_python_https_services_one_trace_through_urllib_with_traceparent_injected(ctx):
    cert, key = make_cert(ctx)
    paths = ["/orders/1", "/orders/2?x=1"]
    callers = [("%032x" % (0x4bf92f3577b34da6a3ce929d0e0e4730 + i), "%016x" % (0xb7ad6b71 + i))
               for i in range(len(paths))]

    def call(front, i):
        return curl(ctx, cert, "-H", "traceparent: 00-%s-%s-01" % callers[i],
                    front.url + paths[i])

    # What an untraced pair answers.
    front, back = chain(ctx, cert, key, preload=False)
    plain = [call(front, i) for i in range(len(paths))]
    assert front.stop() == 0 and back.stop() == 0
    assert plain[0] == ("GET /orders/1 tp=00-%s-%s-01 | GET /orders/1 tp=none"
                        % callers[0]).encode(), plain[0]

    c = ctx.collector()
    front, back = chain(ctx, cert, key, c)
    traced = [call(front, i) for i in range(len(paths))]
    # Straight to the back service: keep-alive (two requests on one TLS connection), and a
    # Host without a port (https: server.port 443).
    ka = curl(ctx, cert, back.url + "/ka/1", back.url + "/ka/2")
    assert ka == b"GET /ka/1 tp=noneGET /ka/2 tp=none", ka
    assert curl(ctx, cert, "-H", "Host: shop.example", back.url + "/host") == \
        b"GET /host tp=none"
    assert front.stop() == 0, front.stderr()
    assert back.stop() == 0, back.stderr()
    spans = c.spans()
    fs, bs = spans_of_pid(spans, front.pid), spans_of_pid(spans, back.pid)
    ids = {s.span_id: s for s in spans}

    for i, (tid, sid) in enumerate(callers):
        path, query = (paths[i].split("?") + [None])[:2]
        srv = server_spans(fs, path)
        assert len(srv) == 1, http_spans(fs)
        srv = srv[0]
        assert srv.name == "GET" and srv.kind == SERVER, srv
        assert srv.trace_id == tid and srv.parent_id == sid, (
            "the first service's SERVER span must be the child of curl's span", srv)
        assert srv.attrs["url.scheme"] == "https", srv
        assert srv.attrs["server.address"] == "127.0.0.1", srv
        assert srv.attrs["server.port"] == front.port, srv
        assert srv.attrs["http.response.status_code"] == 200, srv
        assert srv.attrs["network.protocol.version"] == "1.1", srv
        assert srv.attrs["user_agent.original"].startswith("curl/"), srv
        assert srv.attrs.get("url.query") == query, srv
        assert srv.status_code != ERROR and "error.type" not in srv.attrs, srv
        handshake_us(srv)  # curl's fresh connection: the handshake is on its first span

        cli = [s for s in http_spans(fs, CLIENT) if s.trace_id == tid]
        assert len(cli) == 1, "one urllib CLIENT span in trace %s: %r" % (tid, http_spans(fs))
        cli = cli[0]
        assert cli.name == "GET" and cli.parent_id == srv.span_id, (cli, srv)
        assert cli.attrs["url.full"] == back.url + paths[i], cli
        assert cli.attrs["http.request.method"] == "GET", cli
        assert cli.attrs["server.port"] == back.port, cli
        assert cli.attrs["http.response.status_code"] == 200, cli
        assert cli.status_code != ERROR, cli
        assert srv.start <= cli.start and cli.end <= srv.end, (srv, cli)
        handshake_us(cli)  # urllib opens a connection per request

        down = server_spans(bs, path)
        assert len(down) == 1, http_spans(bs)
        down = down[0]
        assert down.trace_id == tid and down.parent_id == cli.span_id, (
            "the second service's SERVER span must be the child of the CLIENT span", down, cli)
        assert down.attrs["url.scheme"] == "https", down
        assert down.attrs["server.port"] == back.port, down
        assert down.attrs["http.response.status_code"] == 200, down
        assert down.attrs["user_agent.original"].startswith("Python-urllib/"), down

        # The body is the untraced one, but for the traceparent the second service received:
        # exactly the CLIENT span's context (where the untraced run had none).
        want = plain[i].replace(b"tp=none", ("tp=00-%s-%s-01" % (tid, cli.span_id)).encode())
        assert traced[i] == want, (traced[i], plain[i], cli)
        # Nothing of the request hangs outside it (getaddrinfo, connect: children of srv).
        for s in fs + bs:
            if s.trace_id == tid and s is not srv:
                p = ids.get(s.parent_id)
                assert p is not None and p.trace_id == tid, "orphan in trace: %r" % s

    # Keep-alive: two SERVER spans, one connection; the handshake is on the first only.
    k1, k2 = server_spans(bs, "/ka/1"), server_spans(bs, "/ka/2")
    assert len(k1) == 1 and len(k2) == 1, http_spans(bs)
    k1, k2 = k1[0], k2[0]
    assert k1.attrs["network.peer.port"] == k2.attrs["network.peer.port"], (k1, k2)
    handshake_us(k1)
    assert "spanshim.tls.handshake_us" not in k2.attrs, k2
    assert k1.parent_id == "" and k2.parent_id == "" and k1.trace_id != k2.trace_id, (k1, k2)
    assert k1.attrs["url.scheme"] == k2.attrs["url.scheme"] == "https", (k1, k2)
    h = server_spans(bs, "/host")
    assert len(h) == 1, http_spans(bs)
    assert h[0].attrs["server.address"] == "shop.example", h
    assert h[0].attrs["server.port"] == 443, ("an https Host without a port is 443", h)

    # Exactly the HTTP spans the requests made; the HTTP connections' accept spans dropped.
    assert len(http_spans(fs, SERVER)) == 2 and len(http_spans(fs, CLIENT)) == 2, fs
    assert len(http_spans(bs, SERVER)) == 5 and len(http_spans(bs, CLIENT)) == 0, bs
    acc = [s for s in fs + bs if s.name == "accept"]
    assert acc == [], "accept spans of HTTPS connections should be dropped: %r" % acc


# --- 2. wget (GnuTLS) ---------------------------------------------------------------------------

def test_wget_gnutls_client_span_and_traceparent(ctx):
    if subprocess.run(["sh", "-c", "ldd \"$(command -v wget)\" | grep -q libgnutls"],
                      capture_output=True).returncode != 0:
        harness.skip("wget linked with GnuTLS is not installed (apt-get install wget)")
    cert, key = make_cert(ctx)
    c = ctx.collector()
    srv = tls_service(ctx, cert, key, c)

    def wget(path, preload, env=None):
        return ctx.run(["wget", "-q", "-O", "-", "--ca-certificate=" + cert, srv.url + path],
                       collector=c, preload=preload, extra_env=env, timeout=30)

    tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    plain, plain404 = wget("/wget/1", False), wget("/status/404", False)
    assert plain.returncode == 0 and plain.stdout == b"GET /wget/1 tp=none", plain
    assert plain404.returncode == 8, plain404  # wget: 8 = the server answered an error
    traced = wget("/wget/1", True, {"TRACEPARENT": "00-%s-%s-01" % (tid, sid)})
    traced404 = wget("/status/404", True)
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    ws = [s for s in spans if s.resource.get("process.pid") != srv.pid]

    cli = [s for s in http_spans(ws, CLIENT) if s.attrs.get("url.full") == srv.url + "/wget/1"]
    assert len(cli) == 1, http_spans(ws)
    cli = cli[0]
    assert cli.name == "GET" and cli.trace_id == tid and cli.parent_id == sid, cli
    assert cli.resource.get("process.executable.name") == "wget", cli.resource
    assert cli.attrs["http.request.method"] == "GET", cli
    assert cli.attrs["http.response.status_code"] == 200, cli
    assert cli.attrs["server.port"] == srv.port, cli
    assert cli.status_code != ERROR, cli
    handshake_us(cli)
    # wget printed what it printed untraced, but for the traceparent the server received:
    # the CLIENT span's own context.
    assert traced.returncode == plain.returncode == 0, traced
    assert traced.stdout == b"GET /wget/1 tp=00-%s-%s-01" % (
        tid.encode(), cli.span_id.encode()), traced
    assert traced.stderr == plain.stderr, traced
    # The traced server's span of that request is the CLIENT span's child.
    down = [s for s in server_spans(spans, "/wget/1") if s.trace_id == tid]
    assert len(down) == 1 and down[0].parent_id == cli.span_id, server_spans(spans, "/wget/1")
    assert down[0].attrs["url.scheme"] == "https", down
    assert down[0].attrs["user_agent.original"].startswith("Wget/"), down

    # A 404: wget's exit status and output unchanged; the span is an error with the status.
    assert (traced404.returncode, traced404.stdout, traced404.stderr) == (
        plain404.returncode, plain404.stdout, plain404.stderr), (traced404, plain404)
    e = [s for s in http_spans(ws, CLIENT) if s.attrs.get("url.full") == srv.url + "/status/404"]
    assert len(e) == 1, http_spans(ws)
    assert e[0].attrs["http.response.status_code"] == 404, e
    assert e[0].status_code == ERROR and e[0].attrs.get("error.type") == "404", e
    assert len(http_spans(ws)) == 2, http_spans(ws)


# --- 3. non-HTTP over TLS; SPANSHIM_HOOKS without tls --------------------------------------------

TLS_ECHO_PY = r'''
import signal, socket, ssl, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[1], sys.argv[2])
ls = socket.create_server(("127.0.0.1", 0))
print("port=%d" % ls.getsockname()[1], flush=True)
while True:
    c, _ = ls.accept()
    with tls.wrap_socket(c, server_side=True) as s:
        while True:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)
'''

# Sends binary messages over TLS, one of them later in the stream looking exactly like an
# HTTP request; prints the length and digest of everything echoed back.
TLS_ECHO_CLIENT_PY = r'''
import hashlib, random, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
msgs = [b"\x16\x03\x01\x00\x05hello\x00\xff", random.Random(7).randbytes(70000),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00" * 10, random.Random(8).randbytes(333)]
with socket.create_connection(("127.0.0.1", int(sys.argv[2]))) as raw:
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        got = b""
        for m in msgs:
            s.sendall(m)
            want = len(got) + len(m)
            while len(got) < want:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        assert got == b"".join(msgs), "echo differs"
print("echoed=%d sha256=%s" % (len(got), hashlib.sha256(got).hexdigest()))
'''


def test_non_http_over_tls_is_spanless_and_echoes_unchanged(ctx):
    cert, key = make_cert(ctx)
    srv_py, cli_py = write(ctx, "echo.py", TLS_ECHO_PY), write(ctx, "echo_cli.py",
                                                                 TLS_ECHO_CLIENT_PY)
    srv = Service(ctx, [PY, srv_py, cert, key], preload=False, scheme="https")
    plain = ctx.run([PY, cli_py, cert, str(srv.port)], preload=False, timeout=30)
    assert plain.returncode == 0 and plain.stdout.startswith(b"echoed=70382 "), plain
    assert srv.stop() == 0

    c = ctx.collector()
    srv = Service(ctx, [PY, srv_py, cert, key], c, scheme="https")
    traced = ctx.run([PY, cli_py, cert, str(srv.port)], collector=c, timeout=30)
    assert (traced.returncode, traced.stdout, traced.stderr) == (
        plain.returncode, plain.stdout, plain.stderr), (traced, plain)
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    assert http_spans(spans) == [], "no HTTP spans for a non-HTTP TLS stream: %r" % (
        http_spans(spans))
    assert not [s for s in spans if "url.scheme" in s.attrs or
                "spanshim.tls.handshake_us" in s.attrs], spans
    # The connection is not HTTP: its accept span is kept, and the client's connect is there.
    acc = spans_of_pid(spans, srv.pid, "accept")
    assert len(acc) == 1, spans
    assert acc[0].attrs["network.peer.address"] == "127.0.0.1", acc
    conn = [s for s in spans if s.name == "connect" and s.resource.get("process.pid") != srv.pid
            and s.attrs.get("network.peer.port") == srv.port]
    assert len(conn) == 1, spans


def test_hooks_without_tls_give_no_https_spans_and_apps_still_work(ctx):
    cert, key = make_cert(ctx)
    tid, sid = "5bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    env = {"SPANSHIM_HOOKS": NO_TLS_HOOKS}
    c = ctx.collector()
    front, back = chain(ctx, cert, key, c, env=env)
    body = curl(ctx, cert, "-H", "traceparent: 00-%s-%s-01" % (tid, sid), front.url + "/a/1")
    # Nothing injected downstream (the TLS plaintext is not looked at).
    assert body == b"GET /a/1 tp=00-%s-%s-01 | GET /a/1 tp=none" % (
        tid.encode(), sid.encode()), body
    w = ctx.run(["wget", "-q", "-O", "-", "--ca-certificate=" + cert, back.url + "/w"],
                collector=c, extra_env=env, timeout=30)
    assert w.returncode == 0 and w.stdout == b"GET /w tp=none", w
    assert front.stop() == 0, front.stderr()
    assert back.stop() == 0, back.stderr()
    spans = c.spans()
    assert http_spans(spans) == [], "SPANSHIM_HOOKS without tls: %r" % http_spans(spans)
    assert not [s for s in spans if "url.scheme" in s.attrs], spans
    # The socket hooks still work: the connections were accepted and connected; not being
    # seen as HTTP, their accept spans are kept (curl's, urllib's and wget's connections).
    acc = [s for s in spans if s.name == "accept"]
    assert len(spans_of_pid(spans, front.pid, "accept")) == 1, acc
    assert len(spans_of_pid(spans, back.pid, "accept")) == 2, acc
    assert [s for s in spans_of_pid(spans, front.pid, "connect")
            if s.attrs.get("network.peer.port") == back.port], spans


# --- 4. non-blocking HTTPS clients ---------------------------------------------------------------

NB_CLIENT_PY = r'''
import asyncio, select, socket, ssl, sys, urllib.request
mode, cafile, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
path = "/" + mode
req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % (path, port)).encode()

def body_of(resp):
    head, _, body = resp.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0] + b" " + body

if mode == "asyncio":
    async def main():
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        w.write(req)
        await w.drain()
        resp = await r.read()
        w.close()
        await w.wait_closed()
        return resp
    print(body_of(asyncio.run(main())).decode())
elif mode == "nonblocking":
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                        server_hostname="127.0.0.1")
    s.setblocking(False)
    out, resp = req, b""
    while out:
        try:
            out = out[s.send(out):]
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([s], [s], [], 5)
    while True:
        try:
            b = s.recv(65536)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            select.select([s], [], [], 5)
            continue
        if not b:
            break
        resp += b
    s.close()
    print(body_of(resp).decode())
else:  # urllib with a timeout: Python makes the socket O_NONBLOCK and polls
    with urllib.request.urlopen("https://127.0.0.1:%d%s" % (port, path), context=ctx,
                                timeout=10) as r:
        print("HTTP/1.1 %d OK %s" % (r.status, r.read().decode()))
'''


def test_nonblocking_https_clients_asyncio_spanless_python_sockets_injected(ctx):
    """Non-blocking HTTPS clients against a traced HTTPS server, each run untraced and
    traced: the output and exit status must be the same.
    - asyncio.open_connection(ssl=ctx) runs TLS over memory BIOs (SSLObject): the hooks
      cannot see that plaintext, so the client makes no HTTP span (and nothing is
      injected); the app must still work and nothing crash.
    - an ssl socket switched to non-blocking, and urllib with timeout= (Python makes the
      socket O_NONBLOCK and polls): the TLS session is on the socket, so the CLIENT span is
      made, and since CPython lets OpenSSL retry a write from a moved buffer
      (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER) the traceparent is spliced in: the server sees
      the CLIENT span's id and its SERVER span is that span's child. The output differs
      from the untraced run only by that header's value."""
    cert, key = make_cert(ctx)
    c = ctx.collector()
    srv = tls_service(ctx, cert, key, c)
    cli = write(ctx, "nb_client.py", NB_CLIENT_PY)
    modes = ["asyncio", "nonblocking", "timeout"]
    runs = {}
    for mode in modes:
        argv = [PY, cli, mode, cert, str(srv.port)]
        plain = ctx.run(argv, preload=False, timeout=30)
        assert plain.returncode == 0, plain
        assert plain.stdout == b"HTTP/1.1 200 OK GET /%s tp=none\n" % mode.encode(), plain
        traced = ctx.run(argv, collector=c, timeout=30)
        assert (traced.returncode, traced.stderr) == (plain.returncode, plain.stderr), (
            mode, traced, plain)
        if mode == "asyncio":
            assert traced.stdout == plain.stdout, (mode, traced, plain)
        else:
            assert re.fullmatch(rb"HTTP/1\.1 200 OK GET /%s tp=00-[0-9a-f]{32}-[0-9a-f]{16}-03\n"
                                % mode.encode(), traced.stdout), (mode, traced.stdout)
        runs[mode] = (plain, traced)
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    clients = [s for s in spans if s.resource.get("process.pid") != srv.pid]

    a = [s for s in http_spans(clients) if "/asyncio" in str(s.attrs.get("url.full"))]
    assert a == [], "asyncio's memory-BIO TLS is not seen: %r" % a
    for mode in ("nonblocking", "timeout"):
        url = srv.url + "/" + mode
        cs = [s for s in http_spans(clients, CLIENT) if s.attrs.get("url.full") == url]
        assert len(cs) == 1, (mode, http_spans(clients))
        assert cs[0].name == "GET" and cs[0].attrs["http.response.status_code"] == 200, cs
        assert cs[0].status_code != ERROR, cs
        tp = runs[mode][1].stdout.split(b"tp=")[1].strip().decode()
        assert tp.split("-")[2] == cs[0].span_id and tp.split("-")[1] == cs[0].trace_id, (
            mode, tp, cs[0])
        ss = [s for s in server_spans(spans, "/" + mode) if s.parent_id]
        assert len(ss) == 1 and ss[0].parent_id == cs[0].span_id, (mode, ss, cs[0])
    assert len(http_spans(clients)) == 2, http_spans(clients)
    # Each request, the asyncio one included, has its SERVER span: parentless when nothing
    # was injected (the untraced runs, asyncio's traced run).
    for mode in modes:
        ss = server_spans(spans, "/" + mode)
        assert len(ss) == 2, (mode, ss)  # the untraced and the traced run
        assert len([s for s in ss if s.parent_id == ""]) == (2 if mode == "asyncio" else 1), ss
        for s in ss:
            assert s.attrs["url.scheme"] == "https", s
            assert s.attrs["http.response.status_code"] == 200, s
