"""HTTP/1.x at the socket layer (issue 11): SERVER spans for requests read on accepted
sockets, the request as its thread's context, W3C traceparent adopted and injected on raw
sockets, and non-HTTP traffic left alone. Real servers and clients only: threaded Python
services (http.server + psycopg2 + urllib) against the throwaway PostgreSQL, a C
thread-per-connection and forking server (tests/progs/http_server), nginx as an event-loop
server, the real curl and psql. Every assertion is on what a user sees: the exported spans
and their attributes, and the programs' own output and exit status."""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time

import harness
from harness import Service, http_spans, parse_kv, spans_of_pid

INTERNAL, SERVER, CLIENT = 1, 2, 3
ERROR = 2
SYS_PY = "/usr/bin/python3"  # Debian's python3, which has psycopg2 (PATH's may not)
TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# --- helpers ---------------------------------------------------------------------------------

def servers(spans):
    return http_spans(spans, SERVER)


def by_path(spans):
    """{url.path: [spans]} of the SERVER spans."""
    d = {}
    for s in servers(spans):
        d.setdefault(s.attrs.get("url.path"), []).append(s)
    return d


def one_server_span(spans, path, method, status, why=""):
    got = by_path(spans).get(path, [])
    assert len(got) == 1, "%s: exactly one SERVER span for %s expected, got %d: %r" % (
        why, path, len(got), servers(spans))
    s = got[0]
    assert s.name == method and s.attrs["http.request.method"] == method, (why, s)
    assert s.attrs.get("http.response.status_code") == status, (why, s)
    if status >= 500:
        assert s.status_code == ERROR and s.attrs.get("error.type") == str(status), (why, s)
    else:
        assert s.status_code != ERROR and "error.type" not in s.attrs, (why, s)
    assert s.end >= s.start > 0, s
    return s


def curl(ctx, *args, timeout=30):
    """The real curl, untraced (its own libcurl spans would be a second client)."""
    r = ctx.run(["curl", "-sS"] + list(args), preload=False, timeout=timeout)
    assert r.returncode == 0, r
    return r.stdout


