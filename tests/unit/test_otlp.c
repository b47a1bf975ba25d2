/* test_otlp.c - the hand-written OTLP encoder (runtime/otlp.c) round-trips through
 * protobuf-c's generated decoder: every field a user would see in a trace viewer comes
 * back equal, at every length boundary of a nested message, with reused buffers; and its
 * bytes equal what protobuf-c packs for the same message. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "runtime/otlp.h"
#include "runtime/resource.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Req;
typedef Opentelemetry__Proto__Common__V1__KeyValue KV;
typedef Opentelemetry__Proto__Trace__V1__Span Span;

static Req *roundtrip(const ss__resource *r, const ss__scope *sc, const ss__span *s, size_t n) {
  uint8_t *buf = NULL;
  size_t len = 0;
  ck_assert_int_eq(ss__otlp_encode_traces(r, sc, s, n, &buf, &len), 0);
  ck_assert_ptr_nonnull(buf);
  Req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, len, buf);
  free(buf);
  ck_assert_ptr_nonnull(q);
  return q;
}

/* Finishes rq (its bytes in *body, *len) and decodes them with protobuf-c. */
static Req *finish_decoded(ss__otlp_req *rq, const ss__otlp_head *h, const uint8_t **body,
                           size_t *len) {
  ck_assert_int_eq(ss__otlp_finish(rq, h, body, len), 0);
  Req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, *len, *body);
  ck_assert_ptr_nonnull(q);
  return q;
}

static void req_free(Req *q) {
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(q, NULL);
}

static const KV *find(KV **kv, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i]->key, key) == 0) return kv[i];
  ck_abort_msg("attribute %s missing", key);
  return NULL;
}

#define VC(x) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##x

static const char strarr[] = "psql\0-c\0select 1\0";
static ss__attr span_attrs[] = {
    {.key = "db.system.name", .type = SS_ATTR_STR, .len = 10, .v.s = "postgresqlXXX"},
    {.key = "server.port", .type = SS_ATTR_INT, .v.i = -5432},
    {.key = "big", .type = SS_ATTR_INT, .v.i = INT64_MAX},
    {.key = "ok", .type = SS_ATTR_BOOL, .v.i = 1},
    {.key = "no", .type = SS_ATTR_BOOL, .v.i = 0},
    {.key = "ratio", .type = SS_ATTR_DOUBLE, .v.d = 0.25},
    {.key = "process.command_args", .type = SS_ATTR_STRARR, .len = sizeof strarr - 1,
     .v.s = strarr},
    {.key = "empty", .type = SS_ATTR_STR, .len = 0, .v.s = ""},
    {.key = "bad.utf8", .type = SS_ATTR_STR, .len = 3, .v.s = "a\xff" "b"},
};

static void fill_span(ss__span *s) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < 16; i++) s->trace_id[i] = (uint8_t)(0xa0 + i);
  for (int i = 0; i < 8; i++) s->span_id[i] = (uint8_t)(1 + i);
  for (int i = 0; i < 8; i++) s->parent_id[i] = (uint8_t)(0xf0 + i);
  s->flags = 1;
  s->kind = SS_KIND_CLIENT;
  s->status = SS_STATUS_ERROR;
  s->name = "SELECT users";
  s->status_message = "connection refusedJUNK";
  s->status_message_len = 18;
  s->start_ns = 1700000000123456789ull;
  s->end_ns = 1700000000223456789ull;
  s->attrs = span_attrs;
  s->n_attrs = sizeof span_attrs / sizeof span_attrs[0];
}

