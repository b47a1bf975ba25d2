/* trace_model.c - OTLP JSON lines into flat spans; see trace_model.h. */
#include "tools/common/trace_model.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/json.h"

/* ---- small string builder (local: the model must not depend on other tools' code) ---- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 32;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Returns the built string (never NULL unless out of memory); the builder is emptied. */
static char *sb_take(sbuf *b) {
  if (!b->oom && !b->p) sb_add(b, "", 0);
  char *p = b->oom ? NULL : b->p;
  if (b->oom) free(b->p);
  memset(b, 0, sizeof(*b));
  return p;
}

static char *dupn(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* ---- attribute values ---- */

/* Items of a string array are shown the way a shell would need them, so
 * process.command_args reads as the command line that ran. */
static void sb_shell_word(sbuf *b, const char *s) {
  int plain = *s != '\0';
  for (const char *c = s; *c && plain; c++)
    plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("_./:=@%+,-", *c) != NULL;
  if (plain) { sb_str(b, s); return; }
  sb_add(b, "'", 1);
  for (const char *c = s; *c; c++) {
    if (*c == '\'') sb_str(b, "'\\''");
    else sb_add(b, c, 1);
  }
  sb_add(b, "'", 1);
}

static void value_text(sbuf *b, const ss__json *v, int depth);

static void array_text(sbuf *b, const ss__json *arr, int depth) {
  const ss__json *vals = ss__json_get(arr, "values");
  for (size_t i = 0; i < ss__json_count(vals); i++) {
    const ss__json *item = ss__json_at(vals, i);
    const char *s = ss__json_str(ss__json_get(item, "stringValue"), NULL);
    if (i) sb_add(b, " ", 1);
    if (s) sb_shell_word(b, s);
    else value_text(b, item, depth + 1);
  }
}

static void kvlist_text(sbuf *b, const ss__json *kv, int depth) {
  const ss__json *vals = ss__json_get(kv, "values");
  sb_add(b, "{", 1);
  for (size_t i = 0; i < ss__json_count(vals); i++) {
    const ss__json *item = ss__json_at(vals, i);
    const char *k = ss__json_str(ss__json_get(item, "key"), NULL);
    if (i) sb_add(b, ", ", 2);
    sb_str(b, k ? k : "?");
    sb_add(b, "=", 1);
    value_text(b, ss__json_get(item, "value"), depth + 1);
  }
  sb_add(b, "}", 1);
}

static void number_text(sbuf *b, const ss__json *v) {
  char tmp[64];
  if (ss__json_is(v, SS_JSON_NUMBER)) {
    snprintf(tmp, sizeof(tmp), "%.15g", v->u.num.d);
    sb_str(b, tmp);
  } else if (ss__json_is(v, SS_JSON_STRING)) {
    sb_str(b, v->u.s);  /* proto3 JSON: "NaN", "Infinity", or a quoted number */
  }
}

/* Text of an AnyValue; nesting is cut off so hostile data cannot recurse deeply. */
static void value_text(sbuf *b, const ss__json *v, int depth) {
  const ss__json *x;
  int64_t i;
  char tmp[32];
  if (depth > 8) { sb_str(b, "…"); return; }
  if ((x = ss__json_get(v, "stringValue"))) sb_str(b, ss__json_str(x, NULL) ? x->u.s : "");
  else if ((x = ss__json_get(v, "intValue"))) {
    if (ss__json_int64(x, &i) == 0) snprintf(tmp, sizeof(tmp), "%" PRId64, i);
    else snprintf(tmp, sizeof(tmp), "?");
    sb_str(b, tmp);
  } else if ((x = ss__json_get(v, "boolValue")))
    sb_str(b, ss__json_is(x, SS_JSON_BOOL) && x->u.b ? "true" : "false");
  else if ((x = ss__json_get(v, "doubleValue"))) number_text(b, x);
  else if ((x = ss__json_get(v, "arrayValue"))) array_text(b, x, depth);
  else if ((x = ss__json_get(v, "kvlistValue"))) kvlist_text(b, x, depth);
  else if ((x = ss__json_get(v, "bytesValue")) && ss__json_str(x, NULL)) sb_str(b, x->u.s);
}

static int value_type(const ss__json *v, int64_t *i) {
  const ss__json *x;
  if ((x = ss__json_get(v, "stringValue"))) return SS_TM_STR;
  if ((x = ss__json_get(v, "intValue"))) return ss__json_int64(x, i) == 0 ? SS_TM_INT
                                                                          : SS_TM_OTHER;
  if ((x = ss__json_get(v, "boolValue"))) {
    *i = ss__json_is(x, SS_JSON_BOOL) && x->u.b;
    return SS_TM_BOOL;
  }
  if (ss__json_get(v, "doubleValue")) return SS_TM_DOUBLE;
  return SS_TM_OTHER;
}

static void attrs_free(ss__tm_attr *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(a[i].key);
    free(a[i].text);
  }
  free(a);
}

