"""spanshimd in deployment: SIGHUP reopens the output file (logrotate), --daemon detaches
with a pid file, --allow-uid/--allow-group admit other users' programs, the collector never
traces itself even under LD_PRELOAD (its own libcurl upstream included), 1,000 clients at
once, and `make install` puts man pages and systemd units in place."""
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import harness
import test_spanshimd as t
import test_spanshimd_upstream as u

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def one_span(name, i=1):
    return t.post("/v1/traces", t.traces_request([t.span(t.TRACE_ID, i.to_bytes(8, "big"),
                                                         name, 1, 1, 2, {})]))


def test_sighup_reopens_the_output_file_after_logrotate(ctx):
    col = ctx.collector()
    assert t.exchange(col, one_span("before"))[0] == 200
    os.rename(col.out, col.out + ".1")
    col.proc.send_signal(signal.SIGHUP)
    assert u.wait_for(lambda: t.stats(col)["reopens"] == 1)
    assert t.exchange(col, one_span("after", 2))[0] == 200
    assert col.proc.poll() is None
    assert [s.name for s in col.spans()] == ["after"]
    assert [s.name for s in harness.read_jsonl(col.out + ".1")[0]] == ["before"]
    assert os.stat(col.out).st_mode & 0o777 == 0o600


def test_socket_passed_listening_serves_what_connected_before_it_started(ctx):
    """Socket activation (LISTEN_FDS, as `spanshim run` and systemd pass it): a client
    connects and sends before spanshimd runs; spanshimd, stopped at once, still serves it."""
    d = tempfile.mkdtemp(prefix="ss-act-", dir="/tmp")  # a short socket path
    ctx._cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    sock, out = os.path.join(d, "c.sock"), os.path.join(d, "out.jsonl")
    lfd = socket.socket(socket.AF_UNIX)
    lfd.bind(sock)
    lfd.listen(16)
    early = socket.socket(socket.AF_UNIX)
    early.connect(sock)  # queued by the kernel: nobody accepts yet
    early.sendall(one_span("early"))

    def as_fd3():
        os.dup2(lfd.fileno(), 3)
        os.set_inheritable(3, True)  # also when it was fd 3 already (close-on-exec)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 2)
        os.execve(ctx.spanshimd, [ctx.spanshimd, "--socket", sock, "--out", out],
                  dict(os.environ, LISTEN_FDS="1", LISTEN_PID=str(os.getpid())))

    pid = os.fork()
    if pid == 0:
        try:
            as_fd3()
        finally:
            os._exit(127)
    lfd.close()
    try:
        early.settimeout(10)
        assert t.read_response(early)[0] == 200  # served from the backlog
        early.close()
        late = socket.socket(socket.AF_UNIX)
        late.connect(sock)
        late.sendall(one_span("late", 2))
        os.kill(pid, signal.SIGTERM)  # at once: what was sent is still served
        late.settimeout(10)
        assert t.read_response(late)[0] == 200
        late.close()
    finally:
        reaped = []

        def exited():
            p, st = os.waitpid(pid, os.WNOHANG)
            if p == pid:
                reaped.append(st)
            return reaped

        if not u.wait_for(exited, 20):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    status = reaped[0] if reaped else None
    assert status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert sorted(s.name for s in harness.read_jsonl(out)[0]) == ["early", "late"]
    assert not os.path.exists(sock)  # the socket it was given is removed at exit


def test_daemon_detaches_writes_pid_file_and_stops_on_sigterm(ctx):
    d = os.path.join(ctx.tmp, "d")
    os.mkdir(d, 0o700)
    sock, pidf, logf = (os.path.join(d, n) for n in ("c.sock", "pid", "log"))
    r = subprocess.run([ctx.spanshimd, "--daemon", "--socket", sock, "--out", "out.jsonl",
                        "--pid-file", pidf, "--log-file", logf], capture_output=True,
                       timeout=10, cwd=d)
    assert r.returncode == 0, r.stderr
    assert b"listening on unix:" in r.stderr
    assert os.path.exists(sock)  # ready when the command returns
    pid = int(u.wait_for(lambda: os.path.exists(pidf) and open(pidf).read().strip()))
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(sock)
            s.sendall(one_span("daemon"))
            assert t.read_response(s)[0] == 200
        assert os.getsid(pid) == pid  # its own session
    finally:
        os.kill(pid, signal.SIGTERM)
    assert u.wait_for(lambda: not os.path.exists(sock))
    assert u.wait_for(lambda: "spans_received=1" in open(logf).read())
    assert not os.path.exists(pidf)
    assert [s.name for s in harness.read_jsonl(os.path.join(d, "out.jsonl"))[0]] == ["daemon"]