START_TEST(test_span_fields_roundtrip) {
  ss__span s;
  fill_span(&s);
  Req *q = roundtrip(NULL, NULL, &s, 1);
  ck_assert_uint_eq(q->n_resource_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->n_scope_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, 1);
  Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_uint_eq(p->trace_id.len, 16);
  ck_assert_mem_eq(p->trace_id.data, s.trace_id, 16);
  ck_assert_uint_eq(p->span_id.len, 8);
  ck_assert_mem_eq(p->span_id.data, s.span_id, 8);
  ck_assert_uint_eq(p->parent_span_id.len, 8);
  ck_assert_mem_eq(p->parent_span_id.data, s.parent_id, 8);
  ck_assert_str_eq(p->name, "SELECT users");
  ck_assert_int_eq(p->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
  ck_assert_uint_eq(p->start_time_unix_nano, s.start_ns);
  ck_assert_uint_eq(p->end_time_unix_nano, s.end_ns);
  ck_assert_uint_eq(p->flags & 0xff, 1);
  ck_assert_ptr_nonnull(p->status);
  ck_assert_int_eq(p->status->code, 2);
  ck_assert_str_eq(p->status->message, "connection refused");
  req_free(q);
}
END_TEST

START_TEST(test_attribute_types_roundtrip) {
  ss__span s;
  fill_span(&s);
  Req *q = roundtrip(NULL, NULL, &s, 1);
  Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_uint_eq(p->n_attributes, s.n_attrs);
  const KV *kv = find(p->attributes, p->n_attributes, "db.system.name");
  ck_assert_int_eq(kv->value->value_case, VC(STRING_VALUE));
  ck_assert_str_eq(kv->value->string_value, "postgresql");
  kv = find(p->attributes, p->n_attributes, "server.port");
  ck_assert_int_eq(kv->value->value_case, VC(INT_VALUE));
  ck_assert_int_eq(kv->value->int_value, -5432);
  kv = find(p->attributes, p->n_attributes, "big");
  ck_assert_int_eq(kv->value->int_value, INT64_MAX);
  kv = find(p->attributes, p->n_attributes, "ok");
  ck_assert_int_eq(kv->value->value_case, VC(BOOL_VALUE));
  ck_assert_int_eq(kv->value->bool_value, 1);
  kv = find(p->attributes, p->n_attributes, "no");
  ck_assert_int_eq(kv->value->value_case, VC(BOOL_VALUE));  /* false is still sent */
  ck_assert_int_eq(kv->value->bool_value, 0);
  kv = find(p->attributes, p->n_attributes, "ratio");
  ck_assert_int_eq(kv->value->value_case, VC(DOUBLE_VALUE));
  ck_assert_double_eq(kv->value->double_value, 0.25);
  kv = find(p->attributes, p->n_attributes, "process.command_args");
  ck_assert_int_eq(kv->value->value_case, VC(ARRAY_VALUE));
  ck_assert_uint_eq(kv->value->array_value->n_values, 3);
  ck_assert_str_eq(kv->value->array_value->values[0]->string_value, "psql");
  ck_assert_str_eq(kv->value->array_value->values[1]->string_value, "-c");
  ck_assert_str_eq(kv->value->array_value->values[2]->string_value, "select 1");
  kv = find(p->attributes, p->n_attributes, "empty");
  ck_assert_int_eq(kv->value->value_case, VC(STRING_VALUE));
  ck_assert_str_eq(kv->value->string_value, "");
  kv = find(p->attributes, p->n_attributes, "bad.utf8");  /* protobuf strings are UTF-8 */
  ck_assert_str_eq(kv->value->string_value, "a\xef\xbf\xbd" "b");
  req_free(q);
}
END_TEST

START_TEST(test_root_span_omits_parent_and_unset_status) {
  ss__span s;
  fill_span(&s);
  memset(s.parent_id, 0, sizeof s.parent_id);
  s.status = SS_STATUS_UNSET;
  s.status_message = NULL;
  s.status_message_len = 0;
  s.n_attrs = 0;
  Req *q = roundtrip(NULL, NULL, &s, 1);
  Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_uint_eq(p->parent_span_id.len, 0);
  ck_assert_ptr_null(p->status);
  ck_assert_uint_eq(p->n_attributes, 0);
  /* Root: "parent is remote" is known (false): HAS_IS_REMOTE set, IS_REMOTE clear. */
  ck_assert_uint_eq(p->flags, 0x101);
  req_free(q);
}
END_TEST

START_TEST(test_strarr_without_final_nul) {
  ss__attr a = {.key = "k", .type = SS_ATTR_STRARR, .len = 3, .v.s = "a\0b"};
  ss__span s;
  fill_span(&s);
  s.attrs = &a;
  s.n_attrs = 1;
  Req *q = roundtrip(NULL, NULL, &s, 1);
  Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_uint_eq(p->attributes[0]->value->array_value->n_values, 2);
  ck_assert_str_eq(p->attributes[0]->value->array_value->values[1]->string_value, "b");
  req_free(q);
}
END_TEST

START_TEST(test_resource_and_scope) {
  ss__attr ra[] = {{.key = "service.name", .type = SS_ATTR_STR, .len = 4, .v.s = "psql"},
                   {.key = "process.pid", .type = SS_ATTR_INT, .v.i = 4242}};
  ss__attr sa[] = {{.key = "spanshim.spans.dropped", .type = SS_ATTR_INT, .v.i = 7}};
  ss__resource r = {.attrs = ra, .n_attrs = 2};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0", .attrs = sa, .n_attrs = 1};
  ss__span s[3];
  for (int i = 0; i < 3; i++) {
    fill_span(&s[i]);
    s[i].span_id[7] = (uint8_t)i;
  }
  Req *q = roundtrip(&r, &sc, s, 3);
  const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = q->resource_spans[0];
  ck_assert_ptr_nonnull(rs->resource);
  ck_assert_uint_eq(rs->resource->n_attributes, 2);
  ck_assert_str_eq(find(rs->resource->attributes, 2, "service.name")->value->string_value, "psql");
  ck_assert_int_eq(find(rs->resource->attributes, 2, "process.pid")->value->int_value, 4242);
  const Opentelemetry__Proto__Common__V1__InstrumentationScope *scope =
      rs->scope_spans[0]->scope;
  ck_assert_str_eq(scope->name, "spanshim");
  ck_assert_str_eq(scope->version, "0.1.0");
  ck_assert_int_eq(find(scope->attributes, scope->n_attributes,
                        "spanshim.spans.dropped")->value->int_value, 7);
  ck_assert_uint_eq(rs->scope_spans[0]->n_spans, 3);
  for (int i = 0; i < 3; i++)
    ck_assert_uint_eq(rs->scope_spans[0]->spans[i]->span_id.data[7], (unsigned)i);
  req_free(q);
}
END_TEST

START_TEST(test_empty_span_list) {
  ss__attr sa[] = {{.key = "spanshim.spans.dropped", .type = SS_ATTR_INT, .v.i = 3}};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0", .attrs = sa, .n_attrs = 1};
  Req *q = roundtrip(NULL, &sc, NULL, 0);
  ck_assert_uint_eq(q->n_resource_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->n_scope_spans, 1);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, 0);
  ck_assert_str_eq(q->resource_spans[0]->scope_spans[0]->scope->name, "spanshim");
  req_free(q);
}
END_TEST