/* Copies an OTLP KeyValue list; entries without a string key are skipped. */
static int attrs_copy(const ss__json *list, ss__tm_attr **out, size_t *n_out) {
  size_t n = ss__json_count(list), k = 0;
  *out = NULL;
  *n_out = 0;
  if (!ss__json_is(list, SS_JSON_ARRAY) || n == 0) return 0;
  ss__tm_attr *a = calloc(n, sizeof(*a));
  if (!a) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const ss__json *kv = ss__json_at(list, i), *v = ss__json_get(kv, "value");
    size_t klen;
    const char *key = ss__json_str(ss__json_get(kv, "key"), &klen);
    if (!key) continue;
    sbuf b = {0};
    value_text(&b, v, 0);
    a[k].type = value_type(v, &a[k].i);
    a[k].key = dupn(key, klen);
    a[k].text = sb_take(&b);
    if (!a[k].key || !a[k].text) {
      attrs_free(a, k + 1);
      return -ENOMEM;
    }
    k++;
  }
  *out = a;
  *n_out = k;
  return 0;
}

/* ---- spans ---- */

/* Copies exactly `n` hex digits (lower-cased) into out[n+1]; 0, or -1 if not that. */
static int hex_id(const ss__json *j, size_t n, char *out) {
  size_t len;
  const char *s = ss__json_str(j, &len);
  if (!s || len != n) return -1;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'F') c = (char)(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
    out[i] = c;
  }
  out[n] = '\0';
  return strspn(out, "0") == n ? -1 : 0;  /* all-zero ids are invalid in W3C and OTLP */
}

