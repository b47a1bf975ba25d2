/* test_otlp_wire_json.c - OTLP JSON written straight from protobuf wire bytes
 * (ss__wire_traces_json) against the tree path it replaces in spanshimd: the same bytes
 * unpacked by protobuf-c and written by ss__json_traces must give the same line, for a
 * request using every field and value kind, for thousands of mutations of it (whenever
 * the wire reader takes them, protobuf-c must too, with the same JSON), and the
 * non-canonical encodings it leaves to protobuf-c are declined. ss__wire_traces_check
 * gives the same answers as the writer every time. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/otlp_json.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Req;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans RS;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans SS;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event Event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link Link;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Common__V1__KeyValue KV;
typedef Opentelemetry__Proto__Common__V1__AnyValue Any;
typedef Opentelemetry__Proto__Common__V1__ArrayValue Arr;
typedef Opentelemetry__Proto__Common__V1__KeyValueList KVList;

#define VC(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

static uint8_t tid[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                          0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
static uint8_t sid[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
static uint8_t pid[8] = {0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8};

/* The packed request with every field the JSON writer knows set somewhere. */
static uint8_t *rich_request(size_t *len) {
  static Any v[12];
  static KV kv[12];
  static KV *attrs[12], *inner_kv[1], *scope_attrs[1], *ev_attrs[2], *res_attrs[2];
  static Any *arr_vals[3];
  static Arr arr = OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
  static KVList kvl = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE_LIST__INIT;
  for (int i = 0; i < 12; i++) {
    v[i] = (Any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    kv[i] = (KV)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    kv[i].value = &v[i];
  }
  static const char *keys[12] = {"http.request.method", "url.full", "server.port", "ok",
                                 "ratio", "nan", "blob", "list", "map", "quote\"\\\n\x01",
                                 "neg", "empty"};
  for (int i = 0; i < 12; i++) kv[i].key = (char *)keys[i], attrs[i] = &kv[i];
  v[0].value_case = VC(STRING_VALUE), v[0].string_value = "GET";
  v[1].value_case = VC(STRING_VALUE), v[1].string_value = "http://h/p?q=1&x=\xc3\xa9";
  v[2].value_case = VC(INT_VALUE), v[2].int_value = 8080;
  v[3].value_case = VC(BOOL_VALUE), v[3].bool_value = 1;
  v[4].value_case = VC(DOUBLE_VALUE), v[4].double_value = 0.1;
  v[5].value_case = VC(DOUBLE_VALUE), v[5].double_value = -INFINITY;
  v[6].value_case = VC(BYTES_VALUE), v[6].bytes_value.data = (uint8_t *)"\x00\xff\x10\x20";
  v[6].bytes_value.len = 4;
  static Any a0 = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT, a1, a2;
  a1 = a0, a2 = a0;
  a0.value_case = VC(INT_VALUE), a0.int_value = -1;
  a1.value_case = VC(STRING_VALUE), a1.string_value = "";
  arr_vals[0] = &a0, arr_vals[1] = &a1, arr_vals[2] = &a2;  /* a2: an empty AnyValue */
  arr.values = arr_vals, arr.n_values = 3;
  v[7].value_case = VC(ARRAY_VALUE), v[7].array_value = &arr;
  static KV ikv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
  ikv.key = "inner";  /* no value */
  inner_kv[0] = &ikv;
  kvl.values = inner_kv, kvl.n_values = 1;
  v[8].value_case = VC(KVLIST_VALUE), v[8].kvlist_value = &kvl;
  v[9].value_case = VC(STRING_VALUE), v[9].string_value = "tab\there";
  v[10].value_case = VC(INT_VALUE), v[10].int_value = INT64_MIN;
  /* v[11]: no value set */

  static Event ev = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
  ev.time_unix_nano = 1700000000123456789ull, ev.name = "exception";
  ev_attrs[0] = &kv[0], ev_attrs[1] = &kv[2];
  ev.attributes = ev_attrs, ev.n_attributes = 2, ev.dropped_attributes_count = 3;
  static Event *evs[2] = {&ev, &ev};
  static Link ln = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__LINK__INIT;
  ln.trace_id = (ProtobufCBinaryData){16, tid}, ln.span_id = (ProtobufCBinaryData){8, pid};
  ln.trace_state = "k=v", ln.attributes = ev_attrs, ln.n_attributes = 1, ln.flags = 0x301;
  ln.dropped_attributes_count = 1;
  static Link *lns[1] = {&ln};
  static Status st = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
  st.message = "boom";
  st.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;

  static Span s = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT, s2, s3;
  s.trace_id = (ProtobufCBinaryData){16, tid}, s.span_id = (ProtobufCBinaryData){8, sid};
  s.parent_span_id = (ProtobufCBinaryData){8, pid}, s.trace_state = "a=b", s.flags = 0x101;
  s.name = "GET /p", s.kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
  s.start_time_unix_nano = 1700000000000000000ull, s.end_time_unix_nano = 1700000000000012345ull;
  s.attributes = attrs, s.n_attributes = 12, s.dropped_attributes_count = 2;
  s.events = evs, s.n_events = 2, s.dropped_events_count = 4;
  s.links = lns, s.n_links = 1, s.dropped_links_count = 5, s.status = &st;
  s2 = (Span)OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;  /* a bare span */
  s2.trace_id = s.trace_id, s2.span_id = s.span_id, s2.name = "connect";
  s3 = s2;
  s3.kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)-3;  /* negative enum */
  s3.status = &(Status)OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;  /* present, empty */
  static Span *spans[3] = {&s, &s2, &s3};

  static Scope sc = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
  sc.name = "spanshim", sc.version = "0.1.0", scope_attrs[0] = &kv[3];
  sc.attributes = scope_attrs, sc.n_attributes = 1, sc.dropped_attributes_count = 7;
  static SS ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT, ss2;
  ss.scope = &sc, ss.spans = spans, ss.n_spans = 3, ss.schema_url = "https://s/1";
  ss2 = (SS)OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;  /* no scope, no spans */
  static SS *sss[2] = {&ss, &ss2};
  static Resource res = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  res_attrs[0] = &kv[0], res_attrs[1] = &kv[2];
  res.attributes = res_attrs, res.n_attributes = 2, res.dropped_attributes_count = 9;
  static RS rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT, rs2;
  rs.resource = &res, rs.scope_spans = sss, rs.n_scope_spans = 2, rs.schema_url = "https://r";
  rs2 = (RS)OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;  /* empty */
  static RS *rss[2] = {&rs, &rs2};
  static Req q = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  q.resource_spans = rss, q.n_resource_spans = 2;
  *len = protobuf_c_message_get_packed_size(&q.base);
  uint8_t *p = malloc(*len);
  ck_assert_ptr_nonnull(p);
  ck_assert_uint_eq(protobuf_c_message_pack(&q.base, p), *len);
  return p;
}

