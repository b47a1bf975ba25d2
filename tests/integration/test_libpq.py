"""PostgreSQL client spans through libpq: real psql and pgbench, and small C programs
(tests/progs/pq_*.c) for the APIs psql does not use, against a throwaway cluster
(ctx.postgres()), with a real spanshimd collecting. Assertions are on the exported spans,
on the raw exported bytes (no secret ever appears), and on the programs' own output."""
import os
import subprocess
import time

import harness
from harness import parse_kv

CLIENT = 3
ERROR = 2
SECRET = "s3cr3t-literal"
CONN_PW = "s3cr3t-conninfo-pw"
# The spans as the shim names them: spanshimd's own SQL enrichment (libpg_query) is off,
# except in the test that checks the two together.
SHIM_NAMES = ["--no-sql-summary"]


def _db(spans):
    """Query spans (every libpq span but the connection spans)."""
    return [s for s in spans if s.attrs.get("db.system.name") == "postgresql"
            and s.name != "connect postgresql"]


def _conns(spans):
    return [s for s in spans if s.name == "connect postgresql"]


def _no_secret(c, *secrets):
    with open(c.out, "rb") as f:
        data = f.read()
    for sec in secrets:
        assert sec.encode() not in data, "%r leaked into the exported spans" % sec


def _psql(pg, *sql, host=None, user=None, db="postgres"):
    argv = ["psql", "-X", "-At", "-h", host or pg.sockdir, "-p", str(pg.port), "-U",
            user or pg.superuser, "-d", db]
    for s in sql:
        argv += ["-c", s]
    return argv


def _common(s, pg, db="postgres", host=None):
    assert s.kind == CLIENT, s
    assert s.attrs.get("db.system.name") == "postgresql", s
    assert s.attrs.get("db.namespace") == db, s
    assert s.attrs.get("server.address") == (host or pg.sockdir), s
    assert s.attrs.get("server.port") == pg.port, s


# --- psql ----------------------------------------------------------------------------------

def test_libpq_psql_query_spans_named_and_scrubbed(ctx):
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(_psql(pg, "INSERT INTO orders VALUES (1, '%s')" % SECRET,
                      "SELECT note FROM orders WHERE note = '%s' AND id = 1" % SECRET,
                      "BEGIN; SELECT 1.5e-3; COMMIT"), collector=c)
    assert r.returncode == 0, r
    spans = c.spans()
    q = sorted(_db(spans), key=lambda s: s.start)
    assert [s.name for s in q] == ["INSERT orders", "SELECT orders", "BEGIN"], q
    for s in q:
        _common(s, pg)
        assert s.status_code != ERROR, s
    ins, sel, multi = q
    assert ins.attrs["db.query.text"] == "INSERT INTO orders VALUES (?, ?)", ins
    assert ins.attrs["db.operation.name"] == "INSERT" and ins.attrs["db.collection.name"] == "orders"
    assert sel.attrs["db.query.text"] == "SELECT note FROM orders WHERE note = ? AND id = ?", sel
    assert sel.attrs["db.response.returned_rows"] == 1, sel
    assert multi.attrs["db.query.text"] == "BEGIN; SELECT ?; COMMIT", multi
    # The connection span: the socket connect libpq made is its child.
    conn = _conns(spans)
    assert len(conn) == 1, spans
    _common(conn[0], pg)
    assert conn[0].status_code != ERROR
    kids = [s for s in spans if s.name == "connect" and s.parent_id == conn[0].span_id]
    assert len(kids) == 1 and kids[0].attrs.get("network.transport") == "unix", spans
    _no_secret(c, SECRET)


def test_libpq_spanshimd_enrichment_keeps_shim_spans_consistent(ctx):
    """With spanshimd's own SQL enrichment on (its default), the spans keep the shim's
    scrubbed text and gain db.query.summary."""
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    c = ctx.collector()
    r = ctx.run(_psql(pg, "SELECT note FROM orders WHERE note = '%s'" % SECRET), collector=c)
    assert r.returncode == 0, r
    q = _db(c.spans())
    assert len(q) == 1 and q[0].name == "SELECT orders", q
    assert q[0].attrs.get("db.query.summary") == "SELECT orders", q
    assert q[0].attrs["db.query.text"] == "SELECT note FROM orders WHERE note = ?", q
    _no_secret(c, SECRET)


