"""libcurl under the shim: HTTP client spans and W3C trace-context propagation, with the
real curl binary and small C programs (tests/progs/curl_*) against real HTTP servers on
loopback that record the request headers they got. Every test asserts on what a user
sees: the exported spans, the headers the server received, the program's own output."""
import os
import re
import socket
import threading

import harness
from harness import parse_kv, spans_of_pid

CLIENT, INTERNAL = 3, 1
ERROR = 2
TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def busy_server(ctx):
    """ctx.http_server() with a listen backlog for many connects at once."""
    srv = ctx.http_server()
    srv.httpd.socket.listen(128)
    return srv


def http_spans(spans):
    return [s for s in spans if "http.request.method" in s.attrs]


def one_http(spans):
    h = http_spans(spans)
    assert len(h) == 1, "one HTTP span expected: %r" % spans
    return h[0]


def check_traceparent(req, span):
    """The server saw exactly the exported span's context."""
    m = TP.match(req["headers"].get("traceparent", ""))
    assert m, "no valid traceparent in %r" % req["headers"]
    assert m.group(1) == span.trace_id and m.group(2) == span.span_id, (req, span)
    # sampled, and (W3C Level 2) random when the shim made the trace id: the span's flags
    assert int(m.group(3), 16) == span.raw.get("flags", 0) & 0xff and m.group(3) in ("01", "03"), \
        (req, span.raw.get("flags"))


def no_orphans(spans):
    """Every connect/getaddrinfo span sits under an HTTP span of the same trace."""
    ids = {s.span_id: s for s in spans}
    for s in spans:
        if s.name in ("connect", "getaddrinfo"):
            p = ids.get(s.parent_id)
            assert p is not None and "http.request.method" in p.attrs, \
                "%s is not under a transfer: %r" % (s, spans)
            assert p.trace_id == s.trace_id, s


