"""The spanshim CLI as a user meets it: `spanshim run` keeps the command's exit status,
stdio and signals; it starts (and cleans up) a private collector or uses a running one;
`spanshim view` draws the waterfall of a spans file and reports malformed lines."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import harness


def clean_env(ctx, extra=None):
    """The user's environment without our variables; XDG_RUNTIME_DIR and TMPDIR point into
    the test's directory so no collector of the host's is found and leftovers show."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("SPANSHIM_", "OTEL_")) and
         k not in ("TRACEPARENT", "TRACESTATE", "LD_PRELOAD", "NO_COLOR")}
    e["XDG_RUNTIME_DIR"] = os.path.join(ctx.tmp, "xdg")
    e["TMPDIR"] = os.path.join(ctx.tmp, "t")
    os.makedirs(e["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    os.makedirs(e["TMPDIR"], exist_ok=True)
    e.update(extra or {})
    return e


def spanshim(ctx, args, extra_env=None, timeout=60, input=None):
    return subprocess.run([ctx.spanshim] + list(args), env=clean_env(ctx, extra_env),
                          cwd=ctx.tmp, capture_output=True, timeout=timeout, input=input)


def out_path(ctx):
    return os.path.join(ctx.tmp, "spans.jsonl")


def run(ctx, cmd, opts=(), **kw):
    return spanshim(ctx, ["run", "--out", out_path(ctx)] + list(opts) + ["--"] + cmd, **kw)


def check(cond, msg, p=None):
    if not cond:
        if p is not None:
            msg += "\n--- status %s\n--- stdout\n%r\n--- stderr\n%s" % (
                p.returncode, p.stdout[:4000], p.stderr.decode(errors="replace")[:4000])
        raise AssertionError(msg)


# ---- spanshim run: what the command sees and what the caller gets back ----

def test_run_exit_status_passes_through(ctx):
    for code in (0, 1, 3, 255):
        p = run(ctx, ["sh", "-c", "exit %d" % code])
        check(p.returncode == code, "exit %d came back as %d" % (code, p.returncode), p)


def test_run_killed_by_signal_is_128_plus_n(ctx):
    p = run(ctx, ["sh", "-c", "kill -TERM $$"])
    check(p.returncode == 128 + signal.SIGTERM, "SIGTERM death", p)
    p = run(ctx, ["sh", "-c", "kill -KILL $$"])
    check(p.returncode == 128 + signal.SIGKILL, "SIGKILL death", p)


def test_run_stdout_and_stdin_pass_through_byte_identical(ctx):
    script = "printf 'a\\000b\\377\\r\\n'; seq 1 20000; cat"
    data = bytes(range(256)) * 64
    plain = subprocess.run(["sh", "-c", script], input=data, capture_output=True,
                           cwd=ctx.tmp, timeout=60)
    p = run(ctx, ["sh", "-c", script], input=data)
    check(p.returncode == 0, "run failed", p)
    check(p.stdout == plain.stdout, "stdout differs from the untraced run", p)
    check(p.stdout.endswith(data), "stdin did not reach the command", p)


def test_run_quiet_adds_nothing_to_stderr(ctx):
    p = run(ctx, ["sh", "-c", "echo out; echo err >&2"], opts=["--quiet"])
    check(p.returncode == 0 and p.stdout == b"out\n", "command output", p)
    check(p.stderr == b"err\n", "--quiet printed extra lines on stderr", p)


def test_run_missing_command_is_127(ctx):
    p = run(ctx, ["no-such-command-spanshim-test"])
    check(p.returncode == 127, "missing command status", p)
    check(b"no-such-command-spanshim-test: command not found" in p.stderr, "message", p)
    p = run(ctx, ["/nonexistent/dir/prog"])
    check(p.returncode == 127, "missing path status", p)


def test_run_not_executable_is_126(ctx):
    path = os.path.join(ctx.tmp, "not-exec")
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(path, 0o644)
    p = run(ctx, [path])
    check(p.returncode == 126, "non-executable status", p)
    check(b"Permission denied" in p.stderr, "message", p)


def test_run_bad_usage_is_2_with_usage(ctx):
    for args in (["run"], ["run", "--"], ["run", "--bogus", "--", "true"],
                 ["run", "--out"], ["run", "--out", "x", "--endpoint", "unix:/x", "--", "true"],
                 ["bogus"], [], ["view"], ["view", "--bogus", "f"], ["view", "--limit", "0", "f"]):
        p = spanshim(ctx, args)
        check(p.returncode == 2, "%r: status" % args, p)
        check(b"usage: spanshim" in p.stderr, "%r: no usage on stderr" % args, p)
        check(p.stdout == b"", "%r: usage went to stdout" % args, p)
        if args[:1] in (["bogus"], []):  # the top usage names every run option
            check(b"[--wait-tree DUR]" in p.stderr, "%r: --wait-tree missing" % args, p)


def test_run_out_in_a_missing_directory_is_125_and_the_command_not_run(ctx):
    """--out (or --html) in a directory that is not there: one line naming it and status 125 (spanshim
    could not get going), every time, before the command runs (the private collector used
    to end early at a moment racing the command: status 0 or 125)."""
    marker = os.path.join(ctx.tmp, "ran")
    bad = os.path.join(ctx.tmp, "missing", "x.jsonl")
    for opts in (["--out", bad], ["--out", out_path(ctx), "--html", bad]):
        # --html likewise (before, the command ran and its report was lost at its end,
        # status 0)
        p = spanshim(ctx, ["run", "--quiet"] + opts + ["--", "touch", marker])
        check(p.returncode == 125, "status", p)
        check(p.stderr == ("spanshim: cannot write %s: directory %s: No such file or directory\n"
                           % (bad, os.path.dirname(bad))).encode(), "message", p)
        check(not os.path.exists(marker), "the command ran", p)
    # A report named without a directory goes to ours, as before.
    p = spanshim(ctx, ["run", "--quiet", "--out", out_path(ctx), "--html", "r.html", "--",
                       "touch", marker])
    check(p.returncode == 0 and os.path.exists(os.path.join(ctx.tmp, "r.html")), "report", p)


def test_help_and_version_exit_0_on_stdout(ctx):
    for args in (["--help"], ["-h"], ["run", "--help"], ["view", "--help"],
                 ["run", "--out", "x", "--help"]):
        p = spanshim(ctx, args)
        check(p.returncode == 0, "%r: status" % args, p)
        check(b"usage: spanshim" in p.stdout and p.stderr == b"", "%r: help" % args, p)
    p = spanshim(ctx, ["--version"])
    check(p.returncode == 0 and p.stdout.startswith(b"spanshim 0."), "version", p)


def test_run_sets_the_command_environment(ctx):
    show = 'echo "$LD_PRELOAD|$SPANSHIM_ENDPOINT|$OTEL_SERVICE_NAME|$SPANSHIM_PROCESS_SPAN"'
    p = run(ctx, ["sh", "-c", show], opts=["--service", "svc-x", "--quiet"])
    check(p.returncode == 0, "run", p)
    preload, endpoint, service, process = p.stdout.decode().strip().split("|")
    lib = os.path.realpath(ctx.lib)
    check(preload == lib, "LD_PRELOAD %r, want %r" % (preload, lib), p)
    check(endpoint.startswith("unix:/") and endpoint.endswith("/collector.sock"),
          "endpoint %r" % endpoint, p)
    check(service == "svc-x" and process == "1", "service/process span", p)
    # An existing LD_PRELOAD is kept after ours; SPANSHIM_PROCESS_SPAN is the user's.
    other = "/lib/x86_64-linux-gnu/libm.so.6"
    if os.path.exists(other):
        p = run(ctx, ["sh", "-c", show], opts=["--quiet"],
                extra_env={"LD_PRELOAD": other, "SPANSHIM_PROCESS_SPAN": "0"})
        preload, _, service, process = p.stdout.decode().strip().split("|")
        check(preload == lib + ":" + other, "merged LD_PRELOAD %r" % preload, p)
        check(process == "0" and service == "", "user's settings", p)


def test_run_private_collector_is_cleaned_up(ctx):
    p = run(ctx, ["true"])
    check(p.returncode == 0, "run", p)
    left = os.listdir(os.path.join(ctx.tmp, "t"))
    check(left == [], "private collector left %r behind" % left, p)
    check(os.path.exists(out_path(ctx)), "out file not created", p)
    # No spanshimd of ours may outlive the run.
    ps = subprocess.run(["pgrep", "-f", "spanshimd --socket %s/" % os.path.join(ctx.tmp, "t")],
                        capture_output=True)
    check(ps.stdout == b"", "spanshimd still running: %r" % ps.stdout)


def _run_signalled(ctx, sig, name):
    """spanshim run of a shell that traps `name` with exit 42, sent `sig` once it runs:
    (status, stderr)."""
    script = 'trap "exit 42" %s; echo ready; while :; do sleep 0.05; done' % name
    proc = subprocess.Popen([ctx.spanshim, "run", "--quiet", "--out", out_path(ctx), "--",
                             "sh", "-c", script], env=clean_env(ctx), cwd=ctx.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        check(proc.stdout.readline() == b"ready\n", "command did not start")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_run_forwards_sigterm_to_the_command(ctx):
    status, err = _run_signalled(ctx, signal.SIGTERM, "TERM")
    check(status == 42, "status %s, stderr %r" % (status, err))


def test_run_keeps_the_signals_its_caller_ignores_ignored(ctx):
    """`nohup spanshim run -- job` (SIGHUP ignored) and a shell's background job (SIGINT,
    SIGQUIT ignored): the command starts with those signals ignored, as it would without
    spanshim run, and a SIGHUP sent to it does not end it (before, it started with
    every forwarded signal at its default action: a hangup killed the nohup'd job)."""
    def ignoring(*sigs):
        for s in sigs:
            signal.signal(s, signal.SIG_IGN)
    script = ('grep SigIgn /proc/self/status; kill -HUP $$; kill -INT $$; kill -QUIT $$; '
              'echo survived')
    want = subprocess.run(["sh", "-c", script], env=clean_env(ctx), capture_output=True,
                          preexec_fn=lambda: ignoring(signal.SIGHUP, signal.SIGINT,
                                                      signal.SIGQUIT), timeout=60)
    check(want.returncode == 0 and want.stdout.endswith(b"survived\n"), "untraced: %r" % (want,))
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out_path(ctx), "--",
                        "sh", "-c", script], env=clean_env(ctx), cwd=ctx.tmp,
                       capture_output=True, timeout=60,
                       preexec_fn=lambda: ignoring(signal.SIGHUP, signal.SIGINT, signal.SIGQUIT))
    check(r.returncode == 0 and r.stdout == want.stdout,
          "under spanshim run: status %s, stdout %r (untraced %r), stderr %r" % (
              r.returncode, r.stdout, want.stdout, r.stderr))
    # Not ignored by the caller: forwarded as before.
    status, err = _run_signalled(ctx, signal.SIGHUP, "HUP")
    check(status == 42, "SIGHUP not forwarded: status %s, stderr %r" % (status, err))


def test_run_uses_a_running_collector(ctx):
    col = ctx.collector()
    p = spanshim(ctx, ["run", "--", "sh", "-c", 'echo "$SPANSHIM_ENDPOINT"'],
                 extra_env={"SPANSHIM_ENDPOINT": col.endpoint})
    check(p.returncode == 0 and p.stdout.decode().strip() == col.endpoint, "env endpoint", p)
    check(("spans sent to the collector at %s" % col.endpoint).encode() in p.stderr,
          "no note about the collector", p)
    check(b"trace " not in p.stderr, "waterfall printed for an external collector", p)
    p = spanshim(ctx, ["run", "--endpoint", col.socket, "--", "sh", "-c",
                       'echo "$SPANSHIM_ENDPOINT"'])
    check(p.stdout.decode().strip() == col.endpoint, "--endpoint with a bare path", p)
    p = spanshim(ctx, ["run", "--quiet", "--endpoint", col.endpoint, "--", "true"])
    check(p.returncode == 0 and p.stderr == b"", "--quiet with an external collector", p)


def test_run_says_when_the_named_collector_is_unusable_or_silent(ctx):
    # --endpoint the shim could not use: a usage error, the command not run.
    for bad in ["http://[::1", "ftp://x", "unix:relative", "http://127.0.0.1:99999"]:
        p = spanshim(ctx, ["run", "--endpoint", bad, "--", "sh", "-c", "echo ran"])
        check(p.returncode == 2 and p.stdout == b"", "--endpoint %r ran the command" % bad, p)
        check(("--endpoint '%s' is not" % bad).encode() in p.stderr, "no reason", p)
    # The same in the environment: said, passed over (as the shim does), spans collected
    # privately: the waterfall shows the command's process span.
    p = spanshim(ctx, ["run", "--", "sh", "-c", "echo ran"],
                 extra_env={"SPANSHIM_ENDPOINT": "http://[::1", "SPANSHIM_PROCESS_SPANS": "1"})
    check(p.returncode == 0 and p.stdout == b"ran\n", "command", p)
    check(b"SPANSHIM_ENDPOINT='http://[::1' is not a URL the shim can use" in p.stderr,
          "no word about the bad variable", p)
    check(b"spans sent to the collector" not in p.stderr and b"spans written to" in p.stderr,
          "spans not collected privately", p)
    # A usable endpoint where nothing answers: said before and after, never "sent".
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        for args, env in [(["--endpoint", "http://127.0.0.1:%d" % port], {}),
                          ([], {"SPANSHIM_ENDPOINT": "unix:" + ctx.tmp + "/none.sock"})]:
            p = spanshim(ctx, ["run"] + args + ["--", "true"], extra_env=env)
            check(p.returncode == 0, "status", p)
            check(b"nothing answers at " in p.stderr and b"spans sent" not in p.stderr,
                  "silent collector not said", p)


def test_run_says_when_a_collector_stops_during_the_command(ctx):
    # The named collector stops while the command runs: never "spans sent".
    col = ctx.collector()
    p = subprocess.Popen([ctx.spanshim, "run", "--endpoint", col.endpoint, "--", "sh", "-c",
                          "echo started; read x; echo done"],
                         env=clean_env(ctx), cwd=ctx.tmp, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        check(p.stdout.readline() == b"started\n", "command did not start")
        col.proc.kill()
        col.proc.wait()
        out, err = p.communicate(b"go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    check(p.returncode == 0 and out == b"done\n", "command: %r %r" % (out, err))
    check(b"no longer answers" in err and b"spans sent to" not in err, "stop not said: %r" % err)
    # The private collector ends early (killed by the command itself): said, not "no
    # spans were recorded"; the command's status is its own.
    kill = 'pkill -KILL -f -- "--socket ${SPANSHIM_ENDPOINT#unix:}"; sleep 0.2; exit 3'
    p = run(ctx, ["sh", "-c", kill])
    check(p.returncode == 3, "status", p)
    check(b"spanshimd ended early" in p.stderr and b"private collector ended early" in
          p.stderr and b"no spans were recorded" not in p.stderr, "early end not said", p)


def test_run_private_collector_ignores_a_bad_otlp_endpoint(ctx):
    # A bad OTEL_EXPORTER_OTLP_*ENDPOINT is passed over by the shim; the private collector
    # must not die of it either (it forwards nowhere): the spans are in --out.
    for var in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]:
        for opts in [[], ["--out", out_path(ctx)]]:
            p = spanshim(ctx, ["run"] + opts + ["--", "sh", "-c", "echo ran"],
                         extra_env={var: "garbage", "SPANSHIM_PROCESS_SPANS": "1"})
            check(p.returncode == 0 and p.stdout == b"ran\n", "command", p)
            check(b"ended early" not in p.stderr and b"spans written to" in p.stderr,
                  "%s=garbage %s: spans not collected" % (var, opts), p)


def test_run_finds_the_default_collector(ctx):
    env = clean_env(ctx)
    d = os.path.join(env["XDG_RUNTIME_DIR"], "spanshim")
    os.makedirs(d, mode=0o700)
    sock = os.path.join(d, "collector.sock")
    daemon = subprocess.Popen([ctx.spanshimd, "--socket", sock, "--out",
                               os.path.join(ctx.tmp, "default.jsonl")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        p = spanshim(ctx, ["run", "--", "sh", "-c", 'echo "$SPANSHIM_ENDPOINT"'])
        check(p.stdout.decode().strip() == "unix:" + sock, "default collector not used", p)
        check(b"spans sent to the collector at unix:" + sock.encode() in p.stderr, "note", p)
        # --out asks for a private collector even when a default one runs.
        p = run(ctx, ["sh", "-c", 'echo "$SPANSHIM_ENDPOINT"'], opts=["--quiet"])
        check(p.stdout.decode().strip() != "unix:" + sock, "--out used the default", p)
    finally:
        daemon.terminate()
        daemon.wait(10)


# ---- spanshim view ----

def span_json(trace, sid, parent, name, start, end, attrs=None, status=None):
    sp = {"traceId": trace, "spanId": sid, "name": name, "kind": 3,
          "startTimeUnixNano": str(start), "endTimeUnixNano": str(end),
          "attributes": [{"key": k, "value": v} for k, v in (attrs or {}).items()]}
    if parent:
        sp["parentSpanId"] = parent
    if status:
        sp["status"] = status
    return sp


def traces_line(spans, service="app", pid=1234):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "process.pid", "value": {"intValue": str(pid)}}]},
        "scopeSpans": [{"scope": {"name": "spanshim"}, "spans": spans}]}]})


