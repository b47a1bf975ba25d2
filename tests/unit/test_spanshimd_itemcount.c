/* spanshimd's count of what a refused request held (itemcount.c): spans and log records
 * counted however the body is cut into pieces, libspanshim's drop reports told apart
 * from the records they sit among, and bodies that are not such a request counted as
 * nothing. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "tools/spanshimd/spanshimd.h"

typedef struct wbuf {
  uint8_t b[1 << 16];
  size_t n;
} wbuf;

static void put_varint(wbuf *w, uint64_t v) {
  do {
    uint8_t c = v & 0x7f;
    v >>= 7;
    w->b[w->n++] = (uint8_t)(c | (v ? 0x80 : 0));
  } while (v);
}

/* Field no (wire type 2) with the payload p[0..n). */
static void put_bytes(wbuf *w, unsigned no, const void *p, size_t n) {
  put_varint(w, (uint64_t)no << 3 | 2);
  put_varint(w, n);
  memcpy(w->b + w->n, p, n);
  w->n += n;
}

static void put_sub(wbuf *w, unsigned no, const wbuf *sub) {
  put_bytes(w, no, sub->b, sub->n);
}

static void put_u64(wbuf *w, unsigned no, uint64_t v) { /* fixed64 */
  put_varint(w, (uint64_t)no << 3 | 1);
  memcpy(w->b + w->n, &v, 8);
  w->n += 8;
}

/* A request: `resources` resources, each of two scopes of `per_scope` items made by
 * item(i, out); each resource and scope with fields of its own beside the list. */
static void request(wbuf *req, int resources, int per_scope, void (*item)(int, wbuf *)) {
  static wbuf res, scope, it, tmp;
  int k = 0;
  req->n = 0;
  for (int r = 0; r < resources; r++) {
    res.n = 0;
    tmp.n = 0;
    put_bytes(&tmp, 1, "service.name", 12);
    put_sub(&res, 1, &tmp); /* resource */
    for (int s = 0; s < 2; s++) {
      scope.n = 0;
      put_bytes(&tmp, 1, "spanshim", 8);
      put_sub(&scope, 1, &tmp); /* instrumentation scope */
      for (int i = 0; i < per_scope; i++) {
        it.n = 0;
        item(k++, &it);
        put_sub(&scope, 2, &it);
      }
      put_bytes(&scope, 3, "https://opentelemetry.io/schemas/1.40.0", 39);
      put_sub(&res, 2, &scope);
    }
    put_bytes(&res, 3, "https://opentelemetry.io/schemas/1.40.0", 39);
    put_sub(req, 1, &res);
  }
}

static void a_span(int i, wbuf *w) {
  uint8_t id[16] = {1};
  id[15] = (uint8_t)i;
  put_bytes(w, 1, id, 16);
  put_bytes(w, 2, id, 8);
  put_bytes(w, 5, "connect", 7);
  put_u64(w, 7, 1000);
  put_u64(w, 8, 2000 + (uint64_t)i);
}

/* Every third record a drop report of 5 spans, every fifth one an exception record
 * bigger than SS_ITEM_REC_MAX (never looked into), the rest small exception records. */
static void a_record(int i, wbuf *w) {
  static char big[SS_ITEM_REC_MAX + 100];
  static wbuf kv, any;
  put_u64(w, 1, 5);
  if (i % 3 == 0) {
    any.n = 0;
    put_varint(&any, 3 << 3 | 0);
    put_varint(&any, 5);
    kv.n = 0;
    put_bytes(&kv, 1, "spanshim.spans.dropped", 22);
    put_sub(&kv, 2, &any);
    put_sub(w, 6, &kv);
    put_bytes(w, 12, "spanshim.spans.dropped", 22);
    return;
  }
  if (i % 5 == 0) {
    memset(big, 'x', sizeof big);
    put_bytes(w, 5, big, sizeof big);
  }
  put_bytes(w, 12, "exception", 9);
}

