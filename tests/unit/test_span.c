/* test_span.c - the app-thread span API: records as the exporter decodes them, the
 * context stack (push/pop tokens, replace, reset, overflow), parked records finished
 * later, builder accessors, losses counted by reason, and the ids of a span that is not
 * recorded (drawn when first read). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config.h"
#include "runtime/span.h"

static char *no_env(const char *name) {
  (void)name;
  return NULL;
}

static void setup(void) {
  static int done;
  if (done) return;
  ss__config c;
  ck_assert_int_eq(ss__config_load(&c, no_env), 0);
  c.stack_depth = 0; /* no libunwind in these tests */
  ck_assert_int_eq(ss__tracer_init(&c, 1 << 20, NULL), 0);
  ss__config_free(&c); /* the tracer keeps what it needs by value */
  done = 1;
}

/* Drains the ring, decoding each record; returns how many, the last one in *out. */
static int drain(ss__span *out, ss__attr *attrs, size_t max) {
  int n = 0;
  size_t len;
  void *rec;
  static unsigned char copy[1 << 16];
  while ((rec = ss__ring_peek(&ss__tracer_g.ring, &len)) != NULL) {
    ck_assert_uint_le(len, sizeof copy);
    memcpy(copy, rec, len);
    ss__ring_release(&ss__tracer_g.ring);
    ck_assert_int_eq(ss__rec_decode(copy, len, out, attrs, max), 0);
    n++;
  }
  return n;
}

static const ss__attr *find(const ss__span *s, const char *key) {
  for (size_t i = 0; i < s->n_attrs; i++)
    if (s->attrs[i].key && strcmp(s->attrs[i].key, key) == 0) return &s->attrs[i];
  return NULL;
}

START_TEST(test_ended_span_decodes_with_its_attributes_and_status) {
  setup();
  drain(&(ss__span){0}, (ss__attr[8]){{0}}, 8);
  ss__sb b;
  ck_assert_int_eq(ss__span_start(&b, "connect", SS_KIND_CLIENT), 1);
  ss__span_str(&b, "server.address", "db.example", (size_t)-1);
  ss__span_int(&b, "server.port", 5432);
  ss__span_error(&b, "ECONNREFUSED", "Connection refused");
  ss__span_end(&b);
  ss__span s;
  ss__attr attrs[8];
  ck_assert_int_eq(drain(&s, attrs, 8), 1);
  ck_assert_str_eq(s.name, "connect");
  ck_assert_int_eq(s.kind, SS_KIND_CLIENT);
  ck_assert_int_eq(s.status, SS_STATUS_ERROR);
  ck_assert_uint_ge(s.end_ns, s.start_ns);
  const ss__attr *a = find(&s, "server.address");
  ck_assert_ptr_nonnull(a);
  ck_assert_int_eq(a->len, 10);
  ck_assert_int_eq(memcmp(a->v.s, "db.example", 10), 0);
  ck_assert_int_eq(find(&s, "server.port")->v.i, 5432);
  ck_assert_int_eq(memcmp(find(&s, "error.type")->v.s, "ECONNREFUSED", 12), 0);
  ck_assert_int_eq(s.status_message_len, 18);
  ck_assert_int_eq(ss__ctx_depth(), 0);
}
END_TEST

START_TEST(test_nested_span_is_a_child_and_pops_back) {
  setup();
  ss__sb outer, inner;
  ss__span_start(&outer, "GET", SS_KIND_SERVER);
  ck_assert_int_eq(ss__ctx_depth(), 1);
  ss__span_start(&inner, "connect", SS_KIND_CLIENT);
  ss__ctx oc, ic;
  ss__span_ctx(&outer, &oc);
  ss__span_ctx(&inner, &ic);
  ck_assert_int_eq(memcmp(oc.trace_id, ic.trace_id, 16), 0);
  ck_assert_int_ne(memcmp(oc.span_id, ic.span_id, 8), 0);
  ss__span_end(&inner);
  ck_assert_int_eq(ss__ctx_depth(), 1);
  ss__span s;
  ss__attr attrs[8];
  ck_assert_int_eq(drain(&s, attrs, 8), 1);
  ck_assert_int_eq(memcmp(s.parent_id, oc.span_id, 8), 0);
  ss__span_end(&outer);
  ck_assert_int_eq(ss__ctx_depth(), 0);
  drain(&s, attrs, 8);
}
END_TEST

