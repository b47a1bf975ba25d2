"""The shim as an OpenTelemetry SDK: the SDK environment variables (OTEL_TRACES_EXPORTER,
OTEL_LOGS_EXPORTER, signal-specific endpoints, headers and timeouts, OTEL_LOG_LEVEL,
OTEL_SDK_DISABLED), W3C trace-context Level 2 (the random flag, tracestate carried on spans
and trimmed by the spec's rules) and the semconv exception events — with curl, a real C
HTTP server and psql, checked against what reaches a collector and what the app sees."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import harness

ERROR = 2   # STATUS_CODE_ERROR
SERVER = 2  # SPAN_KIND_SERVER

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
TP = "00-%s-%s-01" % (TID, SID)
# These tests are about names and routes, not about delivery within the exit budget under
# load (test_lifecycle and test_stacks count that): give exit all the time it needs.
FLUSH = {"SPANSHIM_EXIT_FLUSH_MS": "20000"}


def _lines(path):
    if not os.path.exists(path):
        return []
    return [l for l in open(path, errors="replace").read().splitlines() if l.strip()]


def _console(path, kind):
    """The console exporter's JSON lines of one kind ("span" or "log") in the log file."""
    out = []
    for l in _lines(path):
        if l.startswith("{"):
            d = json.loads(l)  # every console line is whole JSON
            if kind in d:
                out.append(d[kind])
    return out


def _logs(c):
    """(record, attrs) of every log record the collector wrote."""
    c.stop()
    out = []
    if not os.path.exists(c.logs_out):
        return out
    for line in open(c.logs_out):
        doc = json.loads(line)
        for rl in doc.get("resourceLogs", []):
            for sl in rl.get("scopeLogs", []):
                for rec in sl.get("logRecords", []):
                    out.append((rec, harness.attrs_dict(rec.get("attributes"))))
    return out


def test_traces_exporter_none_exports_nothing_but_passes_the_sampled_context_on(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", srv.url + "/a"], collector=c,
                extra_env={"OTEL_TRACES_EXPORTER": "none"})
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    assert c.spans() == []
    tp = srv.requests[0]["headers"].get("traceparent", "")
    # the span is sampled (the sampler said yes) and its id is random: only not exported
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-03", tp), tp


def test_console_exporter_writes_json_lines_to_the_log_file_and_nothing_to_the_collector(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    log = os.path.join(ctx.tmp, "shim.log")
    refused = ctx.closed_port()
    r = ctx.run(["sh", "-c", "curl -s %s/b; curl -s http://127.0.0.1:%d/; exit 0"
                 % (srv.url, refused)], collector=c,
                extra_env=dict(FLUSH, OTEL_TRACES_EXPORTER="console", OTEL_LOGS_EXPORTER="console",
                               SPANSHIM_LOG_FILE=log))
    assert r.returncode == 0 and r.stdout == b"hello\n" and r.stderr == b"", r
    spans = _console(log, "span")
    gets = [s for s in spans if s["name"] == "GET"]
    assert len(gets) == 2, spans
    ok = [s for s in gets if s["attributes"].get("http.response.status_code") == 200]
    assert len(ok) == 1 and ok[0]["kind"] == "SPAN_KIND_CLIENT", gets
    assert ok[0]["attributes"]["url.full"] == srv.url + "/b", ok[0]
    assert re.fullmatch(r"[0-9a-f]{32}", ok[0]["traceId"]), ok[0]
    assert int(ok[0]["endTimeUnixNano"]) >= int(ok[0]["startTimeUnixNano"]) > 0
    assert ok[0]["resource"]["service.name"] == "unknown_service:curl", ok[0]
    logs = {l["eventName"]: l for l in _console(log, "log")}
    # the refused socket connect (generic) and the libcurl transfer (semconv HTTP client)
    assert sorted(logs) == ["exception", "http.client.request.exception"], logs
    assert logs["http.client.request.exception"]["severityNumber"] == 13, logs
    assert logs["exception"]["severityNumber"] == 17, logs
    assert "exception.stacktrace" in logs["exception"]["attributes"], logs
    assert c.spans() == [] and _logs(c) == []


def test_console_exporter_writes_without_any_collector(ctx):
    refused = ctx.closed_port()
    for exporters in ("console", "otlp,console"):
        log = os.path.join(ctx.tmp, "shim-%s.log" % exporters.replace(",", "-"))
        r = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % refused], collector=None,
                    extra_env=dict(FLUSH, OTEL_TRACES_EXPORTER=exporters, SPANSHIM_LOG_FILE=log))
        assert r.returncode == 7, r
        names = sorted(s["name"] for s in _console(log, "span"))
        assert names == ["GET", "connect"], (exporters, names)