/* The tree path: unpack with protobuf-c, write with ss__json_traces. NULL when
 * protobuf-c refuses the bytes; else a malloc'd NUL-terminated line. */
static char *tree_json(const uint8_t *p, size_t n) {
  Req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, n, p);
  if (q == NULL) return NULL;
  ss__buf b = SS_BUF_INIT;
  ck_assert_int_eq(ss__json_traces(q, &b), 0);
  ss__buf_putc(&b, 0);
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(q, NULL);
  return b.data;
}

/* 0 when the wire reader took p (and then matched the tree path), 1 when declined. */
static int differential(const uint8_t *p, size_t n, ss__wire_info *info) {
  ss__buf w = SS_BUF_INIT;
  SS_BUF_LIT(&w, "prefix");
  int rc = ss__wire_traces_json(p, n, &w, info);
  ck_assert_int_ge(rc, 0);
  ss__wire_info ci;  /* checking alone answers the same */
  ck_assert_int_eq(ss__wire_traces_check(p, n, &ci), rc);
  if (rc == 0) ck_assert_int_eq(memcmp(&ci, info, sizeof ci), 0);
  if (rc != 0) {
    ck_assert_uint_eq(w.len, 6);  /* untouched */
    ss__buf_free(&w);
    return 1;
  }
  ss__buf_putc(&w, 0);
  char *t = tree_json(p, n);
  if (t == NULL) ck_abort_msg("wire reader took bytes protobuf-c refuses (%zu bytes)", n);
  ck_assert_str_eq(w.data + 6, t);
  free(t);
  ss__buf_free(&w);
  return 0;
}

START_TEST(test_rich_request_same_as_tree_path) {
  size_t n;
  uint8_t *p = rich_request(&n);
  ss__wire_info info;
  ck_assert_int_eq(differential(p, n, &info), 0);
  ck_assert_uint_eq(info.spans, 3);
  ck_assert_uint_eq(info.bad_ids, 0);
  ck_assert_int_eq(info.sql, 0);
  ck_assert_int_eq(info.stacks, 0);
  free(p);
}
END_TEST