T = "0af7651916cd43dd8448eb211c80319c"
T0 = 1700000000000000000


def sample_file(ctx, extra_lines=()):
    path = os.path.join(ctx.tmp, "sample.jsonl")
    lines = [traces_line([
        span_json(T, "b7ad6b7169203331", None, "app", T0, T0 + 5000000),
        span_json(T, "00f067aa0ba902b7", "b7ad6b7169203331", "connect", T0 + 1000000,
                  T0 + 1250000, {"network.peer.address": {"stringValue": "127.0.0.1"},
                                 "network.peer.port": {"intValue": "5432"}},
                  {"code": 2, "message": "Connection refused"})])]
    lines += list(extra_lines)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_view_prints_the_tree(ctx):
    p = spanshim(ctx, ["view", "--no-color", sample_file(ctx)])
    check(p.returncode == 0, "view failed", p)
    text = p.stdout.decode()
    check("trace 0af76519 · app (pid 1234) · 5.00 ms · 2 spans · 1 error" in text, "header", p)
    check("└─ connect 127.0.0.1:5432" in text, "child row", p)
    check("250 µs  ✗ error: Connection refused" in text, "error mark", p)
    check("\033[" not in text, "colour with --no-color", p)
    check(p.stderr == b"", "stderr not empty", p)
    # Colour only on a terminal: a pipe gets none even without --no-color.
    p = spanshim(ctx, ["view", sample_file(ctx)])
    check(b"\033[" not in p.stdout, "colour on a pipe", p)


