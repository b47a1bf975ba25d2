/* otlp_json.c - OTLP JSON encoding; see otlp_json.h for the rules.
 *
 * Written for throughput (spanshimd turns every received batch into one line): output
 * goes straight into the buffer, strings are copied in runs between the bytes that need
 * escaping, and numbers are formatted by hand. Only doubles go through snprintf. */
#include "tools/common/otlp_json.h"
#include "tools/common/jw_fmt.h"

#include "runtime/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope Scope;
typedef Opentelemetry__Proto__Common__V1__EntityRef EntityRef;
typedef Opentelemetry__Proto__Resource__V1__Resource Resource;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans ResourceSpans;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans ScopeSpans;
typedef Opentelemetry__Proto__Trace__V1__Span Span;
typedef Opentelemetry__Proto__Trace__V1__Span__Event Event;
typedef Opentelemetry__Proto__Trace__V1__Span__Link Link;
typedef Opentelemetry__Proto__Trace__V1__Status Status;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;

/* ---- scalars ---- */

/* Byte classes for string escaping: 0 copied as is, 1 escaped, 2 start of a UTF-8
 * sequence to validate. */
static const unsigned char byte_class[256] = {
    [0 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
};
static const char hexdig[] = "0123456789abcdef";

/* Writes the escape for byte c (class 1) at o; returns bytes written. */
static size_t escape_byte(char *o, unsigned char c) {
  o[0] = '\\';
  switch (c) {
  case '"': o[1] = '"'; return 2;
  case '\\': o[1] = '\\'; return 2;
  case '\n': o[1] = 'n'; return 2;
  case '\r': o[1] = 'r'; return 2;
  case '\t': o[1] = 't'; return 2;
  case '\b': o[1] = 'b'; return 2;
  case '\f': o[1] = 'f'; return 2;
  default:
    memcpy(o + 1, "u00", 3);
    o[4] = hexdig[c >> 4];
    o[5] = hexdig[c & 15];
    return 6;
  }
}

/* Whether none of the 8 bytes at p needs attention (escaping, UTF-8 checking): the
 * usual SWAR tests for a byte below 0x20, equal to '"' or '\\', or with its high bit set
 * (some false alarms, never a miss; the byte loop then decides). */
static inline int plain8(const unsigned char *p) {
  const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
  uint64_t x, q, bs;
  memcpy(&x, p, 8);
  q = x ^ (ones * '"');
  bs = x ^ (ones * '\\');
  return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) == 0;
}

void ss__jw_str(ss__buf *b, const char *s, size_t len) {
  /* Worst case: every byte becomes \u00XX (6 bytes); invalid bytes become 3. */
  if (len > ((size_t)-1 - 2) / 6) {
    b->oom = 1;
    return;
  }
  char *o = ss__buf_room(b, len * 6 + 2);
  if (o == NULL) return;
  b->len += (size_t)(ss__jw_str_at(o, s, len) - o);
}

static inline int plain4(const unsigned char *p) {  /* plain8 for 4 bytes */
  const uint32_t ones = 0x01010101u, high = 0x80808080u;
  uint32_t x, q, bs;
  memcpy(&x, p, 4);
  q = x ^ (ones * '"');
  bs = x ^ (ones * '\\');
  return ((x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs)) & high) == 0;
}

char *ss__jw_str_at(char *o, const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  *o++ = '"';
  size_t i = 0;
  /* Most strings need nothing: whole words checked (the last overlapping the one before;
   * 4-byte words below 8 bytes), then one copy. Else run by run below. */
  int plain = 0;
  if (len >= 8) {
    while (i + 8 <= len && plain8(u + i)) i += 8;
    plain = i == len || (i + 8 > len && plain8(u + len - 8));
    i = 0;
  } else if (len >= 4) {
    plain = plain4(u) && plain4(u + len - 4);
  }
  if (plain) {
    memcpy(o, s, len);
    o[len] = '"';
    return o + len + 1;
  }
  while (i < len) {
    size_t run = i;
    while (run + 8 <= len && plain8(u + run)) run += 8;
    while (run < len && byte_class[u[run]] == 0) run++;
    memcpy(o, s + i, run - i);
    o += run - i;
    i = run;
    if (i == len) break;
    if (byte_class[u[i]] == 1) {
      o += escape_byte(o, u[i++]);
      continue;
    }
    size_t k = ss__utf8_seq(u + i, len - i);
    if (k == 0) {
      memcpy(o, "\xef\xbf\xbd", 3);  /* U+FFFD REPLACEMENT CHARACTER */
      o += 3;
      i++;
    } else {
      memcpy(o, s + i, k);
      o += k;
      i += k;
    }
  }
  *o++ = '"';
  return o;
}