START_TEST(test_many_spans_cross_arena_blocks) {
  enum { N = 2000 };
  ss__span *s = calloc(N, sizeof *s);
  for (int i = 0; i < N; i++) {
    fill_span(&s[i]);
    s[i].start_ns = (uint64_t)i;
  }
  Req *q = roundtrip(NULL, NULL, s, N);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, N);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->spans[N - 1]->start_time_unix_nano,
                    N - 1);
  ck_assert_str_eq(q->resource_spans[0]->scope_spans[0]->spans[N - 1]->attributes[6]->value
                       ->array_value->values[2]->string_value, "select 1");
  req_free(q);
  free(s);
}
END_TEST

/* A string attribute of every length around the 1/2/3-byte varint boundaries of the
 * value, its KeyValue, the span and the request: each decodes back whole. */
START_TEST(test_length_boundaries_roundtrip) {
  static char big[40000];
  memset(big, 'x', sizeof big);
  static const size_t lens[] = {0, 1, 90, 100, 105, 110, 115, 120, 125, 126, 127, 128, 129,
                                200, 16200, 16300, 16370, 16380, 16383, 16384, 16400, 39000};
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++)
    for (size_t d = 0; d < 24; d++) {
      size_t n = lens[k] > d ? lens[k] - d : 0;
      ss__attr a = {.key = "v", .type = SS_ATTR_STR, .len = (uint32_t)n, .v.s = big};
      ss__span s;
      fill_span(&s);
      s.attrs = &a;
      s.n_attrs = 1;
      Req *q = roundtrip(NULL, NULL, &s, 1);
      Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
      ck_assert_uint_eq(strlen(p->attributes[0]->value->string_value), n);
      ck_assert_str_eq(p->status->message, "connection refused");
      req_free(q);
    }
}
END_TEST

START_TEST(test_events_roundtrip) {
  ss__attr ea[] = {{.key = "exception.type", .type = SS_ATTR_STR, .len = 12, .v.s = "ECONNREFUSED"},
                   {.key = "exception.stacktrace", .type = SS_ATTR_STR, .len = 5, .v.s = "#0 x\n"}};
  ss__event ev = {.name = "exception", .time_ns = 123456789, .attrs = ea, .n_attrs = 2};
  ss__span s;
  fill_span(&s);
  s.events = &ev;
  s.n_events = 1;
  Req *q = roundtrip(NULL, NULL, &s, 1);
  Span *p = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_uint_eq(p->n_events, 1);
  ck_assert_str_eq(p->events[0]->name, "exception");
  ck_assert_uint_eq(p->events[0]->time_unix_nano, 123456789);
  ck_assert_uint_eq(p->events[0]->n_attributes, 2);
  ck_assert_str_eq(find(p->events[0]->attributes, 2, "exception.type")->value->string_value,
                   "ECONNREFUSED");
  ck_assert_uint_eq(p->n_attributes, s.n_attrs);
  req_free(q);
}
END_TEST

typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LReq;

