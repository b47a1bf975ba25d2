"""spanshimd under hostile clients, part two (issue 14, item 8): OTLP/gRPC, OTLP/JSON and
protobuf logs bodies, each case with a bound on spanshimd's peak resident memory (VmHWM
in /proc/PID/status) and on what it keeps after (VmRSS), while a real request from
another peer still lands whole. test_security.py has the OTLP/HTTP protobuf cases.

The gRPC peers are raw HTTP/2 over sockets (the preface, SETTINGS, HEADERS with literal
HPACK fields, DATA within the flow-control windows the server grants): what a hostile
client sends is not what an SDK would."""
import json
import shutil
import socket
import struct
import tempfile
import time

import harness
import test_security as sec
import test_spanshimd as t
import test_sdk_interop as g

MIB = sec.MIB
RSS_BOUND = sec.RSS_BOUND
vm = sec.vm
PREFACE = g.PREFACE


# ---- a raw HTTP/2 client ----

def _hpack_int(n):
    if n < 127:
        return bytes([n])
    out, n = bytearray([127]), n - 127
    while n >= 128:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def hpack(headers):
    """A header block of literal fields without indexing (no Huffman): 0x00, name, value."""
    out = b""
    for k, v in headers:
        k, v = k.encode(), v.encode()
        out += b"\x00" + _hpack_int(len(k)) + k + _hpack_int(len(v)) + v
    return out


