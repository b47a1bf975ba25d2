"""spanshimd as an OpenTelemetry SDK sees it: the official OpenTelemetry JS SDK (npm,
pinned by tests/interop/package-lock.json, installed by `make interop-deps`) exporting
traces and logs over OTLP/HTTP protobuf, OTLP/HTTP JSON and OTLP/gRPC, with and without
gzip, over TCP and spanshimd's gRPC Unix socket; asserts on what lands in spanshimd's
output (names, ids, parents, attributes of every type, events, status, resource, scope,
log bodies and severities). Hand-made gRPC calls (node's own http2 module) cover what an
SDK never sends: unknown methods, metrics, bad framing, oversized and corrupt messages,
many calls at once on one connection, a peer of another uid on the Unix socket, bad ids
answered with partial_success."""
import gzip
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import harness
import test_spanshimd as t

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(os.path.dirname(HERE), "interop")
TRACE_SVC = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_SVC = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_SVC = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


# ---- the peers ----

def node_env(ctx, extra=None):
    """Environment for node: the SDK from $(BUILD)/interop, no OTEL_* of the caller's."""
    modules = os.path.join(ctx.build, "interop", "node_modules")
    if shutil.which("node") is None:
        harness.skip("node is not installed (tools/deps.sh installs nodejs)")
    if not os.path.isdir(os.path.join(modules, "@opentelemetry", "sdk-trace-base")):
        harness.skip("the OpenTelemetry JS SDK is not installed: run `make interop-deps` "
                     "(npm ci of tests/interop/package-lock.json)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["NODE_PATH"] = modules
    env.update(extra or {})
    return env


def sdk(ctx, signal_, exporter, url, gzip_=False, tag="peer", env=None, check=True):
    """Runs tests/interop/peer.js; returns (exit status, its JSON report or None, stderr)."""
    r = subprocess.run(["node", os.path.join(INTEROP, "peer.js"), signal_, exporter, url,
                        "gzip" if gzip_ else "none", tag],
                       env=node_env(ctx, env), capture_output=True, timeout=120, cwd=ctx.tmp)
    out = r.stdout.decode().strip()
    report = json.loads(out.splitlines()[-1]) if out else None
    if check:
        assert r.returncode == 0, "peer.js failed: %s %s" % (out, r.stderr.decode()[-2000:])
    return r.returncode, report, r.stderr.decode()


def raw_calls(ctx, calls, url=None, sock=None, parallel=False):
    """Hand-made gRPC calls on one HTTP/2 connection (tests/interop/grpc_raw.js)."""
    spec = {"calls": calls, "parallel": parallel}
    if sock:
        spec["socket"] = sock
    else:
        spec["url"] = url
    r = subprocess.run(["node", os.path.join(INTEROP, "grpc_raw.js")],
                       input=json.dumps(spec).encode(), env=node_env(ctx),
                       capture_output=True, timeout=120, cwd=ctx.tmp)
    assert r.returncode == 0, "grpc_raw.js: %s %s" % (r.stdout, r.stderr)
    return json.loads(r.stdout)


def frame(msg, compressed=False):
    """A gRPC Length-Prefixed-Message."""
    return struct.pack(">BI", 1 if compressed else 0, len(msg)) + msg


def grpc_call(path, body, headers=None):
    return {"path": path, "body_hex": body.hex(), "headers": headers or {}}


def grpc_status(res):
    """(grpc-status, grpc-message) of a call: from its trailers, or its headers when the
    answer was Trailers-Only."""
    h = res["trailers"] if "grpc-status" in res["trailers"] else res["headers"]
    return int(h.get("grpc-status", -1)), h.get("grpc-message", "")


# ---- spanshimd ----

def collector(ctx, args=(), grpc_socket=None):
    """spanshimd with OTLP/HTTP and OTLP/gRPC on loopback TCP (and gRPC on a Unix socket
    when grpc_socket is given); returns (collector, HTTP port, gRPC port)."""
    extra = ["--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    if grpc_socket:
        extra += ["--grpc-socket", grpc_socket]
    col = ctx.collector(extra + list(args))
    deadline = time.monotonic() + 10
    while "gRPC on" not in col.stderr() and time.monotonic() < deadline:
        time.sleep(0.01)
    err = col.stderr()
    http_port = int(err.split("http://127.0.0.1:")[1].split(",")[0])
    grpc_port = int(err.split("gRPC on 127.0.0.1:")[1].split(",")[0])
    return col, http_port, grpc_port


def records(col):
    """Every span and log record spanshimd wrote, from every JSON lines file in its
    directory (traces and logs may go to files of their own): (spans, logs) with logs as
    (record, resource attributes, scope) tuples, and the spans' scopes."""
    spans, logs, scopes = [], [], []
    d = os.path.dirname(col.out)
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".jsonl"):
            continue
        spans += harness.read_jsonl(os.path.join(d, fn))[0]
        with open(os.path.join(d, fn)) as f:
            for line in f:
                if not line.strip():
                    continue
                doc = json.loads(line)
                for rs in doc.get("resourceSpans", []):
                    scopes += [ss.get("scope", {}) for ss in rs.get("scopeSpans", [])]
                for rl in doc.get("resourceLogs", []):
                    res = harness.attrs_dict(rl.get("resource", {}).get("attributes"))
                    for sl in rl.get("scopeLogs", []):
                        for lr in sl.get("logRecords", []):
                            logs.append((lr, res, sl.get("scope", {})))
    return spans, logs, scopes


def assert_traces_landed(col, report, tag):
    """What peer.js made is in spanshimd's output, field by field."""
    spans, _, scopes = records(col)
    by_id = {s.span_id: s for s in spans}
    made = {m["name"]: m for m in report["spans"]}
    assert set(made) == {"parent-%s" % tag, "child-%s-1" % tag, "child-%s-2" % tag}
    for name, m in made.items():
        s = by_id.get(m["span_id"])
        assert s is not None, "span %s (%s) not in the output" % (name, m["span_id"])
        assert s.name == name and s.trace_id == m["trace_id"]
        assert s.resource["service.name"] == "interop-" + tag
        assert s.resource["peer.tag"] == tag
        assert s.end >= s.start > 0
    parent = by_id[made["parent-%s" % tag]["span_id"]]
    assert parent.kind == 2 and parent.parent_id == ""  # SERVER, a root
    assert parent.attrs == {"http.request.method": "GET", "peer.count": 42, "peer.ratio": 0.5,
                            "peer.ok": True, "peer.list": ["a", "b"]}
    for i in (1, 2):
        c = by_id[made["child-%s-%d" % (tag, i)]["span_id"]]
        assert c.kind == 3 and c.parent_id == parent.span_id  # CLIENT, under the parent
        assert c.attrs == {"peer.index": i}
        assert [e["name"] for e in c.events] == ["peer.event"]
        assert harness.attrs_dict(c.events[0].get("attributes")) == {"peer.event.n": i}
        assert c.status_code == (2 if i == 2 else 0)
        assert c.status_message == ("boom" if i == 2 else "")
    assert {"name": "spanshim-interop", "version": "1.2.3"} in scopes


def assert_logs_landed(col, report, tag):
    _, logs, _ = records(col)
    got = {lr.get("body", {}).get("stringValue"): (lr, res, scope) for lr, res, scope in logs}
    for i, m in enumerate(report["logs"], 1):
        assert m["body"] in got, "log %s not in the output: %s" % (m["body"], list(got))
        lr, res, scope = got[m["body"]]
        assert res["service.name"] == "interop-" + tag
        assert scope.get("name") == "spanshim-interop" and scope.get("version") == "1.2.3"
        assert lr.get("severityNumber") == (17 if i == 3 else 9)
        assert lr.get("severityText") == ("ERROR" if i == 3 else "INFO")
        assert harness.attrs_dict(lr.get("attributes")) == {"peer.index": i, "peer.tag": tag}
        assert lr.get("traceId", "") == m["trace_id"]
        assert lr.get("spanId", "") == m["span_id"]


def stats(col, port):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/stats" % port, timeout=10) as r:
        return json.loads(r.read())


# ---- the SDK over each transport ----

def export_with_each_compression(ctx, kind, traces_url, logs_url, tag):
    """peer.js traces and logs through one exporter kind, uncompressed then gzip; returns
    {tag: (traces report, logs report)}, every export having succeeded."""
    reports = {}
    for gz in (False, True):
        t_ = tag + ("-gzip" if gz else "")
        reports[t_] = (sdk(ctx, "traces", kind, traces_url, gz, t_)[1],
                       sdk(ctx, "logs", kind, logs_url, gz, t_ + "-logs")[1])
    return reports


def assert_all_landed(col, reports):
    col.stop()
    for tag, (tr, lg) in reports.items():
        assert_traces_landed(col, tr, tag)
        assert_logs_landed(col, lg, tag + "-logs")


def test_js_sdk_grpc_traces_and_logs_land(ctx):
    col, hp, gp = collector(ctx)
    url = "http://127.0.0.1:%d" % gp
    reports = export_with_each_compression(ctx, "grpc", url, url, "grpc")
    st = stats(col, hp)
    assert st["grpc_requests"] == 12  # one export per span / record (simple processors)
    assert st["spans_received"] == 6 and st["logs_received"] == 6
    assert_all_landed(col, reports)


def test_js_sdk_http_protobuf_traces_and_logs_land(ctx):
    col, hp, _ = collector(ctx)
    base = "http://127.0.0.1:%d" % hp
    assert_all_landed(col, export_with_each_compression(
        ctx, "proto", base + "/v1/traces", base + "/v1/logs", "proto"))


def test_js_sdk_http_json_traces_and_logs_land(ctx):
    col, hp, _ = collector(ctx)
    base = "http://127.0.0.1:%d" % hp
    assert_all_landed(col, export_with_each_compression(
        ctx, "json", base + "/v1/traces", base + "/v1/logs", "json"))


def test_js_sdk_grpc_over_unix_socket(ctx):
    sock = os.path.join(ctx.tmp, "g", "grpc.sock")
    col, _, _ = collector(ctx, grpc_socket=sock)
    assert oct(os.stat(sock).st_mode & 0o777) == "0o666"  # every peer is checked
    _, rep, _ = sdk(ctx, "traces", "grpc", "unix://" + sock, True, "unix",
                    env={"OTEL_EXPORTER_OTLP_INSECURE": "true"})
    col.stop()
    assert_traces_landed(col, rep, "unix")
    assert not os.path.exists(sock), "the gRPC socket is removed at exit"


def run_as_nobody(ctx, script, stdin):
    """Runs node (its script given inline: nobody may not read our tree) as uid/gid 65534;
    returns the CompletedProcess."""
    def drop():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return subprocess.run(["node", "-e", open(os.path.join(INTEROP, script)).read()],
                          input=stdin, env=node_env(ctx), capture_output=True, timeout=60,
                          preexec_fn=drop, cwd="/")


def test_grpc_unix_socket_peer_credentials(ctx):
    if os.geteuid() != 0:
        harness.skip("needs root to become another user")
    os.chmod(ctx.tmp, 0o711)
    good = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "from-nobody", 1, 1, 2, {})])
    spec = json.dumps({"socket": "", "calls": [grpc_call(TRACE_SVC, frame(good))]})
    # Another uid is allowed on the socket (so it is 0666 in a 0711 directory), not
    # nobody: SO_PEERCRED refuses nobody's connection.
    sock = os.path.join(ctx.tmp, "g1", "grpc.sock")
    col, hp, _ = collector(ctx, ["--allow-uid", "1"], grpc_socket=sock)
    assert oct(os.stat(sock).st_mode & 0o777) == "0o666"
    r = run_as_nobody(ctx, "grpc_raw.js", spec.replace('"socket": ""', '"socket": "%s"' % sock).encode())
    # Refused with a status it sees (PERMISSION_DENIED), not a connection closed unread.
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert grpc_status(json.loads(r.stdout)[0])[0] == 7, r.stdout
    st = stats(col, hp)
    assert st["peers_refused"] == 1 and st["connections_open"] == 1, st  # ours, /stats
    col.stop()
    assert records(col)[0] == []
    # nobody allowed: served.
    sock2 = os.path.join(ctx.tmp, "g2", "grpc.sock")
    col2, _, _ = collector(ctx, ["--allow-uid", "65534"], grpc_socket=sock2)
    r = run_as_nobody(ctx, "grpc_raw.js", spec.replace('"socket": ""', '"socket": "%s"' % sock2).encode())
    assert r.returncode == 0, r.stderr
    assert grpc_status(json.loads(r.stdout)[0]) == (0, "")
    col2.stop()
    assert [s.name for s in records(col2)[0]] == ["from-nobody"]


