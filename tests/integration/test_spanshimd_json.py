"""spanshimd takes OTLP/JSON (application/json) on /v1/traces and /v1/logs as the OTLP
spec encodes it, answers in the request's encoding, refuses spans and log records with
malformed ids one by one (partial_success), and opens its output files safely (no
symlinks, nothing planted by another user in a shared directory)."""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import harness
import test_spanshimd as t

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
PID = "b7ad6b7169203331"


def tcp_collector(ctx, args=()):
    col = ctx.collector(["--listen", "127.0.0.1:0"] + list(args))
    deadline = time.monotonic() + 10
    while "http://" not in col.stderr() and time.monotonic() < deadline:
        time.sleep(0.01)
    col.port = int(col.stderr().split("http://127.0.0.1:")[1].split(",")[0])
    col.url = "http://127.0.0.1:%d" % col.port
    return col


def post_json(col, path, doc, raw=None):
    """POSTs doc as application/json with urllib; returns (status, content-type, body)."""
    data = raw if raw is not None else json.dumps(doc).encode()
    req = urllib.request.Request(col.url + path, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


def proto_fields(b):
    """{field number: value} of a protobuf message (test_spanshimd_upstream's decoder)."""
    import test_spanshimd_upstream as u
    return {fn: v for fn, _, v in u.fields(b)}


def json_span(name, tid=TID, sid=SID, **extra):
    s = {"traceId": tid, "spanId": sid, "name": name, "kind": 3,
         "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000001000000"}
    s.update(extra)
    return s


def json_traces(spans, service="json-svc"):
    return {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "spanshim", "version": "0.1.0"}, "spans": spans}]}]}


def file_spans(path):
    spans, _ = harness.read_jsonl(path)
    return spans


def test_json_traces_are_written_exactly_as_the_same_spans_sent_as_protobuf(ctx):
    """The JSON form (camelCase, snake_case, ints as strings and as numbers, enum by name,
    unknown fields) and the protobuf form of the same spans give the same file line."""
    attrs_json = [
        {"key": "http.request.method", "value": {"stringValue": "GET"}},
        {"key": "http.response.status_code", "value": {"intValue": "200"}},
        {"key": "n", "value": {"intValue": 7}},
        {"key": "ratio", "value": {"doubleValue": 0.5}},
        {"key": "ok", "value": {"boolValue": True}},
        {"key": "raw", "value": {"bytesValue": "aGVsbG8="}},
        {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"},
                                                            {"intValue": "-3"}]}}},
    ]
    doc = {"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "shop"}}]},
        "scope_spans": [{"scope": {"name": "spanshim", "version": "0.1.0"}, "spans": [
            {"trace_id": TID, "span_id": SID, "parent_span_id": PID, "name": "GET /x",
             "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": 1700000000000000000,
             "endTimeUnixNano": "1700000000002500000", "attributes": attrs_json,
             "flags": 257, "status": {"code": 2, "message": "boom"},
             "someFutureField": {"nested": [1, {"x": None}]}}]}],
        "schemaUrl": "https://opentelemetry.io/schemas/1.27.0"}]}
    col = tcp_collector(ctx)
    st, ctype, body = post_json(col, "/v1/traces", doc)
    assert st == 200, body
    assert ctype == "application/json" and json.loads(body) == {}
    got = t.lines(col)
    assert len(got) == 1
    sp = got[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert sp["traceId"] == TID and sp["spanId"] == SID and sp["parentSpanId"] == PID
    assert sp["kind"] == 3 and sp["startTimeUnixNano"] == "1700000000000000000"
    assert sp["status"] == {"message": "boom", "code": 2}
    assert got[0]["resourceSpans"][0]["schemaUrl"] == "https://opentelemetry.io/schemas/1.27.0"

    # The same through protobuf, into another collector: the same line.
    pb_span = t.span(bytes.fromhex(TID), bytes.fromhex(SID), "GET /x", 3,
                     1700000000000000000, 1700000000002500000, {}, parent=bytes.fromhex(PID),
                     status=(2, "boom"))
    col2 = ctx.collector()
    st, _, _ = t.exchange(col2, t.post("/v1/traces", t.traces_request([pb_span])))
    assert st == 200
    pb_line = t.lines(col2)[0]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    for k in ("traceId", "spanId", "parentSpanId", "name", "kind", "startTimeUnixNano",
              "endTimeUnixNano", "status", "flags"):
        assert sp[k] == pb_line[k], k
    a = {kv["key"]: kv["value"] for kv in sp["attributes"]}
    assert a["http.response.status_code"] == {"intValue": "200"}
    assert a["n"] == {"intValue": "7"}
    assert a["ratio"] == {"doubleValue": 0.5}
    assert a["ok"] == {"boolValue": True}
    assert a["raw"] == {"bytesValue": "aGVsbG8="}
    assert a["list"] == {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "-3"}]}}