def call_headers(path=g.TRACE_SVC):
    return hpack([(":method", "POST"), (":scheme", "http"), (":path", path),
                  (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])


class H2:
    """One HTTP/2 connection, client side, that keeps within the server's flow-control
    windows. ended[sid] is set when the server ends a stream (END_STREAM or RST_STREAM)."""

    def __init__(self, addr, settings=True):
        fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(addr)
        self.buf = b""
        self.conn_win = 65535
        self.init_win = 65535
        self.win = {}
        self.ended = {}
        self.data = {}
        self.closed = False
        self.answers = settings  # ack SETTINGS, answer PINGs: not before our preface
        if settings:
            self.s.sendall(PREFACE + g.h2_frame(4, 0, 0, b""))

    def open(self, sid, path=g.TRACE_SVC):
        self.win[sid] = self.init_win
        self.s.sendall(g.h2_frame(1, 4, sid, call_headers(path)))

    def pump(self, wait=0.0):
        """Reads what the server sent (waiting up to `wait` s for something)."""
        self.s.settimeout(wait if wait > 0 else 0.0001)
        try:
            while True:
                d = self.s.recv(1 << 20)
                if not d:
                    self.closed = True
                    break
                self.buf += d
                self.s.settimeout(0.0001)
        except (socket.timeout, BlockingIOError):
            pass
        except OSError:
            self.closed = True
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            p = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            if ftype == 4 and not flags & 1:  # SETTINGS: note the window, ack
                for i in range(0, len(p), 6):
                    ident, val = struct.unpack(">HI", p[i:i + 6])
                    if ident == 4:
                        for k in self.win:
                            self.win[k] += val - self.init_win
                        self.init_win = val
                if self.answers:
                    self.s.sendall(g.h2_frame(4, 1, 0, b""))
            elif ftype == 8:  # WINDOW_UPDATE
                inc = struct.unpack(">I", p)[0] & 0x7FFFFFFF
                if sid == 0:
                    self.conn_win += inc
                elif sid in self.win:
                    self.win[sid] += inc
            elif ftype == 0:
                self.data[sid] = self.data.get(sid, b"") + p
                if flags & 1:
                    self.ended[sid] = "end"
            elif ftype == 1 and flags & 1:
                self.ended[sid] = "end"
            elif ftype == 3:
                self.ended[sid] = "rst"
            elif ftype == 6 and not flags & 1 and self.answers:  # PING: answer
                self.s.sendall(g.h2_frame(6, 1, 0, p))
            elif ftype == 7:
                self.ended[0] = "goaway"

    def send(self, sid, data, end=False):
        """Sends as much of data as the windows allow now; returns the bytes sent."""
        sent = 0
        self.s.settimeout(30)
        while sent < len(data) and sid not in self.ended and not self.closed:
            k = min(len(data) - sent, self.conn_win, self.win[sid], 16384)
            if k <= 0:
                break
            last = end and sent + k == len(data)
            try:
                self.s.sendall(g.h2_frame(0, 1 if last else 0, sid, data[sent:sent + k]))
            except OSError:
                self.closed = True
                break
            self.conn_win -= k
            self.win[sid] -= k
            sent += k
        return sent

    def close(self):
        self.s.close()


def grpc_export(addr, body, path=g.TRACE_SVC, timeout=60):
    """One whole unary call on a connection of its own; True when the server answered
    with a response message (grpc-status 0 comes in trailers after it)."""
    c = H2(addr)
    try:
        c.pump(0.5)
        c.open(1, path)
        msg, off = g.frame(body), 0
        deadline = time.monotonic() + timeout
        while 1 not in c.ended and time.monotonic() < deadline:
            if off < len(msg):
                off += c.send(1, msg[off:], end=True)
            c.pump(0.05)
        return c.ended.get(1) == "end" and len(c.data.get(1, b"")) >= 5
    finally:
        c.close()


def grpc_collector(ctx, args=()):
    """spanshimd with OTLP/gRPC on loopback TCP and on a Unix socket (another peer: the
    TCP clients are all one address); returns (collector, HTTP port, gRPC port, socket)."""
    short = tempfile.mkdtemp(prefix="ss-g-")  # sun_path: 108 bytes
    ctx._cleanup.append(lambda: shutil.rmtree(short, ignore_errors=True))
    sock = short + "/g.sock"
    col, hp, gp = g.collector(ctx, list(args), grpc_socket=sock)
    return col, hp, gp, sock


def names(col):
    return [s.name for s in g.records(col)[0]]


# ---- gRPC ----

def test_grpc_ten_calls_each_holding_16mib_minus_one_keep_rss_bounded(ctx):
    col, hp, gp, sock = grpc_collector(ctx, ["--body-timeout", "60s"])
    pid = col.proc.pid
    c = H2(("127.0.0.1", gp))
    c.pump(0.5)
    head = struct.pack(">BI", 0, 16 * MIB - 5)  # announces 16 MiB framed
    want = {}
    for i in range(10):
        sid = 1 + 2 * i
        c.open(sid)
        want[sid] = head + b"\x00" * (16 * MIB - 1 - len(head))
    left = {sid: 0 for sid in want}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        moved = 0
        for sid, body in want.items():
            k = c.send(sid, body[left[sid]:left[sid] + MIB])
            left[sid] += k
            moved += k
        c.pump(0.05)
        done = [sid for sid in want if sid in c.ended or left[sid] == len(want[sid])]
        if len(done) == len(want) and not moved:
            break
    held = [sid for sid in want if sid not in c.ended]
    print("VmHWM %d MiB, held %s" % (vm(pid, "VmHWM") // MIB, [left[s] for s in held]))
    # Refused (UNAVAILABLE, which clients retry) once the budget's peer half is spent;
    # the ones still open hold what they sent, 16 MiB - 1 at most.
    st = g.stats(col, hp)
    assert st["rejected"]["unavailable"] >= 8, st
    assert held, st
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    # Another peer (the Unix socket) is served meanwhile.
    body = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "while-held", 1, 1, 2, {})])
    assert grpc_export(sock, body)
    c.close()
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    g.stats(col, hp)  # served after the connection's end was: its calls are freed
    print("after: VmRSS %d MiB" % (vm(pid, "VmRSS") // MIB))
    assert vm(pid, "VmRSS") <= 32 * MIB, vm(pid, "VmRSS") // MIB  # given back
    col.stop()
    assert names(col) == ["while-held"]


def test_grpc_big_logs_call_is_answered_first_and_lands_whole(ctx):
    # Over 1 MiB: decoded in slices, answered between the two passes.
    col, hp, gp, sock = grpc_collector(ctx)
    pid = col.proc.pid
    body, m = pb_logs(6 * MIB)
    assert grpc_export(sock, body, path=g.LOGS_SVC)
    st = g.stats(col, hp)
    assert st["logs_received"] == m and st["logs_requests"] == 1, st
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    col.stop()
    assert log_bodies(col) == ["r%d" % i for i in range(m)]


def test_grpc_one_peer_with_many_connections_leaves_others_room(ctx):
    col, hp, gp, sock = grpc_collector(ctx)
    pid = col.proc.pid
    flood = []
    ctx._cleanup.append(lambda: [s.close() for s in flood])
    for _ in range(1100):  # one address, each connection a preface and SETTINGS
        s = socket.socket()
        s.connect(("127.0.0.1", gp))
        s.sendall(PREFACE + g.h2_frame(4, 0, 0, b""))
        flood.append(s)
    deadline = time.monotonic() + 60
    while True:
        st = g.stats(col, hp)
        if st["peer_limited"] + st["connections_open"] >= 1100:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    print("VmHWM %d MiB" % (vm(pid, "VmHWM") // MIB), st)
    assert st["peer_limited"] >= 1100 - 256 and st["connections_open"] <= 256 + 1, st
    body = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "other-peer", 1, 1, 2, {})])
    assert grpc_export(sock, body)
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    col.stop()
    assert names(col) == ["other-peer"]


def test_grpc_slowloris_preface_and_headers_are_cut_off(ctx):
    col, hp, gp, sock = grpc_collector(ctx, ["--header-timeout", "1s", "--body-timeout", "1s",
                                             "--idle-timeout", "60s"])
    pid = col.proc.pid
    slow = [H2(("127.0.0.1", gp), settings=False), H2(sock, settings=False)]
    hdr = H2(("127.0.0.1", gp))
    hdr.pump(0.5)
    block = call_headers()
    frame = g.h2_frame(1, 4, 1, block)
    # The preface 1 byte at a time (TCP and the Unix socket), and a call's HEADERS frame
    # 1 byte at a time after a proper preface.
    deadline = time.monotonic() + 60  # a bound, not a speed: the timeouts are 1 s
    i = 0
    while time.monotonic() < deadline:
        for c in slow:
            if not c.closed:
                try:
                    c.s.sendall(PREFACE[i % len(PREFACE):i % len(PREFACE) + 1])
                except OSError:
                    c.closed = True
                c.pump()
        if not hdr.closed and 1 not in hdr.ended:
            try:
                hdr.s.sendall(frame[i % len(frame):i % len(frame) + 1])
            except OSError:
                hdr.closed = True
            hdr.pump()
        if all(c.closed for c in slow) and (hdr.closed or 1 in hdr.ended):
            break
        i += 1
        time.sleep(0.25)
    assert all(c.closed for c in slow), "a slowloris preface was kept"
    assert hdr.closed or 1 in hdr.ended, "a slowloris call was kept"
    st = g.stats(col, hp)
    assert st["timeouts"] >= 3, st
    body = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "after-slow", 1, 1, 2, {})])
    assert grpc_export(("127.0.0.1", gp), body)
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    col.stop()
    assert names(col) == ["after-slow"]