def test_view_reports_malformed_lines_and_goes_on(ctx):
    path = sample_file(ctx, ["this is not json",
                             '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{}]}]}]}',
                             '{"resourceSpans": [1,'])
    p = spanshim(ctx, ["view", "--no-color", path])
    check(p.returncode == 0, "a partly readable file is still shown", p)
    check(b"sample.jsonl:2: " in p.stderr and b"sample.jsonl:4: " in p.stderr,
          "line numbers of malformed lines", p)
    check(b":3:" not in p.stderr, "a logs line was reported as malformed", p)
    check(b"connect" in p.stdout and b"1 log record not shown" in p.stdout, "output", p)


def test_view_unreadable_file_exits_1(ctx):
    bad = os.path.join(ctx.tmp, "bad.jsonl")
    with open(bad, "w") as f:
        f.write("garbage\n{\n")
    p = spanshim(ctx, ["view", bad])
    check(p.returncode == 1 and b"bad.jsonl:1: " in p.stderr and b"bad.jsonl:2: " in p.stderr,
          "all-malformed file", p)
    p = spanshim(ctx, ["view", os.path.join(ctx.tmp, "missing.jsonl")])
    check(p.returncode == 1 and b"No such file" in p.stderr, "missing file", p)
    empty = os.path.join(ctx.tmp, "empty.jsonl")
    open(empty, "w").close()
    p = spanshim(ctx, ["view", empty])
    check(p.returncode == 1, "empty file", p)