START_TEST(test_logs_roundtrip) {
  ss__attr ra[] = {{.key = "service.name", .type = SS_ATTR_STR, .len = 4, .v.s = "psql"}};
  ss__resource r = {.attrs = ra, .n_attrs = 1};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  ss__attr la[] = {{.key = "spanshim.spans.dropped", .type = SS_ATTR_INT, .v.i = 12}};
  ss__logrec l[2] = {{.time_ns = 42, .event_name = "exception", .severity = 17,
                      .body = "boom", .flags = 1},
                     {.time_ns = 43, .event_name = "spanshim.spans.dropped", .severity = 13,
                      .attrs = la, .n_attrs = 1}};
  memset(l[0].trace_id, 0xab, 16);
  memset(l[0].span_id, 0xcd, 8);
  uint8_t *buf;
  size_t len;
  ck_assert_int_eq(ss__otlp_encode_logs(&r, &sc, l, 2, &buf, &len), 0);
  LReq *q = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
      NULL, len, buf);
  free(buf);
  ck_assert_ptr_nonnull(q);
  const Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = q->resource_logs[0]->scope_logs[0];
  ck_assert_str_eq(sl->scope->name, "spanshim");
  ck_assert_uint_eq(sl->n_log_records, 2);
  const Opentelemetry__Proto__Logs__V1__LogRecord *a = sl->log_records[0], *b = sl->log_records[1];
  ck_assert_uint_eq(a->time_unix_nano, 42);
  ck_assert_uint_eq(a->observed_time_unix_nano, 42);
  ck_assert_int_eq(a->severity_number, 17);
  ck_assert_str_eq(a->severity_text, "ERROR");
  ck_assert_str_eq(a->event_name, "exception");
  ck_assert_str_eq(a->body->string_value, "boom");
  ck_assert_uint_eq(a->trace_id.len, 16);
  ck_assert_uint_eq(a->span_id.len, 8);
  ck_assert_uint_eq(a->span_id.data[0], 0xcd);
  ck_assert_uint_eq(a->flags, 1);
  ck_assert_str_eq(b->event_name, "spanshim.spans.dropped");
  ck_assert_str_eq(b->severity_text, "WARN");
  ck_assert_uint_eq(b->trace_id.len, 0); /* not about a span */
  ck_assert_int_eq(b->attributes[0]->value->int_value, 12);
  ck_assert_str_eq(q->resource_logs[0]->resource->attributes[0]->value->string_value, "psql");
  opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(q, NULL);
}
END_TEST

/* The exporter's way: one head, one request buffer reused for batch after batch, a schema
 * URL on both levels. */
START_TEST(test_reused_buffers_and_schema_url) {
  ss__attr ra[] = {{.key = "service.name", .type = SS_ATTR_STR, .len = 3, .v.s = "app"}};
  ss__resource r = {.attrs = ra, .n_attrs = 1};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  ss__otlp_head h = {0};
  ss__otlp_req rq = {0};
  ck_assert_int_eq(ss__otlp_head_build(&h, &r, &sc, "https://opentelemetry.io/schemas/1.37.0"), 0);
  for (int round = 0; round < 3; round++) {
    ss__otlp_begin(&rq, &h, 0);
    int n = round == 1 ? 600 : 2 + round;
    for (int i = 0; i < n; i++) {
      ss__span s;
      fill_span(&s);
      s.start_ns = (uint64_t)i;
      ck_assert_int_eq(ss__otlp_add_span(&rq, &s), 0);
    }
    const uint8_t *body;
    size_t len;
    Req *q = finish_decoded(&rq, &h, &body, &len);
    ck_assert_str_eq(q->resource_spans[0]->schema_url, "https://opentelemetry.io/schemas/1.37.0");
    ck_assert_str_eq(q->resource_spans[0]->scope_spans[0]->schema_url,
                     "https://opentelemetry.io/schemas/1.37.0");
    ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, (size_t)n);
    ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->spans[n - 1]->start_time_unix_nano,
                      (uint64_t)(n - 1));
    ck_assert_str_eq(q->resource_spans[0]->resource->attributes[0]->value->string_value, "app");
    req_free(q);
  }
  ss__pb_free(&rq.pb);
  ss__otlp_head_free(&h);
}
END_TEST

/* A fixed buffer (the caller's memory: a dying thread's, in a signal handler) is never
 * grown: a span that does not fit is left out (-ENOBUFS) and the request holding the
 * ones before it still finishes and decodes; the same bytes as a growable buffer's. */