def test_grpc_connection_over_its_peers_share_is_answered_unavailable(ctx):
    """--max-conns-per-peer 1, the one TCP connection held by a client (a preface and
    SETTINGS): node's connection is over the peer's share. spanshimd does not close it
    unread: for a moment it answers every call on it UNAVAILABLE (which OTLP exporters
    retry), counted (peer_limited, rejected.unavailable), then GOAWAY. Nothing of the
    call is written; the held connection is still served."""
    col, hp, gp = collector(ctx, ["--max-conns-per-peer", "1"])
    held = socket.create_connection(("127.0.0.1", gp))
    ctx._cleanup.append(held.close)
    held.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\0\0\0\4\0\0\0\0\0")
    deadline = time.monotonic() + 30
    while stats(col, hp)["connections_open"] < 2:  # the held one and ours, /stats
        assert time.monotonic() < deadline
        time.sleep(0.05)
    body = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "over-share", 1, 1, 2, {})])
    spec = {"calls": [grpc_call(TRACE_SVC, frame(body))] * 2, "url": "http://127.0.0.1:%d" % gp}
    r = subprocess.run(["node", os.path.join(INTEROP, "grpc_raw.js")],
                       input=json.dumps(spec).encode(), env=node_env(ctx),
                       capture_output=True, timeout=120, cwd=ctx.tmp)
    assert r.returncode == 0, (r.stdout, r.stderr)  # before: a session error (closed unread)
    res = json.loads(r.stdout)
    assert [grpc_status(x)[0] for x in res] == [14, 14], res
    assert "retry" in grpc_status(res[0])[1], res
    st = stats(col, hp)
    assert st["peer_limited"] >= 1 and st["rejected"]["unavailable"] == 2, st
    assert st["spans_received"] == 0, st
    col.stop()
    assert records(col)[0] == []