def test_view_reads_stdin(ctx):
    with open(sample_file(ctx), "rb") as f:
        data = f.read()
    p = spanshim(ctx, ["view", "--no-color", "-"], input=data)
    check(p.returncode == 0 and b"connect 127.0.0.1:5432" in p.stdout, "stdin", p)


# ---- the whole path: a real curl under the shim ----

def test_run_curl_records_connect_and_shows_waterfall(ctx):
    srv = ctx.http_server()
    p = run(ctx, ["curl", "-s", "%s/" % srv.url])
    check(p.returncode == 0, "curl failed", p)
    plain = subprocess.run(["curl", "-s", "%s/" % srv.url], capture_output=True, timeout=30)
    check(p.stdout == plain.stdout == b"hello\n", "curl's output changed", p)
    spans, _ = harness.read_jsonl(out_path(ctx))
    connects = [s for s in spans if s.name == "connect"]
    check(any(s.attrs.get("network.peer.port") == srv.port for s in connects),
          "no connect span to port %d in %r" % (srv.port, spans), p)
    err = p.stderr.decode()
    check("connect 127.0.0.1:%d" % srv.port in err, "waterfall lacks the connect row", p)
    check("spans written to %s" % out_path(ctx) in err, "no note about the file", p)
    # The file a run wrote reads back with view.
    v = spanshim(ctx, ["view", "--no-color", out_path(ctx)])
    check(v.returncode == 0 and ("connect 127.0.0.1:%d" % srv.port).encode() in v.stdout,
          "view of the run's file", v)


