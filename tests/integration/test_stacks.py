"""Stack traces on errors and code attribution: a failing call's exception record (OTLP
log, event name `exception`) and span event carry a symbolized stack into the
application's code; every span names the application function that made the call."""
import json
import os
import shutil
import subprocess

import harness
from harness import parse_kv

ERROR = 2


def read_logs(path):
    """Every exported log record, with its resource, as (resource, record, attrs)."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            doc = json.loads(line)
            for rl in doc.get("resourceLogs", []):
                res = harness.attrs_dict(rl.get("resource", {}).get("attributes"))
                for sl in rl.get("scopeLogs", []):
                    for rec in sl.get("logRecords", []):
                        out.append((res, rec, harness.attrs_dict(rec.get("attributes"))))
    return out


def exceptions(c):
    c.stop()
    return [(res, rec, a) for res, rec, a in read_logs(c.logs_out)
            if (rec.get("eventName") or "").endswith("exception")]


def failed_calls(spans):
    """Spans of failed calls (process spans that merely exited non-zero are not calls)."""
    return [s for s in spans if s.status_code == ERROR and "process.pid" not in s.attrs]


def closed_port(ctx):
    return ctx.closed_port() if hasattr(ctx, "closed_port") else 1


def run(ctx, mode, binary=None, extra=None):
    c = ctx.collector()
    r = ctx.run([binary or ctx.prog("stack_orders"), mode, str(closed_port(ctx))], collector=c,
                extra_env=extra)
    assert r.returncode == 0, r
    return c, parse_kv(r.stdout)


def test_failing_connect_names_load_orders_in_its_stack_and_code_function(ctx):
    c, out = run(ctx, "one")
    spans = c.spans()
    exc = exceptions(c)
    [conn] = [s for s in spans if s.name == "connect"]
    assert conn.status_code == ERROR and conn.attrs["error.type"] == "ECONNREFUSED", conn
    assert conn.attrs.get("code.function.name") == "load_orders", conn.attrs
    [(res, rec, a)] = exc
    assert rec["spanId"] == conn.span_id and rec["traceId"] == conn.trace_id, rec
    assert rec["severityNumber"] == 17, rec
    assert a["exception.type"] == "ECONNREFUSED" and a["exception.message"], a
    frames = a["exception.stacktrace"].splitlines()
    assert frames[0].startswith("#0 0x") and " in load_orders " in frames[0], frames
    assert any(" in main " in f for f in frames), frames
    assert not any("libspanshim" in f for f in frames), "the shim's own frames must go"
    prog = os.path.realpath(ctx.prog("stack_orders"))
    assert "(%s+0x" % prog in frames[0], frames[0]
    # spanshimd adds file:line from the binary's DWARF, matched by build id.
    src = os.path.join(os.path.dirname(__file__), "..", "progs", "stack_orders.c")
    with open(src) as f:
        line = [i for i, l in enumerate(f, 1) if "LOAD_ORDERS_CONNECT" in l][0]
    assert frames[0].endswith("stack_orders.c:%d" % line), frames[0]
    mods = a["spanshim.stack.modules"]
    assert any(m.endswith(" " + prog) and len(m.split()[0]) == 40 for m in mods), mods
    # The same as a span event on the failed span.
    [ev] = conn.events
    assert ev["name"] == "exception"
    assert harness.attrs_dict(ev["attributes"])["exception.stacktrace"] == \
        a["exception.stacktrace"]


def test_stripped_binary_gives_module_and_offset_frames(ctx):
    stripped = os.path.join(ctx.tmp, "stack_orders_stripped")
    shutil.copy(ctx.prog("stack_orders"), stripped)
    subprocess.run(["strip", "--strip-all", stripped], check=True)
    c, out = run(ctx, "one", binary=stripped)
    exc = exceptions(c)
    [(res, rec, a)] = exc
    frames = a["exception.stacktrace"].splitlines()
    assert frames and "load_orders" not in a["exception.stacktrace"], frames
    assert "stack_orders.c:" not in a["exception.stacktrace"], "no debug info, no lines"
    assert "(%s+0x" % stripped in frames[0], frames


def test_failures_from_eight_threads_each_get_one_exception_record(ctx):
    """400 failures from 8 threads, then exit: every failed span and every exception
    record is delivered or counted (received + dropped = 400 for each, in /stats and in
    the process's drop reports, however loaded the machine); a record is its span's only
    one, and carries the stack into the thread's code."""
    c, out = run(ctx, "threads")
    pid = int(out["pid"])
    assert int(out["failed"]) == 400, out
    st, spans = harness.check_exact(c, {pid: 400}, 400, pids_logs={pid: 400})
    exc = harness.exception_records(c.out)
    failed = failed_calls(spans)
    assert len(failed) == len(spans), [s for s in spans if s not in failed][:3]
    ids = [rec["spanId"] for _, rec, _ in exc]
    assert len(set(ids)) == len(ids), "a span with two exception records"
    # A record whose span was not delivered names one of the spans counted dropped, and
    # a delivered span without its record is one of the records counted dropped.
    failed_ids = {s.span_id for s in failed}
    assert len(set(ids) - failed_ids) <= st["shim_spans_dropped"], st
    assert len(failed_ids - set(ids)) <= st["shim_logs_dropped"], st
    assert all(" in load_orders " in a["exception.stacktrace"] and
               " in worker " in a["exception.stacktrace"] for _, _, a in exc)


def test_failure_inside_a_signal_handler_is_traced(ctx):
    c, out = run(ctx, "signal")
    exc = exceptions(c)
    [(res, rec, a)] = exc
    st = a["exception.stacktrace"]
    assert " in load_orders " in st and " in on_alarm " in st, st


def test_failure_ten_thousand_frames_deep_is_cut_at_the_stack_depth(ctx):
    c, out = run(ctx, "recurse")
    [(res, rec, a)] = exceptions(c)
    frames = a["exception.stacktrace"].splitlines()
    assert 20 <= len(frames) <= 32, len(frames)
    assert " in load_orders " in frames[0] and all(" in descend " in f for f in frames[1:])
    c2, _ = run(ctx, "recurse", extra={"SPANSHIM_STACK_DEPTH": "100"})
    [(res, rec, a)] = exceptions(c2)
    assert len(a["exception.stacktrace"].splitlines()) == 100


def test_failure_on_a_small_thread_stack_is_traced(ctx):
    c, out = run(ctx, "smallstack")
    exc = exceptions(c)
    assert len(exc) == 50 and int(out["failed"]) == 50


def test_dns_failure_carries_a_stack_into_resolve_orders(ctx):
    c, out = run(ctx, "dns")
    spans = c.spans()
    [g] = [s for s in spans if s.name == "getaddrinfo"]
    assert g.attrs.get("code.function.name") == "resolve_orders", g
    [(res, rec, a)] = exceptions(c)
    assert a["exception.type"] == "EAI_NONAME" and " in resolve_orders " in \
        a["exception.stacktrace"], a


def test_exception_signal_settings(ctx):
    c, _ = run(ctx, "one", extra={"OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN": "logs"})
    spans = c.spans()
    assert len(exceptions(c)) == 1
    assert all(not s.events for s in spans)
    c2, _ = run(ctx, "one", extra={"SPANSHIM_EXCEPTION_SIGNAL": "event"})
    spans = c2.spans()
    assert exceptions(c2) == []
    assert [e["name"] for s in spans for e in s.events] == ["exception"]
    c3, _ = run(ctx, "one", extra={"SPANSHIM_STACK_DEPTH": "0"})
    [(res, rec, a)] = exceptions(c3)
    assert "exception.stacktrace" not in a and a["exception.type"] == "ECONNREFUSED"


def test_curl_failure_carries_a_stack_and_one_record_per_failed_span(ctx):
    c = ctx.collector()
    r = ctx.run(["curl", "-s", "http://127.0.0.1:%d/" % closed_port(ctx)], collector=c)
    assert r.returncode == 7, r
    spans = c.spans()
    exc = exceptions(c)
    failed = failed_calls(spans)
    assert failed and len(exc) == len(failed), (failed, exc)
    assert {rec["spanId"] for _, rec, _ in exc} == {s.span_id for s in failed}
    for _, _, a in exc:
        assert "/curl+0x" in a["exception.stacktrace"], a["exception.stacktrace"]


def test_waterfall_shows_the_stack_under_the_failed_span(ctx):
    c, out = run(ctx, "one")
    c.stop()
    r = subprocess.run([ctx.spanshim, "view", "--no-color", c.out], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r
    lines = r.stdout.decode().splitlines()
    at = [i for i, l in enumerate(lines) if "connect 127.0.0.1" in l and "ECONNREFUSED" in l]
    assert at, lines
    assert "#0 0x" in lines[at[0] + 1] and " in load_orders " in lines[at[0] + 1], lines


def test_libpq_failure_carries_a_stack_into_query_orders(ctx):
    pg = ctx.postgres()
    c = ctx.collector()
    r = ctx.run([ctx.prog("stack_pq"), pg.dsn()], collector=c)
    assert r.returncode == 0 and b"failed=1" in r.stdout, r
    spans = c.spans()
    exc = exceptions(c)
    [q] = [s for s in spans if s.attrs.get("db.response.status_code") == "42P01"]
    assert q.status_code == ERROR and q.attrs.get("code.function.name") == "query_orders", q
    mine = [a for _, rec, a in exc if rec["spanId"] == q.span_id]
    assert len(mine) == 1 and " in query_orders " in mine[0]["exception.stacktrace"], exc
    assert "42" not in mine[0].get("exception.message", "").replace("42P01", ""), mine
    assert len(exc) == len(failed_calls(spans))
