/* spanshimd's pipeline: a protobuf request in, and what reaches the sinks: decoded once,
 * enriched (SQL summaries), sampled, with bytes for the sinks that want them packed at
 * most once. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/test_spanshimd_fixture.h"

#define NOW 1000000

/* What a sink saw of the last request it got. */
typedef struct seen {
  int calls;
  size_t spans;
  uint64_t n;
  const uint8_t *body;
  size_t len;
  const ss__traces_req *q;
  char names[8][64];
  char summary[64];
  int fail;
} seen;

static seen a, b;

static int record(void *ctx, const ss__traces_req *q, const uint8_t *body, size_t len,
                  uint64_t n) {
  seen *s = ctx;
  const fx_span_t *sp[8];
  s->calls++;
  s->q = q;
  s->n = n;
  s->body = body;
  s->len = len;
  s->spans = fx_spans(q, sp, 8);
  for (size_t i = 0; i < s->spans && i < 8; i++) {
    snprintf(s->names[i], sizeof s->names[i], "%s", sp[i]->name);
    const char *sum = fx_str(sp[i], "db.query.summary");
    if (sum) snprintf(s->summary, sizeof s->summary, "%s", sum);
  }
  return s->fail ? -5 : 0;
}

static int record_logs(void *ctx, const ss__logs_req *q, const uint8_t *body, size_t len,
                       uint64_t n) {
  seen *s = ctx;
  (void)q;
  s->calls++;
  s->n = n;
  s->body = body;
  s->len = len;
  return s->fail ? -5 : 0;
}

static void setup(void) {
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  memset(&ss__stats_g, 0, sizeof ss__stats_g);
  ss__pipeline_clear_sinks();
  ss__sink sa = {record, record_logs, 0, &a, NULL, NULL, 0};   /* like the file: decoded only */
  ss__sink sb = {record, record_logs, 1, &b, NULL, NULL, 0};   /* like the upstream: wants bytes */
  ck_assert_int_eq(ss__pipeline_add_sink(&sa), 0);
  ck_assert_int_eq(ss__pipeline_add_sink(&sb), 0);
}

static void teardown(void) {
  ss__pipeline_free();
  if (ss__sampler_enabled()) ss__sampler_free();
  fx_reset();
}

static uint8_t *plain_request(size_t *len) {
  fx_span_t *s[] = {fx_span(fx_tid(1, 1), 1, "connect", 1000, 0),
                    fx_span(fx_tid(1, 1), 2, "getaddrinfo", 1000, 0)};
  return fx_pack(fx_request("svc", s, 2), len);
}

static uint8_t *sql_request(const uint8_t *tid, int error, size_t *len) {
  fx_span_t *s = fx_span(tid, 7, "postgresql", 1000, error);
  fx_attr(s, "db.system.name", "postgresql");
  fx_attr(s, "db.query.text", "SELECT * FROM orders WHERE id = ?");
  fx_span_t *all[] = {s};
  return fx_pack(fx_request("svc", all, 1), len);
}

START_TEST(test_pipeline_unchanged_request_is_decoded_once_and_forwarded_as_received) {
  size_t len;
  uint8_t *body = plain_request(&len);
  uint64_t decodes = ss__decode_count;
  ck_assert_int_eq(ss__pipeline_traces(body, len, NOW), 200);
  ck_assert_uint_eq(ss__decode_count - decodes, 1);
  ck_assert_int_eq(a.calls, 1);
  ck_assert_int_eq(b.calls, 1);
  ck_assert_uint_eq(a.spans, 2);
  ck_assert_str_eq(a.names[0], "connect");
  ck_assert_ptr_null(a.body);          /* it did not ask for bytes */
  ck_assert_ptr_eq(b.body, body);      /* the very bytes received: nothing re-packed */
  ck_assert_uint_eq(b.len, len);
  ck_assert_uint_eq(b.n, 2);
  ck_assert_ptr_eq(a.q, b.q);          /* both sinks see the one decoded request */
  ck_assert_uint_eq(ss__stats_g.spans_received, 2);
  ck_assert_uint_eq(ss__stats_g.traces_requests, 1);
}
END_TEST

START_TEST(test_pipeline_enriched_request_reaches_every_sink_enriched) {
  size_t len;
  uint8_t *body = sql_request(fx_tid(2, 2), 0, &len);
  uint64_t decodes = ss__decode_count;
  ck_assert_int_eq(ss__pipeline_traces(body, len, NOW), 200);
  ck_assert_uint_eq(ss__decode_count - decodes, 1);
  ck_assert_str_eq(a.names[0], "SELECT orders");
  ck_assert_str_eq(a.summary, "SELECT orders");
  ck_assert_ptr_ne(b.body, body);      /* changed: packed once, for the bytes sink */
  ss__traces_req *again = (ss__traces_req *)protobuf_c_message_unpack(
      &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      NULL, b.len, b.body);
  ck_assert_ptr_nonnull(again);
  const fx_span_t *sp[2];
  ck_assert_uint_eq(fx_spans(again, sp, 2), 1);
  ck_assert_str_eq(sp[0]->name, "SELECT orders");
  ck_assert_str_eq(fx_str(sp[0], "db.collection.name"), "orders");
  protobuf_c_message_free_unpacked(&again->base, NULL);
  ck_assert_uint_eq(ss__stats_g.sql_spans, 1);
}
END_TEST