def test_libpq_psql_errors_carry_sqlstate(ctx):
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE u (id int PRIMARY KEY)")
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(_psql(pg, "INSERT INTO u VALUES (1)", "INSERT INTO u VALUES (1)",
                      "SELEC '%s'" % SECRET, "SELECT 'x%s'::int" % SECRET), collector=c)
    assert r.returncode == 1, r
    q = sorted(_db(c.spans()), key=lambda s: s.start)
    assert len(q) == 4, q
    ok, dup, syntax, cast = q
    assert ok.status_code != ERROR and "error.type" not in ok.attrs, ok
    assert dup.status_code == ERROR, dup
    assert dup.attrs["error.type"] == "23505" and dup.attrs["db.response.status_code"] == "23505"
    assert "duplicate key value violates unique constraint" in dup.status_message, dup
    assert syntax.name == "postgresql" and "db.operation.name" not in syntax.attrs, syntax
    assert syntax.status_code == ERROR and syntax.attrs["error.type"] == "42601", syntax
    assert syntax.attrs["db.response.status_code"] == "42601", syntax
    assert syntax.status_message.startswith("syntax error at or near"), syntax
    assert cast.attrs["error.type"] == "22P02", cast
    # The server quotes the bad value in its message; the exported message does not.
    assert cast.status_message == 'invalid input syntax for type integer: "?"', cast
    _no_secret(c, SECRET)


