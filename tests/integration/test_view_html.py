"""The HTML report (`spanshim view --html`, `spanshim run --html`; issue 17) opened in
Debian's chromium, headless, driven through playwright-core (tests/browser/drive.js,
installed with `npm ci` from the committed package-lock.json). Assertions are on what a
user sees in the page: the trace list, the waterfall, the span panel with its stack, the
services table, what keys and clicks do; and that the page requests nothing but itself
(the network is blocked and every request recorded)."""
import fcntl
import json
import os
import shutil
import subprocess
import time

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(os.path.dirname(HERE), "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
BASE = 1_700_000_000_000_000_000


def browser_ready():
    """node, chromium and playwright-core (npm ci once, under a lock) or a Skip."""
    if not os.access(CHROMIUM, os.X_OK):
        harness.skip("no chromium at %s (tools/deps.sh installs Debian's chromium)" % CHROMIUM)
    if not shutil.which("node") or not shutil.which("npm"):
        harness.skip("no node/npm (tools/deps.sh installs nodejs and npm)")
    marker = os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")
    with open(os.path.join(BROWSER_DIR, ".npm-ci.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(marker):
            r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                               capture_output=True, timeout=600)
            if r.returncode != 0:
                harness.skip("npm ci in tests/browser failed: %s" % r.stderr.decode()[-500:])


def drive(ctx, report, steps, timeout=300):
    """Opens report in chromium, runs steps (see drive.js); returns its JSON result."""
    browser_ready()
    steps_path = os.path.join(ctx.tmp, "steps-%d.json" % time.monotonic_ns())
    with open(steps_path, "w") as f:
        json.dump(steps, f)
    r = subprocess.run(["node", os.path.join(BROWSER_DIR, "drive.js"), report, steps_path],
                       capture_output=True, timeout=timeout,
                       env=dict(os.environ, CHROMIUM=CHROMIUM))
    assert r.stdout, r.stderr.decode()[-3000:]
    res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert r.returncode == 0, (res.get("errors"), r.stderr.decode()[-3000:])
    return res


def assert_offline(res, report):
    url = "file://" + os.path.abspath(report)
    assert res["requests"] == [url], res["requests"]
    assert res["blocked"] == [] and res["violations"] == [] and res["errors"] == [], res


def rows(snap):
    return [s["name"] for s in snap["spans"]]


def test_run_html_report_shows_process_tree_waterfall_and_failing_stack(ctx):
    pg = ctx.postgres()
    web = ctx.http_server()
    out, report = os.path.join(ctx.tmp, "run.jsonl"), os.path.join(ctx.tmp, "report.html")
    script = ("curl -s %s/ >/dev/null; psql -X -h 127.0.0.1 -p %d -U %s -c 'select 1' "
              ">/dev/null; curl -s http://127.0.0.1:1/; true" % (web.url, pg.port, pg.superuser))
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out, "--html", report, "--",
                        "sh", "-c", script], capture_output=True, timeout=180, cwd=ctx.tmp)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(report) > 0
    html = open(report, encoding="utf-8").read()
    assert "http://" not in html.split("<script")[0] and "<link" not in html  # nothing external
    shot = os.path.join(ctx.build, "docs", "report.png")
    os.makedirs(os.path.dirname(shot), exist_ok=True)
    res = drive(ctx, report, [
        {"snap": "start"},
        {"screenshot": shot},
        {"key": "ArrowDown"}, {"snap": "down"},
        {"key": "Home"}, {"snap": "home"},
        {"key": "ArrowLeft"}, {"snap": "collapsed"},
        {"key": "ArrowRight"}, {"snap": "expanded"},
        {"click": "#wf-body .vl-rows > .row:nth-child(2) .nm"}, {"snap": "clicked"},
        {"key": "/"}, {"snap": "slash"},
        {"type": ["#search", "select ?"]}, {"snap": "search"},
        {"type": ["#search", "no-such-thing-anywhere"]}, {"snap": "nomatch"},
        {"type": ["#search", ""]},
        {"click": "#tab-services"}, {"snap": "services"},
    ])
    assert_offline(res, report)
    s = res["snaps"]["start"]
    # One trace: the shell and everything it ran.
    assert len(s["traces"]) == 1 and s["traces"][0]["err"] and s["traces"][0]["sel"], s["traces"]
    svcs, root = s["traces"][0]["cells"][0], s["traces"][0]["cells"][1]
    assert "unknown_service:curl" in svcs and root in ("dash", "sh"), s["traces"]
    names = rows(s)
    assert names[0] in ("dash", "sh") and names.count("curl") == 2, names
    assert "psql" in names and "SELECT" in names and "connect postgresql" in names, names
    assert "GET" in names and "connect" in names, names
    chips = [x["chip"] for x in s["spans"] if x["chip"]]
    assert len(chips) >= 4 and any(c.startswith("curl ") for c in chips), chips  # processes
    assert sum(1 for x in s["spans"] if x["err"]) >= 3
    assert s["axis"][0] == "0" and len(s["axis"]) >= 3
    # The first failing span with a stack is selected: libcurl's GET to port 1.
    p = s["panel"]
    assert p["name"] == "GET" and "error" in p["badges"] and "client" in p["badges"], p
    assert p["exception"]["type"] == "CURLE_COULDNT_CONNECT", p["exception"]
    assert p["exception"]["frames"] and p["exception"]["frames"][0].startswith("#0 "), p
    assert any("libcurl" in f or "curl" in f for f in p["exception"]["frames"])
    assert ["url.full", "http://127.0.0.1:1/"] in p["attrs"], p["attrs"]
    assert ["service.name", "unknown_service:curl"] in p["resource"]
    sel = [x["name"] for x in s["spans"] if x["sel"]]
    assert sel == ["GET"]
    # Arrow down: the next span (the refused connect under it).
    d = res["snaps"]["down"]
    assert [x["name"] for x in d["spans"] if x["sel"]] == ["connect"]
    assert d["panel"]["name"] == "connect" and d["panel"]["exception"]["type"] == "ECONNREFUSED"
    # Home: the root; left collapses it to one row, right opens it again.
    assert res["snaps"]["home"]["spans"][0]["sel"]
    assert rows(res["snaps"]["collapsed"]) == [names[0]]
    assert res["snaps"]["collapsed"]["spans"][0]["tog"] == "▸"
    assert rows(res["snaps"]["expanded"]) == names
    # A click selects.
    c = res["snaps"]["clicked"]
    assert c["panel"]["name"] == names[1] and [x["sel"] for x in c["spans"]][1]
    # "/" focuses the search box; searching marks the spans that match.
    assert res["snaps"]["slash"]["active"] == "search"
    q = res["snaps"]["search"]
    hits = {x["name"] for x in q["spans"] if x["hit"]}
    # The query, and the processes whose command lines hold it (sh -c '... select 1').
    assert "SELECT" in hits and hits <= {"SELECT", "psql", "perl", "dash", "sh"}, q["spans"]
    assert q["matchCount"] == "1 trace"
    assert res["snaps"]["nomatch"]["matchCount"] == "0 of 1 trace"
    assert res["snaps"]["nomatch"]["traces"] == []
    # Services: the RED table (service, span, kind, count, rate, errors, error %, ...).
    sv = res["snaps"]["services"]
    assert sv["servicesVisible"]
    by = {(row[0], row[1]): row for row in sv["services"]}
    get = by[("unknown_service:curl", "GET")]
    assert get[2] == "client" and get[3] == "2" and get[5] == "1" and get[6] == "50.0%", get
    assert ("unknown_service:psql", "SELECT") in by, list(by)


