"""Deaths by default-action signals (issue 12, item 3): SIGTERM, SIGINT, SIGHUP, SIGUSR1,
SIGQUIT, SIGPIPE, ... with the default action deliver the spans still queued, then the
process dies of the same signal with the same wait status (core flag included). An app's
own handler, SIG_IGN or blocked mask is left exactly alone, and what sigaction reports is
what the app set. Real programs: a C program (tests/progs/sig_spans.c), Python's
http.server, multiprocessing.Pool, and `spanshim run`."""
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request

import harness
from harness import parse_kv, spans_of_pid

INTERNAL, ERROR = 1, 2
PORT = 9  # discard: UDP connects succeed without a listener


def start(ctx, argv, collector=None, extra_env=None, preload=True):
    """Starts argv with a stdin pipe; returns (Popen, pid) once it printed `ready`."""
    p = subprocess.Popen(argv, env=ctx.env(collector, extra_env, preload), cwd=ctx.tmp,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    line = p.stdout.readline()
    assert b"ready" in line, (argv, line, p.stderr.read() if p.poll() is not None else b"")
    return p, int(parse_kv(line)["pid"])


def finish(p, timeout=10):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def connects(spans, pid, port=PORT):
    return [s for s in spans_of_pid(spans, pid, "connect")
            if s.attrs.get("network.peer.port") == port]


def test_default_action_signals_deliver_the_spans_and_kill_with_the_same_signal(ctx):
    prog = ctx.prog("sig_spans")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        plain, _ = start(ctx, [prog, "25", str(PORT), "wait"], preload=False)
        plain.send_signal(sig)
        plain_rc, plain_out, plain_err = finish(plain)
        assert plain_rc == -sig, (sig, plain_rc)

        c = ctx.collector()
        # The schedule delay keeps every span in the ring until the signal comes.
        p, pid = start(ctx, [prog, "25", str(PORT), "wait"], collector=c,
                       extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
        time.sleep(0.2)  # the exporter thread is up and idle
        p.send_signal(sig)
        rc, out, err = finish(p)
        assert rc == plain_rc, (sig.name, rc, plain_rc, err)
        assert (out, err) == (plain_out, plain_err), (sig.name, out, err)
        c.stop()
        spans, scopes = harness.read_jsonl(c.out)
        got = len(connects(spans, pid))
        assert got == 25, "%s: %d of 25 spans delivered (dropped %d)" % (
            sig.name, got, harness.dropped_of_pid(scopes, pid))


def test_the_process_span_says_which_signal_killed_it(ctx):
    c = ctx.collector()
    p, pid = start(ctx, [ctx.prog("sig_spans"), "3", str(PORT), "wait"], collector=c,
                   extra_env={"SPANSHIM_PROCESS_SPAN": "1", "OTEL_BSP_SCHEDULE_DELAY": "60000"})
    time.sleep(0.2)
    p.terminate()
    rc, _, _ = finish(p)
    assert rc == -signal.SIGTERM, rc
    spans = c.spans()
    [proc] = [s for s in spans_of_pid(spans, pid) if s.name == "sig_spans"]
    assert proc.status_code == ERROR and proc.attrs.get("error.type") == "SIGTERM", proc
    conns = connects(spans, pid)
    assert len(conns) == 3 and all(s.parent_id == proc.span_id for s in conns), conns


def test_spanshim_run_shows_a_command_killed_by_sigterm(ctx):
    out = os.path.join(ctx.tmp, "run.jsonl")
    env = ctx.env(preload=False)
    env.pop("SPANSHIM_ENDPOINT", None)
    argv = [ctx.prog("sig_spans"), "4", str(PORT), "raise", str(int(signal.SIGTERM))]
    plain = ctx.run(argv, preload=False)
    r = subprocess.run([ctx.spanshim, "run", "--out", out, "--"] + argv, env=env,
                       capture_output=True, timeout=60, cwd=ctx.tmp)
    assert plain.returncode == -signal.SIGTERM, plain
    assert r.returncode == 128 + signal.SIGTERM, r
    assert b"still here" not in r.stdout, r
    spans = harness.read_jsonl(out)[0]
    [proc] = [s for s in spans if s.name == "sig_spans" and s.kind == INTERNAL]
    assert proc.status_code == ERROR and proc.attrs.get("error.type") == "SIGTERM", proc
    assert len([s for s in spans if s.name == "connect" and s.parent_id == proc.span_id]) == 4
    assert b"SIGTERM" in r.stderr, r.stderr  # the waterfall names it


def test_sigquit_dumps_core_as_without_the_shim(ctx):
    def allow_core():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    c = ctx.collector()
    argv = [ctx.prog("sig_spans"), "5", str(PORT), "raise", str(int(signal.SIGQUIT))]
    status = {}
    for traced in (False, True):
        env = ctx.env(c if traced else None, {"OTEL_BSP_SCHEDULE_DELAY": "60000"}, traced)
        p = subprocess.Popen(argv, env=env, cwd=ctx.tmp, preexec_fn=allow_core,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = p.stdout.read()
        _, status[traced] = os.waitpid(p.pid, 0)
        p.returncode = 0
        if traced:
            pid = int(parse_kv(out)["pid"])
    assert os.WIFSIGNALED(status[True]) and os.WTERMSIG(status[True]) == signal.SIGQUIT
    assert os.WTERMSIG(status[False]) == signal.SIGQUIT
    assert os.WCOREDUMP(status[False]) == os.WCOREDUMP(status[True]), status
    assert len(connects(c.spans(), pid)) == 5


def test_sigpipe_from_a_closed_pipe_delivers_and_dies_of_sigpipe(ctx):
    argv = [ctx.prog("sig_spans"), "7", str(PORT), "pipe"]
    plain = ctx.run(argv, preload=False)
    c = ctx.collector()
    r = ctx.run(argv, collector=c, extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    assert plain.returncode == -signal.SIGPIPE and r.returncode == plain.returncode, (plain, r)
    assert b"still here" not in r.stdout and r.stderr == plain.stderr, r
    assert len(connects(c.spans(), int(parse_kv(r.stdout)["pid"]))) == 7


def test_an_apps_own_handler_ignore_and_mask_are_left_alone(ctx):
    prog = ctx.prog("sig_spans")
    for mode in ("handler", "ignore", "block"):
        results = []
        for traced in (False, True):
            c = ctx.collector() if traced else None
            p, pid = start(ctx, [prog, "6", str(PORT), mode], collector=c, preload=traced,
                           extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
            p.terminate()
            time.sleep(0.3)
            alive = p.poll() is None
            p.stdin.close()
            p.stdin = None
            rc, out, err = finish(p)
            results.append((alive, rc, out.replace(b"pid=%d" % pid, b""), err))
            if traced:
                spans = c.spans()
        assert results[0] == results[1], (mode, results)
        want = {"handler": (False, 7), "ignore": (True, 0), "block": (True, 0)}[mode]
        assert results[1][:2] == want, (mode, results[1])
        if mode == "block":
            assert b"pending=1" in results[1][2], results[1]
        if mode != "handler":  # survivors deliver at exit
            assert len(connects(spans, pid)) == 6, mode


def test_sigaction_reports_what_the_app_set_and_exec_sees_the_kernels_defaults(ctx):
    prog = ctx.prog("sig_spans")
    for mode in ("query", "exec"):
        plain = ctx.run([prog, "0", str(PORT), mode], preload=False)
        traced = ctx.run([prog, "0", str(PORT), mode])
        strip = lambda b: b"\n".join(l for l in b.splitlines() if not l.startswith(b"pid="))
        assert plain.returncode == traced.returncode == 0, (plain, traced)
        assert strip(plain.stdout) == strip(traced.stdout), (mode, plain.stdout, traced.stdout)
    # Python reads every disposition at start: it must find SIG_DFL where nothing was set.
    r = ctx.run([sys.executable, "-c", "import signal as s; print([s.getsignal(n) is s.SIG_DFL "
                 "for n in (s.SIGTERM, s.SIGHUP, s.SIGUSR1, s.SIGQUIT, s.SIGALRM)])"])
    assert r.stdout.strip() == b"[True, True, True, True, True]", r


def test_a_signal_arriving_mid_export_never_hangs(ctx):
    """Four threads make spans as fast as they can and the exporter posts continuously
    (1 ms schedule delay); SIGTERM at any moment ends the process promptly, of SIGTERM."""
    c = ctx.collector()
    prog = ctx.prog("sig_spans")
    for i in range(12):
        p, _ = start(ctx, [prog, "1", str(PORT), "busy"], collector=c,
                     extra_env={"OTEL_BSP_SCHEDULE_DELAY": "1"})
        time.sleep(0.05 + 0.03 * i)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM if i % 2 == 0 else signal.SIGINT)
        rc, _, err = finish(p, timeout=10)
        took = time.monotonic() - t0
        assert rc in (-signal.SIGTERM, -signal.SIGINT) and err == b"", (i, rc, err)
        assert took < 8, "took %.2fs to die (a hang is finish()'s 10 s)" % took


HTTP_SERVICE = r"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("port=%d" % s.server_address[1], flush=True)
s.serve_forever()
"""


def test_python_http_server_killed_by_sigterm_delivers_its_request_spans(ctx):
    script = os.path.join(ctx.tmp, "svc.py")
    with open(script, "w") as f:
        f.write(HTTP_SERVICE)
    c = ctx.collector()
    svc = harness.Service(ctx, [sys.executable, script], collector=c,
                          env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
    for i in range(5):
        with urllib.request.urlopen("%s/item/%d" % (svc.url, i), timeout=10) as resp:
            assert resp.read() == b"ok\n"
    time.sleep(0.3)  # each response's span is complete once the app's write returned
    rc = svc.stop()
    assert rc == -signal.SIGTERM, (rc, svc.stderr())
    c.stop()
    spans, scopes = harness.read_jsonl(c.out)
    server = [s for s in spans_of_pid(spans, svc.pid)
              if s.attrs.get("http.request.method") == "GET"]
    paths = sorted(s.attrs.get("url.path") for s in server)
    assert paths == ["/item/%d" % i for i in range(5)], (
        paths, harness.dropped_of_pid(scopes, svc.pid), spans_of_pid(spans, svc.pid))


POOL = r"""
import multiprocessing, os, socket, sys, time
PORT = int(sys.argv[1])
def init(n):
    global started
    started = n
def work(i):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("127.0.0.1", PORT))
    s.close()
    return os.getpid()
def busy():
    with started.get_lock():
        started.value += 1
    time.sleep(120)
if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[2])
    n = multiprocessing.Value("i", 0)
    with multiprocessing.Pool(3, initializer=init, initargs=(n,)) as pool:
        pids = pool.map(work, range(12), chunksize=1)
        workers = list(pool._pool)
        # Every worker busy when terminate() comes: none can read an end marker and
        # exit 0 first (they did, now and then, when idle).
        for _ in workers:
            pool.apply_async(busy)
        deadline = time.monotonic() + 120  # a bound, not a speed
        while n.value < len(workers) and time.monotonic() < deadline:
            time.sleep(0.01)
    print("workers=%s" % ",".join(str(p) for p in sorted(set(pids))))
    print("exitcodes=%s" % ",".join(str(w.exitcode) for w in workers))
"""


def test_multiprocessing_pool_workers_terminated_by_sigterm_deliver_their_spans(ctx):
    script = os.path.join(ctx.tmp, "pool.py")
    with open(script, "w") as f:
        f.write(POOL)
    for method in ("fork", "spawn"):
        port = 20000 + (os.getpid() % 1000) + (1 if method == "spawn" else 0)
        c = ctx.collector()
        r = ctx.run([sys.executable, script, str(port), method], collector=c,
                    extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
        assert r.returncode == 0, r
        kv = parse_kv(r.stdout)
        # Pool.__exit__ is terminate(): the workers, each busy in a task, die of SIGTERM.
        codes = kv["exitcodes"].split(",")
        assert codes == [str(-signal.SIGTERM)] * 3, kv
        workers = [int(p) for p in kv["workers"].split(",")]
        spans = c.spans()
        got = sum(len(connects(spans, w, port)) for w in workers)
        assert got == 12, "%s: %d of 12 worker spans delivered" % (method, got)


FAILING_POOL = r"""
import collections, multiprocessing, os, socket, sys
PORT = int(sys.argv[1])
def work(i):
    s = socket.socket()
    try:
        s.connect(("127.0.0.1", PORT))
    except ConnectionRefusedError:
        pass
    s.close()
    return os.getpid()
if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[2])
    with multiprocessing.Pool(4) as pool:
        pids = pool.map(work, range(int(sys.argv[3])), chunksize=1)
        workers = list(pool._pool)
    print("calls=%s" % ",".join("%d:%d" % kv for kv in collections.Counter(pids).items()))
    print("exitcodes=%s" % ",".join(str(w.exitcode) for w in workers))
"""


@harness.timeout(600)
def test_pool_workers_killed_by_sigterm_deliver_or_count_spans_and_exception_records(ctx):
    """multiprocessing.Pool(4) as a context manager: its workers made failing calls (a
    refused connect each: a span and an exception log record) and die of SIGTERM at the
    pool's exit, while two busy loops load both cores. For every worker, spans and
    records received + counted dropped = calls made, in /stats and in its drop reports."""
    script = os.path.join(ctx.tmp, "failing_pool.py")
    with open(script, "w") as f:
        f.write(FAILING_POOL)
    port = ctx.closed_port()
    for method in ("fork", "spawn"):
        c = ctx.collector()
        calls = {}
        with harness.busy_cores():
            for _ in range(3):
                r = ctx.run([sys.executable, script, str(port), method, "160"], collector=c,
                            extra_env={"OTEL_BSP_SCHEDULE_DELAY": "60000"})
                assert r.returncode == 0, r
                kv = parse_kv(r.stdout)
                codes = kv["exitcodes"].split(",")
                assert set(codes) <= {str(-signal.SIGTERM), "0"}, kv
                for item in kv["calls"].split(","):
                    pid, n = item.split(":")
                    calls[int(pid)] = int(n)
        assert sum(calls.values()) == 480, calls
        harness.check_exact(c, calls, 480, pids_logs=calls)


FAILING_THEN_SIGTERM = (harness.FAILING_CALLS +
                        "import signal\nos.kill(os.getpid(), signal.SIGTERM)\n")


def test_sigterm_with_a_stopped_collector_delivers_or_counts_spans_and_records(ctx):
    """The fresh-eyes tester's slow collector: spanshimd is stopped (SIGSTOP) while 20
    processes make 10 failing calls each (a span and an exception record per call) and
    die of SIGTERM; then it goes on. Spans and records received + counted dropped = 200
    each, per process, under two busy loops (records were lost uncounted: 200 spans, 0
    records, 0 counted, 3 of 3 runs)."""
    script = os.path.join(ctx.tmp, "fail_term.py")
    with open(script, "w") as f:
        f.write(FAILING_THEN_SIGTERM)
    port = ctx.closed_port()
    c = ctx.collector()
    calls = {}
    with harness.busy_cores():
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(20):
                r = ctx.run([sys.executable, script, str(port), "10"], collector=c)
                assert r.returncode == -signal.SIGTERM, r
                calls[int(parse_kv(r.stdout)["pid"])] = 10
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
    harness.check_exact(c, calls, 200, pids_logs=calls)


def test_a_signal_while_the_exporter_waits_on_a_stalled_collector_counts_everything(ctx):
    """spanshimd stalls (SIGSTOP) while a process makes 600 spans: its exporter thread is
    inside an ordinary export, waiting for an answer that does not come (for up to
    OTEL_EXPORTER_OTLP_TIMEOUT). A default-action SIGTERM, or a SIGSEGV, then ends it: the
    dying thread waits for the exporter thread at most its bound and then delivers (or
    counts) what is left itself, as an exit does. Received + dropped = 601 each time
    (without: ~60 received, the other ~440 lost with not a word in the diagnostics, and
    exit/_exit under the same stall delivered all 600)."""
    prog = ctx.prog("sig_spans")
    for sig in (signal.SIGTERM, signal.SIGSEGV):
        plain, _ = start(ctx, [prog, "600", str(PORT), "wait"], preload=False)
        plain.send_signal(sig)
        plain_rc, plain_out, plain_err = finish(plain)
        c = ctx.collector()
        os.kill(c.proc.pid, signal.SIGSTOP)
        try:
            # Process spans on: a fault is caught only then (the loss matrix).
            p, pid = start(ctx, [prog, "600", str(PORT), "wait"], collector=c,
                           extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
            time.sleep(0.3)  # its first batch is written; the answer does not come
            p.send_signal(sig)
            rc, out, err = finish(p)
        finally:
            os.kill(c.proc.pid, signal.SIGCONT)
        assert (rc, out, err) == (plain_rc, plain_out, plain_err), (sig.name, rc, err)
        harness.check_exact(c, {pid: 601}, 601)  # and the process span


# --- Faults the app handles or ignores (issue 13, item 2) ----------------------------------

def _faults(ctx, mode, traced, collector=None, preexec=None, extra=None):
    env = ctx.env(collector, dict({"SPANSHIM_PROCESS_SPAN": "1"}, **(extra or {})), traced)
    return subprocess.run([ctx.prog("sig_faults")] + mode, env=env, cwd=ctx.tmp,
                          capture_output=True, timeout=300, preexec_fn=preexec)


def _process_span(spans):
    return [s for s in spans if s.name == "sig_faults" and s.kind == INTERNAL]


def test_faults_the_app_recovers_from_are_not_a_crash_and_cost_no_flush(ctx):
    """2,000 null-pointer faults and one division by zero, each recovered with siglongjmp:
    the same output and exit status as without the shim, every span delivered, and the
    process span is a clean exit, not SIGSEGV. (Each fault used to flush the exporter:
    10 ms a fault, 20 s here; no timing is asserted, the count of flushes shows it.)"""
    plain = _faults(ctx, ["recover", "2000"], False)
    c = ctx.collector()
    r = _faults(ctx, ["recover", "2000"], True, c)
    assert plain.returncode == 0 and plain.stdout == b"recovered=2001\n", plain
    assert (r.returncode, r.stdout, r.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    spans = c.spans()
    [proc] = _process_span(spans)
    assert proc.status_code != ERROR and "error.type" not in proc.attrs, proc
    assert proc.attrs.get("process.exit.code") == 0, proc
    assert len([s for s in spans if s.name == "connect" and s.parent_id == proc.span_id]) == 2


def test_a_fault_with_sigsegv_ignored_is_killed_by_sigsegv_as_without_the_shim(ctx):
    """SIG_IGN set with signal(), with sigaction() (after a raise() it ignored), or inherited:
    the kernel kills the process of SIGSEGV. SIG_IGN stays the kernel's own (exec and
    posix_spawn children must inherit it), so the shim is not called and records nothing."""
    ignore = lambda: signal.signal(signal.SIGSEGV, signal.SIG_IGN)
    for mode, preexec in ((["ignore"], None), (["ignore_sa"], None), (["fault"], ignore)):
        plain = _faults(ctx, mode, False, preexec=preexec)
        c = ctx.collector()
        r = _faults(ctx, mode, True, c, preexec=preexec)
        assert plain.returncode == -signal.SIGSEGV, (mode, plain)
        assert (r.returncode, r.stdout, r.stderr) == (plain.returncode, plain.stdout,
                                                      plain.stderr), (mode, r)


def test_handlers_that_reset_or_reraise_die_as_without_the_shim(ctx):
    """SA_RESETHAND: the handler runs once and the next fault kills; a crash reporter's
    handler puts SIG_DFL back and re-raises. Output (including what sigaction reports inside
    the handler and after it) and the signal are the same; the death is recorded."""
    for mode in ("reset", "reraise"):
        plain = _faults(ctx, [mode], False)
        c = ctx.collector()
        r = _faults(ctx, [mode], True, c)
        assert plain.returncode == -signal.SIGSEGV, (mode, plain)
        assert (r.returncode, r.stdout, r.stderr) == (plain.returncode, plain.stdout,
                                                      plain.stderr), (mode, r, plain)
        [proc] = _process_span(c.spans())
        assert proc.attrs.get("error.type") == "SIGSEGV", (mode, proc)


def test_sigaction_round_trips_every_field_as_the_kernel_reports_it(ctx):
    """Handler, sa_flags (SA_RESTORER included), mask and restorer read back after each of
    signal() and sigaction() with several flag sets, for fatal and default-action signals,
    and around libcurl's save / ignore / put-back of a disposition, are what they are
    without the shim."""
    plain = _faults(ctx, ["roundtrip"], False)
    r = _faults(ctx, ["roundtrip"], True)
    assert plain.returncode == 0 and plain.stdout.count(b"\n") == 88, plain
    assert b"flags=0x4000000" in plain.stdout  # SA_RESTORER, as glibc sets it
    assert r.stdout == plain.stdout, (r.stdout, plain.stdout)