def test_libpq_psql_wrong_password_is_28P01_and_password_never_exported(ctx):
    pg = ctx.postgres()
    c = ctx.collector(args=SHIM_NAMES)
    conninfo = "host=%s port=%d dbname=%s user=%s password=%s" % (
        pg.host, pg.port, pg.user, pg.user, CONN_PW)
    argv = ["psql", "-X", "-At", "-w", "-d", conninfo, "-c", "select 1"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert r.returncode == plain.returncode == 2, (plain, r)
    assert r.stdout == plain.stdout and r.stderr == plain.stderr
    # A URI with the password in it, and the PGPASSWORD variable, too.
    uri = "postgresql://%s:%s@%s:%d/%s" % (pg.user, CONN_PW, pg.host, pg.port, pg.user)
    r2 = ctx.run(["psql", "-X", "-w", uri, "-c", "select 1"], collector=c)
    r3 = ctx.run(["psql", "-X", "-w", "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
                  "-d", pg.user, "-c", "select 1"], collector=c,
                 extra_env={"PGPASSWORD": CONN_PW})
    assert r2.returncode == 2 and r3.returncode == 2, (r2, r3)
    spans = c.spans()
    conns = _conns(spans)
    assert len(conns) == 3, spans
    for s in conns:
        assert s.status_code == ERROR, s
        assert s.attrs.get("error.type") == "28P01", s
        assert s.attrs.get("db.response.status_code") == "28P01", s
        assert "password authentication failed" in s.status_message, s
        _common(s, pg, db=pg.user, host=pg.host)
    assert not _db(spans), spans
    _no_secret(c, CONN_PW)


def test_libpq_psql_wrong_password_md5_auth_is_28P01(ctx):
    pg = ctx.postgres()
    pg.psql_admin("SET password_encryption = 'md5'; "
                  "CREATE ROLE md5user LOGIN PASSWORD 'md5-right-pw'")
    # md5 authentication for that role only, ahead of the cluster's own rules.
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rules = f.read()
    with open(hba, "w") as f:
        f.write("host all md5user 127.0.0.1/32 md5\n" + rules)
    pg.psql_admin("SELECT pg_reload_conf()")
    c = ctx.collector(args=SHIM_NAMES)
    base = ["psql", "-X", "-At", "-w", "-h", pg.host, "-p", str(pg.port), "-U", "md5user",
            "-d", "postgres", "-c", "select 1"]
    good = ctx.run(base, collector=c, extra_env={"PGPASSWORD": "md5-right-pw"})
    bad = ctx.run(base, collector=c, extra_env={"PGPASSWORD": CONN_PW})
    assert good.returncode == 0 and bad.returncode == 2, (good, bad)
    conns = sorted(_conns(c.spans()), key=lambda s: s.start)
    assert len(conns) == 2, conns
    assert conns[0].status_code != ERROR, conns
    assert conns[1].status_code == ERROR and conns[1].attrs["error.type"] == "28P01", conns
    _no_secret(c, CONN_PW, "md5-right-pw")


def test_libpq_psql_right_password_connects(ctx):
    pg = ctx.postgres()
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(["psql", "-X", "-At", "-d", pg.dsn(), "-c", "select 1"], collector=c)
    assert r.returncode == 0 and r.stdout == b"1\n", r
    spans = c.spans()
    conns = _conns(spans)
    assert len(conns) == 1 and conns[0].status_code != ERROR, spans
    assert conns[0].attrs.get("network.peer.address") == "127.0.0.1", conns
    assert conns[0].attrs.get("network.peer.port") == pg.port, conns
    _no_secret(c, pg.password)


def test_libpq_server_not_running_is_08001(ctx):
    port = ctx.closed_port()
    c = ctx.collector(args=SHIM_NAMES)
    argv = ["psql", "-X", "-w", "-h", "127.0.0.1", "-p", str(port), "-U", "nobody", "-d",
            "nodb", "-c", "select 1"]
    plain = ctx.run(argv, preload=False)
    r = ctx.run(argv, collector=c)
    assert r.returncode == plain.returncode == 2, (plain, r)
    assert r.stderr == plain.stderr, (plain.stderr, r.stderr)
    spans = c.spans()
    conns = _conns(spans)
    assert len(conns) == 1, spans
    s = conns[0]
    assert s.status_code == ERROR and s.attrs.get("error.type") == "08001", s
    assert "Connection refused" in s.status_message, s
    assert "db.response.status_code" not in s.attrs, s
    refused = [k for k in spans if k.name == "connect" and k.parent_id == s.span_id]
    assert refused and refused[0].attrs.get("error.type") == "ECONNREFUSED", spans


def test_libpq_backend_killed_mid_query_is_57P01(ctx):
    pg = ctx.postgres()
    c = ctx.collector(args=SHIM_NAMES)
    p = subprocess.Popen(_psql(pg, "SELECT pg_sleep(60)"), env=ctx.env(c),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ctx.tmp)
    try:
        deadline = time.monotonic() + 20
        killed = ""
        while time.monotonic() < deadline and killed.strip() != "t":
            time.sleep(0.2)
            killed = pg.psql_admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query = 'SELECT pg_sleep(60)' AND pid <> pg_backend_pid()")
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert killed.strip() == "t", "backend never seen"
    assert p.returncode == 2, (p.returncode, err)
    q = _db(c.spans())
    assert len(q) == 1, q
    s = q[0]
    assert s.name == "SELECT" and s.status_code == ERROR, s
    assert s.attrs.get("error.type") == "57P01", s
    assert s.attrs.get("db.response.status_code") == "57P01", s


def test_libpq_psql_output_identical_with_and_without_shim(ctx):
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE t (id int PRIMARY KEY, v text)")
    c = ctx.collector(args=SHIM_NAMES)
    argv = _psql(pg, "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 50) g",
                 "SELECT * FROM t ORDER BY id", "INSERT INTO t VALUES (1, 'dup')",
                 "SELECT nope", "\\copy t TO STDOUT", "DELETE FROM t")
    plain = ctx.run(argv, preload=False)
    traced = ctx.run(argv, collector=c)
    assert traced.returncode == plain.returncode, (plain, traced)
    assert traced.stdout == plain.stdout
    assert traced.stderr == plain.stderr
    names = [s.name for s in sorted(_db(c.spans()), key=lambda s: s.start)]
    assert names == ["INSERT t", "SELECT t", "INSERT t", "SELECT", "COPY t", "DELETE t"], names


def test_libpq_hooks_off_means_no_db_spans(ctx):
    pg = ctx.postgres()
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(_psql(pg, "select 1"), collector=c,
                extra_env={"SPANSHIM_HOOKS": "socket,dns"})
    assert r.returncode == 0 and r.stdout == b"1\n", r
    spans = c.spans()
    assert not [s for s in spans if s.attrs.get("db.system.name")], spans
    assert [s for s in spans if s.name == "connect"], spans


# --- pgbench -------------------------------------------------------------------------------

SCRIPT = ("\\set aid random(1, 10)\n"
          "SELECT v FROM pgb WHERE id = :aid;\n"
          "UPDATE pgb SET v = v + 1 WHERE id = :aid;\n")
PIPE_SCRIPT = ("\\set aid random(1, 10)\n\\startpipeline\n"
               "SELECT v FROM pgb WHERE id = :aid;\n"
               "UPDATE pgb SET v = v + 1 WHERE id = :aid;\n\\endpipeline\n")
TXNS = 15


def _pgbench(ctx, mode, script):
    pg = ctx.postgres()
    pg.psql_admin("CREATE TABLE pgb (id int PRIMARY KEY, v int); "
                  "INSERT INTO pgb SELECT g, 0 FROM generate_series(1, 10) g")
    path = os.path.join(ctx.tmp, "script.sql")
    with open(path, "w") as f:
        f.write(script)
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(["pgbench", "-n", "-h", pg.sockdir, "-p", str(pg.port), "-U", pg.superuser,
                 "-M", mode, "-f", path, "-t", str(TXNS), "-c", "1", "postgres"], collector=c)
    assert r.returncode == 0, r
    assert b"number of transactions actually processed: %d" % TXNS in r.stdout, r.stdout
    spans = c.spans()
    run = [s for s in _db(spans) if s.attrs.get("db.operation.name") != "PREPARE"]
    return spans, run, pg


def _check_pgbench(run, pg, param):
    sel = [s for s in run if s.name == "SELECT pgb"]
    upd = [s for s in run if s.name == "UPDATE pgb"]
    assert len(run) == 2 * TXNS and len(sel) == TXNS and len(upd) == TXNS, \
        [s.name for s in run]
    want = ("SELECT v FROM pgb WHERE id = $1;" if param else "SELECT v FROM pgb WHERE id = ?;")
    for s in sel:
        _common(s, pg)
        assert s.attrs.get("db.query.text") == want, s
        assert s.attrs.get("db.response.returned_rows") == 1, s
        assert s.status_code != ERROR, s
    return sel, upd


def test_libpq_pgbench_simple(ctx):
    spans, run, pg = _pgbench(ctx, "simple", SCRIPT)
    _check_pgbench(run, pg, param=False)


def test_libpq_pgbench_extended(ctx):
    spans, run, pg = _pgbench(ctx, "extended", SCRIPT)
    _check_pgbench(run, pg, param=True)


def test_libpq_pgbench_prepared_spans_carry_sql_text(ctx):
    spans, run, pg = _pgbench(ctx, "prepared", SCRIPT)
    sel, upd = _check_pgbench(run, pg, param=True)
    assert all(s.attrs.get("db.query.text") == "UPDATE pgb SET v = v + ? WHERE id = $1;"
               for s in upd), upd
    prep = [s for s in _db(spans) if s.attrs.get("db.operation.name") == "PREPARE"]
    assert prep and all(s.name in ("PREPARE pgb",) for s in prep), prep


def test_libpq_pgbench_pipeline(ctx):
    spans, run, pg = _pgbench(ctx, "extended", PIPE_SCRIPT)
    sel, upd = _check_pgbench(run, pg, param=True)
    for s in sel + upd:
        assert s.attrs.get("db.operation.batch.size") == 2, s


# --- the C API programs --------------------------------------------------------------------

def _api(ctx, mode, pg=None, conninfo=None):
    pg = pg or ctx.postgres()
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run([ctx.prog("pq_api"), mode, conninfo or pg.dsn()], collector=c)
    kv = parse_kv(r.stdout)
    assert r.returncode == 0 and kv.get("fails") == "0", r
    return sorted(c.spans(), key=lambda s: s.start), kv, pg, c


def test_libpq_params_never_captured(ctx):
    spans, kv, pg, c = _api(ctx, "params")
    q = _db(spans)
    ins = [s for s in q if s.name == "INSERT items"]
    sel = [s for s in q if s.name == "SELECT items"]
    assert len(ins) == 1 and len(sel) == 1, q
    assert ins[0].attrs["db.query.text"] == "INSERT INTO items (id, name) VALUES ($1, $2)"
    assert sel[0].attrs["db.response.returned_rows"] == 1
    _common(sel[0], pg, db=pg.user, host=pg.host)
    _no_secret(c, "s3cr3t-param", pg.password)


def test_libpq_prepared_statements_remembered(ctx):
    spans, kv, pg, c = _api(ctx, "prepared")
    q = _db(spans)
    text = "INSERT INTO items (id, name) VALUES ($1, $2)"
    prep = [s for s in q if s.attrs.get("db.operation.name") == "PREPARE"]
    assert [s.name for s in prep] == ["PREPARE items", "PREPARE items"], q
    execs = [s for s in q if s.name == "INSERT items"]
    assert len(execs) == 2 and all(s.attrs["db.query.text"] == text for s in execs), q
    desc = [s for s in q if s.attrs.get("db.operation.name") == "DESCRIBE"]
    assert len(desc) == 1 and desc[0].attrs["db.query.text"] == text, q
    sel = [s for s in q if s.name == "SELECT items"]
    assert len(sel) == 1 and sel[0].attrs["db.response.returned_rows"] == 2, q
    _no_secret(c, "s3cr3t-param")


def test_libpq_async_results_collected_on_another_thread(ctx):
    spans, kv, pg, c = _api(ctx, "async")
    q = _db(spans)
    assert kv["rows"] == "15"
    assert len(q) == 5, q
    for s in q:
        assert s.name == "SELECT" and s.status_code != ERROR, s
        assert s.attrs["db.response.returned_rows"] == 3, s
        assert s.end > s.start, s
    conn = _conns(spans)[0]
    assert all(s.trace_id != conn.trace_id for s in q)  # each query is its own root


def test_libpq_pipeline_error_mid_pipeline_aborts_the_rest(ctx):
    spans, kv, pg, c = _api(ctx, "pipeline")
    q = [s for s in _db(spans) if s.attrs.get("db.operation.batch.size")]
    assert len(q) == 5, _db(spans)
    ok1, dup, aborted, ok4, ok5 = q
    assert ok1.name == "INSERT items" and ok1.status_code != ERROR, ok1
    assert dup.status_code == ERROR and dup.attrs["error.type"] == "23505", dup
    assert aborted.name == "SELECT items" and aborted.status_code == ERROR, aborted
    assert aborted.attrs["error.type"] == "PGRES_PIPELINE_ABORTED", aborted
    assert [s.attrs["db.operation.batch.size"] for s in q] == [3, 3, 3, 2, 2], q
    assert ok4.status_code != ERROR and ok5.attrs.get("db.response.returned_rows") == 1


def test_libpq_copy_in_and_out_record_bytes(ctx):
    spans, kv, pg, c = _api(ctx, "copy")
    cp = [s for s in _db(spans) if s.name == "COPY items"]
    assert len(cp) == 2, _db(spans)
    assert cp[0].attrs["db.query.text"] == "COPY items (id, name) FROM STDIN"
    assert cp[0].attrs["spanshim.db.copy.bytes"] == int(kv["bytes_in"]) == 20, cp[0]
    assert cp[1].attrs["spanshim.db.copy.bytes"] == int(kv["bytes_out"]) == 20, cp[1]
    assert all(s.status_code != ERROR for s in cp)


def test_libpq_reset_makes_a_second_connect_span(ctx):
    spans, kv, pg, c = _api(ctx, "reset")
    conns = _conns(spans)
    assert len(conns) == 2 and all(s.status_code != ERROR for s in conns), spans
    q = _db(spans)
    assert len(q) == 2 and all(s.name == "SELECT" for s in q), q
    assert conns[0].start < q[0].start < conns[1].start < q[1].start


def test_libpq_connect_still_in_progress_at_exit_is_delivered_once(ctx):
    """PQconnectStart, never polled nor finished, then exit (a fork child exits first):
    the connect span was parked until polling ended and was lost uncounted (found by
    h12). It ends at the exit, outcome unknown (status unset), once: not in the child."""
    spans, kv, pg, c = _api(ctx, "startexit")
    conns = _conns(spans)
    assert len(conns) == 1, spans
    assert conns[0].status_code != ERROR and conns[0].end >= conns[0].start, conns[0]
    assert conns[0].attrs.get("db.system.name") == "postgresql", conns[0]


def test_libpq_connect_abandoned_in_progress_by_pqfinish_or_pqreset_is_not_a_failure(ctx):
    """PQconnectStart, then PQfinish before any poll; PQconnectStart, then PQreset. The
    abandoned connects ended as failures (ERROR, error.type 08001, an exception record,
    and the message 'connection to server ... failed:' with nothing after it: found by a
    fresh-eyes helper); nothing failed, the app let them go. They end with status unset,
    as one left in progress at exit does; the reset's own connect and the query are OK."""
    spans, kv, pg, c = _api(ctx, "startfinish")
    conns = _conns(spans)
    assert len(conns) == 3, spans
    assert all(s.status_code != ERROR and "error.type" not in s.attrs for s in conns), conns
    q = _db(spans)
    assert q and all(s.status_code != ERROR for s in q), spans
    logs = open(c.logs_out).read() if os.path.exists(c.logs_out) else ""
    assert "exception" not in logs, logs


def test_libpq_polled_connect_span_parents_its_socket_spans(ctx):
    spans, kv, pg, c = _api(ctx, "poll")
    assert kv["poll_status"] == "ok"
    conns = _conns(spans)
    assert len(conns) == 1 and conns[0].status_code != ERROR, spans
    kids = [s for s in spans if s.name == "connect" and s.parent_id == conns[0].span_id]
    assert kids and kids[0].attrs.get("network.peer.port") == pg.port, spans
    assert conns[0].start <= kids[0].start and kids[0].end <= conns[0].end


def test_libpq_refused_send_is_an_error_span(ctx):
    spans, kv, pg, c = _api(ctx, "badsend")
    q = _db(spans)
    assert len(q) == 2, q
    assert q[0].status_code != ERROR, q
    assert q[1].status_code == ERROR and "another command" in q[1].status_message, q


def test_libpq_dlopen_rtld_local_is_traced(ctx):
    pg = ctx.postgres()
    ext = os.path.join(ctx.tmp, "pqext.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "progs",
                       "pq_dlopen.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-DPQ_EXT", "-o", ext, src, "-lpq"], check=True)
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run([ctx.prog("pq_dlopen"), ext, pg.dsn()], collector=c)
    assert r.returncode == 0 and parse_kv(r.stdout)["rows"] == "4", r
    spans = c.spans()
    assert len(_conns(spans)) == 1, spans
    q = _db(spans)
    assert len(q) == 1 and q[0].name == "SELECT" and q[0].attrs["db.response.returned_rows"] == 4


