"""`spanshim view` answering questions from the command line (issue 17): --errors,
--slower-than, --service, --trace, --grep, --limit, --json and --summary, each checked
against a spans file of known content written by a real spanshimd; reading what other
writers produce (pretty-printed, snake_case, metrics lines, a line cut short; issue 15
item 7); and the Perfetto export valid for every input, one process name per pid after
exec (issue 15 item 12)."""
import json
import os
import struct
import subprocess

import test_spanshimd as t

T1 = bytes.fromhex("11111111111111111111111111111111")
T2 = bytes.fromhex("22222222222222222222222222222222")
T3 = bytes.fromhex("33333333333333333333333333333333")
T4 = bytes.fromhex("44444444444444444444444444444444")
BASE = 1_700_000_000_000_000_000
MS = 1_000_000


def sid(i):
    return struct.pack(">Q", i)


def known_file(ctx):
    """Four traces:
    T1 web (pid 42)   GET /checkout 900 ms > SELECT orders 300 ms, connect ERROR (pay.internal)
    T2 job (pid 43)   getaddrinfo 1 us (example.org)
    T3 web (pid 42)   GET /health 2 ms
    T4 batch (pid 44) process 3 s > INSERT audit 1 ms"""
    col = ctx.collector()
    web = [t.span(T1, sid(1), "GET /checkout", 2, BASE, BASE + 900 * MS, {"http.route": "/checkout"}),
           t.span(T1, sid(2), "SELECT orders", 3, BASE + 1 * MS, BASE + 301 * MS,
                  {"db.query.text": "select * from orders where id = ?"}, parent=sid(1)),
           t.span(T1, sid(3), "connect", 3, BASE + 400 * MS, BASE + 401 * MS,
                  {"server.address": "pay.internal"}, parent=sid(1),
                  status=(2, "connection refused")),
           t.span(T3, sid(5), "GET /health", 2, BASE + 1000 * MS, BASE + 1002 * MS, {})]
    job = [t.span(T2, sid(4), "getaddrinfo", 1, BASE + 5_000, BASE + 6_000,
                  {"dns.question.name": "example.org"})]
    batch = [t.span(T4, sid(6), "process", 1, BASE + 2000 * MS, BASE + 5000 * MS, {}),
             t.span(T4, sid(7), "INSERT audit", 3, BASE + 2001 * MS, BASE + 2002 * MS, {},
                    parent=sid(6))]
    for sps, res in ((web, {"service.name": "web", "process.pid": 42}),
                     (job, {"service.name": "job", "process.pid": 43}),
                     (batch, {"service.name": "batch", "process.pid": 44})):
        assert t.exchange(col, t.post("/v1/traces", t.traces_request(sps, resource=res)))[0] == 200
    col.stop()
    return col.out


def view(ctx, *args, ok=True):
    r = subprocess.run([ctx.spanshim, "view"] + list(args), capture_output=True, timeout=60)
    if ok:
        assert r.returncode == 0, (args, r.returncode, r.stderr)
    return r


def json_lines(out):
    return [json.loads(ln) for ln in out.decode().splitlines() if ln.strip()]


def spans_of(lines):
    """(trace id, span name, service) of every span in OTLP JSON lines."""
    got = []
    for doc in lines:
        for rs in doc["resourceSpans"]:
            svc = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}["service.name"]
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    got.append((s["traceId"], s["name"], svc["stringValue"]))
    return got


def traces(ctx, src, *flags):
    return {tid for tid, _, _ in spans_of(json_lines(view(ctx, "--json", *flags, src).stdout))}


