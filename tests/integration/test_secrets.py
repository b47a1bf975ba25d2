"""The secrets suite (issue 14 items 1-3): a unique token is planted in every form a
credential takes on a command line, in a URL, in a libpq conninfo error and in a server's
error text; real programs (sh, bash, psql, sqlite3, curl, wget, git, zip, a traced HTTP
server, and a tiny client run under the names redis-cli, mysql, sshpass, docker... whose
command line is all that matters) run under the shim with a real spanshimd, and EVERY
exported byte is read back - the collector's OTLP JSON lines (spans, events, log records,
resources), spanshimd's own stderr, the shim's diagnostics at debug level, and the
waterfall `spanshim view` draws from them - asserting that no token appears anywhere,
while what is not secret (hosts, databases, ports, options) stays readable, and that the
tokens do reach the exporter when the user asks for the full text (so the test can fail)."""
import os
import secrets
import subprocess

import harness

ERROR = 2
# Every span must arrive even on a loaded machine: exit may wait for the collector.
FLUSH = {"SPANSHIM_EXIT_FLUSH_MS": "20000"}


def _env(extra=None):
    e = dict(FLUSH)
    e.update(extra or {})
    return e


class Tokens:
    """One unique token per planted form: tokens["form"] makes and remembers one."""

    def __init__(self):
        self.by_form = {}

    def __getitem__(self, form):
        if form not in self.by_form:
            self.by_form[form] = "Tk" + secrets.token_hex(5) + "x%02d" % len(self.by_form)
        return self.by_form[form]


def _exported(ctx, col, log_file):
    """Every byte the shim and the collector exported or wrote about this run."""
    col.stop()
    d = os.path.dirname(col.out)
    files = [os.path.join(d, n) for n in sorted(os.listdir(d))]
    files = [p for p in files if os.path.isfile(p)]  # traces, logs, metrics, stderr
    data = b""
    for path in files + [col.errlog, log_file]:
        if path and os.path.exists(path):
            with open(path, "rb") as f:
                data += f.read()
    jsonl = [p for p in files if p.endswith(".jsonl")]
    view = subprocess.run([ctx.spanshim, "view"] + jsonl, capture_output=True, timeout=60)
    assert view.returncode == 0, view
    return data + view.stdout + view.stderr


def _assert_no_token(data, tokens):
    leaked = [form for form, t in tokens.by_form.items() if t.encode() in data]
    assert not leaked, "leaked: %s" % ", ".join("%s (%s)" % (f, tokens.by_form[f])
                                               for f in leaked)


def _tools(ctx, names):
    """A directory of symlinks named after real tools, all to tests/progs/argv_connect."""
    d = os.path.join(ctx.tmp, "bin")
    os.makedirs(d, exist_ok=True)
    for n in names:
        os.symlink(ctx.prog("argv_connect"), os.path.join(d, n))
    return d


def _procs(spans):
    return [s for s in spans if "process.pid" in s.attrs and s.kind == 1]


def _args_of(spans, tool):
    """process.command_args of the process spans whose argv[0] ends in tool."""
    return [s.attrs["process.command_args"] for s in _procs(spans)
            if s.attrs.get("process.command_args") and
            os.path.basename(s.attrs["process.command_args"][0]) == tool]


FAKE_TOOLS = ["redis-cli", "mysql", "sshpass", "docker", "aws", "gh", "redis-server", "tool"]


