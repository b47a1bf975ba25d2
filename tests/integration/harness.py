"""Helpers for the integration suites: a real spanshimd, programs run under the real shim,
real HTTP servers on loopback, and the exported spans read back from spanshimd's OTLP JSON
lines exactly as a user would read them."""
import contextlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time


# --- skipping ------------------------------------------------------------------------------
# A test whose precondition is missing (not root, no valgrind, ...) says so with
# `skip("why")` instead of returning: run.py counts it as skipped, prints the reason, and under
# SPANSHIM_TEST_STRICT=1 (CI) counts it as a failure, unless the test is marked
# @ci_may_skip("why CI cannot provide this").

class Skip(Exception):
    """Raised by a test that cannot run here; the message is the reason."""


def skip(reason):
    """Ends the calling test as skipped, with reason (never returns)."""
    raise Skip(reason)


def timeout(seconds):
    """Marks a test with a wall-clock guard of its own (run.py's default is 180 s) for a test
    whose work grows on a loaded machine; a guard against hangs, not a speed limit."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


def ci_may_skip(reason):
    """Marks a test as allowed to skip even in strict mode (CI); reason says why CI cannot
    be expected to provide what the test needs."""
    def mark(fn):
        fn.ci_may_skip = reason
        return fn
    return mark


def attr_value(v):
    """Decodes an OTLP JSON AnyValue into a Python value."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return v["boolValue"]
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [attr_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return attrs_dict(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def attrs_dict(lst):
    return {a["key"]: attr_value(a.get("value", {})) for a in lst or []}


class Span:
    """One exported span, flattened with its resource and scope."""

    def __init__(self, raw, resource, scope):
        self.raw = raw
        self.name = raw.get("name", "")
        self.kind = raw.get("kind", 0)
        self.trace_id = raw.get("traceId", "")
        self.span_id = raw.get("spanId", "")
        self.parent_id = raw.get("parentSpanId", "")
        self.start = int(raw.get("startTimeUnixNano", "0"))
        self.end = int(raw.get("endTimeUnixNano", "0"))
        self.attrs = attrs_dict(raw.get("attributes"))
        st = raw.get("status", {})
        self.status_code = st.get("code", 0)
        self.status_message = st.get("message", "")
        self.events = raw.get("events", [])
        self.resource = resource
        self.scope = scope

    def __repr__(self):
        return "Span(%s %s status=%s attrs=%s pid=%s)" % (
            self.name, self.span_id, self.status_code, self.attrs,
            self.resource.get("process.pid"))


def logs_beside(path):
    """The logs file spanshimd writes beside a traces file (tools/common/beside.c's rule)."""
    d, name = os.path.split(path)
    i = name.rfind("traces")
    if i >= 0:
        return os.path.join(d, name[:i] + "logs" + name[i + 6:])
    dot = name.rfind(".")
    if dot <= 0:
        dot = len(name)
    return os.path.join(d, name[:dot] + ".logs" + name[dot:])


def _pid_needle(pid):
    """How spanshimd writes a resource's process.pid (one process's request per line)."""
    return '{"key":"process.pid","value":{"intValue":"%d"}}' % pid


def _docs(path, skip_pid=None):
    """The JSON documents of a traces file and of the logs file beside it; skip_pid: lines
    of that process are not decoded (a process that made a million spans)."""
    needle = _pid_needle(skip_pid) if skip_pid is not None else None
    for p in (path, logs_beside(path)):
        if not os.path.exists(p):
            continue
        with open(p) as f:
            for line in f:
                if needle is not None and needle in line:
                    continue
                line = line.strip()
                if line:
                    yield json.loads(line)


DROP_EVENT = "spanshim.spans.dropped"
LOGS_DROP_EVENT = "spanshim.logs.dropped"

# A Python program making argv[2] failing calls (a refused connect to 127.0.0.1:argv[1]:
# a span and an exception log record each), then printing pid=P; tests append what it
# does next (wait for stdin, exit, die of a signal).
FAILING_CALLS = r"""
import os, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        pass
    s.close()
print("pid=%d" % os.getpid(), flush=True)
"""


def read_jsonl(path, skip_pid=None):
    """Returns (spans, scopes) from an OTLP JSON lines file; scopes lists
    (resource_attrs, scope_attrs) for every ScopeSpans seen, with or without spans, and
    for every drop report the shim sent (a log record with event name
    spanshim.spans.dropped, read from the logs file beside it) (resource_attrs,
    {"spanshim.spans.dropped": the process's total so far}), so dropped_of_pid reads a
    process's count from either."""
    spans, scopes = [], []
    for doc in _docs(path, skip_pid):
        for rs in doc.get("resourceSpans", []):
            res = attrs_dict(rs.get("resource", {}).get("attributes"))
            for ss in rs.get("scopeSpans", []):
                scope = ss.get("scope", {})
                sattrs = attrs_dict(scope.get("attributes"))
                scopes.append((res, sattrs))
                for sp in ss.get("spans", []):
                    spans.append(Span(sp, res, sattrs))
        for rl in doc.get("resourceLogs", []):
            res = attrs_dict(rl.get("resource", {}).get("attributes"))
            for sl in rl.get("scopeLogs", []):
                for lr in sl.get("logRecords", []):
                    if lr.get("eventName") != DROP_EVENT:
                        continue
                    la = attrs_dict(lr.get("attributes"))
                    scopes.append((res, {DROP_EVENT: la.get(DROP_EVENT + ".total", 0)}))
    return spans, scopes


def _log_records(path, skip_pid=None):
    """Every log record beside a traces file, as (resource_attrs, record, record_attrs)."""
    for doc in _docs(path, skip_pid):
        for rl in doc.get("resourceLogs", []):
            res = attrs_dict(rl.get("resource", {}).get("attributes"))
            for sl in rl.get("scopeLogs", []):
                for lr in sl.get("logRecords", []):
                    yield res, lr, attrs_dict(lr.get("attributes"))


def drop_reports(path, skip_pid=None, event=DROP_EVENT):
    """The shim's drop reports beside an OTLP JSON lines traces file: a list of
    (resource_attrs, items this report counts, the process's total so far); event
    DROP_EVENT for spans, LOGS_DROP_EVENT for exception log records."""
    return [(res, la.get(event, 0), la.get(event + ".total", 0))
            for res, lr, la in _log_records(path, skip_pid) if lr.get("eventName") == event]


def exception_records(path, skip_pid=None):
    """The exception log records beside a traces file (event names per semconv:
    `exception`, `db.client.operation.exception`...), as (resource_attrs, record, attrs)."""
    return [(res, lr, la) for res, lr, la in _log_records(path, skip_pid)
            if (lr.get("eventName") or "").endswith("exception")]


def unix_http(sock_path, request, timeout=30):
    """Sends one HTTP/1.1 request (bytes, `Connection: close`) on a Unix socket and reads
    the answer to its end: (status, body)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(request)
        buf = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=20):
    """Until 127.0.0.1:port accepts a connection (one probe is made and closed); raises
    when proc (a Popen with stderr piped) ends first or after timeout seconds (a bound,
    not a speed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s did not start: %r" % (what, proc.stderr.read()))
            time.sleep(0.05)


class Collector:
    """A real build/spanshimd on a private Unix socket writing OTLP JSON lines."""

    def __init__(self, ctx, args=(), reachable=False):
        """reachable: the socket's directory is right under /tmp, so that other users
        (a traced process that dropped to nobody) can reach it, as the private test
        directory (0700) would not let them."""
        self.ctx = ctx
        d = None if reachable else tempfile.mkdtemp(prefix="col-", dir=ctx.tmp)
        if d is None or len(os.path.join(d, "collector.sock")) > 100:
            # sun_path holds 108 bytes; long test names make long temp dirs.
            if d is not None:
                os.rmdir(d)
            d = tempfile.mkdtemp(prefix="ss-col-")
            ctx._cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
        os.chmod(d, 0o700)
        self.socket = os.path.join(d, "collector.sock")
        self.out = os.path.join(d, "spans.jsonl")
        # spanshimd's defaults beside --out, one file per signal
        self.logs_out = os.path.join(d, "spans.logs.jsonl")
        self.metrics_out = os.path.join(d, "spans.metrics.jsonl")
        self.errlog = os.path.join(d, "spanshimd.err")
        self.endpoint = "unix:" + self.socket
        self.proc = subprocess.Popen(
            [ctx.spanshimd, "--socket", self.socket, "--out", self.out] + list(args),
            stdout=subprocess.DEVNULL, stderr=open(self.errlog, "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("spanshimd did not start: " + self.stderr())
            time.sleep(0.01)

    def stderr(self):
        try:
            with open(self.errlog) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, wait; returns spanshimd's exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def spans(self, stop=True):
        if stop:
            self.stop()
        return read_jsonl(self.out)[0]

    def stats(self):
        """spanshimd's /stats (the collector must be running), as a dict."""
        return json.loads(unix_http(
            self.socket, b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[1])

    def scopes(self, stop=True):
        if stop:
            self.stop()
        return read_jsonl(self.out)[1]


class HttpServer:
    """A real HTTP/1.1 server on 127.0.0.1 (Python's http.server in a thread) that records
    every request's method, path, headers (and every traceparent field it had) and body. Paths: /status/N answers N; /redirect goes
    302 to /; /slow/MS sleeps; anything else 200 'hello'."""

    def __init__(self):
        self.requests = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "traceparents": self.headers.get_all("traceparent") or [],
                                       "body": body})
                code, payload, extra = 200, b"hello\n", {}
                if self.path.startswith("/status/"):
                    code = int(self.path.split("/")[2])
                    payload = b"status %d\n" % code
                elif self.path.startswith("/redirect"):
                    code, extra = 302, {"Location": "/"}
                elif self.path.startswith("/slow/"):
                    time.sleep(int(self.path.split("/")[2]) / 1000.0)
                self.send_response(code)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def posts(self, paths, timeout=30):
        """The POSTs received, once one has come to each of `paths` (or after timeout
        seconds: a bound, not a speed). An exiting process waits only briefly for its
        answers, so its requests may still be on their way in when it has ended."""
        deadline = time.monotonic() + timeout
        while True:
            got = [q for q in list(self.requests) if q["method"] == "POST"]
            if set(paths) <= {q["path"] for q in got} or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Context:
    """Per-test context: paths to the build, a fresh temp dir, and cleanup."""

    def __init__(self, build, name, verbose=False):
        self.build = build
        self.name = name
        self.verbose = verbose
        self.lib = os.path.join(build, "libspanshim.so")
        self.spanshimd = os.path.join(build, "spanshimd")
        self.spanshim = os.path.join(build, "spanshim")
        self.progs = os.path.join(build, "tests", "progs")
        self.tmp = tempfile.mkdtemp(prefix="ss-%s-" % name.replace(".", "-"))
        self._cleanup = []

    def prog(self, name):
        return os.path.join(self.progs, name)

    def collector(self, args=(), reachable=False):
        c = Collector(self, args, reachable)
        self._cleanup.append(c.stop)
        return c

    def http_server(self):
        s = HttpServer()
        self._cleanup.append(s.stop)
        return s

    def env(self, collector=None, extra=None, preload=True):
        """Environment for a traced run: LD_PRELOAD and the collector's endpoint."""
        e = dict(os.environ)
        for k in list(e):
            if k.startswith(("SPANSHIM_", "OTEL_")) or k in ("TRACEPARENT", "TRACESTATE"):
                del e[k]
        if preload:
            e["LD_PRELOAD"] = self.lib
        else:  # an untraced baseline is untraced even when the suite runs under a preload
            e.pop("LD_PRELOAD", None)
        if collector is not None:
            e["SPANSHIM_ENDPOINT"] = collector.endpoint
        else:
            # A socket path nobody listens on: the collector is absent.
            e["SPANSHIM_ENDPOINT"] = "unix:" + os.path.join(self.tmp, "absent.sock")
        e.update(extra or {})
        return e

    def run(self, argv, collector=None, extra_env=None, preload=True, timeout=120,
            input=None, cwd=None):
        """Runs argv (under the shim unless preload=False); returns CompletedProcess with
        bytes stdout/stderr."""
        return subprocess.run(argv, env=self.env(collector, extra_env, preload),
                              input=input, capture_output=True, timeout=timeout,
                              cwd=cwd or self.tmp)

    def close(self, keep=False):
        for f in reversed(self._cleanup):
            try:
                f()
            except Exception:
                pass
        if not keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --- Additions for the shim suites (test_shim.py); the API above is unchanged. -----------

def parse_kv(out):
    """Parses `key=value` lines (the test programs' output) into a dict of strings; a line
    with several `k=v` words gives each; repeated keys keep the last value."""
    if isinstance(out, bytes):
        out = out.decode(errors="replace")
    d = {}
    for line in out.splitlines():
        for word in line.split():
            if "=" in word:
                k, v = word.split("=", 1)
                d[k] = v
    return d


def spans_of_pid(spans, pid, name=None):
    """The spans whose resource process.pid is pid (optionally only those named name)."""
    return [s for s in spans if s.resource.get("process.pid") == int(pid)
            and (name is None or s.name == name)]


def dropped_of_pid(scopes, pid):
    """max(spanshim.spans.dropped) over pid's scopes (the count is cumulative); 0 if no
    scope of that pid carries it."""
    vals = [int(sa.get("spanshim.spans.dropped", 0)) for res, sa in scopes
            if res.get("process.pid") == int(pid)]
    return max(vals) if vals else 0


def _postgres(self, **kw):
    """A throwaway PostgreSQL cluster (pg.PgCluster) stopped and removed after the test."""
    import pg  # tests/integration is on sys.path (run.py puts it there)
    c = pg.PgCluster(**kw)
    self._cleanup.append(c.stop)
    return c


def _listener(self, backlog=64):
    """A TCP socket listening on 127.0.0.1 (never accepting: connects complete in the
    backlog); closed after the test. Returns (socket, port)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    self._cleanup.append(s.close)
    return s, s.getsockname()[1]


def _closed_port(self):
    """A 127.0.0.1 TCP port that is bound but not listening, held for the whole test, so
    connects to it are refused and nobody else can take it. Returns the port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    self._cleanup.append(s.close)
    return s.getsockname()[1]


class CollectorAt(Collector):
    """A real spanshimd listening on a given socket path (say, where a stopped collector
    was, so a running shim finds it again); its output goes to a fresh dir."""

    def __init__(self, ctx, socket_path, args=()):
        self.ctx = ctx
        d = tempfile.mkdtemp(prefix="col-", dir=ctx.tmp)
        self.socket = socket_path
        self.out = os.path.join(d, "spans.jsonl")
        # spanshimd's defaults beside --out, one file per signal
        self.logs_out = os.path.join(d, "spans.logs.jsonl")
        self.metrics_out = os.path.join(d, "spans.metrics.jsonl")
        self.errlog = os.path.join(d, "spanshimd.err")
        self.endpoint = "unix:" + self.socket
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self.proc = subprocess.Popen(
            [ctx.spanshimd, "--socket", self.socket, "--out", self.out] + list(args),
            stdout=subprocess.DEVNULL, stderr=open(self.errlog, "w"))
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("spanshimd did not start: " + self.stderr())
            time.sleep(0.01)


class StuckCollector:
    """A Unix socket that accepts connections and then never reads nor answers: a hung
    collector. .endpoint for SPANSHIM_ENDPOINT; .accepted counts connections."""

    def __init__(self, ctx):
        d = tempfile.mkdtemp(prefix="stk-", dir=ctx.tmp)
        if len(d) > 90:
            d = tempfile.mkdtemp(prefix="ss-stk-")
            ctx._cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
        os.chmod(d, 0o700)
        self.socket = os.path.join(d, "collector.sock")
        self.endpoint = "unix:" + self.socket
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.socket)
        self.sock.listen(64)
        self.conns = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            self.accepted += 1

    def stop(self):
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def _collector_at(self, socket_path, args=()):
    c = CollectorAt(self, socket_path, args)
    self._cleanup.append(c.stop)
    return c


def _stuck_collector(self):
    c = StuckCollector(self)
    self._cleanup.append(c.stop)
    return c


Context.collector_at = _collector_at
Context.stuck_collector = _stuck_collector
Context.postgres = _postgres
Context.listener = _listener
Context.closed_port = _closed_port


class Service:
    """A long-running program (traced unless preload=False) that prints `port=N` (and maybe
    `pid=N`) on stdout once it listens. stop() sends SIGTERM and returns the exit status;
    the programs here exit cleanly on SIGTERM so their spans are flushed."""

    def __init__(self, ctx, argv, collector=None, env=None, preload=True, scheme="http"):
        self.errpath = os.path.join(ctx.tmp, "svc-%d.err" % len(ctx._cleanup))
        self.proc = subprocess.Popen(argv, env=ctx.env(collector, env, preload),
                                     stdout=subprocess.PIPE, stderr=open(self.errpath, "w"),
                                     cwd=ctx.tmp)
        ctx._cleanup.append(self.kill)
        kv = {}
        deadline = time.monotonic() + 20
        while "port" not in kv:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise RuntimeError("%r did not start: %s" % (argv, self.stderr()))
            kv.update(parse_kv(line))
        self.port = int(kv["port"])
        self.pid = self.proc.pid
        self.url = "%s://127.0.0.1:%d" % (scheme, self.port)

    def stderr(self):
        with open(self.errpath, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http_spans(spans, kind=None):
    return [s for s in spans if "http.request.method" in s.attrs
            and (kind is None or s.kind == kind)]


# --- Exact accounting (issue 12): received + dropped = produced ----------------------------

@contextlib.contextmanager
def busy_cores(n=2):
    """n busy loops for the duration (the machine has 2 cores)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def dropped_by_pid(path, skip_pid=None, event=DROP_EVENT):
    """{pid: spans (event LOGS_DROP_EVENT: exception log records) the shim reported
    dropped}, summed over every drop record of that pid (an exec chain keeps its pid: each
    image reports its own)."""
    d = {}
    for res, n, _total in drop_reports(path, skip_pid, event):
        pid = res.get("process.pid")
        d[pid] = d.get(pid, 0) + n
    return d


def accounted(st):
    """Spans accounted for in /stats: received, reported dropped by the shims, and refused
    by the collector (counted there, the shims told so)."""
    return st["spans_received"] + st["shim_spans_dropped"] + st["spans_refused"]


def logs_accounted(st):
    """The same for exception log records."""
    return st["logs_received"] + st["shim_logs_dropped"] + st["logs_refused"]


def settled_stats(c, produced, timeout=120, logs_produced=None):
    """/stats once the spans accounted for (accounted: received + dropped + refused) reach
    produced (and, given logs_produced, the log records likewise: the last requests may
    still be in the collector's hands when the processes are gone), or after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        st = c.stats()
        if (accounted(st) >= produced and
                (logs_produced is None or logs_accounted(st) >= logs_produced)) or \
                time.monotonic() > deadline:
            return st
        time.sleep(0.1)


def _by_pid(items):
    got = {}
    for res in items:
        pid = res.get("process.pid")
        got[pid] = got.get(pid, 0) + 1
    return got


def _check_pids(what, got, dropped, want, refused=0):
    """Per process: received + dropped = produced; with `refused` items refused by the
    collector (counted there in all, not by process), what is missing adds up to that."""
    short = {pid: n - got.get(pid, 0) - dropped.get(pid, 0) for pid, n in want.items()}
    bad = [(pid, got.get(pid, 0), dropped.get(pid, 0), want[pid]) for pid, k in short.items()
           if k != 0 and (refused == 0 or k < 0)]
    assert not bad, "%s: (pid, received, dropped, produced) that do not add up: %r" % (
        what, bad[:10])
    assert sum(short.values()) == refused, (what, short, refused)


def check_exact(c, pids_spans, produced, skip_pid=None, pids_logs=None):
    """Asserts received + dropped = produced in the collector's /stats and, per process in
    pids_spans ({pid: spans it produced}), in its output; stops the collector. pids_logs
    ({pid: exception log records it produced}) asserts the same for the records (in /stats
    logs_received + shim_logs_dropped, when every log record received is one of theirs).
    skip_pid: a process counted in /stats only (its lines are not decoded). Returns
    (/stats, spans)."""
    logs_produced = sum(pids_logs.values()) if pids_logs is not None else None
    st = settled_stats(c, produced, logs_produced=logs_produced)
    assert accounted(st) == produced, \
        "/stats: received %d + dropped %d + refused %d != produced %d" % (
            st["spans_received"], st["shim_spans_dropped"], st["spans_refused"], produced)
    if logs_produced is not None:
        assert logs_accounted(st) == logs_produced, \
            "/stats: log records received %d + dropped %d + refused %d != produced %d" % (
                st["logs_received"], st["shim_logs_dropped"], st["logs_refused"],
                logs_produced)
    c.stop()
    spans, _ = read_jsonl(c.out, skip_pid)
    _check_pids("spans", _by_pid(s.resource for s in spans), dropped_by_pid(c.out, skip_pid),
                pids_spans, st["spans_refused"] if skip_pid is None else 0)
    print("  received=%d dropped=%d refused=%d" % (st["spans_received"],
                                                   st["shim_spans_dropped"], st["spans_refused"]))
    if pids_logs is not None:
        recs = exception_records(c.out, skip_pid)
        _check_pids("exception log records", _by_pid(res for res, _, _ in recs),
                    dropped_by_pid(c.out, skip_pid, LOGS_DROP_EVENT), pids_logs,
                    st["logs_refused"] if skip_pid is None else 0)
        print("  log records received=%d dropped=%d refused=%d" % (
            st["logs_received"], st["shim_logs_dropped"], st["logs_refused"]))
    return st, spans
