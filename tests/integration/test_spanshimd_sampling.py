"""Tail sampling in spanshimd as a user sees it in the output file and the upstream: errors
and slow spans keep their whole trace, the ratio is deterministic by trace id (the same
set of traces on every run and every collector), late spans, and the memory bound."""
import os
import random
import struct
import time

import test_spanshimd as t
import test_spanshimd_upstream as u


def tid(n):
    return struct.pack(">QQ", 0xABC0000000000000 + n, 0xFFFFFFFFFFFFFF00 + (n & 0xFF))


def span(trace, sid, name, status=None, dur=1000, parent=b""):
    return t.span(trace, struct.pack(">Q", sid), name, 1, 10**18, 10**18 + dur, {},
                  parent=parent, status=status)


def send(col, spans):
    assert t.exchange(col, t.post("/v1/traces", t.traces_request(spans)))[0] == 200


def names(col):
    return sorted(s.name for s in col.spans())


def test_ratio_0_keeps_a_failing_trace_whole_and_drops_a_successful_one(ctx):
    col = ctx.collector(["--sample-ratio", "0", "--decision-wait", "300ms"])
    bad, good = tid(1), tid(2)
    send(col, [span(bad, 1, "bad.root"), span(good, 11, "good.root")])
    send(col, [span(bad, 2, "bad.child", parent=struct.pack(">Q", 1)),
               span(good, 12, "good.child")])
    time.sleep(0.1)
    assert t.stats(col)["sampling"]["held_spans"] == 4
    send(col, [span(bad, 3, "bad.query", status=(2, "relation does not exist"))])
    send(col, [span(bad, 4, "bad.after")])  # after the decision: kept at once
    time.sleep(0.6)  # past the window: the good trace is dropped
    st = t.stats(col)["sampling"]
    assert st["kept_traces_error"] == 1 and st["dropped_traces"] == 1
    assert st["kept_spans"] == 4 and st["dropped_spans"] == 2 and st["held_spans"] == 0
    got = col.spans()
    assert sorted(s.name for s in got) == ["bad.after", "bad.child", "bad.query", "bad.root"]
    assert {s.trace_id for s in got} == {bad.hex()}
    assert all(s.resource == {"service.name": "test"} for s in got)
    q = [s for s in got if s.name == "bad.query"][0]
    assert q.status_code == 2 and q.status_message == "relation does not exist"


def test_ratio_is_deterministic_by_trace_id_and_matches_the_rule(ctx):
    rnd = random.Random(7)
    ids = [bytes(rnd.getrandbits(8) for _ in range(16)) for _ in range(300)]
    want = sorted(x.hex() for x in ids if int.from_bytes(x[8:], "big") < 0.25 * 2**64)
    runs = []
    for _ in range(2):
        col = ctx.collector(["--sample-ratio", "0.25", "--decision-wait", "100ms"])
        for k in range(0, 300, 50):
            send(col, [span(x, k + i + 1, "s") for i, x in enumerate(ids[k:k + 50])])
        time.sleep(0.3)
        runs.append(sorted(s.trace_id for s in col.spans()))
    assert runs[0] == runs[1] == want
    assert 40 < len(want) < 110


def test_keep_slower_than_keeps_slow_traces_only(ctx):
    col = ctx.collector(["--sample-ratio", "0", "--keep-slower-than", "250ms",
                         "--decision-wait", "200ms"])
    slow, fast = tid(3), tid(4)
    send(col, [span(slow, 1, "slow.root"), span(slow, 2, "slow.io", dur=300_000_000),
               span(fast, 3, "fast.root", dur=10_000_000)])
    time.sleep(0.5)
    assert names(col) == ["slow.io", "slow.root"]


def test_late_error_span_of_a_dropped_trace_is_kept(ctx):
    col = ctx.collector(["--sample-ratio", "0", "--decision-wait", "100ms"])
    tr = tid(5)
    send(col, [span(tr, 1, "early")])
    time.sleep(0.4)
    send(col, [span(tr, 2, "late.ok")])
    send(col, [span(tr, 3, "late.error", status=(2, "boom"))])
    send(col, [span(tr, 4, "after.error")])
    assert names(col) == ["after.error", "late.error"]


def test_memory_bound_evicts_oldest_undecided_traces_and_counts(ctx):
    col = ctx.collector(["--sample-ratio", "0", "--decision-wait", "10s",
                         "--sample-buffer", "64k"])
    for k in range(40):
        send(col, [span(tid(1000 + k * 10 + i), k * 10 + i + 1, "x" * 200)
                   for i in range(10)])
    st = t.stats(col)["sampling"]
    assert st["held_bytes"] <= 64 * 1024
    assert st["evicted_spans"] > 0
    assert st["held_spans"] + st["dropped_spans"] == 400
    # The newest traces are still held: an error in one keeps it.
    send(col, [span(tid(1000 + 399), 9999, "err", status=(2, "e"))])
    assert names(col) == ["err", "x" * 200]


def test_sampled_traces_go_upstream_and_logs_are_untouched(ctx):
    srv = u.otlp_server(ctx)
    col = ctx.collector(["--sample-ratio", "0", "--decision-wait", "100ms",
                         "--otlp-endpoint", srv.url])
    send(col, [span(tid(6), 1, "up.ok")])
    send(col, [span(tid(7), 2, "up.err", status=(2, "x"))])
    body = t.logs_request("exception", "boom", tid(6), struct.pack(">Q", 1))
    assert t.exchange(col, t.post("/v1/logs", body))[0] == 200
    time.sleep(0.4)
    assert [s["name"] for s in srv.spans()] == ["up.err"]
    assert u.wait_for(lambda: any(r["path"] == "/v1/logs" for r in srv.requests))
    assert os.path.getsize(col.out) > 0


def test_bad_sampling_flags_are_refused(ctx):
    import subprocess
    for args in (["--sample-ratio", "1.5"], ["--sample-ratio", "x"],
                 ["--keep-slower-than", "fast"], ["--sample-buffer", "-1"]):
        r = subprocess.run([ctx.spanshimd, "--socket", os.path.join(ctx.tmp, "x.sock")] + args,
                           capture_output=True, timeout=10)
        assert r.returncode == 2 and r.stderr, args