def test_console_lines_are_valid_utf8_json_whatever_the_values(ctx):
    log = os.path.join(ctx.tmp, "shim.log")
    refused = ctx.closed_port()
    r = ctx.run(["sh", "-c", "curl -s http://127.0.0.1:%d/; true" % refused,
                 "sh", b'arg"\\\n\t\x01\xc3\x28\xff'], collector=None,
                extra_env=dict(FLUSH, OTEL_TRACES_EXPORTER="console", SPANSHIM_PROCESS_SPAN="1",
                               OTEL_SERVICE_NAME='svc"\n\x01\udcff', SPANSHIM_LOG_FILE=log))
    assert r.returncode == 0, r
    lines = [l for l in open(log, "rb").read().splitlines() if l.startswith(b"{")]
    assert len(lines) >= 3, lines
    for l in lines:
        d = json.loads(l.decode("utf-8"))  # strict UTF-8 and JSON, each line
        assert d["span"]["resource"]["service.name"] == 'svc"\n\x01\ufffd', d
    assert any("\ufffd(\ufffd" in json.dumps(json.loads(l), ensure_ascii=False) for l in lines)


def test_otlp_and_console_together(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    log = os.path.join(ctx.tmp, "shim.log")
    r = ctx.run(["curl", "-s", srv.url + "/c"], collector=c,
                extra_env=dict(FLUSH, OTEL_TRACES_EXPORTER="otlp, console", SPANSHIM_LOG_FILE=log))
    assert r.returncode == 0, r
    exported = [s for s in c.spans() if s.name == "GET"]
    printed = [s for s in _console(log, "span") if s["name"] == "GET"]
    assert len(exported) == 1 and len(printed) == 1, (exported, printed)
    assert printed[0]["spanId"] == exported[0].span_id


def test_unknown_exporter_is_reported_and_otlp_used(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    log = os.path.join(ctx.tmp, "shim.log")
    r = ctx.run(["curl", "-s", srv.url + "/d"], collector=c,
                extra_env={"OTEL_TRACES_EXPORTER": "zipkin", "SPANSHIM_LOG_LEVEL": "warn",
                           "SPANSHIM_LOG_FILE": log})
    assert r.returncode == 0, r
    assert any("OTEL_TRACES_EXPORTER=\"zipkin\"" in l for l in _lines(log)), _lines(log)
    assert [s.name for s in c.spans() if s.name == "GET"] == ["GET"]


def test_logs_exporter_none_keeps_the_error_span_and_sends_no_records(ctx):
    c = ctx.collector()
    refused = ctx.closed_port()
    r = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % refused], collector=c,
                extra_env={"OTEL_LOGS_EXPORTER": "none"})
    assert r.returncode == 7, r
    spans = c.spans()
    get = [s for s in spans if s.name == "GET"]
    assert len(get) == 1 and get[0].status_code == ERROR, get
    assert _logs(c) == []


