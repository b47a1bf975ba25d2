/* SQL enrichment on protobuf bytes (ss__sqlsum_wire), and applied as the JSON line is
 * written from them (ss__wire_traces_json_sql), against the decoded path they stand
 * in for (ss__sqlsum_enrich): the same request through each gives the same JSON line,
 * whatever the statement (parsed, unparsable, PREPARE, a literal the shim missed, no
 * single table) and wherever the attributes it replaces sit; and the pipeline with
 * sinks that take wire bytes writes what the decoded path would, never unpacking a
 * request that needs nothing else. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/test_spanshimd_fixture.h"
#include "tools/common/otlp_json.h"

/* The line the decoded path writes for body[0..len): decode, enrich, ss__json_traces. */
static char *tree_line(const uint8_t *body, size_t len) {
  static ss__buf t = SS_BUF_INIT;
  int too_big;
  ss__traces_req *q = ss__decode_traces(body, len, &too_big);
  ck_assert_ptr_nonnull(q);
  ss__sqlsum_enrich(q);
  ss__buf_reset(&t);
  ck_assert_int_eq(ss__json_traces(q, &t), 0);
  ss__buf_putc(&t, 0);
  return t.data;
}

/* ... and the wire path's: ss__sqlsum_wire, ss__wire_traces_json. *changed: its rc. */
static char *wire_line(const uint8_t *body, size_t len, int *changed) {
  static ss__buf w = SS_BUF_INIT, e = SS_BUF_INIT;
  ss__wire_info info;
  *changed = ss__sqlsum_wire(body, len, &e);
  ck_assert_int_ge(*changed, 0);
  if (*changed) body = (const uint8_t *)e.data, len = e.len;
  ss__buf_reset(&w);
  ck_assert_int_eq(ss__wire_traces_json(body, len, &w, &info), 0);
  ss__buf_putc(&w, 0);
  return w.data;
}

/* ... and the one-pass writer's (enrichment while writing the line). */
static char *sql_line(const uint8_t *body, size_t len) {
  static ss__buf w = SS_BUF_INIT;
  ss__wire_info info;
  ss__buf_reset(&w);
  ck_assert_int_eq(ss__wire_traces_json_sql(body, len, &w, &info, ss__sqlsum_plan), 0);
  ss__buf_putc(&w, 0);
  return w.data;
}

static fx_span_t *pg_span(uint64_t sid, const char *name, const char *text) {
  fx_span_t *s = fx_span(fx_tid(9, sid), sid, name, 1000, 0);
  fx_attr(s, "db.system.name", "postgresql");
  if (text) fx_attr(s, "db.query.text", text);
  return s;
}

