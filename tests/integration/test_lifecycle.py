"""How a process ends or changes, and what is delivered: fork without exec (each forked
child its own process span), popen streams closed with fclose, trees that outlive
`spanshim run`'s direct child (privilege drops: test_privdrop.py). Real programs
(python3 multiprocessing, sh) and small C programs; every test asserts exact span counts and the program's
unchanged output and status."""
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import harness
from harness import parse_kv

INTERNAL = 1


def procs(spans, name=None):
    return [s for s in spans if s.kind == INTERNAL and "process.pid" in s.attrs and
            (name is None or s.name == name)]


# What these tests count is what each way of ending delivers, not how fast a loaded
# machine delivers it: short processes get an exit budget no load can exhaust.
SLOW_EXIT = {"SPANSHIM_EXIT_FLUSH_MS": "20000"}


def run_cli(ctx, argv, args=(), env_extra=None, timeout=180):
    """`spanshim run --quiet --out FILE [args] -- argv`; returns (CompletedProcess, spans)."""
    out = os.path.join(ctx.tmp, "run.jsonl")
    env = ctx.env(preload=False, extra=dict(SLOW_EXIT, **(env_extra or {})))
    env.pop("SPANSHIM_ENDPOINT", None)
    r = subprocess.run([ctx.spanshim, "run", "--quiet", "--out", out] + list(args) + ["--"] +
                       argv, env=env, capture_output=True, timeout=timeout, cwd=ctx.tmp)
    return r, harness.read_jsonl(out)[0]


class Listener:
    """A TCP listener on 127.0.0.1 that accepts and closes every connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.close()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def listener(ctx):
    lst = Listener()
    ctx._cleanup.append(lst.stop)
    return lst


def no_orphans(spans):
    ids = {s.span_id for s in spans}
    orphans = [s for s in spans if s.parent_id and s.parent_id not in ids]
    assert not orphans, "spans whose parent never arrived: %r" % orphans[:5]
    assert len({s.trace_id for s in spans}) == 1, "more than one trace"


# ---- popen streams closed with fclose (issue 12 item 8) ----

def test_hundred_popen_streams_closed_with_fclose_are_waited_for_and_traced(ctx):
    """100 streams open at once (past the old 64-entry table), each closed with fclose:
    fclose waits for its child (none left to reap), returns its status, output as
    untraced; every child's process span arrives under the parent's."""
    prog = [ctx.prog("popen_many"), "100"]
    plain = ctx.run(prog, preload=False)
    assert plain.returncode == 0 and b"left=0" in plain.stdout, plain
    r, spans = run_cli(ctx, prog)
    assert r.returncode == 0 and r.stderr == b"", r
    assert r.stdout == plain.stdout, (r.stdout[-300:], plain.stdout[-300:])
    [parent] = procs(spans, "popen_many")
    shells = [s for s in procs(spans) if s is not parent]
    assert len(shells) == 100, len(shells)
    for s in shells:
        assert s.parent_id == parent.span_id, s
    codes = sorted(s.attrs.get("process.exit.code") for s in shells)
    assert codes == sorted([i % 7 if i % 2 == 0 else i % 5 for i in range(100)]), codes
    assert len(spans) == 101, len(spans)
    no_orphans(spans)


# ---- fork without exec (issue 12 item 7) ----

MP_SCRIPT = textwrap.dedent("""
    import multiprocessing as mp, socket, sys

    def work(i):
        s = socket.socket()
        s.connect(("127.0.0.1", PORT))
        s.close()
        return i * i

    if __name__ == "__main__":
        mp.set_start_method(sys.argv[1])
        p = mp.Pool(3)
        print(sum(p.map(work, range(12), chunksize=1)))
        p.close()
        p.join()