# ---- hand-made calls: what an SDK does not send ----

def test_grpc_errors_are_grpc_statuses_and_the_connection_goes_on(ctx):
    col, hp, gp = collector(ctx, ["--max-body", "64k"])
    good = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "good", 1, 1, 2, {"k": "v"})])
    bomb = gzip.compress(b"\0" * (1 << 20))
    calls = [
        grpc_call("/nope.Service/Export", frame(good)),                          # 12
        grpc_call(METRICS_SVC, frame(b"")),                                      # 0
        grpc_call(TRACE_SVC, frame(b"\xff\xff\xff")),                            # 3
        grpc_call(TRACE_SVC, frame(good) + frame(good)),                         # 13
        grpc_call(TRACE_SVC, frame(good)[:-1]),                                  # 13
        grpc_call(TRACE_SVC, b""),                                               # 13
        grpc_call(TRACE_SVC, frame(gzip.compress(good), True)),                  # 13
        grpc_call(TRACE_SVC, frame(gzip.compress(good), True), {"grpc-encoding": "snappy"}),
        grpc_call(TRACE_SVC, frame(b"x" * (65 << 10))),                          # 8
        grpc_call(TRACE_SVC, frame(bomb, True), {"grpc-encoding": "gzip"}),      # 8
        grpc_call(TRACE_SVC, frame(b"junk" * 10, True), {"grpc-encoding": "gzip"}),  # 13
        grpc_call(TRACE_SVC, frame(good), {"content-type": "application/json"}),  # HTTP 415
        grpc_call(TRACE_SVC, frame(gzip.compress(good), True), {"grpc-encoding": "gzip"}),
    ]
    res = raw_calls(ctx, calls, url="http://127.0.0.1:%d" % gp)
    got = [grpc_status(r)[0] for r in res]
    assert got == [12, 0, 3, 13, 13, 13, 13, 12, 8, 8, 13, 13, 0], got
    assert [r["status"] for r in res] == [200] * 11 + [415, 200]
    assert "TraceService/Export" in grpc_status(res[0])[1]
    assert "more than one" in grpc_status(res[3])[1]
    assert "--max-body" in grpc_status(res[8])[1]
    assert "decompressed" in grpc_status(res[9])[1]
    assert "gzip" in res[7]["headers"].get("grpc-accept-encoding", "")
    # The one good call's answer: an empty ExportTraceServiceResponse, framed.
    assert res[-1]["data_hex"] == "0000000000" and res[-1]["error"] is None
    st = stats(col, hp)
    assert st["grpc_requests"] == len(calls)
    assert st["rejected"]["not_found"] == 2 and st["rejected"]["bad_protobuf"] == 1
    assert st["rejected"]["too_large"] == 2 and st["rejected"]["content_type"] == 1
    assert st["rejected"]["bad_http"] == 5  # INTERNAL: the framing errors
    col.stop()
    assert [s.name for s in records(col)[0]] == ["good"]