START_TEST(test_fixed_buffer_leaves_out_what_does_not_fit) {
  static uint8_t res_mem[1024], scope_mem[256], req_mem[6000];
  ss__attr ra[] = {{.key = "service.name", .type = SS_ATTR_STR, .len = 3, .v.s = "app"}};
  ss__resource r = {.attrs = ra, .n_attrs = 1};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  ss__otlp_head h = {.resource = {.p = res_mem, .cap = sizeof res_mem, .fixed = 1},
                     .scope = {.p = scope_mem, .cap = sizeof scope_mem, .fixed = 1}};
  ss__otlp_req rq = {.pb = {.p = req_mem, .cap = sizeof req_mem, .fixed = 1}};
  ck_assert_int_eq(ss__otlp_head_build(&h, &r, &sc, "https://opentelemetry.io/schemas/1.40.0"), 0);
  ss__otlp_begin(&rq, &h, 0);
  ss__span s;
  fill_span(&s);
  int n = 0, rc;
  while ((rc = ss__otlp_add_span(&rq, &s)) == 0) n++;
  ck_assert_int_eq(rc, -ENOBUFS);
  ck_assert_int_gt(n, 2);
  ck_assert_ptr_eq(rq.pb.p, req_mem);
  const uint8_t *body;
  size_t len;
  Req *q = finish_decoded(&rq, &h, &body, &len);
  ck_assert_uint_eq(q->resource_spans[0]->scope_spans[0]->n_spans, (size_t)n);
  req_free(q);
  ss__span many[64];
  for (int i = 0; i < n; i++) fill_span(&many[i]);
  uint8_t *buf;
  size_t blen;
  ck_assert_int_eq(ss__otlp_encode_traces(&r, &sc, many, (size_t)n, &buf, &blen), 0);
  ck_assert_uint_eq(blen, len);
  ck_assert_mem_eq(buf, body, len);
  free(buf);
  ss__pb_free(&rq.pb); /* fixed: emptied, not freed */
  ck_assert_ptr_eq(rq.pb.p, req_mem);
}
END_TEST

/* The exporter's way with its constants table (otlp.h ss__otlp_consts): more keys than the
 * table has slots (so they collide, probe and evict), a key with an invalid byte (never
 * kept), strings of every short length with and without invalid bytes, each request
 * encoded three times on a warm table: the same bytes as without the table. */
START_TEST(test_consts_table_gives_the_same_bytes) {
  static char keys[150][24];
  static const char *vals[] = {"", "a", "ab", "abc", "abcd", "abcde", "abcdefg", "abcdefgh",
                               "abcdefghi", "abcdefghijklmnop", "abcdefghijklmnopq",
                               "\xff", "a\xc3", "ab\x80", "abcdef\xe2\x82", "abcdefgh\xff",
                               "\xc3\xa9t\xc3\xa9", "x\0y"};
  static ss__attr attrs[150];
  size_t nv = sizeof vals / sizeof vals[0];
  for (int i = 0; i < 150; i++) {
    snprintf(keys[i], sizeof keys[i], i == 7 ? "bad\xff.key.%d" : "key.%d", i);
    attrs[i] = (ss__attr){.key = keys[i], .type = SS_ATTR_STR,
                          .len = (uint32_t)(i % nv == nv - 1 ? 3 : strlen(vals[i % nv])),
                          .v.s = vals[i % nv]};
  }
  ss__span sp[6];
  for (int i = 0; i < 6; i++) {
    fill_span(&sp[i]);
    sp[i].name = i % 2 ? "x" : keys[100 + i];
    sp[i].attrs = attrs + 20 * i;
    sp[i].n_attrs = 24 + (size_t)i * 5;
  }
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  uint8_t *want;
  size_t want_len;
  ck_assert_int_eq(ss__otlp_encode_traces(NULL, &sc, sp, 6, &want, &want_len), 0);
  static ss__otlp_consts consts;
  ss__otlp_head h = {0};
  ss__otlp_req rq = {0};
  ck_assert_int_eq(ss__otlp_head_build(&h, NULL, &sc, "https://opentelemetry.io/schemas/1.40.0"), 0);
  for (int round = 0; round < 3; round++) {
    ss__otlp_begin(&rq, &h, 0);
    rq.consts = &consts;
    for (int i = 0; i < 6; i++) ck_assert_int_eq(ss__otlp_add_span(&rq, &sp[i]), 0);
    const uint8_t *body;
    size_t len;
    ck_assert_int_eq(ss__otlp_finish(&rq, &h, &body, &len), 0);
    ck_assert_uint_eq(len, want_len);
    ck_assert_mem_eq(body, want, len);
  }
  Req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, want_len, want);
  ck_assert_ptr_nonnull(q);
  const Span *s0 = q->resource_spans[0]->scope_spans[0]->spans[0];
  ck_assert_str_eq(find(s0->attributes, s0->n_attributes, "bad\xef\xbf\xbd.key.7")
                       ->value->string_value, "abcdefgh");
  ck_assert_str_eq(find(s0->attributes, s0->n_attributes, "key.12")->value->string_value,
                   "a\xef\xbf\xbd");
  req_free(q);
  free(want);
  ss__pb_free(&rq.pb);
  ss__otlp_head_free(&h);
}
END_TEST

