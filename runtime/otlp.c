/* otlp.c - ExportTraceServiceRequest from ss__span[], packed with protobuf-c.
 *
 * protobuf-c wants a tree of structs with NUL-terminated strings, while our spans carry
 * (pointer, length) strings that may be neither terminated nor valid UTF-8. Every
 * message, pointer array and string copy of one call therefore comes from one bump
 * arena that is freed as a whole when the packed bytes exist: one malloc per 64 KiB of
 * tree, no per-field frees, nothing left behind on any error path. */
#include "runtime/otlp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "runtime/ids.h"
#include "runtime/resource.h"
#include "runtime/utf8.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__ArrayValue ArrayValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest Request;
typedef Opentelemetry__Proto__Trace__V1__Span__Event Event;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest LogsRequest;

/* Span.flags bits (trace.proto SpanFlags). */
#define FLAGS_TRACE_MASK 0xffu
#define FLAGS_HAS_IS_REMOTE 0x100u

/* ---- arena ---- */

#define ARENA_BLOCK (64 * 1024)

typedef struct block {
  struct block *next;
  size_t used, cap;
  max_align_t data[];
} block;

typedef struct arena {
  block *head;
} arena;

static void *arena_alloc(arena *a, size_t n) {
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  block *b = a->head;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    b = malloc(sizeof(block) + cap);
    if (b == NULL) return NULL;
    b->next = a->head;
    b->used = 0;
    b->cap = cap;
    a->head = b;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  return p;
}

static void arena_free(arena *a) {
  while (a->head) {
    block *b = a->head;
    a->head = b->next;
    free(b);
  }
}

/* ---- strings ---- */


/* A NUL-terminated copy of s[0..len) for protobuf-c. Protobuf strings must be UTF-8
 * (strict decoders such as the Go collector reject the whole request otherwise), so each
 * invalid byte becomes U+FFFD. The value ends at an embedded NUL, as C strings do. */
