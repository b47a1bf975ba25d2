/* test_sql.c - SQL literal scrubbing, statement summaries (span names), error-message
 * scrubbing, and the exporter's sanitize pass over database spans. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "runtime/sanitize.h"
#include "runtime/sql.h"

static char buf[8192];

static const char *scrub(const char *in) {
  size_t n = ss__sql_scrub(in, strlen(in), buf, sizeof buf - 1);
  buf[n] = '\0';
  return buf;
}

static const struct {
  const char *in, *want;
} scrub_cases[] = {
    /* strings */
    {"SELECT * FROM t WHERE a = 'x'", "SELECT * FROM t WHERE a = ?"},
    {"SELECT 'it''s', 'b'", "SELECT ?, ?"},
    {"SELECT E'a\\'b', 1", "SELECT ?, ?"},
    {"SELECT e'\\\\', 'z'", "SELECT ?, ?"},
    {"SELECT U&'d\\0061t', 2", "SELECT ?, ?"},
    {"SELECT B'0101', X'1F', N'nat'", "SELECT ?, ?, ?"},
    {"SELECT 'a'\n'b'", "SELECT ?\n?"},
    /* dollar quotes, with and without tags; $1 parameters stay */
    {"SELECT $$secret$$, $1", "SELECT ?, $1"},
    {"SELECT $tag$ a $$ b $tag$ FROM t", "SELECT ? FROM t"},
    {"SELECT $a$x$b$y$a$", "SELECT ?"},
    {"UPDATE t SET a = $1 WHERE b = $22", "UPDATE t SET a = $1 WHERE b = $22"},
    {"SELECT foo$bar FROM t", "SELECT foo$bar FROM t"},
    /* numbers */
    {"SELECT 1, 2.5, .5, 1e-5, 1E+10, 6.02e23", "SELECT ?, ?, ?, ?, ?, ?"},
    {"SELECT 0x1F, 0o17, 0b101, 1_000_000", "SELECT ?, ?, ?, ?"},
    {"SELECT -42", "SELECT -?"},
    {"SELECT t1.c2 FROM t1", "SELECT t1.c2 FROM t1"},
    {"SELECT a[1:2] FROM t", "SELECT a[?:?] FROM t"},
    /* booleans; NULL stays */
    {"SELECT TRUE, false, NULL", "SELECT ?, ?, NULL"},
    {"SELECT true_col FROM t", "SELECT true_col FROM t"},
    /* comments */
    {"SELECT 1 -- secret\nFROM t", "SELECT ? FROM t"},
    {"SELECT /* a /* nested 'x' */ b */ c", "SELECT c"},
    {"SELECT/*c*/x", "SELECT x"},
    {"SELECT 1 -- trailing", "SELECT ?"},
    /* identifiers, quoted identifiers, casts */
    {"SELECT \"Weird \"\"id\"\"\" FROM \"T\"", "SELECT \"Weird \"\"id\"\"\" FROM \"T\""},
    {"SELECT '2024-01-01'::date, 3::int4, x::text", "SELECT ?::date, ?::int4, x::text"},
    {"SELECT DATE '2024-01-01', INTERVAL '1 day'", "SELECT DATE ?, INTERVAL ?"},
    {"SELECT café FROM t", "SELECT café FROM t"},
    /* unterminated or ambiguous: everything after is one ? */
    {"SELECT 'abc", "SELECT ?"},
    {"SELECT 'a', 'unterminated FROM secret", "SELECT ?, ?"},
    {"SELECT E'abc\\' FROM t", "SELECT ?"},
    {"SELECT $q$ never closed", "SELECT ?"},
    {"SELECT \"unclosed, 's3cr3t'", "SELECT ?"},
    {"SELECT 1 /* unclosed 's3cr3t'", "SELECT ?"},
    {"SELECT 'C:\\' , 's3cr3t'", "SELECT ?"},
    {"SELECT 'it\\'s s3cr3t'", "SELECT ?"},
    /* nothing to scrub */
    {"", ""},
    {"BEGIN", "BEGIN"},
    {"INSERT INTO t (a, b) VALUES ($1, $2)", "INSERT INTO t (a, b) VALUES ($1, $2)"},
};

START_TEST(test_scrub_table) {
  ck_assert_str_eq(scrub(scrub_cases[_i].in), scrub_cases[_i].want);
}
END_TEST