def raw_exchange(port, data, chunk=None, delay=0.0, timeout=10):
    """Sends data on a fresh TCP connection (in one send, or `chunk` bytes per send with
    TCP_NODELAY and `delay` between sends), half-closes (shutdown SHUT_WR), and returns every byte answered
    until the peer closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if chunk is None:
            s.sendall(data)
        else:
            for i in range(0, len(data), chunk):
                s.sendall(data[i:i + chunk])
                if delay:
                    time.sleep(delay)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def c_server(ctx, mode, collector=None, env=None, preload=True):
    return Service(ctx, [ctx.prog("http_server"), mode], collector, env, preload)


def write(ctx, name, text):
    p = os.path.join(ctx.tmp, name)
    with open(p, "w") as f:
        f.write(text)
    return p


# --- 1. two traced Python services, PostgreSQL and urllib between them -------------------------

SERVICE_PY = r'''
import http.server, json, os, signal, sys, urllib.request
mode = sys.argv[1]

def term(*a):
    sys.exit(0)
signal.signal(signal.SIGTERM, term)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        n = int(self.path.rsplit("/", 1)[1])
        if mode == "front":
            import psycopg2
            conn = psycopg2.connect(os.environ["SVC_DSN"])
            cur = conn.cursor()
            cur.execute("SELECT name, qty FROM orders WHERE id = %s", (n,))
            name, qty = cur.fetchone()
            conn.commit()
            conn.close()
            with urllib.request.urlopen(os.environ["SVC_DOWNSTREAM"] + "/inventory/%d" % n) as r:
                inv = r.read().decode()
            body = json.dumps({"order": n, "name": name, "qty": qty, "inventory": inv})
        else:
            body = "in-stock:%d" % n
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
finally:
    srv.server_close()
'''


def _orders_db(ctx):
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE orders (id int PRIMARY KEY, name text, qty int);"
                  "INSERT INTO orders VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', 7);"
                  "GRANT SELECT ON orders TO %s" % pg.user, db=pg.user)
    return pg


def _two_services(ctx, pg, collector, preload=True):
    script = write(ctx, "service.py", SERVICE_PY)
    back = Service(ctx, [SYS_PY, script, "back"], collector, preload=preload)
    front = Service(ctx, [SYS_PY, script, "front"], collector, preload=preload,
                    env={"SVC_DSN": pg.dsn(), "SVC_DOWNSTREAM": back.url})
    return front, back


def test_python_services_one_trace_per_request_across_db_and_urllib(ctx):
    if not os.path.exists(SYS_PY) or subprocess.run(
            [SYS_PY, "-c", "import psycopg2"], capture_output=True).returncode != 0:
        harness.skip("%s with psycopg2 is missing (tools/deps.sh installs python3-psycopg2)"
                     % SYS_PY)
    pg = _orders_db(ctx)
    # The bodies an untraced pair of services answers, for comparison.
    front, back = _two_services(ctx, pg, None, preload=False)
    plain = [curl(ctx, front.url + "/orders/%d" % i) for i in (1, 2, 3)]
    assert front.stop() == 0 and back.stop() == 0
    assert plain[0] == b'{"order": 1, "name": "apple", "qty": 3, "inventory": "in-stock:1"}'

    c = ctx.collector(args=["--no-sql-summary"])
    front, back = _two_services(ctx, pg, c)
    callers = {}
    for i in (1, 2, 3):
        tid, sid = "%032x" % (0x4bf92f3577b34da6a3ce929d0e0e4730 + i), "%016x" % (0xb7ad6b71 + i)
        body = curl(ctx, "-H", "traceparent: 00-%s-%s-01" % (tid, sid),
                    front.url + "/orders/%d" % i)
        assert body == plain[i - 1], "the traced service answered differently: %r vs %r" % (
            body, plain[i - 1])
        callers[i] = (tid, sid)
    assert front.stop() == 0, front.stderr()
    assert back.stop() == 0, back.stderr()
    spans = c.spans()
    fs, bs = spans_of_pid(spans, front.pid), spans_of_pid(spans, back.pid)
    ids = {s.span_id: s for s in spans}

    # One trace per request: every span is in the trace of the caller that made the
    # request (an HTTP connection's `accept` gives way to its requests' SERVER spans).
    traces = {s.trace_id for s in spans}
    assert traces == {t for t, _ in callers.values()}, (
        "3 requests should give exactly the callers' 3 traces, got %d: %r" % (
            len(traces), sorted((s.trace_id, s.name) for s in spans)))

    for i, (tid, sid) in callers.items():
        srv = [s for s in servers(fs) if s.attrs.get("url.path") == "/orders/%d" % i]
        assert len(srv) == 1, servers(fs)
        srv = srv[0]
        assert srv.name == "GET" and srv.trace_id == tid and srv.parent_id == sid, srv
        assert srv.attrs["http.response.status_code"] == 200, srv
        assert srv.attrs["url.scheme"] == "http" and srv.attrs["server.port"] == front.port
        assert srv.attrs["server.address"] == "127.0.0.1", srv
        assert srv.attrs["client.address"] == "127.0.0.1", srv
        assert srv.attrs["network.protocol.version"] == "1.1", srv
        assert srv.attrs["user_agent.original"].startswith("curl/"), srv
        in_trace = [s for s in fs if s.trace_id == tid]
        # The DB spans are the server span's children; the socket spans of the libpq
        # connection sit under `connect postgresql`.
        conn = [s for s in in_trace if s.name == "connect postgresql"]
        assert len(conn) == 1 and conn[0].parent_id == srv.span_id, in_trace
        sel = [s for s in in_trace if s.name == "SELECT orders"]
        assert len(sel) == 1 and sel[0].parent_id == srv.span_id, in_trace
        assert sel[0].attrs["db.query.text"] == "SELECT name, qty FROM orders WHERE id = ?"
        for s in in_trace:
            if s.attrs.get("db.system.name") == "postgresql" and s.name != "connect postgresql":
                assert s.parent_id == srv.span_id, s
        # The outbound urllib request: a CLIENT span, child of the server span.
        cli = [s for s in http_spans(in_trace, CLIENT)]
        assert len(cli) == 1, in_trace
        cli = cli[0]
        assert cli.name == "GET" and cli.parent_id == srv.span_id, cli
        assert cli.attrs["url.full"] == back.url + "/inventory/%d" % i, cli
        assert cli.attrs["http.response.status_code"] == 200, cli
        assert cli.attrs["server.port"] == back.port, cli
        # The second service's SERVER span is the child of that CLIENT span (injected).
        down = [s for s in servers(bs) if s.attrs.get("url.path") == "/inventory/%d" % i]
        assert len(down) == 1, servers(bs)
        assert down[0].trace_id == tid and down[0].parent_id == cli.span_id, (down, cli)
        assert down[0].attrs["http.response.status_code"] == 200
        # Nothing of the request hangs outside it.
        for s in in_trace:
            if s is not srv:
                p = ids.get(s.parent_id)
                assert p is not None and p.trace_id == tid, "orphan in trace: %r" % s


# --- 2. a C thread-per-connection server and a forking server --------------------------------

PIPELINED = ("GET /pipe/1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
             "POST /pipe/2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\n\r\nabc"
             "GET /pipe/3 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")


def _c_server_requests(ctx, mode):
    c = ctx.collector()
    srv = c_server(ctx, mode, c)
    u = srv.url
    big = os.path.join(ctx.tmp, "big.bin")
    with open(big, "wb") as f:
        f.write(random.Random(11).randbytes(300 * 1024))
    conns = 0
    # Keep-alive: three requests on one connection.
    out = curl(ctx, "--http1.1", u + "/ka/1", u + "/chunked", u + "/status/404")
    assert out == b"GET /ka/1 body=0\nchunk1-chunk2\nGET /status/404 body=0\n", out
    conns += 1
    # Pipelined: three requests in one send.
    out = raw_exchange(srv.port, PIPELINED.format(port=srv.port).encode())
    assert out.count(b"HTTP/1.1 200 X\r\n") == 3, out
    assert b"GET /pipe/1 body=0\n" in out and b"POST /pipe/2 body=3\n" in out, out
    assert out.endswith(b"GET /pipe/3 body=0\n"), out
    conns += 1
    # HTTP/1.0, a 500, a POST with a body, Expect: 100-continue with a big body.
    assert curl(ctx, "-0", u + "/v10") == b"GET /v10 body=0\n"
    assert curl(ctx, u + "/status/500") == b"GET /status/500 body=0\n"
    assert curl(ctx, "-d", "a=1&b=2", u + "/post") == b"POST /post body=7\n"
    assert curl(ctx, "-H", "Expect: 100-continue", "--data-binary", "@" + big,
                u + "/expect") == b"POST /expect body=%d\n" % (300 * 1024)
    conns += 4
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    why = "%s server" % mode
    one_server_span(spans, "/ka/1", "GET", 200, why)
    one_server_span(spans, "/chunked", "GET", 200, why)
    one_server_span(spans, "/status/404", "GET", 404, why)
    one_server_span(spans, "/pipe/1", "GET", 200, why)
    one_server_span(spans, "/pipe/2", "POST", 200, why)
    one_server_span(spans, "/pipe/3", "GET", 200, why)
    v10 = one_server_span(spans, "/v10", "GET", 200, why)
    assert v10.attrs["network.protocol.version"] == "1.0", v10
    one_server_span(spans, "/status/500", "GET", 500, why)
    one_server_span(spans, "/post", "POST", 200, why)
    exp = one_server_span(spans, "/expect", "POST", 200, why)
    assert len(servers(spans)) == 10, "%s: %r" % (why, servers(spans))
    ka = by_path(spans)
    # One connection's requests share its peer; requests of a keep-alive connection follow
    # one another.
    assert ka["/ka/1"][0].attrs["network.peer.port"] == ka["/status/404"][0].attrs[
        "network.peer.port"], ka
    assert ka["/ka/1"][0].end <= ka["/chunked"][0].start + 1, ka
    for s in servers(spans):
        assert s.kind == SERVER and s.parent_id == "", s
        assert s.attrs["server.address"] == "127.0.0.1" and s.attrs["server.port"] == srv.port
        assert s.attrs["network.peer.address"] == "127.0.0.1", s
        assert s.attrs["url.scheme"] == "http", s
    assert exp.end - exp.start < 10e9, exp
    return srv, spans, conns


def test_c_threaded_server_keepalive_pipelined_http10_chunked_post_expect(ctx):
    srv, spans, conns = _c_server_requests(ctx, "thread")
    assert {s.resource.get("process.pid") for s in servers(spans)} == {srv.pid}


def test_c_forking_server_children_spans_arrive(ctx):
    srv, spans, conns = _c_server_requests(ctx, "fork")
    pids = {s.resource.get("process.pid") for s in servers(spans)}
    assert srv.pid not in pids, "requests were served by the children: %r" % servers(spans)
    assert len(pids) == conns, "one child per connection: %r" % pids
    # The parent's accept spans arrived too.
    assert len(spans_of_pid(spans, srv.pid, "accept")) == conns, spans


def test_c_server_request_is_its_threads_context_keepalive_and_pipelined(ctx):
    """A connect made while serving a request is that request's child, pipelined requests
    (several read before the first is answered) too: each is the thread's context from
    the answer to the one before (before, the later ones had none)."""
    c = ctx.collector()
    _, dep = ctx.listener()
    srv = c_server(ctx, "thread", c)
    u = srv.url
    assert curl(ctx, "--http1.1", u + "/connect/%d?ka=1" % dep, u + "/connect/%d?ka=2" % dep) \
        == b"GET /connect/%d?ka=1 body=0\nGET /connect/%d?ka=2 body=0\n" % (dep, dep)
    pipe = "".join("GET /connect/%d?p=%d HTTP/1.1\r\nHost: x\r\n%s\r\n" % (
        dep, i, "Connection: close\r\n" if i == 3 else "") for i in (1, 2, 3))
    out = raw_exchange(srv.port, pipe.encode())
    assert out.count(b"HTTP/1.1 200 X\r\n") == 3, out
    assert srv.stop() == 0
    spans = c.spans()
    reqs = {s.attrs.get("url.query"): s for s in servers(spans)}
    assert set(reqs) == {"ka=1", "ka=2", "p=1", "p=2", "p=3"}, servers(spans)
    conns = sorted([s for s in spans if s.name == "connect"
                    and s.attrs.get("network.peer.port") == dep], key=lambda s: s.start)
    assert len(conns) == 5, spans
    for q, con in zip(("ka=1", "ka=2", "p=1", "p=2", "p=3"), conns):
        r = reqs[q]
        assert r.start <= con.start and con.end <= r.end, (q, r, con)
        # p=1 was read first, alone: it keeps the context while later pipelined requests
        # are read behind it (their spans must not pop it); each next one is the
        # context once the one before is answered.
        assert con.parent_id == r.span_id and con.trace_id == r.trace_id, (
            "the connect made while serving %s is not its child: %r %r" % (q, con, r))


# --- 3. nginx: an event loop --------------------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root root;
error_log {d}/error.log warn;
pid {d}/nginx.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    sendfile on;
    default_type text/plain;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000;
    server {{
        listen 127.0.0.1:{port};
        root {d}/www;
        location = /ok {{ return 200 "ok\\n"; }}
        location = /fail {{ return 500; }}
        location /up/ {{ proxy_pass http://127.0.0.1:{up}/; }}
        location /ka/ {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    upstream backend {{ server 127.0.0.1:{up}; keepalive 4; }}
}}
"""