static char *str_copy(arena *a, const char *s, size_t len) {
  /* Not protobuf_c_empty_string: protobuf-c treats that pointer as "unset" and would
   * drop an empty string that is the chosen member of a oneof (AnyValue). */
  if (s == NULL) len = 0;
  const char *nul = len ? memchr(s, 0, len) : NULL;
  if (nul) len = (size_t)(nul - s);
  const unsigned char *u = (const unsigned char *)s;
  size_t bad = 0;
  for (size_t i = 0; i < len;) {
    size_t k = ss__utf8_seq(u + i, len - i);
    if (k == 0) { bad++; k = 1; }
    i += k;
  }
  char *out = arena_alloc(a, len + 2 * bad + 1);
  if (out == NULL) return NULL;
  if (bad == 0) {
    if (len) memcpy(out, s, len);
    out[len] = 0;
    return out;
  }
  char *o = out;
  for (size_t i = 0; i < len;) {
    size_t k = ss__utf8_seq(u + i, len - i);
    if (k == 0) {
      memcpy(o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(o, s + i, k);
      o += k;
      i += k;
    }
  }
  *o = 0;
  return out;
}

static char *cstr_copy(arena *a, const char *s) {
  return str_copy(a, s, s ? strlen(s) : 0);
}

static ProtobufCBinaryData bytes_copy(arena *a, const uint8_t *p, size_t n, int *err) {
  ProtobufCBinaryData d = {0, NULL};
  uint8_t *q = arena_alloc(a, n);
  if (q == NULL) {
    *err = 1;
    return d;
  }
  memcpy(q, p, n);
  d.len = n;
  d.data = q;
  return d;
}

/* ---- attributes ---- */

static AnyValue *strarr_value(arena *a, AnyValue *v, const char *items, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (items[i] == 0) n++;
  if (len > 0 && items[len - 1] != 0) n++;  /* tolerate a missing final NUL */
  ArrayValue *arr = arena_alloc(a, sizeof(*arr));
  AnyValue *vals = arena_alloc(a, n * sizeof(*vals) + 1);
  AnyValue **ptrs = arena_alloc(a, n * sizeof(*ptrs) + 1);
  if (arr == NULL || vals == NULL || ptrs == NULL) return NULL;
  opentelemetry__proto__common__v1__array_value__init(arr);
  size_t k = 0;
  for (size_t i = 0; i < len && k < n; k++) {
    const char *end = memchr(items + i, 0, len - i);
    size_t l = end ? (size_t)(end - (items + i)) : len - i;
    opentelemetry__proto__common__v1__any_value__init(&vals[k]);
    vals[k].value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    if ((vals[k].string_value = str_copy(a, items + i, l)) == NULL) return NULL;
    ptrs[k] = &vals[k];
    i += l + 1;
  }
  arr->n_values = k;
  arr->values = ptrs;
  v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE;
  v->array_value = arr;
  return v;
}

/* Fills v from at; NULL on allocation failure. An unknown type becomes an empty value
 * rather than failing the batch. */
static AnyValue *any_value(arena *a, AnyValue *v, const ss__attr *at) {
  opentelemetry__proto__common__v1__any_value__init(v);
  switch (at->type) {
  case SS_ATTR_STR:
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = str_copy(a, at->v.s, at->len);
    return v->string_value ? v : NULL;
  case SS_ATTR_INT:
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE;
    v->int_value = at->v.i;
    return v;
  case SS_ATTR_BOOL:
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE;
    v->bool_value = at->v.i != 0;
    return v;
  case SS_ATTR_DOUBLE:
    v->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE;
    v->double_value = at->v.d;
    return v;
  case SS_ATTR_STRARR:
    return strarr_value(a, v, at->v.s, at->len);
  default:
    return v;
  }
}

/* Builds n KeyValues; returns the pointer array (non-NULL even for n == 0) or NULL. */
static KeyValue **key_values(arena *a, const ss__attr *attrs, size_t n) {
  KeyValue **ptrs = arena_alloc(a, n * sizeof(*ptrs) + 1);
  KeyValue *kvs = arena_alloc(a, n * sizeof(*kvs) + 1);
  AnyValue *vals = arena_alloc(a, n * sizeof(*vals) + 1);
  if (ptrs == NULL || kvs == NULL || vals == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    opentelemetry__proto__common__v1__key_value__init(&kvs[i]);
    if ((kvs[i].key = cstr_copy(a, attrs[i].key)) == NULL) return NULL;
    if ((kvs[i].value = any_value(a, &vals[i], &attrs[i])) == NULL) return NULL;
    ptrs[i] = &kvs[i];
  }
  return ptrs;
}

/* ---- spans ---- */

static Event **events(arena *a, const ss__event *ev, size_t n) {
  Event **ptrs = arena_alloc(a, n * sizeof(*ptrs) + 1);
  Event *es = arena_alloc(a, n * sizeof(*es) + 1);
  if (ptrs == NULL || es == NULL) return NULL;
  for (size_t i = 0; i < n; i++) {
    opentelemetry__proto__trace__v1__span__event__init(&es[i]);
    es[i].time_unix_nano = ev[i].time_ns;
    es[i].name = cstr_copy(a, ev[i].name);
    es[i].n_attributes = ev[i].n_attrs;
    es[i].attributes = key_values(a, ev[i].attrs, ev[i].n_attrs);
    if (es[i].name == NULL || es[i].attributes == NULL) return NULL;
    ptrs[i] = &es[i];
  }
  return ptrs;
}

static int span_fill(arena *a, Span *out, const ss__span *s) {
  int err = 0;
  opentelemetry__proto__trace__v1__span__init(out);
  out->trace_id = bytes_copy(a, s->trace_id, sizeof s->trace_id, &err);
  out->span_id = bytes_copy(a, s->span_id, sizeof s->span_id, &err);
  if (!ss__id_is_zero(s->parent_id, sizeof s->parent_id))
    out->parent_span_id = bytes_copy(a, s->parent_id, sizeof s->parent_id, &err);
  /* A root span has no parent, so "the parent is remote" is known to be false; for a
   * child, ss__span does not say whether the parent came from TRACEPARENT (remote) or
   * from this thread (local), so the bit stays "unknown" as the spec allows. */
  out->flags = s->flags & FLAGS_TRACE_MASK;
  if (ss__id_is_zero(s->parent_id, sizeof s->parent_id)) out->flags |= FLAGS_HAS_IS_REMOTE;
  out->name = cstr_copy(a, s->name);
  if (s->trace_state_len > 0 &&
      (out->trace_state = str_copy(a, s->trace_state, s->trace_state_len)) == NULL)
    err = 1;
  out->kind = (Opentelemetry__Proto__Trace__V1__Span__SpanKind)s->kind;
  out->start_time_unix_nano = s->start_ns;
  out->end_time_unix_nano = s->end_ns;
  out->n_attributes = s->n_attrs;
  out->attributes = key_values(a, s->attrs, s->n_attrs);
  if (err || out->name == NULL || out->attributes == NULL) return -ENOMEM;
  if (s->n_events) {
    out->n_events = s->n_events;
    if ((out->events = events(a, s->events, s->n_events)) == NULL) return -ENOMEM;
  }
  if (s->status == SS_STATUS_UNSET && s->status_message_len == 0) return 0;
  Status *st = arena_alloc(a, sizeof(*st));
  if (st == NULL) return -ENOMEM;
  opentelemetry__proto__trace__v1__status__init(st);
  st->code = (Opentelemetry__Proto__Trace__V1__Status__StatusCode)s->status;
  st->message = str_copy(a, s->status_message, s->status_message_len);
  if (st->message == NULL) return -ENOMEM;
  out->status = st;
  return 0;
}

static ScopeSpans *scope_spans(arena *a, const ss__scope *scope, const ss__span *spans,
                               size_t n) {
  ScopeSpans *ss = arena_alloc(a, sizeof(*ss));
  Scope *sc = arena_alloc(a, sizeof(*sc));
  Span *sp = arena_alloc(a, n * sizeof(*sp) + 1);
  Span **ptrs = arena_alloc(a, n * sizeof(*ptrs) + 1);
  if (ss == NULL || sc == NULL || sp == NULL || ptrs == NULL) return NULL;
  opentelemetry__proto__trace__v1__scope_spans__init(ss);
  opentelemetry__proto__common__v1__instrumentation_scope__init(sc);
  if (scope) {
    sc->name = cstr_copy(a, scope->name);
    sc->version = cstr_copy(a, scope->version);
    sc->n_attributes = scope->n_attrs;
    sc->attributes = key_values(a, scope->attrs, scope->n_attrs);
    if (sc->name == NULL || sc->version == NULL || sc->attributes == NULL) return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (span_fill(a, &sp[i], &spans[i]) != 0) return NULL;
    ptrs[i] = &sp[i];
  }
  ss->scope = sc;
  ss->schema_url = (char *)SS_SCHEMA_URL;
  ss->n_spans = n;
  ss->spans = ptrs;
  return ss;
}

static ResourceSpans *resource_spans(arena *a, const ss__resource *res,
                                     const ss__scope *scope, const ss__span *spans,
                                     size_t n) {
  ResourceSpans *rs = arena_alloc(a, sizeof(*rs));
  Resource *r = arena_alloc(a, sizeof(*r));
  ScopeSpans **sptr = arena_alloc(a, sizeof(*sptr));
  if (rs == NULL || r == NULL || sptr == NULL) return NULL;
  opentelemetry__proto__trace__v1__resource_spans__init(rs);
  opentelemetry__proto__resource__v1__resource__init(r);
  if (res) {
    r->n_attributes = res->n_attrs;
    if ((r->attributes = key_values(a, res->attrs, res->n_attrs)) == NULL) return NULL;
  }
  if ((sptr[0] = scope_spans(a, scope, spans, n)) == NULL) return NULL;
  rs->resource = r;
  rs->schema_url = (char *)SS_SCHEMA_URL;
  rs->n_scope_spans = 1;
  rs->scope_spans = sptr;
  return rs;
}

int ss__otlp_encode_traces(const ss__resource *res, const ss__scope *scope,
                           const ss__span *spans, size_t n, uint8_t **out, size_t *out_len) {
  arena a = {NULL};
  Request req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
  ResourceSpans *rs = resource_spans(&a, res, scope, spans, n);
  int rc = -ENOMEM;
  if (rs != NULL) {
    req.n_resource_spans = 1;
    req.resource_spans = &rs;
    size_t len = protobuf_c_message_get_packed_size(&req.base);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf != NULL) {
      *out_len = protobuf_c_message_pack(&req.base, buf);
      *out = buf;
      rc = 0;
    }
  }
  arena_free(&a);
  return rc;
}