START_TEST(test_scrub_never_leaks_secret_in_any_truncation) {
  /* Every prefix of a statement (as the attribute value limit may cut it) scrubs without
   * showing any part of a literal. */
  const char *stmts[] = {
      "SELECT * FROM users WHERE pw = 's3cr3tval' AND n = 123456",
      "SELECT E's3cr3tval\\'s3cr3tval', $zz$s3cr3tval$zz$, 'x''s3cr3tval'",
      "INSERT INTO t VALUES ('s3cr3tval') -- s3cr3tval\n/* s3cr3tval */",
  };
  for (size_t k = 0; k < sizeof stmts / sizeof stmts[0]; k++) {
    size_t len = strlen(stmts[k]);
    for (size_t cut = 0; cut <= len; cut++) {
      size_t n = ss__sql_scrub(stmts[k], cut, buf, sizeof buf - 1);
      buf[n] = '\0';
      ck_assert_msg(strstr(buf, "s3cr") == NULL && strstr(buf, "cr3t") == NULL &&
                        strstr(buf, "123") == NULL && strstr(buf, "456") == NULL,
                    "leak at cut %zu: %s", cut, buf);
    }
  }
}
END_TEST

START_TEST(test_scrub_respects_cap) {
  char small[8];
  size_t n = ss__sql_scrub("SELECT * FROM a_long_table", 26, small, sizeof small);
  ck_assert_uint_le(n, sizeof small);
  ck_assert_int_eq(memcmp(small, "SELECT *", 8), 0);
}
END_TEST

static const struct {
  const char *sql, *op, *coll;
} sum_cases[] = {
    {"SELECT a FROM orders WHERE id = $1", "SELECT", "orders"},
    {"select * from public.orders o where o.id = ?", "SELECT", "public.orders"},
    {"SELECT * FROM \"My Table\"", "SELECT", "\"My Table\""},
    {"SELECT ?", "SELECT", NULL},
    {"SELECT * FROM a JOIN b ON a.id = b.id", "SELECT", NULL},
    {"SELECT * FROM a, b", "SELECT", NULL},
    {"SELECT * FROM (SELECT ? ) s", "SELECT", NULL},
    {"SELECT (SELECT max(x) FROM inner_t) FROM outer_t", "SELECT", "outer_t"},
    {"INSERT INTO t (a) VALUES ($1)", "INSERT", "t"},
    {"insert into s.t values (?)", "INSERT", "s.t"},
    {"UPDATE ONLY accounts SET v = v + ? WHERE id = ?", "UPDATE", "accounts"},
    {"DELETE FROM t WHERE a = ?", "DELETE", "t"},
    {"COPY t (a, b) FROM STDIN", "COPY", "t"},
    {"COPY (SELECT ?) TO STDOUT", "COPY", NULL},
    {"MERGE INTO tgt USING src ON tgt.id = src.id", "MERGE", "tgt"},
    {"TRUNCATE TABLE t", "TRUNCATE", "t"},
    {"TRUNCATE a, b", "TRUNCATE", NULL},
    {"CREATE TABLE IF NOT EXISTS t (id int)", "CREATE TABLE", "t"},
    {"create temp table tt (id int)", "CREATE TABLE", "tt"},
    {"DROP TABLE IF EXISTS t", "DROP TABLE", "t"},
    {"CREATE INDEX i ON t (a)", "CREATE", NULL},
    {"WITH x AS (SELECT ? FROM a) SELECT * FROM x", "SELECT", "x"},
    {"WITH x AS (SELECT ?) INSERT INTO y SELECT * FROM x", "INSERT", "y"},
    {"  begin", "BEGIN", NULL},
    {"(SELECT ? FROM t)", "SELECT", "t"},
    {"", "", NULL},
    {"?", "", NULL},
    {"selec ?", "", NULL},
    {"VACUUM ANALYZE t", "VACUUM", NULL},
};

START_TEST(test_summarize_table) {
  ss__sql_summary s;
  const char *sql = sum_cases[_i].sql;
  ss__sql_summarize(sql, strlen(sql), &s);
  ck_assert_str_eq(s.op, sum_cases[_i].op);
  if (sum_cases[_i].coll == NULL) {
    ck_assert_msg(s.coll == NULL, "%s: unexpected collection %.*s", sql, (int)s.coll_len,
                  s.coll ? s.coll : "");
  } else {
    ck_assert_msg(s.coll != NULL, "%s: no collection", sql);
    ck_assert_int_eq((int)s.coll_len, (int)strlen(sum_cases[_i].coll));
    ck_assert_int_eq(memcmp(s.coll, sum_cases[_i].coll, s.coll_len), 0);
  }
}
END_TEST