def _nginx(ctx, collector, upstream_port):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                       else None)
    if nginx is None:
        harness.skip("nginx is not installed (tools/deps.sh installs nginx-light)")
    d = os.path.join(ctx.tmp, "nginx")
    os.makedirs(os.path.join(d, "www"))
    with open(os.path.join(d, "www", "static.txt"), "w") as f:
        f.write("static file\n" * 100)
    port = harness.free_port()
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(d=d, port=port, up=upstream_port))
    p = subprocess.Popen([nginx, "-c", conf, "-e", os.path.join(d, "error.log")],
                         env=ctx.env(collector), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)

    def stop():
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode
    ctx._cleanup.append(stop)
    harness.wait_port(port, p, "nginx", timeout=10)
    return port, p, stop


def test_nginx_event_loop_every_request_has_its_server_span(ctx):
    up = ctx.http_server()
    c = ctx.collector()
    port, proc, stop = _nginx(ctx, c, up.port)
    u = "http://127.0.0.1:%d" % port
    # The probe connection the startup check made is not a request: no span for it.
    # A slow proxied request stays in flight on the worker while a keep-alive client runs
    # 20 requests: the worker interleaves requests (an event loop).
    slow = subprocess.Popen(["curl", "-sS", u + "/up/slow/1500"], stdout=subprocess.PIPE,
                            env=ctx.env(None, preload=False))
    time.sleep(0.3)
    paths = []
    for i in range(20):
        paths.append(["/ok?i=%d" % i, "/missing-%d" % i, "/fail?i=%d" % i,
                      "/static.txt?i=%d" % i][i % 4])
    args = ["--http1.1", "-w", "%{http_code} %{num_connects}\n"]
    for p in paths:
        args += ["-o", "/dev/null", u + p]
    out = curl(ctx, *args)
    codes = [line.split()[0] for line in out.decode().splitlines()]
    def want(path):
        return {"/ok": "200", "/mi": "404", "/fa": "500", "/st": "200"}[path[:3]]
    assert codes == [want(p) for p in paths], out
    # nginx closes the connection after a 500 (no keep-alive on internal errors): curl
    # opens a new one for the request after each.
    connects = sum(int(line.split()[1]) for line in out.decode().splitlines())
    assert connects == 1 + sum(1 for p in paths[:-1] if want(p) == "500"), out
    assert slow.wait(20) == 0 and slow.stdout.read() == b"hello\n"
    assert stop() == 0
    spans = c.spans()
    srv = servers(spans)
    got = {}
    for s in srv:
        key = s.attrs.get("url.path", "") + ("?" + s.attrs["url.query"]
                                              if "url.query" in s.attrs else "")
        got.setdefault(key, []).append(s)
    for p in paths:
        assert len(got.get(p, [])) == 1, "one SERVER span for %s expected: %r" % (p, srv)
        s = got[p][0]
        assert s.name == "GET", s
        assert str(s.attrs.get("http.response.status_code")) == want(p), s
        assert (s.status_code == ERROR) == (want(p) == "500"), s
    assert len(got.get("/up/slow/1500", [])) == 1, srv
    assert len(srv) == 21, "no span for anything but the 21 requests: %r" % srv
    # No span of nginx is the child of another request's span: a span parented on a
    # SERVER span belongs to that request (the proxied call of /up/slow/1500 only).
    # The worker accepts the keep-alive client's connection while the slow request is in
    # flight: that accept (like every span of the other connection) is no child of it.
    sid = {s.span_id: s for s in srv}
    wrong = []
    for s in spans:
        p = sid.get(s.parent_id)
        if p is None:
            continue
        ok = (p.attrs["url.path"] == "/up/slow/1500" and
              (s.kind == CLIENT and s.attrs.get("url.full", "").endswith("/slow/1500") or
               s.name == "connect" and s.attrs.get("network.peer.port") == up.port))
        if not ok:
            wrong.append("%s (peer port %s) is a child of %s %s" % (
                s.name, s.attrs.get("network.peer.port"), p.name, p.attrs.get("url.path")))
    assert not wrong, "nginx spans nested under another request's span: %s" % wrong
    # The upstream request is a CLIENT span with the upstream's answer.
    cli = http_spans(spans, CLIENT)
    assert len(cli) == 1 and cli[0].attrs["http.response.status_code"] == 200, cli
    assert cli[0].attrs["url.full"] == "http://127.0.0.1:%d/slow/1500" % up.port, cli[0]