START_TEST(test_push_pop_tokens_stay_balanced_past_the_depth_limit) {
  setup();
  ss__ctx c = {.trace_id = {1}, .span_id = {2}, .flags = 1, .valid = 1};
  int first = ss__ctx_push(&c);
  ck_assert_int_eq(first, 0);
  for (int i = 1; i < SS_CTX_DEPTH + 10; i++) ck_assert_int_eq(ss__ctx_push(&c), i);
  ck_assert_int_eq(ss__ctx_depth(), SS_CTX_DEPTH + 10);
  ss__ctx cur;
  ck_assert_int_eq(ss__ctx_current(&cur), 1);
  ss__ctx_pop(5);
  ck_assert_int_eq(ss__ctx_depth(), 5);
  ss__ctx_pop(first);
  ck_assert_int_eq(ss__ctx_depth(), 0);
  ss__ctx_pop(first); /* already gone: nothing happens */
  ck_assert_int_eq(ss__ctx_depth(), 0);
}
END_TEST

START_TEST(test_replace_changes_only_the_top_and_reset_starts_afresh) {
  setup();
  ss__ctx a = {.trace_id = {1}, .span_id = {1}, .valid = 1};
  ss__ctx b = {.trace_id = {2}, .span_id = {2}, .valid = 1};
  int t = ss__ctx_push(&a);
  ck_assert_int_eq(ss__ctx_replace(t, &b), 1);
  ss__ctx cur;
  ss__ctx_current(&cur);
  ck_assert_int_eq(cur.trace_id[0], 2);
  ss__ctx_push(&a);
  ck_assert_int_eq(ss__ctx_replace(t, &a), 0); /* not the top any more */
  ss__ctx_reset(&b);
  ck_assert_int_eq(ss__ctx_depth(), 1);
  ss__ctx_reset(NULL);
  ck_assert_int_eq(ss__ctx_depth(), 0);
}
END_TEST

START_TEST(test_child_of_a_pushed_context_takes_its_trace) {
  setup();
  ss__ctx parent = {.trace_id = {0xaa, 1}, .span_id = {0xbb, 2}, .flags = 1, .valid = 1};
  int t = ss__ctx_push(&parent);
  ss__sb b;
  ss__span_start(&b, "GET", SS_KIND_CLIENT);
  ss__ctx_pop(t); /* the span's own push goes with it */
  ck_assert_int_eq(ss__ctx_depth(), 0);
  ss__span_end(&b);
  ss__span s;
  ss__attr attrs[8];
  ck_assert_int_eq(drain(&s, attrs, 8), 1);
  ck_assert_int_eq(memcmp(s.trace_id, parent.trace_id, 16), 0);
  ck_assert_int_eq(memcmp(s.parent_id, parent.span_id, 8), 0);
}
END_TEST

START_TEST(test_parked_span_gets_late_attributes_and_its_own_end_time) {
  setup();
  ss__sb b;
  ss__span_start(&b, "GET", SS_KIND_SERVER);
  ss__span_set_start(&b, 1000);
  ss__span_str(&b, "url.path", "/orders/42", (size_t)-1);
  ss__span_pop(&b);
  ck_assert_int_eq(ss__ctx_depth(), 0);
  uint64_t rec[128];
  ck_assert_uint_gt(ss__span_park(&b, rec, sizeof rec), 0);
  ss__ctx rc, bc;
  ss__rec_ctx(rec, &rc);
  ss__span_ctx(&b, &bc);
  ck_assert_int_eq(memcmp(&rc, &bc, sizeof rc), 0);
  ck_assert_int_eq(ss__rec_add_int(rec, sizeof rec, "http.response.status_code", 503), 0);
  ck_assert_int_eq(ss__rec_add_str(rec, sizeof rec, "error.type", "503", 3), 0);
  ss__rec_finish(rec, 5000, SS_STATUS_ERROR | SS_STATUS_NO_STACK);
  ss__span s;
  ss__attr attrs[8];
  ck_assert_int_eq(drain(&s, attrs, 8), 1);
  ck_assert_uint_eq(s.start_ns, 1000);
  ck_assert_uint_eq(s.end_ns, 5000);
  ck_assert_int_eq(s.status, SS_STATUS_ERROR);
  ck_assert_int_eq(find(&s, "http.response.status_code")->v.i, 503);
  ck_assert_ptr_nonnull(find(&s, "url.path"));
}
END_TEST

