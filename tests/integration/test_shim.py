"""The shim in real, unmodified programs: curl, psql, sh, ls, python3 and small C programs
(tests/progs) run under LD_PRELOAD against real servers on loopback, with a real spanshimd
collecting. Every test asserts on what a user sees: the exported spans and the program's
own output, stderr and exit status."""
import collections
import os
import re
import shutil
import socket
import subprocess

import harness
from harness import dropped_of_pid, parse_kv, spans_of_pid

CLIENT, SERVER, INTERNAL = 3, 2, 1
ERROR = 2


def _strip_pids(b):
    """Removes lines that legitimately differ between two runs (pids, ephemeral ports)."""
    return re.sub(rb"(?m)^(pid|child_pid|parent_pid|server_port|tcp6_port)=\d+\n", b"", b)


def _same_output(a, b, what):
    assert a.returncode == b.returncode, "%s: exit %d without the shim, %d with" % (
        what, a.returncode, b.returncode)
    assert a.stdout == b.stdout, "%s: stdout differs:\n%r\n%r" % (what, a.stdout, b.stdout)
    assert a.stderr == b.stderr, "%s: stderr differs:\n%r\n%r" % (what, a.stderr, b.stderr)


def _by_port(spans, port):
    return [s for s in spans if s.name == "connect" and s.attrs.get("network.peer.port") == port]


def _loopback_alias():
    """A host name other than `localhost` that getaddrinfo resolves to 127.0.0.1 (curl
    resolves `localhost` itself, without getaddrinfo), or None."""
    for name in (socket.gethostname(), "localhost.localdomain", "localhost4"):
        try:
            addrs = {ai[4][0] for ai in socket.getaddrinfo(name, 80, socket.AF_INET)}
        except OSError:
            continue
        if name and name != "localhost" and addrs == {"127.0.0.1"}:
            return name
    return None


# --- curl --------------------------------------------------------------------------------

def _check_curl_connect(spans, port, host):
    """A successful tcp/ipv4 connect span to 127.0.0.1:port; server.address=host when the
    process resolved host with getaddrinfo."""
    ok = [s for s in _by_port(spans, port) if s.attrs.get("network.peer.address") == "127.0.0.1"]
    assert len(ok) == 1, "one connect to 127.0.0.1:%d expected: %r" % (port, spans)
    s = ok[0]
    assert s.kind == CLIENT and s.status_code != ERROR, s
    assert s.attrs.get("network.transport") == "tcp", s
    assert s.attrs.get("network.type") == "ipv4", s
    assert "error.type" not in s.attrs, s
    gai = [g for g in spans if g.name == "getaddrinfo" and
           g.attrs.get("dns.question.name") == host]
    if gai:
        g = gai[0]
        assert g.kind == INTERNAL and g.status_code != ERROR, g
        assert "127.0.0.1" in g.attrs.get("dns.answers", []), g
        assert g.attrs.get("spanshim.dns.answer_count") == len(g.attrs["dns.answers"]), g
        assert s.attrs.get("server.address") == host, s
        assert g.trace_id and s.trace_id
    return s, gai


def test_curl_localhost_connect_and_getaddrinfo_spans(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", "http://localhost:%d/" % srv.port], collector=c)
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    spans = c.spans()
    _check_curl_connect(spans, srv.port, "localhost")
    pids = {s.resource.get("process.pid") for s in spans}
    assert len(pids) == 1, pids
    s = spans[0]
    assert s.resource.get("process.executable.name") == "curl", s.resource
    assert s.resource.get("service.name") == "unknown_service:curl", s.resource
    assert s.resource.get("telemetry.sdk.name") == "spanshim", s.resource
    assert s.resource.get("host.name"), s.resource
    assert s.resource.get("telemetry.sdk.version"), s.resource
    assert s.resource.get("telemetry.sdk.language") == "cpp", s.resource
    assert s.resource.get("process.command") == "curl", s.resource
    assert len(s.resource.get("service.instance.id", "")) == 36, s.resource
    assert s.resource.get("process.creation.time", "").endswith("Z"), s.resource
    raw = open(c.out).read()
    assert '"schemaUrl":"https://opentelemetry.io/schemas/1.40.0"' in raw.replace(" ", ""), raw[:300]


def test_curl_hostname_lookup_sets_server_address(ctx):
    host = _loopback_alias()
    if host is None:
        harness.skip("no host name other than localhost that getaddrinfo resolves to "
                     "127.0.0.1 alone")
    srv = ctx.http_server()
    c = ctx.collector()
    r = ctx.run(["curl", "-s", "http://%s:%d/" % (host, srv.port)], collector=c,
                extra_env={"OTEL_SERVICE_NAME": "curl-test"})
    assert r.returncode == 0 and r.stdout == b"hello\n", r
    spans = c.spans()
    _, gai = _check_curl_connect(spans, srv.port, host)
    assert gai, "no getaddrinfo span for %s: %r" % (host, spans)
    assert all(s.resource.get("service.name") == "curl-test" for s in spans)


def test_curl_refused_connect_is_error_and_exit_7(ctx):
    port = ctx.closed_port()
    c = ctx.collector()
    argv = ["curl", "-s", "http://127.0.0.1:%d/" % port]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert plain.returncode == 7 and r.returncode == 7, (plain, r)
    assert r.stdout == plain.stdout and r.stderr == plain.stderr
    bad = _by_port(c.spans(), port)
    assert len(bad) == 1, bad
    s = bad[0]
    assert s.status_code == ERROR and s.attrs.get("error.type") == "ECONNREFUSED", s
    assert s.attrs.get("network.peer.address") == "127.0.0.1", s


# --- transparency ------------------------------------------------------------------------

def _transparency_cases(ctx, srv):
    refused = ctx.closed_port()
    os.makedirs(os.path.join(ctx.tmp, "lsdir", "sub"))
    for n in ("b.txt", "a.txt"):
        with open(os.path.join(ctx.tmp, "lsdir", n), "w") as f:
            f.write(n)
    return [
        ["curl", "-s", "http://127.0.0.1:%d/" % srv.port],
        ["curl", "-sS", "http://127.0.0.1:%d/" % refused],
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}\n", srv.url + "/status/404"],
        ["sh", "-c", "echo out; echo err >&2; ls /nonexistent-dir; exit 5"],
        ["ls", "-la", "--time-style=+", os.path.join(ctx.tmp, "lsdir")],
        ["python3", "-c", "import sys, socket; print('py out'); "
         "print('py err', file=sys.stderr); "
         "s=socket.socket(); print(s.connect_ex(('127.0.0.1', %d))); sys.exit(4)" % refused],
    ]