/* Encodes spans[0..n) with rq and consts (head h: spanshim's scope, the default schema)
 * and checks the bytes are what the one-shot writer, without any cache, gives. */
static void same_bytes_cached(const ss__otlp_head *h, ss__otlp_req *rq, ss__otlp_consts *consts,
                              const ss__span *spans, size_t n) {
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  uint8_t *want;
  size_t want_len;
  ck_assert_int_eq(ss__otlp_encode_traces(NULL, &sc, spans, n, &want, &want_len), 0);
  ss__otlp_begin(rq, h, 0);
  rq->consts = consts;
  for (size_t i = 0; i < n; i++) ck_assert_int_eq(ss__otlp_add_span(rq, &spans[i]), 0);
  const uint8_t *body;
  size_t len;
  ck_assert_int_eq(ss__otlp_finish(rq, h, &body, &len), 0);
  ck_assert_uint_eq(len, want_len);
  ck_assert_mem_eq(body, want, len);
  free(want);
}

/* The exporter's KeyValue cache (otlp.h ss__otlp_consts.kv): 400 attributes over 256 slots
 * (collisions and evictions), strings of 0 to 30 bytes (the 24-byte limit on both sides,
 * invalid UTF-8, a NUL inside), integers of every varint length and negative, booleans,
 * doubles, string arrays (never cached), event attributes (field 3), and values that change
 * between rounds under the same key: five rounds on a warm cache give the bytes the
 * uncached writer gives for each round. */
