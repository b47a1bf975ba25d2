/* test_waterfall.c - the trace model read from OTLP JSON lines, and the waterfall drawn
 * from it: tree order, indentation, durations, errors, orphans, grouping, caps, and the
 * exact text without colour. */
#include <check.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/trace_model.h"
#include "tools/common/waterfall.h"

#define T0 1700000000000000000ull
#define TR1 "4bf92f3577b34da6a3ce929d0e0e4736"
#define TR2 "5bf92f3577b34da6a3ce929d0e0e4736"
#define TR3 "6bf92f3577b34da6a3ce929d0e0e4736"

static char err[256];

/* ---- building OTLP JSON lines ---- */

static char *fmt(const char *f, ...) {
  char *s;
  va_list ap;
  va_start(ap, f);
  ck_assert_int_ge(vasprintf(&s, f, ap), 0);
  va_end(ap);
  return s;
}

/* One span; times in microseconds after T0 (end_us < 0: no end time). Frees attrs. */
static char *span(const char *trace, const char *id, const char *parent, const char *name,
                  int kind, long start_us, long end_us, char *attrs, const char *status) {
  char *end = end_us < 0 ? fmt("%s", "")
                         : fmt(",\"endTimeUnixNano\":\"%llu\"", T0 + (unsigned long long)end_us * 1000);
  char *s = fmt("{\"traceId\":\"%s\",\"spanId\":\"%s\",\"parentSpanId\":\"%s\",\"name\":\"%s\","
                "\"kind\":%d,\"startTimeUnixNano\":\"%llu\"%s,\"attributes\":[%s]%s%s}",
                trace, id, parent ? parent : "", name, kind,
                T0 + (unsigned long long)start_us * 1000, end, attrs ? attrs : "",
                status ? ",\"status\":" : "", status ? status : "");
  free(end);
  free(attrs);
  return s;
}

static char *str_attr(const char *k, const char *v) {
  return fmt("{\"key\":\"%s\",\"value\":{\"stringValue\":\"%s\"}}", k, v);
}

static char *int_attr(const char *k, long v) {
  return fmt("{\"key\":\"%s\",\"value\":{\"intValue\":\"%ld\"}}", k, v);
}

/* A TracesData line for one process with the given spans (NULL-terminated); frees them. */
static char *line(const char *service, int pid, ...) {
  va_list ap;
  char *spans = fmt("%s", ""), *sp;
  va_start(ap, pid);
  while ((sp = va_arg(ap, char *))) {
    char *n = fmt("%s%s%s", spans, spans[0] ? "," : "", sp);
    free(spans);
    free(sp);
    spans = n;
  }
  va_end(ap);
  char *s = fmt("{\"resourceSpans\":[{\"resource\":{\"attributes\":["
                "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"%s\"}},"
                "{\"key\":\"process.pid\",\"value\":{\"intValue\":\"%d\"}}]},"
                "\"scopeSpans\":[{\"scope\":{\"name\":\"spanshim\"},\"spans\":[%s]}]}]}",
                service, pid, spans);
  free(spans);
  return s;
}

static char *attrs2(char *a, char *b) {
  char *s = fmt("%s,%s", a, b);
  free(a);
  free(b);
  return s;
}

static void add(ss__tm *m, char *l) {
  static size_t lineno;
  int rc = ss__tm_add_line(m, l, strlen(l), ++lineno, err, sizeof(err));
  ck_assert_msg(rc == 0, "line refused (%d): %s\n%s", rc, err, l);
  free(l);
}

static char *render(const ss__tm *m, const ss__wf_opts *o) {
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  ck_assert_int_eq(ss__waterfall(f, m, o), 0);
  fclose(f);
  if (getenv("WF_DEBUG")) fputs(out, stderr);  /* to see what a failing test drew */
  return out;
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
  return n;
}

static const ss__wf_opts plain = {.color = 0, .bar_width = 10, .label_width = 48};

/* A process span with DNS, HTTP and two connects under the HTTP span, given out of order
 * to prove children are sorted by start. */