START_TEST(test_message_scrub_keeps_identifiers_hides_values) {
  const char *sql = "INSERT INTO \"Acc\" (n) VALUES (?)";
  const char *msg = "invalid input syntax for type integer: \"s3cr3t\"";
  size_t n = ss__sql_message_scrub(msg, strlen(msg), sql, strlen(sql), buf, sizeof buf);
  buf[n] = '\0';
  ck_assert_str_eq(buf, "invalid input syntax for type integer: \"?\"");
  msg = "relation \"Acc\" does not exist";
  n = ss__sql_message_scrub(msg, strlen(msg), sql, strlen(sql), buf, sizeof buf);
  buf[n] = '\0';
  ck_assert_str_eq(buf, "relation \"Acc\" does not exist");
  msg = "syntax error at or near \"'s3cr3t'\"";
  n = ss__sql_message_scrub(msg, strlen(msg), sql, strlen(sql), buf, sizeof buf);
  buf[n] = '\0';
  ck_assert_str_eq(buf, "syntax error at or near \"?\"");
  msg = "can't do 'secret";
  n = ss__sql_message_scrub(msg, strlen(msg), sql, strlen(sql), buf, sizeof buf);
  buf[n] = '\0';
  ck_assert_str_eq(buf, "can't do '?");
}
END_TEST

/* ---- the exporter's pass ---- */

static char scratch_mem[4096];

static void sanitize(ss__span *s, ss__attr *a, size_t n) {
  char *scratch = scratch_mem;
  size_t left = sizeof scratch_mem;
  s->attrs = a;
  s->n_attrs = n;
  ss__sanitize_span(s, a, &scratch, &left);
}

static ss__attr str_attr(const char *k, const char *v) {
  ss__attr a = {.key = k, .type = SS_ATTR_STR, .len = (uint32_t)strlen(v)};
  a.v.s = v;
  return a;
}

static const ss__attr *get(const ss__span *s, const char *k) {
  for (size_t i = 0; i < s->n_attrs; i++)
    if (strcmp(s->attrs[i].key, k) == 0) return &s->attrs[i];
  return NULL;
}

static int attr_eq(const ss__span *s, const char *k, const char *v) {
  const ss__attr *a = get(s, k);
  return a && a->len == strlen(v) && memcmp(a->v.s, v, a->len) == 0;
}

START_TEST(test_sanitize_names_db_span_from_scrubbed_text) {
  ss__span s = {.name = ss__sql_span_name};
  ss__attr a[4] = {str_attr("db.system.name", "postgresql"),
                   str_attr("db.query.text", "SELECT v FROM orders WHERE pw = 's3cr3t'"),
                   str_attr("db.operation.name", ""), str_attr("db.collection.name", "")};
  const char *msg = "invalid input syntax for type integer: \"s3cr3t\"";
  s.status_message = msg;
  s.status_message_len = (uint32_t)strlen(msg);
  sanitize(&s, a, 4);
  ck_assert_str_eq(s.name, "SELECT orders");
  ck_assert(attr_eq(&s, "db.query.text", "SELECT v FROM orders WHERE pw = ?"));
  ck_assert(attr_eq(&s, "db.operation.name", "SELECT"));
  ck_assert(attr_eq(&s, "db.collection.name", "orders"));
  ck_assert_int_eq(s.status_message_len, (int)strlen("invalid input syntax for type integer: \"?\""));
  ck_assert_int_eq(memcmp(s.status_message, "invalid input syntax for type integer: \"?\"",
                          s.status_message_len), 0);
}
END_TEST

START_TEST(test_sanitize_drops_empty_placeholders) {
  ss__span s = {.name = ss__sql_span_name};
  ss__attr a[4] = {str_attr("db.query.text", "BEGIN"), str_attr("db.operation.name", ""),
                   str_attr("db.collection.name", ""), str_attr("db.system.name", "postgresql")};
  sanitize(&s, a, 4);
  ck_assert_str_eq(s.name, "BEGIN");
  ck_assert_uint_eq(s.n_attrs, 3);
  ck_assert_ptr_null(get(&s, "db.collection.name"));
  ck_assert(attr_eq(&s, "db.system.name", "postgresql"));
}
END_TEST