def test_each_filter_flag_selects_the_traces_it_names(ctx):
    src = known_file(ctx)
    every = {T1.hex(), T2.hex(), T3.hex(), T4.hex()}
    assert traces(ctx, src) == every
    assert traces(ctx, src, "--errors") == {T1.hex()}
    assert traces(ctx, src, "--slower-than", "1s") == {T4.hex()}
    assert traces(ctx, src, "--slower-than", "500ms") == {T1.hex(), T4.hex()}
    assert traces(ctx, src, "--slower-than", "2ms") == {T1.hex(), T3.hex(), T4.hex()}
    assert traces(ctx, src, "--service", "web") == {T1.hex(), T3.hex()}
    assert traces(ctx, src, "--service", "job") == {T2.hex()}
    assert traces(ctx, src, "--trace", "2222") == {T2.hex()}
    assert traces(ctx, src, "--trace=44") == {T4.hex()}
    assert traces(ctx, src, "--grep", "pay.internal") == {T1.hex()}   # an attribute value
    assert traces(ctx, src, "--grep", "HEALTH") == {T3.hex()}        # a name, any case
    assert traces(ctx, src, "--grep", "connection refused") == {T1.hex()}  # status message
    assert traces(ctx, src, "--grep", "orders where") == {T1.hex()}
    assert traces(ctx, src, "--limit", "2") == {T1.hex(), T2.hex()}  # earliest first
    assert traces(ctx, src, "--service", "web", "--limit", "1") == {T1.hex()}
    assert traces(ctx, src, "--service", "web", "--errors") == {T1.hex()}
    r = view(ctx, "--service", "job", "--errors", src, ok=False)
    assert r.returncode == 1 and b"no trace matches" in r.stderr and r.stdout == b""


def test_json_output_is_otlp_lines_with_whole_traces_resource_and_scope(ctx):
    src = known_file(ctx)
    lines = json_lines(view(ctx, "--json", "--errors", src).stdout)
    got = spans_of(lines)
    assert sorted(got) == sorted([(T1.hex(), "GET /checkout", "web"),
                                  (T1.hex(), "SELECT orders", "web"),
                                  (T1.hex(), "connect", "web")])
    rs = lines[0]["resourceSpans"][0]
    res = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
    assert res["process.pid"] == {"intValue": "42"}
    assert rs["scopeSpans"][0]["scope"]["name"] == "spanshim"
    failed = [s for doc in lines for r in doc["resourceSpans"] for ss in r["scopeSpans"]
              for s in ss["spans"] if s["name"] == "connect"][0]
    assert failed["status"] == {"message": "connection refused", "code": 2}
    assert failed["parentSpanId"] == sid(1).hex()
    # The output reads back as a spans file: piping it to view again gives the same.
    again = subprocess.run([ctx.spanshim, "view", "--json", "-"], input=view(
        ctx, "--json", "--errors", src).stdout, capture_output=True, timeout=60)
    assert again.returncode == 0 and sorted(spans_of(json_lines(again.stdout))) == sorted(got)


def test_summary_is_the_red_table_per_service_span_name_and_kind(ctx):
    src = known_file(ctx)
    out = view(ctx, "--summary", src).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["service", "span", "kind", "count", "rate/s", "errors", "p50",
                                "p95", "p99"]
    rows = {(ln[:24].strip(), ln[25:61].strip()): ln[71:].split() for ln in lines[1:-1]}
    kinds = {(ln[:24].strip(), ln[25:61].strip()): ln[62:70].strip() for ln in lines[1:-1]}
    assert kinds == {("batch", "INSERT audit"): "client", ("batch", "process"): "internal",
                     ("job", "getaddrinfo"): "internal", ("web", "GET /checkout"): "server",
                     ("web", "GET /health"): "server", ("web", "SELECT orders"): "client",
                     ("web", "connect"): "client"}
    # count, rate/s (1 span over the 5 s window), errors, p50 p95 p99
    assert rows[("web", "connect")] == ["1", "0.20", "1", "(100%)", "1.00", "ms", "1.00", "ms",
                                        "1.00", "ms"]
    assert rows[("batch", "process")][:4] == ["1", "0.20", "0", "(0%)"]
    assert rows[("batch", "process")][4:6] == ["3.00", "s"]
    assert lines[-1] == "7 spans, 7 series, rate over 5.00 s"
    # Filters apply first.
    out = view(ctx, "--summary", "--service", "job", src).stdout.decode().splitlines()
    assert len(out) == 3 and out[1].startswith("job") and "getaddrinfo" in out[1]