START_TEST(test_wire_enrichment_matches_decoded_path) {
  fx_span_t *s[9];
  s[0] = pg_span(1, "postgresql", "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  fx_attr(s[0], "db.operation.name", "SELECT");      /* replaced in place */
  fx_attr(s[0], "db.collection.name", "x");          /* replaced in place */
  fx_attr(s[0], "server.address", "/tmp");
  s[1] = pg_span(2, "postgresql", "UPDATE a SET v = v + ? WHERE id = ?");
  s[2] = pg_span(3, "SELECT", "SELECT * FROM a JOIN b ON a.id = b.id");
  fx_attr(s[2], "db.collection.name", "a");          /* two tables: removed */
  s[3] = pg_span(4, "BEGIN", "this is not sql at all ((");  /* unparsable: summary = name */
  s[4] = pg_span(5, "postgresql", "garbage (((");    /* unparsable, generic name: unchanged */
  s[5] = pg_span(6, "PREPARE", "INSERT INTO t VALUES (?)");
  fx_attr(s[5], "db.operation.name", "PREPARE");     /* keeps the shim's name and op */
  s[6] = pg_span(7, "postgresql", "SELECT * FROM t WHERE name = 'leaked'");  /* rescrubbed */
  s[7] = fx_span(fx_tid(9, 8), 8, "connect", 10, 0);  /* not a database span */
  s[8] = pg_span(9, "mysql", "SELECT 1");
  s[8]->attributes[0] = fx_kv("db.system.name", "mysql");  /* not PostgreSQL */
  size_t len;
  uint8_t *body = fx_pack(fx_request("svc", s, 9), &len);
  int changed;
  char *w = wire_line(body, len, &changed);
  ck_assert_int_eq(changed, 1);
  ck_assert_str_eq(w, tree_line(body, len));
  ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
  ck_assert_ptr_nonnull(strstr(w, "\"db.query.summary\""));
  ck_assert_ptr_nonnull(strstr(w, "\"name\":\"SELECT pgbench_accounts\""));
  /* nothing to enrich: not changed, the same line either way */
  fx_span_t *plain[] = {s[7], s[8]};
  body = fx_pack(fx_request("svc", plain, 2), &len);
  w = wire_line(body, len, &changed);
  ck_assert_int_eq(changed, 0);
  ck_assert_str_eq(w, tree_line(body, len));
  ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
}
END_TEST

/* The same statements again (from the cache), and with a field order no SDK uses. */
START_TEST(test_wire_enrichment_attributes_before_and_after) {
  fx_span_t *s = fx_span(fx_tid(9, 1), 1, "postgresql", 1000, 0);
  fx_attr(s, "db.query.summary", "old");
  fx_attr(s, "db.query.text", "DELETE FROM queue WHERE id = ?");
  fx_attr(s, "db.system", "postgresql");  /* the older key */
  fx_attr(s, "db.query.text", "SELECT 1");  /* a second one: the first counts */
  size_t len;
  uint8_t *body = fx_pack(fx_request("svc", &s, 1), &len);
  for (int round = 0; round < 2; round++) {
    int changed;
    char *w = wire_line(body, len, &changed);
    ck_assert_int_eq(changed, 1);
    ck_assert_str_eq(w, tree_line(body, len));
    ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
  }
}

/* Keys the one-pass writer must read as protobuf-c does: one cut at a NUL byte, a key
 * after its value, a value that is not a string. */
START_TEST(test_sql_keys_read_as_protobuf_c_reads_them) {
  fx_span_t *s[3];
  s[0] = pg_span(1, "postgresql", NULL);
  fx_attr(s[0], "db.query.textXtail", "SELECT * FROM a WHERE x = ?");  /* X: NUL below */
  s[1] = pg_span(2, "postgresql", "UPDATE b SET v = ?");
  fx_attr(s[1], "db.operation.name", "UPDATE");
  s[2] = pg_span(3, "postgresql", "SELECT 1");
  size_t len;
  uint8_t *body = fx_pack(fx_request("svc", s, 3), &len);
  uint8_t *x = memmem(body, len, "db.query.textX", 14);
  ck_assert_ptr_nonnull(x);
  x[13] = 0;  /* protobuf-c's C string, and so the tree path, ends the key there */
  ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
  ck_assert_ptr_nonnull(strstr(sql_line(body, len), "\"SELECT a\""));
  /* span 2's db.operation.name KeyValue with its value first and the key after */
  uint8_t *kv = memmem(body, len, "\x0a\x11" "db.operation.name", 19);
  ck_assert_ptr_nonnull(kv);
  uint8_t key[19], val[10];  /* the key field, then the value "\x12\x08\x0a\x06UPDATE" */
  memcpy(key, kv, 19);
  memcpy(val, kv + 19, 10);
  ck_assert_int_eq(memcmp(val, "\x12\x08\x0a\x06UPDATE", 10), 0);
  memcpy(kv, val, 10);
  memcpy(kv + 10, key, 19);
  ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
}
END_TEST
END_TEST

/* ---- through the pipeline, with the default kind of sinks ---- */

static char file_line[8192];
static const uint8_t *up_body;
static size_t up_len;
static int wire_calls, tree_calls;

static int tree_sink(void *ctx, const ss__traces_req *q, const uint8_t *b, size_t n,
                     uint64_t items) {
  (void)ctx, (void)b, (void)n, (void)items;
  ss__buf t = SS_BUF_INIT;
  ss__json_traces(q, &t);
  snprintf(file_line, sizeof file_line, "%.*s", (int)t.len, t.data);
  ss__buf_free(&t);
  tree_calls++;
  return 0;
}

static int wire_sink(void *ctx, const char *json, size_t jn, const uint8_t *b, size_t n,
                     uint64_t items) {
  (void)ctx, (void)items;
  snprintf(file_line, sizeof file_line, "%.*s", (int)jn, json);
  up_body = b, up_len = n;
  wire_calls++;
  return 0;
}

static int logs_sink(void *ctx, const ss__logs_req *q, const uint8_t *b, size_t n,
                     uint64_t items) {
  (void)ctx, (void)q, (void)b, (void)n, (void)items;
  return 0;
}

/* The sinks for a pipeline test (wants_bytes: like the upstream's, else like the file's
 * alone), a request of a SQL span and a connect span into sp/body, the line the decoded
 * path writes for it into expect, and the counters zeroed. */
static uint8_t *sql_request(int wants_bytes, fx_span_t *sp[2], size_t *len, char *expect,
                            size_t n) {
  static ss__sink s;
  s = (ss__sink){tree_sink, logs_sink, wants_bytes, NULL, NULL, wire_sink, 1};
  ss__pipeline_clear_sinks();
  ck_assert_int_eq(ss__pipeline_add_sink(&s), 0);
  sp[0] = pg_span(1, "postgresql", "SELECT * FROM orders WHERE id = ?");
  sp[1] = fx_span(fx_tid(9, 2), 2, "connect", 10, 0);
  uint8_t *body = fx_pack(fx_request("svc", sp, 2), len);
  snprintf(expect, n, "%s", tree_line(body, *len));
  memset(&ss__stats_g, 0, sizeof ss__stats_g);
  return body;
}

START_TEST(test_pipeline_takes_sql_requests_without_decoding) {
  fx_span_t *sp[2];
  size_t len;
  char expect[8192];
  uint8_t *body = sql_request(1, sp, &len, expect, sizeof expect);
  uint64_t decodes = ss__decode_count;
  for (int i = 0; i < 3; i++) {  /* the first finds SQL after writing, the others before */
    ck_assert_int_eq(ss__pipeline_traces(body, len, 1), 200);
    ck_assert_str_eq(file_line, expect);
    ck_assert_ptr_ne(up_body, body);  /* enriched: changed bytes go upstream */
    ss__stats keep = ss__stats_g;     /* (this check enriches too) */
    int changed;
    ck_assert_str_eq(wire_line(up_body, up_len, &changed), expect);
    ss__stats_g = keep;
  }
  ck_assert_uint_eq(ss__decode_count, decodes);  /* never unpacked */
  ck_assert_int_eq(wire_calls, 3);
  ck_assert_int_eq(tree_calls, 0);
  ck_assert_uint_eq(ss__stats_g.spans_received, 6);
  ck_assert_uint_eq(ss__stats_g.sql_spans, 3);
  /* a request with a malformed span id takes the decoded path: partial success */
  sp[1]->span_id.len = 3;
  body = fx_pack(fx_request("svc", sp, 2), &len);
  ck_assert_int_eq(ss__pipeline_traces(body, len, 1), 200);
  ck_assert_int_eq(tree_calls, 1);
  ck_assert_uint_eq(ss__pipeline_rejected.n, 1);
  ck_assert_uint_eq(ss__stats_g.sql_spans, 4);  /* counted once, on the path taken */
  ss__pipeline_free();
}
END_TEST

/* With no sink wanting bytes (the file alone), SQL spans are enriched as the line is
 * written: one pass, never unpacked, counted once; a line that must be split takes the
 * enriched bytes instead (they are what the sink decodes to split it). */
START_TEST(test_pipeline_enriches_while_writing_for_file_alone) {
  fx_span_t *sp[2];
  size_t len;
  char expect[8192];
  uint8_t *body = sql_request(0, sp, &len, expect, sizeof expect);
  uint64_t decodes = ss__decode_count;
  wire_calls = tree_calls = 0;
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(ss__pipeline_traces(body, len, 1), 200);
    ck_assert_str_eq(file_line, expect);
    ck_assert_ptr_eq(up_body, body);  /* nothing rewritten */
  }
  ck_assert_uint_eq(ss__decode_count, decodes);
  ck_assert_int_eq(wire_calls, 3);
  ck_assert_uint_eq(ss__stats_g.spans_received, 6);
  ck_assert_uint_eq(ss__stats_g.sql_spans, 3);
  ss__sink_max_line(100);  /* the line will be split: the sink gets enriched bytes */
  ck_assert_int_eq(ss__pipeline_traces(body, len, 1), 200);
  ck_assert_str_eq(file_line, expect);
  ck_assert_ptr_ne(up_body, body);
  int changed;
  ss__stats keep = ss__stats_g;
  ck_assert_str_eq(wire_line(up_body, up_len, &changed), expect);
  ss__stats_g = keep;
  ck_assert_uint_eq(ss__stats_g.sql_spans, 4);  /* still once per span */
  ss__sink_max_line(0);
  ss__pipeline_free();
}
END_TEST