BACKEND_PY = r'''
import http.server, signal, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        time.sleep(0.03)  # so that nginx has several requests in flight at once
        body = ("%s tp=%s\n" % (self.path, self.headers.get("traceparent"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
'''


def _nginx_and_backend(ctx):
    """A collector, BACKEND_PY traced, nginx traced in front of it: (collector, backend
    Service, nginx's port, nginx's stop())."""
    c = ctx.collector()
    script = os.path.join(ctx.tmp, "backend.py")
    with open(script, "w") as f:
        f.write(BACKEND_PY)
    be = harness.Service(ctx, [SYS_PY, script], collector=c)
    port, proc, stop = _nginx(ctx, c, be.port)
    return c, be, port, stop


def _nginx_spans(spans, backend_pid):
    return [s for s in spans if s.resource.get("process.pid") != backend_pid]


def _proxied_hops(spans, backend_pid, paths):
    """For each path: nginx's SERVER span, its CLIENT span to the backend, the backend's
    SERVER span; the hops that are not each the child of the one before, in one trace."""
    ngx = _nginx_spans(spans, backend_pid)  # the worker's (not the master's pid)
    srv_n = {s.attrs.get("url.path", "") + "?" + s.attrs.get("url.query", ""): s
             for s in ngx if s.kind == SERVER}
    cli_n = {s.span_id: s for s in ngx if s.kind == CLIENT}
    srv_b = {s.attrs.get("url.path", "") + "?" + s.attrs.get("url.query", ""): s
             for s in harness.spans_of_pid(spans, backend_pid) if s.kind == SERVER}
    wrong = []
    for p in paths:
        front, back = srv_n.get(p[0]), srv_b.get(p[1])
        if front is None or back is None:
            wrong.append("%s: nginx SERVER %s, backend SERVER %s" % (p, front, back))
            continue
        hop = cli_n.get(back.parent_id)
        if hop is None or hop.parent_id != front.span_id or not (
                front.trace_id == hop.trace_id == back.trace_id):
            wrong.append("%s: backend SERVER's parent %s is %s; nginx SERVER %s/%s" % (
                p, back.parent_id, hop and "CLIENT %s/%s child of %r" % (
                    hop.trace_id, hop.span_id, hop.parent_id), front.trace_id, front.span_id))
    return wrong