# ---- bodies: OTLP/JSON, and protobuf logs ----

def send_body(col, path, body, ctype):
    with t.connect(col) as s:
        s.settimeout(120)
        s.sendall(t.post(path, body, ctype=ctype))
        return t.read_response(s)


def json_spans(size, resource=True):
    """An OTLP/JSON traces request of about `size` bytes: spans with 16 attributes each
    (the whole list in one scope of one resource); (body, span count)."""
    spans, n, i = [], 0, 0
    while n < size - 4096:
        sp = json.dumps({"traceId": t.TRACE_ID.hex(), "spanId": "%016x" % (i + 1),
                         "name": "j%d" % i, "kind": 3, "startTimeUnixNano": "1000",
                         "endTimeUnixNano": "2000",
                         "attributes": [{"key": "k%d" % j, "value": {"stringValue": "v" * 40}}
                                        for j in range(16)]})
        spans.append(sp)
        n += len(sp) + 1
        i += 1
    rs = '{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"big"}}]},' \
         '"scopeSpans":[{"scope":{"name":"s"},"spans":[%s]}]}' % ",".join(spans)
    return ('{"resourceSpans":[%s]}' % rs).encode(), i


def pb_logs(size, bad_last=False):
    """A protobuf logs request of about `size` bytes, records with 8 attributes each in one
    scope of one resource, and when bad_last one more with a 1-byte span id; (body, count
    of the good records)."""
    recs, n, i = [], 0, 0
    while n < size - 4096:
        rec = t.f_fixed64(1, 5) + t.f_varint(2, 9) + t.f_bytes(5, t.any_value("r%d" % i))
        rec += t.attrs(6, {"a%d" % j: "w" * 40 for j in range(8)})
        rec += t.f_bytes(9, t.TRACE_ID) + t.f_bytes(10, (i + 1).to_bytes(8, "big"))
        recs.append(t.f_bytes(2, rec))
        n += len(recs[-1])
        i += 1
    if bad_last:
        recs.append(t.f_bytes(2, t.f_bytes(5, t.any_value("bad")) + t.f_bytes(10, b"\x07")))
    sl = t.f_bytes(1, t.f_str(1, "s")) + b"".join(recs)
    rl = t.f_bytes(1, t.attrs(1, {"service.name": "big"})) + t.f_bytes(2, sl)
    return t.f_bytes(1, rl), i