static void json_cstr(ss__buf *b, const char *s) {
  ss__jw_str(b, s ? s : "", s ? strlen(s) : 0);
}

/* Every byte's two hex digits: one load per byte instead of two nibble lookups (ids are
 * 24 of a span's bytes, and 48 of its JSON; whole words of them go through hex4). */
const char ss__jw_hexpairs[513] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
    "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void ss__jw_hex(ss__buf *b, const uint8_t *p, size_t n) {
  char *o = ss__buf_room(b, 2 * n + 2);
  if (o == NULL) return;
  *o++ = '"';
  o = ss__jw_hex_at(o, p, n);
  *o = '"';
  b->len += 2 * n + 2;
}

void ss__jw_u64(ss__buf *b, uint64_t v) {
  char *o = ss__buf_room(b, 24);
  if (o == NULL) return;
  b->len += (size_t)(ss__jw_u64_at(o, v) - o);
}

void ss__jw_i64(ss__buf *b, int64_t v) {
  if (v < 0) {
    ss__buf_putc(b, '-');
    ss__jw_u64(b, (uint64_t)0 - (uint64_t)v);  /* also right for INT64_MIN */
  } else {
    ss__jw_u64(b, (uint64_t)v);
  }
}

/* proto3 JSON: 64-bit integers are strings, because JavaScript numbers lose precision. */
static void json_u64_str(ss__buf *b, uint64_t v) {
  ss__buf_putc(b, '"');
  ss__jw_u64(b, v);
  ss__buf_putc(b, '"');
}

/* Shortest of %.15g/%.16g/%.17g that reads back exactly; non-finite values as the
 * proto3 JSON strings, since JSON has no literal for them. */
void ss__jw_double(ss__buf *b, double d) {
  if (isnan(d)) {
    SS_BUF_LIT(b, "\"NaN\"");
    return;
  }
  if (isinf(d)) {
    if (d > 0) SS_BUF_LIT(b, "\"Infinity\"");
    else SS_BUF_LIT(b, "\"-Infinity\"");
    return;
  }
  char tmp[40];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  ss__buf_append(b, tmp, (size_t)n);
}

void ss__jw_base64(ss__buf *b, const uint8_t *p, size_t n) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *o = ss__buf_room(b, (n + 2) / 3 * 4 + 2), *start = o;
  if (o == NULL) return;
  *o++ = '"';
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)p[i] << 16;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = '=';
    *o++ = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = '=';
  }
  *o++ = '"';
  b->len += (size_t)(o - start);
}

/* ---- object fields ----
 * Each object is written as "{" fields "}", where a field helper emits the separating
 * comma itself, tracked by the object's field count *n. */

#define KEY(b, n, lit) ss__jw_key((b), (n), (lit), sizeof(lit) - 1)

static void f_str(ss__buf *b, int *n, const char *k, size_t klen, const char *s) {
  if (s == NULL || *s == 0) return;
  ss__jw_key(b, n, k, klen);
  json_cstr(b, s);
}
#define F_STR(b, n, lit, s) f_str((b), (n), (lit), sizeof(lit) - 1, (s))

static void f_u32(ss__buf *b, int *n, const char *k, size_t klen, uint32_t v) {
  if (v == 0) return;
  ss__jw_key(b, n, k, klen);
  ss__jw_u64(b, v);
}
#define F_U32(b, n, lit, v) f_u32((b), (n), (lit), sizeof(lit) - 1, (v))

static void f_time(ss__buf *b, int *n, const char *k, size_t klen, uint64_t v) {
  if (v == 0) return;
  ss__jw_key(b, n, k, klen);
  json_u64_str(b, v);
}
#define F_TIME(b, n, lit, v) f_time((b), (n), (lit), sizeof(lit) - 1, (v))