def _command_script(ctx, t, pg, srv, http_port):
    """A shell script running each form once; every command exits 0 or its status is
    ignored (`; true`)."""
    url = srv.url + "/p"
    pgc = "-h 127.0.0.1 -p %d -U %s" % (pg.port, pg.user)
    lines = [
        "mysql -uroot -p%s -h 127.0.0.1 appdb" % t["-pATTACHED"],
        "curl -s -o /dev/null -uuser:%s %s" % (t["-uuser:ATTACHED"], url),
        "curl -s -o /dev/null '-HAuthorization: Bearer %s' %s" % (t["-HAuthorization"], url),
        "redis-cli -h 127.0.0.1 -p %d -a %s ping" % (http_port, t["redis-cli -a"]),
        "sshpass -p %s ssh deploy@host true" % t["sshpass -p"],
        "docker login -u bob -p %s registry.local" % t["docker -p"],
        "zip -q -P %s %s/o.zip /etc/hostname" % (t["zip -P"], ctx.tmp),
        "wget -q -O /dev/null --http-user=bob --http-password=%s %s; true"
        % (t["--http-password"], url),
        "curl -s -o /dev/null --oauth2-bearer %s %s" % (t["--oauth2-bearer"], url),
        "tool --passphrase %s --batch" % t["--passphrase"],
        "aws --secret-key %s s3 ls" % t["--secret-key"],
        "gh auth login --with-token %s" % t["--with-token"],
        "redis-server --requirepass %s --port 6390" % t["--requirepass"],
        "curl -s -o /dev/null --user=bob:%s %s" % (t["--user="], url),
        "curl -s -o /dev/null --proxy-user=bob:%s %s" % (t["--proxy-user="], url),
        "curl -s -o /dev/null -H 'X-Auth-Token: %s' %s" % (t["X-Auth-Token:"], url),
        "curl -s -o /dev/null -H 'PRIVATE-TOKEN: %s' %s" % (t["PRIVATE-TOKEN:"], url),
        "tool 'password: %s'" % t["password: x"],
        "psql -X \"host=127.0.0.1 port=%d dbname=%s user=%s password='a %s'\" -c 'select 1'"
        "; true" % (pg.port, pg.user, pg.user, t["password='quoted conninfo'"]),
        "git -c http.extraheader='AUTHORIZATION: basic %s' ls-remote %s/repo.git"
        " >/dev/null 2>&1; true" % (t["git -c http.extraheader"], srv.url),
        "PGPASSWORD=%s psql -X -At %s -d %s -c \"select 'SQL-%s' as v\" >/dev/null"
        % (pg.password, pgc, pg.user, t["psql -c literal"]),
        "sqlite3 :memory: \"select 'SQL-%s';\" >/dev/null" % t["sqlite3 literal"],
        "bash -c \"mysql -p%s -e \\\"select 'x'\\\"\"" % t["bash -c inside sh -c"],
        "curl -s -o /dev/null http://bob:%s@127.0.0.1:%d/p" % (t["URL userinfo"], srv.port),
        "API_TOKEN=%s tool --verbose" % t["API_TOKEN=x"],
    ]
    return "\n".join(lines) + "\n"


def test_command_lines_never_carry_a_credential(ctx):
    t = Tokens()
    pg = ctx.postgres(password=t["the database password (PGPASSWORD=)"])
    srv = ctx.http_server()
    bindir = _tools(ctx, FAKE_TOOLS)
    script = _command_script(ctx, t, pg, srv, srv.port)
    col = ctx.collector()
    log = os.path.join(ctx.tmp, "shim.log")
    env = {"SPANSHIM_PROCESS_SPAN": "1", "SPANSHIM_LOG_LEVEL": "debug",
           "SPANSHIM_LOG_FILE": log, "ARGV_CONNECT_PORT": str(srv.port),
           "PATH": bindir + os.pathsep + os.environ["PATH"], "HOME": ctx.tmp}
    r = ctx.run(["sh", "-c", script], collector=col, extra_env=_env(env), timeout=300)
    assert r.returncode == 0, r
    data = _exported(ctx, col, log)
    _assert_no_token(data, t)

    # Every form was exported (a test that exported nothing would pass above)...
    spans = col.spans(stop=False)
    for tool in FAKE_TOOLS + ["curl", "psql", "sqlite3", "zip", "wget", "git", "bash"]:
        assert _args_of(spans, tool), "no process span for %s" % tool
    # ...and what is not a secret stays readable.
    [mysql_direct] = [a for a in _args_of(spans, "mysql") if "appdb" in a]
    assert mysql_direct == ["mysql", "-uroot", "-pREDACTED", "-h", "127.0.0.1", "appdb"]
    [redis] = _args_of(spans, "redis-cli")
    assert redis == ["redis-cli", "-h", "127.0.0.1", "-p", str(srv.port), "-a", "REDACTED",
                     "ping"], redis
    [docker] = _args_of(spans, "docker")
    assert docker == ["docker", "login", "-u", "bob", "-p", "REDACTED", "registry.local"]
    psql_sql = [a for a in _args_of(spans, "psql") if "-At" in a]
    assert psql_sql and psql_sql[0][-1] == "select ? as v", psql_sql
    assert "127.0.0.1" in psql_sql[0] and str(pg.port) in psql_sql[0] and pg.user in psql_sql[0]
    conninfo = [a for a in _args_of(spans, "psql") if any("dbname=" in x for x in a)]
    assert conninfo and ("host=127.0.0.1 port=%d dbname=%s user=%s password=REDACTED"
                         % (pg.port, pg.user, pg.user)) in conninfo[0], conninfo
    [sh] = [a for a in _args_of(spans, "sh") if len(a) == 3 and a[1] == "-c"]
    assert "redis-cli -h 127.0.0.1 -p %d -a REDACTED ping" % srv.port in sh[2], sh
    assert "zip -q -P REDACTED" in sh[2] and "mkdir" not in sh[2]
    curl_urls = [s.attrs.get("url.full") for s in spans if s.attrs.get("url.full")]
    assert "http://REDACTED:REDACTED@127.0.0.1:%d/p" % srv.port in curl_urls, curl_urls
    # The HTTP requests really carried the secrets (the server saw them): the shim hid
    # what the programs sent.
    sent = [q["headers"].get("x-auth-token") for q in srv.requests]
    assert t["X-Auth-Token:"] in sent, sent


