"""Who may read and write (issue 14, items 4, 5, 7, 8), tried as another local user would.

Two throwaway local users (created here when root, as CI runs; skipped, visibly, otherwise):
A is the victim, B the other user. A's default collector socket is
/tmp/spanshim-$A_UID/collector.sock (no XDG_RUNTIME_DIR), which B can try to occupy first:
as a directory of B's, as a symlink to one, inside A's directory left writable, or by a
listener of B's uid. A's traced programs must send nothing there, say why in their
diagnostics, and A's spanshimd must refuse the directory naming it and what to do.
A setuid program with the shim linked in (DT_NEEDED) run by A takes no configuration from
A's environment: no log file created, nothing sent to A's socket; the same with the shim
from /etc/ld.so.preload (in a private mount namespace) in a setuid-root program, one
setuid to B and one with file capabilities, whose spans reach only the default socket of
their effective user. Then the TCP ports'
bearer token (--listen-token, HTTP and gRPC, a traced program sending with it), and
spanshimd under hostile clients (slowloris, a connection flood from one peer, bodies that
would take memory) with an RSS bound read from /proc while a traced program delivers."""
import fcntl
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import harness
import test_spanshimd as t

USERS = ("ss-sec-a", "ss-sec-b")
# Tests of several worktrees may run at once on one machine and share the two users and
# their /tmp/spanshim-$UID paths: one at a time.
LOCK = "/tmp/spanshim-security-test.lock"
# The other users must be able to run it (a pyenv python under /root is not theirs).
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

LISTENER = r"""
import json, os, signal, socket, sys
path, drop = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
if drop != "-":  # bound as root, then listen() as this uid: SO_PEERCRED reports it
    uid, gid = map(int, drop.split(":"))
    os.setgroups([]); os.setgid(gid); os.setuid(uid)
s.listen(16)
s.settimeout(0.1)
conns = nbytes = 0
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
print("ready", flush=True)
while not stop:
    try:
        c, _ = s.accept()
    except (socket.timeout, InterruptedError):
        continue
    conns += 1
    c.settimeout(0.5)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            nbytes += len(b)
    except OSError:
        pass
    c.close()
print(json.dumps({"conns": conns, "bytes": nbytes}), flush=True)
"""


class User:
    def __init__(self, name):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid

    def become(self):
        os.setgroups([])
        os.setgid(self.gid)
        os.setuid(self.uid)

    def default_dir(self):
        return "/tmp/spanshim-%d" % self.uid


def _ensure_user(name):
    for _ in range(20):
        try:
            return User(name)
        except KeyError:
            pass
        r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                            "/usr/sbin/nologin", name], capture_output=True)
        if r.returncode not in (0, 9):  # 9: made meanwhile by a concurrent run
            time.sleep(0.2)  # /etc/passwd locked by someone else: try again
    return User(name)


def two_users(ctx):
    """(A, B), with this test holding the machine-wide lock and a public dir ctx.pub
    holding copies of the binaries both users can run. Skips unless root."""
    if os.geteuid() != 0:
        harness.skip("needs root to create two local users (CI runs as root)")
    if shutil.which("useradd") is None:
        harness.skip("no useradd here")
    lock = open(LOCK, "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    ctx._cleanup.append(lock.close)
    a, b = _ensure_user(USERS[0]), _ensure_user(USERS[1])
    for u in (a, b):
        _clean_default_dir(u)
        ctx._cleanup.append(lambda u=u: _clean_default_dir(u))
    pub = tempfile.mkdtemp(prefix="ss-sec-")
    os.chmod(pub, 0o755)
    ctx._cleanup.append(lambda: shutil.rmtree(pub, ignore_errors=True))
    for f in (ctx.lib, ctx.spanshimd, ctx.spanshim, ctx.prog("simple")):
        shutil.copy2(f, pub)
        os.chmod(os.path.join(pub, os.path.basename(f)), 0o755)
    ctx.pub = pub
    return a, b


def _clean_default_dir(u):
    d = u.default_dir()
    if os.path.islink(d) or os.path.isfile(d):
        os.unlink(d)
    elif os.path.isdir(d):
        shutil.rmtree(d, ignore_errors=True)


def user_dir(ctx, user, mode=0o755):
    d = tempfile.mkdtemp(prefix="ss-sec-%s-" % user.name[-1])
    os.chown(d, user.uid, user.gid)
    os.chmod(d, mode)
    ctx._cleanup.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return d


class Listener:
    """A plain Unix-socket listener (not a collector) counting connections and bytes: what
    another user would run to receive A's spans. `user` runs it; with bind_as_root the
    socket is bound by root first (so it can sit in A's 0700 directory) and listen()ed
    as `user`."""

    def __init__(self, ctx, path, user, bind_as_root=False):
        drop = "%d:%d" % (user.uid, user.gid) if bind_as_root else "-"
        self.proc = subprocess.Popen(
            [PYTHON, "-c", LISTENER, path, drop], stdout=subprocess.PIPE,
            preexec_fn=None if bind_as_root else user.become)
        ctx._cleanup.append(self.result)
        assert self.proc.stdout.readline().strip() == b"ready"
        self.path = path
        self._result = None

    def result(self):
        if self._result is None:
            self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=20)
            self._result = json.loads(out.decode().strip().splitlines()[-1])
        return self._result


