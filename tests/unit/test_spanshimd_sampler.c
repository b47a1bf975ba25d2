/* spanshimd's tail sampler: every trace with an error (or slow) span is kept whole,
 * others by the trace-id ratio rule; held spans are bounded in bytes and in time. The
 * sampler is fed decoded requests and hands back decoded ones. */
#include <check.h>
#include <string.h>

#include "tests/unit/test_spanshimd_fixture.h"

#define NOW 1000000
#define HALF 0x8000000000000000ull  /* ratio 0.5 bound: low 8 bytes below it are kept */

static void start(double ratio, uint64_t slow_ns, size_t max_bytes) {
  ss__sampler_cfg c = {.ratio = ratio, .slow_ns = slow_ns, .wait_ms = 5000,
                       .max_bytes = max_bytes ? max_bytes : 1u << 20, .cache_traces = 1024};
  memset(&ss__samp_stats_g, 0, sizeof ss__samp_stats_g);
  ck_assert_int_eq(ss__sampler_init(&c), 0);
}

static void teardown(void) {
  ss__sampler_free();
  fx_reset();
}

START_TEST(test_sampler_ratio_1_passes_the_request_itself) {
  start(1.0, 0, 0);
  fx_span_t *s[] = {fx_span(fx_tid(1, 2), 1, "a", 1000, 0), fx_span(fx_tid(3, 4), 2, "b", 1000, 0)};
  ss__traces_req *q = fx_request("svc", s, 2);
  ck_assert_ptr_eq(ss__sampler_process(q, NOW), q);
  ck_assert_uint_eq(ss__samp_stats_g.kept_spans, 2);
  ck_assert_uint_eq(ss__samp_stats_g.kept_traces_ratio, 2);
}
END_TEST

START_TEST(test_sampler_ratio_0_holds_a_trace_and_an_error_span_releases_it_whole) {
  start(0.0, 0, 0);
  uint8_t *t = fx_tid(7, 7);
  fx_span_t *first[] = {fx_span(t, 1, "a", 1000, 0), fx_span(t, 2, "b", 1000, 0)};
  const ss__traces_req *out = ss__sampler_process(fx_request("early", first, 2), NOW);
  const fx_span_t *sp[8];
  ck_assert_ptr_nonnull(out);
  ck_assert_uint_eq(fx_spans(out, sp, 8), 0);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 2);

  fx_span_t *err = fx_span(t, 3, "c", 1000, 1);
  fx_span_t *second[] = {err};
  ss__traces_req *q = fx_request("late", second, 1);
  out = ss__sampler_process(q, NOW + 10);
  ck_assert_ptr_nonnull(out);
  ck_assert_ptr_ne(out, q);
  ck_assert_uint_eq(fx_spans(out, sp, 8), 3);
  ck_assert_str_eq(sp[0]->name, "a");  /* released first, unpacked, their own resource */
  ck_assert_str_eq(sp[1]->name, "b");
  ck_assert_str_eq(fx_service_of(out, 0), "early");
  ck_assert_ptr_eq(sp[2], err);        /* the caller's span itself, not a copy */
  ck_assert_str_eq(fx_service_of(out, 2), "late");
  ck_assert_uint_eq(ss__samp_stats_g.kept_traces_error, 1);
  ck_assert_uint_eq(ss__samp_stats_g.kept_spans, 3);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 0);
  ck_assert_uint_eq(ss__samp_stats_g.held_bytes, 0);

  fx_span_t *after[] = {fx_span(t, 4, "d", 1000, 0)};  /* the trace is "keep" from now on */
  q = fx_request("late", after, 1);
  ck_assert_ptr_eq(ss__sampler_process(q, NOW + 20), q);
}
END_TEST

START_TEST(test_sampler_error_later_in_the_same_request_keeps_the_spans_before_it) {
  start(0.0, 0, 0);
  uint8_t *t = fx_tid(9, 9), *other = fx_tid(5, 5);
  fx_span_t *s[] = {fx_span(t, 1, "a", 1000, 0), fx_span(other, 2, "x", 1000, 0),
                    fx_span(t, 3, "b", 1000, 1)};
  const ss__traces_req *out = ss__sampler_process(fx_request("svc", s, 3), NOW);
  const fx_span_t *sp[8];
  ck_assert_uint_eq(fx_spans(out, sp, 8), 2);
  ck_assert_str_eq(sp[0]->name, "a");
  ck_assert_ptr_eq(sp[1], s[2]);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 1);  /* "x" waits for its decision */
}
END_TEST

START_TEST(test_sampler_ratio_keeps_trace_ids_whose_low_bytes_are_below_the_bound) {
  start(0.5, 0, 0);
  fx_span_t *in[] = {fx_span(fx_tid(UINT64_MAX, HALF - 1), 1, "in", 1000, 0)};
  fx_span_t *out_[] = {fx_span(fx_tid(0, HALF), 2, "out", 1000, 0)};
  ss__traces_req *q = fx_request("svc", in, 1);
  ck_assert_ptr_eq(ss__sampler_process(q, NOW), q);
  q = fx_request("svc", out_, 1);
  const ss__traces_req *r = ss__sampler_process(q, NOW);
  const fx_span_t *sp[2];
  ck_assert_ptr_ne(r, q);
  ck_assert_uint_eq(fx_spans(r, sp, 2), 0);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 1);
}
END_TEST