static void f_id(ss__buf *b, int *n, const char *k, size_t klen, ProtobufCBinaryData d) {
  if (d.len == 0) return;
  ss__jw_key(b, n, k, klen);
  ss__jw_hex(b, d.data, d.len);
}
#define F_ID(b, n, lit, d) f_id((b), (n), (lit), sizeof(lit) - 1, (d))

/* ---- common ---- */

static void any_value(ss__buf *b, const AnyValue *v, int depth);

static void key_values(ss__buf *b, KeyValue *const *kv, size_t count, int depth) {
  ss__buf_putc(b, '[');
  for (size_t i = 0; i < count; i++) {
    int n = 0;
    if (i) ss__buf_putc(b, ',');
    ss__buf_putc(b, '{');
    KEY(b, &n, "key");
    json_cstr(b, kv[i]->key);
    if (kv[i]->value) {
      KEY(b, &n, "value");
      any_value(b, kv[i]->value, depth + 1);
    }
    ss__buf_putc(b, '}');
  }
  ss__buf_putc(b, ']');
}

static void f_attrs(ss__buf *b, int *n, KeyValue *const *kv, size_t count) {
  if (count == 0) return;
  KEY(b, n, "attributes");
  key_values(b, kv, count, 0);
}

static void any_value(ss__buf *b, const AnyValue *v, int depth) {
  int n = 0;
  ss__buf_putc(b, '{');
  if (depth > SS_JSON_MAX_DEPTH) goto out;
  switch (v->value_case) {
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
    KEY(b, &n, "stringValue");
    json_cstr(b, v->string_value);
    break;
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
    KEY(b, &n, "boolValue");
    if (v->bool_value) SS_BUF_LIT(b, "true");
    else SS_BUF_LIT(b, "false");
    break;
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
    KEY(b, &n, "intValue");
    ss__buf_putc(b, '"');
    ss__jw_i64(b, v->int_value);
    ss__buf_putc(b, '"');
    break;
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
    KEY(b, &n, "doubleValue");
    ss__jw_double(b, v->double_value);
    break;
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE: {
    int m = 0;
    KEY(b, &n, "arrayValue");
    ss__buf_putc(b, '{');
    if (v->array_value && v->array_value->n_values) {
      KEY(b, &m, "values");
      ss__buf_putc(b, '[');
      for (size_t i = 0; i < v->array_value->n_values; i++) {
        if (i) ss__buf_putc(b, ',');
        any_value(b, v->array_value->values[i], depth + 1);
      }
      ss__buf_putc(b, ']');
    }
    ss__buf_putc(b, '}');
    break;
  }
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE: {
    int m = 0;
    KEY(b, &n, "kvlistValue");
    ss__buf_putc(b, '{');
    if (v->kvlist_value && v->kvlist_value->n_values) {
      KEY(b, &m, "values");
      key_values(b, v->kvlist_value->values, v->kvlist_value->n_values, depth + 1);
    }
    ss__buf_putc(b, '}');
    break;
  }
  case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
    KEY(b, &n, "bytesValue");
    ss__jw_base64(b, v->bytes_value.data, v->bytes_value.len);
    break;
  default:
    break;
  }
out:
  ss__buf_putc(b, '}');
}

static void string_list(ss__buf *b, char *const *s, size_t count) {
  ss__buf_putc(b, '[');
  for (size_t i = 0; i < count; i++) {
    if (i) ss__buf_putc(b, ',');
    json_cstr(b, s[i]);
  }
  ss__buf_putc(b, ']');
}