def _norm(cp):
    """curl prints how long a failed connect took; that is time, not behaviour."""
    cp.stderr = re.sub(rb"after \d+ ms", b"after N ms", cp.stderr)
    return cp


def test_collector_absent_program_behaves_identically(ctx):
    srv = ctx.http_server()
    for argv in _transparency_cases(ctx, srv):
        plain = _norm(ctx.run(argv, preload=False))
        shim = _norm(ctx.run(argv))  # endpoint set, nobody listening
        _same_output(plain, shim, " ".join(argv))


def test_collector_present_program_behaves_identically(ctx):
    srv = ctx.http_server()
    c = ctx.collector()
    for argv in _transparency_cases(ctx, srv):
        plain = _norm(ctx.run(argv, preload=False))
        shim = _norm(ctx.run(argv, collector=c))
        _same_output(plain, shim, " ".join(argv))
    assert any(s.name == "connect" for s in c.spans())


# --- exact accounting under load -----------------------------------------------------------

def _storm(ctx, threads, per, mode="refused", extra=None, prefix=()):
    c = ctx.collector()
    env = {"SPANSHIM_EXIT_FLUSH_MS": "5000"}  # delivery, not the exit bound, is tested here
    env.update(extra or {})
    r = ctx.run(list(prefix) + [ctx.prog("connect_storm"), str(threads), str(per), mode],
                collector=c, extra_env=env, timeout=300)
    assert r.returncode == 0, r
    out = parse_kv(r.stdout)
    pid = int(out["pid"])
    c.stop()
    spans, scopes = harness.read_jsonl(c.out)
    mine = spans_of_pid(spans, pid)
    names = {}
    for s in mine:
        names[s.name] = names.get(s.name, 0) + 1
    dropped = dropped_of_pid(scopes, pid)
    return out, names, dropped, r


def test_connect_storm_received_plus_dropped_equals_produced(ctx):
    out, names, dropped, _ = _storm(ctx, 8, 2000)
    produced = int(out["produced"])
    assert produced == 16000 and int(out["refused"]) == 16000, out
    got = names.get("connect", 0)
    assert set(names) <= {"connect"}, names
    assert got + dropped == produced, "received %d + dropped %d != produced %d" % (
        got, dropped, produced)
    print("  received=%d dropped=%d" % (got, dropped))


def test_connect_storm_tiny_queue_drops_and_still_accounts(ctx):
    out, names, dropped, _ = _storm(ctx, 8, 2000, extra={"OTEL_BSP_MAX_QUEUE_SIZE": "64"})
    produced = int(out["produced"])
    got = names.get("connect", 0)
    assert dropped > 0, "a 64-span queue under 16000 connects should drop: %r" % names
    assert got + dropped == produced, "received %d + dropped %d != produced %d" % (
        got, dropped, produced)
    print("  received=%d dropped=%d" % (got, dropped))


def test_connect_and_accept_storm_accounts_both_kinds(ctx):
    out, names, dropped, _ = _storm(ctx, 4, 500, mode="accept")
    assert int(out["accepts"]) == 2000 and int(out["ok"]) == 2000, out
    got = names.get("connect", 0) + names.get("accept", 0)
    assert set(names) <= {"connect", "accept"}, names
    assert got + dropped == 4000, "received %r + dropped %d != 4000" % (names, dropped)


def test_threads_under_valgrind(ctx):
    if not shutil.which("valgrind"):
        harness.skip("no valgrind")
    out, names, dropped, r = _storm(
        ctx, 4, 100, prefix=["valgrind", "-q", "--error-exitcode=9", "--suppressions=" +
                             os.path.join(os.path.dirname(__file__), "..", "valgrind.supp")])
    assert b"==" not in r.stderr, r.stderr.decode(errors="replace")[-3000:]
    assert names.get("connect", 0) + dropped == 400, (names, dropped)


# --- fds, fork ------------------------------------------------------------------------------

def test_fd_closing_and_dup2_over_shim_fd_keeps_app_files_and_spans(ctx):
    """fd_chaos closes everything four ways and dup2s its files over every high and low fd.
    With room above the soft limit (4096 here) the shim's fds sit there: every close
    result and every new fd number is the same as without the shim. With the soft limit
    equal to the hard one (above 1024) the shim's socket sits at 1000 and moves when the
    app dup2s onto it; the app's blind close of that number succeeds (the kernel would have
    said EBADF): the counts of the close loops are not compared, everything else is."""
    for soft, hard in ((4096, 20000), (None, None)):
        preexec = _limit(soft, hard) if soft else None
        c = ctx.collector()
        d, dplain = (os.path.join(ctx.tmp, "out%s" % soft), os.path.join(ctx.tmp, "plain%s" % soft))
        os.mkdir(d)
        os.mkdir(dplain)
        env = ctx.env(preload=False)
        plain = subprocess.run([ctx.prog("fd_chaos"), dplain, "300"], env=env, cwd=ctx.tmp,
                               capture_output=True, timeout=120, preexec_fn=preexec)
        env = ctx.env(c, {"OTEL_BSP_SCHEDULE_DELAY": "20"})
        r = subprocess.run([ctx.prog("fd_chaos"), d, "300"], env=env, cwd=ctx.tmp,
                           capture_output=True, timeout=120, preexec_fn=preexec)
        assert r.returncode == 0 and b"done\n" in r.stdout, r
        assert r.stderr == b"", r.stderr
        want_out, got_out = _strip_pids(plain.stdout), _strip_pids(r.stdout)
        if not soft:
            want_out = re.sub(rb"close_(low|all) ok=\d+ ebadf=\d+", b"", want_out)
            got_out = re.sub(rb"close_(low|all) ok=\d+ ebadf=\d+", b"", got_out)
        assert got_out == want_out, (soft, plain.stdout, r.stdout)
        out = parse_kv(r.stdout)
        assert out["dup_fail"] == "0" and out["dup_fail2"] == "0", out
        want_a = "".join("A line %d\n" % i for i in range(100)).encode()
        want_b = ("".join("B line %d\n" % i for i in range(100)) +
                  "".join("B2 line %d\n" % i for i in range(100))).encode()
        with open(os.path.join(d, "a.txt"), "rb") as f:
            a = f.read()
        with open(os.path.join(d, "b.txt"), "rb") as f:
            b = f.read()
        for got, want, n in ((a, want_a, "a.txt"), (b, want_b, "b.txt")):
            assert b"POST" not in got and b"HTTP/1.1" not in got, "%s has the shim's bytes" % n
            assert got == want, "%s is not what the app wrote (%d bytes vs %d)" % (
                n, len(got), len(want))
        spans = spans_of_pid(c.spans(), out["pid"], "connect")
        ports = sorted(s.attrs.get("network.peer.port") for s in spans)
        want = sorted(base + i for base in (10000, 20000, 30000) for i in range(1, 6))
        assert ports == want, "connect spans by port: %r" % ports


