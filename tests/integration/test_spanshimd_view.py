"""`spanshim view --perfetto OUT.json` (Chrome trace event JSON, as ui.perfetto.dev and
chrome://tracing read it) and the waterfall's summary of the slowest and failing spans,
on a spans file written by a real spanshimd."""
import json
import os
import struct
import subprocess

import test_spanshimd as t

T1 = bytes.fromhex("11111111111111111111111111111111")
T2 = bytes.fromhex("22222222222222222222222222222222")
BASE = 1_700_000_000_000_000_000


def sid(i):
    return struct.pack(">Q", i)


def spans_file(ctx):
    col = ctx.collector()
    web = [t.span(T1, sid(1), "GET /checkout", 2, BASE, BASE + 900_000_000, {"n": 1}),
           t.span(T1, sid(2), "SELECT orders", 3, BASE + 1_000_000, BASE + 301_000_000,
                  {"db.system.name": "postgresql", "ok": True, "r": 0.5}, parent=sid(1)),
           t.span(T1, sid(3), "connect", 3, BASE + 400_000_000, BASE + 400_000_500,
                  {"server.address": "pay.internal"}, parent=sid(1),
                  status=(2, "connection refused")),
           t.span(T1, sid(5), "overlap", 1, BASE + 200_000_000, BASE + 500_000_000, {},
                  parent=sid(1))]
    job = [t.span(T2, sid(4), "getaddrinfo", 1, BASE + 5_000, BASE + 6_000, {})]
    for sps, res in ((web, {"service.name": "web", "process.pid": 42}),
                     (job, {"service.name": "job", "process.pid": 43})):
        assert t.exchange(col, t.post("/v1/traces", t.traces_request(sps, resource=res)))[0] == 200
    col.stop()
    return col.out


def test_perfetto_json_has_processes_tracks_and_exact_times(ctx):
    src = spans_file(ctx)
    out = os.path.join(ctx.tmp, "trace.json")
    r = subprocess.run([ctx.spanshim, "view", "--perfetto", out, src], capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert b"5 spans written to" in r.stderr and r.stdout == b""
    doc = json.load(open(out))
    assert doc["displayTimeUnit"] == "ns"
    ev = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e["name"] == "process_name"}
    assert procs == {42: "web", 43: "job"}
    xs = {e["name"]: e for e in ev if e["ph"] == "X"}
    assert set(xs) == {"GET /checkout", "SELECT orders", "connect", "getaddrinfo", "overlap"}
    root, q, c = xs["GET /checkout"], xs["SELECT orders"], xs["connect"]
    assert root["ts"] == 0 and root["dur"] == 900000
    assert q["ts"] == 1000 and q["dur"] == 300000 and q["cat"] == "client"
    assert c["dur"] == 0.5  # nanoseconds kept as decimals of a microsecond
    assert c["args"]["status"] == "ERROR" and c["args"]["status_message"] == "connection refused"
    assert q["args"]["ok"] is True and q["args"]["r"] == 0.5 and root["args"]["n"] == 1
    assert q["args"]["parent_id"] == "0000000000000001" and q["args"]["trace_id"] == T1.hex()
    assert xs["getaddrinfo"]["pid"] == 43 and xs["getaddrinfo"]["ts"] == 5
    # Same track only when properly nested: "overlap" crosses "SELECT orders".
    assert q["tid"] == root["tid"] == c["tid"]
    assert xs["overlap"]["tid"] != q["tid"]
    for e in ev:
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0


def test_perfetto_to_stdout_and_bad_input(ctx):
    src = spans_file(ctx)
    r = subprocess.run([ctx.spanshim, "view", "--perfetto", "-", src], capture_output=True,
                       timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["traceEvents"]
    bad = os.path.join(ctx.tmp, "bad.jsonl")
    open(bad, "w").write("not json\n")
    r = subprocess.run([ctx.spanshim, "view", "--perfetto", os.path.join(ctx.tmp, "o.json"), bad],
                       capture_output=True, timeout=30)
    assert r.returncode == 1 and b"nothing readable" in r.stderr


def test_waterfall_summary_lists_slowest_and_failing_spans(ctx):
    src = spans_file(ctx)
    r = subprocess.run([ctx.spanshim, "view", src], capture_output=True, timeout=30)
    assert r.returncode == 0
    out = r.stdout.decode()
    assert "\033[" not in out  # piped: plain
    lines = out.splitlines()
    i = [k for k, ln in enumerate(lines) if ln.startswith("slowest")][0]
    assert "GET /checkout" in lines[i] and "web (pid 42)" in lines[i] and "900 ms" in lines[i]
    assert "SELECT orders" in lines[i + 2] or "SELECT orders" in lines[i + 1]
    fail = [ln for ln in lines if ln.startswith("failing")]
    assert len(fail) == 1 and "connect" in fail[0] and "connection refused" in fail[0]
    assert lines[-1] == "5 spans in 2 traces"