START_TEST(test_empty_request) {
  ss__buf w = SS_BUF_INIT;
  ss__wire_info info;
  ck_assert_int_eq(ss__wire_traces_json((const uint8_t *)"", 0, &w, &info), 0);
  ck_assert_uint_eq(w.len, strlen("{\"resourceSpans\":[]}\n"));
  ck_assert_int_eq(memcmp(w.data, "{\"resourceSpans\":[]}\n", w.len), 0);
  ck_assert_uint_eq(info.spans, 0);
  ss__buf_free(&w);
}
END_TEST

/* Mutations of a real request: wherever the wire reader takes the bytes, protobuf-c
 * takes them too and the JSON is the same; what it declines is protobuf-c's to judge. */
START_TEST(test_mutations_agree_with_protobuf_c) {
  size_t n;
  uint8_t *p = rich_request(&n), *m = malloc(n + 8);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  int taken = 0, declined = 0;
  for (int round = 0; round < 20000; round++) {
    size_t len = n;
    memcpy(m, p, n);
    int edits = 1 + (int)(x % 3);
    for (int e = 0; e < edits; e++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t at = (size_t)(x >> 8) % len;
      switch ((x >> 40) % 4) {
      case 0: m[at] = (uint8_t)(x >> 16); break;  /* any byte */
      case 1: m[at] ^= (uint8_t)(1u << ((x >> 20) % 8)); break;
      case 2: len = at; break;                         /* truncated */
      default: m[at] = (uint8_t)((x >> 24) % 3 ? m[at] + 1 : 0); break;
      }
      if (len == 0) break;
    }
    ss__wire_info info;
    if (differential(m, len, &info) == 0) taken++;
    else declined++;
  }
  ck_assert_int_gt(taken, 100);     /* both sides are exercised */
  ck_assert_int_gt(declined, 100);
  free(m);
  free(p);
}
END_TEST

/* Encodings protobuf-c reads differently from a plain field walk (merging, last member
 * wins, UTF-8 checks) are declined, so protobuf-c decides. */
START_TEST(test_non_canonical_encodings_declined) {
  static const struct { const char *what; const char *b; size_t n; } cases[] = {
      /* a span whose name (field 5) comes twice */
      {"singular twice", "\x0a\x0a\x12\x08\x12\x06\x2a\x01" "a" "\x2a\x01" "b", 12},
      /* an AnyValue with both string_value and int_value */
      {"two oneof members",
       "\x0a\x10\x12\x0e\x12\x0c\x4a\x0a\x0a\x01k\x12\x05\x0a\x01v\x18\x01", 18},
      /* a span name of invalid UTF-8 */
      {"bad utf-8", "\x0a\x07\x12\x05\x12\x03\x2a\x01\xff", 9},
      /* resource_spans as a varint */
      {"wrong wire type", "\x08\x01", 2},
      /* a group */
      {"group", "\x0b\x0c", 2},
      {"truncated", "\x0a\x05\x12\x03", 4},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ss__buf w = SS_BUF_INIT;
    ss__wire_info info;
    int rc = ss__wire_traces_json((const uint8_t *)cases[i].b, cases[i].n, &w, &info);
    ck_assert_msg(rc == 1, "%s: %d", cases[i].what, rc);
    ck_assert_uint_eq(w.len, 0);
    ss__buf_free(&w);
  }
}
END_TEST

START_TEST(test_flags_for_enrichment_and_validation) {
  /* one span, all-zero trace id, with db.query.text */
  static const uint8_t b[] = {
      0x0a, 0x39, 0x12, 0x37, 0x12, 0x35,
      0x0a, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,      /* trace_id */
      0x12, 0x08, 1, 2, 3, 4, 5, 6, 7, 8,                               /* span_id */
      0x4a, 0x17, 0x0a, 0x0d, 'd', 'b', '.', 'q', 'u', 'e', 'r', 'y', '.', 't', 'e', 'x',
      't', 0x12, 0x06, 0x0a, 0x04, 's', 'e', 'l', ' '};
  ss__wire_info info;
  ck_assert_int_eq(differential(b, sizeof b, &info), 0);
  ck_assert_uint_eq(info.spans, 1);
  ck_assert_uint_eq(info.bad_ids, 1);
  ck_assert_int_eq(info.sql, 1);
}
END_TEST

/* Spans whose attribute lists repeat (the run cache takes a list in on its second
 * sighting and writes it from there on), one of them with a statement (noted for
 * enrichment also when written from the cache, in the same request and the next), and
 * times around the 10^8 boundary (their upper digits are kept from span to span). */