START_TEST(test_sanitize_keeps_hook_operation_and_falls_back_to_postgresql) {
  ss__span s = {.name = ss__sql_span_name};
  ss__attr a[3] = {str_attr("db.query.text", "SELECT * FROM t"),
                   str_attr("db.operation.name", "PREPARE"), str_attr("db.collection.name", "")};
  sanitize(&s, a, 3);
  ck_assert_str_eq(s.name, "PREPARE t");
  ss__span s2 = {.name = ss__sql_span_name};
  ss__attr b[2] = {str_attr("db.operation.name", ""), str_attr("db.collection.name", "")};
  sanitize(&s2, b, 2);
  ck_assert_str_eq(s2.name, "postgresql");
  ck_assert_uint_eq(s2.n_attrs, 0);
}
END_TEST

static int msg_eq(const ss__span *s, const char *want) {
  return s->status_message_len == strlen(want) &&
         memcmp(s->status_message, want, s->status_message_len) == 0;
}

/* Every span's status message goes through the same scrubber: a quoted part stays only
 * when the span shows it already; credentials in the open text are redacted. */
START_TEST(test_sanitize_scrubs_every_spans_message) {
  ss__span s = {.name = "connect postgresql"};
  ss__attr a[2] = {str_attr("db.namespace", "app"), str_attr("server.address", "db.internal")};
  s.status_message = "password authentication failed for user \"bob\"";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, a, 2);
  ck_assert_str_eq(s.name, "connect postgresql");
  ck_assert(msg_eq(&s, "password authentication failed for user \"?\""));
  /* libpq quoting the conninfo URI (unencoded %): nothing of it leaves */
  s.status_message = "invalid percent-encoded token: \"postgresql://bob:pw%zz@db/app\"";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, a, 2);
  ck_assert(msg_eq(&s, "invalid percent-encoded token: \"?\""));
  /* the host and database the span shows stay readable, a socket path under it too */
  s.status_message = "could not translate host name \"db.internal\" to address; database "
                     "\"app\"; socket \"db.internal/.s.PGSQL.5432\"";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, a, 2);
  ck_assert(msg_eq(&s, "could not translate host name \"db.internal\" to address; database "
                       "\"app\"; socket \"?\""));
  ss__attr b[1] = {str_attr("server.address", "/run/pg")};
  s.status_message = "connection to server on socket \"/run/pg/.s.PGSQL.5432\" failed";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, b, 1);
  ck_assert(msg_eq(&s, "connection to server on socket \"/run/pg/.s.PGSQL.5432\" failed"));
  /* unquoted credentials */
  s.status_message = "bad option host=h password=pw Authorization: Bearer x";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, b, 1);
  ck_assert(msg_eq(&s, "bad option host=h password=REDACTED Authorization: REDACTED"));
}
END_TEST

START_TEST(test_sanitize_db_messages_full_keeps_quotes_not_credentials) {
  ss__message_scrub_mode(1);
  ss__span s = {.name = ss__sql_span_name};
  ss__attr a[1] = {str_attr("db.query.text", "SELECT 1")};
  s.status_message = "failed for \"x\" at postgresql://u:pw@h/";
  s.status_message_len = (uint32_t)strlen(s.status_message);
  sanitize(&s, a, 1);
  ck_assert(msg_eq(&s, "failed for \"x\" at postgresql://REDACTED:REDACTED@h/"));
  /* other spans are masked whatever the mode */
  ss__span c = {.name = "connect postgresql"};
  c.status_message = "bad \"x\"";
  c.status_message_len = 7;
  sanitize(&c, a, 0);
  ck_assert(msg_eq(&c, "bad \"?\""));
  ss__message_scrub_mode(0);
  sanitize(&s, a, 1);
  ck_assert(msg_eq(&s, "failed for \"?\" at postgresql://REDACTED:REDACTED@h/"));
}
END_TEST

/* A statement seen before (the exporter remembers the last ones' scrubbed texts and
 * summaries) is sanitized exactly as the first time: the same text, name, operation and
 * collection, whatever came between (other statements in the same table slots, statements
 * whose literals differ, texts too long to keep, a hook's own operation). */