def test_fork_child_spans_carry_child_pid(ctx):
    c = ctx.collector()
    r = ctx.run([ctx.prog("forker"), "40001", "40002", "40003"], collector=c)
    assert r.returncode == 0, r
    out = parse_kv(r.stdout)
    child, parent = int(out["child_pid"]), int(out["parent_pid"])
    spans = c.spans()
    pid_of = {}
    for port in (40001, 40002, 40003):
        got = _by_port(spans, port)
        assert len(got) == 1, (port, spans)
        pid_of[port] = got[0].resource.get("process.pid")
    assert pid_of == {40001: parent, 40002: child, 40003: parent}, pid_of
    # The child must not replay the parent's id sequence (ids reseeded after fork).
    kid, after = _by_port(spans, 40002)[0], _by_port(spans, 40003)[0]
    assert kid.span_id != after.span_id, "child and parent made the same span id"
    assert kid.trace_id != after.trace_id, "child and parent made the same trace id"


# --- non-blocking connect ---------------------------------------------------------------------

def _nb(ctx, c, port, how, delay=100):
    argv = [ctx.prog("nbconnect"), "127.0.0.1", str(port), how, str(delay)]
    plain = ctx.run(argv, preload=False)
    shim = ctx.run(argv, collector=c)
    _same_output(plain, shim, " ".join(argv))
    return shim


def test_nonblocking_connect_to_listener_ends_at_outcome(ctx):
    _, port = ctx.listener()
    c = ctx.collector()
    r = _nb(ctx, c, port, "sockopt", 100)
    assert b"connect=-1 errno=EINPROGRESS" in r.stdout and b"so_error=0" in r.stdout, r
    got = _by_port(c.spans(), port)
    assert len(got) == 1, got
    s = got[0]
    assert s.status_code != ERROR and "error.type" not in s.attrs, s
    assert s.end - s.start >= 90e6, "span ended at EINPROGRESS: %d ns" % (s.end - s.start)
    assert s.end - s.start < 5e9, s


def test_nonblocking_connect_still_parked_when_the_process_ends_is_delivered(ctx):
    """A non-blocking connect whose outcome the app never asked for (no poll, I/O or
    close) when the process ends by exit, _exit, a default-action SIGTERM, or exec: the
    span ends there, outcome unknown as at a close, and is delivered with the rest. It was
    lost uncounted: 1 span received of 2 (the process span), 0 dropped."""
    _, port = ctx.listener()
    for how, produced in (("exit", 2), ("_exit", 2), ("term", 2), ("exec", 3)):
        c = ctx.collector()
        argv = [ctx.prog("nbconnect"), "127.0.0.1", str(port), how, "0"]
        plain = ctx.run(argv, preload=False)
        shim = ctx.run(argv, collector=c, extra_env={"SPANSHIM_PROCESS_SPAN": "1"})
        assert (shim.returncode, shim.stdout, shim.stderr) == (
            plain.returncode, plain.stdout, plain.stderr), (how, shim, plain)
        assert b"connect=-1 errno=EINPROGRESS" in shim.stdout, shim
        st = harness.settled_stats(c, produced, timeout=10)
        assert harness.accounted(st) == produced, (how, st)
        got = _by_port(c.spans(), port)
        assert len(got) == 1 and got[0].status_code != ERROR, (how, got)


def test_nonblocking_connect_refused_is_error_via_each_outcome_path(ctx):
    port = ctx.closed_port()
    c = ctx.collector()
    for how in ("sockopt", "write", "read"):
        _nb(ctx, c, port, how, 50)
    got = _by_port(c.spans(), port)
    assert len(got) == 3, got
    for s in got:
        assert s.status_code == ERROR and s.attrs.get("error.type") == "ECONNREFUSED", s
        assert s.end - s.start >= 40e6, s


def test_nonblocking_connect_outcome_by_write_read_or_close(ctx):
    _, port = ctx.listener()
    c = ctx.collector()
    for how in ("write", "read", "close"):
        _nb(ctx, c, port, how, 50)
    got = _by_port(c.spans(), port)
    assert len(got) == 3, got
    for s in got:
        assert s.status_code != ERROR, s
        assert s.end - s.start >= 40e6, s


# --- getaddrinfo ---------------------------------------------------------------------------