def test_signal_specific_endpoints_are_used_as_given_with_their_headers(ctx):
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT without a path posts to "/" (SDK spec: used as
    given); OTEL_EXPORTER_OTLP_LOGS_ENDPOINT on the same collector gets the logs, with
    OTEL_EXPORTER_OTLP_LOGS_HEADERS on them only."""
    sink = ctx.http_server()  # stands in for a collector: answers 200, records requests
    refused = ctx.closed_port()
    env = {"SPANSHIM_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.url,
           "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": sink.url + "/custom/logs",
           "OTEL_EXPORTER_OTLP_HEADERS": "x-all=1",
           "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-logs=2", "SPANSHIM_LOG_LEVEL": "info",
           **FLUSH}
    e = ctx.env(None, env)
    del e["SPANSHIM_ENDPOINT"]
    r = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/" % refused], env=e,
                       capture_output=True, timeout=60)
    assert r.returncode == 7, r
    posts = [(q["path"], q["headers"]) for q in sink.posts(["/", "/custom/logs"])]
    paths = [p for p, _ in posts]
    assert "/" in paths and "/custom/logs" in paths, (paths, r.stderr)  # the shim's word
    for p, h in posts:
        assert h.get("content-type") == "application/x-protobuf", h
        if p == "/":
            assert h.get("x-all") == "1" and "x-logs" not in h, h
        else:
            assert h.get("x-logs") == "2" and "x-all" not in h, h


def test_signal_endpoint_with_a_query_and_no_path_gets_root_and_its_query(ctx):
    sink = ctx.http_server()
    e = ctx.env(None, dict(FLUSH, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.url + "?tenant=a"))
    del e["SPANSHIM_ENDPOINT"]
    r = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/" % ctx.closed_port()], env=e,
                       capture_output=True, timeout=60)
    assert r.returncode == 7, r
    paths = {q["path"] for q in sink.posts(["/?tenant=a"])}
    assert "/?tenant=a" in paths, paths


def test_base_endpoint_gets_both_signal_paths(ctx):
    sink = ctx.http_server()
    refused = ctx.closed_port()
    e = ctx.env(None, dict(FLUSH, OTEL_EXPORTER_OTLP_ENDPOINT=sink.url + "/base/"))
    del e["SPANSHIM_ENDPOINT"]
    r = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/" % refused], env=e,
                       capture_output=True, timeout=60)
    assert r.returncode == 7, r
    paths = sorted({q["path"] for q in sink.posts(["/base/v1/logs", "/base/v1/traces"])})
    assert paths == ["/base/v1/logs", "/base/v1/traces"], paths


SLOW_SINK_PY = r'''
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        print("POST %s %d" % (self.path, len(body)), flush=True)
        time.sleep(0.3)  # answers come late: an exit must still not cut what it wrote
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
'''


def test_an_otlp_http_collector_that_answers_late_gets_every_request_an_exit_wrote(ctx):
    """An exit writes its traces and logs requests back to back on one connection. A
    generic OTLP/HTTP server (Python's http.server here) reads them one at a time and
    gives up on the connection when it cannot write an answer: the exit reads every
    answer (within its budget) before it closes, so the logs request after the traces
    one is read too (before: lost, and counted as delivered)."""
    script = os.path.join(ctx.tmp, "slow_sink.py")
    with open(script, "w") as f:
        f.write(SLOW_SINK_PY)
    sink = harness.Service(ctx, ["python3", script], preload=False)
    e = ctx.env(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "SPANSHIM_EXIT_FLUSH_MS": "5000"})
    del e["SPANSHIM_ENDPOINT"]
    r = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/" % ctx.closed_port()], env=e,
                       capture_output=True, timeout=60)
    assert r.returncode == 7, r
    sink.proc.terminate()
    out = sink.proc.communicate(timeout=30)[0].decode()
    paths = sorted({l.split()[1] for l in out.splitlines() if l.startswith("POST ")})
    assert paths == ["/v1/logs", "/v1/traces"], out


def test_otel_log_level_turns_on_diagnostics_when_spanshim_log_level_is_unset(ctx):
    log = os.path.join(ctx.tmp, "shim.log")
    r = ctx.run(["true"], extra_env={"OTEL_LOG_LEVEL": "debug", "SPANSHIM_LOG_FILE": log,
                                     "OTEL_BSP_MAX_QUEUE_SIZE": "x"})
    assert r.returncode == 0 and r.stderr == b"", r
    assert any("OTEL_BSP_MAX_QUEUE_SIZE=\"x\"" in l for l in _lines(log)), _lines(log)
    log2 = os.path.join(ctx.tmp, "shim2.log")
    ctx.run(["true"], extra_env={"OTEL_LOG_LEVEL": "debug", "SPANSHIM_LOG_LEVEL": "off",
                                 "SPANSHIM_LOG_FILE": log2, "OTEL_BSP_MAX_QUEUE_SIZE": "x"})
    assert _lines(log2) == []  # the shim's own variable wins


def test_sdk_disabled_exports_nothing_and_passes_the_callers_context_on_unchanged(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    env = {"OTEL_SDK_DISABLED": "true", "SPANSHIM_PROCESS_SPAN": "1"}
    r = ctx.run(["curl", "-s", srv.url + "/in-trace"], collector=c,
                extra_env=dict(env, TRACEPARENT=TP, TRACESTATE="v=1"))
    assert r.returncode == 0, r
    r = ctx.run(["curl", "-s", srv.url + "/no-trace"], collector=c, extra_env=env)
    assert r.returncode == 0, r
    assert c.spans() == []
    by_path = {q["path"]: q["headers"] for q in srv.requests}
    # the no-op API's rule: a non-recording span carries its parent's context as its own
    assert by_path["/in-trace"].get("traceparent") == TP, by_path
    assert by_path["/in-trace"].get("tracestate") == "v=1", by_path
    assert "traceparent" not in by_path["/no-trace"], by_path


def test_random_flag_is_set_on_our_ids_and_passed_through_when_inherited(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    ctx.run(["curl", "-s", srv.url + "/own"], collector=c)
    ctx.run(["curl", "-s", srv.url + "/inherited-01"], collector=c,
            extra_env={"TRACEPARENT": TP})
    ctx.run(["curl", "-s", srv.url + "/inherited-03"], collector=c,
            extra_env={"TRACEPARENT": TP[:-2] + "03"})
    flags = {q["path"]: q["headers"]["traceparent"][-2:] for q in srv.requests}
    assert flags == {"/own": "03", "/inherited-01": "01", "/inherited-03": "03"}, flags
    spans = {s.attrs.get("url.full", "").rsplit("/", 1)[-1]: s for s in c.spans()
             if s.name == "GET"}
    assert spans["own"].raw["flags"] & 0xff == 3, spans["own"].raw
    assert spans["inherited-01"].raw["flags"] & 0xff == 1, spans["inherited-01"].raw


def _ts(members):
    return ",".join(members)


def test_long_tracestate_is_trimmed_by_the_w3c_rules_and_carried_on_spans(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    long_member = "big=" + "x" * 200                       # over 128: goes first
    members = ["m%02d=%s" % (i, "v" * 40) for i in range(14)]  # 44 chars each
    raw = _ts(members[:3] + [long_member] + members[3:])
    assert len(raw) > 512
    want = []
    for m in members:  # then from the end until it fits in 512
        if len(_ts(want + [m])) > 512:
            break
        want.append(m)
    log = os.path.join(ctx.tmp, "shim.log")
    r = ctx.run(["curl", "-s", srv.url + "/ts"], collector=c,
                extra_env={"TRACEPARENT": TP, "TRACESTATE": raw, "SPANSHIM_LOG_LEVEL": "warn",
                           "SPANSHIM_LOG_FILE": log})
    assert r.returncode == 0, r
    sent = srv.requests[0]["headers"].get("tracestate")
    assert sent == _ts(want), (sent, _ts(want))
    assert any("TRACESTATE=" in l and "; using %d of them" % len(_ts(want)) in l
               for l in _lines(log)), _lines(log)
    [get] = [s for s in c.spans() if s.name == "GET"]
    assert get.raw.get("traceState") == _ts(want), get.raw
    assert get.trace_id == TID


def test_http_server_spans_carry_the_requests_tracestate(ctx):
    c = ctx.collector()
    svc = harness.Service(ctx, [ctx.prog("http_server"), "thread"], collector=c)
    port = svc.port
    r = ctx.run(["curl", "-s", "-H", "traceparent: " + TP, "-H", "tracestate: a=1,b=2",
                 "http://127.0.0.1:%d/x" % port], preload=False)
    assert r.returncode == 0, r
    svc.stop()
    srv = [s for s in c.spans() if s.kind == SERVER]
    assert srv, c.spans()
    assert srv[0].trace_id == TID and srv[0].parent_id == SID, srv[0]
    assert srv[0].raw.get("traceState") == "a=1,b=2", srv[0].raw


def test_client_4xx_is_a_span_error_without_an_exception(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    refused = ctx.closed_port()
    ctx.run(["curl", "-s", srv.url + "/status/404"], collector=c, extra_env=FLUSH)
    ctx.run(["curl", "-s", srv.url + "/status/503"], collector=c, extra_env=FLUSH)
    ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % refused], collector=c, extra_env=FLUSH)
    spans = [s for s in c.spans() if s.name == "GET"]
    codes = sorted(s.attrs.get("error.type") for s in spans)
    assert codes == ["404", "503", "CURLE_COULDNT_CONNECT"], codes
    assert all(s.status_code == ERROR for s in spans), spans
    answered = [s for s in spans if s.attrs.get("http.response.status_code")]
    assert all(not s.events for s in answered), answered
    ids = {s.span_id for s in spans}
    logs = [(r, a) for r, a in _logs(c) if r["spanId"] in ids]  # not the socket connect's
    assert [(r["eventName"], r["severityNumber"], r["severityText"]) for r, _ in logs] == \
        [("http.client.request.exception", 13, "WARN")], logs
    assert logs[0][1]["exception.type"] == "CURLE_COULDNT_CONNECT", logs


def test_failed_sql_is_a_db_client_operation_exception(ctx):
    pg = ctx.postgres()
    c = ctx.collector()
    r = ctx.run(["psql", "-X", "-q", "-d", pg.dsn(), "-c", "select * from no_such_table"],
                collector=c, extra_env=FLUSH)
    assert r.returncode != 0 and b"no_such_table" in r.stderr, r
    logs = _logs(c)
    names = [(r["eventName"], r["severityNumber"]) for r, _ in logs]
    assert ("db.client.operation.exception", 13) in names, names
    assert all(n != "exception" for n, _ in names), names


def test_unusable_endpoint_urls_all_mean_the_default_socket(ctx):
    """A malformed OTEL_EXPORTER_OTLP_ENDPOINT (an unclosed IPv6 bracket) gets one
    diagnostic and the documented default, the default socket, as a bad SPANSHIM_ENDPOINT
    does (it used to switch tracing off). The program is untouched either way."""
    xdg = tempfile.mkdtemp(prefix="ss-xdg-")  # short: a socket path holds 108 bytes
    ctx._cleanup.append(lambda: shutil.rmtree(xdg, ignore_errors=True))
    os.makedirs(os.path.join(xdg, "spanshim"), mode=0o700)
    os.chmod(xdg, 0o700)
    argv = [ctx.prog("simple"), "9", "6"]
    plain = ctx.run(argv, preload=False)
    for name, bad in (("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1"),
                      ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://[::1/v1/traces"),
                      ("SPANSHIM_ENDPOINT", "http://[::1"),
                      ("SPANSHIM_ENDPOINT", "ftp://x")):
        c = ctx.collector_at(os.path.join(xdg, "spanshim", "collector.sock"))
        env = ctx.env(None, {name: bad, "XDG_RUNTIME_DIR": xdg, "SPANSHIM_LOG_LEVEL": "warn"})
        env.pop("SPANSHIM_ENDPOINT", None)
        env[name] = bad
        r = subprocess.run(argv, env=env, capture_output=True, timeout=60, cwd=ctx.tmp)
        assert (r.returncode, r.stdout.split(b"\n")[0]) == (6, plain.stdout.split(b"\n")[0]), r
        assert r.stderr.count(b"using the default socket") == 1, (name, r.stderr)
        assert [s for s in c.spans() if s.name == "connect"], (name, bad)


def test_a_log_file_that_cannot_be_opened_is_said_on_stderr_only_when_asked(ctx):
    """SPANSHIM_LOG_FILE in a missing directory: diagnostics go to stderr, the first one
    saying why; with no log level (off) the app's stderr is its own."""
    argv = [ctx.prog("simple"), "9", "0"]
    plain = ctx.run(argv, preload=False)
    bad = os.path.join(ctx.tmp, "missing", "x.log")
    r = ctx.run(argv, extra_env={"SPANSHIM_LOG_FILE": bad, "SPANSHIM_LOG_LEVEL": "warn"})
    assert re.search(rb"spanshim\[\d+\]: SPANSHIM_LOG_FILE \"[^\"]*x.log\" cannot be opened "
                     rb"\(No such file or directory\); diagnostics go to stderr\n", r.stderr), r
    r = ctx.run(argv, extra_env={"SPANSHIM_LOG_FILE": bad})
    assert r.stderr == plain.stderr, r