START_TEST(test_kv_cache_gives_the_same_bytes) {
  enum { NA = 400, NS = 8 };
  static char keys[NA][24], strs[NA][32];
  static ss__attr attrs[NA];
  static ss__otlp_consts consts;
  consts.kv = calloc(SS_OTLP_KVS, SS_OTLP_KV_BYTES);
  ck_assert_ptr_nonnull(consts.kv);
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  ss__otlp_head h = {0};
  ss__otlp_req rq = {0};
  ck_assert_int_eq(ss__otlp_head_build(&h, NULL, &sc, SS_SCHEMA_URL), 0);
  for (int i = 0; i < NA; i++) snprintf(keys[i], sizeof keys[i], "k.%d", i % 150);
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < NA; i++) {
      int v = i + (i % 3 == 0 ? round : 0); /* a third change every round */
      ss__attr *a = &attrs[i];
      *a = (ss__attr){.key = keys[(i * 7) % NA]};
      switch (i % 6) {
      case 0:
      case 1: {
        size_t n = (size_t)(v % 31);
        for (size_t j = 0; j < n; j++) strs[i][j] = (char)('a' + (v + (int)j) % 26);
        if (v % 11 == 0 && n > 2) strs[i][n / 2] = (char)0xff;
        if (v % 13 == 0 && n > 2) strs[i][1] = '\0';
        a->type = SS_ATTR_STR, a->len = (uint32_t)n, a->v.s = strs[i];
        break;
      }
      case 2:
        a->type = SS_ATTR_INT, a->v.i = (int64_t)(((uint64_t)v << (v % 60)) ^ (v % 2 ? ~0ull : 0));
        break;
      case 3: a->type = SS_ATTR_BOOL, a->v.i = v % 2; break;
      case 4: a->type = SS_ATTR_DOUBLE, a->v.d = v / 7.0; break;
      default:
        memcpy(strs[i], "ab\0cd\0", 6);
        strs[i][0] = (char)('a' + v % 26);
        a->type = SS_ATTR_STRARR, a->len = 6, a->v.s = strs[i];
      }
    }
    ss__span sp[NS];
    ss__event ev[NS];
    for (int i = 0; i < NS; i++) {
      fill_span(&sp[i]);
      sp[i].attrs = attrs + 50 * i;
      sp[i].n_attrs = 50;
      ev[i] = (ss__event){
          .name = "exception", .time_ns = 1, .attrs = attrs + (50 * i + 25) % NA, .n_attrs = 10};
      sp[i].events = &ev[i];
      sp[i].n_events = 1;
    }
    same_bytes_cached(&h, &rq, &consts, sp, NS);
  }
  /* Values that differ in one part only (the first, second or third word of a string, its
   * length behind NULs, the type of the same bits), each seen twice in a row so it is kept:
   * many share a slot with one that differs only there, so only that compare tells them
   * apart (each part's compare left out fails this). */
  enum { NV = 3 * 256 + 8 * 24 + 3 * 300, NM = 2 * 2 * NV };
  static ss__attr vals[NV], many[NM];
  static char text[2 * 256][25], nuls[25] = "a";
  static char mkeys[300][16];
  size_t nv = 0;
  for (int i = 0; i < 1000 && nv < 256; i++) /* integers: the first word */
    vals[nv++] = (ss__attr){.key = keys[0], .type = SS_ATTR_INT, .v.i = i * 977};
  for (int w = 1; w <= 2; w++) /* strings differing in their second / third word only */
    for (int i = 0; i < 256; i++) {
      char *t = text[(w - 1) * 256 + i];
      memset(t, 'a', 24);
      for (int j = 0; j < 8; j++)
        if (i & (1 << j)) t[8 * w + j] = 'b';
      vals[nv++] = (ss__attr){.key = keys[1], .type = SS_ATTR_STR, .len = 8u * (w + 1), .v.s = t};
    }
  for (int k = 0; k < 8; k++) /* "a" and NULs: the same padded bytes, lengths 1..24 */
    for (int n = 1; n <= 24; n++)
      vals[nv++] =
          (ss__attr){.key = keys[2 + k], .type = SS_ATTR_STR, .len = (uint32_t)n, .v.s = nuls};
  for (int k = 0; k < 300; k++) { /* the same bits as an integer, a boolean, a double */
    snprintf(mkeys[k], sizeof mkeys[k], "m%d", k);
    vals[nv++] = (ss__attr){.key = mkeys[k], .type = SS_ATTR_INT, .v.i = 0};
    vals[nv++] = (ss__attr){.key = mkeys[k], .type = SS_ATTR_BOOL, .v.i = 0};
    vals[nv++] = (ss__attr){.key = mkeys[k], .type = SS_ATTR_DOUBLE, .v.d = 0.0};
  }
  ck_assert_uint_eq(nv, NV);
  for (size_t i = 0; i < NM; i++) many[i] = vals[(i / 2) % NV];
  ss__span big[NM / 64];
  size_t nb = NM / 64;
  for (size_t i = 0; i < nb; i++) {
    fill_span(&big[i]);
    big[i].attrs = many + 64 * i;
    big[i].n_attrs = 64;
  }
  for (size_t at = 0; at < nb; at += 16) {
    size_t k = nb - at < 16 ? nb - at : 16;
    same_bytes_cached(&h, &rq, &consts, big + at, k);
  }
  /* A long key: KeyValues of 65 to 93 bytes kept, each value seen a third time (a hit). */
  static char longkey[64];
  static ss__attr lk[3 * 8];
  memset(longkey, 'k', sizeof longkey - 1);
  for (int i = 0; i < 3 * 8; i++)
    lk[i] = (ss__attr){
        .key = longkey, .type = SS_ATTR_STR, .len = (uint32_t)(17 + i / 3), .v.s = text[i / 3]};
  ss__span ls;
  fill_span(&ls);
  ls.attrs = lk;
  ls.n_attrs = 3 * 8;
  same_bytes_cached(&h, &rq, &consts, &ls, 1);
  ss__pb_free(&rq.pb);
  ss__otlp_head_free(&h);
  free(consts.kv);
}
END_TEST

/* The exporter's attribute-list cache (otlp.h ss__otlp_consts.lists): a list kept, then
 * lists that differ from it in one place only (one word of a string value, the type of
 * the same bits, a key), each met while the kept one is the last list and its slot's
 * list, then many lists through the 16 slots: the bytes the uncached writer gives (each
 * compare left out fails this). */