/* Walks body in pieces of `piece` bytes (0: two pieces cut at `cut`). */
static int walk(ss__item_count *c, int logs, const wbuf *body, size_t piece, size_t cut) {
  ss__item_count_begin(c, logs, body->n);
  if (piece == 0) {
    ss__item_count_feed(c, body->b, cut);
    ss__item_count_feed(c, body->b + cut, body->n - cut);
  } else {
    for (size_t at = 0; at < body->n; at += piece)
      ss__item_count_feed(c, body->b + at, body->n - at < piece ? body->n - at : piece);
  }
  return ss__item_count_end(c);
}

START_TEST(test_itemcount_spans_are_counted_however_the_body_is_cut) {
  static wbuf req;
  ss__item_count c;
  request(&req, 3, 7, a_span); /* 42 spans */
  ck_assert_int_eq(walk(&c, 0, &req, req.n, 0), 0);
  ck_assert_uint_eq(c.items, 42);
  for (size_t cut = 0; cut <= req.n; cut++) {
    ck_assert_int_eq(walk(&c, 0, &req, 0, cut), 0);
    ck_assert_uint_eq(c.items, 42);
  }
  ck_assert_int_eq(walk(&c, 0, &req, 1, 0), 0);
  ck_assert_uint_eq(c.items, 42);
  request(&req, 0, 0, a_span); /* empty: the hello */
  ck_assert_int_eq(walk(&c, 0, &req, 1, 0), 0);
  ck_assert_uint_eq(c.items, 0);
}
END_TEST

START_TEST(test_itemcount_drop_reports_are_told_apart_from_records) {
  static wbuf req;
  ss__item_count c;
  request(&req, 2, 15, a_record); /* 60 records: 20 reports of 5 spans each */
  for (size_t piece = 1; piece <= 4097; piece += 1024) {
    ck_assert_int_eq(walk(&c, 1, &req, piece, 0), 0);
    ck_assert_uint_eq(c.items, 60);
    ck_assert_uint_eq(c.reports, 20);
    ck_assert_uint_eq(c.spans_dropped, 100);
    ck_assert_uint_eq(c.logs_dropped, 0);
  }
  uint64_t refused = ss__stats_g.logs_refused, dropped = ss__stats_g.shim_spans_dropped;
  ss__item_count_stats(&c);
  ck_assert_uint_eq(ss__stats_g.logs_refused - refused, 40);
  ck_assert_uint_eq(ss__stats_g.shim_spans_dropped - dropped, 100);
}
END_TEST

START_TEST(test_itemcount_a_body_that_is_not_a_request_counts_nothing) {
  static wbuf req;
  ss__item_count c;
  request(&req, 2, 4, a_span);
  wbuf *cut = malloc(sizeof *cut);
  for (size_t n = 1; n < req.n; n++) { /* cut short anywhere: nothing, or, cut between */
    memcpy(cut->b, req.b, n);          /* two resources, a request of its own */
    cut->n = n;
    int rc = walk(&c, 0, cut, 3, 0);
    ck_assert_msg(rc == -1 || (rc == 0 && c.items == 8), "n=%zu rc=%d", n, rc);
  }
  static const uint8_t past[] = {0x0a, 0x04, 0x12, 0x0a, 0x00, 0x00}; /* scope > resource */
  memcpy(cut->b, past, sizeof past);
  cut->n = sizeof past;
  ck_assert_int_eq(walk(&c, 0, cut, 1, 0), -1);
  cut->b[0] = 0x0b; /* a group */
  ck_assert_int_eq(walk(&c, 0, cut, 1, 0), -1);
  const char text[] = "{\"resourceSpans\":[]}"; /* JSON, groups, garbage */
  memcpy(cut->b, text, sizeof text - 1);
  cut->n = sizeof text - 1;
  ck_assert_int_eq(walk(&c, 0, cut, 2, 0), -1);
  free(cut);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_itemcount");
  TCase *tc = tcase_create("itemcount");
  tcase_add_test(tc, test_itemcount_spans_are_counted_however_the_body_is_cut);
  tcase_add_test(tc, test_itemcount_drop_reports_are_told_apart_from_records);
  tcase_add_test(tc, test_itemcount_a_body_that_is_not_a_request_counts_nothing);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