def test_grpc_many_calls_at_once_on_one_connection(ctx):
    col, hp, gp = collector(ctx)
    calls = [grpc_call(TRACE_SVC, frame(t.traces_request(
        [t.span(t.TRACE_ID, bytes([0, 0, 0, 0, 0, 0, i >> 8 & 255, i & 255 or 1]), "c%d" % i,
                1, 1, 2, {"i": i})])), {"grpc-encoding": "identity"})
             for i in range(1, 101)]
    res = raw_calls(ctx, calls, url="http://127.0.0.1:%d" % gp, parallel=True)
    assert [grpc_status(r)[0] for r in res] == [0] * 100, [(grpc_status(r), r["error"]) for r in res if grpc_status(r)[0]][:5]
    col.stop()
    assert sorted(s.name for s in records(col)[0]) == sorted("c%d" % i for i in range(1, 101))


def test_grpc_big_gzip_message_and_sigterm_with_a_connection_open(ctx):
    col, hp, gp = collector(ctx)
    spans = [t.span(t.TRACE_ID, bytes([1, 2, 3, 4, 5, 6, i >> 8 & 255, i & 255]), "big%d" % i,
                    1, 1, 2, {"blob": "x%d" % i * 500}) for i in range(1, 2001)]
    body = t.traces_request(spans)
    assert len(body) > 4 << 20
    res = raw_calls(ctx, [grpc_call(TRACE_SVC, frame(gzip.compress(body), True),
                                    {"grpc-encoding": "gzip"})],
                    url="http://127.0.0.1:%d" % gp)
    assert grpc_status(res[0]) == (0, "")
    # A connection left open (an SDK's channel) does not hold up SIGTERM.
    import socket
    s = socket.create_connection(("127.0.0.1", gp))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    col.proc.send_signal(signal.SIGTERM)
    assert col.proc.wait(20) == 0
    s.close()
    assert len(records(col)[0]) == 2000
    assert "grpc_requests=1" in col.stderr()