START_TEST(test_sampler_keeps_slow_traces_when_asked) {
  start(0.0, 1000000, 0);
  uint8_t *t = fx_tid(1, 1);
  fx_span_t *s[] = {fx_span(t, 1, "fast", 999999, 0), fx_span(t, 2, "slow", 1000000, 0)};
  const ss__traces_req *out = ss__sampler_process(fx_request("svc", s, 2), NOW);
  const fx_span_t *sp[4];
  ck_assert_uint_eq(fx_spans(out, sp, 4), 2);
  ck_assert_uint_eq(ss__samp_stats_g.kept_traces_slow, 1);
}
END_TEST

START_TEST(test_sampler_window_end_drops_a_trace_and_remembers_it) {
  start(0.0, 0, 0);
  uint8_t *t = fx_tid(2, 2);
  fx_span_t *s[] = {fx_span(t, 1, "a", 1000, 0)};
  ss__sampler_process(fx_request("svc", s, 1), NOW);
  ck_assert_int_eq(ss__sampler_tick(NOW + 4999), 1);
  ck_assert_int_eq(ss__sampler_tick(NOW + 5000), -1);
  ck_assert_uint_eq(ss__samp_stats_g.dropped_traces, 1);
  ck_assert_uint_eq(ss__samp_stats_g.dropped_spans, 1);
  const fx_span_t *sp[4];
  fx_span_t *late[] = {fx_span(t, 2, "late", 1000, 0)};
  ck_assert_uint_eq(fx_spans(ss__sampler_process(fx_request("svc", late, 1), NOW + 6000), sp, 4), 0);
  ck_assert_uint_eq(ss__samp_stats_g.dropped_spans, 2);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans, 0);  /* decided: not held again */
  fx_span_t *err[] = {fx_span(t, 3, "late error", 1000, 1)};
  ck_assert_uint_eq(fx_spans(ss__sampler_process(fx_request("svc", err, 1), NOW + 7000), sp, 4), 1);
}
END_TEST

START_TEST(test_sampler_memory_bound_evicts_the_oldest_traces) {
  start(0.0, 0, 4096);
  for (uint64_t i = 1; i <= 64; i++) {
    fx_span_t *s[] = {fx_span(fx_tid(i, i), i, "held span with a name", 1000, 0)};
    ss__sampler_process(fx_request("svc", s, 1), NOW + i);
    ck_assert_uint_le(ss__samp_stats_g.held_bytes, 4096);
  }
  ck_assert_uint_gt(ss__samp_stats_g.evicted_spans, 0);
  ck_assert_uint_eq(ss__samp_stats_g.held_spans + ss__samp_stats_g.dropped_spans, 64);
  /* the first trace went first: an error for it now keeps only itself */
  const fx_span_t *sp[4];
  fx_span_t *err[] = {fx_span(fx_tid(1, 1), 99, "error", 1000, 1)};
  ck_assert_uint_eq(fx_spans(ss__sampler_process(fx_request("svc", err, 1), NOW + 100), sp, 4), 1);
  /* the newest is still held whole */
  fx_span_t *err64[] = {fx_span(fx_tid(64, 64), 100, "error", 1000, 1)};
  ck_assert_uint_eq(fx_spans(ss__sampler_process(fx_request("svc", err64, 1), NOW + 100), sp, 4), 2);
}
END_TEST

START_TEST(test_sampler_keeps_spans_without_a_16_byte_trace_id) {
  start(0.0, 0, 0);
  fx_span_t *s[] = {fx_span(NULL, 1, "no trace id", 1000, 0)};
  ss__traces_req *q = fx_request("svc", s, 1);
  ck_assert_ptr_eq(ss__sampler_process(q, NOW), q);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_sampler");
  TCase *tc = tcase_create("sampler");
  tcase_add_checked_fixture(tc, NULL, teardown);
  tcase_add_test(tc, test_sampler_ratio_1_passes_the_request_itself);
  tcase_add_test(tc, test_sampler_ratio_0_holds_a_trace_and_an_error_span_releases_it_whole);
  tcase_add_test(tc, test_sampler_error_later_in_the_same_request_keeps_the_spans_before_it);
  tcase_add_test(tc, test_sampler_ratio_keeps_trace_ids_whose_low_bytes_are_below_the_bound);
  tcase_add_test(tc, test_sampler_keeps_slow_traces_when_asked);
  tcase_add_test(tc, test_sampler_window_end_drops_a_trace_and_remembers_it);
  tcase_add_test(tc, test_sampler_memory_bound_evicts_the_oldest_traces);
  tcase_add_test(tc, test_sampler_keeps_spans_without_a_16_byte_trace_id);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