def test_nginx_joins_every_proxied_request_while_it_serves_many_at_once(ctx):
    """nginx is an event loop: under concurrency each request is still one trace, nginx
    SERVER → nginx CLIENT → backend SERVER, with fresh upstream connections (/up/) and
    with kept-alive ones (/ka/); and a caller's traceparent, which nginx forwards as it
    came, is rewritten to name nginx's CLIENT span (the hop nests as a hop)."""
    c, be, port, stop = _nginx_and_backend(ctx)
    u = "http://127.0.0.1:%d" % port
    # (what nginx serves, what the backend serves) for 24 requests of each kind
    paths = [("/%s/r?k=%s&i=%d" % (k, k, i), "/r?k=%s&i=%d" % (k, i))
             for k in ("up", "ka") for i in range(24)]
    # 8 clients at once, each on its own connection (curl -Z), the backend 30 ms a request.
    args = ["-Z", "--parallel-max", "8", "-w", "%{http_code}\n"]
    for front, _ in paths:
        args += ["-o", "/dev/null", u + front]
    out = curl(ctx, *args, timeout=120)
    assert out.decode().split() == ["200"] * len(paths), out
    # A caller's own traceparent, forwarded by nginx: rewritten in place, once.
    caller = "00-%s-%s-01" % ("ab" * 16, "cd" * 8)
    got = curl(ctx, "-H", "traceparent: " + caller, u + "/ka/fwd")
    assert stop() == 0 and be.stop() == 0
    spans = c.spans()
    wrong = _proxied_hops(spans, be.pid, paths)
    assert not wrong, "%d of %d proxied requests not joined:\n%s" % (
        len(wrong), len(paths), "\n".join(wrong[:10]))
    fwd = [s for s in _nginx_spans(spans, be.pid)
           if s.kind == SERVER and s.attrs.get("url.path") == "/ka/fwd"]
    assert len(fwd) == 1 and fwd[0].trace_id == "ab" * 16 and fwd[0].parent_id == "cd" * 8, fwd
    hop = [s for s in _nginx_spans(spans, be.pid)
           if s.kind == CLIENT and s.parent_id == fwd[0].span_id]
    assert len(hop) == 1, "nginx's CLIENT span for /ka/fwd is not the SERVER span's child"
    back = [s for s in harness.spans_of_pid(spans, be.pid)
            if s.kind == SERVER and s.attrs.get("url.path") == "/fwd"]
    assert len(back) == 1 and back[0].parent_id == hop[0].span_id, (back, hop)
    # What the backend received: the caller's header with only its parent-id changed.
    assert got.decode() == "/fwd tp=00-%s-%s-01\n" % ("ab" * 16, hop[0].span_id), got


def test_nginx_joins_each_pipelined_request_to_its_own_upstream_call(ctx):
    """A client pipelines four requests on one connection; nginx reads them in one read
    and serves them one after the other (each next one after answering the one before,
    without reading again). Each is one trace: nginx SERVER → CLIENT → backend SERVER
    (before, the first's upstream call was the last's child and the others' were traces
    of their own)."""
    c, be, port, stop = _nginx_and_backend(ctx)
    paths = [("/%s/r?i=%d" % (k, i), "/r?i=%d" % i) for i, k in enumerate(["up", "ka", "ka", "up"])]
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p, _ in paths))
    got = b""
    s.settimeout(60)
    while got.count(b" tp=") < len(paths) or not got.endswith(b"\n"):
        d = s.recv(65536)
        assert d, got
        got += d
    s.close()
    assert got.count(b"HTTP/1.1 200 OK") == len(paths), got
    assert stop() == 0 and be.stop() == 0
    wrong = _proxied_hops(c.spans(), be.pid, paths)
    assert not wrong, "pipelined requests not joined:\n%s" % "\n".join(wrong)


LATE_BACKEND_PY = r"""
import http.server, os, signal, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = ("%s tp=%s\n" % (self.path, self.headers.get("traceparent"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 0  # listen(0): one connection waiting fills the queue
    daemon_threads = True
srv = S(("127.0.0.1", 0), H)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("port=%d" % srv.server_address[1], flush=True)
while not os.path.exists(sys.argv[1]):  # not accepting yet: SYNs beyond the queue wait
    time.sleep(0.05)
srv.serve_forever()
"""


def test_nginx_joins_a_request_whose_upstream_connect_completes_after_it_became_an_event_loop(ctx):
    """nginx's worker reads request A (its first: the worker is not yet known as an event
    loop) and connects upstream; the connect completes only ~1 s later (the backend's
    accept queue is full: the SYN is retransmitted). Meanwhile request B arrives: now the
    worker is an event loop. A's upstream request, written in the callback for its
    connect, is still A's: nginx SERVER → CLIENT → backend SERVER in A's trace (it was a
    trace of its own, or B's: 1 in 200 under `ab -c 8`)."""
    c = ctx.collector()
    script = os.path.join(ctx.tmp, "late_backend.py")
    with open(script, "w") as f:
        f.write(LATE_BACKEND_PY)
    go = os.path.join(ctx.tmp, "accept-now")
    be = harness.Service(ctx, [SYS_PY, script, go], collector=c)
    # Fill the backend's accept queue: connects beyond it get no SYN-ACK until it accepts.
    filler = socket.create_connection(("127.0.0.1", be.port))
    port, proc, stop = _nginx(ctx, c, be.port)
    u = "http://127.0.0.1:%d" % port
    env = ctx.env(None, preload=False)
    a = subprocess.Popen(["curl", "-sS", u + "/up/a"], stdout=subprocess.PIPE, env=env)
    time.sleep(0.3)
    b = subprocess.Popen(["curl", "-sS", u + "/up/b"], stdout=subprocess.PIPE, env=env)
    time.sleep(0.3)
    assert a.poll() is None and b.poll() is None, "the upstream connects did not wait"
    with open(go, "w"):
        pass
    filler.close()
    assert a.wait(60) == 0 and b.wait(60) == 0
    assert a.stdout.read().startswith(b"/a tp=") and b.stdout.read().startswith(b"/b tp=")
    assert stop() == 0 and be.stop() == 0
    spans = c.spans()
    paths = [("/up/a?", "/a?"), ("/up/b?", "/b?")]
    wrong = _proxied_hops(spans, be.pid, paths)
    assert not wrong, "proxied requests not joined:\n%s" % "\n".join(wrong)