/* ---- logs ---- */

static int log_fill(arena *a, LogRecord *out, const ss__logrec *l) {
  int err = 0;
  opentelemetry__proto__logs__v1__log_record__init(out);
  out->time_unix_nano = l->time_ns;
  out->observed_time_unix_nano = l->time_ns;
  out->severity_number = (Opentelemetry__Proto__Logs__V1__SeverityNumber)l->severity;
  out->severity_text = cstr_copy(a, l->severity >= 17   ? "ERROR"
                                    : l->severity >= 13 ? "WARN"
                                    : l->severity >= 9  ? "INFO"
                                                        : "DEBUG");
  out->trace_id = bytes_copy(a, l->trace_id, sizeof l->trace_id, &err);
  out->span_id = bytes_copy(a, l->span_id, sizeof l->span_id, &err);
  out->flags = l->flags;
  out->event_name = cstr_copy(a, l->event_name ? l->event_name : "");
  out->n_attributes = l->n_attrs;
  out->attributes = key_values(a, l->attrs, l->n_attrs);
  if (err || out->severity_text == NULL || out->event_name == NULL || out->attributes == NULL)
    return -ENOMEM;
  if (l->body) {
    ss__attr b = {.key = "", .type = SS_ATTR_STR, .len = (uint32_t)strlen(l->body)};
    b.v.s = l->body;
    AnyValue *v = arena_alloc(a, sizeof(*v));
    if (v == NULL || (out->body = any_value(a, v, &b)) == NULL) return -ENOMEM;
  }
  return 0;
}