""")


def _mp_pool(ctx, method):
    lst = listener(ctx)
    script = os.path.join(ctx.tmp, "pool.py")
    with open(script, "w") as f:
        f.write(MP_SCRIPT.replace("PORT", str(lst.port)))
    py = os.path.realpath(sys.executable)
    r, spans = run_cli(ctx, [py, script, method])
    assert r.returncode == 0 and r.stdout == b"506\n", r
    connects = [s for s in spans if s.name == "connect" and
                s.attrs.get("network.peer.port") == lst.port]
    assert len(connects) == 12, connects
    ids = {s.span_id: s for s in spans}
    pids = {}
    for p in procs(spans):
        pids.setdefault(p.attrs["process.pid"], []).append(p)
    # Each connect's parent is the process span of the worker that made it.
    for c in connects:
        owner = ids.get(c.parent_id)
        assert owner is not None and owner.attrs.get("process.pid") == \
            c.resource["process.pid"], (c, owner)
    workers = {c.resource["process.pid"] for c in connects}
    assert 1 <= len(workers) <= 3, workers
    no_orphans(spans)
    return r, spans, pids, connects


def test_multiprocessing_fork_pool_workers_each_have_a_process_span(ctx):
    _, spans, pids, connects = _mp_pool(ctx, "fork")
    [main] = [p for p in procs(spans) if p.parent_id == ""]
    workers = [p for p in procs(spans) if p is not main]
    assert len(workers) == 3, workers
    for w in workers:
        # Forked from the main process: its child, same executable, own pid, exit 0.
        assert w.parent_id == main.span_id, w
        assert w.attrs["process.parent_pid"] == main.attrs["process.pid"], w
        assert w.attrs["process.pid"] != main.attrs["process.pid"], w
        assert w.attrs.get("process.exit.code") == 0, w
        assert main.start <= w.start and w.end <= main.end, (w, main)
    assert len(spans) == 1 + 3 + 12, [s.name for s in spans]


def test_multiprocessing_forkserver_pool_workers_nest_under_the_server(ctx):
    _, spans, pids, connects = _mp_pool(ctx, "forkserver")
    [main] = [p for p in procs(spans) if p.parent_id == ""]
    ids = {s.span_id: s for s in spans}
    # The fork server is exec'd by main; the workers are forked from it.
    servers = [p for p in procs(spans) if p.parent_id == main.span_id]
    workers = [p for p in procs(spans) if ids.get(p.parent_id) in servers]
    assert len(servers) >= 1 and len(workers) == 3, procs(spans)
    for w in workers:
        assert w.attrs.get("process.exit.code") == 0, w
    for c in connects:
        assert ids[c.parent_id] in workers, c
    # The rest: main asks the fork server for each worker over its Unix socket (a connect
    # in main, an accept in the server).
    others = [s for s in spans if s not in procs(spans) and s not in connects]
    assert sorted(s.name for s in others) == ["accept"] * 3 + ["connect"] * 3, others
    assert all(s.attrs.get("network.transport") == "unix" or s.name == "accept"
               for s in others), others
    assert len(spans) == 1 + len(servers) + 3 + 12 + 6, [s.name for s in spans]


def test_multiprocessing_spawn_pool_workers_are_exec_d_children(ctx):
    _, spans, pids, connects = _mp_pool(ctx, "spawn")
    [main] = [p for p in procs(spans) if p.parent_id == ""]
    workers = [p for p in procs(spans) if p is not main]
    # spawn forks and execs a fresh interpreter: one span per worker, none for the fork.
    # (A resource tracker process may be started too; it does no connects.)
    assert 3 <= len(workers) <= 4, workers
    assert len(spans) == 1 + len(workers) + 12, [s.name for s in spans]


def test_forked_child_nests_its_spans_and_exec_after_fork_adds_no_span(ctx):
    """forker: parent connects, forks; the child connects and exits 0. sh -c 'a; b':
    fork+exec of each command gives exactly one span per command."""
    r, spans = run_cli(ctx, [ctx.prog("forker"), "40001", "40002", "40003"])
    assert r.returncode == 0, r
    kv = parse_kv(r.stdout)
    [parent] = [p for p in procs(spans) if p.parent_id == ""]
    [child] = [p for p in procs(spans) if p is not parent]
    assert child.attrs["process.pid"] == int(kv["child_pid"]), child
    assert child.parent_id == parent.span_id and child.attrs.get("process.exit.code") == 0
    [cc] = [s for s in spans if s.attrs.get("network.peer.port") == 40002]
    assert cc.parent_id == child.span_id, cc
    assert len(spans) == 2 + 3, spans
    r, spans = run_cli(ctx, ["sh", "-c", "true; /bin/true; env >/dev/null; exit 3"])
    assert r.returncode == 3, r
    # Named after what was executed (sh), not the symlink's target (dash): issue 13.6.
    assert sorted(p.name for p in procs(spans)) == ["env", "sh", "true"], spans


WAITING_CHILD = textwrap.dedent("""
    import os, select, socket, sys
    port, how = int(sys.argv[1]), sys.argv[2]
    pid = os.fork()
    if pid == 0:
        socket.create_connection(("127.0.0.1", port)).close()  # within its first 100 ms
        print("child_pid=%d" % os.getpid(), flush=True)
        if how == "poll":
            p = select.poll(); p.register(0, select.POLLIN); p.poll()
        elif how == "epoll":
            e = select.epoll(); e.register(0, select.EPOLLIN); e.poll()
        elif how == "select":
            select.select([0], [], [])
        else:
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
            print("accept_port=%d" % s.getsockname()[1], flush=True)
            s.accept()
        os._exit(7)
    _, st = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(st))