static void expect_fresh(const char *sql, const char *hook_op) {
  static char want_text[8192];
  size_t n = strlen(sql);
  size_t wn = ss__sql_scrub(sql, n, want_text, n * 2 + 16);
  want_text[wn] = '\0';
  ss__sql_summary sum;
  ss__sql_summarize(want_text, wn, &sum);
  char want_name[256];
  const char *op = hook_op ? hook_op : sum.op;
  if (op[0] && sum.coll)
    snprintf(want_name, sizeof want_name, "%s %.*s", op, (int)sum.coll_len, sum.coll);
  else
    snprintf(want_name, sizeof want_name, "%s", op[0] ? op : ss__sql_span_name);
  ss__span s = {.name = ss__sql_span_name};
  ss__attr a[4] = {str_attr("db.system.name", "postgresql"), str_attr("db.query.text", sql),
                   str_attr("db.operation.name", hook_op ? hook_op : ""),
                   str_attr("db.collection.name", "")};
  sanitize(&s, a, 4);
  ck_assert_msg(attr_eq(&s, "db.query.text", want_text) || wn == 0, "text of %s", sql);
  ck_assert_msg(strcmp(s.name, want_name) == 0, "%s: name %s, want %s", sql, s.name, want_name);
  if (sum.coll && op[0]) {
    char coll[256];
    snprintf(coll, sizeof coll, "%.*s", (int)sum.coll_len, sum.coll);
    ck_assert(attr_eq(&s, "db.collection.name", coll));
  } else {
    ck_assert_ptr_null(get(&s, "db.collection.name"));
  }
}

START_TEST(test_sanitize_repeated_statements_same_as_first_time) {
  static char long_sql[1200];
  snprintf(long_sql, sizeof long_sql, "SELECT %0900d, 'x' FROM long_one WHERE a = 1", 7);
  const char *stmts[] = {
      "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
      "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
      "SELECT abalance FROM pgbench_accounts WHERE aid = 777;",
      "select * from t where b = 'secret one'",
      "UPDATE t SET b = 'hidden' WHERE a = 2",
      "INSERT INTO orders VALUES (1, 'a'), (2, 'b')",
      "BEGIN",
      "with q as (select 1 as v) select v from q",
      "",
      long_sql,
  };
  const size_t n = sizeof stmts / sizeof stmts[0];
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < n; i++) {
      expect_fresh(stmts[i], NULL);
      expect_fresh(stmts[i], "PREPARE");
    }
    /* Enough other statements to take every slot of both tables in between. */
    for (int k = 0; k < 300; k++) {
      char other[96];
      snprintf(other, sizeof other, "SELECT c%d FROM table_%d WHERE id = %d", k, k % 37, k);
      expect_fresh(other, NULL);
    }
  }
}
END_TEST

START_TEST(test_sqlstate_condition_names) {
  ck_assert_str_eq(ss__sqlstate_name("P0001"), "raise_exception");
  ck_assert_str_eq(ss__sqlstate_name("42P01"), "undefined_table");
  ck_assert_str_eq(ss__sqlstate_name("23505"), "unique_violation");
  ck_assert_str_eq(ss__sqlstate_name("22ZZZ"), "data_exception"); /* unknown: its class */
  ck_assert_ptr_null(ss__sqlstate_name("ZZ999"));
  ck_assert_ptr_null(ss__sqlstate_name("P00"));
  ck_assert_ptr_null(ss__sqlstate_name(NULL));
}
END_TEST

static Suite *sql_suite(void) {
  Suite *s = suite_create("sql");
  TCase *tc = tcase_create("scrub");
  tcase_add_loop_test(tc, test_scrub_table, 0, (int)(sizeof scrub_cases / sizeof scrub_cases[0]));
  tcase_add_test(tc, test_scrub_never_leaks_secret_in_any_truncation);
  tcase_add_test(tc, test_scrub_respects_cap);
  suite_add_tcase(s, tc);
  tc = tcase_create("summary");
  tcase_add_loop_test(tc, test_summarize_table, 0, (int)(sizeof sum_cases / sizeof sum_cases[0]));
  tcase_add_test(tc, test_message_scrub_keeps_identifiers_hides_values);
  suite_add_tcase(s, tc);
  tc = tcase_create("sanitize");
  tcase_add_test(tc, test_sanitize_names_db_span_from_scrubbed_text);
  tcase_add_test(tc, test_sanitize_drops_empty_placeholders);
  tcase_add_test(tc, test_sanitize_keeps_hook_operation_and_falls_back_to_postgresql);
  tcase_add_test(tc, test_sanitize_scrubs_every_spans_message);
  tcase_add_test(tc, test_sanitize_db_messages_full_keeps_quotes_not_credentials);
  tcase_add_test(tc, test_sanitize_repeated_statements_same_as_first_time);
  tcase_add_test(tc, test_sqlstate_condition_names);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(sql_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