def test_libpq_shim_has_no_libpq_dependency(ctx):
    out = subprocess.run(["readelf", "-d", ctx.lib], capture_output=True, text=True).stdout
    assert "libpq" not in out, out
    # A program with no libpq at all runs under the shim as before.
    r = ctx.run(["/bin/true"])
    assert r.returncode == 0


def test_bundled_libpq_called_from_a_constructor_inside_dlopen_after_a_failure(ctx):
    """A module whose constructor (run inside dlopen, the dynamic loader's lock held) makes
    the process's first failing call and then uses its bundled libpq and libcurl. The first
    failure has the exporter thread load the unwinder; that dlopen waits for the app's, and
    must not hold the lock the bundled libraries' first calls need (it did: a hang)."""
    pg, web, ext = _bundled_ext(ctx, "-DBUNDLED_CTOR")
    argv = [ctx.prog("bundled"), ext, pg.dsn(), web.url + "/bundled"]
    env = {"BUNDLED_CONNINFO": pg.dsn(), "BUNDLED_URL": web.url + "/bundled"}
    want = (b"ctor_connect=-1 pq=conn rows=4 curl=0 http=200 body=6\n"
            b"pq=conn rows=4 curl=0 http=200 body=6\n")
    plain = ctx.run(argv, preload=False, extra_env=env)
    # (what the server saw is shown: an untraced run once got an answer libcurl took for
    # HTTP/0.9 here, cause not yet known)
    assert plain.returncode == 0 and plain.stdout == want, (plain, web.requests)
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(argv, collector=c, extra_env=env, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, want, b""), r
    spans = c.spans()
    assert len(_conns(spans)) == 2 and len(_db(spans)) == 2, spans
    refused = [s for s in spans if s.name == "connect" and s.status_code == 2]
    assert len(refused) == 1, spans