""")


def test_a_fork_child_that_waits_for_events_delivers_while_it_waits(ctx):
    """A fork child's spans from its first 100 ms wait for its end (no exporter thread for
    a child that ends soon), unless it goes on to wait for what comes next: nginx's workers
    that served a request in their first 100 ms delivered nothing until they were stopped.
    A child that waits in poll, epoll_wait, select or accept delivers while it waits."""
    lst = listener(ctx)
    for how in ("poll", "epoll", "select", "accept"):
        c = ctx.collector()
        p = subprocess.Popen([sys.executable, "-c", WAITING_CHILD, str(lst.port), how],
                             env=ctx.env(c, extra=dict(SLOW_EXIT, OTEL_BSP_SCHEDULE_DELAY="50")),
                             stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ctx.tmp)
        try:
            child = int(p.stdout.readline().split(b"=")[1])
            accept_port = int(p.stdout.readline().split(b"=")[1]) if how == "accept" else 0
            deadline = time.monotonic() + 30  # a bound, not a speed
            got = []
            while not got and time.monotonic() < deadline:
                got = harness.spans_of_pid(c.spans(stop=False), child, "connect")
                time.sleep(0.1)
            assert p.poll() is None, (how, "the child ended before its span came")
            assert len(got) == 1 and got[0].attrs["network.peer.port"] == lst.port, (how, got)
        finally:
            if accept_port:
                socket.create_connection(("127.0.0.1", accept_port)).close()
            _, err = p.communicate(b"go\n", timeout=60)
        assert p.returncode == 7, (how, p.returncode, err)
        spans = c.spans()
        assert len(harness.spans_of_pid(spans, child, "connect")) == 1, (how, spans)


FORKING_SERVER = textwrap.dedent("""
    import http.server, os, signal, socketserver, sys
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the child reads on for the next request
        def log_message(self, *a): pass
        def do_GET(self):
            body = b"pid=%d\\n" % os.getpid()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
    class S(socketserver.ForkingMixIn, http.server.HTTPServer):
        pass
    srv = S(("127.0.0.1", 0), H)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    print("port=%d" % srv.server_address[1], flush=True)
    srv.serve_forever()