def test_summary_keeps_a_services_answers_apart_from_its_calls_of_the_same_name(ctx):
    """A service's SERVER "GET" spans (its answers) and CLIENT "GET" spans (its calls to
    others) are two rows: its error rate is that of its answers."""
    col = ctx.collector()
    spans = [t.span(T1, sid(10 + i), "GET", 2, BASE + i * MS, BASE + i * MS + MS, {})
             for i in range(4)]
    spans += [t.span(T1, sid(20 + i), "GET", 3, BASE + i * MS, BASE + i * MS + MS, {},
                     status=(2, "x")) for i in range(6)]
    body = t.traces_request(spans, resource={"service.name": "orders"})
    assert t.exchange(col, t.post("/v1/traces", body))[0] == 200
    col.stop()
    lines = view(ctx, "--summary", col.out).stdout.decode().splitlines()
    got = {ln[62:70].strip(): ln[71:].split()[:4] for ln in lines[1:-1]}
    assert got == {"server": ["4", got["server"][1], "0", "(0%)"],
                   "client": ["6", got["client"][1], "6", "(100%)"]}, lines


def test_filters_narrow_the_waterfall_too(ctx):
    src = known_file(ctx)
    out = view(ctx, "--errors", src).stdout.decode()
    assert "GET /checkout" in out and "connection refused" in out
    assert "getaddrinfo" not in out and "GET /health" not in out and "INSERT audit" not in out
    assert out.splitlines()[-1] == "3 spans in 1 trace"


def test_bad_filter_values_are_usage_errors(ctx):
    src = known_file(ctx)
    for args in (["--slower-than", "soon"], ["--limit", "0"], ["--limit", "x"],
                 ["--trace", "xyz"], ["--grep", ""], ["--json", "--summary"], ["--nope"]):
        r = view(ctx, *(args + [src]), ok=False)
        assert r.returncode == 2 and b"usage: spanshim view" in r.stderr, (args, r.stderr)
    r = view(ctx, "--help")
    for flag in (b"--errors", b"--slower-than", b"--service", b"--trace", b"--grep",
                 b"--limit", b"--json", b"--summary", b"--html", b"--perfetto"):
        assert flag in r.stdout


# ---- what other writers produce (issue 15 item 7) ----

def otlp_doc(trace, span, name, snake=False, status=0):
    s = {"traceId": trace, "spanId": span, "name": name, "kind": 2,
         "startTimeUnixNano": str(BASE), "endTimeUnixNano": str(BASE + 5 * MS),
         "attributes": [{"key": "http.route", "value": {"stringValue": "/x"}},
                        {"key": "ratio", "value": {"doubleValue": 0.25}}],
         "status": {"code": status}}
    doc = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "other"}}]},
        "scopeSpans": [{"scope": {"name": "sdk"}, "spans": [s]}]}]}
    if not snake:
        return doc
    def snake_keys(o):
        if isinstance(o, dict):
            return {"".join("_" + c.lower() if c.isupper() else c for c in k): snake_keys(v)
                    for k, v in o.items()}
        if isinstance(o, list):
            return [snake_keys(x) for x in o]
        return o
    return snake_keys(doc)