def _bundled_ext(ctx, *flags):
    """PostgreSQL, an HTTP server, and tests/progs/bundled.c built as a wheel's extension
    module (with flags) linked against hashed copies of libpq and libcurl."""
    import shutil
    if not shutil.which("patchelf"):
        harness.skip("no patchelf (tools/deps.sh installs it)")
    pg = ctx.postgres()
    web = ctx.http_server()
    libdir = os.path.join(ctx.tmp, "wheel.libs")
    os.mkdir(libdir)
    pq = _bundled_copy(ctx, libdir, "libpq.so.5", "libpq", "5f2a9c1e")
    curl = _bundled_copy(ctx, libdir, "libcurl.so.4", "libcurl", "7b3d0e4f")
    ext = os.path.join(ctx.tmp, "_ext.so")
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "progs", "bundled.c")
    subprocess.run(["cc", "-shared", "-fPIC", "-DBUNDLED_EXT", *flags, "-o", ext, src, pq, curl,
                    "-Wl,-rpath," + libdir], check=True)
    return pg, web, ext


def _bundled_copy(ctx, libdir, name, soname_base, digest):
    """A copy of the system's `name` (e.g. libpq.so.5) under a wheel-style hashed name with
    its soname changed to it (patchelf), as auditwheel/delocate bundle libraries."""
    import shutil
    real = os.path.realpath(subprocess.run(["sh", "-c", "ldconfig -p | awk '$1 == \"%s\" "
                                            "{print $NF; exit}'" % name], capture_output=True,
                                           text=True).stdout.strip())
    if not real or not os.path.exists(real):
        raise AssertionError("no %s on this machine" % name)
    version = os.path.basename(real).split(".so.", 1)[1]
    hashed = "%s-%s.so.%s" % (soname_base, digest, version)
    dst = os.path.join(libdir, hashed)
    shutil.copy(real, dst)
    subprocess.run(["patchelf", "--set-soname", hashed, dst], check=True)
    return dst


