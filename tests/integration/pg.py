#!/usr/bin/env python3
"""A throwaway PostgreSQL cluster for the integration suites and the demo.

initdb in a fresh temp dir as an unprivileged user (when run as root, as the `postgres`
system user through runuser/setpriv, with the temp dir owned by it), listening on a Unix
socket in that dir and on a free 127.0.0.1 port. Authentication: trust for every local
(Unix socket) connection and for the superuser over TCP; SCRAM password for `user` over
TCP. Every step is bounded in time; stop() is idempotent and removes the dir.

    with PgCluster() as pg:
        subprocess.run(["psql", "-h", pg.host, "-p", str(pg.port), "-U", pg.superuser,
                        "-c", "select 1"])

Command line (for tools/demo.sh):
    pg.py start DIR   start a cluster in DIR (must not exist, or be empty); prints
                      shell assignments PGDEMO_HOST= PGDEMO_PORT= PGDEMO_SOCKDIR=
                      PGDEMO_USER= PGDEMO_PASSWORD= PGDEMO_SUPERUSER=
    pg.py stop DIR    stop it (fast) and remove DIR
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time

STEP_TIMEOUT = 300  # seconds, per initdb / pg_ctl / psql step: a bound against a hang (initdb took over 60 s at load 22)


def find_bindir():
    """The server binaries' dir: pg_config --bindir when it holds initdb, else the newest
    /usr/lib/postgresql/*/bin, else PATH."""
    cands = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0:
            cands.append(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass

    def ver(p):
        try:
            return int(p.split("/")[-2])
        except ValueError:
            return 0
    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=ver, reverse=True)
    for d in cands:
        if os.path.exists(os.path.join(d, "initdb")) and \
                os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    w = shutil.which("initdb")
    if w:
        return os.path.dirname(w)
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env():
    """The environment for PostgreSQL's own processes: never under the shim, no PG*
    variables that could redirect them."""
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("PG", "SPANSHIM_", "OTEL_")) and k != "LD_PRELOAD"}
    e["LC_ALL"] = "C"
    e["LANG"] = "C"
    return e


class PgCluster:
    """Public, read-only after start: dir, datadir, sockdir, host ("127.0.0.1"), port,
    superuser ("postgres"), user/password (a SCRAM login role owning database `user`),
    bindir, logfile."""

    def __init__(self, base=None, user="spanshim", password="spanshim-pw", dir=None):
        self.bindir = find_bindir()
        self.user = user
        self.password = password
        self.superuser = "postgres"
        self.host = "127.0.0.1"
        self.port = free_port()
        self._as = []
        owner = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            if shutil.which("runuser"):
                self._as = ["runuser", "-u", "postgres", "--"]
            else:
                self._as = ["setpriv", "--reuid=%d" % owner.pw_uid,
                            "--regid=%d" % owner.pw_gid, "--init-groups", "--"]
        if dir:
            os.makedirs(dir, exist_ok=True)
            self.dir = os.path.abspath(dir)
        else:
            # Not under a root-only 0700 test dir: the postgres user must reach it.
            self.dir = tempfile.mkdtemp(prefix="ss-pg-", dir=base)
        os.chmod(self.dir, 0o700)
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            # Every parent must be traversable by the postgres user.
            p = os.path.dirname(self.dir)
            while p and p != "/":
                st = os.stat(p)
                if not st.st_mode & 0o001:
                    raise RuntimeError("%s is not traversable by the postgres user" % p)
                p = os.path.dirname(p)
        self.datadir = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.logfile = os.path.join(self.dir, "server.log")
        self.started = False
        try:
            self._initdb()
            self._start()
            self._create_user()
        except BaseException:
            self.stop()
            raise

    # -- steps --------------------------------------------------------------------
    def _pg(self, args, check=True, timeout=STEP_TIMEOUT, input=None):
        argv = self._as + [os.path.join(self.bindir, args[0])] + list(args[1:])
        r = subprocess.run(argv, cwd=self.dir, env=_clean_env(), capture_output=True,
                           text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s%s" % (
                args[0], r.returncode, r.stdout, r.stderr, self._log_tail()))
        return r

    def _log_tail(self):
        try:
            with open(self.logfile) as f:
                return "\n--- server.log ---\n" + f.read()[-2000:]
        except OSError:
            return ""

    def _initdb(self):
        self._pg(["initdb", "-D", self.datadir, "-U", self.superuser, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync"])
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("# spanshim test cluster\n"
                    "local all all trust\n"
                    "host all %s 127.0.0.1/32 trust\n"
                    "host all all 127.0.0.1/32 scram-sha-256\n" % self.superuser)
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# spanshim test cluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "password_encryption = 'scram-sha-256'\n"
                    "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    "max_connections = 60\nshared_buffers = 32MB\n"
                    "max_wal_senders = 0\nwal_level = minimal\n"
                    "logging_collector = off\n" % (self.port, self.sockdir))

    def _start(self):
        self._pg(["pg_ctl", "-D", self.datadir, "-l", self.logfile, "-w", "-t", "30",
                  "start"], timeout=45)
        self.started = True

    def _create_user(self):
        pw = self.password.replace("'", "''")
        self.psql_admin("CREATE ROLE %s LOGIN PASSWORD '%s';" % (self.user, pw))
        self.psql_admin("CREATE DATABASE %s OWNER %s;" % (self.user, self.user))

    # -- public -------------------------------------------------------------------
    @property
    def socket_path(self):
        return os.path.join(self.sockdir, ".s.PGSQL.%d" % self.port)

    def psql_admin(self, sql, db="postgres"):
        """Runs sql as the superuser over the Unix socket, untraced; returns stdout."""
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sockdir,
                            "-p", str(self.port), "-U", self.superuser, "-d", db,
                            "-At", "-c", sql],
                           env=_clean_env(), capture_output=True, text=True,
                           timeout=STEP_TIMEOUT, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return r.stdout

    def dsn(self, password=True):
        """A libpq keyword DSN for `user` over TCP."""
        s = "host=%s port=%d dbname=%s user=%s" % (self.host, self.port, self.user,
                                                  self.user)
        if password:
            s += " password=%s" % self.password
        return s

    def stop(self):
        """Fast shutdown (bounded; kills the postmaster if it does not stop), then removes
        the dir. Safe to call twice."""
        if self.started:
            self.started = False
            try:
                self._pg(["pg_ctl", "-D", self.datadir, "-m", "fast", "-w", "-t", "20",
                          "stop"], check=False, timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self._kill_leftover()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_leftover(self):
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                pid = int(f.readline().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, 9)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def _main(argv):
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        sys.stderr.write("usage: pg.py start|stop DIR\n")
        return 2
    d = os.path.abspath(argv[2])
    if argv[1] == "start":
        pg = PgCluster(dir=d)
        print("PGDEMO_HOST=%s\nPGDEMO_PORT=%d\nPGDEMO_SOCKDIR=%s\nPGDEMO_USER=%s\n"
              "PGDEMO_PASSWORD=%s\nPGDEMO_SUPERUSER=%s" % (
                  pg.host, pg.port, pg.sockdir, pg.user, pg.password, pg.superuser))
        return 0
    # stop: rebuild just enough state to run pg_ctl stop.
    pg = PgCluster.__new__(PgCluster)
    pg.bindir = find_bindir()
    pg.dir = d
    pg.datadir = os.path.join(d, "data")
    pg.logfile = os.path.join(d, "server.log")
    pg.started = os.path.exists(os.path.join(pg.datadir, "postmaster.pid"))
    pg._as = []
    if os.geteuid() == 0:
        pg._as = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else [
            "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