START_TEST(test_pipeline_sampling_holds_then_sends_the_trace_enriched_without_decoding_again) {
  ss__sampler_cfg c = {.ratio = 0, .wait_ms = 5000, .max_bytes = 1u << 20, .cache_traces = 1024};
  ck_assert_int_eq(ss__sampler_init(&c), 0);
  uint8_t *tid = fx_tid(3, 3);
  size_t len1, len2;
  uint8_t *first = sql_request(tid, 0, &len1);
  fx_span_t *e[] = {fx_span(tid, 8, "connect", 1000, 1)};
  uint8_t *second = fx_pack(fx_request("svc", e, 1), &len2);
  uint64_t decodes = ss__decode_count;

  ck_assert_int_eq(ss__pipeline_traces(first, len1, NOW), 200);
  ck_assert_int_eq(a.calls + b.calls, 0);  /* held: nothing reaches the sinks yet */
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 1);

  ck_assert_int_eq(ss__pipeline_traces(second, len2, NOW + 1), 200);
  ck_assert_uint_eq(ss__decode_count - decodes, 2);  /* once per request, no more */
  ck_assert_int_eq(a.calls, 1);
  ck_assert_uint_eq(a.spans, 2);
  ck_assert_str_eq(a.names[0], "SELECT orders");     /* enriched before it was held */
  ck_assert_str_eq(a.names[1], "connect");
  ck_assert_uint_eq(b.n, 2);
  ss__traces_req *again = (ss__traces_req *)protobuf_c_message_unpack(
      &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      NULL, b.len, b.body);
  const fx_span_t *sp[4];
  ck_assert_uint_eq(fx_spans(again, sp, 4), 2);
  ck_assert_str_eq(sp[0]->name, "SELECT orders");
  protobuf_c_message_free_unpacked(&again->base, NULL);
}
END_TEST

START_TEST(test_pipeline_bad_bodies_get_400_and_reach_no_sink) {
  static const uint8_t junk[] = {0x0a, 0xff, 0xff, 0xff};
  ck_assert_int_eq(ss__pipeline_traces(junk, sizeof junk, NOW), 400);
  ck_assert_int_eq(ss__pipeline_logs(junk, sizeof junk), 400);
  ck_assert_int_eq(a.calls + b.calls, 0);
}
END_TEST

START_TEST(test_pipeline_failing_sink_gets_503_and_later_sinks_do_not_see_it) {
  size_t len;
  uint8_t *body = plain_request(&len);
  a.fail = 1;
  ck_assert_int_eq(ss__pipeline_traces(body, len, NOW), 503);
  ck_assert_int_eq(a.calls, 1);
  ck_assert_int_eq(b.calls, 0);
}
END_TEST

START_TEST(test_pipeline_logs_pass_as_received) {
  static const uint8_t empty[] = {0};  /* an empty ExportLogsServiceRequest */
  ck_assert_int_eq(ss__pipeline_logs(empty, 0), 200);
  ck_assert_int_eq(b.calls, 1);
  ck_assert_ptr_eq(b.body, empty);
  ck_assert_uint_eq(b.n, 0);
  ck_assert_uint_eq(ss__stats_g.logs_requests, 1);
}
END_TEST

/* ---- big requests in slices ---- */

typedef struct pieces {
  int n, over;                      /* pieces; pieces over max holding more than one span */
  size_t max;
  char seq[4096];                   /* "service/scope/span " for every span, in order */
} pieces;

static int collect(const uint8_t *p, size_t n, void *arg) {
  pieces *pc = arg;
  ss__traces_req *q = (ss__traces_req *)protobuf_c_message_unpack(
      &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      NULL, n, p);
  ck_assert_ptr_nonnull(q);
  const fx_span_t *sp[64];
  size_t k = fx_spans(q, sp, 64);
  if (n > pc->max && k > 1) pc->over++;
  for (size_t i = 0; i < k; i++) {
    size_t idx = 0;
    const char *scope = "?";
    for (size_t r = 0; r < q->n_resource_spans; r++)
      for (size_t j = 0; j < q->resource_spans[r]->n_scope_spans; j++)
        for (size_t m = 0; m < q->resource_spans[r]->scope_spans[j]->n_spans; m++, idx++)
          if (idx == i && q->resource_spans[r]->scope_spans[j]->scope)
            scope = q->resource_spans[r]->scope_spans[j]->scope->name;
    size_t l = strlen(pc->seq);
    snprintf(pc->seq + l, sizeof pc->seq - l, "%s/%s/%s ", fx_service_of(q, i), scope,
             sp[i]->name);
  }
  pc->n++;
  protobuf_c_message_free_unpacked(&q->base, NULL);
  return 0;
}