def test_view_reads_pretty_printed_snake_case_and_skips_metrics_lines(ctx):
    path = os.path.join(ctx.tmp, "mixed.jsonl")
    a, b, c, d = ("%032x" % i for i in (0xa1, 0xb2, 0xc3, 0xd4))
    with open(path, "w") as f:
        f.write(json.dumps(otlp_doc(a, "00000000000000a1", "compact")) + "\n")
        f.write(json.dumps(otlp_doc(b, "00000000000000b2", "pretty"), indent=2) + "\n")
        f.write(json.dumps(otlp_doc(c, "00000000000000c3", "snake", snake=True)) + "\n")
        f.write(json.dumps({"resourceMetrics": [{"resource": {}, "scopeMetrics": []}]}) + "\n")
        f.write(json.dumps(otlp_doc(d, "00000000000000d4", "snake pretty", snake=True),
                           indent=4) + "\n")
        # Two documents on one line, braces and quotes inside strings.
        f.write(json.dumps(otlp_doc("%032x" % 0xf6, "00000000000000f6", 'br}a{ce "q\\" }')) +
                json.dumps(otlp_doc("%032x" % 0xf7, "00000000000000f7", "second")) + "\n")
    cut_line = open(path).read().count("\n") + 1
    with open(path, "a") as f:
        f.write('{"resourceSpans":[{"resource":{},"scopeSp')  # a writer died mid-line
        f.write("\n" + json.dumps(otlp_doc("%032x" % 0xe5, "00000000000000e5", "after")) + "\n")
    r = view(ctx, "--json", path)
    got = sorted(name for _, name, _ in spans_of(json_lines(r.stdout)))
    assert got == ["after", "br}a{ce \"q\\\" }", "compact", "pretty", "second", "snake",
                   "snake pretty"], (got, r.stderr)
    assert b"mixed.jsonl:%d: document not closed (cut short?)" % cut_line in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1, r.stderr
    w = view(ctx, path, ok=False)
    out = w.stdout.decode()
    for name in ("compact", "pretty", "snake pretty", "after"):
        assert name in out
    assert out.splitlines()[-1] == "7 spans in 7 traces", out


def test_every_garbled_line_is_reported_with_its_number(ctx):
    """Garbled lines among JSON lines, after a line cut short too: each is reported with
    its own number (bounded), and the good lines around them are read."""
    path = os.path.join(ctx.tmp, "garbled.jsonl")
    good = [json.dumps(otlp_doc("%032x" % (0x100 + i), "%016x" % (0x100 + i), "ok%d" % i))
            for i in range(3)]
    lines = ["garbage one", good[0], '{"resourceSpans":[{"scopeSp', "garbage two",
             "garbage three", good[1], "{not json either", "more garbage", good[2]]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = view(ctx, "--json", path)
    got = sorted(name for _, name, _ in spans_of(json_lines(r.stdout)))
    assert got == ["ok0", "ok1", "ok2"], (got, r.stderr)
    reported = sorted(int(ln.split(b":")[2]) for ln in r.stderr.splitlines()
                      if ln.startswith(b"spanshim: " + path.encode() + b":"))
    assert reported == [1, 3, 4, 5, 7, 8], r.stderr
    # Bounded: 30 garbled lines give 20 reports and a count of the rest.
    with open(path, "w") as f:
        f.write("".join("bad %d\n" % i for i in range(30)) + good[0] + "\n")
    r = view(ctx, path)
    assert r.stderr.count(b"unexpected 'b'") == 20, r.stderr
    assert b"10 more malformed lines not reported" in r.stderr, r.stderr