FAILING_PY = r'''
import http.server, os, signal, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/raise":      # the handler fails: http.server closes, no answer
            raise RuntimeError("handler failed")
        if self.path == "/slow":       # still serving when SIGTERM comes
            print("serving", flush=True)
            time.sleep(30)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def handle_error(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.handle_error = lambda *a: None
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
'''


def test_a_request_a_server_never_answers_is_a_failed_server_span(ctx):
    """A handler that dies without answering (the connection closed, the client gets
    nothing) is a failed SERVER span (error.type=connection_closed), not a success; a
    service killed by SIGTERM while serving a request ends that request's span as failed
    by the signal (error.type=SIGTERM) and dies of SIGTERM as it would untraced."""
    c = ctx.collector()
    script = os.path.join(ctx.tmp, "failing.py")
    with open(script, "w") as f:
        f.write(FAILING_PY)
    svc = Service(ctx, [SYS_PY, script], collector=c)
    r = ctx.run(["curl", "-sS", svc.url + "/raise"], preload=False)
    assert r.returncode == 52, r  # curl: empty reply from server
    ok = curl(ctx, svc.url + "/ok")
    assert ok == b"ok\n"
    slow = subprocess.Popen(["curl", "-sS", svc.url + "/slow"], env=ctx.env(None, preload=False),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert svc.proc.stdout.readline() == b"serving\n"
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(30) == -signal.SIGTERM
    assert slow.wait(30) == 52, slow.stderr.read()
    spans = c.spans()
    raised = [s for s in servers(spans) if s.attrs.get("url.path") == "/raise"]
    assert len(raised) == 1, servers(spans)
    assert raised[0].status_code == ERROR and raised[0].attrs.get("error.type") == "connection_closed", raised
    assert "http.response.status_code" not in raised[0].attrs, raised
    one_server_span(spans, "/ok", "GET", 200, "answered")
    cut = [s for s in servers(spans) if s.attrs.get("url.path") == "/slow"]
    assert len(cut) == 1, "the request in flight at SIGTERM has no span: %r" % servers(spans)
    assert cut[0].status_code == ERROR and cut[0].attrs.get("error.type") == "SIGTERM", cut


EXITING_PY = r'''
import http.server, os, signal, socket, sys, threading, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        # /call: a request of its own to a peer that never answers, then this one waits
        peer = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
        peer.sendall(b"GET /never HTTP/1.1\r\nHost: peer\r\n\r\n")
        print("serving", flush=True)
        time.sleep(30)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # stops at once, mid-request
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
'''


def test_a_service_that_exits_mid_request_fails_the_requests_it_never_answered(ctx):
    """A service whose SIGTERM handler exits (sys.exit) while a handler thread serves a
    request: its client gets no answer (the exit closes the connection), so the SERVER span
    fails with error.type=connection_closed, and the request it had made and got no
    answer to fails likewise; before, both ended as if fine. Exit status unchanged (0)."""
    c = ctx.collector()
    peer = socket.socket()
    peer.bind(("127.0.0.1", 0))
    peer.listen(4)  # accepts (the kernel does), never answers
    script = os.path.join(ctx.tmp, "exiting.py")
    with open(script, "w") as f:
        f.write(EXITING_PY)
    svc = Service(ctx, [SYS_PY, script, str(peer.getsockname()[1])], collector=c)
    cl = subprocess.Popen(["curl", "-sS", svc.url + "/call"], env=ctx.env(None, preload=False),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert svc.proc.stdout.readline() == b"serving\n"
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(30) == 0
    assert cl.wait(30) == 52, cl.stderr.read()  # curl: empty reply from server
    peer.close()
    spans = c.spans()
    srv = [s for s in servers(spans) if s.attrs.get("url.path") == "/call"]
    assert len(srv) == 1, servers(spans)
    assert srv[0].status_code == ERROR and srv[0].attrs.get("error.type") == "connection_closed", srv
    cli = [s for s in http_spans(spans, CLIENT) if s.attrs.get("url.full", "").endswith("/never")]
    assert len(cli) == 1 and cli[0].parent_id == srv[0].span_id, http_spans(spans)
    assert cli[0].status_code == ERROR and cli[0].attrs.get("error.type") == "connection_closed", cli


# --- 4. non-HTTP traffic: unchanged, spanless ----------------------------------------------------

ECHO_SERVER_PY = r'''
import signal, socket, sys, threading
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
print("port=%d" % ls.getsockname()[1], flush=True)
def serve(c):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

ECHO_CLIENT_PY = r'''
import hashlib, random, socket, sys, threading
port = int(sys.argv[1])
payloads = [
    random.Random(7).randbytes(256 * 1024),
    # A TLS ClientHello record's start, then more of the record.
    bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]) +
        random.Random(8).randbytes(4096),
    # HTTP-looking bytes after a binary prefix: not a request line.
    b"\x00\x00\x00\x08\x04\xd2\x16\x2fGET / HTTP/1.1\r\nHost: x\r\n\r\n",
]
for data in payloads:
    s = socket.create_connection(("127.0.0.1", port))
    got = []
    def rd():
        while True:
            b = s.recv(65536)
            if not b:
                break
            got.append(b)
    t = threading.Thread(target=rd)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join()
    s.close()
    got = b"".join(got)
    print(len(data), hashlib.sha256(got).hexdigest(), got == data)
