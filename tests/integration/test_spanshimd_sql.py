"""SQL enrichment in spanshimd: PostgreSQL spans get db.query.summary, db.operation.name,
db.collection.name and their name from PostgreSQL's own parser (libpg_query); text the
parser refuses keeps the shim's name; a literal the shim's scrubber missed is scrubbed
here. Checked on the JSON lines a user reads and on what reaches an upstream."""
import os
import struct

import test_spanshimd as t
import test_spanshimd_upstream as u


def db_span(i, text, name="postgresql", system="postgresql", coll=None):
    attrs = {"db.system.name": system, "db.query.text": text}
    if coll:
        attrs["db.collection.name"] = coll
    return t.span(t.TRACE_ID, struct.pack(">Q", i), name, 3, 1, 2, attrs)


def enriched(ctx, texts, args=(), **kw):
    col = ctx.collector(list(args))
    sps = [db_span(i + 1, x, **kw) for i, x in enumerate(texts)]
    assert t.exchange(col, t.post("/v1/traces", t.traces_request(sps)))[0] == 200
    st = t.stats(col)
    return col.spans(), st


def one(ctx, text, **kw):
    spans, _ = enriched(ctx, [text], **kw)
    return spans[0]


def test_select_gets_summary_operation_collection_and_name(ctx):
    s = one(ctx, "SELECT id, total FROM orders WHERE customer_id = ? AND status = ?")
    assert s.name == "SELECT orders"
    assert s.attrs["db.query.summary"] == "SELECT orders"
    assert s.attrs["db.operation.name"] == "SELECT"
    assert s.attrs["db.collection.name"] == "orders"
    assert s.attrs["db.query.text"] == ("SELECT id, total FROM orders WHERE customer_id = ? "
                                        "AND status = ?")


def test_insert_select_names_both_tables_in_order(ctx):
    s = one(ctx, "INSERT INTO shipping (order_id, addr) SELECT id, addr FROM orders "
                 "WHERE created > ?")
    assert s.name == "INSERT shipping SELECT orders"
    assert s.attrs["db.operation.name"] == "INSERT"
    assert s.attrs["db.collection.name"] == "shipping"


def test_insert_values_update_delete(ctx):
    spans, _ = enriched(ctx, ["INSERT INTO audit.events (kind, at) VALUES (?, now())",
                              "UPDATE accounts SET balance = balance - ? WHERE id = ?",
                              "DELETE FROM sessions WHERE expires < now()"])
    got = [(s.name, s.attrs["db.operation.name"], s.attrs["db.collection.name"]) for s in spans]
    assert got == [("INSERT audit.events", "INSERT", "audit.events"),
                   ("UPDATE accounts", "UPDATE", "accounts"),
                   ("DELETE sessions", "DELETE", "sessions")]


def test_cte_names_tables_not_cte_names(ctx):
    s = one(ctx, "WITH recent AS (SELECT * FROM orders WHERE ts > ?) "
                 "SELECT c.name FROM recent r JOIN customers c ON c.id = r.cid",
            coll="recent")
    assert s.name == "SELECT orders SELECT customers"
    assert s.attrs["db.operation.name"] == "SELECT"
    assert "db.collection.name" not in s.attrs  # two tables: no single collection
    s2 = one(ctx, "WITH moved AS (DELETE FROM queue WHERE id = ? RETURNING *) "
                  "INSERT INTO done SELECT * FROM moved")
    assert s2.name == "DELETE queue INSERT done"
    assert s2.attrs["db.operation.name"] == "INSERT"
    assert s2.attrs["db.collection.name"] == "done"


def test_union_and_join(ctx):
    spans, _ = enriched(ctx, ["SELECT a FROM t1 UNION ALL SELECT a FROM t2",
                              "SELECT * FROM a JOIN b USING (id) WHERE a.x = ?"])
    assert [s.name for s in spans] == ["SELECT t1 SELECT t2", "SELECT a b"]


def test_unparseable_text_keeps_the_shims_name_and_is_counted(ctx):
    spans, st = enriched(ctx, ["SELEKT oops FROM"], name="SELEKT")
    s = spans[0]
    assert s.name == "SELEKT"
    assert s.attrs["db.query.summary"] == "SELEKT"
    assert s.attrs["db.query.text"] == "SELEKT oops FROM"
    assert "db.operation.name" not in s.attrs
    assert st["sql_spans"] == 1 and st["sql_unparsed"] == 1


def test_literal_missed_by_the_shim_is_scrubbed_here(ctx):
    spans, st = enriched(ctx, ["SELECT * FROM users WHERE email = 'bob@example.com' AND id = ?"])
    s = spans[0]
    assert "bob@example.com" not in s.attrs["db.query.text"]
    assert s.attrs["db.query.text"] == "SELECT * FROM users WHERE email = $2 AND id = $1"
    assert s.name == "SELECT users" and st["sql_rescrubbed"] == 1


def test_other_databases_and_disabled_enrichment_are_left_alone(ctx):
    s = one(ctx, "SELECT * FROM t", name="mysql-q", system="mysql")
    assert s.name == "mysql-q" and "db.query.summary" not in s.attrs
    spans, _ = enriched(ctx, ["SELECT * FROM orders"], args=["--no-sql-summary"])
    assert spans[0].name == "postgresql" and "db.query.summary" not in spans[0].attrs


def test_enriched_spans_reach_the_upstream(ctx):
    srv = u.otlp_server(ctx)
    col = ctx.collector(["--otlp-endpoint", srv.url])
    body = t.traces_request([db_span(1, "UPDATE stock SET n = n - ? WHERE sku = ?")])
    assert t.exchange(col, t.post("/v1/traces", body))[0] == 200
    got = srv.wait_spans(1)
    assert got[0]["name"] == "UPDATE stock"
    assert got[0]["attrs"]["db.query.summary"] == "UPDATE stock"
    assert got[0]["attrs"]["db.collection.name"] == "stock"
    assert os.path.exists(col.out)