def test_exit_status_is_1_whenever_there_is_no_span_to_show(ctx):
    """An empty file, garbage, garbage plus spans with bad ids, a file with no spans: all
    exit 1 with a line saying why; one good span among the garbage: 0."""
    def run(name, text, *flags):
        path = os.path.join(ctx.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return view(ctx, *flags, path, ok=False)
    bad_ids = json.dumps(otlp_doc("zz" * 16, "0102030405060708", "bad-trace")) + "\n" + \
        json.dumps(otlp_doc("0" * 32, "0102030405060708", "zero-trace")) + "\n"
    cases = {"empty.jsonl": ("", b"nothing readable"),
             "garbage.jsonl": ("garbage\n{cut\n", b"nothing readable"),
             "badids.jsonl": ("garbage\n" + bad_ids, b"no spans to show (2 without valid ids skipped)"),
             "nospans.jsonl": (json.dumps({"resourceSpans": []}) + "\n", b"no spans to show")}
    for name, (text, why) in cases.items():
        for flags in ((), ("--json",), ("--summary",)):
            r = run(name, text, *flags)
            assert r.returncode == 1, (name, flags, r.returncode, r.stderr)
            assert why in r.stderr, (name, r.stderr)
    r = run("onegood.jsonl", "garbage\n" + bad_ids +
            json.dumps(otlp_doc("%032x" % 0x77, "0000000000000077", "good")) + "\n")
    assert r.returncode == 0 and b"good" in r.stdout, r.stderr
    assert r.stdout.decode().splitlines()[-1] == "1 span in 1 trace; 2 without valid ids skipped"
    r = run("one.jsonl", json.dumps(otlp_doc("%032x" % 0x78, "0000000000000078", "g")) + "\n",
            "--perfetto", os.path.join(ctx.tmp, "one.json"))
    assert r.returncode == 0 and b"spanshim: 1 span written to " in r.stderr, r.stderr


def test_exception_stack_from_a_logs_line_reaches_the_waterfall(ctx):
    """With SPANSHIM_EXCEPTION_SIGNAL=log the stack exists only as a log record, in the
    logs file spanshimd writes beside the traces file; view reads that file too and joins
    the record to its span by trace and span id."""
    col = ctx.collector()
    r = ctx.run(["curl", "-s", "http://127.0.0.1:1/"], collector=col,
                extra_env={"SPANSHIM_EXCEPTION_SIGNAL": "log"})
    assert r.returncode == 7
    col.stop()
    assert not any(json.loads(ln).get("resourceLogs") for ln in open(col.out) if ln.strip())
    assert any(json.loads(ln).get("resourceLogs") for ln in open(col.logs_out) if ln.strip())
    out = view(ctx, col.out).stdout.decode()
    assert "CURLE_COULDNT_CONNECT" in out and "#0 0x" in out, out
    assert "log records not shown" in out.splitlines()[-1], out
    # Named as well, it is read once.
    out2 = view(ctx, col.out, col.logs_out).stdout.decode()
    assert out2 == out


# ---- Perfetto (issue 15 item 12) ----

def test_perfetto_is_valid_json_for_doubles_json_cannot_spell(ctx):
    path = os.path.join(ctx.tmp, "doubles.jsonl")
    doc = otlp_doc("%032x" % 7, "0000000000000007", "d")
    s = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    s["attributes"] = [{"key": k, "value": {"doubleValue": v}} for k, v in
                       (("dot", ".5"), ("nan", "NaN"), ("inf", "-Infinity"), ("num", 1.5),
                        ("exp", "1e3"), ("big", 1e300), ("plus", "+2"), ("junk", "5.x"))]
    open(path, "w").write(json.dumps(doc) + "\n")
    r = view(ctx, "--perfetto", "-", path)
    ev = [e for e in json.loads(r.stdout)["traceEvents"] if e["ph"] == "X"][0]["args"]
    assert ev["dot"] == 0.5 and ev["num"] == 1.5 and ev["exp"] == 1000 and ev["big"] == 1e300
    assert ev["plus"] == 2
    assert ev["nan"] == "NaN" and ev["inf"] == "-Infinity" and ev["junk"] == "5.x"


def test_perfetto_names_each_pid_once_and_tracks_by_exec_generation(ctx):
    """`sh -c 'exec curl ...'` is one pid with two images: one process_name for it
    ("dash → curl"), and each image's spans on tracks named by its exec generation."""
    out = os.path.join(ctx.tmp, "run.jsonl")
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out, "--", "sh", "-c",
                        "exec curl -s http://127.0.0.1:1/"], capture_output=True, timeout=120)
    assert r.returncode == 7, r.stderr
    p = view(ctx, "--perfetto", "-", out)
    ev = json.loads(p.stdout)["traceEvents"]
    names = [e for e in ev if e["name"] == "process_name"]
    pids = [e["pid"] for e in names]
    assert len(pids) == len(set(pids)), names  # one name per pid
    execd = [e for e in names if " → " in e["args"]["name"]]
    assert len(execd) == 1 and execd[0]["args"]["name"].endswith("→ curl"), names
    pid = execd[0]["pid"]
    tracks = {e["tid"]: e["args"]["name"] for e in ev
              if e["name"] == "thread_name" and e["pid"] == pid}
    assert any("(exec 0)" in n for n in tracks.values()), tracks
    assert any(n.startswith("curl (exec 1)") for n in tracks.values()), tracks
    curl_spans = [e for e in ev if e["ph"] == "X" and e["pid"] == pid and e["name"] == "GET"]
    assert curl_spans and tracks[curl_spans[0]["tid"]].startswith("curl (exec 1)")