def h2_frame(kind, flags, stream, payload):
    """An HTTP/2 frame (RFC 9113 4.1)."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def h2_frame_types(data):
    """The types of the whole frames in data, in order."""
    kinds, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        kinds.append(data[i + 3])
        i += 9 + n
    return kinds


def h2_export_call(body):
    """A client's whole first flight for one unary Export call on stream 1: preface,
    SETTINGS, HEADERS (HPACK literals without indexing, RFC 7541 6.2.2) and the message."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", TRACE_SVC.encode()),
              (b":authority", b"spanshimd"), (b"content-type", b"application/grpc"),
              (b"te", b"trailers")]
    block = b"".join(b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v for k, v in fields)
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") +
            h2_frame(1, 4, 1, block) + h2_frame(0, 1, 1, frame(body)))


def test_grpc_connections_still_in_the_listen_queue_at_sigterm_are_served(ctx):
    """100 clients connect and send one span each while spanshimd is stopped, then it gets
    SIGTERM: one pass of accept takes 64, and the 36 still queued when the loop ends are
    taken and served too, not reset unread by the listener's close."""
    col, hp, gp = collector(ctx)
    n, socks = 100, []
    col.proc.send_signal(signal.SIGSTOP)
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", gp))
            socks.append(s)
            s.sendall(h2_export_call(t.traces_request([t.span(
                t.TRACE_ID, bytes([9, 9, 9, 9, 9, 9, i >> 8, i & 255]), "queued%d" % i,
                1, 1, 2, {})])))
        col.proc.send_signal(signal.SIGTERM)  # pending: seen with the connections
    finally:
        col.proc.send_signal(signal.SIGCONT)
    assert col.proc.wait(20) == 0
    answered = 0
    for s in socks:
        s.settimeout(10)
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except OSError:
            pass
        s.close()
        kinds = h2_frame_types(data)
        answered += 1 in kinds and 3 not in kinds  # HEADERS, no RST_STREAM
    assert sorted(sp.name for sp in records(col)[0]) == sorted("queued%d" % i for i in range(n))
    assert answered == n
    assert "grpc_requests=%d" % n in col.stderr(), col.stderr()[-2000:]


