"""spanshimd --metrics: the Prometheus text exposition parses (our own strict parser and
promtool), matches the spans sent (counts, errors, histogram buckets by service, span
name and peer), bounds its series, and a real Prometheus server scrapes it."""
import json
import os
import re
import shutil
import struct
import subprocess
import time
import urllib.request

import test_spanshimd as t
import test_spanshimd_upstream as u

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """Strict parse of the text format: returns {(name, frozenset(labels)): value} and the
    TYPE of each family; raises on anything malformed."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert typ in ("counter", "gauge", "histogram"), line
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "bad sample line: %r" % line
        labels = {}
        rest = m.group(3) or ""
        while rest:
            lm = LABEL.match(rest)
            assert lm, "bad labels: %r" % line
            labels[lm.group(1)] = lm.group(2).encode().decode("unicode_escape")
            rest = rest[lm.end():]
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return samples, types


def metrics_port(col):
    deadline = time.monotonic() + 5
    while "/metrics" not in col.stderr() and time.monotonic() < deadline:
        time.sleep(0.01)
    return int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", col.stderr()).group(1))


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def lbl(service, name, peer, kind="client", **extra):
    d = {"service": service, "span_name": name, "span_kind": kind, "peer": peer}
    d.update(extra)
    return frozenset(d.items())


def send_workload(col):
    def sp(i, name, dur_ns, peer=None, err=False):
        attrs = {"server.address": peer} if peer else {}
        return t.span(t.TRACE_ID, struct.pack(">Q", i), name, 3, 10**18, 10**18 + dur_ns,
                      attrs, status=(2, "x") if err else None)
    spans = [sp(1, "connect", 2_000_000, "db.internal"),       # 2 ms
             sp(2, "connect", 30_000_000, "db.internal", True),  # 30 ms, error
             sp(3, "connect", 700_000_000, "db.internal"),      # 0.7 s
             sp(4, "SELECT orders", 50_000, "db.internal")]
    body = t.traces_request(spans, resource={"service.name": 'shop "web"'})
    assert t.exchange(col, t.post("/v1/traces", body))[0] == 200
    body = t.traces_request([sp(5, "getaddrinfo", 1000)], resource={"service.name": "batch"})
    assert t.exchange(col, t.post("/v1/traces", body))[0] == 200


def test_a_servers_callers_make_no_series_of_their_own(ctx):
    """A SERVER span's server.address is the Host header its client sent, and its
    network.peer.address is the client: as a label, any client could make series at
    will (50 Hosts made 50 series) and push real ones into _overflow. Server spans count
    under peer="", whoever called."""
    col = ctx.collector(["--metrics", "127.0.0.1:0"])
    port = metrics_port(col)
    spans = [t.span(t.TRACE_ID, struct.pack(">Q", i + 1), "GET", 2, 10**18, 10**18 + 1000,
                    {"server.address": "evil%d" % i, "network.peer.address": "10.0.0.%d" % i})
             for i in range(50)]
    spans.append(t.span(t.TRACE_ID, struct.pack(">Q", 99), "GET", 3, 10**18, 10**18 + 1000,
                        {"server.address": "inventory"}))
    body = t.traces_request(spans, resource={"service.name": "orders"})
    assert t.exchange(col, t.post("/v1/traces", body))[0] == 200
    s, _ = parse(scrape(port)[2])
    series = {k[1] for k in s if k[0] == "spanshim_spans_total"}
    assert series == {lbl("orders", "GET", "", kind="server"),
                      lbl("orders", "GET", "inventory")}, series
    assert s[("spanshim_spans_total", lbl("orders", "GET", "", kind="server"))] == 50


def test_metrics_match_the_spans_sent_and_parse(ctx):
    col = ctx.collector(["--metrics", "127.0.0.1:0"])
    port = metrics_port(col)
    send_workload(col)
    t.exchange(col, t.post("/v1/traces", b"\xff\xff"))  # one bad protobuf
    st, ctype, text = scrape(port)
    assert st == 200 and ctype.startswith("text/plain; version=0.0.4")
    s, types = parse(text)
    web = 'shop "web"'
    assert s[("spanshim_spans_total", lbl(web, "connect", "db.internal"))] == 3
    assert s[("spanshim_span_errors_total", lbl(web, "connect", "db.internal"))] == 1
    assert s[("spanshim_spans_total", lbl(web, "SELECT orders", "db.internal"))] == 1
    assert s[("spanshim_spans_total", lbl("batch", "getaddrinfo", ""))] == 1
    b = lambda le: s[("spanshim_span_duration_seconds_bucket",
                      lbl(web, "connect", "db.internal", le=le))]
    assert (b("0.001"), b("0.0025"), b("0.025"), b("0.05"), b("0.5"), b("1"), b("+Inf")) == \
        (0, 1, 1, 2, 2, 3, 3)
    assert abs(s[("spanshim_span_duration_seconds_sum", lbl(web, "connect", "db.internal"))]
               - 0.732) < 1e-6
    assert s[("spanshim_span_duration_seconds_count", lbl(web, "connect", "db.internal"))] == 3
    assert types["spanshim_span_duration_seconds"] == "histogram"
    assert s[("spanshimd_spans_received_total", frozenset())] == 5
    assert s[("spanshimd_requests_rejected_total",
              frozenset({"reason": "bad_protobuf"}.items()))] == 1
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    # Only GET /metrics is served there; the OTLP paths are not.
    try:
        scrape(port, "/v1/traces")
        assert False, "served /v1/traces on the metrics port"
    except urllib.error.HTTPError as e:
        assert e.code == 404


def test_metrics_include_upstream_and_sampling_counters(ctx):
    srv = u.otlp_server(ctx)
    col = ctx.collector(["--metrics", "127.0.0.1:0", "--otlp-endpoint", srv.url,
                         "--sample-ratio", "1"])
    port = metrics_port(col)
    send_workload(col)
    srv.wait_spans(5)
    u.wait_for(lambda: u.up_stats(col)["exported_items"] == 5)
    s, _ = parse(scrape(port)[2])
    assert s[("spanshimd_upstream_exported_total", frozenset())] == 5
    assert s[("spanshimd_upstream_dropped_total", frozenset())] == 0
    assert s[("spanshimd_upstream_queue_bytes", frozenset())] == 0
    assert s[("spanshimd_sampling_kept_spans_total", frozenset())] == 5


def test_series_are_bounded(ctx):
    col = ctx.collector(["--metrics", "127.0.0.1:0", "--metrics-max-series", "3"])
    port = metrics_port(col)
    sps = [t.span(t.TRACE_ID, struct.pack(">Q", i + 1), "op%d" % i, 1, 1, 2, {})
           for i in range(10)]
    assert t.exchange(col, t.post("/v1/traces", t.traces_request(sps)))[0] == 200
    s, _ = parse(scrape(port)[2])
    names = {dict(k[1])["span_name"] for k in s if k[0] == "spanshim_spans_total"}
    assert names == {"op0", "op1", "op2", "_overflow"}
    assert s[("spanshim_spans_total", lbl("", "_overflow", "", kind=""))] == 7
    assert s[("spanshimd_metrics_series_overflow_total", frozenset())] == 7


def test_a_real_prometheus_scrapes_it(ctx):
    if not shutil.which("prometheus"):
        raise RuntimeError("prometheus is not installed (tools/deps.sh installs it)")
    col = ctx.collector(["--metrics", "127.0.0.1:0"])
    port = metrics_port(col)
    send_workload(col)
    web = u.t_free_port()
    cfg = os.path.join(ctx.tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n"
                "  - job_name: spanshimd\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % port)
    log = open(os.path.join(ctx.tmp, "prometheus.log"), "w")
    p = subprocess.Popen(["prometheus", "--config.file=" + cfg,
                          "--storage.tsdb.path=" + os.path.join(ctx.tmp, "tsdb"),
                          "--web.listen-address=127.0.0.1:%d" % web], stdout=log, stderr=log)
    ctx._cleanup.append(lambda: (p.terminate(), p.wait(10)))

    def query(q):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (web, urllib.request.quote(q))
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())["data"]["result"]
        except OSError:
            return []

    deadline = time.monotonic() + 40
    res = []
    while time.monotonic() < deadline and not res:
        res = query('spanshim_spans_total{span_name="connect"}')
        time.sleep(0.5)
    assert res, "prometheus never scraped spanshimd"
    assert res[0]["metric"]["service"] == 'shop "web"'
    assert res[0]["metric"]["peer"] == "db.internal"
    assert res[0]["value"][1] == "3"
    up = query('up{job="spanshimd"}')
    assert up and up[0]["value"][1] == "1"
    errs = query("sum(spanshim_span_errors_total)")
    assert errs[0]["value"][1] == "1"