'''


def test_psql_through_the_shim_is_unchanged_and_not_http(ctx):
    pg = ctx.postgres()
    c = ctx.collector()
    argv = ["psql", "-X", "-h", pg.host, "-p", str(pg.port), "-U", pg.superuser, "-d",
            "postgres", "-c", "SELECT g, md5(g::text) FROM generate_series(1, 500) g",
            "-c", "SELECT 'GET / HTTP/1.1' AS looks_like_http"]
    plain = ctx.run(argv, preload=False)
    traced = ctx.run(argv, collector=c)
    assert plain.returncode == 0, plain
    assert (traced.returncode, traced.stdout, traced.stderr) == (0, plain.stdout,
                                                                   plain.stderr), traced
    spans = c.spans()
    assert any(s.attrs.get("db.system.name") == "postgresql" for s in spans), spans
    assert http_spans(spans) == [], "no HTTP span for PostgreSQL traffic: %r" % http_spans(
        spans)


def test_binary_and_tls_looking_streams_echo_unchanged_without_http_spans(ctx):
    c = ctx.collector()
    srv = Service(ctx, ["python3", write(ctx, "echo_server.py", ECHO_SERVER_PY)], c)
    client = write(ctx, "echo_client.py", ECHO_CLIENT_PY)
    plain = ctx.run(["python3", client, str(srv.port)], preload=False)
    traced = ctx.run(["python3", client, str(srv.port)], collector=c)
    assert plain.returncode == 0 and traced.returncode == 0, (plain, traced)
    assert traced.stdout == plain.stdout, (traced.stdout, plain.stdout)
    assert traced.stdout.count(b" True\n") == 3, traced.stdout
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    assert http_spans(spans) == [], "no HTTP span for non-HTTP streams: %r" % http_spans(spans)
    # The traffic was traced (the connections are there), just not as HTTP.
    assert len(spans_of_pid(spans, srv.pid, "accept")) == 6, spans
    assert len([s for s in spans if s.name == "connect"]) == 3, spans


# --- 5. bad input ---------------------------------------------------------------------------------

def test_bad_input_garbage_oversize_and_bytewise_requests_served_unchanged(ctx):
    c = ctx.collector()
    srv = c_server(ctx, "thread", c)
    ref = c_server(ctx, "thread", preload=False)
    big = (b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (20 * 1024) +
           b"\r\n\r\nGET /next HTTP/1.1\r\nConnection: close\r\n\r\n")
    cases = [
        ("garbage line", b"HELLO WORLD\r\n\r\n", {}),
        ("binary", b"\x00\x01\x02\xff\xfe garbage\r\n\r\n", {}),
        ("lowercase method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n", {}),
        ("space-less", b"GET/HTTP/1.1\r\n\r\n", {}),
        ("oversize head", big, {}),
        ("byte by byte", b"GET /split?x=1 HTTP/1.1\r\nHost: h.example:81\r\n"
                         b"User-Agent: bytewise/1\r\nConnection: close\r\n\r\n",
         {"chunk": 1, "delay": 0.002}),
        ("after all that", b"GET /after HTTP/1.1\r\nConnection: close\r\n\r\n", {}),
    ]
    for why, data, kw in cases:
        want = raw_exchange(ref.port, data, **kw)
        got = raw_exchange(srv.port, data, **kw)
        # The C server says which port it is in no answer, so answers are comparable.
        assert got == want, "%s: traced answer differs: %r vs %r" % (why, got, want)
    assert srv.stop() == 0, "the traced server did not exit cleanly: %s" % srv.stderr()
    spans = c.spans()
    one_server_span(spans, "/after", "GET", 200, "a request after bad input")
    # Nothing that is not an HTTP/1.x request became a span; the oversize head is HTTP, so
    # it may have one (then a correct one) or be counted as dropped.
    other = [x for x in servers(spans) if x.attrs.get("url.path") not in (
        "/split", "/after", "/big", "/next")]
    assert other == [], "spans for what is not HTTP/1.x: %r" % other
    # The oversize head (and the request after it on that connection) are HTTP: each has
    # its correct span, or its loss is counted where a user reads it.
    missing = 0
    for path in ("/big", "/next"):
        got = by_path(spans).get(path, [])
        assert len(got) <= 1, got
        for b in got:
            assert b.name == "GET" and b.attrs.get("http.response.status_code") == 200, b
        missing += not got
    dropped = harness.dropped_of_pid(c.scopes(), srv.pid)
    problems = []
    if dropped < missing:
        problems.append("%d request(s) of the connection with a 20 KiB header block have no "
                        "span and spanshim.spans.dropped is %d" % (missing, dropped))
    # A request that arrives a byte at a time is still one request.
    try:
        s = one_server_span(spans, "/split", "GET", 200, "byte by byte")
        assert s.attrs["url.query"] == "x=1", s
        assert s.attrs["server.address"] == "h.example" and s.attrs["server.port"] == 81, s
        assert s.attrs["user_agent.original"] == "bytewise/1", s
    except AssertionError as e:
        problems.append(str(e))
    assert not problems, "; ".join(problems)


PY_SERVER_PY = r'''
import http.server, signal, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = ("path=%s ua=%s\n" % (self.path, self.headers.get("User-Agent"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
try:
    srv.serve_forever()
finally:
    srv.server_close()
'''


def test_bad_input_python_server_answers_unchanged(ctx):
    c = ctx.collector()
    script = write(ctx, "pyserver.py", PY_SERVER_PY)
    srv = Service(ctx, ["python3", script], c)
    ref = Service(ctx, ["python3", script], preload=False)
    cases = [
        ("garbage line", b"HELLO\r\n\r\n", {}),
        ("binary", b"\x16\x03\x01\x00\x05hello\r\n\r\n", {}),
        ("byte by byte", b"GET /split HTTP/1.1\r\nUser-Agent: bytewise/2\r\n"
                         b"Connection: close\r\n\r\n", {"chunk": 1, "delay": 0.002}),
    ]
    for why, data, kw in cases:
        want = raw_exchange(ref.port, data, **kw)
        got = raw_exchange(srv.port, data, **kw)
        # http.server's answers carry a Date header: compare all but that line.
        strip = lambda b: re.sub(rb"Date: [^\r]*\r\n", b"", b)  # noqa: E731
        assert strip(got) == strip(want), "%s: %r vs %r" % (why, got, want)
    assert srv.stop() == 0, srv.stderr()
    spans = c.spans()
    s = one_server_span(spans, "/split", "GET", 200, "byte by byte")
    assert s.attrs["user_agent.original"] == "bytewise/2", s
    assert len(servers(spans)) == 1, servers(spans)


# --- 6. configuration: OTEL_PROPAGATORS=none, SPANSHIM_HOOKS ----------------------------------

URLLIB_CLIENT_PY = r'''
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Traceparent", sys.argv[2])
with urllib.request.urlopen(req) as r:
    sys.stdout.write(r.read().decode())
'''


def test_raw_socket_client_injects_traceparent_of_its_span(ctx):
    up = ctx.http_server()
    c = ctx.collector()
    client = write(ctx, "client.py", URLLIB_CLIENT_PY)
    r = ctx.run(["python3", client, up.url + "/a?b=c"], collector=c)
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    app = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = ctx.run(["python3", client, up.url + "/b", app], collector=c)
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    cli = sorted(http_spans(c.spans(), CLIENT), key=lambda s: s.start)
    assert len(cli) == 2, cli
    a, b = cli
    assert a.name == "GET" and a.attrs["url.full"] == up.url + "/a?b=c", a
    assert a.attrs["http.response.status_code"] == 200, a
    m = TP.match(up.requests[0]["headers"].get("traceparent", ""))
    assert m and m.group(1) == a.trace_id and m.group(2) == a.span_id, (up.requests[0], a)
    # The rest of the request reached the server as the app wrote it.
    assert up.requests[0]["path"] == "/a?b=c" and up.requests[0]["method"] == "GET"
    # An app-sent traceparent is not replaced nor doubled, and (as for libcurl) the CLIENT
    # span adopts it, so the server's span and ours stay in one trace.
    assert up.requests[1]["headers"]["traceparent"] == app, up.requests[1]
    assert (b.trace_id, b.parent_id) == ("0af7651916cd43dd8448eb211c80319c",
                                         "b7ad6b7169203331"), (
        "the CLIENT span ignores the traceparent the app sent (the server saw %s): %r" % (
            app, b))


def test_propagators_none_neither_adopts_nor_injects(ctx):
    c = ctx.collector()
    up = ctx.http_server()
    env = {"OTEL_PROPAGATORS": "none"}
    srv = c_server(ctx, "thread", c, env=env)
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    curl(ctx, "-H", "traceparent: 00-%s-%s-01" % (tid, sid), srv.url + "/in")
    client = write(ctx, "client.py", URLLIB_CLIENT_PY)
    r = ctx.run(["python3", client, up.url + "/out"], collector=c, extra_env=env)
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    assert srv.stop() == 0
    spans = c.spans()
    s = one_server_span(spans, "/in", "GET", 200, "OTEL_PROPAGATORS=none")
    assert s.trace_id != tid and s.parent_id == "", "inbound context adopted: %r" % s
    assert "traceparent" not in up.requests[0]["headers"], up.requests[0]
    assert len(http_spans(spans, CLIENT)) == 1, "the client request is still a span"


def test_hooks_without_http_make_no_http_spans(ctx):
    c = ctx.collector()
    up = ctx.http_server()
    env = {"SPANSHIM_HOOKS": "socket,dns,libpq,libcurl,process"}
    srv = c_server(ctx, "thread", c, env=env)
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    assert curl(ctx, "-H", "traceparent: 00-%s-%s-01" % (tid, sid), "--http1.1",
                srv.url + "/a", srv.url + "/b") == b"GET /a body=0\nGET /b body=0\n"
    client = write(ctx, "client.py", URLLIB_CLIENT_PY)
    r = ctx.run(["python3", client, up.url + "/out"], collector=c, extra_env=env)
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    assert srv.stop() == 0
    spans = c.spans()
    assert http_spans(spans) == [], http_spans(spans)
    assert "traceparent" not in up.requests[0]["headers"], up.requests[0]
    # The socket family is still on.
    assert spans_of_pid(spans, srv.pid, "accept") and any(s.name == "connect" for s in spans)