def test_json_logs_are_written_and_answered_in_json(ctx):
    col = tcp_collector(ctx)
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1700000000000000000", "severityNumber": 17, "severityText": "ERROR",
         "eventName": "exception", "body": {"stringValue": "zipped-json"},
         "traceId": TID, "spanId": SID,
         "attributes": [{"key": "exception.type", "value": {"stringValue": "E"}}]}]}]}]}
    st, ctype, body = post_json(col, "/v1/logs", doc)
    assert st == 200 and ctype == "application/json" and json.loads(body) == {}
    col.stop()
    with open(col.logs_out) as f:
        text = f.read()
    assert "zipped-json" in text and TID in text


def test_curl_posts_json_with_gzip(ctx):
    col = tcp_collector(ctx)
    path = os.path.join(ctx.tmp, "t.json")
    with open(path, "w") as f:
        json.dump(json_traces([json_span("from-curl")]), f)
    subprocess.run(["gzip", "-k", path], check=True)
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}",
                        "-H", "Content-Type: application/json", "-H", "Content-Encoding: gzip",
                        "--data-binary", "@" + path + ".gz", col.url + "/v1/traces"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode().split("\n")
    assert out[-1] == "200 application/json", r
    assert [s.name for s in col.spans()] == ["from-curl"]


def test_malformed_json_gets_400_with_a_json_status_saying_where(ctx):
    col = tcp_collector(ctx)
    cases = [b'{"resourceSpans":[{"x":1,}]}', b'{"resourceSpans":"no"}',
             b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":5}]}]}]}',
             b'{"resourceSpans":[]} trailing', b"[" * 100000, b'{"a":"\xff"}',
             b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"1e-3"}]}]}]}',
             b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":2.5}]}]}]}']
    for raw in cases:
        st, ctype, body = post_json(col, "/v1/traces", None, raw=raw)
        assert st == 400, raw[:40]
        assert ctype == "application/json"
        status = json.loads(body)
        assert status["code"] == 3 and "at byte" in status["message"], status
    st, _, body = post_json(col, "/v1/traces", json_traces([json_span("after")]))
    assert st == 200
    assert t.stats(col)["rejected"]["bad_protobuf"] == len(cases)
    assert [s.name for s in col.spans()] == ["after"]


def test_spans_with_bad_ids_are_rejected_one_by_one_in_json(ctx):
    col = tcp_collector(ctx)
    spans = [json_span("good1"),
             json_span("zero-trace", tid="0" * 32),
             json_span("short-trace", tid=TID[:30]),
             json_span("not-hex", tid="z" * 32),
             json_span("zero-span", sid="0" * 16),
             json_span("long-span", sid=SID + "00"),
             json_span("bad-parent", parentSpanId="abcd"),
             json_span("no-ids", tid="", sid=""),
             json_span("good2", sid="1122334455667788", parentSpanId=SID)]
    st, ctype, body = post_json(col, "/v1/traces", json_traces(spans))
    assert st == 200 and ctype == "application/json"
    ps = json.loads(body)["partialSuccess"]
    assert ps["rejectedSpans"] == "7"
    assert ps["errorMessage"].startswith("7 spans rejected: trace_id")
    s = t.stats(col)
    assert s["spans_received"] == 9 and s["spans_rejected"] == 7
    assert sorted(sp.name for sp in col.spans()) == ["good1", "good2"]