def test_getaddrinfo_failure_is_eai_noname_error(ctx):
    c = ctx.collector()
    argv = [ctx.prog("gai"), "does-not-exist.invalid"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert _strip_pids(r.stdout) == _strip_pids(plain.stdout)
    assert (r.returncode, r.stderr) == (plain.returncode, plain.stderr)
    eai = r.stdout.decode().split("getaddrinfo=")[1].split()[1]
    assert eai == "EAI_NONAME", "the resolver here answers %s" % eai
    got = [s for s in c.spans() if s.name == "getaddrinfo"]
    assert len(got) == 1, got
    s = got[0]
    assert s.kind == INTERNAL and s.status_code == ERROR, s
    assert s.attrs.get("error.type") == "EAI_NONAME", s
    assert s.attrs.get("dns.question.name") == "does-not-exist.invalid", s


def test_getaddrinfo_then_connect_names_the_server(ctx):
    _, port = ctx.listener()
    c = ctx.collector()
    argv = [ctx.prog("gai"), "localhost", str(port), "connect"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert _strip_pids(r.stdout) == _strip_pids(plain.stdout) and r.returncode == 0
    out = r.stdout.decode()
    addrs = re.findall(r"(?m)^addr=(\S+)$", out)
    spans = c.spans()
    g = [s for s in spans if s.name == "getaddrinfo"]
    assert len(g) == 1, spans
    assert set(g[0].attrs.get("dns.answers", [])) == set(addrs), (g[0], addrs)
    assert g[0].attrs.get("spanshim.dns.answer_count") == len(g[0].attrs["dns.answers"])
    conns = [s for s in spans if s.name == "connect"]
    assert conns and all(s.attrs.get("server.address") == "localhost" for s in conns), conns
    assert any(s.attrs.get("network.peer.port") == port and s.status_code != ERROR
               for s in conns), conns


# --- accept, transports ---------------------------------------------------------------------

def test_accept_makes_one_server_span_per_connection(ctx):
    c = ctx.collector()
    r = ctx.run([ctx.prog("acceptor")], collector=c)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert "nonblocking_accept4=-1 errno=EAGAIN" in out and \
        "nonblocking_accept=-1 errno=EAGAIN" in out, out
    srv_port = int(parse_kv(out)["server_port"])
    client_ports = sorted(int(p) for p in re.findall(r"client_port=(\d+)", out))
    acc = [s for s in c.spans() if s.name == "accept"]
    assert len(acc) == 3, acc
    assert sorted(s.attrs.get("network.peer.port") for s in acc) == client_ports, acc
    for s in acc:
        assert s.kind == SERVER and s.status_code != ERROR, s
        assert s.attrs.get("network.local.port") == srv_port, s
        assert s.attrs.get("network.peer.address") == "127.0.0.1", s
        assert s.attrs.get("network.local.address") == "127.0.0.1", s
        assert s.attrs.get("network.transport") == "tcp", s
        assert s.attrs.get("network.type") == "ipv4", s


def test_unix_udp_and_ipv6_connects_have_their_transport(ctx):
    c = ctx.collector()
    d = os.path.join(ctx.tmp, "k")
    os.mkdir(d)
    r = ctx.run([ctx.prog("sockkinds"), d], collector=c)
    assert r.returncode == 0, r
    out = parse_kv(r.stdout)
    spans = [s for s in c.spans() if s.name == "connect"]
    unix = [s for s in spans if s.attrs.get("network.transport") == "unix"]
    assert len(unix) == 1, spans
    u = unix[0]
    assert u.attrs.get("network.peer.address") == out["unix_path"], u
    assert "network.peer.port" not in u.attrs and "network.type" not in u.attrs, u
    assert u.kind == CLIENT and u.status_code != ERROR, u
    udp = [s for s in spans if s.attrs.get("network.transport") == "udp"]
    v4 = [s for s in udp if s.attrs.get("network.type") == "ipv4"]
    assert len(v4) == 1 and v4[0].attrs.get("network.peer.port") == 9, udp
    assert v4[0].attrs.get("network.peer.address") == "127.0.0.1", v4
    if out.get("udp6") == "0":
        v6 = [s for s in udp if s.attrs.get("network.type") == "ipv6"]
        assert len(v6) == 1 and v6[0].attrs.get("network.peer.address") == "::1", udp
    if "tcp6_port" in out:
        t6 = _by_port(spans, int(out["tcp6_port"]))
        assert len(t6) == 1, spans
        assert t6[0].attrs.get("network.type") == "ipv6", t6
        assert t6[0].attrs.get("network.transport") == "tcp", t6
        assert t6[0].status_code == ERROR, t6
        assert t6[0].attrs.get("error.type") == "ECONNREFUSED", t6


# --- configuration ------------------------------------------------------------------------------

def test_sdk_disabled_exports_nothing(ctx):
    _, port = ctx.listener()
    c = ctx.collector()
    env = {"OTEL_SDK_DISABLED": "true"}
    for argv in ([ctx.prog("gai"), "localhost", str(port), "connect"],
                 [ctx.prog("simple"), "9", "0"]):
        plain = ctx.run(argv, preload=False)
        r = ctx.run(argv, collector=c, extra_env=env)
        assert _strip_pids(r.stdout) == _strip_pids(plain.stdout)
        assert (r.returncode, r.stderr) == (plain.returncode, plain.stderr)
    c.stop()
    spans, scopes = harness.read_jsonl(c.out)
    assert spans == [] and scopes == [], spans


def test_hooks_dns_only_exports_only_getaddrinfo(ctx):
    _, port = ctx.listener()
    c = ctx.collector()
    r = ctx.run([ctx.prog("gai"), "localhost", str(port), "connect"], collector=c,
                extra_env={"SPANSHIM_HOOKS": "dns"})
    assert r.returncode == 0 and b"connect=0" in r.stdout, r
    names = [s.name for s in c.spans()]
    assert names == ["getaddrinfo"], names


def test_malformed_env_gives_one_diagnostic_and_changes_nothing(ctx):
    c = ctx.collector()
    argv = [ctx.prog("simple"), "9", "3"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c, extra_env={"OTEL_BSP_SCHEDULE_DELAY": "abc",
                                              "SPANSHIM_LOG_LEVEL": "warn"})
    assert r.returncode == 3 and _strip_pids(r.stdout) == _strip_pids(plain.stdout), r
    app_lines = plain.stderr.decode().splitlines()
    extra = [ln for ln in r.stderr.decode().splitlines() if ln not in app_lines]
    assert len(extra) == 1 and "OTEL_BSP_SCHEDULE_DELAY" in extra[0], r.stderr
    assert sorted(set(r.stderr.decode().splitlines()) - set(extra)) == sorted(app_lines)
    quiet = ctx.run(argv, collector=c, extra_env={"OTEL_BSP_SCHEDULE_DELAY": "abc"})
    assert (quiet.returncode, quiet.stderr) == (3, plain.stderr), quiet
    spans = [s for s in c.spans() if s.name == "connect"]
    assert len(spans) == 2, spans
    pids = {s.resource.get("process.pid") for s in spans}
    assert pids == {int(parse_kv(r.stdout)["pid"]), int(parse_kv(quiet.stdout)["pid"])}


# --- PostgreSQL's psql -------------------------------------------------------------------------

def _psql(ctx, c, pg, host):
    r = ctx.run(["psql", "-X", "-At", "-h", host, "-p", str(pg.port), "-U", pg.superuser,
                 "-d", "postgres", "-c", "select 1"], collector=c)
    assert r.returncode == 0 and r.stdout == b"1\n", r
    return [s for s in c.spans() if s.name == "connect"]


def test_psql_over_tcp_makes_connect_span_to_the_port(ctx):
    pg = ctx.postgres()
    c = ctx.collector()
    conns = _psql(ctx, c, pg, pg.host)
    got = _by_port(conns, pg.port)
    assert got, conns
    ok = [s for s in got if s.status_code != ERROR]
    assert len(ok) == 1, got
    assert ok[0].attrs.get("network.peer.address") == "127.0.0.1", ok
    assert ok[0].attrs.get("network.transport") == "tcp", ok


def test_psql_over_unix_socket_makes_unix_connect_span(ctx):
    pg = ctx.postgres()
    c = ctx.collector()
    conns = _psql(ctx, c, pg, pg.sockdir)
    unix = [s for s in conns if s.attrs.get("network.peer.address") == pg.socket_path]
    assert len(unix) == 1, conns
    assert unix[0].attrs.get("network.transport") == "unix", unix
    assert "network.peer.port" not in unix[0].attrs, unix
    assert unix[0].status_code != ERROR, unix


# --- collector restarts and hangs --------------------------------------------------------------

def test_collector_restart_midway_still_accounts_every_span(ctx):
    """Spans made while the collector is down are dropped and counted; the shim finds the
    new collector at the same path and reports the count there."""
    c1 = ctx.collector()
    env = ctx.env(c1, {"OTEL_BSP_SCHEDULE_DELAY": "20", "SPANSHIM_EXIT_FLUSH_MS": "3000"})
    p = subprocess.Popen([ctx.prog("paced"), "300", "5000"], env=env, cwd=ctx.tmp,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time
    time.sleep(0.5)
    c1.stop()
    time.sleep(0.4)
    c2 = ctx.collector_at(c1.socket)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and err == b"", (p.returncode, err)
    pid = int(parse_kv(out)["pid"])
    c2.stop()
    s1, sc1 = harness.read_jsonl(c1.out)
    s2, sc2 = harness.read_jsonl(c2.out)
    got1, got2 = len(spans_of_pid(s1, pid)), len(spans_of_pid(s2, pid))
    dropped = dropped_of_pid(sc1 + sc2, pid)
    assert got1 > 0 and got2 > 0, "spans before %d / after %d the restart" % (got1, got2)
    assert dropped > 0, "nothing was dropped while the collector was down?"
    assert got1 + got2 + dropped == 300, "received %d+%d + dropped %d != 300" % (
        got1, got2, dropped)
    print("  before=%d after=%d dropped=%d" % (got1, got2, dropped))


def test_hung_collector_does_not_delay_exit_or_change_output(ctx):
    import time
    stuck = ctx.stuck_collector()
    argv = [ctx.prog("simple"), "9", "4"]
    plain = ctx.run(argv, preload=False)
    env = ctx.env(None, {"SPANSHIM_ENDPOINT": stuck.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "10"})
    t0 = time.monotonic()
    r = subprocess.run(argv, env=env, capture_output=True, timeout=60, cwd=ctx.tmp)
    took = time.monotonic() - t0
    assert r.returncode == 4 and r.stderr == plain.stderr, r
    assert _strip_pids(r.stdout) == _strip_pids(plain.stdout), r
    assert stuck.accepted >= 1, "the shim never tried the collector"
    # A hang is the collector's forever (the run's 60 s timeout); the exit's own bound is
    # 100 ms of flush. 10 s tells the two apart on a machine as busy as it may be.
    assert took < 10, "exit took %.2f s with a hung collector (bound: 100 ms flush)" % took
    # A longer-lived program: exports hang in the background, the app never waits.
    t0 = time.monotonic()
    r = subprocess.run([ctx.prog("paced"), "50", "10000"], env=env, capture_output=True,
                       timeout=60, cwd=ctx.tmp)
    took = time.monotonic() - t0
    assert r.returncode == 0 and r.stderr == b"", r
    assert took < 0.5 + 10, "50 x 10 ms of work took %.2f s with a hung collector" % took


# --- edges -------------------------------------------------------------------------------------

def test_edge_cases_return_the_same_and_make_sane_spans(ctx):
    d = os.path.join(ctx.tmp, "e")
    os.mkdir(d)
    c = ctx.collector()
    argv = [ctx.prog("edge"), d]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert plain.returncode == 0, plain
    assert (r.returncode, r.stderr) == (plain.returncode, plain.stderr), r
    assert _strip_pids(r.stdout) == _strip_pids(plain.stdout), (plain.stdout, r.stdout)
    out = parse_kv(r.stdout)
    spans = c.spans()
    for s in spans:
        assert s.attrs.get("error.type") not in ("EINTR", "EAGAIN"), s
        if s.name == "connect":
            # An fd that is not a socket (EBADF) has no transport to report: none is guessed.
            want = (None,) if s.attrs.get("error.type") in ("EBADF", "ENOTSOCK") else (
                "tcp", "udp", "unix")
            assert s.attrs.get("network.transport") in want, s
            assert s.kind == CLIENT, s
    unix = [s for s in spans if s.name == "connect" and
            s.attrs.get("network.transport") == "unix"]
    path = [s for s in unix if s.attrs.get("network.peer.address") == out["unix_path"]]
    assert len(path) == 1, "connect to %s (addrlen without NUL): %r" % (out["unix_path"], unix)
    for s in unix:
        a = s.attrs.get("network.peer.address", "")
        assert "\x00" not in a and "ZZ" not in a, "peer address read past addrlen: %r" % a
    abstract = [s for s in unix if "spanshim-edge-abstract" in
                s.attrs.get("network.peer.address", "")]
    assert len(abstract) <= 1, abstract
    accepts = [s for s in spans if s.name == "accept" and s.status_code != ERROR]
    assert len(accepts) == 1, accepts


def test_no_empty_or_zero_placeholder_attributes(ctx):
    """An address the kernel did not give (bad fd, unnamed Unix peer) is left out, not
    exported as "" or port 0."""
    d = os.path.join(ctx.tmp, "e")
    os.mkdir(d)
    c = ctx.collector()
    r = ctx.run([ctx.prog("edge"), d], collector=c)
    assert r.returncode == 0, r
    bad = []
    for s in c.spans():
        for k, v in s.attrs.items():
            if v == "" or (k.endswith(".port") and v == 0):
                bad.append("%s %s=%r (error.type=%s)" % (s.name, k, v,
                                                         s.attrs.get("error.type")))
    assert not bad, "placeholder attributes: %s" % "; ".join(bad)


def test_spans_made_before_exec_or__exit_are_exported(ctx):
    """A process image that ends by execve (wrappers, `exec` in scripts) or _exit (fork
    children, daemons) must not lose what it traced."""
    c = ctx.collector()
    pids = {}
    for port, how in ((41001, "exec"), (41002, "_exit"), (41003, "exit")):
        r = ctx.run([ctx.prog("execer"), str(port), how], collector=c)
        assert r.returncode == 0 and r.stderr == b"", (how, r)
        pids[port] = int(parse_kv(r.stdout)["pid"])
    spans = c.spans()
    missing = [how for port, how in ((41001, "exec"), (41002, "_exit"), (41003, "exit"))
               if len(_by_port(spans, port)) != 1]
    assert not missing, "connect span lost when the process left by: %s" % ", ".join(missing)
    for port, pid in pids.items():
        assert _by_port(spans, port)[0].resource.get("process.pid") == pid


def test_connects_from_a_signal_handler_are_traced_without_deadlock(ctx):
    c = ctx.collector()
    r = ctx.run([ctx.prog("sigconnect"), "50000"], collector=c, timeout=60,
                extra_env={"SPANSHIM_EXIT_FLUSH_MS": "5000"})
    assert r.returncode == 0 and r.stderr == b"", r
    out = parse_kv(r.stdout)
    pid, produced = int(out["pid"]), int(out["main"]) + int(out["handler"])
    assert int(out["handler"]) > 0, out
    c.stop()
    spans, scopes = harness.read_jsonl(c.out)
    got = len(spans_of_pid(spans, pid, "connect"))
    dropped = dropped_of_pid(scopes, pid)
    assert got + dropped == produced, "received %d + dropped %d != produced %d" % (
        got, dropped, produced)


def test_fork_while_threads_trace_never_hangs_children(ctx):
    """fork() from a process whose threads are making spans (and whose exporter may hold
    its locks at that moment): every child finishes, and its 10 spans are delivered under
    its own pid or counted (received + dropped = produced, per child and in /stats)."""
    c = ctx.collector()
    r = ctx.run([ctx.prog("forkstorm"), "40"], collector=c, timeout=120,
                extra_env={"OTEL_BSP_SCHEDULE_DELAY": "1"})
    assert r.returncode == 0 and r.stderr == b"", r
    out = parse_kv(r.stdout)
    kids = re.findall(r"child=(\d+):(\d+)", r.stdout.decode())
    assert len(kids) == 40, r.stdout[-2000:]
    produced = int(out["threads"]) + 10 * len(kids)
    _, spans = harness.check_exact(c, {int(pid): 10 for _, pid in kids}, produced,
                                   skip_pid=int(out["pid"]))
    pid_of = {int(pid): 30000 + int(i) for i, pid in kids}
    wrong = [s for s in spans if s.attrs.get("network.peer.port") !=
             pid_of.get(s.resource.get("process.pid"))]
    assert not wrong, "child spans under another pid or port: %r" % wrong[:5]


def test_unusable_endpoints_leave_the_program_alone(ctx):
    not_a_socket = os.path.join(ctx.tmp, "regular-file")
    with open(not_a_socket, "w") as f:
        f.write("x")
    argv = [ctx.prog("simple"), "9", "6"]
    plain = ctx.run(argv, preload=False)
    for ep in ("unix:" + not_a_socket, "garbage", "http://[::1", "https://127.0.0.1:4318",
               "unix:" + "/x" * 100, "http://127.0.0.1:1/v1/traces", ""):
        r = ctx.run(argv, extra_env={"SPANSHIM_ENDPOINT": ep}, timeout=30)
        assert (r.returncode, r.stderr) == (6, plain.stderr), (ep, r)
        assert _strip_pids(r.stdout) == _strip_pids(plain.stdout), (ep, r)


# --- the app's fds and bytes (issue 13, item 3) ---------------------------------------------

def _limit(soft, hard=None):
    import resource

    def set_it():
        h = resource.getrlimit(resource.RLIMIT_NOFILE)[1] if hard is None else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, h))
    return set_it


def _fd_race(ctx, argv, collector=None, traced=True, preexec=None, extra=None):
    env = ctx.env(collector, dict({"OTEL_BSP_SCHEDULE_DELAY": "1"}, **(extra or {})), traced)
    return subprocess.run([ctx.prog("fd_race")] + argv, env=env, cwd=ctx.tmp, timeout=600,
                          capture_output=True, preexec_fn=preexec)


SHARED = {"SPANSHIM_EXPORTER_FD_TABLE": "shared"}  # the scheme for kernels before 5.9


def test_closefrom_loops_with_socketpairs_get_their_own_fds_and_bytes(ctx):
    """3,000 rounds of closefrom(3)/close_range(3, ~0U) then a socketpair, a UDP connect and
    a refused TCP connect (its stack is captured), with the exporter posting every
    millisecond: the app's fds are 3, 4 and 5 every time, its 64-byte messages arrive
    exactly, nothing of the shim's is read or written on them, never EBADF; and every span
    is delivered or counted. (The exporter used to dial at the lowest free fd before the
    guard knew it: its POST landed in the app's socketpair; libunwind's validation pipe
    read and wrote the app's bytes.) With the exporter thread in an fd table of its own,
    every fd number is the same as without the shim; with it in the app's table (the
    fallback), the bytes and errors still are."""
    port = ctx.closed_port()
    argv = ["loop", "3000", str(port)]
    plain = _fd_race(ctx, argv, traced=False)
    assert plain.returncode == 0, plain
    assert plain.stdout == b"iterations=3000 ebadf=0 bad_bytes=0 stray=0\nmoved=0\n", plain
    for extra in (None, SHARED):
        c = ctx.collector()
        r = _fd_race(ctx, argv, c, extra=extra)
        # In the app's table an fd the exporter thread makes takes the lowest free number
        # for a moment, and an app thread allocating at that instant gets the next one.
        out = r.stdout if extra is None else r.stdout.split(b"\n")[0] + b"\nmoved=0\n"
        assert (r.returncode, out, r.stderr) == (0, plain.stdout, plain.stderr), (extra, r)
        c.stop()
        spans, scopes = harness.read_jsonl(c.out)
        pid = [s.resource["process.pid"] for s in spans][0]
        got = len(spans_of_pid(spans, pid, "connect"))
        assert got + harness.dropped_of_pid(scopes, pid) == 6000, (extra, got)
        assert got > 0


def test_threads_opening_fds_get_the_lowest_free_number_while_the_shim_exports(ctx):
    """4 threads open and close fds in a tight loop (files, sockets, pipes, eventfds, dups,
    socketpairs), every allocation under the app's own lock, while 2 threads make 3,000
    connects each, half of them refused (stacks captured, exception records symbolized),
    half UDP: every fd the app gets is the lowest number free in its view, as the kernel's
    rule says and as it is without the shim. The hard fd limit of 1024 makes the shim's
    scheme for the app's table reconnect for every request (its most births); the
    exporter thread, in a table of its own, makes no fd the app can see. Every span is
    delivered, each failure with its stack (the first one too: the unwinder is loaded in
    the exporter thread's table)."""
    port = ctx.closed_port()
    argv = ["threads", "3000", str(port)]
    plain = _fd_race(ctx, argv, traced=False, preexec=_limit(1024, 1024))
    assert plain.returncode == 0 and plain.stdout.startswith(b"wrong=0\n"), plain
    c = ctx.collector()
    r = _fd_race(ctx, argv, c, preexec=_limit(1024, 1024))
    assert r.returncode == 0 and r.stdout.startswith(b"wrong=0\n"), r
    assert r.stderr == b"", r.stderr
    c.stop()
    spans, scopes = harness.read_jsonl(c.out)
    pid = [s.resource["process.pid"] for s in spans][0]
    got = spans_of_pid(spans, pid, "connect")
    assert len(got) + harness.dropped_of_pid(scopes, pid) == 6000, len(got)
    failed = [s for s in got if s.status_code == 2]
    assert failed and all(
        any(e["name"] == "exception" and
            "exception.stacktrace" in harness.attrs_dict(e.get("attributes"))
            for e in s.events) for s in failed), failed[:1]


def test_an_app_closing_every_listed_fd_sees_the_shims_socket_go(ctx):
    """An app closes every fd /proc/self/fd lists until none is left. The exporter thread's
    socket lives in a table of its own and is never listed: the app sees what it sees
    without the shim. In the app's table (the fallback) it is listed, and close() on it
    succeeds and it is gone on the next pass, as the app's own would be (it used to answer
    EBADF and stay: the loop never ended). The spans made before are delivered either way
    (the exporter reconnects)."""
    plain = _fd_race(ctx, ["drain"], traced=False)
    assert plain.stdout == b"passes=0 failed_closes=0\n", plain
    for extra, argv, want in ((None, ["drain", "settle"], plain.stdout),
                              (SHARED, ["drain", "wait"], b"passes=1 failed_closes=0\n")):
        c = ctx.collector()
        r = _fd_race(ctx, argv, c, extra=extra)
        assert r.returncode == 0 and r.stdout == want, (extra, r)
        c.stop()
        spans = harness.read_jsonl(c.out)[0]
        assert [s for s in spans if s.name == "connect"], (extra, spans)


def test_a_low_fd_limit_gives_the_app_every_fd_and_emfile_where_it_would(ctx):
    """RLIMIT_NOFILE 64: the app opens fds until EMFILE and gets 3..63, exactly as without
    the shim, both when the hard limit leaves room and when it is 64 too, with the
    exporter thread in a table of its own (its fds count in neither) and in the app's (its
    socket sits above the soft limit, or is held only while it posts). The exporter posts
    every millisecond meanwhile; the span is delivered either way."""
    for extra in (None, SHARED):
        for hard in (None, 64):
            plain = _fd_race(ctx, ["fill"], traced=False, preexec=_limit(64, hard))
            assert plain.stdout == b"opened=61 first=3 last=63 errno=EMFILE\n", plain
            c = ctx.collector()
            # The span is posted before the filling starts (the program pauses 300 ms).
            r = _fd_race(ctx, ["fill", "300"], c, preexec=_limit(64, hard), extra=extra)
            assert (r.returncode, r.stdout, r.stderr) == (0, plain.stdout, plain.stderr), \
                (extra, hard, r)
            c.stop()
            assert [s for s in harness.read_jsonl(c.out)[0] if s.name == "connect"], hard


BORROW = r"""
import socket, sys, threading
port = int(sys.argv[1])
def look():
    socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)
t = threading.Thread(target=look)
t.start()
t.join()
# A bare IP (CPython's numeric fast path: no lookup of its own): an unrelated lookup on
# another thread resolved localhost to it.
s = socket.socket()
s.connect(("127.0.0.1", port))
s.close()
# The same thread looks localhost up, then connects to the address it got.
addr = socket.getaddrinfo("localhost", port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
s = socket.socket()
s.connect(addr)
s.close()
print("ok")
"""


def test_a_bare_ip_connect_borrows_no_name_from_another_threads_lookup(ctx):
    """server.address of a connect comes only from a lookup made where the connect is made
    (same span, else same thread, recently): a connect to a bare 127.0.0.1 after another
    thread resolved localhost has none; the thread that resolved localhost itself and
    connects to the answer has server.address=localhost."""
    import sys
    _, port = ctx.listener()
    script = os.path.join(ctx.tmp, "borrow.py")
    with open(script, "w") as f:
        f.write(BORROW)
    c = ctx.collector()
    r = ctx.run([sys.executable, script, str(port)], collector=c)
    assert r.returncode == 0 and r.stdout == b"ok\n", r
    conns = sorted([s for s in c.spans() if s.name == "connect" and
                    s.attrs.get("network.peer.port") == port], key=lambda s: s.start)
    assert len(conns) == 2, conns
    assert "server.address" not in conns[0].attrs, conns[0].attrs
    assert conns[1].attrs.get("server.address") == "localhost", conns[1].attrs


# --- an app taking the shim's fds away (fresh-eyes defects) ---------------------------------

def _close_all(ctx, c, argv, extra=None, log=None):
    """fd_close_all argv under the shim with collector c and a process span; the shim's
    warnings go to the file log. Returns (CompletedProcess, pid)."""
    env = dict({"SPANSHIM_PROCESS_SPAN": "1", "SPANSHIM_LOG_LEVEL": "warn"}, **(extra or {}))
    if log:
        env["SPANSHIM_LOG_FILE"] = log
    r = ctx.run([ctx.prog("fd_close_all")] + argv, c, env, timeout=600)
    assert r.returncode == 0, r
    return r, int(parse_kv(r.stdout.decode())["pid"])


def _each_span_once(c, produced):
    """received + dropped = produced (collector /stats and the process's output), and no
    span id written twice. Returns (stats, spans)."""
    st, spans = harness.check_exact(c, {}, produced)
    ids = collections.Counter(s.span_id for s in spans)
    twice = [i for i, k in ids.items() if k > 1]
    assert not twice, "%d span ids written more than once" % len(twice)
    assert len(spans) == st["spans_received"], (len(spans), st)
    return st, spans


def test_a_close_loop_over_the_shims_socket_delivers_each_span_once(ctx):
    """3,000 refused connects, each followed by close() of fds 3..1023, with the exporter
    thread in the app's fd table (where its socket lives at 1000 up, inside the loop):
    close() of it under a request in flight cuts that request's answer, not the request.
    The request written whole is the collector's: it is not sent again on the next
    connection (it was: 640 span ids written twice, whole 64-span batches). In a table of
    its own the loop never meets the socket. Either way 3,001 spans (the connects and the
    process span) are received or counted dropped, each id once."""
    for extra in (SHARED, None):
        c = ctx.collector()
        _close_all(ctx, c, ["loop", "3000"], extra)
        st, _ = _each_span_once(c, 3001)
        assert st["spans_received"] > 0, (extra, st)


def test_an_app_closing_listed_fds_then_exhausting_them_loses_nothing_silently(ctx):
    """3,000 refused connects and 500 recovered SIGSEGVs, then the app closes every fd
    /proc/self/fd lists (the shim's log file among them), sets its soft RLIMIT_NOFILE to
    10 and opens fds until EMFILE. The exiting thread makes its connection (and reopens
    the log) above that limit, raised for the one call: all 3,001 spans arrive or are
    counted (2,881 arrived, nothing counted, nothing logged). With the hard limit 10 too
    the exiting thread can make nothing: the exporter thread delivers for it from its own
    fd table (124 were lost). Sharing the app's table it cannot either: the exit's
    "could not be delivered" warning, the only record, goes to stderr since the log file
    cannot be reopened (it was lost), and it adds up."""
    log = os.path.join(ctx.tmp, "shim.log")
    for mode in ("proc", "exhaust", "prochard"):
        c = ctx.collector()
        r, _ = _close_all(ctx, c, [mode, "3000", "500"], log=log)
        assert r.stdout.startswith(b"opened=7 errno=24\n"), r
        _each_span_once(c, 3001)
    c = ctx.collector()
    r, pid = _close_all(ctx, c, ["prochard", "3000", "500"], SHARED, log=log)
    st = harness.settled_stats(c, 3001, timeout=10)
    c.stop()
    lost = [int(m) for m in re.findall(
        rb"spanshim\[%d\]: exit: (\d+) spans could not be delivered; the collector could not"
        rb" be told" % pid, r.stderr)]
    dropped = dropped_of_pid(harness.read_jsonl(c.out)[1], pid)
    assert st["spans_received"] + max(lost + [dropped]) == 3001, (st, lost, r.stderr)


def test_a_raw_close_range_over_the_shims_fds_is_counted_and_said(ctx):
    """3,000 refused connects, each followed by a raw close_range(3, ~0U, 0) system call,
    which no fd guard sees. In the app's table (the fallback) it destroys the shim's
    connection and log file behind its back: every span is still received or counted
    (in the collector, or in the exit's warning when the collector could not be told),
    and the log, reopened, says once what happened (it used to say nothing). In a table
    of its own the exporter thread never notices."""
    for extra in (SHARED, None):
        log = os.path.join(ctx.tmp, "shim-%s.log" % ("shared" if extra else "own"))
        c = ctx.collector()
        _, pid = _close_all(ctx, c, ["range", "3000"], extra, log=log)
        st = harness.settled_stats(c, 3001, timeout=10)
        c.stop()
        with open(log, "rb") as f:
            text = f.read()
        lost = [int(m) for m in re.findall(
            rb"exit: (\d+) spans could not be delivered; the collector could not", text)]
        told = dropped_of_pid(harness.read_jsonl(c.out)[1], pid)
        assert st["spans_received"] + max(lost + [told]) == 3001, (extra, st, lost, text)
        said = text.count(b"was closed behind the shim's back")  # once per 10 s at most
        # The exporter notices a close only when it sends during the loop: on a loaded
        # machine it may not run before the exit, which then counts every span above.
        sent = st["spans_received"] > 0 or told > 0
        assert (1 <= said < 10 if sent else said < 10) if extra else said == 0, (extra, text)
