"""spanshimd as a client sees it: HTTP status codes for good and bad input over its Unix
socket, the JSON line written for a request encoded here independently of the C code,
keep-alive, /stats, file modes, SIGTERM, peer credentials, and a burst of random input."""
import json
import os
import random
import signal
import socket
import stat
import struct
import subprocess
import sys
import time

import harness

# ---- a tiny protobuf encoder (wire format only; independent of the C encoder) ----


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(num, wt):
    return varint(num << 3 | wt)


def f_bytes(num, b):
    return key(num, 2) + varint(len(b)) + b


def f_str(num, s):
    return f_bytes(num, s.encode())


def f_varint(num, v):
    return key(num, 0) + varint(v)


def f_fixed64(num, v):
    return key(num, 1) + struct.pack("<Q", v)


def f_fixed32(num, v):
    return key(num, 5) + struct.pack("<I", v)


def any_value(v):
    if isinstance(v, bool):
        return f_varint(2, int(v))
    if isinstance(v, int):
        return f_varint(3, v)
    if isinstance(v, float):
        return key(4, 1) + struct.pack("<d", v)
    if isinstance(v, list):
        return f_bytes(5, b"".join(f_bytes(1, any_value(x)) for x in v))
    return f_str(1, v)


def kv(k, v):
    return f_str(1, k) + f_bytes(2, any_value(v))


def attrs(num, d):
    return b"".join(f_bytes(num, kv(k, v)) for k, v in d.items())


def span(trace_id, span_id, name, kind, start, end, attributes, parent=b"", status=None):
    b = f_bytes(1, trace_id) + f_bytes(2, span_id)
    if parent:
        b += f_bytes(4, parent)
    b += f_fixed32(16, 0x101) + f_str(5, name) + f_varint(6, kind)
    b += f_fixed64(7, start) + f_fixed64(8, end) + attrs(9, attributes)
    if status:
        b += f_bytes(15, f_str(2, status[1]) + f_varint(3, status[0]))
    return b


def traces_request(spans, resource=None, scope=("spanshim", "0.1.0")):
    ss = f_bytes(1, f_str(1, scope[0]) + f_str(2, scope[1]))
    ss += b"".join(f_bytes(2, s) for s in spans)
    rs = f_bytes(1, attrs(1, resource or {"service.name": "test"})) + f_bytes(2, ss)
    return f_bytes(1, rs)


def logs_request(event_name, body, trace_id, span_id):
    rec = f_fixed64(1, 5) + f_varint(2, 17) + f_bytes(5, any_value(body))
    rec += f_bytes(9, trace_id) + f_bytes(10, span_id) + f_str(12, event_name)
    sl = f_bytes(2, rec)
    rl = f_bytes(2, sl)
    return f_bytes(1, rl)


TRACE_ID = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
SPAN_ID = bytes.fromhex("00f067aa0ba902b7")
PARENT_ID = bytes.fromhex("b7ad6b7169203331")

# ---- HTTP over the Unix socket ----


def connect(col):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(col.socket)
    return s


def post(path, body, ctype="application/x-protobuf", extra=""):
    return ("POST %s HTTP/1.1\r\nHost: spanshimd\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n%s\r\n" % (path, ctype, len(body), extra)).encode() + body


def read_response(s, buf=b""):
    """Reads one response; returns (status, headers, body, leftover) or None at EOF."""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    return status, headers, rest[:n], rest[n:]


def exchange(col, raw):
    """One request on a fresh connection; returns (status, headers, body)."""
    with connect(col) as s:
        s.sendall(raw)
        r = read_response(s)
        assert r is not None, "no response"
        return r[:3]