static const char *const kind_names[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                         "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                         "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
static const char *const status_names[] = {"STATUS_CODE_UNSET", "STATUS_CODE_OK",
                                           "STATUS_CODE_ERROR"};

/* An OTLP enum: its number, or (proto3 JSON) its name. */
static int enum_value(const ss__json *j, const char *const *names, int n) {
  int64_t v;
  if (ss__json_int64(j, &v) == 0) return v >= 0 && v < 256 ? (int)v : 0;
  const char *s = ss__json_str(j, NULL);
  for (int i = 0; s && i < n; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return 0;
}

static void span_free(ss__tm_span *s) {
  free(s->stack);
  free(s->name);
  free(s->status_message);
  attrs_free(s->attrs, s->n_attrs);
}

/* The exception.stacktrace of a span's `exception` event, copied; NULL when none. */
static char *exception_stack(const ss__json *js) {
  const ss__json *evs = ss__json_get(js, "events"), *ev;
  for (size_t i = 0; evs && (ev = ss__json_at(evs, i)) != NULL; i++) {
    size_t n;
    const char *name = ss__json_str(ss__json_get(ev, "name"), &n);
    if (!name || n != 9 || memcmp(name, "exception", 9) != 0) continue;
    const ss__json *attrs = ss__json_get(ev, "attributes"), *a;
    for (size_t k = 0; attrs && (a = ss__json_at(attrs, k)) != NULL; k++) {
      const char *key = ss__json_str(ss__json_get(a, "key"), &n);
      if (!key || n != 20 || memcmp(key, "exception.stacktrace", 20) != 0) continue;
      const char *v = ss__json_str(ss__json_get(ss__json_get(a, "value"), "stringValue"), &n);
      return v ? dupn(v, n) : NULL;
    }
  }
  return NULL;
}

/* Fills *s from one OTLP JSON Span. Returns 0, 1 if the span has no usable ids, or
 * -ENOMEM. */
static int span_copy(const ss__json *js, ss__tm_span *s) {
  memset(s, 0, sizeof(*s));
  if (hex_id(ss__json_get(js, "traceId"), 32, s->trace_id) < 0 ||
      hex_id(ss__json_get(js, "spanId"), 16, s->span_id) < 0)
    return 1;
  if (hex_id(ss__json_get(js, "parentSpanId"), 16, s->parent_id) < 0) s->parent_id[0] = 0;
  size_t nlen;
  const char *name = ss__json_str(ss__json_get(js, "name"), &nlen);
  s->name = name ? dupn(name, nlen) : dupn("", 0);
  s->kind = enum_value(ss__json_get(js, "kind"), kind_names, 6);
  const ss__json *st = ss__json_get(js, "status");
  s->status = enum_value(ss__json_get(st, "code"), status_names, 3);
  const char *msg = ss__json_str(ss__json_get(st, "message"), &nlen);
  if (msg && nlen) s->status_message = dupn(msg, nlen);
  if (ss__json_uint64(ss__json_get(js, "startTimeUnixNano"), &s->start_ns) < 0)
    s->start_ns = 0;
  if (ss__json_uint64(ss__json_get(js, "endTimeUnixNano"), &s->end_ns) < 0) s->end_ns = 0;
  s->stack = exception_stack(js);
  if (!s->name || (msg && nlen && !s->status_message) ||
      attrs_copy(ss__json_get(js, "attributes"), &s->attrs, &s->n_attrs) < 0) {
    span_free(s);
    return -ENOMEM;
  }
  return 0;
}

static int push_span(ss__tm *m, const ss__tm_span *s) {
  if (m->n_spans == m->cap_spans) {
    size_t cap = m->cap_spans ? m->cap_spans * 2 : 64;
    ss__tm_span *p = realloc(m->spans, cap * sizeof(*p));
    if (!p) return -ENOMEM;
    m->spans = p;
    m->cap_spans = cap;
  }
  m->spans[m->n_spans++] = *s;
  return 0;
}

static int push_resource(ss__tm *m, const ss__json *jres, ss__tm_resource **out) {
  if (m->n_res == m->cap_res) {
    size_t cap = m->cap_res ? m->cap_res * 2 : 16;
    ss__tm_resource **p = realloc(m->res, cap * sizeof(*p));
    if (!p) return -ENOMEM;
    m->res = p;
    m->cap_res = cap;
  }
  ss__tm_resource *r = calloc(1, sizeof(*r));
  if (!r) return -ENOMEM;
  if (attrs_copy(ss__json_get(jres, "attributes"), &r->attrs, &r->n_attrs) < 0) {
    free(r);
    return -ENOMEM;
  }
  m->res[m->n_res++] = r;
  *out = r;
  return 0;
}

/* Spans of one ResourceSpans. */
static int add_resource_spans(ss__tm *m, const ss__json *rs, size_t lineno) {
  ss__tm_resource *res;
  int rc = push_resource(m, ss__json_get(rs, "resource"), &res);
  if (rc < 0) return rc;
  const ss__json *sss = ss__json_get(rs, "scopeSpans");
  for (size_t i = 0; i < ss__json_count(sss); i++) {
    const ss__json *spans = ss__json_get(ss__json_at(sss, i), "spans");
    for (size_t k = 0; k < ss__json_count(spans); k++) {
      ss__tm_span s;
      if (m->max_spans && m->n_spans >= m->max_spans) {
        m->n_dropped++;
        continue;
      }
      rc = span_copy(ss__json_at(spans, k), &s);
      if (rc < 0) return rc;
      if (rc == 1) {
        m->n_invalid++;
        continue;
      }
      s.res = res;
      s.line = lineno;
      if (push_span(m, &s) < 0) {
        span_free(&s);
        return -ENOMEM;
      }
    }
  }
  return 0;
}

static void count_logs(ss__tm *m, const ss__json *rls) {
  for (size_t i = 0; i < ss__json_count(rls); i++) {
    const ss__json *sls = ss__json_get(ss__json_at(rls, i), "scopeLogs");
    for (size_t k = 0; k < ss__json_count(sls); k++)
      m->n_log_records += ss__json_count(ss__json_get(ss__json_at(sls, k), "logRecords"));
  }
}

static void rollback(ss__tm *m, size_t n_spans, size_t n_res) {
  while (m->n_spans > n_spans) span_free(&m->spans[--m->n_spans]);
  while (m->n_res > n_res) {
    ss__tm_resource *r = m->res[--m->n_res];
    attrs_free(r->attrs, r->n_attrs);
    free(r);
  }
}

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
  return 1;
}

int ss__tm_add_line(ss__tm *m, const char *line, size_t len, size_t lineno, char *err,
                    size_t errn) {
  m->n_lines++;
  if (errn) err[0] = '\0';
  if (is_blank(line, len)) return 1;
  ss__json *doc = ss__json_parse(line, len, err, errn);
  if (!doc) return -EINVAL;
  const ss__json *rss = ss__json_get(doc, "resourceSpans");
  const ss__json *rls = ss__json_get(doc, "resourceLogs");
  int rc = 0;
  if (ss__json_is(rls, SS_JSON_ARRAY) && !rss) {
    count_logs(m, rls);
    rc = 1;
  } else if (!ss__json_is(rss, SS_JSON_ARRAY)) {
    if (errn)
      snprintf(err, errn, "%s", ss__json_is(doc, SS_JSON_OBJECT)
                                    ? "no \"resourceSpans\" or \"resourceLogs\" array"
                                    : "not a JSON object");
    rc = -EINVAL;
  } else {
    size_t n_spans = m->n_spans, n_res = m->n_res;
    for (size_t i = 0; i < ss__json_count(rss) && rc == 0; i++)
      rc = add_resource_spans(m, ss__json_at(rss, i), lineno);
    if (rc < 0) {
      rollback(m, n_spans, n_res);
      if (errn) snprintf(err, errn, "out of memory");
    }
  }
  ss__json_free(doc);
  return rc;
}

void ss__tm_init(ss__tm *m) { memset(m, 0, sizeof(*m)); }

void ss__tm_free(ss__tm *m) {
  rollback(m, 0, 0);
  free(m->spans);
  free(m->res);
  memset(m, 0, sizeof(*m));
}

const ss__tm_attr *ss__tm_attr_find(const ss__tm_attr *a, size_t n, const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(a[i].key, key) == 0) return &a[i];
  return NULL;
}

const ss__tm_attr *ss__tm_span_attr(const ss__tm_span *s, const char *key) {
  return ss__tm_attr_find(s->attrs, s->n_attrs, key);
}

const ss__tm_attr *ss__tm_res_attr(const ss__tm_resource *r, const char *key) {
  return ss__tm_attr_find(r->attrs, r->n_attrs, key);
}