def env_of(user, extra=None, pub=None):
    """A plain environment for `user` with no XDG_RUNTIME_DIR: the default socket is
    /tmp/spanshim-$UID/collector.sock."""
    e = {"PATH": "/usr/bin:/bin", "HOME": "/", "USER": user.name, "LOGNAME": user.name,
         "SPANSHIM_EXIT_FLUSH_MS": "3000", "SPANSHIM_PROCESS_SPAN": "1"}
    if pub:
        e["LD_PRELOAD"] = os.path.join(pub, "libspanshim.so")
    e.update(extra or {})
    return e


def run_as(user, argv, env, timeout=60, cwd="/"):
    return subprocess.run(argv, env=env, preexec_fn=user.become, capture_output=True,
                          timeout=timeout, cwd=cwd)


def traced_simple(ctx, user, extra=None):
    """`simple` (one UDP connect, then exit) traced as `user`, diagnostics on stderr."""
    e = env_of(user, dict({"SPANSHIM_LOG_LEVEL": "debug"}, **(extra or {})), ctx.pub)
    r = run_as(user, [os.path.join(ctx.pub, "simple"), "9", "0"], e)
    assert r.returncode == 0 and b"hello from simple" in r.stdout, r
    return r.stderr.decode(errors="replace")


def spanshimd_as(ctx, user, args=(), wait=True):
    """spanshimd started as `user` on its default socket; returns the Popen."""
    out = os.path.join(user_dir(ctx, user, 0o700), "out.jsonl")
    p = subprocess.Popen([os.path.join(ctx.pub, "spanshimd"), "--out", out] + list(args),
                         env=env_of(user), preexec_fn=user.become, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, cwd="/")
    p.out = out
    ctx._cleanup.append(lambda: (p.poll() is None and p.terminate(), p.wait(10)))
    if wait:
        sock = os.path.join(user.default_dir(), "collector.sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return p


def occupy_default_dir(victim, owner, mode):
    """victim's /tmp/spanshim-$UID made as a directory of owner's with this mode."""
    d = victim.default_dir()
    os.mkdir(d)
    os.chown(d, owner.uid, owner.gid)
    os.chmod(d, mode)
    return d


def refused_to_start(ctx, user):
    p = spanshimd_as(ctx, user, wait=False)
    _, err = p.communicate(timeout=30)
    return p.returncode, err.decode()


# ---- 14.5: the default socket can be someone else's ----

def test_default_socket_dir_made_by_another_user_gets_nothing(ctx):
    a, b = two_users(ctx)
    d = occupy_default_dir(a, b, 0o755)
    lis = Listener(ctx, os.path.join(d, "collector.sock"), b)
    err = traced_simple(ctx, a)
    assert "not sending spans to unix:%s/collector.sock: directory %s is owned by uid %d, " \
        "not by us (uid %d) or root" % (d, d, b.uid, a.uid) in err, err
    # spanshim run refuses it too, says so, and collects privately instead.
    r = run_as(a, [os.path.join(ctx.pub, "spanshim"), "run", "--", os.path.join(ctx.pub,
                                                                                "simple")],
               env_of(a), cwd=user_dir(ctx, a))
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "not using the collector at %s/collector.sock" % d in err, err
    assert "spans written to" in err and "connect 127.0.0.1:9" in err, err
    assert lis.result() == {"conns": 0, "bytes": 0}
    code, err = refused_to_start(ctx, a)
    assert code != 0 and "refusing %s: it is a directory owned by uid %d" % (d, b.uid) in err
    assert "Remove it" in err, err


def test_default_socket_dir_symlinked_by_another_user_gets_nothing(ctx):
    a, b = two_users(ctx)
    theirs = user_dir(ctx, b, 0o755)
    lis = Listener(ctx, os.path.join(theirs, "collector.sock"), b)
    os.symlink(theirs, a.default_dir())
    os.lchown(a.default_dir(), b.uid, b.gid)
    err = traced_simple(ctx, a)
    assert "directory %s is a symlink (owned by uid %d)" % (a.default_dir(), b.uid) in err, err
    assert lis.result() == {"conns": 0, "bytes": 0}
    code, err = refused_to_start(ctx, a)
    assert code != 0 and "refusing %s: it is a symlink owned by uid %d" % (
        a.default_dir(), b.uid) in err, err


def test_default_socket_dir_writable_by_others_gets_nothing(ctx):
    a, b = two_users(ctx)
    d = occupy_default_dir(a, a, 0o777)
    lis = Listener(ctx, os.path.join(d, "collector.sock"), b)  # B could put it there
    err = traced_simple(ctx, a)
    assert "directory %s is writable by others (mode 0777)" % d in err, err
    assert lis.result() == {"conns": 0, "bytes": 0}
    code, err = refused_to_start(ctx, a)
    assert code != 0 and "refusing %s: writable by group or others (mode 0777)" % d in err
    assert "chmod 700" in err, err


def test_listener_of_another_uid_in_our_dir_gets_nothing_ours_gets_the_spans(ctx):
    a, b = two_users(ctx)
    d = occupy_default_dir(a, a, 0o700)
    lis = Listener(ctx, os.path.join(d, "collector.sock"), b, bind_as_root=True)
    err = traced_simple(ctx, a)
    assert "the listener runs as uid %d" % b.uid in err, err
    assert lis.result() == {"conns": 1, "bytes": 0}  # connected, checked, closed unsent
    os.unlink(os.path.join(d, "collector.sock"))
    # The control: A's own spanshimd on that very socket gets A's spans.
    col = spanshimd_as(ctx, a)
    err = traced_simple(ctx, a)
    assert "not sending" not in err, err
    col.terminate()
    assert col.wait(20) == 0
    names = sorted(s.name for s in harness.read_jsonl(col.out)[0])
    assert names == ["connect", "simple"], names


def test_spanshimd_of_a_user_makes_its_missing_default_dir_0700_socket_0600(ctx):
    """A user's collector (not root's) keeps everyone else out of its directory: only
    root's processes change user, so no process of its traced tree needs to reach it as
    another user (root's collector: test_spanshimd, 0711 and 0666)."""
    a, _ = two_users(ctx)
    col = spanshimd_as(ctx, a)
    st = os.lstat(a.default_dir())
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == a.uid and st.st_mode & 0o777 == 0o700
    sock = os.path.join(a.default_dir(), "collector.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    col.terminate()
    assert col.wait(20) == 0


# ---- 14.4: secure execution ----

SETUID_PROG = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
  printf("secure=%lu uid=%d euid=%d pid=%d\n", getauxval(AT_SECURE), (int)getuid(),
         (int)geteuid(), (int)getpid());
  return 0;
}
"""


def _build_linked_prog(ctx):
    """A program with the shim as a DT_NEEDED library (as /etc/ld.so.preload or a
    packager's link line would load it: glibc ignores LD_PRELOAD for setuid programs)."""
    if shutil.which("cc") is None:
        harness.skip("no C compiler")
    src = os.path.join(ctx.pub, "suid.c")
    with open(src, "w") as f:
        f.write(SETUID_PROG)
    exe = os.path.join(ctx.pub, "suid")
    subprocess.run(["cc", "-o", exe, src, "-Wl,--no-as-needed",
                    os.path.join(ctx.pub, "libspanshim.so")], check=True)
    return exe


def test_setuid_program_takes_no_configuration_from_its_caller(ctx):
    a, _ = two_users(ctx)
    exe = _build_linked_prog(ctx)
    suid = exe + "-root"
    shutil.copy2(exe, suid)
    os.chown(suid, 0, 0)
    os.chmod(suid, 0o4755)
    mine = user_dir(ctx, a, 0o700)
    lis = Listener(ctx, os.path.join(mine, "c.sock"), a)
    col = spanshimd_as(ctx, a)  # A's own default collector: nothing may arrive there either
    etc_file = "/etc/spanshim-security-test-%d" % os.getpid()
    ctx._cleanup.append(lambda: os.path.exists(etc_file) and os.unlink(etc_file))
    env = env_of(a, {"SPANSHIM_LOG_FILE": etc_file, "SPANSHIM_LOG_LEVEL": "debug",
                     "SPANSHIM_ENDPOINT": "unix:" + lis.path,
                     "OTEL_SERVICE_NAME": "x\nspanshim[1]: forged"})
    r = run_as(a, [suid], env)
    assert r.returncode == 0 and r.stdout.decode().startswith("secure=1 uid=%d euid=0" % a.uid), r
    assert not os.path.exists(etc_file), "a setuid program created the caller's log file"
    assert r.stderr == b"", r.stderr  # no log level either: nothing said on A's terminal
    # The control: the same program without the setuid bit honours A's configuration.
    plain = exe + "-plain"
    shutil.copy2(exe, plain)
    log = os.path.join(mine, "shim.log")
    r2 = run_as(a, [plain], dict(env, SPANSHIM_LOG_FILE=log))
    assert r2.returncode == 0 and r2.stdout.decode().startswith("secure=0"), r2
    assert os.path.exists(log) and os.stat(log).st_uid == a.uid
    res = lis.result()
    assert res["conns"] >= 1 and res["bytes"] > 0, res  # only the plain run's
    col.terminate()
    assert col.wait(20) == 0
    assert harness.read_jsonl(col.out)[0] == []


# The shim from /etc/ld.so.preload (not linked in) into secure-execution programs: setuid
# root, setuid to another user, file capabilities. All of it happens in a private mount
# namespace (unshare -m): a tmpfs over /tmp and an overlay over /etc, so the preload file,
# the programs and every collector socket exist there alone and the machine is untouched.
# The driver below runs as root inside it; it prints one JSON line.
PRELOAD_DRIVER = r"""
import json, os, signal, subprocess, sys, time
spec = json.loads(sys.argv[1])
blobs = {k: open(v, "rb").read() for k, v in spec["files"].items()}  # before /tmp goes
def sh(*a):
    return subprocess.run(a, capture_output=True).returncode == 0
if not sh("mount", "--make-rprivate", "/") or not sh("mount", "-t", "tmpfs", "-o",
                                                      "mode=1777", "ss-sec", "/tmp"):
    print(json.dumps({"skip": "cannot mount a tmpfs in a private mount namespace"})); sys.exit()
os.makedirs("/tmp/etc-up"); os.makedirs("/tmp/etc-work")
if not sh("mount", "-t", "overlay", "overlay", "-o",
          "lowerdir=/etc,upperdir=/tmp/etc-up,workdir=/tmp/etc-work", "/etc"):
    if not os.path.exists("/etc/ld.so.preload"):
        print(json.dumps({"skip": "no overlayfs, and no /etc/ld.so.preload to bind over"}))
        sys.exit()
    open("/tmp/preload", "w").close()
    sh("mount", "--bind", "/tmp/preload", "/etc/ld.so.preload")
os.makedirs("/tmp/pub", 0o755)
for k, b in blobs.items():
    with open("/tmp/pub/" + k, "wb") as f:
        f.write(b)
    os.chmod("/tmp/pub/" + k, 0o755)
a, b = spec["a"], spec["b"]
def become(u):
    return lambda: (os.setgroups([]), os.setgid(u[1]), os.setuid(u[0]))
def as_dir(path, u, mode):
    os.makedirs(path)
    os.chown(path, u[0], u[1])
    os.chmod(path, mode)
progs = {"root": (0, 0, 0o4755), "b": (b[0], b[1], 0o4755), "plain": None}
for name, own in progs.items():
    path = "/tmp/pub/prog-" + name
    with open(path, "wb") as f:
        f.write(blobs["prog"])
    os.chmod(path, 0o755)
    if own:
        os.chown(path, own[0], own[1])
        os.chmod(path, own[2])
with open("/tmp/pub/prog-cap", "wb") as f:
    f.write(blobs["prog"])
os.chmod("/tmp/pub/prog-cap", 0o755)
has_cap = sh("setcap", "cap_net_raw+ep", "/tmp/pub/prog-cap")
env0 = {"PATH": "/usr/bin:/bin", "HOME": "/"}
cols = {}
for who, u in (("root", (0, 0)), ("b", b), ("a", a)):  # each one's default socket
    out = "/tmp/out-%s.jsonl" % who
    cols[who] = (subprocess.Popen(["/tmp/pub/spanshimd", "--out", out], env=env0,
                                  preexec_fn=become(u), stderr=subprocess.PIPE), out)
    sock = "/tmp/spanshim-%d/collector.sock" % u[0]
    deadline = time.monotonic() + 30
    while not os.path.exists(sock) and time.monotonic() < deadline:
        time.sleep(0.02)
as_dir("/tmp/a", a, 0o755)
as_dir("/tmp/logs", a, 0o777)  # anyone may create files here: nobody should
lis = {}
for k in ("secure", "plain"):
    lis[k] = subprocess.Popen([sys.executable, "-c", spec["listener"], "/tmp/a/%s.sock" % k,
                               "-"], stdout=subprocess.PIPE, preexec_fn=become(a))
    lis[k].stdout.readline()
with open("/etc/ld.so.preload", "w") as f:
    f.write("/tmp/pub/libspanshim.so\n")
runs = {}
for name in ("root", "b", "cap", "plain"):
    if name == "cap" and not has_cap:
        continue
    env = dict(env0, SPANSHIM_LOG_LEVEL="debug", SPANSHIM_EXIT_FLUSH_MS="3000",
               SPANSHIM_LOG_FILE="/tmp/logs/%s.log" % name, OTEL_SERVICE_NAME="forged",
               SPANSHIM_ENDPOINT="unix:/tmp/a/%s.sock" % ("plain" if name == "plain" else "secure"),
               OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    if name == "root":
        env["SPANSHIM_LOG_FILE"] = "/etc/spanshim-forged.log"
    r = subprocess.run(["/tmp/pub/prog-" + name], env=env, preexec_fn=become(a),
                       capture_output=True, timeout=60)
    runs[name] = {"rc": r.returncode, "out": r.stdout.decode(), "err": r.stderr.decode()}
os.unlink("/etc/ld.so.preload")
res = {"runs": runs, "has_cap": has_cap, "spans": {}, "listeners": {},
       "logs": sorted(os.listdir("/tmp/logs")),
       "etc": os.path.exists("/etc/spanshim-forged.log") or
              os.path.exists("/tmp/etc-up/spanshim-forged.log")}
for k, p in lis.items():
    p.send_signal(signal.SIGTERM)
    res["listeners"][k] = json.loads(p.communicate(timeout=20)[0].decode().splitlines()[-1])
for who, (p, out) in cols.items():
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    spans = []
    if os.path.exists(out):
        for line in open(out):
            for rs in json.loads(line).get("resourceSpans", []):
                ra = {kv["key"]: list(kv["value"].values())[0]
                      for kv in rs.get("resource", {}).get("attributes", [])}
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        spans.append([sp["name"], ra.get("process.pid"), ra.get("service.name")])
    res["spans"][who] = spans
print(json.dumps(res))
"""

def test_shim_from_ld_so_preload_in_setuid_and_capability_programs_ignores_the_caller(ctx):
    a, b = two_users(ctx)
    if shutil.which("unshare") is None or shutil.which("cc") is None:
        harness.skip("needs unshare(1) and a C compiler")
    src = os.path.join(ctx.pub, "p.c")
    with open(src, "w") as f:
        f.write(SETUID_PROG)
    prog = os.path.join(ctx.pub, "prog")
    subprocess.run(["cc", "-o", prog, src], check=True)  # no shim linked in
    spec = {"files": {"prog": prog, "libspanshim.so": os.path.join(ctx.pub, "libspanshim.so"),
                      "spanshimd": os.path.join(ctx.pub, "spanshimd")},
            "a": [a.uid, a.gid], "b": [b.uid, b.gid], "listener": LISTENER}
    r = subprocess.run(["unshare", "-m", "--propagation", "private", PYTHON, "-c",
                        PRELOAD_DRIVER, json.dumps(spec)], capture_output=True, timeout=300)
    if r.returncode != 0 and b"unshare failed" in r.stderr:
        harness.skip("unshare -m is not permitted here: %s" % r.stderr.decode().strip())
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads(r.stdout.decode().strip().splitlines()[-1])
    if "skip" in res:
        harness.skip(res["skip"])
    runs = res["runs"]
    # The control: the same program, not secure, honours A's configuration (so the shim
    # was there, from /etc/ld.so.preload, and would have obeyed the variables).
    assert runs["plain"]["out"].startswith("secure=0"), runs
    assert res["listeners"]["plain"]["conns"] >= 1, res
    assert res["logs"] == ["plain.log"], res  # created by the control alone
    # Secure: nothing at the caller's endpoint, no log file (not in /etc, not in a
    # directory anyone may write), nothing said on the caller's stderr, and the spans at
    # the effective user's default socket, under the default service name.
    assert res["listeners"]["secure"] == {"conns": 0, "bytes": 0}, res
    assert not res["etc"], "a setuid program created its caller's log file in /etc"
    expect = {"root": ("root", "secure=1 uid=%d euid=0" % a.uid),
              "b": ("b", "secure=1 uid=%d euid=%d" % (a.uid, b.uid))}
    if res["has_cap"]:
        expect["cap"] = ("a", "secure=1 uid=%d euid=%d" % (a.uid, a.uid))
    else:
        print("SKIP (part): setcap on the namespace's tmpfs failed; capability case not run")
    for name, (who, out) in expect.items():
        run = runs[name]
        assert run["rc"] == 0 and run["out"].startswith(out), (name, run)
        assert run["err"] == "", (name, run)
        pid = int(run["out"].split("pid=")[1])
        mine = [s for col, spans in res["spans"].items() for s in spans if int(s[1]) == pid]
        assert mine and all(s[0] == "connect" for s in mine), (name, res["spans"])
        assert all(s[2] != "forged" for s in mine), mine
        assert [s for s in res["spans"][who] if int(s[1]) == pid] == mine, (name, res["spans"])


def test_log_file_symlink_not_followed_and_control_characters_escaped(ctx):
    target = os.path.join(ctx.tmp, "target")
    open(target, "w").close()
    link = os.path.join(ctx.tmp, "link.log")
    os.symlink(target, link)
    r = ctx.run([ctx.prog("simple"), "9", "0"],
                extra_env={"SPANSHIM_LOG_LEVEL": "debug", "SPANSHIM_LOG_FILE": link})
    assert r.returncode == 0
    assert os.path.getsize(target) == 0, "the log followed a symlink"
    log = os.path.join(ctx.tmp, "shim.log")
    short = tempfile.mkdtemp(prefix="ss-esc-")  # sun_path: 108 bytes
    ctx._cleanup.append(lambda: shutil.rmtree(short, ignore_errors=True))
    forged = "unix:%s/none\nspanshim[1]: forged line\x1b[31m" % short
    r = ctx.run([ctx.prog("simple"), "9", "0"],
                extra_env={"SPANSHIM_LOG_LEVEL": "debug", "SPANSHIM_LOG_FILE": log,
                           "SPANSHIM_ENDPOINT": forged})
    assert r.returncode == 0
    lines = open(log, "rb").read().decode().splitlines()
    assert lines and all(re.match(r"spanshim\[\d+\]: ", l) for l in lines), lines
    assert not any(l.startswith("spanshim[1]: forged") for l in lines), lines
    assert any("none\\nspanshim[1]: forged line\\x1b[31m" in l for l in lines), lines


# ---- 14.7: a bearer token on the TCP port ----

def tcp_port(col):
    deadline = time.monotonic() + 10
    while "http://" not in col.stderr():
        assert time.monotonic() < deadline, col.stderr()
        time.sleep(0.01)
    return int(col.stderr().split("http://127.0.0.1:")[1].split(",")[0].split()[0])


def tcp_exchange(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        return t.read_response(s)


def one_span_body(name, i=1):
    return t.traces_request([t.span(t.TRACE_ID, i.to_bytes(8, "big"), name, 1, 1, 2, {})])


def test_listen_token_admits_bearers_only_and_a_traced_program_delivers_with_it(ctx):
    token = "s3cr3t-Token_0123456789"
    path = os.path.join(ctx.tmp, "token")
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    col = ctx.collector(["--listen", "127.0.0.1:0", "--listen-token", path])
    port = tcp_port(col)
    body = one_span_body("no-token")
    r = tcp_exchange(port, t.post("/v1/traces", body))
    assert r[0] == 401 and r[1]["www-authenticate"].startswith("Bearer"), r
    assert tcp_exchange(port, t.post("/v1/traces", body,
                                     extra="Authorization: Bearer wrong\r\n"))[0] == 401
    assert tcp_exchange(port, t.post("/v1/traces", body,
                                     extra="Authorization: Bearer %s\r\n" % token[:-1]))[0] == 401
    two = "Authorization: Bearer %s\r\nAuthorization: Bearer %s\r\n" % (token, token)
    assert tcp_exchange(port, t.post("/v1/traces", body, extra=two))[0] == 401
    assert tcp_exchange(port, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 401
    ok = "Authorization: bearer  %s\r\n" % token  # the scheme in any case, as RFC 9110 says
    assert tcp_exchange(port, t.post("/v1/traces", one_span_body("bearer"), extra=ok))[0] == 200
    assert t.exchange(col, t.post("/v1/traces", one_span_body("unix", 2)))[0] == 200
    # A traced program through the standard OTLP variables (SPANSHIM_ENDPOINT empty = unset).
    env = {"SPANSHIM_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:%d" % port,
           "SPANSHIM_PROCESS_SPAN": "1", "SPANSHIM_EXIT_FLUSH_MS": "3000"}
    r = ctx.run([ctx.prog("simple"), "9", "0"],
                extra_env=dict(env, OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20" + token))
    assert r.returncode == 0
    r = ctx.run([ctx.prog("simple"), "9", "0"], extra_env=dict(env, OTEL_SERVICE_NAME="anon"))
    assert r.returncode == 0
    st = t.stats(col)
    assert st["rejected"]["unauthorized"] >= 6, st  # 5 here, the rest the anon program's
    spans = col.spans()
    assert sorted(s.name for s in spans) == ["bearer", "connect", "simple", "unix"], spans
    assert not any(s.resource.get("service.name") == "anon" for s in spans)


def test_listen_token_file_readable_by_others_is_refused(ctx):
    path = os.path.join(ctx.tmp, "token")
    with open(path, "w") as f:
        f.write("abc\n")
    os.chmod(path, 0o644)
    sock = os.path.join(ctx.tmp, "c.sock")
    r = subprocess.run([ctx.spanshimd, "--socket", sock, "--listen", "127.0.0.1:0",
                        "--listen-token", path], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"every local user can read it (mode 0644); chmod 600" in \
        r.stderr, r.stderr
    os.chmod(path, 0o600)
    r = subprocess.run([ctx.spanshimd, "--socket", sock, "--listen-token", path],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and b"give --listen or --grpc-listen too" in r.stderr, r.stderr
    r = subprocess.run([ctx.spanshimd, "--help"], capture_output=True, timeout=10)
    assert b"EVERY LOCAL USER can send spans there" in r.stdout


# ---- 14.8: spanshimd under hostile clients ----

def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) * 1024
    raise KeyError(key)


MIB = 1 << 20
RSS_BOUND = 64 * MIB  # no upstream and no sampler here: no queues to add


def traced_connects(ctx, col, n=100):
    """A traced program making n refused connects; returns how many of its connect spans
    arrived (it exits before this returns)."""
    r = ctx.run([ctx.prog("connect_storm"), "1", str(n), "refused"], collector=col,
                extra_env={"SPANSHIM_EXIT_FLUSH_MS": "5000"})
    assert r.returncode == 0, r
    pid = int(r.stdout.decode().split("pid=")[1].split()[0])
    return pid


def connect_spans_of(col, pid):
    return len([s for s in col.spans() if s.name == "connect" and
                s.resource.get("process.pid") == pid])


def test_slow_and_idle_connections_are_closed_and_spans_still_arrive(ctx):
    col = ctx.collector(["--header-timeout", "1s", "--body-timeout", "1s",
                         "--idle-timeout", "2s", "--listen", "127.0.0.1:0"])
    head = b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    slow_head, slow_body = t.connect(col), t.connect(col)
    idle = socket.create_connection(("127.0.0.1", tcp_port(col)), timeout=10)
    unix_idle = t.connect(col)  # idle on the Unix socket: closed too (peers reconnect)
    slow_body.sendall(head + b"Content-Length: 100\r\n\r\n")
    pid = traced_connects(ctx, col)
    closed = {}
    deadline = time.monotonic() + 60  # a bound, not a speed: the timeouts are 1-2 s
    i = 0
    while len(closed) < 4 and time.monotonic() < deadline:
        for name, s, data in (("head", slow_head, head[i % len(head):i % len(head) + 1]),
                              ("body", slow_body, b"x"), ("idle", idle, None),
                              ("unix_idle", unix_idle, None)):
            if name in closed:
                continue
            try:
                if data:
                    s.sendall(data)  # 1 byte at a time: slowloris
                s.setblocking(False)
                if s.recv(1) == b"":
                    closed[name] = True
            except BlockingIOError:
                pass
            except OSError:
                closed[name] = True
        i += 1
        time.sleep(0.25)
    assert sorted(closed) == ["body", "head", "idle", "unix_idle"], closed
    assert t.stats(col)["timeouts"] == 4
    with t.connect(col) as again:
        again.sendall(t.post("/v1/traces", one_span_body("after-idle")))
        assert t.read_response(again)[0] == 200
    assert connect_spans_of(col, pid) == 100


def test_one_client_holding_thousands_of_connections_cannot_starve_a_traced_program(ctx):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 4400:
        harness.skip("the hard limit on open files is %d, under 4400" % hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4400), hard))
    ctx._cleanup.append(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)))
    col = ctx.collector(["--listen", "127.0.0.1:0"])
    port = tcp_port(col)
    flood = []
    ctx._cleanup.append(lambda: [s.close() for s in flood])
    for _ in range(4200):  # idle connections from one client (one address) on the TCP port
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        flood.append(s)
    deadline = time.monotonic() + 60
    while True:
        st = t.stats(col)
        if st["peer_limited"] + st["connections_open"] >= 4200:
            break
        assert time.monotonic() < deadline, st
        time.sleep(0.1)
    assert st["peer_limited"] >= 4200 - 1024 and st["connections_open"] <= 1025, st
    pid = traced_connects(ctx, col)
    assert connect_spans_of(col, pid) == 100


def hold_bodies(col, port, head, n, size, waits):
    """n TCP connections from n loopback source addresses (one peer all the same), each
    sending `head` and `size` zero bytes of its body as far as spanshimd takes them, until
    nothing moves and at least `waits` connections were paused for memory. Returns the
    [socket, bytes not sent] pairs."""
    held = []
    for i in range(n):
        s = socket.socket()
        s.settimeout(10)
        s.bind(("127.0.%d.%d" % (1 + i // 250, 1 + i % 250), 0))
        s.connect(("127.0.0.1", port))
        s.sendall(head)
        s.setblocking(False)
        held.append([s, size])
    chunk = b"\x00" * MIB
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # send what spanshimd takes; it stops reading some
        moved = 0
        for h in held:
            try:
                while h[1]:
                    k = h[0].send(chunk[:min(h[1], MIB)])
                    h[1] -= k
                    moved += k
            except BlockingIOError:
                pass
        if not moved and t.stats(col)["buffer_waits"] >= waits:
            break
        time.sleep(0.05)
    return held


def big_valid_request(size):
    spans, n, i = [], 0, 0
    while n < size - 4096:
        sp = t.span(t.TRACE_ID, (i + 1).to_bytes(8, "big"), "s%d" % i, 3, 1000, 2000,
                    {"k%d" % j: "v" * 60 for j in range(16)})
        spans.append(sp)
        n += len(sp) + 4
        i += 1
    return t.traces_request(spans), i


def test_hostile_bodies_keep_rss_bounded_and_memory_comes_back(ctx):
    # 10 connections each holding 16 MiB - 1 of a 16 MiB body on the TCP port (where
    # another local user can send), while a traced program delivers on the Unix socket;
    # then one valid 16 MiB request; then 16 MB of empty spans.
    col = ctx.collector(["--body-timeout", "20s", "--listen", "127.0.0.1:0"])
    port = tcp_port(col)
    pid = col.proc.pid
    head = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: %d\r\n\r\n" % (16 * MIB))
    held = hold_bodies(col, port, head, 10, 16 * MIB - 1, 9)  # from 10 source addresses
    print("10 x 16 MiB - 1 held: VmHWM %d MiB" % (vm(pid, "VmHWM") // MIB))
    tp = traced_connects(ctx, col)
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    for h in held:
        h[0].close()
    body, n = big_valid_request(16 * MIB)
    assert len(body) <= 16 * MIB
    with t.connect(col) as s:
        s.settimeout(60)
        s.sendall(t.post("/v1/traces", body))
        assert t.read_response(s)[0] == 200
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    assert vm(pid, "VmRSS") <= 32 * MIB, vm(pid, "VmRSS") // MIB  # given back after it
    empty = b"\x12\x00" * (8_000_000 - 8)
    scope = b"\x12" + t.varint(len(empty)) + empty
    body = b"\x0a" + t.varint(len(scope)) + scope
    with t.connect(col) as s:
        s.settimeout(60)
        s.sendall(t.post("/v1/traces", body))
        assert t.read_response(s)[0] == 413
    assert vm(pid, "VmHWM") <= RSS_BOUND, vm(pid, "VmHWM") // MIB
    spans = col.spans()
    assert len([s for s in spans if s.name == "connect" and
                s.resource.get("process.pid") == tp]) == 100
    big = [s for s in spans if s.name.startswith("s") and s.name[1:].isdigit()]
    assert [s.name for s in big] == ["s%d" % i for i in range(n)]  # all, in order


def test_listen_token_guards_the_grpc_port_too(ctx):
    import test_sdk_interop as g  # its hand-made gRPC client (node's http2); skips without
    token = "grpc-token-42"
    path = os.path.join(ctx.tmp, "token")
    with open(path, "w") as f:
        f.write(token)
    os.chmod(path, 0o600)
    col, _, gp = g.collector(ctx, ["--listen-token", path])
    body = g.frame(one_span_body("over-grpc"))
    calls = [g.grpc_call(g.TRACE_SVC, body),
             g.grpc_call(g.TRACE_SVC, body, {"authorization": "Bearer nope"}),
             g.grpc_call(g.TRACE_SVC, body, {"authorization": "Bearer " + token})]
    res = g.raw_calls(ctx, calls, url="http://127.0.0.1:%d" % gp)
    assert [g.grpc_status(r)[0] for r in res] == [16, 16, 0], res
    assert t.stats(col)["rejected"]["unauthorized"] == 2
    assert [s.name for s in col.spans()] == ["over-grpc"]