def test_run_curl_refused_connect_is_an_error_row(ctx):
    port = harness.free_port()
    p = run(ctx, ["curl", "-s", "http://127.0.0.1:%d/" % port])
    check(p.returncode == 7, "curl should fail to connect", p)
    err = p.stderr.decode()
    check("ECONNREFUSED" in err and "✗" in err, "refused connect not marked", p)


def test_run_summary_does_not_count_drop_reports_as_log_records(ctx):
    # A process dying of SIGSEGV before its first span: its exception record is counted
    # dropped (nothing is symbolized in a signal handler) and the shim's drop report is
    # a log record of its own; the summary says what was dropped and counts as "not
    # shown" only the app's records (it said "1 log record not shown" for the report).
    p = run(ctx, [sys.executable, "-c", "import ctypes; ctypes.string_at(0)"])
    check(p.returncode == 128 + signal.SIGSEGV, "SIGSEGV death", p)
    exc = harness.exception_records(out_path(ctx))
    dropped = sum(n for _, n, _ in harness.drop_reports(out_path(ctx),
                                                        event=harness.LOGS_DROP_EVENT))
    check(len(exc) + dropped == 1, "exception records %d + dropped %d != 1" % (len(exc), dropped), p)
    err = p.stderr.decode()
    last = [ln for ln in err.splitlines() if " in 1 trace" in ln]
    check(len(last) == 1, "no summary line", p)
    if dropped:
        check("the shim dropped 1 exception log record" in last[0], "drop not said", p)
        check("not shown" not in last[0], "the drop report counted as a log record", p)
    else:
        check("1 log record not shown" in last[0] and "dropped" not in last[0], "summary", p)
    # view of the same files says the same.
    v = spanshim(ctx, ["view", "--no-color", out_path(ctx)])
    check(last[0].strip() in v.stdout.decode(), "view's summary differs", v)


