#!/usr/bin/env python3
"""Memcheck of the shim inside real programs, and of spanshimd receiving their spans.

Each case runs a real program as valgrind's client with LD_PRELOAD=libspanshim.so (the shim
runs inside the program, under memcheck) against one spanshimd that itself runs under
memcheck. A case passes when memcheck reports no error in the program, the program's exit
status (or signal) and, where it is deterministic, its stdout are those of an untraced run
without valgrind, and its spans reached the collector (received, or counted by the shim as
dropped: nothing lost). At the end spanshimd is stopped and must exit cleanly with no
memcheck error and no definite leak.

Usage: programs.py [--build DIR] [-k SUBSTRING]
Prints one line per case (PASS, FAIL or SKIP with the reason) and last
`N passed, N failed, N skipped`. Exit status 1 when any case failed.
`make valgrind` runs it after the unit suites. Takes 2-6 minutes on 2 cores.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

VG_ERR = 99  # memcheck's exit status for "errors found"; no program here exits with it
SUPP = os.path.join(ROOT, "tests", "valgrind.supp")
VG = ["valgrind", "-q", "--suppressions=" + SUPP,
      "--trace-children=no", "--child-silent-after-fork=yes"]


class Bench:
    """What every case shares: the build, a temp dir, one spanshimd under memcheck, an HTTP
    server (harness.HttpServer), a closed port, and PostgreSQL when one can be started."""

    def __init__(self, build):
        self.build = build
        self.lib = os.path.join(build, "libspanshim.so")
        self.progs = os.path.join(build, "tests", "progs")
        self.tmp = tempfile.mkdtemp(prefix="ss-vg-")
        os.chmod(self.tmp, 0o700)
        self.sock = os.path.join(self.tmp, "c.sock")
        self.out = os.path.join(self.tmp, "spans.jsonl")
        self.vglog = os.path.join(self.tmp, "spanshimd.vg")
        self.col = subprocess.Popen(
            VG + ["--error-exitcode=%d" % VG_ERR, "--leak-check=full", "--errors-for-leak-kinds=definite",
                  "--log-file=" + self.vglog,
                  os.path.join(build, "spanshimd"), "--socket", self.sock, "--out", self.out],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "spanshimd.err"), "w"))
        deadline = time.monotonic() + 120
        while not os.path.exists(self.sock):
            if self.col.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("spanshimd under valgrind did not start")
            time.sleep(0.05)
        self.http = harness.HttpServer()
        self.closed = harness.free_port()
        self.pg = None
        self.pg_why = ""

    def postgres(self):
        if self.pg is None and not self.pg_why:
            try:
                import pg
                self.pg = pg.PgCluster()
            except Exception as e:  # no server binaries, or initdb refused
                self.pg_why = "no PostgreSQL here: %s" % str(e).splitlines()[0][:120]
        return self.pg

    def env(self, traced, extra=None):
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("SPANSHIM_", "OTEL_")) and k != "LD_PRELOAD"}
        if traced:
            e["LD_PRELOAD"] = self.lib
            e["SPANSHIM_ENDPOINT"] = "unix:" + self.sock
            e["SPANSHIM_PROCESS_SPAN"] = "1"
            e["SPANSHIM_LOG_LEVEL"] = "warn"
        e.update(extra or {})
        return e

    def close(self):
        self.http.stop()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def memcheck_errors(path):
    """memcheck's report lines (`==PID== ...`) in a --log-file; its `--PID--` notes (an
    unhandled system call it answers ENOSYS, as for pidfd_getfd) are not errors."""
    with open(path, errors="replace") as f:
        return "".join(l for l in f if l.startswith("==")).strip()


def error_heads(report):
    """The first line of each report in memcheck_errors() text (what went wrong, without
    pid, addresses or stack), as a sorted list."""
    heads, new = [], True
    for line in report.splitlines():
        text = line.split("== ", 1)[1] if "== " in line else ""
        if not text.strip():
            new = True
            continue
        if new and not text.startswith(" "):
            heads.append(text.strip())
        new = False
    return sorted(heads)


def status(rc):
    return "signal %d" % -rc if rc < 0 else "exit %d" % rc


def run_case(b, name, argv, stdout_same=True, extra=None, timeout=600, app_errors=False):
    """Runs argv untraced (no valgrind), then traced under memcheck; returns a failure
    reason or None. The traced run's spans are read back by its pid. app_errors: the
    program makes memcheck errors of its own (bad pointers, faults on purpose): it is also
    run untraced under memcheck, and the traced run must report exactly the same errors."""
    base = subprocess.run(argv, env=b.env(False, extra), capture_output=True, timeout=timeout,
                          cwd=b.tmp)
    log = os.path.join(b.tmp, name + ".vg")
    if app_errors:
        subprocess.run(VG + ["--log-file=" + log + ".untraced"] + argv, env=b.env(False, extra),
                       capture_output=True, timeout=timeout, cwd=b.tmp)
        want = error_heads(memcheck_errors(log + ".untraced"))
    exitcode = [] if app_errors else ["--error-exitcode=%d" % VG_ERR]
    p = subprocess.Popen(VG + exitcode + ["--log-file=" + log] + argv, env=b.env(True, extra),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=b.tmp)
    out, err = p.communicate(timeout=timeout)
    vg = memcheck_errors(log)
    if app_errors:
        got = error_heads(vg)
        if got != want:
            return "memcheck errors differ from the untraced run's: traced %s, untraced %s\n%s" % (
                got, want, vg[-3000:])
    elif p.returncode == VG_ERR or vg:
        return "memcheck in the program:\n" + (vg or err.decode(errors="replace"))[-3000:]
    if p.returncode != base.returncode:
        return "%s traced, %s untraced; stderr: %s" % (
            status(p.returncode), status(base.returncode), err.decode(errors="replace")[-600:])
    if stdout_same and out != base.stdout:
        return "stdout differs: traced %r, untraced %r" % (out[:200], base.stdout[:200])
    # The spans: received by spanshimd, or counted by the shim as dropped.
    deadline = time.monotonic() + 120
    while True:
        spans, scopes = harness.read_jsonl(b.out)
        got = harness.spans_of_pid(spans, p.pid)
        dropped = harness.dropped_of_pid(scopes, p.pid)
        if got or dropped or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not got and not dropped:
        return "no span of pid %d reached the collector and none was counted dropped" % p.pid
    return None


def cases(b):
    """(name, function returning a failure reason, None, or raising harness.Skip)."""
    prog = lambda n: os.path.join(b.progs, n)  # noqa: E731
    url = b.http.url
    upload = os.path.join(b.tmp, "upload.bin")
    with open(upload, "wb") as f:
        f.write(os.urandom(200 * 1024))
    c = [
        ("curl_get", lambda: run_case(b, "curl_get", ["curl", "-s", url + "/"])),
        ("curl_redirect", lambda: run_case(b, "curl_redirect", ["curl", "-sL", url + "/redirect"])),
        ("curl_upload_200k", lambda: run_case(
            b, "curl_upload", ["curl", "-s", "--data-binary", "@" + upload, url + "/up"])),
        ("curl_refused", lambda: run_case(
            b, "curl_refused", ["curl", "-s", "http://127.0.0.1:%d/" % b.closed])),
        ("curl_parallel", lambda: run_case(
            b, "curl_parallel", ["curl", "-s", "-Z", url + "/a", url + "/b", url + "/c"],
            stdout_same=False)),
        ("sh_pipeline", lambda: run_case(
            b, "sh_pipeline", ["sh", "-c", "echo hi | tr a-z A-Z; exit 3"])),
        ("connect_storm_refused", lambda: run_case(
            b, "connect_storm", [prog("connect_storm"), "2", "25", "refused"], stdout_same=False)),
        ("sig_faults_roundtrip", lambda: run_case(
            b, "sig_roundtrip", [prog("sig_faults"), "roundtrip"])),
        ("sig_faults_recover", lambda: run_case(
            b, "sig_recover", [prog("sig_faults"), "recover", "50"], app_errors=True)),
        ("sig_faults_fault", lambda: run_case(b, "sig_fault", [prog("sig_faults"), "fault"], app_errors=True)),
        ("fd_gauntlet_closefrom", lambda: run_case(
            b, "fd_gauntlet", [prog("fd_gauntlet"), "closefrom", "3", "2", "0"],
            stdout_same=False, app_errors=True)),
        ("nbconnect", lambda: run_case(b, "nbconnect", [prog("nbconnect")], stdout_same=False)),
        ("python_urllib", lambda: run_case(
            b, "python_urllib", [sys.executable, "-c",
                                 "import urllib.request as u; print(u.urlopen(%r).read())" % (
                                     url + "/py")])),
        ("http_server_thread", lambda: service(b, "thread")),
        ("http_server_fork", lambda: service(b, "fork")),
        ("pq_api_prepared", lambda: pq(b, "prepared")),
        ("pq_api_pipeline", lambda: pq(b, "pipeline")),
    ]
    return c


def service(b, mode):
    """tests/progs/http_server MODE traced under memcheck, 20 requests from an untraced curl
    (keep-alive, a chunked answer, a POST, a 404), then SIGTERM: memcheck clean, exit 0,
    the bodies curl got are the untraced server's, and its server spans arrived."""
    def serve(traced):
        log = os.path.join(b.tmp, "http_server_%s_%d.vg" % (mode, traced))
        pre = VG + ["--error-exitcode=%d" % VG_ERR, "--log-file=" + log] if traced else []
        p = subprocess.Popen(pre + [os.path.join(b.progs, "http_server"), mode],
                             env=b.env(traced), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=b.tmp)
        port = None
        for line in p.stdout:
            if line.startswith(b"port="):
                port = int(line.split(b"=")[1])
                break
        if port is None:
            p.kill()
            return None, "http_server %s did not start: %s" % (mode, p.communicate()[1][-400:])
        u = "http://127.0.0.1:%d" % port
        urls = [u + "/a", u + "/chunked", u + "/status/404"] * 6 + [u + "/x", u + "/y"]
        got = subprocess.run(["curl", "-s", "--data-binary", "body", u + "/post"] + [
            a for x in urls for a in ("--next", "-s", x)], capture_output=True, timeout=300,
            env=b.env(False)).stdout
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(300)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        return (got, rc, p.pid, memcheck_errors(log) if traced else ""), None
    base, why = serve(False)
    if why:
        return why
    before = sum(1 for x in harness.read_jsonl(b.out)[0] if x.kind == 2)
    traced, why = serve(True)
    if why:
        return why
    got, rc, pid, vg = traced
    if vg or rc != 0:
        return "%s, memcheck:\n%s" % (status(rc), vg[-3000:])
    if got != base[0]:
        return "curl got other bytes from the traced server: %r vs %r" % (got[:200], base[0][:200])
    deadline = time.monotonic() + 120
    while True:
        spans, scopes = harness.read_jsonl(b.out)
        # thread: the server's pid; fork: a child per connection, each with its own pid
        # (only this case makes server spans now: the new ones are its)
        server = (sum(1 for x in harness.spans_of_pid(spans, pid) if x.kind == 2)
                  if mode == "thread" else sum(1 for x in spans if x.kind == 2) - before)
        if server >= 21 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if server < 21:
        return "%d server spans of 21 arrived" % server
    return None