static void curl_trace(ss__tm *m) {
  char *conn_attrs = attrs2(attrs2(str_attr("network.peer.address", "::1"),
                                   int_attr("network.peer.port", 8080)),
                            attrs2(str_attr("server.address", "localhost"),
                                   str_attr("error.type", "ECONNREFUSED")));
  char *conn2_attrs = attrs2(attrs2(str_attr("network.peer.address", "127.0.0.1"),
                                    int_attr("network.peer.port", 8080)),
                             str_attr("server.address", "localhost"));
  char *http = attrs2(attrs2(str_attr("http.request.method", "GET"),
                             str_attr("url.full", "http://localhost:8080/")),
                      int_attr("http.response.status_code", 200));
  add(m, line("curl", 4242,
              span(TR1, "3333333333333333", "2222222222222222", "connect", 3, 1100, 1195,
                   conn_attrs, "{\"code\":2,\"message\":\"Connection refused\"}"),
              span(TR1, "2222222222222222", "1111111111111111", "GET", 3, 1000, 12000, http,
                   NULL),
              span(TR1, "4444444444444444", "2222222222222222", "connect", 3, 1300, 1400,
                   conn2_attrs, NULL),
              span(TR1, "5555555555555555", "1111111111111111", "getaddrinfo", 1, 300, 510,
                   str_attr("dns.question.name", "localhost"), NULL),
              span(TR1, "1111111111111111", NULL, "curl", 1, 0, 12400,
                   str_attr("process.command_args", "curl -s http://localhost:8080/"), NULL),
              NULL));
}

START_TEST(test_tree_order_indentation_exact_text) {
  ss__tm m;
  ss__tm_init(&m);
  curl_trace(&m);
  char *out = render(&m, &plain);
  const char *want =
      "trace 4bf92f35 · curl (pid 4242) · 12.4 ms · 5 spans · 1 error\n"
      "  curl curl -s http://localhost:8080/       │██████████│  12.4 ms\n"
      "  ├─ getaddrinfo localhost                  │▍         │   210 µs\n"
      "  └─ GET http://localhost:8080/ → 200       │ ████████▋│  11.0 ms\n"
      "     ├─ connect [::1]:8080 (localhost)      │ ▏        │  95.0 µs  "
      "✗ ECONNREFUSED: Connection refused\n"
      "     └─ connect 127.0.0.1:8080 (localhost)  │ ▏        │   100 µs\n"
      "\n"
      "5 spans in 1 trace\n";
  ck_assert_str_eq(out, want);
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_durations_formatting) {
  static const struct {
    uint64_t ns;
    const char *want;
  } cases[] = {
      {0, "0 ns"},          {999, "999 ns"},          {1000, "1.00 µs"},
      {1234, "1.23 µs"},    {12345, "12.3 µs"},       {123456, "123 µs"},
      {999499, "999 µs"},   {999500, "1.00 ms"},      {12400000, "12.4 ms"},
      {250000000, "250 ms"}, {1500000000, "1.50 s"},  {59940000000ull, "59.9 s"},
      {59950000000ull, "1m00s"}, {125000000000ull, "2m05s"}, {3725000000000ull, "1h02m"},
  };
  char buf[32];
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    ss__wf_duration(cases[i].ns, buf, sizeof(buf));
    ck_assert_msg(strcmp(buf, cases[i].want) == 0, "%llu ns: got '%s', want '%s'",
                  (unsigned long long)cases[i].ns, buf, cases[i].want);
  }
  ss__wf_duration(12345, buf, 4);
  ck_assert_uint_eq(strlen(buf), 3);
}
END_TEST