def test_full_and_none_command_args(ctx):
    t = Tokens()
    bindir = _tools(ctx, ["redis-cli"])
    argv = [os.path.join(bindir, "redis-cli"), "-a", t["redis-cli -a"], "ping"]
    for mode, want in (("full", argv), ("none", None), ("redacted", None)):
        col = ctx.collector()
        ctx.run(argv, collector=col, extra_env=_env({"SPANSHIM_PROCESS_SPAN": "1",
                                                     "SPANSHIM_COMMAND_ARGS": mode}))
        [p] = _procs(col.spans())
        got = p.attrs.get("process.command_args")
        if mode == "redacted":
            assert got == [argv[0], "-a", "REDACTED", "ping"], got
        else:
            assert got == want, (mode, got)


def test_a_length_limit_cuts_each_argument_not_the_array(ctx):
    col = ctx.collector()
    argv = ["sh", "-c", "exit 0", "argument-number-one", "two", "x" * 50]
    ctx.run(argv, collector=col, extra_env=_env({"SPANSHIM_PROCESS_SPAN": "1",
                                                 "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "8"}))
    [p] = _procs(col.spans())
    assert p.attrs["process.command_args"] == ["sh", "-c", "exit 0", "argument", "two",
                                               "x" * 8], p.attrs


def test_url_full_and_query_credentials_redacted(ctx):
    t = Tokens()
    srv = ctx.http_server()
    col = ctx.collector()
    q = ("token=%s&access_token=%s&api_key=%s&code=%s&password=%s&secret=%s&auth=%s"
         "&sig=%s&X-Amz-Signature=%s&ticket=%s&page=2&sort=name" % (
             t["token="], t["access_token="], t["api_key="], t["code="], t["password="],
             t["secret="], t["auth="], t["sig="], t["X-Amz-Signature="],
             t["ticket= (SPANSHIM_REDACT_QUERY_KEYS)"]))
    url = "%s/cb?%s#access_token=%s&state=s1" % (srv.url, q, t["#access_token="])
    env = {"SPANSHIM_REDACT_QUERY_KEYS": "ticket"}
    r = ctx.run(["curl", "-s", "-o", "/dev/null", url], collector=col, extra_env=_env(env))
    assert r.returncode == 0, r
    # A traced server: its SERVER span's url.query.
    srv_port = harness.free_port()
    server = subprocess.Popen(
        ["python3", "-m", "http.server", str(srv_port), "--bind", "127.0.0.1"],
        cwd=ctx.tmp, env=ctx.env(col, _env(env)), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    try:
        harness.wait_port(srv_port, server, "python3 -m http.server", timeout=30)
        r = ctx.run(["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:%d/?%s" % (srv_port, q)],
                    preload=False)
        assert r.returncode == 0, r
    finally:
        server.terminate()
        server.wait(30)
    data = _exported(ctx, col, None)
    _assert_no_token(data, t)
    spans = col.spans(stop=False)
    want_q = ("token=REDACTED&access_token=REDACTED&api_key=REDACTED&code=REDACTED"
              "&password=REDACTED&secret=REDACTED&auth=REDACTED&sig=REDACTED"
              "&X-Amz-Signature=REDACTED&ticket=REDACTED&page=2&sort=name")
    fulls = [s.attrs["url.full"] for s in spans if "url.full" in s.attrs]
    assert "%s/cb?%s#access_token=REDACTED&state=REDACTED" % (srv.url, want_q) in fulls, fulls
    queries = [s.attrs["url.query"] for s in spans if "url.query" in s.attrs]
    assert want_q in queries, queries


def _psql_run(ctx, col, pg, conn, sql=None, env=None):
    argv = ["psql", "-X", "-At", conn]
    if sql:
        argv += ["-c", sql]
    e = {"SPANSHIM_LOG_LEVEL": "debug"}
    e.update(env or {})
    return ctx.run(argv, collector=col, extra_env=_env(e))


def test_libpq_and_server_messages_never_carry_a_value(ctx):
    t = Tokens()
    pg = ctx.postgres()
    col = ctx.collector()
    log = os.path.join(ctx.tmp, "shim.log")
    base = "postgresql://%s:%%s@127.0.0.1:%d/%s" % (pg.user, pg.port, pg.user)
    # libpq quotes the conninfo when it cannot parse it: an unencoded %, a malformed host.
    bad_pct = base % (t["URI with an unencoded %"] + "%zz")
    bad_host = "postgresql://%s:%s@[::1/%s" % (pg.user, t["URI with a malformed host"],
                                               pg.user)
    bad_port = "postgresql://%s:%s@127.0.0.1:%sx/%s" % (
        pg.user, t["URI password before a bad port"], t["bad port value"], pg.user)
    env = {"SPANSHIM_LOG_FILE": log}
    for conn in (bad_pct, bad_host, bad_port):
        r = _psql_run(ctx, col, pg, conn, "select 1", env)
        assert r.returncode != 0 and b"psql" in r.stderr, r
    # Server-authored text: a value reaching the message without being in the SQL (a
    # setting passed in PGOPTIONS), raised by PL/pgSQL and by PostgreSQL itself.
    ok = "host=127.0.0.1 port=%d dbname=%s user=%s password=%s" % (
        pg.port, pg.user, pg.user, pg.password)
    opts = {"PGOPTIONS": "-c x.t=%s" % t["RAISE EXCEPTION with a value"],
            "SPANSHIM_LOG_FILE": log}
    raise_sql = ("DO $$ BEGIN RAISE EXCEPTION 'failed for %, token=%', "
                 "current_setting('x.t'), current_setting('x.t'); END $$")
    r = _psql_run(ctx, col, pg, ok, raise_sql, opts)
    assert r.returncode != 0 and t["RAISE EXCEPTION with a value"].encode() in r.stderr, r
    opts2 = {"PGOPTIONS": "-c x.t=%s" % t["core message quoting a value"],
             "SPANSHIM_LOG_FILE": log}
    r = _psql_run(ctx, col, pg, ok, "select current_setting('x.t')::int", opts2)
    assert r.returncode != 0, r
    data = _exported(ctx, col, log)
    _assert_no_token(data, t)

    spans = col.spans(stop=False)
    conns = [s for s in spans if s.name == "connect postgresql" and s.status_code == ERROR]
    msgs = [s.status_message for s in conns]
    assert any(m.startswith("invalid percent-encoded token") for m in msgs), msgs
    assert any("IPv6 host address" in m for m in msgs), msgs
    # The exception records (event and log record) exist and carry the scrubbed text.
    assert all(s.events and s.events[0]["name"] == "exception" for s in conns), conns
    assert b"resourceLogs" in data and b"invalid percent-encoded token" in data
    db = [s for s in spans if s.attrs.get("db.response.status_code") in ("P0001", "22P02")]
    by_code = {s.attrs["db.response.status_code"]: s for s in db}
    assert by_code["P0001"].status_message == "raise_exception", by_code
    assert by_code["22P02"].status_message == 'invalid input syntax for type integer: "?"'
    assert by_code["22P02"].attrs["db.query.text"] == "select current_setting(?)::int"


def test_db_error_messages_full_shows_the_servers_text(ctx):
    """The control: with SPANSHIM_DB_ERROR_MESSAGES=full the value reaches the export, so
    the default really is what hides it."""
    pg = ctx.postgres()
    col = ctx.collector()
    tok = "Tk" + secrets.token_hex(5)
    ok = "host=127.0.0.1 port=%d dbname=%s user=%s password=%s" % (
        pg.port, pg.user, pg.user, pg.password)
    r = _psql_run(ctx, col, pg, ok,
                  "DO $$ BEGIN RAISE EXCEPTION 'failed for %', current_setting('x.t'); END $$",
                  {"PGOPTIONS": "-c x.t=%s" % tok, "SPANSHIM_DB_ERROR_MESSAGES": "full"})
    assert r.returncode != 0, r
    [s] = [s for s in col.spans() if s.attrs.get("db.response.status_code") == "P0001"]
    assert s.status_message == "failed for %s" % tok, s
    # A quoted value in the server's text: kept with full, "?" by default. (The span is
    # renamed from its statement before its message is scrubbed: full applied to no
    # statement span until the mode was decided before the rename.)
    for mode, want in (("full", '"%s"' % tok), ("masked", '"?"')):
        col = ctx.collector()
        r = _psql_run(ctx, col, pg, ok, "select current_setting('x.t')::int",
                      {"PGOPTIONS": "-c x.t=%s" % tok, "SPANSHIM_DB_ERROR_MESSAGES": mode})
        assert r.returncode != 0, r
        [s] = [s for s in col.spans() if s.attrs.get("db.response.status_code") == "22P02"]
        assert s.status_message == "invalid input syntax for type integer: %s" % want, (mode, s)


def _fake_postgres_refusing(text):
    """A one-shot server speaking just enough of the PostgreSQL protocol to refuse a login
    with an ErrorResponse whose message is `text` (what a PostgreSQL 17 login event
    trigger's RAISE or an extension's authentication hook sends). Returns (port, thread)."""
    import socket
    import struct
    import threading
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    port = ls.getsockname()[1]

    def serve():
        for attempt in range(2):  # psql may try twice (with and without a password prompt)
            try:
                ls.settimeout(60 if attempt == 0 else 3)  # a second try comes at once
                c, _ = ls.accept()
            except OSError:
                return
            with c:
                n = struct.unpack("!I", c.recv(4))[0]
                c.recv(n - 4)
                fields = b"SFATAL\0VFATAL\0C28000\0M" + text.encode() + b"\0Fhook.c\0\0"
                c.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
        ls.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return port, th


def test_server_text_at_connect_is_cut_unless_postgresql_wrote_it(ctx):
    for mode in ("masked", "full"):
        tok = "Tk" + secrets.token_hex(5)
        port, th = _fake_postgres_refusing("login blocked for user with key %s" % tok)
        col = ctx.collector()
        conn = "host=127.0.0.1 port=%d dbname=app user=app sslmode=disable gssencmode=disable" \
            % port
        r = ctx.run(["psql", "-X", "-w", conn, "-c", "select 1"], collector=col,
                    extra_env=_env({"SPANSHIM_DB_ERROR_MESSAGES": mode}))
        assert r.returncode != 0 and tok.encode() in r.stderr, r
        th.join(60)
        [s] = [s for s in col.spans() if s.name == "connect postgresql"]
        assert s.status_code == ERROR, s
        if mode == "masked":
            assert s.status_message == 'connection to server at "127.0.0.1", port %d failed' \
                % port, s.status_message
            assert tok.encode() not in _exported(ctx, col, None)
        else:
            assert tok in s.status_message, s.status_message