def pq(b, mode):
    pgc = b.postgres()
    if pgc is None:
        raise harness.Skip(b.pg_why)
    conninfo = "host=%s port=%d user=%s dbname=postgres" % (pgc.host, pgc.port, pgc.superuser)
    return run_case(b, "pq_" + mode, [os.path.join(b.progs, "pq_api"), mode, conninfo],
                    stdout_same=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("-k", default="")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    if shutil.which("valgrind") is None:
        print("SKIP valgrind: not installed (make deps installs it)")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    # A program that inherited an ignored signal would not die of it (see run.py).
    for s in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    b = Bench(build)
    passed = failed = skipped = 0
    try:
        for name, fn in cases(b):
            if a.k not in name:
                continue
            t0 = time.monotonic()
            try:
                why = fn()
            except harness.Skip as e:
                print("SKIP %s: %s" % (name, e), flush=True)
                skipped += 1
                continue
            except Exception as e:  # a timeout or a harness error is a failure too
                why = "%s: %s" % (type(e).__name__, e)
            if why:
                print("FAIL %s: %s" % (name, why), flush=True)
                failed += 1
            else:
                print("PASS %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
                passed += 1
        b.col.send_signal(signal.SIGTERM)
        try:
            rc = b.col.wait(300)
        except subprocess.TimeoutExpired:
            b.col.kill()
            rc = b.col.wait()
        vg = memcheck_errors(b.vglog)
        if rc != 0 or vg:
            print("FAIL spanshimd_memcheck: %s\n%s" % (status(rc), vg[-3000:]), flush=True)
            failed += 1
        else:
            print("PASS spanshimd_memcheck (exit 0, no error, no definite leak)", flush=True)
            passed += 1
    finally:
        if b.col.poll() is None:
            b.col.kill()
        b.close()
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