/* A scope named `name` with n spans "<name>.<i>", each with a 40-byte attribute. */
static fx_ss_t *scope_of(const char *name, int n) {
  fx_ss_t *ss = fx_alloc(sizeof *ss);
  opentelemetry__proto__trace__v1__scope_spans__init(ss);
  ss->scope = fx_alloc(sizeof *ss->scope);
  opentelemetry__proto__common__v1__instrumentation_scope__init(ss->scope);
  ss->scope->name = (char *)name;
  ss->spans = fx_alloc((size_t)n * sizeof *ss->spans);
  for (int i = 0; i < n; i++) {
    char *nm = fx_alloc(32);
    snprintf(nm, 32, "%s.%d", name, i);
    ss->spans[i] = fx_span(fx_tid(1, 1), (uint64_t)i + 1, nm, 1000, 0);
    fx_attr(ss->spans[i], "k", "0123456789012345678901234567890123456789");
  }
  ss->n_spans = (size_t)n;
  return ss;
}

START_TEST(test_slices_hold_every_span_once_in_order_under_their_resource_and_scope) {
  /* Three resources: a small one, one bigger than a slice with a scope bigger than a
   * slice between two small ones, a small one. */
  const char *svc[] = {"r0", "r1", "r2"};
  int scopes[] = {1, 3, 1};
  const char *names[3][3] = {{"a"}, {"b", "c", "d"}, {"e"}};
  int counts[3][3] = {{2}, {2, 30, 2}, {1}};
  ss__traces_req *q = fx_request("x", NULL, 0);
  fx_rs_t **rs = fx_alloc(3 * sizeof *rs);
  char want[4096] = "";
  for (int r = 0; r < 3; r++) {
    rs[r] = fx_request(svc[r], NULL, 0)->resource_spans[0];
    rs[r]->scope_spans = fx_alloc(3 * sizeof *rs[r]->scope_spans);
    rs[r]->n_scope_spans = (size_t)scopes[r];
    for (int j = 0; j < scopes[r]; j++) {
      rs[r]->scope_spans[j] = scope_of(names[r][j], counts[r][j]);
      for (int i = 0; i < counts[r][j]; i++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "%s/%s/%s.%d ", svc[r], names[r][j], names[r][j], i);
      }
    }
  }
  q->resource_spans = rs;
  q->n_resource_spans = 3;
  size_t len;
  uint8_t *body = fx_pack(q, &len);
  pieces pc = {0, 0, 600, ""};
  ck_assert_int_eq(ss__slice_request(body, len, pc.max, collect, &pc), 0);
  ck_assert_str_eq(pc.seq, want);
  ck_assert_int_eq(pc.over, 0);
  ck_assert_int_gt(pc.n, 5);
  /* Through the pipeline (over the slicing threshold): every span reaches the sinks. */
  size_t big = 0;
  uint8_t *many = fx_alloc(len * 2200 + 16);
  for (; big + len <= len * 2200 && big < (1u << 20) + len; big += len)  /* > 1 MiB */
    memcpy(many + big, body, len);  /* concatenated requests: their resources add up */
  ck_assert_int_eq(ss__pipeline_traces(many, big, NOW), 200);
  ck_assert_uint_eq(ss__stats_g.traces_requests, 1);
  ck_assert_uint_eq(ss__stats_g.spans_received, (big / len) * 37);
  /* One bad byte at the end: 400, and nothing of the request reached a sink. */
  int calls = a.calls + b.calls;
  static const uint8_t cut[] = {0x0a, 0x05, 0x12, 0x03, 0x12, 0x09, 0x00};
  memcpy(many + big, cut, sizeof cut);
  ck_assert_int_eq(ss__pipeline_traces(many, big + sizeof cut, NOW), 400);
  ck_assert_int_eq(a.calls + b.calls, calls);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_pipeline");
  TCase *tc = tcase_create("pipeline");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 30);
  tcase_add_test(tc, test_pipeline_unchanged_request_is_decoded_once_and_forwarded_as_received);
  tcase_add_test(tc, test_pipeline_enriched_request_reaches_every_sink_enriched);
  tcase_add_test(tc, test_pipeline_sampling_holds_then_sends_the_trace_enriched_without_decoding_again);
  tcase_add_test(tc, test_pipeline_bad_bodies_get_400_and_reach_no_sink);
  tcase_add_test(tc, test_pipeline_failing_sink_gets_503_and_later_sinks_do_not_see_it);
  tcase_add_test(tc, test_pipeline_logs_pass_as_received);
  tcase_add_test(tc, test_slices_hold_every_span_once_in_order_under_their_resource_and_scope);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ss__sqlsum_free();
  ss__decode_release();
  return failed ? 1 : 0;
}