int ss__otlp_encode_logs(const ss__resource *res, const ss__scope *scope,
                         const ss__logrec *logs, size_t n, uint8_t **out, size_t *out_len) {
  arena a = {NULL};
  LogsRequest req = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_REQUEST__INIT;
  ResourceLogs rl = OPENTELEMETRY__PROTO__LOGS__V1__RESOURCE_LOGS__INIT, *rlp = &rl;
  ScopeLogs sl = OPENTELEMETRY__PROTO__LOGS__V1__SCOPE_LOGS__INIT, *slp = &sl;
  Resource r = OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
  Scope sc = OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
  LogRecord *recs = arena_alloc(&a, n * sizeof(*recs) + 1);
  LogRecord **ptrs = arena_alloc(&a, n * sizeof(*ptrs) + 1);
  int rc = -ENOMEM;
  if (recs == NULL || ptrs == NULL) goto done;
  if (res) {
    r.n_attributes = res->n_attrs;
    if ((r.attributes = key_values(&a, res->attrs, res->n_attrs)) == NULL) goto done;
  }
  if (scope) {
    sc.name = cstr_copy(&a, scope->name);
    sc.version = cstr_copy(&a, scope->version);
    if (sc.name == NULL || sc.version == NULL) goto done;
  }
  for (size_t i = 0; i < n; i++) {
    if (log_fill(&a, &recs[i], &logs[i]) != 0) goto done;
    ptrs[i] = &recs[i];
  }
  sl.scope = &sc;
  sl.schema_url = (char *)SS_SCHEMA_URL;
  rl.schema_url = (char *)SS_SCHEMA_URL;
  sl.n_log_records = n;
  sl.log_records = ptrs;
  rl.resource = &r;
  rl.n_scope_logs = 1;
  rl.scope_logs = &slp;
  req.n_resource_logs = 1;
  req.resource_logs = &rlp;
  size_t len = protobuf_c_message_get_packed_size(&req.base);
  uint8_t *buf = malloc(len ? len : 1);
  if (buf != NULL) {
    *out_len = protobuf_c_message_pack(&req.base, buf);
    *out = buf;
    rc = 0;
  }
done:
  arena_free(&a);
  return rc;
}
