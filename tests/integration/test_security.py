"""Who may read and write (issue 14, items 4, 5, 7, 8), tried as another local user would.

Two throwaway local users (created here when root, as CI runs; skipped, visibly, otherwise):
A is the victim, B the other user. A's default collector socket is
/tmp/spanshim-$A_UID/collector.sock (no XDG_RUNTIME_DIR), which B can try to occupy first:
as a directory of B's, as a symlink to one, inside A's directory left writable, or by a
listener of B's uid. A's traced programs must send nothing there, say why in their
diagnostics, and A's spanshimd must refuse the directory naming it and what to do.
A setuid program with the shim linked in (DT_NEEDED) run by A takes no configuration from
A's environment: no log file created, nothing sent to A's socket."""
import fcntl
import json
import os
import pwd
import re
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


def refused_to_start(ctx, user):
    p = spanshimd_as(ctx, user, wait=False)
    _, err = p.communicate(timeout=30)
    return p.returncode, err.decode()


# ---- 14.5: the default socket can be someone else's ----

def test_default_socket_dir_made_by_another_user_gets_nothing(ctx):
    a, b = two_users(ctx)
    d = a.default_dir()
    os.mkdir(d)
    os.chown(d, b.uid, b.gid)
    os.chmod(d, 0o755)
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
    d = a.default_dir()
    os.mkdir(d)
    os.chown(d, a.uid, a.gid)
    os.chmod(d, 0o777)
    lis = Listener(ctx, os.path.join(d, "collector.sock"), b)  # B could put it there
    err = traced_simple(ctx, a)
    assert "directory %s is writable by others (mode 0777)" % d in err, err
    assert lis.result() == {"conns": 0, "bytes": 0}
    code, err = refused_to_start(ctx, a)
    assert code != 0 and "refusing %s: writable by group or others (mode 0777)" % d in err
    assert "chmod 700" in err, err


def test_listener_of_another_uid_in_our_dir_gets_nothing_ours_gets_the_spans(ctx):
    a, b = two_users(ctx)
    d = a.default_dir()
    os.mkdir(d)
    os.chown(d, a.uid, a.gid)
    os.chmod(d, 0o700)
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


def test_spanshimd_makes_its_missing_default_dir_0700(ctx):
    a, _ = two_users(ctx)
    col = spanshimd_as(ctx, a)
    st = os.lstat(a.default_dir())
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == a.uid and st.st_mode & 0o777 == 0o700
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
  printf("secure=%lu uid=%d euid=%d\n", getauxval(AT_SECURE), (int)getuid(), (int)geteuid());
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