def test_span_data_is_shown_as_text_never_as_markup(ctx):
    evil = '</script><script>document.title="pwned"</script><img src="http://127.0.0.1:9/x">'
    path = os.path.join(ctx.tmp, "evil.jsonl")
    span = {"traceId": "%032x" % 0xabc, "spanId": "%016x" % 1, "name": evil, "kind": 1,
            "startTimeUnixNano": str(BASE), "endTimeUnixNano": str(BASE + 1000),
            "attributes": [{"key": "<b>k</b>", "value": {"stringValue": "<!-- " + evil}}],
            "status": {"code": 2, "message": "<i>bad</i>"}}
    doc = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "<svc>"}}]},
        "scopeSpans": [{"spans": [span]}]}]}
    open(path, "w").write(json.dumps(doc) + "\n")
    report = os.path.join(ctx.tmp, "evil.html")
    r = subprocess.run([ctx.spanshim, "view", "--html", report, path], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pwned" not in open(report, encoding="utf-8").read()  # only base64 inside
    res = drive(ctx, report, [{"snap": "s"}])
    assert_offline(res, report)
    s = res["snaps"]["s"]
    assert s["panel"]["name"] == evil and s["spans"][0]["name"] == evil
    assert ["<b>k</b>", "<!-- " + evil] in s["panel"]["attrs"]
    assert s["traces"][0]["cells"][0] == "<svc>"


def gen_spans(path, n_traces, per):
    """n_traces traces of `per` spans each: a tree three wide, 7 services, 1% errors."""
    names = ["GET /api/orders", "SELECT orders", "connect", "getaddrinfo"]
    with open(path, "w") as f:
        for t in range(n_traces):
            spans = []
            start = BASE + t * 10_000_000
            for i in range(per):
                s = {"traceId": "%032x" % (t + 1), "spanId": "%016x" % (t * per + i + 1),
                     "name": names[i % 4], "kind": 1 + i % 3,
                     "startTimeUnixNano": str(start + i * 1000),
                     "endTimeUnixNano": str(start + i * 1000 + 100 + (i * 7919 + t) % 5_000_000),
                     "attributes": [
                         {"key": "url.full", "value": {"stringValue":
                                                       "http://example.internal/o/%d" % (t * per + i)}},
                         {"key": "server.port", "value": {"intValue": "8080"}},
                         {"key": "db.query.text", "value": {"stringValue":
                                                            "SELECT * FROM orders WHERE id = ?"}}]}
                if i:
                    s["parentSpanId"] = "%016x" % (t * per + (i - 1) // 3 + 1)
                if (t * per + i) % 100 == 99:
                    s["status"] = {"code": 2, "message": "boom"}
                spans.append(s)
            res = {"attributes": [{"key": "service.name", "value": {"stringValue": "svc%d" % (t % 7)}},
                                  {"key": "process.pid", "value": {"intValue": str(1000 + t % 50)}}]}
            f.write(json.dumps({"resourceSpans": [{"resource": res, "scopeSpans": [
                {"scope": {"name": "gen"}, "spans": spans}]}]}) + "\n")


def test_report_of_100k_spans_loads_virtualized_and_usable(ctx):
    """100k spans: the page is ready and only the rows in view exist. The time to ready is
    printed (the issue's bound is 2 s on an idle machine, measured by `make bench`); here
    it only has to load at all on a loaded machine."""
    src, report = os.path.join(ctx.tmp, "big.jsonl"), os.path.join(ctx.tmp, "big.html")
    gen_spans(src, 1000, 100)
    r = subprocess.run([ctx.spanshim, "view", "--html", report, src], capture_output=True,
                       timeout=300)
    assert r.returncode == 0 and b"100000 spans written" in r.stderr, r.stderr
    res = drive(ctx, report, [{"snap": "s"}, {"key": "j"}, {"snap": "next"},
                              {"click": "#tlist-head > div:nth-child(4)"}, {"snap": "by_dur"},
                              {"type": ["#search", "/o/99999"]}, {"snap": "found"}], timeout=600)
    assert_offline(res, report)
    print("100k-span report: %d bytes, ready %d ms after navigation (%d ms to the test); "
          "renderer main-thread CPU %d ms" % (os.path.getsize(report), res["readyMs"],
                                               res["loadMs"], res["cpu"]["mainThreadMs"]))
    s = res["snaps"]["s"]
    assert s["status"].startswith("100000 spans in 1000 traces"), s["status"]
    assert 0 < len(s["traces"]) < 120 and 0 < len(s["spans"]) < 120  # virtualized
    assert s["traces"][0]["sel"] and s["title"].startswith("trace " + "%032x" % 1)
    assert res["snaps"]["next"]["title"].startswith("trace " + "%032x" % 2)
    durs = [x["cells"][3] for x in res["snaps"]["by_dur"]["traces"]]
    assert durs and res["snaps"]["by_dur"]["traces"][0]["sel"] is not None
    f = res["snaps"]["found"]
    assert f["matchCount"] == "1 of 1000 traces" and f["title"].startswith("trace " + "%032x" % 1000)
    assert [x["name"] for x in f["spans"] if x["sel"]] and f["panel"]["attrs"]


def test_stack_frames_show_function_and_file_line_from_debug_info(ctx):
    """A program built with debug info fails a connect: the panel's stack names the
    function and the source line spanshimd found in its DWARF."""
    out, report = os.path.join(ctx.tmp, "run.jsonl"), os.path.join(ctx.tmp, "stack.html")
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out, "--html", report, "--",
                        ctx.prog("stack_orders"), "one", "1"], capture_output=True,
                       timeout=120, cwd=ctx.tmp)
    assert r.returncode == 0, r.stderr
    src = os.path.join(HERE, "..", "progs", "stack_orders.c")
    with open(src) as f:
        line = [i for i, ln in enumerate(f, 1) if "LOAD_ORDERS_CONNECT" in ln][0]
    res = drive(ctx, report, [{"snap": "s"}])
    assert_offline(res, report)
    p = res["snaps"]["s"]["panel"]
    assert p["name"] == "connect" and p["exception"]["type"] == "ECONNREFUSED", p
    assert p["exception"]["fns"][0] == "load_orders", p["exception"]
    assert p["exception"]["src"][0].endswith("stack_orders.c:%d" % line), p["exception"]
    assert "main" in p["exception"]["fns"], p["exception"]