def parse_partial_success(data):
    """(rejected, error_message) from a framed Export*ServiceResponse; (0, "") if empty."""
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == len(data) - 5
    msg = data[5:]
    if not msg:
        return 0, ""
    assert msg[0] == 0x0A  # partial_success = 1, length-delimited
    inner, rejected, text, i = msg[2:2 + msg[1]], 0, "", 0
    while i < len(inner):
        k = inner[i]
        i += 1
        if k == 0x08:
            shift = 0
            while True:
                b = inner[i]
                i += 1
                rejected |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
        elif k == 0x12:
            n = inner[i]
            text = inner[i + 1:i + 1 + n].decode()
            i += 1 + n
    return rejected, text


def test_grpc_bad_ids_get_partial_success_and_the_rest_lands(ctx):
    col, hp, gp = collector(ctx)
    req = t.traces_request([
        t.span(t.TRACE_ID, t.SPAN_ID, "kept", 1, 1, 2, {}),
        t.span(t.TRACE_ID[:15], t.PARENT_ID, "short-trace-id", 1, 1, 2, {}),
        t.span(t.TRACE_ID, bytes(8), "zero-span-id", 1, 1, 2, {}),
    ])
    res = raw_calls(ctx, [grpc_call(TRACE_SVC, frame(gzip.compress(req), True),
                                    {"grpc-encoding": "gzip"})],
                    url="http://127.0.0.1:%d" % gp)
    assert grpc_status(res[0]) == (0, "")
    rejected, text = parse_partial_success(bytes.fromhex(res[0]["data_hex"]))
    assert rejected == 2 and text, (rejected, text)
    col.stop()
    assert [s.name for s in records(col)[0]] == ["kept"]