START_TEST(test_list_cache_gives_the_same_bytes) {
  enum { NV = 6, NR = 400 };
  static ss__otlp_consts consts;
  consts.kv = calloc(SS_OTLP_KVS, SS_OTLP_KV_BYTES);
  consts.lists = calloc(SS_OTLP_LISTS, SS_OTLP_LIST_BYTES);
  ck_assert_ptr_nonnull(consts.kv);
  ck_assert_ptr_nonnull(consts.lists);
  static char text[NV][25];
  static ss__attr lists[NV][5];
  for (int v = 0; v < NV; v++) {
    memset(text[v], 'a', 24);
    if (v >= 1 && v <= 3) text[v][8 * (v - 1) + 3] = 'b'; /* word 0, 1, 2 of the value */
    ss__attr *l = lists[v];
    l[0] =
        (ss__attr){.key = "network.peer.address", .type = SS_ATTR_STR, .len = 24, .v.s = text[v]};
    l[1] = (ss__attr){.key = "network.peer.port", .type = SS_ATTR_INT, .v.i = 9};
    l[2] = (ss__attr){.key = "network.type",
                      .type = v == 4 ? SS_ATTR_INT : SS_ATTR_DOUBLE,
                      .v.d = 0.0}; /* 4: the same bits, another type */
    l[3] = (ss__attr){.key = v == 5 ? "server.address" : "network.transport", /* 5: a key */
                      .type = SS_ATTR_STR,
                      .len = 3,
                      .v.s = "udp"};
    l[4] = (ss__attr){.key = "code.function.name", .type = SS_ATTR_STR, .len = 4, .v.s = "main"};
  }
  static ss__span sp[3 * 2 * NV + NR];
  static ss__attr many[NR][3];
  static char manytext[NR][9];
  size_t ns = 0;
  for (int v = 0; v < NV; v++) /* v three times, then the kept list (0) three times */
    for (int r = 0; r < 6; r++) {
      fill_span(&sp[ns]);
      sp[ns].attrs = lists[r < 3 ? v : 0];
      sp[ns++].n_attrs = 5;
    }
  for (int i = 0; i < NR; i++) { /* 40 lists of 3 in runs of 2 and interleaved */
    int l = (i < NR / 2 ? i / 2 : i * 7) % 40;
    snprintf(manytext[i], sizeof manytext[i], "h%d", l);
    many[i][0] = (ss__attr){.key = "server.address",
                            .type = SS_ATTR_STR,
                            .len = (uint32_t)strlen(manytext[i]),
                            .v.s = manytext[i]};
    many[i][1] = (ss__attr){.key = "network.peer.port", .type = SS_ATTR_INT, .v.i = l % 7};
    many[i][2] = (ss__attr){
        .key = "network.transport", .type = SS_ATTR_STR, .len = 3, .v.s = l % 2 ? "tcp" : "udp"};
    fill_span(&sp[ns]);
    sp[ns].attrs = many[i];
    sp[ns++].n_attrs = 3;
  }
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  ss__otlp_head h = {0};
  ss__otlp_req rq = {0};
  ck_assert_int_eq(ss__otlp_head_build(&h, NULL, &sc, SS_SCHEMA_URL), 0);
  for (size_t at = 0; at < ns; at += 6)
    same_bytes_cached(&h, &rq, &consts, sp + at, ns - at < 6 ? ns - at : 6);
  ss__pb_free(&rq.pb);
  ss__otlp_head_free(&h);
  free(consts.kv);
  free(consts.lists);
}
END_TEST

/* Field order and proto3 defaults as protobuf-c packs them: the same bytes. */
START_TEST(test_bytes_equal_protobuf_c_pack) {
  ss__span s;
  fill_span(&s);
  ss__attr ra[] = {{.key = "service.name", .type = SS_ATTR_STR, .len = 4, .v.s = "psql"}};
  ss__resource r = {.attrs = ra, .n_attrs = 1};
  ss__scope sc = {.name = "spanshim", .version = "0.1.0"};
  uint8_t *buf;
  size_t len;
  ck_assert_int_eq(ss__otlp_encode_traces(&r, &sc, &s, 1, &buf, &len), 0);
  Req *q = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
      NULL, len, buf);
  size_t len2 = protobuf_c_message_get_packed_size(&q->base);
  uint8_t *buf2 = malloc(len2);
  protobuf_c_message_pack(&q->base, buf2);
  ck_assert_uint_eq(len, len2);
  ck_assert_mem_eq(buf, buf2, len);
  free(buf2);
  free(buf);
  req_free(q);
}
END_TEST

int main(void) {
  Suite *s = suite_create("otlp");
  TCase *tc = tcase_create("encode");
  tcase_add_test(tc, test_span_fields_roundtrip);
  tcase_add_test(tc, test_attribute_types_roundtrip);
  tcase_add_test(tc, test_root_span_omits_parent_and_unset_status);
  tcase_add_test(tc, test_strarr_without_final_nul);
  tcase_add_test(tc, test_resource_and_scope);
  tcase_add_test(tc, test_empty_span_list);
  tcase_add_test(tc, test_many_spans_cross_arena_blocks);
  tcase_add_test(tc, test_length_boundaries_roundtrip);
  tcase_add_test(tc, test_events_roundtrip);
  tcase_add_test(tc, test_logs_roundtrip);
  tcase_add_test(tc, test_reused_buffers_and_schema_url);
  tcase_add_test(tc, test_bytes_equal_protobuf_c_pack);
  tcase_add_test(tc, test_consts_table_gives_the_same_bytes);
  tcase_add_test(tc, test_kv_cache_gives_the_same_bytes);
  tcase_add_test(tc, test_list_cache_gives_the_same_bytes);
  tcase_add_test(tc, test_fixed_buffer_leaves_out_what_does_not_fit);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