def closed_by_peer(s):
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def stats(col):
    st, h, body = exchange(col, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200 and h["content-type"] == "application/json"
    return json.loads(body)


def lines(col, path=None):
    """The documents of col's traces file (or `path`), one per line."""
    if not os.path.exists(path or col.out):
        return []
    with open(path or col.out) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


# ---- tests ----


def test_garbage_gets_400_and_close_and_daemon_keeps_serving(ctx):
    col = ctx.collector()
    with connect(col) as s:
        s.sendall(b"\x00\x01\x02 garbage that is not HTTP\r\n\r\n")
        st, h, body, _ = read_response(s)
        assert st == 400
        assert h.get("connection") == "close"
        assert closed_by_peer(s)
    assert stats(col)["rejected"]["bad_http"] == 1
    st, _, _ = exchange(col, post("/v1/traces", traces_request([])))
    assert st == 200


def test_truncated_request_then_close_leaves_daemon_fine(ctx):
    col = ctx.collector()
    for raw in (b"POST /v1/tra", post("/v1/traces", b"\x0a\x05abc")[:-2]):
        with connect(col) as s:
            s.sendall(raw)
    time.sleep(0.1)
    assert col.proc.poll() is None
    st, _, _ = exchange(col, post("/v1/traces", traces_request([])))
    assert st == 200


def test_huge_content_length_gets_413_then_close(ctx):
    col = ctx.collector()
    with connect(col) as s:
        s.sendall(b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
                  b"Content-Length: 99999999999\r\n\r\n")
        st, h, _, _ = read_response(s)
        assert st == 413
        assert h.get("connection") == "close"
    col2 = ctx.collector(["--max-body", "1k"])
    st, _, _ = exchange(col2, post("/v1/traces", b"\x00" * 1025))
    assert st == 413
    assert stats(col2)["rejected"]["too_large"] == 1


SHIM_UA = "User-Agent: spanshim/test\r\n"


def log_record(event_name, attributes, pad=0):
    rec = f_fixed64(1, 5) + f_varint(2, 13) + f_bytes(5, any_value("x" * pad))
    return rec + attrs(6, attributes) + f_str(12, event_name)


def test_a_shims_refused_requests_are_counted_and_the_next_ones_served(ctx):
    """A request of libspanshim (its User-Agent) that spanshimd refuses: the spans or log
    records in it are counted in /stats (spans_refused, logs_refused; a drop report in it
    still counts as one) and the answer says so (Spanshim-Refused-Counted), since the shim
    never sends it again and an exiting one reads no late answer. A body over --max-body
    is read past, not kept, and the requests pipelined behind it are served. Another
    sender is answered as before, nothing counted for it."""
    col = ctx.collector(["--max-body", "1k"])
    big = traces_request([span(TRACE_ID, struct.pack(">Q", i + 1), "s%d" % i, 1, 1, 2,
                               {"k": "v" * 40}) for i in range(40)])
    assert len(big) > 1024
    recs = [log_record("exception", {"exception.type": "E"}, pad=100) for _ in range(12)]
    recs.append(log_record("spanshim.spans.dropped", {"spanshim.spans.dropped": 7}))
    biglogs = f_bytes(1, f_bytes(2, b"".join(f_bytes(2, r) for r in recs)))
    assert len(biglogs) > 1024
    with connect(col) as s:
        s.sendall(post("/v1/traces", traces_request([span(TRACE_ID, SPAN_ID, "a", 1, 1, 2, {})]),
                       extra=SHIM_UA) +
                  post("/v1/traces", big, extra=SHIM_UA) +
                  post("/v1/logs", biglogs, extra=SHIM_UA) +
                  post("/v1/traces", traces_request([span(TRACE_ID, PARENT_ID, "b", 1, 1, 2, {})]),
                       extra=SHIM_UA))
        got, rest = [], b""
        for _ in range(4):
            st, h, _, rest = read_response(s, rest)
            got.append((st, h.get("spanshim-refused-counted"), h.get("connection")))
    assert got == [(200, None, None), (413, "40", None), (413, "13", None), (200, None, None)], got
    st = stats(col)
    assert st["spans_received"] == 2 and st["spans_refused"] == 40, st
    assert st["logs_refused"] == 12 and st["shim_spans_dropped"] == 7, st
    assert st["shim_drop_reports"] == 1 and st["rejected"]["too_large"] == 2, st
    # The same refused in memory (415: not protobuf's content type) is counted likewise.
    small = traces_request([span(TRACE_ID, SPAN_ID, "c", 1, 1, 2, {}) for _ in range(3)])
    code, h, _ = exchange(col, post("/v1/traces", small, ctype="text/plain", extra=SHIM_UA))
    assert code == 415 and h.get("spanshim-refused-counted") == "3", (code, h)
    # Another sender (an SDK: it may send again) is answered as before.
    code, h, _ = exchange(col, post("/v1/traces", big))
    assert code == 413 and "spanshim-refused-counted" not in h, h
    st = stats(col)
    assert st["spans_refused"] == 43 and st["spans_received"] == 2, st
    assert col.stop() == 0


def test_wrong_path_gets_404(ctx):
    col = ctx.collector()
    st, _, _ = exchange(col, post("/v1/profiles", b""))
    assert st == 404
    st, _, _ = exchange(col, b"GET / HTTP/1.1\r\n\r\n")
    assert st == 404


def test_get_on_traces_gets_405_with_allow(ctx):
    col = ctx.collector()
    st, h, _ = exchange(col, b"GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 405
    assert h["allow"] == "POST"
    st, _, _ = exchange(col, post("/stats", b"x"))
    assert st == 405


def test_wrong_content_type_gets_415_and_keeps_connection(ctx):
    col = ctx.collector()
    with connect(col) as s:
        s.sendall(post("/v1/traces", b"resourceSpans", ctype="text/plain"))
        st, h, _, rest = read_response(s)
        assert st == 415
        assert h.get("connection") != "close"
        s.sendall(post("/v1/traces", traces_request([]),
                       ctype="application/x-protobuf; charset=binary"))
        st, _, _, _ = read_response(s, rest)
        assert st == 200


def test_missing_content_length_gets_411(ctx):
    col = ctx.collector()
    st, _, _ = exchange(col, b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf"
                        b"\r\n\r\n")
    assert st == 411


def test_invalid_protobuf_gets_400_with_rpc_status(ctx):
    col = ctx.collector()
    st, h, body = exchange(col, post("/v1/traces", b"\x0a\xff\xff\xff\x0f\x01"))
    assert st == 400
    assert h["content-type"] == "application/x-protobuf"
    assert body[:1] == b"\x08"  # google.rpc.Status.code
    assert stats(col)["rejected"]["bad_protobuf"] == 1


def test_deeply_nested_protobuf_is_refused_not_crashing(ctx):
    col = ctx.collector()
    v = f_str(1, "x")
    for _ in range(20000):
        v = f_bytes(5, f_bytes(1, v))
    body = traces_request([span(TRACE_ID, SPAN_ID, "deep", 1, 1, 2, {})])
    body = f_bytes(1, f_bytes(1, f_bytes(1, f_str(1, "k") + f_bytes(2, v))))
    st, _, _ = exchange(col, post("/v1/traces", body))
    assert st == 400
    assert col.proc.poll() is None


def test_valid_request_is_written_as_exact_json_line(ctx):
    col = ctx.collector()
    sp = span(TRACE_ID, SPAN_ID, "connect", 3, 1700000000000000001, 1700000000000000999,
              {"server.address": "db.example", "server.port": 5432, "ok": True,
               "ratio": 0.5, "args": ["psql", "-c", "select 1"], "quote": 'a"b\\c\n',
               "neg": -7},
              parent=PARENT_ID, status=(2, "connection refused"))
    st, h, body = exchange(col, post("/v1/traces", traces_request([sp])))
    assert st == 200
    assert h["content-type"] == "application/x-protobuf"
    assert body == b""
    spans = col.spans()
    assert len(spans) == 1
    s = spans[0]
    assert s.trace_id == TRACE_ID.hex() and s.span_id == SPAN_ID.hex()
    assert s.parent_id == PARENT_ID.hex()
    assert s.name == "connect" and s.kind == 3
    assert s.raw["startTimeUnixNano"] == "1700000000000000001"
    assert s.raw["endTimeUnixNano"] == "1700000000000000999"
    assert s.raw["flags"] == 257
    assert s.raw["attributes"][1] == {"key": "server.port", "value": {"intValue": "5432"}}
    assert s.attrs == {"server.address": "db.example", "server.port": 5432, "ok": True,
                       "ratio": 0.5, "args": ["psql", "-c", "select 1"],
                       "quote": 'a"b\\c\n', "neg": -7}
    assert s.status_code == 2 and s.status_message == "connection refused"
    assert s.resource == {"service.name": "test"}
    doc = lines(col)[0]
    assert doc["resourceSpans"][0]["scopeSpans"][0]["scope"] == {"name": "spanshim",
                                                                  "version": "0.1.0"}


def test_logs_request_is_written_as_resource_logs_line(ctx):
    col = ctx.collector()
    st, _, _ = exchange(col, post("/v1/logs", logs_request("exception", "boom", TRACE_ID,
                                                             SPAN_ID)))
    assert st == 200
    col.stop()
    assert lines(col) == [], "logs go to their own file"
    rec = lines(col, col.logs_out)[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert rec == {"timeUnixNano": "5", "severityNumber": 17, "body": {"stringValue": "boom"},
                   "traceId": TRACE_ID.hex(), "spanId": SPAN_ID.hex(),
                   "eventName": "exception"}


def test_keep_alive_and_pipelining_on_one_connection(ctx):
    col = ctx.collector()
    reqs = [traces_request([span(TRACE_ID, bytes([0, 0, 0, 0, 0, 0, 0, i]), "s%d" % i, 1, 1,
                                 2, {})]) for i in range(1, 5)]
    with connect(col) as s:
        s.sendall(post("/v1/traces", reqs[0]))
        st, h, _, rest = read_response(s)
        assert st == 200 and h.get("connection") != "close"
        s.sendall(post("/v1/traces", reqs[1]))
        st, _, _, rest = read_response(s, rest)
        assert st == 200
        s.sendall(post("/v1/traces", reqs[2]) + post("/v1/traces", reqs[3]))  # pipelined
        for _ in range(2):
            st, _, _, rest = read_response(s, rest)
            assert st == 200
    assert stats(col)["connections"] == 2  # the four requests, then this /stats
    assert [sp.name for sp in col.spans()] == ["s1", "s2", "s3", "s4"]


def test_connection_close_is_honoured(ctx):
    col = ctx.collector()
    with connect(col) as s:
        s.sendall(post("/v1/traces", traces_request([]), extra="Connection: close\r\n"))
        st, h, _, _ = read_response(s)
        assert st == 200 and h["connection"] == "close"
        assert closed_by_peer(s)


def test_stats_counters_move(ctx):
    col = ctx.collector()
    before = stats(col)
    sp = [span(TRACE_ID, SPAN_ID, "x", 1, 1, 2, {}) for _ in range(3)]
    exchange(col, post("/v1/traces", traces_request(sp)))
    exchange(col, post("/v1/nope", b""))
    after = stats(col)
    assert after["requests"] == before["requests"] + 3
    assert after["traces_requests"] == before["traces_requests"] + 1
    assert after["spans_received"] == before["spans_received"] + 3
    assert after["lines_written"] == before["lines_written"] + 1
    assert after["bytes_written"] > before["bytes_written"]
    assert after["rejected"]["not_found"] == before["rejected"]["not_found"] + 1
    assert after["write_errors"] == 0 and after["peers_refused"] == 0


def test_socket_is_0666_in_0711_dir_0600_in_0700_no_tree(ctx):
    """As root: every peer is checked (SO_PEERCRED, the traced tree), and the traced
    tree's processes that changed user must reach the socket; --no-tree admits by uid
    alone and keeps everyone else out of the directory. Another user's collector is 0600
    in 0700 either way (test_security)."""
    if os.geteuid() != 0:
        harness.skip("the 0711/0666 socket is root's collector's (run as root)")
    for i, (args, dmode, smode) in enumerate((([], 0o711, 0o666),
                                             (["--no-tree"], 0o700, 0o600))):
        d = os.path.join(ctx.tmp, "f%d" % i, "sub")
        sock = os.path.join(d, "c.sock")
        p = subprocess.Popen([ctx.spanshimd, "--socket", sock, "--out",
                              os.path.join(ctx.tmp, "o.jsonl")] + args, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 5
            while not os.path.exists(sock) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stat.S_IMODE(os.stat(d).st_mode) == dmode, args
            assert stat.S_ISSOCK(os.stat(sock).st_mode)
            assert stat.S_IMODE(os.stat(sock).st_mode) == smode, args
        finally:
            p.terminate()
            p.wait(5)
    # A directory others can write to is refused.
    bad = os.path.join(ctx.tmp, "open")
    os.mkdir(bad)
    os.chmod(bad, 0o777)
    r = subprocess.run([ctx.spanshimd, "--socket", os.path.join(bad, "c.sock"), "--out",
                        os.path.join(ctx.tmp, "o2.jsonl")], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"writable by group or others" in r.stderr
    assert r.stdout == b""


def test_second_daemon_on_live_socket_refused_stale_socket_replaced(ctx):
    col = ctx.collector()
    r = subprocess.run([ctx.spanshimd, "--socket", col.socket, "--out",
                        os.path.join(ctx.tmp, "o2.jsonl")], capture_output=True, timeout=10)
    assert r.returncode == 1
    assert b"already listening" in r.stderr
    assert exchange(col, post("/v1/traces", traces_request([])))[0] == 200
    # A socket file nobody answers on is stale and gets replaced.
    col.proc.kill()
    col.proc.wait()
    assert os.path.exists(col.socket)
    col2 = ctx.collector()
    os.rename(col2.socket, col2.socket + ".x")  # keep col2 away from col's path
    p = subprocess.Popen([ctx.spanshimd, "--socket", col.socket, "--out",
                          os.path.join(ctx.tmp, "o3.jsonl")], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(col.socket)
                s.close()
                ok = True
            except OSError:
                time.sleep(0.02)
        assert ok
    finally:
        p.terminate()
        assert p.wait(5) == 0


def test_sigterm_exits_0_prints_counters_and_removes_socket(ctx):
    col = ctx.collector()
    exchange(col, post("/v1/traces", traces_request([span(TRACE_ID, SPAN_ID, "x", 1, 1, 2,
                                                            {})])))
    col.proc.send_signal(signal.SIGTERM)
    assert col.proc.wait(10) == 0
    assert not os.path.exists(col.socket)
    err = col.stderr()
    assert "listening on unix:" + col.socket in err
    assert "spans_received=1" in err and "lines_written=1" in err
    assert len(lines(col)) == 1


def test_tcp_listen_on_loopback(ctx):
    col = ctx.collector(["--listen", "127.0.0.1:0"])
    deadline = time.monotonic() + 5
    while "http://" not in col.stderr() and time.monotonic() < deadline:
        time.sleep(0.01)
    port = int(col.stderr().split("http://127.0.0.1:")[1].split(",")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(post("/v1/traces", traces_request([])))
        assert read_response(s)[0] == 200
    r = subprocess.run([ctx.spanshimd, "--socket", os.path.join(ctx.tmp, "t.sock"),
                        "--listen", "0.0.0.0:0"], capture_output=True, timeout=10)
    assert r.returncode == 1 and b"loopback" in r.stderr


def _as_nobody(col, raw):
    """Forks a child that becomes nobody, sends raw on a new connection and reads until
    the collector closes or 5 s pass; returns what it read (b"" when closed at once)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        got = b"error"
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(col.socket)
            got = b""
            try:
                s.sendall(raw)
                while not got.endswith(b"ok\n") and b"\r\n\r\n" not in got:
                    d = s.recv(4096)
                    if not d:
                        break
                    got += d
            except (ConnectionResetError, BrokenPipeError):
                pass
        except BaseException as e:  # noqa: BLE001
            got = repr(e).encode()
        finally:
            os.write(w, got[:4000])
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    out = os.read(r, 4000)
    os.close(r)
    return out


def test_peer_with_another_uid_is_refused(ctx):
    if os.geteuid() != 0:
        harness.skip("needs root to become another user")
    col = ctx.collector()
    # Only for this test: let uid 65534 reach the socket, so SO_PEERCRED is what refuses.
    os.chmod(ctx.tmp, 0o711)
    os.chmod(os.path.dirname(col.socket), 0o711)
    os.chmod(col.socket, 0o666)
    # Admitted by nothing (not the tree's token either): 403, then closed.
    got = _as_nobody(col, post("/v1/traces", traces_request([])))
    assert got == b"" or got.startswith(b"HTTP/1.1 403 "), "peer was served: %r" % got
    st = stats(col)
    assert st["peers_refused"] == 1 and st["tree_token_admitted"] == 0
    assert st["traces_requests"] == 0


def test_the_trees_token_admits_another_users_peer_and_nothing_else_does(ctx):
    """A peer admitted by its credentials (root here) gets the traced tree's token in its
    2xx answers (Spanshim-Tree: 32 hex digits). Another user's peer that is not of the
    tree by its pid is admitted when its first request carries that token
    (tree_token_admitted), and refused (403, closed; peers_refused) without it, with a
    token of the right length that is not it, or with the token only on a later
    request."""
    if os.geteuid() != 0:
        harness.skip("needs root to become another user")
    col = ctx.collector()
    os.chmod(ctx.tmp, 0o711)
    os.chmod(os.path.dirname(col.socket), 0o711)
    os.chmod(col.socket, 0o666)
    # Asked from another process (root, as python3 -c): the test itself, were it to send,
    # would be of the tree, and so would the children it forks.
    code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
            "s.sendall(sys.stdin.buffer.read()); sys.stdout.buffer.write(s.recv(4096))")
    r = subprocess.run([sys.executable, "-c", code, col.socket], capture_output=True,
                       input=post("/v1/traces", traces_request([])), timeout=30)
    head = r.stdout.decode()
    token = head.partition("Spanshim-Tree: ")[2][:32]
    assert head.startswith("HTTP/1.1 200 ") and len(token) == 32 and int(token, 16) >= 0, r
    assert "spanshim-tree" not in exchange(col, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")[1]
    req = lambda tok: post("/v1/traces", one_span("t"), extra="Spanshim-Tree: %s\r\n" % tok
                           if tok else "")
    fake = "%032x" % (int(token, 16) ^ 1)
    for raw in (req(None), req(fake), req(token[:31]), req(None) + req(token)):
        got = _as_nobody(col, raw)
        assert got == b"" or got.startswith(b"HTTP/1.1 403 "), got
        assert b"spanshim-tree" not in got.lower(), got
    got = _as_nobody(col, req(token))
    assert got.startswith(b"HTTP/1.1 200 ") and token.encode() in got, got
    st = stats(col)
    assert st["peers_refused"] == 4 and st["tree_token_admitted"] == 1, st
    assert st["spans_received"] == 1 and st["traces_requests"] >= 2, st
    assert col.stop() == 0


def test_fuzz_random_and_mutated_requests_never_crash(ctx):
    col = ctx.collector(["--max-body", "64k"])
    rnd = random.Random(1234)
    good = traces_request([span(TRACE_ID, SPAN_ID, "fuzz", 3, 1, 2,
                                {"a": "b", "n": 1, "l": ["x", "y"], "f": 1.5})])
    good_http = post("/v1/traces", good)
    t0 = time.monotonic()
    sent = 0
    while sent < 10000 and time.monotonic() - t0 < 8:
        batch = []
        for _ in range(rnd.randint(1, 8)):
            kind = rnd.random()
            if kind < 0.2:
                raw = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
            elif kind < 0.5:
                raw = bytearray(good_http)
                for _ in range(rnd.randint(1, 6)):
                    raw[rnd.randrange(len(raw))] = rnd.getrandbits(8)
                raw = bytes(raw)
            elif kind < 0.8:
                body = bytearray(good)
                for _ in range(rnd.randint(1, 6)):
                    body[rnd.randrange(len(body))] = rnd.getrandbits(8)
                raw = post("/v1/traces", bytes(body))
            else:
                raw = good_http[:rnd.randrange(len(good_http))]
            batch.append(raw)
        sent += len(batch)
        s = connect(col)
        s.settimeout(2)
        try:
            s.sendall(b"".join(batch))
            s.shutdown(socket.SHUT_WR)
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()
    print("fuzz: %d requests in %.1fs" % (sent, time.monotonic() - t0))
    assert sent >= 1000
    assert col.proc.poll() is None, "spanshimd died"
    st = stats(col)
    print("fuzz: daemon saw %d request heads, %d lines, rejected %s" % (
        st["requests"], st["lines_written"], st["rejected"]))
    assert st["requests"] > 1000
    assert exchange(col, good_http)[0] == 200
    assert col.stop() == 0
    for doc in lines(col):  # every line written from mutated protobuf is valid JSON
        assert "resourceSpans" in doc


def test_write_error_gets_503_and_daemon_keeps_running(ctx):
    col = ctx.collector(["--out", "/dev/full"])  # every write fails with ENOSPC
    st, h, _ = exchange(col, post("/v1/traces", traces_request([])))
    assert st == 503
    assert "retry-after" in h
    st = stats(col)
    assert st["write_errors"] == 1 and st["rejected"]["unavailable"] == 1
    # A request answered 503 is sent again by its client: its spans (and those refused for
    # their ids) count when a request is taken, not at each try.
    req = traces_request([span(TRACE_ID, struct.pack(">Q", i + 1), "s%d" % i, 1, 1, 2, {})
                          for i in range(3)] + [span(b"\0" * 16, b"\1" * 8, "zero", 1, 1, 2, {})])
    for _ in range(2):
        assert exchange(col, post("/v1/traces", req))[0] == 503
    st = stats(col)
    assert st["rejected"]["unavailable"] == 3
    assert st["spans_received"] == 0 and st["spans_rejected"] == 0, st
    assert col.stop() == 0


def test_large_body_and_expect_continue(ctx):
    col = ctx.collector()
    sp = [span(TRACE_ID, struct.pack(">Q", i + 1), "big%d" % i, 1, 1, 2,
               {"payload": "x" * 200}) for i in range(20000)]
    body = traces_request(sp)
    assert len(body) > 4 << 20
    with connect(col) as s:
        s.sendall(post("/v1/traces", body)[:-len(body)].replace(
            b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
        st, _, _, rest = read_response(s)
        assert st == 100
        s.sendall(body)
        st, _, _, rest = read_response(s, rest)
        assert st == 200
        s.sendall(post("/v1/traces", traces_request(sp[:1])))  # same connection, small again
        assert read_response(s, rest)[0] == 200
    spans = col.spans()
    assert len(spans) == 20001
    assert spans[19999].name == "big19999" and spans[19999].span_id == "0000000000004e20"


# ---- chunked bodies and Content-Encoding (issue 15 items 1 and 2) ----


def chunked(body, sizes=(7, 1000, 3), ext=b"", trailers=b""):
    """body as chunks of the given sizes (cycled), each size line with ext, then the
    last chunk and the trailer fields."""
    out, i, k = [], 0, 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        out.append(b"%x%s\r\n%s\r\n" % (len(body[i:i + n]), ext, body[i:i + n]))
        i += n
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


def post_chunked(path, body, extra="", **kw):
    return ("POST %s HTTP/1.1\r\nHost: spanshimd\r\nContent-Type: application/x-protobuf\r\n"
            "Transfer-Encoding: chunked\r\n%s\r\n" % (path, extra)).encode() + chunked(body, **kw)


def one_span(name, i=1):
    return traces_request([span(TRACE_ID, struct.pack(">Q", i), name, 2, 1, 2, {"i": i})])


def rss_peak_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmHWM:"):
                return int(ln.split()[1])
    return 0


def curl_unix(col, args, body_file):
    r = subprocess.run(["curl", "-sS", "--unix-socket", col.socket, "-o", "/dev/null",
                        "-w", "%{http_code}", "-H", "Content-Type: application/x-protobuf"]
                       + args + ["--data-binary", "@" + body_file, "http://spanshimd/v1/traces"],
                       capture_output=True, timeout=30)
    return int(r.stdout or b"0"), r.stderr.decode()


def test_chunked_body_from_curl_is_served_and_written(ctx):
    if subprocess.run(["sh", "-c", "command -v curl"], capture_output=True).returncode:
        harness.skip("curl not installed")
    col = ctx.collector()
    path = os.path.join(ctx.tmp, "req.bin")
    with open(path, "wb") as f:
        f.write(traces_request([span(TRACE_ID, struct.pack(">Q", i + 1), "chunked%d" % i, 2,
                                     1, 2, {"payload": "y" * 100}) for i in range(500)]))
    code, err = curl_unix(col, ["-H", "Transfer-Encoding: chunked", "-v"], path)
    assert code == 200, err
    assert "Transfer-Encoding: chunked" in err  # curl did send it chunked
    spans = col.spans()
    assert [s.name for s in spans] == ["chunked%d" % i for i in range(500)]
    assert spans[499].span_id == "%016x" % 500 and spans[0].attrs["payload"] == "y" * 100


def test_chunked_keep_alive_extensions_trailers_then_second_request(ctx):
    col = ctx.collector()
    with connect(col) as s:
        s.sendall(post_chunked("/v1/traces", one_span("first", 1), ext=b";a=1;b=\"q;x\"",
                               trailers=b"X-Checksum: 1\r\nServer-Timing: t;dur=2\r\n"))
        st, h, _, rest = read_response(s)
        assert st == 200 and h.get("connection") != "close"
        # the second request on the same connection: Content-Length, then chunked again,
        # pipelined in one write with a chunked one split byte by byte
        s.sendall(post("/v1/traces", one_span("second", 2)))
        st, _, _, rest = read_response(s, rest)
        assert st == 200
        s.sendall(post_chunked("/v1/traces", one_span("third", 3), sizes=(1,)) +
                  post("/v1/traces", one_span("fourth", 4)))
        st, _, _, rest = read_response(s, rest)
        assert st == 200
        st, _, _, rest = read_response(s, rest)
        assert st == 200
    assert [sp.name for sp in col.spans()] == ["first", "second", "third", "fourth"]


def test_chunked_with_expect_continue_and_an_empty_body(ctx):
    col = ctx.collector()
    with connect(col) as s:
        raw = post_chunked("/v1/traces", one_span("expected"), extra="Expect: 100-continue\r\n")
        head, _, body = raw.partition(b"\r\n\r\n")
        s.sendall(head + b"\r\n\r\n")
        st, _, _, rest = read_response(s)
        assert st == 100
        s.sendall(body)
        st, _, _, rest = read_response(s, rest)
        assert st == 200
        s.sendall(post_chunked("/v1/traces", b""))  # "0\r\n\r\n": an empty request, valid
        assert read_response(s, rest)[0] == 200
    assert [sp.name for sp in col.spans()] == ["expected"]


def test_chunked_framing_errors_close_with_400_413_501(ctx):
    col = ctx.collector(["--max-body", "1M"])
    head = (b"POST /v1/traces HTTP/1.1\r\nContent-Type: application/x-protobuf\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    cases = [(head + b"zz\r\n", 400),                          # size not hex
             (head + b"3\r\nabcd\r\n0\r\n\r\n", 400),          # data longer than its size
             (head + b"100001\r\n", 413),                      # a chunk past --max-body
             (head.replace(b"chunked", b"gzip, chunked") + b"0\r\n\r\n", 501),
             (head.replace(b"chunked", b"chunked, gzip") + b"0\r\n\r\n", 400)]
    for raw, want in cases:
        with connect(col) as s:
            s.sendall(raw)
            st, h, _, _ = read_response(s)
            assert st == want, (raw, st)
            assert h.get("connection") == "close"
            assert closed_by_peer(s)
    # a body of chunks adding up past the bound, none too big alone: 413 at the one that
    # would pass it, before its data arrives
    with connect(col) as s:
        s.sendall(head + (b"40000\r\n" + b"\x00" * 0x40000 + b"\r\n") * 4 + b"1\r\n")
        st, _, _, _ = read_response(s)
        assert st == 413
    st = stats(col)
    assert st["rejected"]["too_large"] == 2 and st["rejected"]["bad_http"] == 4
    assert exchange(col, post_chunked("/v1/traces", one_span("after")))[0] == 200


def test_gzip_and_deflate_bodies_are_inflated(ctx):
    import gzip
    import zlib
    col = ctx.collector()
    bodies = [("gzip", gzip.compress(one_span("gzipped", 1)), False),
              ("x-gzip", gzip.compress(one_span("x-gzipped", 2)), False),
              ("deflate", zlib.compress(one_span("deflated", 3)), False),
              ("deflate", zlib.compress(one_span("raw-deflated", 4))[2:-4], False),
              ("gzip", gzip.compress(one_span("gzip-chunked", 5)), True),
              ("identity", one_span("identity", 6), False)]
    with connect(col) as s:
        rest = b""
        for enc, body, is_chunked in bodies:
            extra = "Content-Encoding: %s\r\n" % enc
            s.sendall(post_chunked("/v1/traces", body, extra=extra) if is_chunked
                      else post("/v1/traces", body, extra=extra))
            st, h, _, rest = read_response(s, rest)
            assert st == 200, enc
            assert h.get("connection") != "close"
        # logs too
        s.sendall(post("/v1/logs", gzip.compress(logs_request("exception", "zipped", TRACE_ID,
                                                              SPAN_ID)),
                       extra="Content-Encoding: gzip\r\n"))
        assert read_response(s, rest)[0] == 200
    assert [sp.name for sp in col.spans()] == ["gzipped", "x-gzipped", "deflated",
                                                "raw-deflated", "gzip-chunked", "identity"]
    assert any("zipped" in json.dumps(doc) for doc in lines(col, col.logs_out))


def test_gzip_from_curl_and_corrupt_gzip(ctx):
    import gzip
    if subprocess.run(["sh", "-c", "command -v curl"], capture_output=True).returncode:
        harness.skip("curl not installed")
    col = ctx.collector()
    path = os.path.join(ctx.tmp, "req.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(one_span("curl-gzip")))
    code, err = curl_unix(col, ["-H", "Content-Encoding: gzip"], path)
    assert code == 200, err
    code, err = curl_unix(col, ["-H", "Content-Encoding: gzip", "-H",
                                "Transfer-Encoding: chunked"], path)
    assert code == 200, err
    st, h, body = exchange(col, post("/v1/traces", b"\x1f\x8b not really gzip",
                                     extra="Content-Encoding: gzip\r\n"))
    assert st == 400 and h["content-type"] == "application/x-protobuf"
    assert [sp.name for sp in col.spans()] == ["curl-gzip", "curl-gzip"]


def test_unknown_content_encoding_gets_415_and_keeps_connection(ctx):
    col = ctx.collector()
    with connect(col) as s:
        rest = b""
        for enc in ("br", "zstd", "gzip, gzip"):
            s.sendall(post("/v1/traces", one_span("no"), extra="Content-Encoding: %s\r\n" % enc))
            st, h, body, rest = read_response(s, rest)
            assert st == 415, enc
            assert h["accept-encoding"] == "gzip, deflate"
            assert b"content encoding" in body
            assert h.get("connection") != "close"
        s.sendall(post("/v1/traces", one_span("yes")))
        assert read_response(s, rest)[0] == 200
    assert stats(col)["rejected"]["content_type"] == 3
    assert [sp.name for sp in col.spans()] == ["yes"]


def test_gzip_bomb_gets_413_and_memory_stays_bounded(ctx):
    import gzip
    col = ctx.collector(["--max-body", "1M"])
    bomb = gzip.compress(b"\x00" * (100 << 20), compresslevel=9)
    assert len(bomb) < 1 << 20  # it fits the bound on the wire: only decoding can stop it
    with connect(col) as s:
        rest = b""
        for raw in (post("/v1/traces", bomb, extra="Content-Encoding: gzip\r\n"),
                    post_chunked("/v1/traces", bomb, extra="Content-Encoding: gzip\r\n",
                                 sizes=(65536,))):
            s.sendall(raw)
            st, h, body, rest = read_response(s, rest)
            assert st == 413
            assert b"decompressed" in body
            assert h.get("connection") != "close"  # the body was read: the connection goes on
        s.sendall(post("/v1/traces", gzip.compress(one_span("small")),
                       extra="Content-Encoding: gzip\r\n"))
        assert read_response(s, rest)[0] == 200
    # inflating stopped at the bound: nowhere near 100 MB
    peak = rss_peak_kib(col.proc.pid)
    assert 0 < peak < 48 << 10, "spanshimd peak RSS %d KiB" % peak
    assert stats(col)["rejected"]["too_large"] == 2
    assert [sp.name for sp in col.spans()] == ["small"]
