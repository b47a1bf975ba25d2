"""spanshimd under hostile clients, part two (issue 14, item 8): OTLP/gRPC, OTLP/JSON and
protobuf logs bodies, each case with a bound on spanshimd's peak resident memory (VmHWM
in /proc/PID/status) and on what it keeps after (VmRSS), while a real request from
another peer still lands whole. test_security.py has the OTLP/HTTP protobuf cases.

The gRPC peers are raw HTTP/2 over sockets (the preface, SETTINGS, HEADERS with literal
HPACK fields, DATA within the flow-control windows the server grants): what a hostile
client sends is not what an SDK would."""
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
    col.stop()
    assert names(col) == ["while-held"]


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