/* Statements seen again, in the same request and the next: the writer keeps each span's
 * attribute list with its last edit and writes it from there when the planner (still
 * asked, and still counting) gives the same edit; the line stays the decoded path's. */
static void statement_spans(fx_span_t **s, uint64_t base) {
  s[0] = pg_span(base + 1, "postgresql", "SELECT abalance FROM pgbench_accounts WHERE aid = ?");
  fx_attr(s[0], "db.operation.name", "SELECT");
  fx_attr(s[0], "server.address", "/tmp");
  s[1] = pg_span(base + 2, "BEGIN", "this is not sql at all ((");
  s[2] = pg_span(base + 3, "PREPARE", "INSERT INTO t VALUES (?)");
  fx_attr(s[2], "db.operation.name", "PREPARE");
  s[3] = pg_span(base + 4, "postgresql", "SELECT * FROM t WHERE name = 'leaked'");
  s[4] = pg_span(base + 5, "postgresql", "SELECT * FROM a JOIN b ON a.id = b.id");
  fx_attr(s[4], "db.collection.name", "a");
  s[5] = pg_span(base + 6, "postgresql", "SELECT 1");
  s[5]->attributes[0] = fx_kv("db.system.name", "mysql");
}

START_TEST(test_statements_seen_again_same_line) {
  enum { K = 6, R = 4 };
  fx_span_t *s[K * R];
  for (int r = 0; r < R; r++) statement_spans(s + K * r, 100 * (uint64_t)r);
  size_t len;
  uint8_t *body = fx_pack(fx_request("svc", s, K * R), &len);
  for (int round = 0; round < 3; round++) {
    uint64_t before = ss__stats_g.sql_spans;
    char *w = sql_line(body, len);
    ck_assert_uint_eq(ss__stats_g.sql_spans - before, (K - 1) * R);  /* all but mysql's */
    ck_assert_str_eq(w, tree_line(body, len));
  }
  /* the same lists under other names: another edit of the same lists */
  for (int r = 0; r < R; r++)
    for (int k = 0; k < K; k++) s[K * r + k]->name = r % 2 ? "UPDATE" : "postgresql";
  body = fx_pack(fx_request("svc", s, K * R), &len);
  for (int round = 0; round < 2; round++)
    ck_assert_str_eq(sql_line(body, len), tree_line(body, len));
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_sqlwire");
  TCase *tc = tcase_create("sqlwire");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_wire_enrichment_matches_decoded_path);
  tcase_add_test(tc, test_wire_enrichment_attributes_before_and_after);
  tcase_add_test(tc, test_statements_seen_again_same_line);
  tcase_add_test(tc, test_pipeline_takes_sql_requests_without_decoding);
  tcase_add_test(tc, test_sql_keys_read_as_protobuf_c_reads_them);
  tcase_add_test(tc, test_pipeline_enriches_while_writing_for_file_alone);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  ss__sqlsum_free();
  fx_reset();
  return failed ? 1 : 0;
}