def log_bodies(col):
    out = []
    for doc in t.lines(col, harness.logs_beside(col.out)):
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                out += [r["body"]["stringValue"] for r in sl.get("logRecords", [])]
    return out


def test_json_bodies_of_empty_items_are_refused_within_the_rss_bound(ctx):
    # 16 MB of {} as spans, as scopes, as resources, and as log records: each would
    # decode to ~30 times its size; refused with 413, counted, memory bounded.
    col = ctx.collector()
    pid = col.proc.pid
    items = ",".join(["{}"] * 5_000_000)
    bodies = [("/v1/traces", '{"resourceSpans":[{"scopeSpans":[{"spans":[%s]}]}]}' % items),
              ("/v1/traces", '{"resourceSpans":[{"scopeSpans":[%s]}]}' % items),
              ("/v1/traces", '{"resourceSpans":[%s]}' % items),
              ("/v1/logs", '{"resourceLogs":[{"scopeLogs":[{"logRecords":[%s]}]}]}' % items)]
    for path, body in bodies:
        r = send_body(col, path, body.encode(), "application/json")
        assert r[0] == 413, r[:3]
        assert b"more memory than allowed" in r[2], r[2]
        print("%s: VmHWM %d MiB" % (body[:40], vm(pid, "VmHWM") // MIB))
        assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    # The same as protobuf logs: 8 million empty records (2 bytes each on the wire).
    empty = b"\x12\x00" * (8_000_000 - 8)
    scope = b"\x12" + t.varint(len(empty)) + empty
    r = send_body(col, "/v1/logs", b"\x0a" + t.varint(len(scope)) + scope,
                  "application/x-protobuf")
    assert r[0] == 413, r[:3]
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    assert t.stats(col)["rejected"]["too_large"] == 5
    assert vm(pid, "VmRSS") <= 32 * MIB, vm(pid, "VmRSS") // MIB


def test_big_valid_json_and_protobuf_logs_requests_land_whole_within_the_rss_bound(ctx):
    col = ctx.collector()
    pid = col.proc.pid
    body, n = json_spans(16 * MIB)
    assert len(body) <= 16 * MIB
    r = send_body(col, "/v1/traces", body, "application/json")
    assert r[0] == 200 and json.loads(r[2]) == {}, r[:3]
    print("JSON traces: VmHWM %d MiB VmRSS %d MiB" % (vm(pid, "VmHWM") // MIB,
                                                      vm(pid, "VmRSS") // MIB))
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    assert vm(pid, "VmRSS") <= 32 * MIB, vm(pid, "VmRSS") // MIB  # given back after it
    body, m = pb_logs(16 * MIB)
    assert len(body) <= 16 * MIB
    r = send_body(col, "/v1/logs", body, "application/x-protobuf")
    assert r[0] == 200, r[:3]
    t.stats(col)  # answered before its records are written: this comes after them
    print("protobuf logs: VmHWM %d MiB VmRSS %d MiB" % (vm(pid, "VmHWM") // MIB,
                                                        vm(pid, "VmRSS") // MIB))
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    assert vm(pid, "VmRSS") <= 32 * MIB, vm(pid, "VmRSS") // MIB
    # A bad id in the last record of a big request: that record alone is refused, and
    # said so in the answer, which comes before the rest is written.
    body, k = pb_logs(4 * MIB, bad_last=True)
    r = send_body(col, "/v1/logs", body, "application/x-protobuf")
    assert r[0] == 200, r[:3]
    assert g.parse_partial_success(b"\0" + struct.pack(">I", len(r[2])) + r[2])[0] == 1, r[2]
    st = t.stats(col)
    assert st["logs_received"] == m + k + 1 and st["logs_rejected"] == 1, st
    spans = col.spans()
    assert [s.name for s in spans] == ["j%d" % i for i in range(n)]  # all, in order
    assert all(s.resource.get("service.name") == "big" and len(s.attrs) == 16
               for s in spans)
    assert log_bodies(col) == ["r%d" % i for i in range(m)] + ["r%d" % i for i in range(k)]


def test_big_json_request_split_at_every_level_keeps_resources_scopes_and_order(ctx):
    # Over 1 MiB, so decoded in slices: a small resource, a big one whose list comes
    # before its attributes (its second scope alone too big for a slice: split into its
    # spans under copies of both), a small one last; snake_case names for one of them.
    col = ctx.collector()

    def sp(name, i):
        return {"traceId": t.TRACE_ID.hex(), "spanId": "%016x" % i, "name": name,
                "attributes": [{"key": "pad", "value": {"stringValue": "x" * 400}}]}

    def res(svc):
        return {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]}

    n = [0]

    def spans(prefix, count):
        out = []
        for k in range(count):
            n[0] += 1
            out.append(sp("%s%d" % (prefix, k), n[0]))
        return out

    req = {"resourceSpans": [
        {"resource": res("a"), "scopeSpans": [{"scope": {"name": "sa"}, "spans": spans("a", 3)}]},
        {"scopeSpans": [{"scope": {"name": "b1"}, "spans": spans("b", 200)},
                        {"spans": spans("c", 3000), "scope": {"name": "b2", "version": "2"}}],
         "resource": res("b"), "schemaUrl": "https://opentelemetry.io/schemas/1.26.0"},
        {"resource": res("c"), "scope_spans": [{"scope": {"name": "sc"}, "spans": spans("d", 2)}]},
    ]}
    body = json.dumps(req).encode()
    assert len(body) > 1.5 * MIB
    r = send_body(col, "/v1/traces", body, "application/json")
    assert r[0] == 200 and json.loads(r[2]) == {}, r[:3]
    docs = t.lines(col)
    got = [(rs["resource"]["attributes"][0]["value"]["stringValue"], ss["scope"]["name"],
            sp["name"]) for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"]
           for sp in ss["spans"]]
    want = [("a", "sa", "a%d" % k) for k in range(3)] + \
        [("b", "b1", "b%d" % k) for k in range(200)] + \
        [("b", "b2", "c%d" % k) for k in range(3000)] + [("c", "sc", "d0"), ("c", "sc", "d1")]
    assert got == want
    assert len(docs) > 3  # slices: lines of their own
    b2 = [ss for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"]
          if ss["scope"]["name"] == "b2"]
    assert len(b2) > 1 and all(ss["scope"].get("version") == "2" for ss in b2)
    assert all(rs.get("schemaUrl") == "https://opentelemetry.io/schemas/1.26.0"
               for d in docs for rs in d["resourceSpans"]
               if rs["resource"]["attributes"][0]["value"]["stringValue"] == "b")
    # The same with one malformed value deep in the big scope: 400 saying where, and
    # nothing of it written.
    bad = body.replace(b'"name": "c2999"', b'"name": 7', 1)
    r = send_body(col, "/v1/traces", bad, "application/json")
    assert r[0] == 400 and b"expected a string" in r[2], r[:3]
    assert t.stats(col)["rejected"]["bad_protobuf"] == 1
    assert len(col.spans()) == len(want)


def test_a_thousand_tcp_connections_each_holding_a_quarter_mib_keep_rss_bounded(ctx):
    # Each just under the 256 KiB a connection once held uncharged, from 1,000 loopback
    # source addresses (one peer all the same), while a traced program delivers on the
    # Unix socket.
    soft, hard = sec.resource.getrlimit(sec.resource.RLIMIT_NOFILE)
    if hard < 1200:
        harness.skip("the hard limit on open files is %d, under 1200" % hard)
    sec.resource.setrlimit(sec.resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    ctx._cleanup.append(lambda: sec.resource.setrlimit(sec.resource.RLIMIT_NOFILE, (soft, hard)))
    col = ctx.collector(["--listen", "127.0.0.1:0"])
    port = sec.tcp_port(col)
    pid = col.proc.pid
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % (16 * MIB))
    held = sec.hold_bodies(col, port, head, 1000, 250 << 10, 900)
    ctx._cleanup.append(lambda: [h[0].close() for h in held])
    print("1000 x 250 KiB: VmHWM %d MiB" % (vm(pid, "VmHWM") // MIB), t.stats(col)["buffer_waits"])
    tp = sec.traced_connects(ctx, col)
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    for h in held:
        h[0].close()
    assert sec.connect_spans_of(col, tp) == 100


def test_a_largest_request_fits_a_peers_share_of_a_small_buffer_budget(ctx):
    # --max-buffered just over one largest request: half of it would not hold one, so a
    # peer's share is one largest request.
    col = ctx.collector(["--max-body", "2M", "--max-buffered", "3M", "--body-timeout", "20s",
                         "--listen", "127.0.0.1:0"])
    body, n = sec.big_valid_request(2 * MIB)
    with socket.create_connection(("127.0.0.1", sec.tcp_port(col)), timeout=60) as s:
        s.sendall(t.post("/v1/traces", body))
        assert t.read_response(s)[0] == 200
    assert len(col.spans()) == n