def _closing_server(ctx, reply=b""):
    """A loopback TCP server that reads a request, writes `reply` (maybe nothing, maybe a
    cut-short response) and closes. Returns its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop = []

    def loop():
        srv.settimeout(0.2)
        while not stop:
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                c.recv(65536)
                if reply:
                    c.sendall(reply)
            except OSError:
                pass
            c.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    ctx._cleanup.append(lambda: (stop.append(1), t.join(2), srv.close()))
    return srv.getsockname()[1]


def _alias():
    for name in (socket.gethostname(), "localhost.localdomain", "localhost4"):
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(name, 80, socket.AF_INET)}
        except OSError:
            continue
        if name and name != "localhost" and addrs == {"127.0.0.1"}:
            return name
    return None


# --- methods and outcomes -------------------------------------------------------------

def test_curl_methods_get_post_head_custom(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    cases = [([], "GET", "GET"), (["-d", "a=1"], "POST", "POST"), (["-I"], "HEAD", "HEAD"),
             (["-X", "DELETE"], "DELETE", "DELETE"), (["-X", "PATCH", "-d", "x"], "PATCH", "PATCH"),
             (["-T", "-"], "PUT", "PUT")]
    for extra, method, _ in cases:
        r = ctx.run(["curl", "-s", "-o", "/dev/null"] + extra + [srv.url + "/m"], collector=c,
                    input=b"body")
        assert r.returncode == 0, (extra, r)
    spans = http_spans(c.spans())
    assert [s.name for s in sorted(spans, key=lambda s: s.start)] == [m for _, m, _ in cases]
    assert [q["method"] for q in srv.requests] == [m for _, m, _ in cases]
    for s, q in zip(sorted(spans, key=lambda s: s.start), srv.requests):
        assert s.kind == CLIENT and s.status_code != ERROR, s
        assert s.attrs["http.request.method"] == s.name, s
        assert s.attrs["http.response.status_code"] == 200, s
        assert s.attrs["url.full"] == srv.url + "/m", s
        assert s.attrs["server.address"] == "127.0.0.1" and s.attrs["server.port"] == srv.port
        assert s.attrs["network.peer.address"] == "127.0.0.1", s
        assert s.attrs["network.peer.port"] == srv.port, s
        assert s.attrs["network.protocol.version"] == "1.1", s
        check_traceparent(q, s)


def test_curl_nonstandard_method_is_other(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    # The harness server answers 501 to a method it does not know: still one span.
    ctx.run(["curl", "-s", "-o", "/dev/null", "-X", "PURGE", srv.url + "/"], collector=c)
    s = one_http(c.spans())
    assert s.name == "HTTP", s
    assert s.attrs["http.request.method"] == "_OTHER", s
    assert s.attrs["http.request.method_original"] == "PURGE", s


def test_curl_status_codes_and_redirect(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    for path, extra in (("/", []), ("/redirect", ["-L"]), ("/status/404", []),
                        ("/status/500", []), ("/redirect", [])):
        r = ctx.run(["curl", "-s", "-o", "/dev/null"] + extra + [srv.url + path], collector=c)
        assert r.returncode == 0, r
    spans = sorted(http_spans(c.spans()), key=lambda s: s.start)
    ok, followed, nf, ise, notfollowed = spans
    assert ok.attrs["http.response.status_code"] == 200 and ok.status_code != ERROR
    assert "http.request.resend_count" not in ok.attrs
    assert followed.attrs["http.response.status_code"] == 200, followed
    assert followed.attrs["http.request.resend_count"] == 1, followed
    assert followed.attrs["url.full"] == srv.url + "/redirect", followed
    assert followed.status_code != ERROR
    for s, code in ((nf, 404), (ise, 500)):
        assert s.attrs["http.response.status_code"] == code, s
        assert s.status_code == ERROR and s.attrs["error.type"] == str(code), s
    assert notfollowed.attrs["http.response.status_code"] == 302 and notfollowed.status_code != ERROR
    # both requests of the followed redirect carried the transfer's context
    reqs = [q for q in srv.requests if q["path"] in ("/redirect", "/")]
    for q in reqs[1:3]:
        check_traceparent(q, followed)


def test_bodies_that_look_like_requests_are_sent_unchanged_and_each_head_gets_one_traceparent(ctx):
    """The traceparent goes into the request heads libcurl writes (one easy handle,
    tests/progs/curl_seq): request bodies (here text that is itself a run of HTTP
    requests, 2 KB and 1.5 MB, sent from memory and through a read callback, the large
    ones with Expect: 100-continue), keep-alive transfers one after another on a
    connection, and a redirected POST (its GET to the Location) each get exactly one
    traceparent, the exported span's, and the server reads every body byte for byte. The
    curl CLI (a share handle: the header list) gives the server the same."""
    srv = ctx.http_server()
    c = ctx.collector()
    # 64 bytes: every 64 KiB write of a body libcurl reads in starts with a request head
    fake = b"GET /fake HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nX: 012345678\r\n\r\n"
    assert len(fake) == 64
    small, big = fake * 32, fake * (1536 * 1024 // len(fake))
    for name, data in (("small", small), ("big", big)):
        with open(os.path.join(ctx.tmp, name), "wb") as f:
            f.write(data)
    prog = [ctx.prog("curl_seq"), "post:small:%s/a" % srv.url, "post:small:%s/b" % srv.url,
            "put:big:%s/c" % srv.url, "put:small:%s/d" % srv.url, "post:big:%s/e" % srv.url,
            "Lpost:small:%s/redirect" % srv.url, "get:%s/f" % srv.url]
    cli = [["curl", "-sS", "-o", "/dev/null", "--data-binary", "@small", srv.url + "/a",
            srv.url + "/b"],
           ["curl", "-sS", "-o", "/dev/null", "-T", "big", srv.url + "/c", "-T", "small",
            srv.url + "/d"],
           ["curl", "-sS", "-o", "/dev/null", "--data-binary", "@big", srv.url + "/e"],
           ["curl", "-sS", "-o", "/dev/null", "-L", "--data-binary", "@small",
            srv.url + "/redirect"],
           ["curl", "-sS", "-o", "/dev/null", srv.url + "/f"]]
    for argv_list in ([prog], cli):
        del srv.requests[:]
        c = ctx.collector()
        for argv in argv_list:
            r = ctx.run(argv, collector=c)
            assert r.returncode == 0, (argv, r)
        got = [(q["method"], q["path"], q["body"]) for q in srv.requests]
        assert got == [("POST", "/a", small), ("POST", "/b", small), ("PUT", "/c", big),
                       ("PUT", "/d", small), ("POST", "/e", big), ("POST", "/redirect", small),
                       ("GET", "/", b""), ("GET", "/f", b"")], [(m, p, len(b)) for m, p, b in got]
        spans = sorted(http_spans(c.spans()), key=lambda s: s.start)
        assert len(spans) == 7, spans
        for q, s in zip(srv.requests, spans[:6] + spans[5:]):
            assert len(q["traceparents"]) == 1, q["traceparents"]
            check_traceparent(q, s)


def test_redirect_from_http_to_https_carries_the_traceparent_to_both(ctx):
    """A plain-text transfer's traceparent goes into the head libcurl writes; when the
    transfer then speaks TLS (a redirect to https, where the shim cannot see into the
    bytes) the header list takes over before libcurl builds that request: the HTTPS
    server gets the same traceparent, once, as does a later transfer on the handle."""
    import http.server
    import ssl
    from test_http_tls import make_cert
    cert, key = make_cert(ctx)
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            seen.append((self.server.scheme, self.path, self.headers.get_all("traceparent")))
            if self.path == "/go":
                self.send_response(302)
                self.send_header("Location", "https://127.0.0.1:%d/done" % tls_srv.server_port)
            else:
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    servers = []
    for scheme in ("http", "https"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        srv.daemon_threads = True
        srv.scheme = scheme
        if scheme == "https":
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.load_cert_chain(cert, key)
            srv.socket = tls.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        ctx._cleanup.append(lambda s=srv: (s.shutdown(), s.server_close()))
        servers.append(srv)
    plain_srv, tls_srv = servers
    url = "http://127.0.0.1:%d/go" % plain_srv.server_port
    env = {"CURL_CA_BUNDLE": cert, "CURL_SEQ_CAINFO": cert}
    for argv in ([ctx.prog("curl_seq"), "Lget:" + url, "Lget:" + url],
                 ["curl", "-sS", "-L", "-o", "/dev/null", url, "-o", "/dev/null", url]):
        del seen[:]
        c = ctx.collector()
        r = ctx.run(argv, collector=c, extra_env=env)
        assert r.returncode == 0 and b"-" not in r.stdout, (argv, r)
        assert [(sch, path) for sch, path, _ in seen] == [("http", "/go"), ("https", "/done")] * 2
        spans = sorted(http_spans(c.spans()), key=lambda s: s.start)
        assert len(spans) == 2, spans
        for (sch, path, tps), s in zip(seen, [spans[0], spans[0], spans[1], spans[1]]):
            assert tps is not None and len(tps) == 1, (argv, sch, path, tps)
            check_traceparent({"headers": {"traceparent": tps[0]}}, s)


def test_curl_refused_is_couldnt_connect_with_connect_child(ctx):
    port = ctx.closed_port()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % port], collector=c)
    assert r.returncode == 7, r
    spans = c.spans()
    s = one_http(spans)
    assert s.status_code == ERROR and s.attrs["error.type"] == "CURLE_COULDNT_CONNECT", s
    assert s.status_message, s
    assert "http.response.status_code" not in s.attrs
    con = [x for x in spans if x.name == "connect"]
    assert con and all(x.parent_id == s.span_id for x in con), spans
    assert con[0].attrs.get("error.type") == "ECONNREFUSED"


def test_curl_timeout_is_operation_timedout(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", "-m", "0.5", srv.url + "/slow/3000"], collector=c)
    assert r.returncode == 28, r
    s = one_http(c.spans())
    assert s.status_code == ERROR and s.attrs["error.type"] == "CURLE_OPERATION_TIMEDOUT", s
    assert 0.4e9 < s.end - s.start < 3e9, s


def test_curl_server_closes_early(ctx):
    c = ctx.collector()
    empty = _closing_server(ctx)
    cut = _closing_server(ctx, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
    r1 = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % empty], collector=c)
    r2 = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % cut], collector=c)
    assert r1.returncode == 52 and r2.returncode == 18, (r1, r2)
    spans = sorted(http_spans(c.spans()), key=lambda s: s.start)
    assert [s.attrs["error.type"] for s in spans] == ["CURLE_GOT_NOTHING", "CURLE_PARTIAL_FILE"]
    assert all(s.status_code == ERROR for s in spans)
    assert spans[1].attrs["http.response.status_code"] == 200


# --- propagation -------------------------------------------------------------------------

def test_server_sees_traceparent_of_exported_span(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", srv.url + "/"], collector=c)
    assert r.stdout == b"hello\n"
    spans = c.spans()
    s = one_http(spans)
    assert len(srv.requests) == 1
    check_traceparent(srv.requests[0], s)
    assert s.parent_id == "", s
    no_orphans(spans)


def test_env_traceparent_is_parent_and_tracestate_baggage_go_along(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    ctx.run(["curl", "-s", srv.url + "/"], collector=c,
            extra_env={"TRACEPARENT": "00-%s-%s-01" % (tid, sid), "TRACESTATE": "vendor=x1",
                       "BAGGAGE": "user=alice"})
    s = one_http(c.spans())
    assert s.trace_id == tid and s.parent_id == sid, s
    h = srv.requests[0]["headers"]
    check_traceparent(srv.requests[0], s)
    assert h.get("tracestate") == "vendor=x1", h
    assert h.get("baggage") == "user=alice", h


def test_propagators_none_injects_nothing(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    ctx.run(["curl", "-s", srv.url + "/"], collector=c,
            extra_env={"OTEL_PROPAGATORS": "none", "BAGGAGE": "user=alice"})
    h = srv.requests[0]["headers"]
    assert "traceparent" not in h and "baggage" not in h, h
    one_http(c.spans())  # still traced


def test_app_set_traceparent_is_adopted_not_replaced(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    app = "00-%s-%s-01" % (tid, sid)
    ctx.run(["curl", "-s", "-H", "traceparent: " + app, srv.url + "/"], collector=c)
    s = one_http(c.spans())
    assert srv.requests[0]["headers"]["traceparent"] == app
    assert s.trace_id == tid and s.parent_id == sid, s


def test_header_list_reused_across_handles_unchanged(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run([ctx.prog("curl_headers"), srv.url + "/h"], collector=c)
    out = parse_kv(r.stdout)
    assert r.returncode == 0 and out["list_unchanged"] == "1", r
    assert out["codes"] == "200,200,200,200", out
    spans = sorted(http_spans(spans_of_pid(c.spans(), out["pid"])), key=lambda s: s.start)
    assert len(spans) == 4 and len(srv.requests) == 4, spans
    for i, (q, s) in enumerate(zip(srv.requests, spans)):
        check_traceparent(q, s)
        assert (q["headers"].get("x-app") == "1") == (i < 3), q  # the 4th follows a reset
    assert len({s.trace_id for s in spans}) == 4


def test_header_list_with_app_traceparent_on_two_handles(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    tid, sid = "11112222333344445555666677778888", "aaaabbbbccccdddd"
    app = "00-%s-%s-01" % (tid, sid)
    r = ctx.run([ctx.prog("curl_headers"), srv.url + "/h", app], collector=c)
    out = parse_kv(r.stdout)
    assert out["list_unchanged"] == "1", r
    spans = sorted(http_spans(c.spans()), key=lambda s: s.start)
    assert len(spans) == 4
    for q, s in zip(srv.requests[:3], spans[:3]):
        assert q["headers"]["traceparent"] == app, q
        assert s.trace_id == tid and s.parent_id == sid, s
    check_traceparent(srv.requests[3], spans[3])  # after reset: the app's list is gone


# --- the multi interface ---------------------------------------------------------------

def test_curl_parallel_ten_urls_ten_spans_correct_parents(ctx):
    srv = busy_server(ctx)
    c = ctx.collector()
    host = _alias() or "127.0.0.1"
    tid, sid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    urls = ["http://%s:%d/p%d" % (host, srv.port, i) for i in range(10)]
    r = ctx.run(["curl", "-s", "-Z", "--parallel-max", "10"] + urls, collector=c,
                extra_env={"TRACEPARENT": "00-%s-%s-01" % (tid, sid)})
    assert r.returncode == 0 and r.stdout == b"hello\n" * 10, r
    spans = c.spans()
    h = http_spans(spans)
    assert len(h) == 10, h
    assert all(s.trace_id == tid and s.parent_id == sid for s in h), h
    by_url = {s.attrs["url.full"]: s for s in h}
    assert sorted(by_url) == sorted(urls)
    for q in srv.requests:
        check_traceparent(q, by_url["http://%s:%d%s" % (host, srv.port, q["path"])])
    no_orphans(spans)
    assert any(s.name == "connect" for s in spans)


def test_multi_fifty_concurrent_transfers_one_thread(ctx):
    srv = busy_server(ctx)
    c = ctx.collector()
    r = ctx.run([ctx.prog("curl_multi_many"), srv.url + "/c", "50"], collector=c)
    out = parse_kv(r.stdout)
    assert r.returncode == 0 and out["done"] == "50" and out["ok"] == "50", r
    spans = spans_of_pid(c.spans(), out["pid"])
    h = http_spans(spans)
    assert len(h) == 50 and len({s.trace_id for s in h}) == 50, h
    by_path = {s.attrs["url.full"][len(srv.url):]: s for s in h}
    assert len(srv.requests) == 50
    for q in srv.requests:
        check_traceparent(q, by_path[q["path"]])
    no_orphans(spans)
    assert all(s.attrs["http.response.status_code"] == 200 for s in h)


def test_multi_socket_action_event_loop(ctx):
    srv = busy_server(ctx)
    c = ctx.collector()
    _, hang = ctx.listener()  # connects, never answers
    r = ctx.run([ctx.prog("curl_sockaction"), srv.url + "/e", "20",
                 "http://127.0.0.1:%d/hang" % hang], collector=c)
    out = parse_kv(r.stdout)
    assert r.returncode == 0 and out["ok"] == "20", r
    spans = spans_of_pid(c.spans(), out["pid"])
    h = http_spans(spans)
    assert len(h) == 21, h
    done = [s for s in h if s.attrs.get("http.response.status_code") == 200]
    assert len(done) == 20, h
    for q in srv.requests:
        s = [x for x in done if x.attrs["url.full"] == srv.url + q["path"]]
        check_traceparent(q, s[0])
    gone = [s for s in h if s.attrs["url.full"].endswith("/hang")]
    assert len(gone) == 1 and "http.response.status_code" not in gone[0].attrs, gone
    no_orphans(spans)


# --- safety ------------------------------------------------------------------------------

SECRETS = [b"hunter2", b"s3cretpw", b"sigvalue123", b"AKIASECRET", b"tokval9",
           b"bearertok", b"cookieval", b"proxypw"]


def test_no_credentials_or_signed_values_in_any_exported_byte(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    base = "127.0.0.1:%d" % srv.port
    argvs = [
        ["curl", "-s", "http://alice:hunter2@%s/a?sig=sigvalue123&x=1" % base],
        ["curl", "-s", "http://%s/b?X-Amz-Credential=AKIASECRET&X-Amz-Security-Token=tokval9"
         "&X-Amz-Signature=sigvalue123" % base],
        ["curl", "-s", "-u", "bob:s3cretpw", "-H", "Authorization: Bearer bearertok",
         "-b", "session=cookieval", "http://%s/c" % base],
        ["curl", "-s", "-x", "http://%s" % base, "-U", "px:proxypw", "http://example.invalid/d"],
    ]
    for argv in argvs:
        r = ctx.run(argv, collector=c)
        assert r.returncode == 0, r
    spans = c.spans()
    assert len(http_spans(spans)) == 4, spans
    with open(c.out, "rb") as f:
        raw = f.read()
    for sec in SECRETS:
        assert sec not in raw, "%r exported: %r" % (sec, raw)
    urls = sorted(s.attrs["url.full"] for s in http_spans(spans))
    assert "http://REDACTED:REDACTED@%s/a?sig=REDACTED&x=1" % base in urls, urls
    assert any("X-Amz-Signature=REDACTED" in u for u in urls), urls
    # the server did get them: the shim changed nothing on the wire but traceparent
    assert any("authorization" in q["headers"] for q in srv.requests)


def test_credential_query_keys_and_fragment_redacted_by_default(ctx):
    """No list entry per service: token-like query keys and an OAuth implicit-flow
    fragment are redacted out of the box, harmless keys kept; SPANSHIM_REDACT_QUERY_KEYS
    adds names."""
    srv = ctx.http_server()
    c = ctx.collector()
    base = "http://127.0.0.1:%d" % srv.port
    r = ctx.run(["curl", "-s", base + "/cb?token=tokval1&page=2#access_token=fragtok2"],
                collector=c)
    assert r.returncode == 0, r
    r = ctx.run(["curl", "-s", base + "/x?apiKey=keyval3&ticket=tick4&sort=asc"],
                collector=c, extra_env={"SPANSHIM_REDACT_QUERY_KEYS": "Ticket"})
    assert r.returncode == 0, r
    urls = sorted(s.attrs["url.full"] for s in http_spans(c.spans()))
    assert urls == [base + "/cb?token=REDACTED&page=2#access_token=REDACTED",
                    base + "/x?apiKey=REDACTED&ticket=REDACTED&sort=asc"], urls
    with open(c.out, "rb") as f:
        raw = f.read()
    for sec in (b"tokval1", b"fragtok2", b"keyval3", b"tick4"):
        assert sec not in raw, "%r exported" % sec


def _norm(cp):
    """Times are not behaviour: curl's "after N ms" and -Z's progress meter."""
    cp.stderr = re.sub(rb"after \d+ ms", b"after N ms", cp.stderr)
    cp.stderr = re.sub(rb"(?m)^\r.*--:--.*$", b"<progress>", cp.stderr)
    cp.stderr = re.sub(rb"after \d+ milliseconds", b"after N milliseconds", cp.stderr)
    return cp


def test_curl_output_and_exit_codes_identical_with_and_without_shim(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    refused = ctx.closed_port()
    cases = [
        ["curl", "-s", srv.url + "/"],
        ["curl", "-s", "-i", srv.url + "/status/404"],
        ["curl", "-sS", "-f", srv.url + "/status/500"],
        ["curl", "-sS", "http://127.0.0.1:%d/" % refused],
        ["curl", "-s", "-L", "-w", "%{http_code} %{num_redirects}\n", srv.url + "/redirect"],
        ["curl", "-s", "-Z", srv.url + "/1", srv.url + "/status/503", srv.url + "/2"],
        ["curl", "-s", "-d", "x=1", "-w", "%{http_code}\n", srv.url + "/post"],
        ["curl", "-sS", "-m", "0.3", srv.url + "/slow/2000"],
        [ctx.prog("curl_multi_many"), srv.url + "/t", "5"],
    ]
    for argv in cases:
        plain = _norm(ctx.run(argv, preload=False))
        shim = _norm(ctx.run(argv, collector=c))
        plain.stdout = re.sub(rb"pid=\d+", b"", plain.stdout)
        shim.stdout = re.sub(rb"pid=\d+", b"", shim.stdout)
        shim.stdout = re.sub(rb"(?m)^Date: .*$", b"", shim.stdout)
        plain.stdout = re.sub(rb"(?m)^Date: .*$", b"", plain.stdout)
        assert plain.returncode == shim.returncode, (argv, plain, shim)
        if "-Z" in argv:
            # Parallel transfers write their bodies in the order they finish, which a busy
            # machine changes from run to run with or without the shim: the same lines.
            plain.stdout = b"".join(sorted(plain.stdout.splitlines(True)))
            shim.stdout = b"".join(sorted(shim.stdout.splitlines(True)))
        assert plain.stdout == shim.stdout, (argv, plain.stdout, shim.stdout)
        assert plain.stderr == shim.stderr, (argv, plain.stderr, shim.stderr)


def test_hostname_lookup_is_a_child_of_the_transfer(ctx):
    host = _alias()
    if host is None:
        harness.skip("no host name other than localhost that getaddrinfo resolves to "
                     "127.0.0.1 alone")
    srv = ctx.http_server()
    c = ctx.collector()
    ctx.run(["curl", "-s", "http://%s:%d/" % (host, srv.port)], collector=c)
    spans = c.spans()
    s = one_http(spans)
    assert s.attrs["server.address"] == host, s
    gai = [x for x in spans if x.name == "getaddrinfo" and
           x.attrs.get("dns.question.name") == host]
    assert gai and gai[0].parent_id == s.span_id, spans
    no_orphans(spans)


# --- other protocols (issue 13, item 5) -----------------------------------------------------

class _SmtpServer:
    """A minimal real SMTP server on 127.0.0.1 (RFC 5321 dialogue: EHLO, MAIL, RCPT, DATA,
    QUIT) that keeps every message's data exactly as received."""

    def __init__(self):
        self.messages = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rb")
                conn.sendall(b"220 test ESMTP\r\n")
                for line in f:
                    cmd = line[:4].upper()
                    if cmd == b"EHLO":
                        conn.sendall(b"250-test\r\n250 8BITMIME\r\n")
                    elif cmd == b"DATA":
                        conn.sendall(b"354 go ahead\r\n")
                        data = b""
                        for dl in f:
                            if dl == b".\r\n":
                                break
                            data += dl
                        self.messages.append(data)
                        conn.sendall(b"250 queued\r\n")
                    elif cmd == b"QUIT":
                        conn.sendall(b"221 bye\r\n")
                        break
                    else:
                        conn.sendall(b"250 ok\r\n")

    def stop(self):
        self.sock.close()