""")


def test_a_forking_servers_worker_on_a_kept_alive_connection_delivers_while_it_reads(ctx):
    """socketserver.ForkingMixIn: a child per connection serves its requests, then blocks
    reading the kept-alive connection for the next one. The request it served in its first
    100 ms goes out while it waits (before, only when the client closed the connection:
    behind nginx's upstream keepalive, minutes later)."""
    c = ctx.collector()
    svc = harness.Service(ctx, [sys.executable, "-c", FORKING_SERVER], collector=c,
                          env=dict(SLOW_EXIT, OTEL_BSP_SCHEDULE_DELAY="50"))
    conn = socket.create_connection(("127.0.0.1", svc.port))
    try:
        conn.sendall(b"GET /kept HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while b"pid=" not in got or not got.endswith(b"\n"):
            d = conn.recv(4096)
            assert d, got
            got += d
        child = int(got.split(b"pid=")[1])
        deadline = time.monotonic() + 30  # a bound, not a speed
        spans = []
        while not spans and time.monotonic() < deadline:
            spans = harness.spans_of_pid(c.spans(stop=False), child, "GET")
            time.sleep(0.1)
        assert len(spans) == 1 and spans[0].attrs.get("url.path") == "/kept", (
            "the worker's SERVER span was not delivered while the connection stayed open: %r"
            % spans)
    finally:
        conn.close()
    assert svc.stop() == 0
    assert len(harness.spans_of_pid(c.spans(), child, "GET")) == 1


# ---- spanshim run collects from the whole tree (issue 12 item 2) ----

def test_run_keeps_collecting_from_background_jobs_and_double_forked_daemons(ctx):
    """The command exits at once, leaving a background job and a double-forked daemon
    (setsid, parent gone) that connect later: their spans arrive, the status is the
    command's, and spanshim says what it waited for."""
    lst = listener(ctx)
    py = os.path.realpath(sys.executable)
    daemon = ("import os, socket, time\n"
              "if os.fork(): os._exit(0)\n"
              "os.setsid()\n"
              "if os.fork(): os._exit(0)\n"
              "time.sleep(0.3)\n"
              "s = socket.socket(); s.connect(('127.0.0.1', %d)); s.close()\n" % lst.port)
    script = os.path.join(ctx.tmp, "daemon.py")
    with open(script, "w") as f:
        f.write(daemon)
    cmd = "(sleep 0.3; curl -s http://127.0.0.1:%d/ >/dev/null) & %s %s; exit 4" % (
        lst.port, py, script)
    out = os.path.join(ctx.tmp, "run.jsonl")
    env = ctx.env(preload=False, extra=SLOW_EXIT)
    env.pop("SPANSHIM_ENDPOINT", None)
    r = subprocess.run([ctx.spanshim, "run", "--out", out, "--", "sh", "-c", cmd], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, cwd=ctx.tmp)
    spans = harness.read_jsonl(out)[0]
    assert r.returncode == 4, r
    assert b"spanshim: waited " in r.stderr and b"the command left running" in r.stderr, r.stderr
    to_port = [s for s in spans if s.name == "connect" and
               s.attrs.get("network.peer.port") == lst.port]
    assert len(to_port) == 2, spans  # curl's and the daemon's
    names = sorted(p.name for p in procs(spans))
    # sh, the subshell (a fork), curl, python, its two forked children
    assert names.count("curl") == 1 and len([n for n in names if n.startswith("python")]) == 3, \
        names
    no_orphans(spans)


def test_run_names_what_still_runs_when_the_wait_ends(ctx):
    """A daemon that never exits: spanshim run waits --wait-tree, names it, exits with
    the command's status."""
    r, spans = run_cli(ctx, ["sh", "-c", "setsid sleep 30 </dev/null >/dev/null 2>&1 & exit 0"],
                       args=["--wait-tree", "200ms"])
    m = re.search(rb"(\d+) \(sleep\)", r.stderr)
    if m:
        os.kill(int(m.group(1)), signal.SIGKILL)  # the sleep this test left behind
    assert r.returncode == 0, r
    assert b"1 process the command started still runs after" in r.stderr and m, r.stderr
    assert len(procs(spans)) == 2, spans  # sh and the forked subshell that became sleep


def test_run_wait_tree_rejects_a_bad_duration(ctx):
    r = subprocess.run([ctx.spanshim, "run", "--wait-tree", "soon", "--", "true"],
                       capture_output=True, cwd=ctx.tmp)
    assert r.returncode == 2 and b"--wait-tree 'soon' is not a duration" in r.stderr, r