START_TEST(test_parked_record_refuses_what_does_not_fit) {
  setup();
  ss__sb b;
  ss__span_start(&b, "GET", SS_KIND_CLIENT);
  ss__span_pop(&b);
  uint64_t rec[32];
  size_t used = ss__span_park(&b, rec, sizeof rec);
  ck_assert_uint_gt(used, 0);
  char big[512];
  memset(big, 'x', sizeof big);
  ck_assert_int_eq(ss__rec_add_str(rec, sizeof rec, "url.full", big, sizeof big), -1);
  ck_assert_int_eq(ss__span_park(&b, rec, 16), 0);
}
END_TEST

START_TEST(test_finish_from_copies_a_scratch_outcome_but_the_skipped_key) {
  setup();
  ss__sb b, tmp;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ss__span_str(&b, "db.system.name", "postgresql", 10);
  ss__span_pop(&b);
  uint64_t rec[64];
  ck_assert_uint_gt(ss__span_park(&b, rec, sizeof rec), 0);
  ss__span_scratch(&tmp);
  ss__span_str(&tmp, "db.system.name", "postgresql", 10);
  ss__span_str(&tmp, "error.type", "28P01", 5);
  static char msg[600];
  memset(msg, 'm', sizeof msg - 1);
  tmp.s.status = SS_STATUS_ERROR | SS_STATUS_NO_STACK;
  ss__span_message(&tmp, msg, sizeof msg - 1); /* longer than the record has room for */
  ss__rec_finish_from(rec, sizeof rec, &tmp, "db.system.name", 7000);
  ss__span s;
  ss__attr attrs[8];
  ck_assert_int_eq(drain(&s, attrs, 8), 1);
  int systems = 0;
  for (size_t i = 0; i < s.n_attrs; i++) systems += strcmp(s.attrs[i].key, "db.system.name") == 0;
  ck_assert_int_eq(systems, 1);
  ck_assert_ptr_nonnull(find(&s, "error.type"));
  ck_assert_uint_gt(s.status_message_len, 0); /* cut to fit, not lost */
  ck_assert_uint_lt(s.status_message_len, sizeof msg - 1);
  ck_assert_uint_eq(s.end_ns, 7000);
}
END_TEST

START_TEST(test_drops_are_counted_by_reason_and_in_the_total) {
  setup();
  uint64_t before = ss__dropped_total();
  ss__dropped(SS_DROP_TABLE_FULL);
  ss__dropped(SS_DROP_QUEUE);
  ss__dropped(SS_DROP_QUEUE);
  ck_assert_uint_eq(ss__dropped_count(SS_DROP_QUEUE), 2);
  ck_assert_uint_eq(ss__dropped_count(SS_DROP_TABLE_FULL), 1);
  ck_assert_uint_eq(ss__dropped_total(), before + 3);
}
END_TEST

/* The exporter makes an exception log record from a record that carries a stack: only a
 * failed call's has one; a failed call's span lost at a full ring counts its record. */
START_TEST(test_failed_calls_carry_a_stack_and_count_their_record_when_the_ring_is_full) {
  setup();
  drain(&(ss__span){0}, (ss__attr[8]){{0}}, 8);
  size_t len;
  ss__sb b;
  ss__span_start(&b, "connect", SS_KIND_CLIENT);
  ss__span_end(&b);
  ss__span_start(&b, "connect", SS_KIND_CLIENT);
  ss__span_error(&b, "ECONNREFUSED", "Connection refused");
  ss__span_end(&b);
  ss__span_start(&b, "GET", SS_KIND_CLIENT);
  ss__span_fail(&b, "500"); /* an answer, not a failed call: no record */
  ss__span_end(&b);
  int want[3] = {0, 1, 0};
  for (int i = 0; i < 3; i++) {
    void *rec = ss__ring_peek(&ss__tracer_g.ring, &len);
    ck_assert_ptr_nonnull(rec);
    ck_assert_int_eq(ss__rec_has_stack(rec, len), want[i]);
    ss__ring_release(&ss__tracer_g.ring);
  }
  uint64_t ring0 = ss__dropped_count(SS_DROP_RING_FULL), exc0 = ss__tracer_g.exc_dropped;
  int failed = 0;
  while (ss__dropped_count(SS_DROP_RING_FULL) < ring0 + 10) {
    ss__span_start(&b, "connect", SS_KIND_CLIENT);
    if (failed++ % 2 == 0) ss__span_error(&b, "ECONNREFUSED", NULL);
    ss__span_end(&b);
  }
  /* 10 spans lost, alternately failed and not: 5 records */
  ck_assert_uint_eq(ss__tracer_g.exc_dropped - exc0, 5);
  drain(&(ss__span){0}, (ss__attr[8]){{0}}, 8);
}
END_TEST