def test_run_ctrl_c_at_terminal_stops_command_but_keeps_spans(ctx):
    """^C at a terminal reaches the command (once: spanshim does not forward the kernel's
    signal again) but not the private collector, which still writes the spans."""
    import pty
    import select
    srv = ctx.http_server()
    script = "curl -s -o /dev/null %s/; echo ready; exec sleep 30" % srv.url
    pid, fd = pty.fork()
    if pid == 0:
        env = clean_env(ctx)
        os.chdir(ctx.tmp)
        os.execve(ctx.spanshim, [ctx.spanshim, "run", "--no-color", "--out", out_path(ctx),
                                 "--", "sh", "-c", script], env)
    buf = b""
    try:
        deadline = time.monotonic() + 30
        while b"ready" not in buf and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.5)[0]:
                buf += os.read(fd, 4096)
        check(b"ready" in buf, "command did not start: %r" % buf)
        os.write(fd, b"\x03")
        while True:
            if not select.select([fd], [], [], 30)[0]:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    check(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGINT,
          "status %r, output %r" % (status, buf))
    spans, _ = harness.read_jsonl(out_path(ctx))
    check(any(s.name == "connect" and s.attrs.get("network.peer.port") == srv.port
              for s in spans), "spans lost after ^C: %r; output %r" % (spans, buf))
    check(b"connect 127.0.0.1:%d" % srv.port in buf, "no waterfall after ^C: %r" % buf)


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    """pid runs (a zombie, or gone, is not running)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_run_killed_takes_its_private_collector_with_it(ctx):
    """`spanshim run` SIGKILLed (no chance to stop its collector): the private spanshimd
    it started ends too, not left running under init (it was, for ever)."""
    p = subprocess.Popen([ctx.spanshim, "run", "--quiet", "--out", out_path(ctx), "--",
                          "sleep", "600"], env=clean_env(ctx), cwd=ctx.tmp,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids = []
    try:
        deadline = time.monotonic() + 60
        names = {}
        # The command's child is named spanshim until its exec: wait for sleep.
        while not {"spanshimd", "sleep"} <= set(names) and time.monotonic() < deadline \
                and p.poll() is None:
            time.sleep(0.05)
            kids = _children(p.pid)
            names = {}
            for k in kids:
                try:
                    with open("/proc/%d/comm" % k) as f:
                        names[f.read().strip()] = k
                except OSError:
                    pass
        assert "spanshimd" in names and "sleep" in names, names
        p.kill()
        p.wait()
        daemon = names["spanshimd"]
        deadline = time.monotonic() + 60  # a bound against a hang, not a speed check
        while _alive(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(daemon), "spanshimd %d outlived its spanshim run" % daemon
    finally:
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
