/* test_spanshimd_fixture.h - building OTLP trace requests by hand for spanshimd's unit
 * suites (no protobuf bytes needed unless a test packs them). Everything is allocated
 * from one arena that fx_reset frees; single-threaded, like spanshimd. */
#ifndef TEST_SPANSHIMD_FIXTURE_H
#define TEST_SPANSHIMD_FIXTURE_H

#include <string.h>

#include "tools/common/arena.h"
#include "tools/spanshimd/spanshimd.h"

typedef Opentelemetry__Proto__Trace__V1__Span fx_span_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans fx_rs_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans fx_ss_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue fx_kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue fx_any_t;

static ss__arena fx = SS_ARENA_INIT;

static inline void fx_reset(void) { ss__arena_release(&fx); }

static inline void *fx_alloc(size_t n) {
  void *p = ss__arena_alloc(&fx, n);
  memset(p, 0, n);
  return p;
}

/* A trace id whose last 8 bytes (the ratio rule's) are `low`, big-endian; the first 8
 * are `high`'s. */
static inline uint8_t *fx_tid(uint64_t high, uint64_t low) {
  uint8_t *t = fx_alloc(16);
  for (int i = 0; i < 8; i++) {
    t[i] = (uint8_t)(high >> (56 - 8 * i));
    t[8 + i] = (uint8_t)(low >> (56 - 8 * i));
  }
  return t;
}

static inline fx_kv_t *fx_kv(const char *k, const char *v) {
  fx_kv_t *kv = fx_alloc(sizeof *kv);
  fx_any_t *a = fx_alloc(sizeof *a);
  opentelemetry__proto__common__v1__key_value__init(kv);
  opentelemetry__proto__common__v1__any_value__init(a);
  a->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  a->string_value = ss__arena_strndup(&fx, v, strlen(v));
  kv->key = ss__arena_strndup(&fx, k, strlen(k));
  kv->value = a;
  return kv;
}

/* A span of trace tid; error: status ERROR; dur_ns from start 1e18. */
static inline fx_span_t *fx_span(const uint8_t *tid, uint64_t sid, const char *name,
                                 uint64_t dur_ns, int error) {
  fx_span_t *s = fx_alloc(sizeof *s);
  opentelemetry__proto__trace__v1__span__init(s);
  s->trace_id.data = (uint8_t *)tid;
  s->trace_id.len = tid ? 16 : 0;
  uint8_t *id = fx_alloc(8);
  for (int i = 0; i < 8; i++) id[i] = (uint8_t)(sid >> (56 - 8 * i));
  s->span_id.data = id;
  s->span_id.len = 8;
  s->name = ss__arena_strndup(&fx, name, strlen(name));
  s->start_time_unix_nano = 1000000000000000000ull;
  s->end_time_unix_nano = s->start_time_unix_nano + dur_ns;
  if (error) {
    s->status = fx_alloc(sizeof *s->status);
    opentelemetry__proto__trace__v1__status__init(s->status);
    s->status->code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
  }
  return s;
}

static inline void fx_attr(fx_span_t *s, const char *k, const char *v) {
  fx_kv_t **a = fx_alloc((s->n_attributes + 1) * sizeof *a);
  if (s->n_attributes) memcpy(a, s->attributes, s->n_attributes * sizeof *a);
  a[s->n_attributes++] = fx_kv(k, v);
  s->attributes = a;
}

/* One resource (service.name = service), one scope, the n spans given. */
static inline ss__traces_req *fx_request(const char *service, fx_span_t **spans, size_t n) {
  ss__traces_req *q = fx_alloc(sizeof *q);
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(q);
  fx_rs_t *rs = fx_alloc(sizeof *rs);
  opentelemetry__proto__trace__v1__resource_spans__init(rs);
  rs->resource = fx_alloc(sizeof *rs->resource);
  opentelemetry__proto__resource__v1__resource__init(rs->resource);
  rs->resource->attributes = fx_alloc(sizeof *rs->resource->attributes);
  rs->resource->attributes[0] = fx_kv("service.name", service);
  rs->resource->n_attributes = 1;
  fx_ss_t *ss = fx_alloc(sizeof *ss);
  opentelemetry__proto__trace__v1__scope_spans__init(ss);
  ss->spans = fx_alloc((n ? n : 1) * sizeof *ss->spans);
  if (n) memcpy(ss->spans, spans, n * sizeof *spans);
  ss->n_spans = n;
  rs->scope_spans = fx_alloc(sizeof *rs->scope_spans);
  rs->scope_spans[0] = ss;
  rs->n_scope_spans = 1;
  q->resource_spans = fx_alloc(sizeof *q->resource_spans);
  q->resource_spans[0] = rs;
  q->n_resource_spans = 1;
  return q;
}

/* q as protobuf bytes (in the fixture's arena); *len gets their length. */
static inline uint8_t *fx_pack(const ss__traces_req *q, size_t *len) {
  *len = protobuf_c_message_get_packed_size(&q->base);
  uint8_t *b = fx_alloc(*len + 1);
  protobuf_c_message_pack(&q->base, b);
  return b;
}

/* The spans of q in order, flattened: up to max into out; returns how many there are. */
static inline size_t fx_spans(const ss__traces_req *q, const fx_span_t **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++)
    for (size_t j = 0; j < q->resource_spans[i]->n_scope_spans; j++)
      for (size_t k = 0; k < q->resource_spans[i]->scope_spans[j]->n_spans; k++, n++)
        if (n < max) out[n] = q->resource_spans[i]->scope_spans[j]->spans[k];
  return n;
}

/* The string attribute k of span s, or NULL. */
static inline const char *fx_str(const fx_span_t *s, const char *k) {
  for (size_t i = 0; i < s->n_attributes; i++)
    if (strcmp(s->attributes[i]->key, k) == 0 && s->attributes[i]->value &&
        s->attributes[i]->value->value_case ==
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
      return s->attributes[i]->value->string_value;
  return NULL;
}

/* service.name of the resource that carries span number `idx` of q. */
static inline const char *fx_service_of(const ss__traces_req *q, size_t idx) {
  size_t n = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++) {
    const fx_rs_t *rs = q->resource_spans[i];
    for (size_t j = 0; j < rs->n_scope_spans; j++) {
      n += rs->scope_spans[j]->n_spans;
      if (idx < n && rs->resource)
        for (size_t a = 0; a < rs->resource->n_attributes; a++)
          if (strcmp(rs->resource->attributes[a]->key, "service.name") == 0)
            return rs->resource->attributes[a]->value->string_value;
    }
  }
  return NULL;
}

#endif