def test_integers_in_exponent_or_fraction_form_are_taken_as_proto3_json_says(ctx):
    """proto3's JSON mapping accepts integer fields written 1e3 or 5.0 (quoted or not)
    when the value is integral; spanshimd writes them back as the integers they are."""
    col = tcp_collector(ctx)
    sp = json_span("exp", startTimeUnixNano="1.7e18", endTimeUnixNano=1.700000000001e18,
                   kind=3.0, droppedAttributesCount="2E1", flags=256e-2 * 100,
                   attributes=[{"key": "n", "value": {"intValue": "-12.5e1"}},
                               {"key": "z", "value": {"intValue": -0.0}}])
    st, _, body = post_json(col, "/v1/traces", json_traces([sp]))
    assert st == 200, body
    col.stop()
    with open(col.out) as f:
        s = json.loads(f.readline())["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert s["startTimeUnixNano"] == "1700000000000000000"
    assert s["endTimeUnixNano"] == "1700000000001000000"
    assert s["kind"] == 3 and s["droppedAttributesCount"] == 20 and s["flags"] == 256
    assert {a["key"]: a["value"]["intValue"] for a in s["attributes"]} == {"n": "-125", "z": "0"}


def test_a_non_hex_id_is_refused_saying_it_is_not_hex(ctx):
    col = tcp_collector(ctx)
    cases = [(json_span("t", tid="z" * 32), "trace_id is not a hex string"),
             (json_span("s", sid="0102030405060g08"), "span_id is not a hex string"),
             (json_span("p", parentSpanId="xyz"), "parent_span_id is not a hex string"),
             (json_span("short", tid=TID[:30]), "trace_id is not 16 bytes or is all zero")]
    for sp, why in cases:
        st, _, body = post_json(col, "/v1/traces", json_traces([sp, json_span("ok")]))
        assert st == 200
        ps = json.loads(body)["partialSuccess"]
        assert ps["rejectedSpans"] == "1" and ps["errorMessage"] == "1 span rejected: " + why, ps
    rec = {"timeUnixNano": "1", "body": {"stringValue": "x"}, "traceId": "q" * 32}
    st, _, body = post_json(col, "/v1/logs", {"resourceLogs": [{"scopeLogs": [
        {"logRecords": [rec]}]}]})
    ps = json.loads(body)["partialSuccess"]
    assert ps["errorMessage"] == "1 log record rejected: trace_id is not a hex string", ps


def test_spans_with_bad_ids_are_rejected_in_protobuf_and_never_forwarded(ctx):
    import test_spanshimd_upstream as u
    up = u.otlp_server(ctx)
    good = t.span(bytes.fromhex(TID), bytes.fromhex(SID), "good", 3, 1, 2, {})
    bad = [t.span(b"\0" * 16, bytes.fromhex(SID), "zero", 3, 1, 2, {}),
           t.span(bytes.fromhex(TID)[:8], bytes.fromhex(SID), "short", 3, 1, 2, {}),
           t.span(bytes.fromhex(TID), b"\0" * 8, "zero-span", 3, 1, 2, {})]
    col = ctx.collector(["--otlp-endpoint", up.url])
    st, h, body = t.exchange(col, t.post("/v1/traces", t.traces_request([bad[0], good] + bad[1:])))
    assert st == 200 and h["content-type"] == "application/x-protobuf"
    ps = proto_fields(proto_fields(body)[1])
    assert ps[1] == 3 and ps[2].startswith(b"3 spans rejected: ")
    assert [s["name"] for s in up.wait_spans(1)] == ["good"]
    assert [s.name for s in col.spans()] == ["good"]
    assert [s["name"] for s in up.spans()] == ["good"]
    # All bad: nothing written, still 200 with the count.
    col2 = ctx.collector()
    st, _, body = t.exchange(col2, t.post("/v1/traces", t.traces_request(bad[:1])))
    assert st == 200 and proto_fields(proto_fields(body)[1])[1] == 1
    col2.stop()
    assert t.lines(col2) == []


def test_log_records_with_bad_ids_are_rejected_and_empty_ids_kept(ctx):
    col = ctx.collector()
    req = (t.logs_request("exception", "keep-no-ids", b"", b"") +
           t.logs_request("exception", "keep-ids", bytes.fromhex(TID), bytes.fromhex(SID)) +
           t.logs_request("exception", "drop-short", bytes.fromhex(TID)[:4], b"") +
           t.logs_request("exception", "drop-span", b"", b"\1\2\3"))
    st, _, body = t.exchange(col, t.post("/v1/logs", req))
    assert st == 200
    ps = proto_fields(proto_fields(body)[1])
    assert ps[1] == 2 and b"log records rejected" in ps[2]
    col.stop()
    with open(col.logs_out) as f:
        text = f.read()
    assert "keep-no-ids" in text and "keep-ids" in text
    assert "drop-short" not in text and "drop-span" not in text


def start_refused(ctx, out, extra=()):
    r = subprocess.run([ctx.spanshimd, "--socket", os.path.join(ctx.tmp, "r.sock"),
                        "--out", out] + list(extra), capture_output=True, timeout=10)
    return r


def test_a_symlink_at_out_is_refused_and_its_target_untouched(ctx):
    victim = os.path.join(ctx.tmp, "victim.txt")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(ctx.tmp, "out.jsonl")
    os.symlink(victim, link)
    r = start_refused(ctx, link, ["--truncate"])
    assert r.returncode == 1
    assert b"symbolic link" in r.stderr, r.stderr
    with open(victim) as f:
        assert f.read() == "precious\n"


def test_a_file_planted_in_a_shared_directory_is_refused(ctx):
    if os.geteuid() != 0:
        harness.skip("needs root to plant a file owned by another user")
    shared = os.path.join(ctx.tmp, "sticky")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    planted = os.path.join(shared, "traces.jsonl")
    with open(planted, "w") as f:
        f.write("theirs\n")
    os.chmod(planted, 0o666)
    os.chown(planted, 65534, 65534)  # nobody
    r = start_refused(ctx, planted, ["--truncate"])
    assert r.returncode == 1 and b"other users can write to" in r.stderr, r.stderr
    with open(planted) as f:
        assert f.read() == "theirs\n"
    # A new file there is ours (created exclusively), and an existing one of ours is fine.
    fresh = os.path.join(shared, "mine.jsonl")
    col = ctx.collector(["--out", fresh])
    st, _, _ = t.exchange(col, t.post("/v1/traces", t.traces_request([])))
    assert st == 200
    col.stop()
    assert os.stat(fresh).st_uid == os.geteuid() and os.stat(fresh).st_mode & 0o777 == 0o600
    col = ctx.collector(["--out", fresh])
    st, _, _ = t.exchange(col, t.post("/v1/traces", t.traces_request([])))
    assert st == 200
    col.stop()
    with open(fresh) as f:
        assert len(f.readlines()) == 2


def big_request(n, attr_bytes, service="big"):
    """n spans of one trace, each with an attribute of attr_bytes, as protobuf."""
    import struct
    sps = [t.span(bytes.fromhex(TID), struct.pack(">Q", i + 1), "s%d" % i, 1, 10, 20,
                  {"blob": "x" * attr_bytes}) for i in range(n)]
    return t.traces_request(sps, resource={"service.name": service})


def test_big_batches_are_split_into_lines_under_the_bound_and_all_read_back(ctx):
    bound = 64 << 10
    col = ctx.collector(["--max-line", "64K", "--max-body", "32M"])
    body = big_request(3000, 500)  # ~1.7 MB of JSON
    st, _, _ = t.exchange(col, t.post("/v1/traces", body))
    assert st == 200
    col.stop()
    with open(col.out, "rb") as f:
        raw = f.read().split(b"\n")
    assert raw[-1] == b""
    docs = [json.loads(ln) for ln in raw[:-1]]
    assert len(docs) > 20 and all(len(ln) + 1 <= bound for ln in raw[:-1])
    names = [sp["name"] for d in docs for rs in d["resourceSpans"] for ss in rs["scopeSpans"]
             for sp in ss["spans"]]
    assert names == ["s%d" % i for i in range(3000)], "every span once, in order"
    for d in docs:  # every line a complete TracesData with its resource and scope
        rs = d["resourceSpans"][0]
        assert rs["resource"]["attributes"][0]["value"]["stringValue"] == "big"
        assert rs["scopeSpans"][0]["scope"]["name"] == "spanshim"
    # spanshim view reads every line of it.
    p = subprocess.run([ctx.spanshim, "view", "--no-color", col.out], capture_output=True,
                       timeout=60)
    assert p.returncode == 0 and b"3000 spans" in p.stdout, p.stdout[-400:]


def test_default_bound_is_one_mib_and_a_lone_huge_span_is_kept_and_counted(ctx):
    col = ctx.collector(["--max-body", "32M"])
    st, _, _ = t.exchange(col, t.post("/v1/traces", big_request(6000, 500)))  # ~3.4 MB
    assert st == 200
    st, _, _ = t.exchange(col, t.post("/v1/traces", big_request(1, 1200000, "huge")))
    assert st == 200
    s = t.stats(col)
    assert s["lines_oversize"] == 1
    col.stop()
    with open(col.out, "rb") as f:
        raw = [ln for ln in f.read().split(b"\n") if ln]
    assert sum(1 for ln in raw if len(ln) + 1 > (1 << 20)) == 1
    assert len(raw) >= 5
    assert sum(len(rs["scopeSpans"][0]["spans"]) for ln in raw
               for rs in json.loads(ln)["resourceSpans"]) == 6001


def test_each_signal_has_its_own_file_named_beside_out(ctx):
    d = os.path.join(ctx.tmp, "files")
    os.mkdir(d, 0o700)
    out = os.path.join(d, "job.traces.jsonl")
    col = ctx.collector(["--out", out])
    assert not os.path.exists(os.path.join(d, "job.logs.jsonl")), "created with its first line"
    t.exchange(col, t.post("/v1/traces", t.traces_request([t.span(
        bytes.fromhex(TID), bytes.fromhex(SID), "only-span", 1, 1, 2, {})])))
    t.exchange(col, t.post("/v1/logs", t.logs_request("exception", "only-log",
                                                      bytes.fromhex(TID), bytes.fromhex(SID))))
    col.stop()
    with open(out) as f:
        text = f.read()
    assert "only-span" in text and "only-log" not in text
    with open(os.path.join(d, "job.logs.jsonl")) as f:
        text = f.read()
    assert "only-log" in text and "only-span" not in text
    assert os.stat(os.path.join(d, "job.logs.jsonl")).st_mode & 0o777 == 0o600
    # --logs-out names it; the same file as --out is allowed (one line per request each).
    col = ctx.collector(["--out", out, "--logs-out", out, "--truncate"])
    t.exchange(col, t.post("/v1/logs", t.logs_request("exception", "same-file",
                                                      bytes.fromhex(TID), bytes.fromhex(SID))))
    col.stop()
    with open(out) as f:
        assert [json.loads(ln).keys() for ln in f] == [{"resourceLogs": 0}.keys()]
    # A symlink at the logs path is refused at start.
    os.symlink("/etc/passwd", os.path.join(d, "other.logs.jsonl"))
    r = start_refused(ctx, os.path.join(d, "other.jsonl"))
    assert r.returncode == 1 and b"symbolic link" in r.stderr, r.stderr


# ---- /v1/metrics ----

METRICS_DOC = {"resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "metered"}}]},
    "scopeMetrics": [{"scope": {"name": "meter", "version": "1.0"}, "metrics": [
        {"name": "http.server.request.count", "unit": "{request}",
         "sum": {"dataPoints": [{"timeUnixNano": "1700000000000000000", "asInt": "5",
                                 "attributes": [{"key": "http.route",
                                                 "value": {"stringValue": "/x"}}]}],
                 "aggregationTemporality": 2, "isMonotonic": True}},
        {"name": "http.server.request.duration", "unit": "s", "description": "latency",
         "histogram": {"dataPoints": [{
             "startTimeUnixNano": "1", "timeUnixNano": "2", "count": "3", "sum": 1.5,
             "bucketCounts": ["1", "2"], "explicitBounds": [0.5], "min": 0, "max": 1.25,
             "exemplars": [{"timeUnixNano": "2", "asDouble": 0.25, "traceId": TID,
                            "spanId": SID}]}], "aggregationTemporality": 1}},
        {"name": "queue.depth", "gauge": {"dataPoints": [{"asDouble": -2.5}]}},
        {"name": "rpc.latency", "summary": {"dataPoints": [{
            "count": "4", "sum": 10.0, "quantileValues": [{"quantile": 0.5, "value": 2.0},
                                                          {"quantile": 1.0, "value": 4.0}]}]}},
        {"name": "exp", "exponentialHistogram": {"dataPoints": [{
            "count": "2", "scale": -1, "zeroCount": "1", "positive": {"offset": -2,
                                                                      "bucketCounts": ["1"]}}],
            "aggregationTemporality": 2}}]}]}]}