def test_smtp_upload_keeps_its_bytes_and_is_named_for_its_protocol(ctx):
    """curl sends a mail over SMTP: the message the server receives is exactly the file,
    with the shim as without it (the traceparent used to be injected as a header of the
    mail), and the span is `SMTP` with url.scheme and the protocol's own reply code, no
    http.request.method=POST and no http.response.status_code=250."""
    mail = os.path.join(ctx.tmp, "mail.txt")
    with open(mail, "wb") as f:
        f.write(b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nbody line\r\n")
    got = []
    for traced in (False, True):
        srv = _SmtpServer()
        c = ctx.collector() if traced else None
        r = ctx.run(["curl", "-s", "--url", "smtp://127.0.0.1:%d" % srv.port,
                     "--mail-from", "a@example.com", "--mail-rcpt", "b@example.com",
                     "-T", mail], collector=c, preload=traced)
        srv.stop()
        got.append((r.returncode, r.stdout, r.stderr, srv.messages))
        if traced:
            spans = c.spans()
    assert got[0][0] == 0 and len(got[0][3]) == 1, got[0]
    assert got[1] == got[0], got
    assert b"traceparent" not in got[1][3][0]
    [s] = [s for s in spans if s.kind == CLIENT and s.name not in ("connect", "getaddrinfo")]
    assert s.name == "SMTP", s
    assert not [k for k in s.attrs if k.startswith("http.")], s.attrs
    assert s.attrs["url.scheme"] == "smtp" and s.attrs["network.protocol.name"] == "smtp", s
    assert s.attrs["server.address"] == "127.0.0.1" and s.attrs["server.port"] == srv.port
    assert s.attrs["spanshim.curl.response_code"] in (221, 250), s.attrs
    assert s.status_code != ERROR, s


def test_file_and_dict_urls_are_named_for_their_scheme(ctx):
    """file:// reads a file, dict:// (refused here) fails as without the shim: the spans are
    FILE and DICT (server.port from the scheme's default when none is written), the
    failure's error.type the CURLcode name."""
    path = os.path.join(ctx.tmp, "f.txt")
    with open(path, "wb") as f:
        f.write(b"file body\n")
    port = ctx.closed_port()
    argv_f = ["curl", "-s", "file://" + path]
    argv_d = ["curl", "-s", "dict://127.0.0.1:%d/d:word" % port]
    c = ctx.collector()
    for argv in (argv_f, argv_d):
        plain = ctx.run(argv, preload=False)
        r = ctx.run(argv, collector=c)
        assert (r.returncode, r.stdout) == (plain.returncode, plain.stdout), (argv, r, plain)
    spans = [s for s in c.spans() if s.kind == CLIENT and s.name in ("FILE", "DICT")]
    by = {s.name: s for s in spans}
    assert set(by) == {"FILE", "DICT"}, spans
    assert by["FILE"].attrs["url.scheme"] == "file" and by["FILE"].status_code != ERROR
    assert by["DICT"].status_code == ERROR
    assert by["DICT"].attrs["error.type"] == "CURLE_COULDNT_CONNECT", by["DICT"].attrs
    assert by["DICT"].attrs["server.port"] == port
    for s in spans:
        assert not [k for k in s.attrs if k.startswith("http.")], s.attrs
