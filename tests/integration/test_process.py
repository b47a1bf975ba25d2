"""Whole process trees as one trace: process spans, TRACEPARENT carried through exec,
posix_spawn, system and popen, exits of every kind, fatal signals. Real programs (sh,
curl, python3, xargs) and small C programs, run under the real shim and `spanshim run`."""
import os
import re
import subprocess
import sys

import harness
from harness import parse_kv, spans_of_pid

INTERNAL, ERROR = 1, 2
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


def run_cli(ctx, argv, extra_env=None, timeout=120):
    """`spanshim run --out FILE -- argv`; returns (CompletedProcess, spans)."""
    out = os.path.join(ctx.tmp, "run.jsonl")
    env = ctx.env(preload=False, extra=extra_env)
    env.pop("SPANSHIM_ENDPOINT", None)
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out, "--"] + argv, env=env,
                       capture_output=True, timeout=timeout, cwd=ctx.tmp)
    return r, harness.read_jsonl(out)[0]


def procs(spans, name=None):
    return [s for s in spans if s.kind == INTERNAL and "process.pid" in s.attrs and
            (name is None or s.name == name)]


def by_id(spans):
    return {s.span_id: s for s in spans}


def ancestry(span, ids):
    """Names from span up to the root, following parentSpanId."""
    names = []
    while span is not None:
        names.append(span.name)
        span = ids.get(span.parent_id)
    return names


def real_python():
    return os.path.realpath(sys.executable)


def test_sh_running_two_curls_is_one_trace_with_each_curl_under_sh(ctx):
    srv = ctx.http_server()
    r, spans = run_cli(ctx, ["sh", "-c", "curl -s %s/a; curl -s %s/b" % (srv.url, srv.url)])
    assert r.returncode == 0 and r.stdout == b"hello\nhello\n", r
    assert len({s.trace_id for s in spans}) == 1, "more than one trace: %r" % spans
    shs = [s for s in procs(spans) if s.attrs.get("process.command_args", [""])[0] == "sh"]
    curls = procs(spans, "curl")
    assert len(shs) == 1 and len(curls) == 2, spans
    sh = shs[0]
    assert sh.parent_id == "", sh
    for c in curls:
        assert c.parent_id == sh.span_id, (c, sh)
        assert c.attrs["process.parent_pid"] == sh.attrs["process.pid"], c
        assert c.attrs.get("process.exit.code") == 0, c
    ids = by_id(spans)
    connects = [s for s in spans if s.name == "connect"]
    assert len(connects) == 2, connects
    for s in connects:
        up = ancestry(s, ids)
        assert "curl" in up and up[-1] == sh.name, up
        pid = s.resource["process.pid"]
        owner = [c for c in curls if c.attrs["process.pid"] == pid]
        assert owner and owner[0].span_id in [x.span_id for x in _chain(s, ids)], s


def _chain(span, ids):
    out = []
    while span is not None:
        out.append(span)
        span = ids.get(span.parent_id)
    return out


def test_five_deep_chain_sh_sh_python_subprocess_curl(ctx):
    srv = ctx.http_server()
    py = real_python()
    script = "import subprocess; subprocess.run(['curl', '-s', '%s/deep'])" % srv.url
    r, spans = run_cli(ctx, ["sh", "-c", "sh -c \"%s -c \\\"%s\\\"\"" % (py, script)])
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    assert len({s.trace_id for s in spans}) == 1, spans
    ids = by_id(spans)
    [curl] = procs(spans, "curl")
    chain = [s for s in _chain(curl, ids) if "process.pid" in s.attrs]
    names = [s.name for s in chain]
    assert len(chain) == 4 and names[0] == "curl" and names[1].startswith("python"), names
    assert all(s.attrs["process.parent_pid"] == chain[i + 1].attrs["process.pid"]
               for i, s in enumerate(chain[:-1])), [s.attrs for s in chain]
    [conn] = [s for s in spans if s.name == "connect"]
    assert curl in _chain(conn, ids) or curl.span_id in [x.span_id for x in _chain(conn, ids)]