static void resource(ss__buf *b, const Resource *r) {
  int n = 0;
  ss__buf_putc(b, '{');
  f_attrs(b, &n, r->attributes, r->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", r->dropped_attributes_count);
  if (r->n_entity_refs) {
    KEY(b, &n, "entityRefs");
    ss__buf_putc(b, '[');
    for (size_t i = 0; i < r->n_entity_refs; i++) {
      const EntityRef *e = r->entity_refs[i];
      int m = 0;
      if (i) ss__buf_putc(b, ',');
      ss__buf_putc(b, '{');
      F_STR(b, &m, "schemaUrl", e->schema_url);
      F_STR(b, &m, "type", e->type);
      if (e->n_id_keys) {
        KEY(b, &m, "idKeys");
        string_list(b, e->id_keys, e->n_id_keys);
      }
      if (e->n_description_keys) {
        KEY(b, &m, "descriptionKeys");
        string_list(b, e->description_keys, e->n_description_keys);
      }
      ss__buf_putc(b, '}');
    }
    ss__buf_putc(b, ']');
  }
  ss__buf_putc(b, '}');
}

static void scope(ss__buf *b, const Scope *s) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_STR(b, &n, "name", s->name);
  F_STR(b, &n, "version", s->version);
  f_attrs(b, &n, s->attributes, s->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", s->dropped_attributes_count);
  ss__buf_putc(b, '}');
}

/* ---- traces ---- */

static void event(ss__buf *b, const Event *e) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_TIME(b, &n, "timeUnixNano", e->time_unix_nano);
  F_STR(b, &n, "name", e->name);
  f_attrs(b, &n, e->attributes, e->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", e->dropped_attributes_count);
  ss__buf_putc(b, '}');
}

static void link(ss__buf *b, const Link *l) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_ID(b, &n, "traceId", l->trace_id);
  F_ID(b, &n, "spanId", l->span_id);
  F_STR(b, &n, "traceState", l->trace_state);
  f_attrs(b, &n, l->attributes, l->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", l->dropped_attributes_count);
  F_U32(b, &n, "flags", l->flags);
  ss__buf_putc(b, '}');
}

static void status(ss__buf *b, const Status *s) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_STR(b, &n, "message", s->message);
  F_U32(b, &n, "code", (uint32_t)s->code);
  ss__buf_putc(b, '}');
}