START_TEST(test_unsampled_span_draws_its_ids_once_when_read) {
  setup();
  int saved = ss__tracer_g.sampler;
  ss__tracer_g.sampler = SS_SAMPLER_ALWAYS_OFF;
  ss__ctx_reset(NULL);
  ss__sb parent, child;
  ck_assert_int_eq(ss__span_start(&parent, "parent", SS_KIND_INTERNAL), 0);
  /* A child reads the parent's context: the parent's ids are drawn then, once. */
  ck_assert_int_eq(ss__span_start(&child, "child", SS_KIND_CLIENT), 0);
  ss__ctx pc, cc, again;
  ss__span_ctx(&child, &cc);
  ss__span_end(&child);
  ss__span_ctx(&parent, &pc);
  ck_assert_int_eq(pc.valid, 1);
  ck_assert_int_eq(ss__id_is_zero(pc.span_id, 8), 0);
  ck_assert_int_eq(memcmp(cc.trace_id, pc.trace_id, 16), 0);
  ck_assert_int_eq(memcmp(child.s.parent_id, pc.span_id, 8), 0);
  ck_assert_int_eq(pc.flags & 1, 0);
  ss__span_end(&parent);
  ss__span_ctx(&parent, &again); /* after its end: the same ids */
  ck_assert_int_eq(memcmp(again.trace_id, pc.trace_id, 16), 0);
  ck_assert_int_eq(memcmp(again.span_id, pc.span_id, 8), 0);
  /* Never read while pushed: drawn when asked after the end, valid and stable. */
  ss__sb lone;
  ss__span_start(&lone, "lone", SS_KIND_CLIENT);
  ss__span_end(&lone);
  ss__span_ctx(&lone, &pc);
  ss__span_ctx(&lone, &again);
  ck_assert_int_eq(pc.valid, 1);
  ck_assert_int_eq(ss__id_is_zero(pc.trace_id, 16), 0);
  ck_assert_int_eq(memcmp(again.span_id, pc.span_id, 8), 0);
  ck_assert_int_eq(drain(&(ss__span){0}, (ss__attr[8]){{0}}, 8), 0); /* nothing recorded */
  ss__tracer_g.sampler = saved;
}
END_TEST

START_TEST(test_set_start_only_moves_back) {
  setup();
  ss__sb b;
  ss__span_start(&b, "GET", SS_KIND_SERVER);
  ss__span_set_start(&b, UINT64_MAX); /* later than now: ignored */
  ss__span_end(&b);
  ss__span s;
  ss__attr attrs[8];
  drain(&s, attrs, 8);
  ck_assert_uint_lt(s.start_ns, UINT64_MAX);
}
END_TEST

int main(void) {
  Suite *s = suite_create("span");
  TCase *tc = tcase_create("span");
  tcase_add_test(tc, test_ended_span_decodes_with_its_attributes_and_status);
  tcase_add_test(tc, test_nested_span_is_a_child_and_pops_back);
  tcase_add_test(tc, test_push_pop_tokens_stay_balanced_past_the_depth_limit);
  tcase_add_test(tc, test_replace_changes_only_the_top_and_reset_starts_afresh);
  tcase_add_test(tc, test_child_of_a_pushed_context_takes_its_trace);
  tcase_add_test(tc, test_parked_span_gets_late_attributes_and_its_own_end_time);
  tcase_add_test(tc, test_parked_record_refuses_what_does_not_fit);
  tcase_add_test(tc, test_finish_from_copies_a_scratch_outcome_but_the_skipped_key);
  tcase_add_test(tc, test_drops_are_counted_by_reason_and_in_the_total);
  tcase_add_test(tc, test_failed_calls_carry_a_stack_and_count_their_record_when_the_ring_is_full);
  tcase_add_test(tc, test_set_start_only_moves_back);
  tcase_add_test(tc, test_unsampled_span_draws_its_ids_once_when_read);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