def _as_other_user(col, uid, gid, extra_groups=()):
    """Forks a child that becomes uid/gid and sends one request; returns 'served',
    'refused' or an error string."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        res = b"error"
        try:
            os.close(r)
            os.setgroups(list(extra_groups))
            os.setgid(gid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(col.socket)
            try:
                s.sendall(one_span("other"))
                resp = s.recv(100)
                res = b"served" if resp.startswith(b"HTTP/1.1 200") else b"refused"
            except (ConnectionResetError, BrokenPipeError):
                res = b"refused"
        except BaseException as e:  # noqa: BLE001
            res = repr(e).encode()
        finally:
            os.write(w, res)
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    out = os.read(r, 200).decode()
    os.close(r)
    return out


def test_allow_uid_and_allow_group_admit_other_users(ctx):
    if os.geteuid() != 0:
        harness.skip("needs root to become another user")
    os.chmod(ctx.tmp, 0o711)
    col = ctx.collector(["--allow-uid", "65534"])
    assert os.stat(col.socket).st_mode & 0o777 == 0o666
    assert os.stat(os.path.dirname(col.socket)).st_mode & 0o777 == 0o711
    assert _as_other_user(col, 65534, 65534) == "served"
    assert _as_other_user(col, 65533, 65533) == "refused"
    col2 = ctx.collector(["--allow-group", "4242"])
    assert _as_other_user(col2, 65533, 65533, extra_groups=[4242]) == "served"
    assert _as_other_user(col2, 65533, 4242) == "served"
    assert _as_other_user(col2, 65533, 65533) == "refused"
    st = t.stats(col2)
    assert st["peers_refused"] == 1 and st["spans_received"] == 2
    r = subprocess.run([ctx.spanshimd, "--allow-group", "no-such-group-xyz"],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"--allow-group" in r.stderr


def test_the_collector_never_traces_itself_even_under_ld_preload(ctx):
    watcher = ctx.collector()  # would receive spanshimd's own spans, if it made any
    srv = u.otlp_server(ctx)
    env = ctx.env(watcher)
    import tempfile
    d = tempfile.mkdtemp(prefix="ss-self-")  # short: sun_path holds 108 bytes
    ctx._cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    sock = os.path.join(d, "c.sock")
    p = subprocess.Popen([ctx.spanshimd, "--socket", sock, "--otlp-endpoint", srv.url,
                          "--out", os.path.join(d, "o.jsonl")], env=env,
                         stderr=subprocess.DEVNULL)
    ctx._cleanup.append(lambda: (p.poll() is None and p.terminate(), p.wait(5)))
    assert u.wait_for(lambda: os.path.exists(sock))
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        s.sendall(one_span("payload"))
        assert t.read_response(s)[0] == 200
    assert [x["name"] for x in srv.wait_spans(1)] == ["payload"]  # via libcurl, over TCP
    p.terminate()
    assert p.wait(10) == 0
    time.sleep(0.3)
    assert watcher.spans() == [], "spanshimd traced itself"


def test_a_thousand_clients_at_once(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if want < 1100:
        harness.skip("the hard limit on open files is %d, under 1100" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        col = ctx.collector()  # inherits the raised limit
        conns = []
        for i in range(1000):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            # A Unix socket whose listen backlog is full refuses at once (EAGAIN) rather
            # than waiting: retry, as any client would, while the daemon accepts.
            deadline = time.monotonic() + 10
            while True:
                try:
                    s.connect(col.socket)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.001)
            conns.append(s)
        for i, s in enumerate(conns):
            s.sendall(one_span("c%d" % i, i + 1))
        ok = sum(1 for s in conns if (t.read_response(s) or (0,))[0] == 200)
        for s in conns:
            s.close()
        assert ok == 1000
        assert t.stats(col)["spans_received"] == 1000
        assert len(col.spans()) == 1000
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_make_install_puts_man_pages_and_units_in_place(ctx):
    dest = os.path.join(ctx.tmp, "dest")
    r = subprocess.run(["make", "-s", "-C", REPO, "BUILD=" + ctx.build, "install",
                        "DESTDIR=" + dest, "PREFIX=/usr"], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("usr/bin/spanshimd", "usr/bin/spanshim", "usr/lib/libspanshim.so",
              "usr/share/man/man1/spanshim.1", "usr/share/man/man8/spanshimd.8",
              "usr/lib/systemd/system/spanshimd.service",
              "usr/lib/systemd/user/spanshimd.service"):
        assert os.path.exists(os.path.join(dest, f)), f
    unit = open(os.path.join(dest, "usr/lib/systemd/system/spanshimd.service")).read()
    assert "ExecStart=/usr/bin/spanshimd --socket /run/spanshim/collector.sock" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "@BINDIR@" not in unit
    user = open(os.path.join(dest, "usr/lib/systemd/user/spanshimd.service")).read()
    assert "ExecStart=/usr/bin/spanshimd --out %S/spanshim/traces.jsonl" in user
    if shutil.which("groff"):
        for page in ("man1/spanshim.1", "man8/spanshimd.8"):
            g = subprocess.run(["groff", "-man", "-ww", "-z",
                                os.path.join(dest, "usr/share/man", page)],
                               capture_output=True, timeout=30)
            assert g.returncode == 0 and g.stderr == b"", (page, g.stderr)
        txt = subprocess.run(["groff", "-man", "-Tutf8",
                              os.path.join(dest, "usr/share/man/man8/spanshimd.8")],
                             capture_output=True, timeout=30).stdout.decode()
        txt = re.sub(".\x08", "", txt)  # overstrike bold
        assert "TAIL SAMPLING" in txt and "otlp" in txt
    if shutil.which("systemd-analyze"):
        real = os.path.join(ctx.tmp, "spanshimd.service")
        open(real, "w").write(unit.replace("/usr/bin/spanshimd", ctx.spanshimd))
        v = subprocess.run(["systemd-analyze", "verify", "--man=no", real],
                           capture_output=True, timeout=60)
        assert v.returncode == 0, v.stderr
    r = subprocess.run(["make", "-s", "-C", REPO, "BUILD=" + ctx.build, "uninstall",
                        "DESTDIR=" + dest, "PREFIX=/usr"], capture_output=True, timeout=60)
    assert r.returncode == 0
    left = [os.path.join(p, f) for p, _, fs in os.walk(dest) for f in fs]
    assert left == [], left