static void span(ss__buf *b, const Span *s) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_ID(b, &n, "traceId", s->trace_id);
  F_ID(b, &n, "spanId", s->span_id);
  F_STR(b, &n, "traceState", s->trace_state);
  F_ID(b, &n, "parentSpanId", s->parent_span_id);
  F_U32(b, &n, "flags", s->flags);
  F_STR(b, &n, "name", s->name);
  F_U32(b, &n, "kind", (uint32_t)s->kind);
  F_TIME(b, &n, "startTimeUnixNano", s->start_time_unix_nano);
  F_TIME(b, &n, "endTimeUnixNano", s->end_time_unix_nano);
  f_attrs(b, &n, s->attributes, s->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", s->dropped_attributes_count);
  if (s->n_events) {
    KEY(b, &n, "events");
    for (size_t i = 0; i < s->n_events; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      event(b, s->events[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_U32(b, &n, "droppedEventsCount", s->dropped_events_count);
  if (s->n_links) {
    KEY(b, &n, "links");
    for (size_t i = 0; i < s->n_links; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      link(b, s->links[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_U32(b, &n, "droppedLinksCount", s->dropped_links_count);
  if (s->status) {
    KEY(b, &n, "status");
    status(b, s->status);
  }
  ss__buf_putc(b, '}');
}

static void scope_spans(ss__buf *b, const ScopeSpans *ss) {
  int n = 0;
  ss__buf_putc(b, '{');
  if (ss->scope) {
    KEY(b, &n, "scope");
    scope(b, ss->scope);
  }
  if (ss->n_spans) {
    KEY(b, &n, "spans");
    for (size_t i = 0; i < ss->n_spans; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      span(b, ss->spans[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_STR(b, &n, "schemaUrl", ss->schema_url);
  ss__buf_putc(b, '}');
}

static void resource_spans(ss__buf *b, const ResourceSpans *rs) {
  int n = 0;
  ss__buf_putc(b, '{');
  if (rs->resource) {
    KEY(b, &n, "resource");
    resource(b, rs->resource);
  }
  if (rs->n_scope_spans) {
    KEY(b, &n, "scopeSpans");
    for (size_t i = 0; i < rs->n_scope_spans; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      scope_spans(b, rs->scope_spans[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_STR(b, &n, "schemaUrl", rs->schema_url);
  ss__buf_putc(b, '}');
}

/* Common tail of both entry points: on failure, leave the buffer as it was. */
static int finish(ss__buf *out, size_t start) {
  ss__buf_putc(out, '\n');
  if (ss__buf_error(out) == 0) return 0;
  out->len = start;
  return -ENOMEM;
}

int ss__json_traces(const Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req,
                    ss__buf *out) {
  size_t start = out->len;
  SS_BUF_LIT(out, "{\"resourceSpans\":[");
  for (size_t i = 0; i < req->n_resource_spans; i++) {
    if (i) ss__buf_putc(out, ',');
    resource_spans(out, req->resource_spans[i]);
  }
  SS_BUF_LIT(out, "]}");
  return finish(out, start);
}

/* ---- logs ---- */

static void log_record(ss__buf *b, const LogRecord *r) {
  int n = 0;
  ss__buf_putc(b, '{');
  F_TIME(b, &n, "timeUnixNano", r->time_unix_nano);
  F_TIME(b, &n, "observedTimeUnixNano", r->observed_time_unix_nano);
  F_U32(b, &n, "severityNumber", (uint32_t)r->severity_number);
  F_STR(b, &n, "severityText", r->severity_text);
  if (r->body) {
    KEY(b, &n, "body");
    any_value(b, r->body, 0);
  }
  f_attrs(b, &n, r->attributes, r->n_attributes);
  F_U32(b, &n, "droppedAttributesCount", r->dropped_attributes_count);
  F_U32(b, &n, "flags", r->flags);
  F_ID(b, &n, "traceId", r->trace_id);
  F_ID(b, &n, "spanId", r->span_id);
  F_STR(b, &n, "eventName", r->event_name);
  ss__buf_putc(b, '}');
}

static void scope_logs(ss__buf *b, const ScopeLogs *sl) {
  int n = 0;
  ss__buf_putc(b, '{');
  if (sl->scope) {
    KEY(b, &n, "scope");
    scope(b, sl->scope);
  }
  if (sl->n_log_records) {
    KEY(b, &n, "logRecords");
    for (size_t i = 0; i < sl->n_log_records; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      log_record(b, sl->log_records[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_STR(b, &n, "schemaUrl", sl->schema_url);
  ss__buf_putc(b, '}');
}

static void resource_logs(ss__buf *b, const ResourceLogs *rl) {
  int n = 0;
  ss__buf_putc(b, '{');
  if (rl->resource) {
    KEY(b, &n, "resource");
    resource(b, rl->resource);
  }
  if (rl->n_scope_logs) {
    KEY(b, &n, "scopeLogs");
    for (size_t i = 0; i < rl->n_scope_logs; i++) {
      ss__buf_putc(b, i ? ',' : '[');
      scope_logs(b, rl->scope_logs[i]);
    }
    ss__buf_putc(b, ']');
  }
  F_STR(b, &n, "schemaUrl", rl->schema_url);
  ss__buf_putc(b, '}');
}

int ss__json_logs(const Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest *req,
                  ss__buf *out) {
  size_t start = out->len;
  SS_BUF_LIT(out, "{\"resourceLogs\":[");
  for (size_t i = 0; i < req->n_resource_logs; i++) {
    if (i) ss__buf_putc(out, ',');
    resource_logs(out, req->resource_logs[i]);
  }
  SS_BUF_LIT(out, "]}");
  return finish(out, start);
}

/* ---- any message, by its descriptor (metrics) ----
 * The same rules as above, applied field by field from the protobuf-c descriptor: for
 * signals spanshim passes through without looking inside, so they need no hand-written
 * encoder. Slower than the hand-written ones (a descriptor walk per field). */

const uint8_t ss__otlp_not_hex_id[1];

int ss__otlp_is_id_field(const ProtobufCFieldDescriptor *f) {
  return f->type == PROTOBUF_C_TYPE_BYTES &&
         (strcmp(f->name, "trace_id") == 0 || strcmp(f->name, "span_id") == 0 ||
          strcmp(f->name, "parent_span_id") == 0);
}

/* "\"lowerCamelCase\":" of a snake_case field name, after a comma unless first. */
static void field_key(ss__buf *b, int *n, const char *name) {
  if ((*n)++) ss__buf_putc(b, ',');
  ss__buf_putc(b, '"');
  for (const char *p = name; *p; p++) {
    if (*p == '_' && p[1] >= 'a' && p[1] <= 'z') ss__buf_putc(b, (char)(*++p - 'a' + 'A'));
    else ss__buf_putc(b, *p);
  }
  SS_BUF_LIT(b, "\":");
}

static void any_message(ss__buf *b, const ProtobufCMessage *m, int depth);

/* One value of field f's type at p. */
static void field_value(ss__buf *b, const ProtobufCFieldDescriptor *f, const void *p,
                        int depth) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
  case PROTOBUF_C_TYPE_ENUM: ss__jw_i64(b, *(const int32_t *)p); break;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32: ss__jw_u64(b, *(const uint32_t *)p); break;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
    ss__buf_putc(b, '"');
    ss__jw_i64(b, *(const int64_t *)p);
    ss__buf_putc(b, '"');
    break;
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: json_u64_str(b, *(const uint64_t *)p); break;
  case PROTOBUF_C_TYPE_DOUBLE: ss__jw_double(b, *(const double *)p); break;
  case PROTOBUF_C_TYPE_FLOAT: ss__jw_double(b, *(const float *)p); break;
  case PROTOBUF_C_TYPE_BOOL:
    if (*(const protobuf_c_boolean *)p) SS_BUF_LIT(b, "true");
    else SS_BUF_LIT(b, "false");
    break;
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    ss__jw_str(b, s ? s : "", s ? strlen(s) : 0);
    break;
  }
  case PROTOBUF_C_TYPE_BYTES: {
    const ProtobufCBinaryData *d = p;
    if (ss__otlp_is_id_field(f)) ss__jw_hex(b, d->data, d->len);
    else ss__jw_base64(b, d->data, d->len);
    break;
  }
  case PROTOBUF_C_TYPE_MESSAGE: any_message(b, *(ProtobufCMessage *const *)p, depth + 1); break;
  }
}

size_t ss__pb_value_size(ProtobufCType t) {
  switch (t) {
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: return 8;
  case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
  case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
  case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
  case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
  case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
  default: return 4;
  }
}

/* Whether a singular proto3 field holds its default (and so is left out). */
static int is_default(const ProtobufCFieldDescriptor *f, const void *p) {
  switch (f->type) {
  case PROTOBUF_C_TYPE_STRING: {
    const char *s = *(char *const *)p;
    return s == NULL || *s == '\0';
  }
  case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len == 0;
  case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p == NULL;
  case PROTOBUF_C_TYPE_DOUBLE: return *(const double *)p == 0 && !signbit(*(const double *)p);
  case PROTOBUF_C_TYPE_FLOAT: return *(const float *)p == 0 && !signbit(*(const float *)p);
  case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)p;
  default:
    return ss__pb_value_size(f->type) == 8 ? *(const uint64_t *)p == 0 : *(const uint32_t *)p == 0;
  }
}

static void any_message(ss__buf *b, const ProtobufCMessage *m, int depth) {
  if (m == NULL || depth > SS_JSON_MAX_DEPTH * 2) {
    SS_BUF_LIT(b, "{}");
    return;
  }
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  int n = 0;
  ss__buf_putc(b, '{');
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    const void *p = base + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t count = *(const size_t *)(base + f->quantifier_offset);
      if (count == 0) continue;
      const char *arr = *(char *const *)p;
      field_key(b, &n, f->name);
      ss__buf_putc(b, '[');
      for (size_t k = 0; k < count; k++) {
        if (k) ss__buf_putc(b, ',');
        field_value(b, f, arr + k * ss__pb_value_size(f->type), depth);
      }
      ss__buf_putc(b, ']');
      continue;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
      if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) continue;
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
               f->type != PROTOBUF_C_TYPE_STRING) {
      if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) continue;
    } else if (is_default(f, p)) {
      continue;
    }
    field_key(b, &n, f->name);
    field_value(b, f, p, depth);
  }
  ss__buf_putc(b, '}');
}

int ss__json_metrics(const Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest *req,
                     ss__buf *out) {
  size_t start = out->len;
  SS_BUF_LIT(out, "{\"resourceMetrics\":[");
  for (size_t i = 0; i < req->n_resource_metrics; i++) {
    if (i) ss__buf_putc(out, ',');
    any_message(out, &req->resource_metrics[i]->base, 0);
  }
  SS_BUF_LIT(out, "]}");
  return finish(out, start);
}