def test_xargs_fanning_out_200_processes_is_one_trace(ctx):
    r, spans = run_cli(ctx, ["sh", "-c", "seq 200 | xargs -P 8 -n 1 sh -c 'exit 0'"],
                       timeout=300)
    assert r.returncode == 0, r
    assert len({s.trace_id for s in spans}) == 1
    [xargs] = procs(spans, "xargs")
    kids = [s for s in procs(spans) if s.parent_id == xargs.span_id]
    assert len(kids) == 200, len(kids)
    assert {k.attrs["process.parent_pid"] for k in kids} == {xargs.attrs["process.pid"]}
    assert len({k.attrs["process.pid"] for k in kids}) == 200


def test_system_popen_spawn_and_fork_exec_children_join_the_trace(ctx):
    argv = [ctx.prog("proc_spawn")]
    plain = ctx.run(argv, preload=False)
    r, spans = run_cli(ctx, argv)
    assert (r.returncode, r.stdout, r.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    out = parse_kv(r.stdout)
    assert out["system"] == "5" and out["posix_spawnp"] == "4" and out["fork-exec"] == "6"
    assert out["parent-environ-tp"] == "(unset)", out
    [me] = procs(spans, "proc_spawn")
    shells = [s for s in procs(spans) if s.attrs.get("process.command_args", [""])[0] == "sh"]
    # system, system(NULL), popen r, popen w, posix_spawnp, fork+exec: six shells.
    assert len(shells) == 6, [s.attrs.get("process.command_args") for s in shells]
    assert all(s.parent_id == me.span_id for s in shells), shells
    assert len({s.trace_id for s in spans}) == 1


def test_children_see_the_callers_context_as_traceparent(ctx):
    r, spans = run_cli(ctx, [ctx.prog("proc_spawn"), "show"])
    assert r.returncode == 0, r
    [me] = procs(spans, "proc_spawn")
    seen = set(re.findall(rb"(?m)^(?:popen-read: )?tp=(\S+)", r.stdout))
    # sampled (01) and a random trace id the shim made (02: W3C Trace Context Level 2)
    assert seen == {("00-%s-%s-03" % (me.trace_id, me.span_id)).encode()}, seen
    assert me.raw["flags"] & 0xff == 3, me.raw


def test_traceparent_in_the_environment_is_the_parent_of_the_process(ctx):
    c = ctx.collector()
    srv = ctx.http_server()
    tp = "00-%s-%s-01" % (TID, SID)
    r = ctx.run(["curl", "-s", srv.url + "/"], collector=c,
                extra_env={"TRACEPARENT": tp, "SPANSHIM_PROCESS_SPAN": "1"})
    assert r.returncode == 0, r
    spans = c.spans()
    assert spans and all(s.trace_id == TID for s in spans), spans
    [p] = procs(spans, "curl")
    assert p.parent_id == SID, p


def test_traceparent_without_process_spans_parents_every_root_span(ctx):
    c = ctx.collector()
    r = ctx.run([ctx.prog("simple"), "9", "3"], collector=c,
                extra_env={"TRACEPARENT": "00-%s-%s-01" % (TID, SID)})
    assert r.returncode == 3, r
    spans = c.spans()
    assert spans and all(s.trace_id == TID and s.parent_id == SID for s in spans), spans


def test_malformed_traceparent_is_ignored_with_one_diagnostic(ctx):
    c = ctx.collector()
    argv = [ctx.prog("simple"), "9", "2"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c, extra_env={"TRACEPARENT": "00-zz-not-valid",
                                               "SPANSHIM_LOG_LEVEL": "warn"})
    lines = r.stderr.decode().splitlines()
    app = plain.stderr.decode().splitlines()
    ours = [x for x in lines if x not in app]
    assert len(ours) == 1 and "TRACEPARENT" in ours[0], lines
    assert r.returncode == plain.returncode
    spans = c.spans()
    assert spans and all(s.trace_id != TID and s.parent_id == "" for s in spans), spans


def test_exec_without_fork_ends_the_old_span_and_nests_the_new_image(ctx):
    srv = ctx.http_server()
    r, spans = run_cli(ctx, ["sh", "-c", "exec curl -s %s/x" % srv.url])
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    [curl] = procs(spans, "curl")
    [sh] = [s for s in procs(spans) if s.span_id == curl.parent_id]
    assert sh.attrs["process.pid"] == curl.attrs["process.pid"], (sh, curl)
    assert sh.end <= curl.start, "the exec'd-over span must end before the new image's starts"
    assert "process.exit.code" not in sh.attrs and sh.status_code != ERROR, sh


def test_exit_codes_and_redacted_arguments_on_the_process_span(ctx):
    r, spans = run_cli(ctx, ["sh", "-c", "exit 3", "sh", "--password=hunter2",
                             "postgresql://bob:s3cret@db/x"])
    assert r.returncode == 3, r
    [p] = procs(spans)
    assert p.attrs["process.exit.code"] == 3 and p.status_code == ERROR, p
    args = p.attrs["process.command_args"]
    assert args[-2:] == ["--password=REDACTED", "postgresql://REDACTED:REDACTED@db/x"], args
    with open(os.path.join(ctx.tmp, "run.jsonl")) as f:
        text = f.read()
    assert "hunter2" not in text and "s3cret" not in text


CRASHES = {  # mode: (expected wait status from sh's $?, signal recorded or None)
    "segv": (139, "SIGSEGV"), "abort": (134, "SIGABRT"), "fpe": (136, "SIGFPE"),
    "kill": (139, "SIGSEGV"),
    # The app's own handler took the fault and chose to exit 3: not a crash (issue 13.2).
    "handler3": (3, "3"), "signal3": (3, "3"),
}


def test_crashes_keep_their_exit_status_and_core_and_record_the_signal(ctx):
    port = 9
    for mode, (status, sig) in sorted(CRASHES.items()):
        # The shell reports how the program died, core dump included, exactly as it saw it.
        script = "ulimit -c 0; %s %s %d; echo status=$?" % (ctx.prog("proc_crash"), mode, port)
        plain = ctx.run(["sh", "-c", script], preload=False)
        c = ctx.collector()
        r = ctx.run(["sh", "-c", script], collector=c,
                    extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
        assert (r.stdout, r.stderr) == (plain.stdout, plain.stderr), (mode, plain, r)
        assert ("status=%d" % status).encode() in r.stdout, (mode, r.stdout)
        spans = c.spans()
        [p] = procs(spans, "proc_crash")
        assert p.status_code == ERROR and p.attrs.get("error.type") == sig, (mode, p)
        conn = [s for s in spans if s.name == "connect" and
                s.resource["process.pid"] == p.attrs["process.pid"]]
        assert len(conn) == 1 and conn[0].parent_id == p.span_id, (mode, conn)


def test_exit_from_a_worker_thread_delivers_or_counts_every_span(ctx):
    """_exit(9) from a worker thread after 1,000 spans: every span (the process span
    included) is delivered by the exiting thread or counted, however loaded the machine;
    the process span that arrives says exit code 9."""
    c = ctx.collector()
    r = ctx.run([ctx.prog("thread_exit"), "9", "500"], collector=c,
                extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
    assert r.returncode == 9, r
    pid = int(parse_kv(r.stdout)["pid"])
    _, spans = harness.check_exact(c, {pid: 1001}, 1001)
    assert len(spans_of_pid(spans, pid, "connect")) + len(procs(spans, "thread_exit")) == \
        len(spans), spans[:3]
    assert all(p.attrs["process.exit.code"] == 9 for p in procs(spans, "thread_exit")), spans


@harness.timeout(1200)  # a guard against hangs: the work grows with the machine's load
def test_thousand_forks_while_threads_trace_never_deadlock(ctx):
    """1,000 forks while two threads make spans non-stop (so forks land while the shim's
    locks are held): every child ends by itself (forkstorm kills one stuck for 10 s and
    says so), and every span of every process is delivered or counted -- per child (its
    ten connects and its process span) and, for the parent too, in /stats."""
    c = ctx.collector()
    r = ctx.run([ctx.prog("forkstorm"), "1000"], collector=c, timeout=1100,
                extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
    assert r.returncode == 0 and r.stderr == b"", r
    out = parse_kv(r.stdout)
    kids = re.findall(r"child=(\d+):(\d+)", r.stdout.decode())
    assert len(kids) == 1000
    parent = int(out["pid"])
    produced = int(out["threads"]) + 1 + 11 * len(kids)  # the parent's: its threads' and its own
    _, spans = harness.check_exact(c, {int(pid): 11 for _, pid in kids}, produced,
                                   skip_pid=parent)
    pid_of = {int(pid): 30000 + int(i) for i, pid in kids}
    wrong = [s for s in spans if s.name == "connect" and
             s.attrs.get("network.peer.port") != pid_of.get(s.resource.get("process.pid"))]
    assert not wrong, "child spans under another pid or port: %r" % wrong[:5]


def _raw_status(argv, env, cwd):
    """Runs argv with cores allowed; returns the raw wait status (core flag included)."""
    import resource

    def allow_core():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    p = subprocess.Popen(argv, env=env, cwd=cwd, preexec_fn=allow_core,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0  # reaped here; keep Popen from waiting again
    return status


def test_core_dump_behaviour_is_the_same_with_the_shim(ctx):
    c = ctx.collector()
    for mode in ("segv", "abort"):
        argv = [ctx.prog("proc_crash"), mode, "9"]
        plain = _raw_status(argv, ctx.env(preload=False), ctx.tmp)
        traced = _raw_status(argv, ctx.env(c, {"SPANSHIM_PROCESS_SPAN": "1"}), ctx.tmp)
        assert os.WIFSIGNALED(plain) and os.WIFSIGNALED(traced), (mode, plain, traced)
        assert os.WTERMSIG(plain) == os.WTERMSIG(traced), (mode, plain, traced)
        assert os.WCOREDUMP(plain) == os.WCOREDUMP(traced), (mode, plain, traced)


def test_the_process_span_is_named_after_what_was_executed(ctx):
    """A program run through a symlink (as redis-server -> redis-check-rdb, python3 ->
    python3.11): the span is named after the symlink that was executed, and
    process.executable.name stays the base name of /proc/self/exe's target, as semantic
    conventions say."""
    link = os.path.join(ctx.tmp, "my-tool")
    os.symlink(ctx.prog("sig_faults"), link)
    c = ctx.collector()
    r = ctx.run([link, "recover", "3"], collector=c, extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
    assert r.returncode == 0 and r.stdout == b"recovered=4\n", r
    [p] = procs(c.spans())
    assert p.name == "my-tool", p
    assert p.attrs["process.executable.name"] == "sig_faults", p.attrs
    assert p.attrs["process.executable.path"] == os.path.realpath(ctx.prog("sig_faults"))


def test_last_thread_ending_by_pthread_exit_ends_the_process_as_without_the_shim(ctx):
    """glibc ends a process with exit(0) when its last thread ends: main calling
    pthread_exit as the last thread, or a worker returning after main's pthread_exit. The
    shim's exporter thread is not one of the app's: the process prints what it printed
    untraced (stdio flushed, atexit handler run) and exits 0, with no collector, with one
    (every span delivered or counted, the process span says exit code 0) and under
    `spanshim run`. (It hung for ever: main a zombie, the exporter thread left.)"""
    port = str(ctx.closed_port())
    for mode, connects in (("main", 1), ("worker", 2)):
        argv = [ctx.prog("pexit"), mode, port]
        base = ctx.run(argv, preload=False, timeout=60)
        assert base.returncode == 0 and base.stdout.endswith(b"bye atexit"), base
        want = base.stdout.split(b"\n", 1)[1]
        r = ctx.run(argv, timeout=60)
        assert (r.returncode, r.stdout.split(b"\n", 1)[1], r.stderr) == (0, want, b""), r
        c = ctx.collector()
        r = ctx.run(argv, collector=c, extra_env={"SPANSHIM_PROCESS_SPAN": "1"}, timeout=60)
        assert (r.returncode, r.stdout.split(b"\n", 1)[1], r.stderr) == (0, want, b""), r
        pid = int(parse_kv(r.stdout)["pid"])
        _, spans = harness.check_exact(c, {pid: connects + 1}, connects + 1)
        p = procs(spans, "pexit")
        assert len(p) <= 1 and all(s.attrs.get("process.exit.code") == 0 for s in p), p
        assert len(spans_of_pid(spans, pid, "connect")) + len(p) == len(spans), spans
        r, spans = run_cli(ctx, argv, timeout=60)
        assert (r.returncode, r.stdout.split(b"\n", 1)[1]) == (0, want), r
        p = procs(spans, "pexit")
        assert len(p) == 1 and p[0].attrs.get("process.exit.code") == 0, spans
        assert p[0].status_code != ERROR, p
