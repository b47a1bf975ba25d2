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
  ss__sink sa = {record, record_logs, 0, &a, NULL};   /* like the file: decoded only */
  ss__sink sb = {record, record_logs, 1, &b, NULL};   /* like the upstream: wants bytes */
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
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  ss__sqlsum_free();
  ss__decode_release();
  return failed ? 1 : 0;
}