START_TEST(test_errors_marked_and_counted) {
  ss__tm m;
  ss__tm_init(&m);
  add(&m, line("svc", 1,
               span(TR1, "1111111111111111", NULL, "root", 1, 0, 100, NULL, NULL),
               span(TR1, "2222222222222222", "1111111111111111", "query", 3, 10, 20, NULL,
                    "{\"code\":2,\"message\":\"boom\"}"),
               span(TR1, "3333333333333333", "1111111111111111", "dns", 1, 30, 40,
                    str_attr("error.type", "EAI_NONAME"), NULL),
               NULL));
  char *out = render(&m, &plain);
  ck_assert_ptr_nonnull(strstr(out, "· 3 spans · 2 errors\n"));
  ck_assert_ptr_nonnull(strstr(out, "├─ query"));
  ck_assert_ptr_nonnull(strstr(out, "✗ error: boom\n"));
  ck_assert_ptr_nonnull(strstr(out, "✗ EAI_NONAME\n"));
  free(out);
  ss__wf_opts col = plain;
  col.color = 1;
  out = render(&m, &col);
  ck_assert_ptr_nonnull(strstr(out, "\033[31m✗ error: boom\033[0m"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_orphans_attach_at_top_marked) {
  ss__tm m;
  ss__tm_init(&m);
  add(&m, line("child", 9,
               span(TR1, "2222222222222222", "ffffffffffffffff", "connect", 3, 10, 20, NULL,
                    NULL),
               span(TR1, "3333333333333333", "2222222222222222", "inner", 1, 12, 15, NULL,
                    NULL),
               span(TR1, "1111111111111111", NULL, "main", 1, 0, 30, NULL, NULL), NULL));
  char *out = render(&m, &plain);
  const char *want =
      "trace 4bf92f35 · child (pid 9) · 30.0 µs · 3 spans\n"
      "  main        │██████████│  30.0 µs\n"
      "  ↳ connect   │   ███▋   │  10.0 µs\n"
      "  └─ inner    │    █     │  3.00 µs\n"
      "\n"
      "3 spans in 1 trace\n";
  ck_assert_str_eq(out, want);
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_parent_cycle_shows_each_span_once) {
  ss__tm m;
  ss__tm_init(&m);
  add(&m, line("x", 1,
               span(TR1, "1111111111111111", "2222222222222222", "a", 1, 0, 10, NULL, NULL),
               span(TR1, "2222222222222222", "1111111111111111", "b", 1, 5, 10, NULL, NULL),
               span(TR1, "3333333333333333", "3333333333333333", "self", 1, 6, 7, NULL, NULL),
               NULL));
  char *out = render(&m, &plain);
  ck_assert_ptr_nonnull(strstr(out, "  ↳ self "));  /* names itself: top level, marked */
  ck_assert_ptr_nonnull(strstr(out, "  ↳ a "));
  ck_assert_ptr_nonnull(strstr(out, "  └─ b "));
  ck_assert_int_eq(count(out, " a "), 1);
  ck_assert_int_eq(count(out, " b "), 1);
  ck_assert_int_eq(count(out, " self "), 1);
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_one_span_traces_of_a_process_are_grouped) {
  ss__tm m;
  ss__tm_init(&m);
  char *a1 = attrs2(str_attr("network.peer.address", "10.0.0.1"), int_attr("network.peer.port", 5432));
  char *a2 = attrs2(str_attr("network.peer.address", "10.0.0.2"), int_attr("network.peer.port", 80));
  add(&m, line("curl", 7, span(TR2, "1111111111111111", NULL, "connect", 3, 0, 100, a1, NULL),
               NULL));
  add(&m, line("curl", 7,
               span(TR3, "2222222222222222", NULL, "connect", 3, 900, 1000, a2,
                    "{\"code\":2,\"message\":\"Network is unreachable\"}"),
               NULL));
  add(&m, line("other", 8, span(TR1, "3333333333333333", NULL, "x", 1, 2000, 2100, NULL, NULL),
               NULL));
  char *out = render(&m, &plain);
  const char *want =
      "curl (pid 7) · 1.00 ms · 2 one-span traces · 1 error\n"
      "  5bf92f35 connect 10.0.0.1:5432  │█         │   100 µs\n"
      "  6bf92f35 connect 10.0.0.2:80    │         █│   100 µs  ✗ error: Network is unreachable\n"
      "\n"
      "trace 4bf92f35 · other (pid 8) · 100 µs · 1 span\n"
      "  x                               │██████████│   100 µs\n"
      "\n"
      "3 spans in 3 traces\n";
  ck_assert_str_eq(out, want);
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_trace_and_row_caps) {
  ss__tm m;
  ss__tm_init(&m);
  const char *traces[] = {TR1, TR2, TR3};
  for (int i = 0; i < 3; i++)
    add(&m, line("p", 100 + i,  /* distinct processes: not grouped */
                 span(traces[i], "1111111111111111", NULL, "root", 1, i * 100, i * 100 + 50,
                      NULL, NULL),
                 span(traces[i], "2222222222222222", "1111111111111111", "c1", 1, i * 100 + 1,
                      i * 100 + 2, NULL, NULL),
                 span(traces[i], "3333333333333333", "1111111111111111", "c2", 1, i * 100 + 3,
                      i * 100 + 4, NULL, NULL),
                 NULL));
  ss__wf_opts o = plain;
  o.max_traces = 2;
  o.max_rows = 2;
  char *out = render(&m, &o);
  ck_assert_ptr_nonnull(strstr(out, "… 1 more span in this trace\n"));
  ck_assert_ptr_nonnull(strstr(out, "\n… 1 more trace not shown\n"));
  ck_assert_ptr_null(strstr(out, "6bf92f35"));
  ck_assert_ptr_nonnull(strstr(out, "9 spans in 3 traces\n"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_unfinished_span_and_kind_details) {
  ss__tm m;
  ss__tm_init(&m);
  char *db = attrs2(attrs2(str_attr("db.system.name", "postgresql"),
                           str_attr("db.query.text", "SELECT *\\n  FROM t\\n WHERE id = $1")),
                    int_attr("db.response.returned_rows", 3));
  char *proc = attrs2(fmt("{\"key\":\"process.command_args\",\"value\":{\"arrayValue\":{\"values\":"
                          "[{\"stringValue\":\"sh\"},{\"stringValue\":\"-c\"},"
                          "{\"stringValue\":\"exit 3\"}]}}}"),
                      int_attr("process.exit.code", 3));
  add(&m, line("psql", 5,
               span(TR1, "1111111111111111", NULL, "sh", 1, 0, 1000, proc, NULL),
               span(TR1, "2222222222222222", "1111111111111111", "SELECT t", 3, 10, -1, db,
                    NULL),
               NULL));
  ss__wf_opts o = plain;
  o.label_width = 80;
  char *out = render(&m, &o);
  ck_assert_ptr_nonnull(strstr(out, "  sh sh -c 'exit 3' → exit 3 "));
  ck_assert_ptr_nonnull(strstr(out, "└─ SELECT t SELECT * FROM t WHERE id = $1 → 3 rows "));
  ck_assert_ptr_nonnull(strstr(out, "│▏         │        ?\n"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_hostile_values_cannot_reach_the_terminal) {
  ss__tm m;
  ss__tm_init(&m);
  add(&m, line("evil\\u001b]0;pwned\\u0007", 1,
               span(TR1, "1111111111111111", NULL, "a\\u001b[2Jb", 1, 0, 10,
                    str_attr("dns.question.name", "x\\r\\ny\\u009b"), NULL),
               NULL));
  char *out = render(&m, &plain);
  ck_assert_ptr_null(strchr(out, '\033'));
  ck_assert_ptr_null(strchr(out, '\r'));
  ck_assert_ptr_null(strchr(out, '\007'));
  ck_assert_ptr_null(strstr(out, "\xc2\x9b"));
  ck_assert_ptr_nonnull(strstr(out, "a [2Jb x  y   │"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_label_truncated_with_ellipsis) {
  ss__tm m;
  ss__tm_init(&m);
  add(&m, line("s", 1,
               span(TR1, "1111111111111111", NULL, "getaddrinfo", 1, 0, 10,
                    str_attr("dns.question.name",
                             "a-very-long-host-name-that-goes-on.and-on.example.com"),
                    NULL),
               NULL));
  ss__wf_opts o = plain;
  o.label_width = 20;
  char *out = render(&m, &o);
  ck_assert_ptr_nonnull(strstr(out, "  getaddrinfo a-very-…  │██████████│"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_model_lines) {
  ss__tm m;
  ss__tm_init(&m);
  const char *bad[] = {"not json", "[1,2]", "{\"foo\":1}", "{\"resourceSpans\":{}}",
                       "{\"resourceSpans\":[] x"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    ck_assert_int_eq(ss__tm_add_line(&m, bad[i], strlen(bad[i]), i + 1, err, sizeof(err)),
                     -EINVAL);
    ck_assert_msg(err[0], "no message for %s", bad[i]);
  }
  ck_assert_ptr_nonnull(strstr(err, "at byte 20"));
  const char *logs = "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{},{}]}]}]}";
  ck_assert_int_eq(ss__tm_add_line(&m, logs, strlen(logs), 9, err, sizeof(err)), 1);
  ck_assert_int_eq(ss__tm_add_line(&m, "  \n", 3, 10, err, sizeof(err)), 1);
  ck_assert_uint_eq(m.n_log_records, 2);
  /* proto3 JSON spellings, numbers instead of strings, an invalid id, upper-case hex. */
  const char *p3 =
      "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":["
      "{\"traceId\":\"4BF92F3577B34DA6A3CE929D0E0E4736\",\"spanId\":\"00F067AA0BA902B7\","
      "\"name\":\"n\",\"kind\":\"SPAN_KIND_SERVER\",\"startTimeUnixNano\":5,"
      "\"endTimeUnixNano\":\"9\",\"status\":{\"code\":\"STATUS_CODE_ERROR\"}},"
      "{\"traceId\":\"00000000000000000000000000000000\",\"spanId\":\"00f067aa0ba902b7\"},"
      "{\"traceId\":\"xyz\",\"spanId\":\"00f067aa0ba902b7\"}]}]}]}";
  ck_assert_int_eq(ss__tm_add_line(&m, p3, strlen(p3), 11, err, sizeof(err)), 0);
  ck_assert_uint_eq(m.n_spans, 1);
  ck_assert_uint_eq(m.n_invalid, 2);
  ck_assert_str_eq(m.spans[0].trace_id, TR1);
  ck_assert_int_eq(m.spans[0].kind, 2);
  ck_assert_int_eq(m.spans[0].status, 2);
  ck_assert(m.spans[0].start_ns == 5 && m.spans[0].end_ns == 9);
  ck_assert_uint_eq(m.spans[0].line, 11);
  char *out = render(&m, &plain);
  ck_assert_ptr_nonnull(strstr(out, "unknown service"));
  ck_assert_ptr_nonnull(strstr(out, "1 span in 1 trace; 2 without valid ids skipped; "
                                    "2 log records not shown\n"));
  free(out);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_max_spans_cap_counts_dropped) {
  ss__tm m;
  ss__tm_init(&m);
  m.max_spans = 1;
  add(&m, line("s", 1, span(TR1, "1111111111111111", NULL, "a", 1, 0, 1, NULL, NULL),
               span(TR1, "2222222222222222", NULL, "b", 1, 0, 1, NULL, NULL), NULL));
  ck_assert_uint_eq(m.n_spans, 1);
  ck_assert_uint_eq(m.n_dropped, 1);
  ss__tm_free(&m);
}
END_TEST

START_TEST(test_empty_model) {
  ss__tm m;
  ss__tm_init(&m);
  char *out = render(&m, NULL);
  ck_assert_str_eq(out, "no spans\n0 spans in 0 traces\n");
  free(out);
}
END_TEST

int main(void) {
  Suite *s = suite_create("waterfall");
  TCase *tc = tcase_create("waterfall");
  tcase_add_test(tc, test_tree_order_indentation_exact_text);
  tcase_add_test(tc, test_durations_formatting);
  tcase_add_test(tc, test_errors_marked_and_counted);
  tcase_add_test(tc, test_orphans_attach_at_top_marked);
  tcase_add_test(tc, test_parent_cycle_shows_each_span_once);
  tcase_add_test(tc, test_one_span_traces_of_a_process_are_grouped);
  tcase_add_test(tc, test_trace_and_row_caps);
  tcase_add_test(tc, test_unfinished_span_and_kind_details);
  tcase_add_test(tc, test_hostile_values_cannot_reach_the_terminal);
  tcase_add_test(tc, test_label_truncated_with_ellipsis);
  tcase_add_test(tc, test_model_lines);
  tcase_add_test(tc, test_max_spans_cap_counts_dropped);
  tcase_add_test(tc, test_empty_model);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