def test_grpc_port_closes_on_http1_and_garbage_and_keeps_serving(ctx):
    import socket
    col, hp, gp = collector(ctx)
    for junk in (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                 b"\x00" * 100, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64):
        with socket.create_connection(("127.0.0.1", gp), timeout=20) as s:
            s.sendall(junk)
            got = b""
            while True:  # the server ends the connection (a GOAWAY first, for HTTP/2)
                d = s.recv(65536)
                if not d:
                    break
                got += d
            assert b"HTTP/1.1 200" not in got
    good = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "after-junk", 1, 1, 2, {})])
    res = raw_calls(ctx, [grpc_call(TRACE_SVC, frame(good))], url="http://127.0.0.1:%d" % gp)
    assert grpc_status(res[0]) == (0, "")
    deadline = time.monotonic() + 30  # the others closed: only the /stats one is open
    while stats(col, hp)["connections_open"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stats(col, hp)["connections_open"] == 1
    col.stop()
    assert [s.name for s in records(col)[0]] == ["after-junk"]


# ---- raw HTTP/2: connections that say nothing, or nothing after the preface ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def read_until_closed(s, limit_s=60):
    s.settimeout(limit_s)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            return got
        got += d


def h2_frames(data):
    """[(type, flags, stream id, payload)] of a server's byte stream."""
    out, i = [], 0
    while i + 9 <= len(data):
        n = int.from_bytes(data[i:i + 3], "big")
        out.append((data[i + 3], data[i + 4], int.from_bytes(data[i + 5:i + 9], "big") & 0x7FFFFFFF,
                    data[i + 9:i + 9 + n]))
        i += 9 + n
    return out


def test_grpc_stalled_call_idle_connection_and_silent_connection_time_out(ctx):
    import socket
    col, hp, gp = collector(ctx, ["--header-timeout", "1s", "--body-timeout", "1s",
                                  "--idle-timeout", "1s"])
    # A call whose body never ends: DEADLINE_EXCEEDED, and the call after it on the same
    # connection is served.
    good = t.traces_request([t.span(t.TRACE_ID, t.SPAN_ID, "after-stall", 1, 1, 2, {})])
    stalled = dict(grpc_call(TRACE_SVC, frame(good)[:-3]), end=False)
    res = raw_calls(ctx, [stalled, grpc_call(TRACE_SVC, frame(good))],
                    url="http://127.0.0.1:%d" % gp)
    assert grpc_status(res[0])[0] == 4, res[0]  # DEADLINE_EXCEEDED
    assert grpc_status(res[1]) == (0, "")
    # A connection that has sent its preface and no call: GOAWAY (type 7), then closed.
    with socket.create_connection(("127.0.0.1", gp)) as s:
        s.sendall(PREFACE + h2_frame(4, 0, 0, b""))
        assert 7 in [f[0] for f in h2_frames(read_until_closed(s))]
    # A connection that never says anything: closed (after our SETTINGS and
    # WINDOW_UPDATE, types 4 and 8, and nothing else).
    with socket.create_connection(("127.0.0.1", gp)) as s:
        assert {f[0] for f in h2_frames(read_until_closed(s))} <= {4, 8}
    st = stats(col, hp)
    assert st["timeouts"] >= 3 and st["grpc_requests"] == 2
    col.stop()
    assert [s.name for s in records(col)[0]] == ["after-stall"]


def metrics_request(name, value):
    """ExportMetricsServiceRequest with one monotonic cumulative int sum of one point."""
    point = t.f_fixed64(3, 2_000_000_000) + t.key(6, 1) + struct.pack("<q", value)
    metric = t.f_str(1, name) + t.f_bytes(7, t.f_bytes(1, point) + t.f_varint(2, 2) +
                                           t.f_varint(3, 1))
    scope = t.f_bytes(1, t.f_str(1, "interop")) + t.f_bytes(2, metric)
    resource = t.f_bytes(1, t.attrs(1, {"service.name": "interop-metrics"}))
    return t.f_bytes(1, resource + t.f_bytes(2, scope))


def test_grpc_metrics_export_is_taken_like_v1_metrics(ctx):
    col, hp, gp = collector(ctx)
    req = metrics_request("interop.requests", 7)
    res = raw_calls(ctx, [grpc_call(METRICS_SVC, frame(gzip.compress(req), True),
                                    {"grpc-encoding": "gzip"}),
                          grpc_call(METRICS_SVC, frame(b"\xff\xff"))],
                    url="http://127.0.0.1:%d" % gp)
    assert grpc_status(res[0]) == (0, "") and res[0]["data_hex"] == "0000000000"
    assert grpc_status(res[1])[0] == 3  # not an ExportMetricsServiceRequest
    st = stats(col, hp)
    assert st["metrics_requests"] == 2 and st["data_points_received"] == 1
    col.stop()
    d = os.path.dirname(col.out)
    text = "".join(open(os.path.join(d, f)).read() for f in os.listdir(d)
                   if f.endswith(".jsonl"))
    assert '"interop.requests"' in text and "resourceMetrics" in text