def metrics_points(doc):
    n = 0
    for rm in doc["resourceMetrics"]:
        for sm in rm["scopeMetrics"]:
            for m in sm["metrics"]:
                for kind in ("sum", "gauge", "histogram", "summary", "exponentialHistogram"):
                    n += len(m.get(kind, {}).get("dataPoints", []))
    return n


def test_metrics_in_json_are_written_to_their_own_file_exactly(ctx):
    col = tcp_collector(ctx)
    st, ctype, body = post_json(col, "/v1/metrics", METRICS_DOC)
    assert st == 200 and ctype == "application/json" and json.loads(body) == {}, body
    s = t.stats(col)
    assert s["metrics_requests"] == 1 and s["data_points_received"] == metrics_points(METRICS_DOC)
    col.stop()
    assert t.lines(col) == [], "no metrics in the traces file"
    got = t.lines(col, col.metrics_out)
    assert got == [METRICS_DOC], json.dumps(got)[:2000]


def test_metrics_in_protobuf_gzip_from_python_go_upstream_unchanged(ctx):
    import gzip
    import test_spanshimd_upstream as u
    up = u.otlp_server(ctx)
    # ExportMetricsServiceRequest{resource_metrics{scope_metrics{metrics{name, gauge{
    # data_points{as_double}}}}}} by hand: gauge (5) > NumberDataPoint (1) > as_double (4).
    import struct
    point = t.f_fixed64(3, 1700000000000000000) + t.key(4, 1) + struct.pack("<d", 42.0)
    metric = t.f_str(1, "temperature") + t.f_bytes(5, t.f_bytes(1, point))
    body = t.f_bytes(1, t.f_bytes(2, t.f_bytes(2, metric)))
    col = ctx.collector(["--otlp-endpoint", up.url])
    st, h, resp = t.exchange(col, t.post("/v1/metrics", gzip.compress(body),
                                         extra="Content-Encoding: gzip\r\n"))
    assert st == 200 and h["content-type"] == "application/x-protobuf" and resp == b""
    assert u.wait_for(lambda: [r for r in up.requests if r["path"] == "/v1/metrics"])
    [req] = [r for r in up.requests if r["path"] == "/v1/metrics"]
    assert req["body"] == body, "forwarded as received"
    col.stop()
    [doc] = t.lines(col, col.metrics_out)
    m = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]
    assert m == {"name": "temperature", "gauge": {"dataPoints": [
        {"timeUnixNano": "1700000000000000000", "asDouble": 42}]}}
    # Garbage is refused, the daemon goes on.
    col = ctx.collector()
    st, _, _ = t.exchange(col, t.post("/v1/metrics", b"\xff\xff\xff"))
    assert st == 400
    st, _, _ = t.exchange(col, t.post("/v1/metrics", body))
    assert st == 200


def test_metrics_go_only_upstream_when_there_is_no_file(ctx):
    import test_spanshimd_upstream as u
    up = u.otlp_server(ctx)
    col = u.BareCollector(ctx, ["--otlp-endpoint", up.url])
    st, _, _ = t.exchange(col, t.post("/v1/metrics", b""))
    assert st == 200
    assert u.wait_for(lambda: [r for r in up.requests if r["path"] == "/v1/metrics"])
    col.stop()
    d = os.path.dirname(col.out)
    assert not [f for f in os.listdir(d) if f.endswith(".jsonl")], os.listdir(d)