def test_bundled_libpq_and_libcurl_loaded_rtld_local_work_and_are_traced(ctx):
    """A Python wheel's way: an extension module dlopen'd RTLD_LOCAL, linked against its own
    libpq-<hash>.so.5.x and libcurl-<hash>.so.4.x (sonames changed). Under the shim the
    module's PQconnectdb + query and curl_easy_perform give what they give without it (they
    used to fail: PQconnectdb NULL, CURLE_FAILED_INIT), and make their spans."""
    pg, web, ext = _bundled_ext(ctx)
    needed = subprocess.run(["readelf", "-d", ext], capture_output=True, text=True).stdout
    assert "libpq-5f2a9c1e" in needed and "libcurl-7b3d0e4f" in needed, needed
    argv = [ctx.prog("bundled"), ext, pg.dsn(), web.url + "/bundled"]
    plain = ctx.run(argv, preload=False)
    # (A one-off curl=1 here, untraced, was seen once: the output now carries libcurl's
    # message and the server's view of the request, to say which side it was.)
    assert plain.returncode == 0 and plain.stdout == b"pq=conn rows=4 curl=0 http=200 body=6\n", \
        (plain, [x for x in web.requests if x["path"] != "/bundled"] or web.requests[-1:])
    c = ctx.collector(args=SHIM_NAMES)
    r = ctx.run(argv, collector=c)
    assert (r.returncode, r.stdout, r.stderr) == (plain.returncode, plain.stdout,
                                                  plain.stderr), r
    spans = c.spans()
    assert len(_conns(spans)) == 1, spans
    q = _db(spans)
    assert len(q) == 1 and q[0].attrs["db.response.returned_rows"] == 4, q
    gets = [s for s in spans if s.attrs.get("http.request.method") == "GET" and s.kind == 3]
    assert len(gets) == 1 and gets[0].attrs.get("http.response.status_code") == 200, spans
    assert [x for x in web.requests if x["path"] == "/bundled"][-1]["headers"].get(
        "traceparent", "").startswith("00-" + gets[0].trace_id), web.requests