START_TEST(test_repeated_attribute_lists_same_as_tree_path) {
  static Any v[2];
  static KV kv[2];
  static KV *plain[1], *sql[2];
  for (int i = 0; i < 2; i++) {
    v[i] = (Any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
    kv[i] = (KV)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
    kv[i].value = &v[i];
    v[i].value_case = VC(STRING_VALUE);
  }
  kv[0].key = "network.transport", v[0].string_value = "udp";
  kv[1].key = "db.query.text", v[1].string_value = "select 1";
  plain[0] = &kv[0], sql[0] = &kv[0], sql[1] = &kv[1];
  static const uint64_t times[] = {5, 99999999, 100000000, 100000001, 1700000000000000000ull,
                                   1700000000099999999ull, 1700000000100000000ull,
                                   18446744073709551615ull};
  enum { N = 16 };
  static Span sp[N];
  static Span *spans[N];
  for (int i = 0; i < N; i++) {
    sp[i] = (Span)OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    sp[i].trace_id = (ProtobufCBinaryData){16, tid}, sp[i].span_id = (ProtobufCBinaryData){8, sid};
    sp[i].name = "connect";
    sp[i].start_time_unix_nano = times[i % 8], sp[i].end_time_unix_nano = times[(i + 3) % 8];
    sp[i].attributes = i % 4 == 3 ? sql : plain, sp[i].n_attributes = i % 4 == 3 ? 2 : 1;
    spans[i] = &sp[i];
  }
  static SS ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
  static SS *sss[1] = {&ss};
  static RS rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
  static RS *rss[1] = {&rs};
  static Req q = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  ss.spans = spans, rs.scope_spans = sss, rs.n_scope_spans = 1;
  q.resource_spans = rss, q.n_resource_spans = 1;
  for (int with_sql = 0; with_sql < 2; with_sql++) {
    ss.n_spans = with_sql ? N : 3;  /* without: spans 0-2, plain lists only */
    size_t len = protobuf_c_message_get_packed_size(&q.base);
    uint8_t *p = malloc(len);
    ck_assert_ptr_nonnull(p);
    protobuf_c_message_pack(&q.base, p);
    for (int round = 0; round < 3; round++) {  /* the next requests start with it cached */
      ss__wire_info info;
      ck_assert_int_eq(differential(p, len, &info), 0);
      ck_assert_uint_eq(info.spans, ss.n_spans);
      ck_assert_int_eq(info.sql, with_sql);
    }
    free(p);
  }
}
END_TEST

/* A span whose attributes are not one run (another field between them) is written
 * attribute by attribute, as protobuf-c reads it. */
START_TEST(test_attributes_split_by_other_fields) {
  static const uint8_t b[] = {
      0x0a, 0x39, 0x12, 0x37, 0x12, 0x35,
      0x0a, 0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, /* trace_id */
      0x12, 0x08, 1, 2, 3, 4, 5, 6, 7, 8,                               /* span_id */
      0x4a, 0x08, 0x0a, 0x01, 'a', 0x12, 0x03, 0x0a, 0x01, 'x',         /* a: "x" */
      0x2a, 0x03, 'n', 'a', 'm',                                        /* name */
      0x4a, 0x08, 0x0a, 0x01, 'b', 0x12, 0x03, 0x0a, 0x01, 'y'};        /* b: "y" */
  for (int round = 0; round < 3; round++) {
    ss__wire_info info;
    ck_assert_int_eq(differential(b, sizeof b, &info), 0);
    ck_assert_uint_eq(info.spans, 1);
  }
}
END_TEST

int main(void) {
  Suite *s = suite_create("otlp_wire_json");
  TCase *tc = tcase_create("wire");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_rich_request_same_as_tree_path);
  tcase_add_test(tc, test_empty_request);
  tcase_add_test(tc, test_mutations_agree_with_protobuf_c);
  tcase_add_test(tc, test_non_canonical_encodings_declined);
  tcase_add_test(tc, test_flags_for_enrichment_and_validation);
  tcase_add_test(tc, test_repeated_attribute_lists_same_as_tree_path);
  tcase_add_test(tc, test_attributes_split_by_other_fields);
  suite_add_tcase(s, tc);
  SRunner *r = srunner_create(s);
  srunner_run_all(r, CK_NORMAL);
  int failed = srunner_ntests_failed(r);
  srunner_free(r);
  return failed ? 1 : 0;
}
