"""How a process ends before its first span (issue 12 item 3) and the fds of an ending
thread (issue 13 item 3).

A process whose first act is dying of a signal (a shell killed by SIGTERM, a C program
that segfaults in main, Python interrupted by SIGINT) has started no exporter thread: the
dying thread delivers its process span itself from the signal handler, with an encoder
that neither allocates nor takes a lock. The span says which signal (error.type), the
count is exact, and the process dies as without the shim (same status, same core flag).

A thread that ends the process for good (_exit, a signal about to kill) makes its last
connection in a copy of the fd table of its own; one that goes on running app code after
its delivery (exit, exec) delivers from a helper thread with a copy of the table: an app
thread opening and closing a file in a loop meanwhile gets the same fd number every time,
as without the shim."""
import os
import re
import resource
import signal
import subprocess
import sys

import harness

INTERNAL, ERROR = 1, 2
SIGNAL_OF = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT", signal.SIGSEGV: "SIGSEGV",
             signal.SIGABRT: "SIGABRT"}


def _allow_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def _status(ctx, argv, env):
    """(returncode, core dumped, stdout, stderr) of argv; cores go to ctx.tmp."""
    p = subprocess.Popen(argv, env=env, cwd=ctx.tmp, preexec_fn=_allow_core,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() reaps the child and hides the core flag: read, then wait ourselves.
    out = p.stdout.read()
    err = p.stderr.read()
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    out = re.sub(rb"pid=\d+", b"pid=N", out)
    return rc, os.WIFSIGNALED(status) and os.WCOREDUMP(status), out, err


CASES = [
    # (what, argv, the signal, name of its process span)
    ("sh killed by SIGTERM", ["sh", "-c", "kill -TERM $$"], signal.SIGTERM, None),
    ("C program segfaulting in main", ["ending_fds", "segv", "0"], signal.SIGSEGV,
     "ending_fds"),
    ("C program aborting in main", ["ending_fds", "abort", "0"], signal.SIGABRT, "ending_fds"),
    ("Python interrupted by SIGINT",
     [sys.executable, "-c", "import os,signal; os.kill(os.getpid(), signal.SIGINT)"],
     signal.SIGINT, None),
]


def _argv(ctx, argv):
    return [ctx.prog(argv[0])] + argv[1:] if argv[0] == "ending_fds" else argv


def _killed_before_first_span(ctx, runs):
    for what, argv, sig, name in CASES:
        argv = _argv(ctx, argv)
        plain = _status(ctx, argv, ctx.env(preload=False))
        assert plain[0] == -sig, (what, plain)
        c = ctx.collector()
        env = ctx.env(c, {"SPANSHIM_PROCESS_SPAN": "1"})
        for _ in range(runs):
            r = _status(ctx, argv, env)
            assert r[:2] == plain[:2], (what, "status/core traced vs not", r, plain)
            assert r[2] == plain[2], (what, r[2], plain[2])
            assert r[3] == plain[3], (what, r[3], plain[3])
        _, spans = harness.check_exact(c, {}, runs)
        assert len(spans) == runs, (what, len(spans), runs, c.stderr())
        for s in spans:
            assert s.kind == INTERNAL and s.parent_id in ("", None), (what, s)
            if name:
                assert s.name == name, (what, s)
            assert s.status_code == ERROR and s.attrs.get("error.type") == SIGNAL_OF[sig], \
                (what, s)
            assert s.attrs.get("process.pid") == s.resource.get("process.pid"), s


def test_a_process_killed_before_its_first_span_delivers_its_process_span(ctx):
    """Each of them 3 times: exactly one process span per run, error.type the signal, the
    same wait status and core flag as without the shim."""
    _killed_before_first_span(ctx, 3)


@harness.timeout(600)
def test_killed_before_the_first_span_under_two_busy_loops(ctx):
    """The same with both cores busy: the dying thread delivers itself (no thread to wait
    for), within the budget's own running time."""
    with harness.busy_cores(2):
        _killed_before_first_span(ctx, 3)


def test_a_segfault_before_the_first_span_delivers_its_exception_record_with_the_frame(ctx):
    """A C program whose first act is a null-pointer write (no span, no exporter thread, no
    unwinder loaded), with process spans on, 3 times with the collector running and 3
    times with it stopped (SIGSTOP) until the program has died (a slow collector), under
    two busy loops: each run delivers its process span (error.type SIGSEGV, an exception
    event) and its exception log record, whose stack is the faulting frame (the dying
    thread names it by module and offset without the loader: module path, build id) and
    to which spanshimd adds the source line; nothing is dropped. The program dies as
    without the shim (SIGSEGV, same core flag, same output)."""
    argv = [ctx.prog("ending_fds"), "segv", "0"]
    plain = _status(ctx, argv, ctx.env(preload=False))
    assert plain[0] == -signal.SIGSEGV, plain
    c = ctx.collector()
    env = ctx.env(c, {"SPANSHIM_PROCESS_SPAN": "1"})
    pids = {}
    with harness.busy_cores(2):
        for stopped in (False, False, False, True, True, True):
            if stopped:
                c.proc.send_signal(signal.SIGSTOP)
            try:
                p = subprocess.Popen(argv, env=env, cwd=ctx.tmp, preexec_fn=_allow_core,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = p.stdout.read(), p.stderr.read()
                _, status = os.waitpid(p.pid, 0)
                p.returncode = 0
            finally:
                if stopped:
                    c.proc.send_signal(signal.SIGCONT)
            rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            r = (rc, os.WIFSIGNALED(status) and os.WCOREDUMP(status),
                 re.sub(rb"pid=\d+", b"pid=N", out), err)
            assert r == plain, (r, plain)
            pids[p.pid] = 1
    st, spans = harness.check_exact(c, pids, 6, pids_logs=pids)
    assert st["logs_received"] == 6 and st["shim_logs_dropped"] == 0, st
    for sp in spans:
        assert sp.attrs.get("error.type") == "SIGSEGV", sp
        assert [e.get("name") for e in sp.raw.get("events", [])] == ["exception"], sp
    recs = harness.exception_records(c.out)
    assert len(recs) == 6, recs
    for res, lr, la in recs:
        assert la["exception.type"] == "SIGSEGV", la
        assert la["exception.message"] == "Segmentation fault", la
        trace = la["exception.stacktrace"]
        assert re.match(r"#0 0x[0-9a-f]{16} in \?\? \(\S+/ending_fds\+0x[0-9a-f]+\) "
                        r"\S*tests/progs/ending_fds\.c:\d+\n$", trace), trace
        [mod] = la["spanshim.stack.modules"]
        assert re.match(r"[0-9a-f]{40} \S+/ending_fds$", mod), mod


def test_a_dying_thread_with_no_collector_says_what_it_lost(ctx):
    """No collector: the process span is counted in the diagnostics (the only record), and
    the process dies of its signal."""
    env = ctx.env(None, {"SPANSHIM_PROCESS_SPAN": "1", "SPANSHIM_LOG_LEVEL": "warn"})
    r = _status(ctx, ["sh", "-c", "kill -TERM $$"], env)
    assert r[0] == -signal.SIGTERM, r
    assert b"exit: 1 spans could not be delivered; the collector could not be told" in r[3], r


def test_a_dying_thread_reaches_a_tcp_collector_by_number_or_localhost(ctx):
    """OTEL_EXPORTER_OTLP_ENDPOINT over TCP: no name is looked up in a signal handler, but
    a numeric address and localhost (loopback) are dialled there."""
    port = harness.free_port()
    c = ctx.collector(["--listen", "127.0.0.1:%d" % port])
    for host in ("127.0.0.1", "localhost"):
        env = ctx.env(None, {"SPANSHIM_PROCESS_SPAN": "1",
                             "OTEL_EXPORTER_OTLP_ENDPOINT": "http://%s:%d" % (host, port)})
        env.pop("SPANSHIM_ENDPOINT")
        r = _status(ctx, ["sh", "-c", "kill -TERM $$"], env)
        assert r[0] == -signal.SIGTERM and r[3] == b"", (host, r)
    _, spans = harness.check_exact(c, {}, 2)
    assert [s.attrs.get("error.type") for s in spans] == ["SIGTERM"] * 2, spans


ENDINGS = [("_exit", 3), ("exit", 3), ("exec", 0), ("term", -signal.SIGTERM),
           ("segv", -signal.SIGSEGV), ("setuid", 3)]


@harness.timeout(900)
def test_an_ending_thread_never_shifts_an_app_threads_fd_number(ctx):
    """ending_fds: an app thread opens /dev/null and closes it (with the raw system call,
    which nothing of the shim holds back) in a loop, getting the same number every time
    without the shim, while main ends the process before any span: _exit, exit (atexit
    handlers, destructors and stdio's flush run after the shim's delivery on that thread),
    exec, SIGTERM, a segfault, a setuid (its hello to the collector) then _exit. The
    connection that delivers the process span (and the
    files read for the resource) is made in a table of the ending thread's own (_exit, a
    signal) or of a helper thread's (exit, exec): the app thread never sees its number
    shifted. 25 runs of each; every process span delivered."""
    runs = 25
    for mode, want in ENDINGS:
        argv = [ctx.prog("ending_fds"), mode, "1"]
        plain = _status(ctx, argv, ctx.env(preload=False))
        assert plain[0] == want and b"shifted" not in plain[2], (mode, plain)
        c = ctx.collector()
        env = ctx.env(c, {"SPANSHIM_PROCESS_SPAN": "1"})
        for _ in range(runs):
            r = _status(ctx, argv, env)
            assert r[:2] == plain[:2], (mode, r, plain)
            assert b"shifted" not in r[2], (mode, r[2])
            assert r[3] == plain[3], (mode, r[3])
        produced = runs * (2 if mode == "exec" else 1)  # exec: true's process span too
        _, spans = harness.check_exact(c, {}, produced)
        mine = [s for s in spans if s.name == "ending_fds"]
        assert len(mine) == runs and len(spans) == produced, (mode, len(mine), len(spans))
        if mode in ("_exit", "exit", "setuid"):
            assert all(s.attrs.get("process.exit.code") == 3 for s in mine), mine[:2]
        elif mode != "exec":
            assert all(s.attrs.get("error.type") for s in mine), mine[:2]
