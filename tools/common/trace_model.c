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

/* ---- member lookup ---- */

/* Member `camel` of obj, else its snake_case spelling: the OTLP JSON encoding is written
 * in lowerCamelCase, and readers must also accept the original proto field names. */
static const ss__json *get(const ss__json *o, const char *camel) {
  const ss__json *j = ss__json_get(o, camel);
  if (j || !o) return j;
  char snake[64];
  size_t k = 0;
  int changed = 0;
  for (const char *c = camel; *c && k + 3 < sizeof(snake); c++) {
    if (*c >= 'A' && *c <= 'Z') {
      snake[k++] = '_';
      snake[k++] = (char)(*c - 'A' + 'a');
      changed = 1;
    } else {
      snake[k++] = *c;
    }
  }
  snake[k] = '\0';
  return changed ? ss__json_get(o, snake) : NULL;
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
  const ss__json *vals = get(arr, "values");
  for (size_t i = 0; i < ss__json_count(vals); i++) {
    const ss__json *item = ss__json_at(vals, i);
    const char *s = ss__json_str(get(item, "stringValue"), NULL);
    if (i) sb_add(b, " ", 1);
    if (s) sb_shell_word(b, s);
    else value_text(b, item, depth + 1);
  }
}

static void kvlist_text(sbuf *b, const ss__json *kv, int depth) {
  const ss__json *vals = get(kv, "values");
  sb_add(b, "{", 1);
  for (size_t i = 0; i < ss__json_count(vals); i++) {
    const ss__json *item = ss__json_at(vals, i);
    const char *k = ss__json_str(get(item, "key"), NULL);
    if (i) sb_add(b, ", ", 2);
    sb_str(b, k ? k : "?");
    sb_add(b, "=", 1);
    value_text(b, get(item, "value"), depth + 1);
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
  if ((x = get(v, "stringValue"))) sb_str(b, ss__json_str(x, NULL) ? x->u.s : "");
  else if ((x = get(v, "intValue"))) {
    if (ss__json_int64(x, &i) == 0) snprintf(tmp, sizeof(tmp), "%" PRId64, i);
    else snprintf(tmp, sizeof(tmp), "?");
    sb_str(b, tmp);
  } else if ((x = get(v, "boolValue")))
    sb_str(b, ss__json_is(x, SS_JSON_BOOL) && x->u.b ? "true" : "false");
  else if ((x = get(v, "doubleValue"))) number_text(b, x);
  else if ((x = get(v, "arrayValue"))) array_text(b, x, depth);
  else if ((x = get(v, "kvlistValue"))) kvlist_text(b, x, depth);
  else if ((x = get(v, "bytesValue")) && ss__json_str(x, NULL)) sb_str(b, x->u.s);
}

static int value_type(const ss__json *v, int64_t *i) {
  const ss__json *x;
  if ((x = get(v, "stringValue"))) return SS_TM_STR;
  if ((x = get(v, "intValue"))) return ss__json_int64(x, i) == 0 ? SS_TM_INT
                                                                          : SS_TM_OTHER;
  if ((x = get(v, "boolValue"))) {
    *i = ss__json_is(x, SS_JSON_BOOL) && x->u.b;
    return SS_TM_BOOL;
  }
  if (get(v, "doubleValue")) return SS_TM_DOUBLE;
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
    const ss__json *kv = ss__json_at(list, i), *v = get(kv, "value");
    size_t klen;
    const char *key = ss__json_str(get(kv, "key"), &klen);
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

static void events_free(ss__tm_event *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(e[i].name);
    attrs_free(e[i].attrs, e[i].n_attrs);
  }
  free(e);
}

static void span_free(ss__tm_span *s) {
  free(s->stack);
  free(s->exc_type);
  free(s->exc_message);
  free(s->name);
  free(s->status_message);
  attrs_free(s->attrs, s->n_attrs);
  events_free(s->events, s->n_events);
}

/* Copies a span's events. 0 or -ENOMEM (nothing kept). */
static int events_copy(const ss__json *list, ss__tm_event **out, size_t *n_out) {
  size_t n = ss__json_count(list);
  *out = NULL;
  *n_out = 0;
  if (!ss__json_is(list, SS_JSON_ARRAY) || n == 0) return 0;
  ss__tm_event *e = calloc(n, sizeof(*e));
  if (!e) return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const ss__json *je = ss__json_at(list, i);
    size_t len;
    const char *name = ss__json_str(get(je, "name"), &len);
    e[i].name = name ? dupn(name, len) : dupn("", 0);
    if (ss__json_uint64(get(je, "timeUnixNano"), &e[i].time_ns) < 0) e[i].time_ns = 0;
    if (!e[i].name || attrs_copy(get(je, "attributes"), &e[i].attrs, &e[i].n_attrs) < 0) {
      events_free(e, i + 1);
      return -ENOMEM;
    }
  }
  *out = e;
  *n_out = n;
  return 0;
}

/* A copy of attribute `key`'s text (NULL when absent); *oom set when the copy failed. */
static char *attr_dup(const ss__tm_attr *a, size_t n, const char *key, int *oom) {
  const ss__tm_attr *x = ss__tm_attr_find(a, n, key);
  if (!x) return NULL;
  char *d = dupn(x->text, strlen(x->text));
  if (!d) *oom = 1;
  return d;
}

/* Exception events and log records: named `exception` (older semconv) or
 * `*.exception` (http.client.request.exception, ...), or carrying exception.type or
 * exception.stacktrace. */
static int is_exception(const char *name, const ss__tm_attr *a, size_t n) {
  size_t len = name ? strlen(name) : 0;
  if (len >= 9 && strcmp(name + len - 9, "exception") == 0) return 1;
  return ss__tm_attr_find(a, n, "exception.type") ||
         ss__tm_attr_find(a, n, "exception.stacktrace");
}

/* The span's stack, type and message from its first exception event. 0 or -ENOMEM. */
static int span_exception(ss__tm_span *s) {
  int oom = 0;
  for (size_t i = 0; i < s->n_events; i++) {
    const ss__tm_event *e = &s->events[i];
    if (!is_exception(e->name, e->attrs, e->n_attrs)) continue;
    s->stack = attr_dup(e->attrs, e->n_attrs, "exception.stacktrace", &oom);
    s->exc_type = attr_dup(e->attrs, e->n_attrs, "exception.type", &oom);
    s->exc_message = attr_dup(e->attrs, e->n_attrs, "exception.message", &oom);
    break;
  }
  return oom ? -ENOMEM : 0;
}

/* Fills *s from one OTLP JSON Span. Returns 0, 1 if the span has no usable ids, or
 * -ENOMEM. */
static int span_copy(const ss__json *js, ss__tm_span *s) {
  memset(s, 0, sizeof(*s));
  if (hex_id(get(js, "traceId"), 32, s->trace_id) < 0 ||
      hex_id(get(js, "spanId"), 16, s->span_id) < 0)
    return 1;
  if (hex_id(get(js, "parentSpanId"), 16, s->parent_id) < 0) s->parent_id[0] = 0;
  size_t nlen;
  const char *name = ss__json_str(get(js, "name"), &nlen);
  s->name = name ? dupn(name, nlen) : dupn("", 0);
  s->kind = enum_value(get(js, "kind"), kind_names, 6);
  const ss__json *st = get(js, "status");
  s->status = enum_value(get(st, "code"), status_names, 3);
  const char *msg = ss__json_str(get(st, "message"), &nlen);
  if (msg && nlen) s->status_message = dupn(msg, nlen);
  if (ss__json_uint64(get(js, "startTimeUnixNano"), &s->start_ns) < 0)
    s->start_ns = 0;
  if (ss__json_uint64(get(js, "endTimeUnixNano"), &s->end_ns) < 0) s->end_ns = 0;
  if (!s->name || (msg && nlen && !s->status_message) ||
      attrs_copy(get(js, "attributes"), &s->attrs, &s->n_attrs) < 0 ||
      events_copy(get(js, "events"), &s->events, &s->n_events) < 0 ||
      span_exception(s) < 0) {
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

/* ---- resources, shared when identical ---- */

static uint64_t fnv(uint64_t h, const char *s) {
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return (h ^ 0xff) * 1099511628211ull;  /* a separator, so "ab","c" differs from "a","bc" */
}

static uint64_t res_hash(const ss__tm_resource *r) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < r->n_attrs; i++) h = fnv(fnv(h, r->attrs[i].key), r->attrs[i].text);
  return h;
}

static int res_equal(const ss__tm_resource *a, const ss__tm_resource *b) {
  if (a->hash != b->hash || a->n_attrs != b->n_attrs) return 0;
  for (size_t i = 0; i < a->n_attrs; i++)
    if (a->attrs[i].type != b->attrs[i].type || strcmp(a->attrs[i].key, b->attrs[i].key) ||
        strcmp(a->attrs[i].text, b->attrs[i].text))
      return 0;
  return 1;
}

/* (Re)builds the table for the resources in m->res; 0 or -ENOMEM (table left empty). */
static int res_tab_build(ss__tm *m, size_t cap) {
  size_t *t = calloc(cap, sizeof(*t));
  free(m->res_tab);
  m->res_tab = t;
  m->res_tab_cap = t ? cap : 0;
  if (!t) return -ENOMEM;
  for (size_t i = 0; i < m->n_res; i++) {
    size_t k = m->res[i]->hash & (cap - 1);
    while (t[k]) k = (k + 1) & (cap - 1);
    t[k] = i + 1;
  }
  return 0;
}

/* The resource equal to r already in m, or NULL. */
static ss__tm_resource *res_lookup(const ss__tm *m, const ss__tm_resource *r) {
  if (!m->res_tab_cap) return NULL;
  for (size_t k = r->hash & (m->res_tab_cap - 1); m->res_tab[k];
       k = (k + 1) & (m->res_tab_cap - 1))
    if (res_equal(m->res[m->res_tab[k] - 1], r)) return m->res[m->res_tab[k] - 1];
  return NULL;
}

static void res_free(ss__tm_resource *r) {
  attrs_free(r->attrs, r->n_attrs);
  free(r);
}

static int push_resource(ss__tm *m, const ss__json *jres, ss__tm_resource **out) {
  ss__tm_resource *r = calloc(1, sizeof(*r)), *old;
  if (!r) return -ENOMEM;
  if (attrs_copy(get(jres, "attributes"), &r->attrs, &r->n_attrs) < 0) {
    free(r);
    return -ENOMEM;
  }
  r->hash = res_hash(r);
  if ((old = res_lookup(m, r)) != NULL) {
    res_free(r);
    *out = old;
    return 0;
  }
  if (m->n_res == m->cap_res) {
    size_t cap = m->cap_res ? m->cap_res * 2 : 16;
    ss__tm_resource **p = realloc(m->res, cap * sizeof(*p));
    if (!p) {
      res_free(r);
      return -ENOMEM;
    }
    m->res = p;
    m->cap_res = cap;
  }
  r->idx = m->n_res;
  m->res[m->n_res++] = r;
  if (m->n_res * 2 > m->res_tab_cap) {
    if (res_tab_build(m, m->res_tab_cap ? m->res_tab_cap * 2 : 64) < 0) {
      res_free(m->res[--m->n_res]);
      return -ENOMEM;
    }
  } else {
    size_t k = r->hash & (m->res_tab_cap - 1);
    while (m->res_tab[k]) k = (k + 1) & (m->res_tab_cap - 1);
    m->res_tab[k] = m->n_res;
  }
  *out = r;
  return 0;
}

/* Spans of one ResourceSpans. */
static int add_resource_spans(ss__tm *m, const ss__json *rs, size_t lineno) {
  ss__tm_resource *res;
  int rc = push_resource(m, get(rs, "resource"), &res);
  if (rc < 0) return rc;
  const ss__json *sss = get(rs, "scopeSpans");
  for (size_t i = 0; i < ss__json_count(sss); i++) {
    const ss__json *spans = get(ss__json_at(sss, i), "spans");
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

/* ---- exception log records ---- */

static void exc_free(ss__tm_exception *e) {
  free(e->type);
  free(e->message);
  free(e->stack);
}

/* Keeps one log record if it is an exception naming a span. 0 or -ENOMEM. */
static int add_log_record(ss__tm *m, const ss__json *lr) {
  ss__tm_exception e;
  memset(&e, 0, sizeof(e));
  if (hex_id(get(lr, "traceId"), 32, e.trace_id) < 0 ||
      hex_id(get(lr, "spanId"), 16, e.span_id) < 0)
    return 0;
  ss__tm_attr *a;
  size_t n;
  if (attrs_copy(get(lr, "attributes"), &a, &n) < 0) return -ENOMEM;
  const char *name = ss__json_str(get(lr, "eventName"), NULL);
  int oom = 0, rc = 0;
  if (is_exception(name, a, n)) {
    e.type = attr_dup(a, n, "exception.type", &oom);
    e.message = attr_dup(a, n, "exception.message", &oom);
    e.stack = attr_dup(a, n, "exception.stacktrace", &oom);
    if (!oom && m->n_exc == m->cap_exc) {
      size_t cap = m->cap_exc ? m->cap_exc * 2 : 16;
      ss__tm_exception *p = realloc(m->exc, cap * sizeof(*p));
      if (p) {
        m->exc = p;
        m->cap_exc = cap;
      } else {
        oom = 1;
      }
    }
    if (oom) {
      exc_free(&e);
      rc = -ENOMEM;
    } else {
      m->exc[m->n_exc++] = e;
    }
  }
  attrs_free(a, n);
  return rc;
}

/* The count a shim drop report carries (its attribute named like its event), or 0. */
static size_t drop_report_count(const ss__json *lr, const char *event) {
  const ss__json *as = get(lr, "attributes");
  for (size_t i = 0; i < ss__json_count(as); i++) {
    const ss__json *a = ss__json_at(as, i);
    const char *key = ss__json_str(get(a, "key"), NULL);
    const ss__json *x = get(get(a, "value"), "intValue");
    int64_t v;
    if (key && strcmp(key, event) == 0 && x && ss__json_int64(x, &v) == 0 && v > 0)
      return (size_t)v;
  }
  return 0;
}

/* A shim drop report (spanshim.spans.dropped / spanshim.logs.dropped) is not a log
 * record of the app's: its count goes to n_shim_*_dropped. 1 if lr is one. */
static int add_drop_report(ss__tm *m, const ss__json *lr) {
  const char *name = ss__json_str(get(lr, "eventName"), NULL);
  if (!name) return 0;
  if (strcmp(name, "spanshim.spans.dropped") == 0)
    m->n_shim_spans_dropped += drop_report_count(lr, name);
  else if (strcmp(name, "spanshim.logs.dropped") == 0)
    m->n_shim_logs_dropped += drop_report_count(lr, name);
  else
    return 0;
  return 1;
}

static int add_logs(ss__tm *m, const ss__json *rls) {
  for (size_t i = 0; i < ss__json_count(rls); i++) {
    const ss__json *sls = get(ss__json_at(rls, i), "scopeLogs");
    for (size_t k = 0; k < ss__json_count(sls); k++) {
      const ss__json *lrs = get(ss__json_at(sls, k), "logRecords");
      for (size_t j = 0; j < ss__json_count(lrs); j++) {
        if (add_drop_report(m, ss__json_at(lrs, j))) continue;
        m->n_log_records++;
        int rc = add_log_record(m, ss__json_at(lrs, j));
        if (rc < 0) return rc;
      }
    }
  }
  return 0;
}

static int cmp_exc(const void *a, const void *b) {
  const ss__tm_exception *x = a, *y = b;
  int c = strcmp(x->trace_id, y->trace_id);
  return c ? c : strcmp(x->span_id, y->span_id);
}

int ss__tm_link_exceptions(ss__tm *m) {
  if (m->n_exc == 0) return 0;
  /* m->exc stays in input order (documented); look up in a sorted copy. */
  ss__tm_exception *sorted = malloc(m->n_exc * sizeof(*sorted));
  if (!sorted) return -ENOMEM;
  memcpy(sorted, m->exc, m->n_exc * sizeof(*sorted));
  qsort(sorted, m->n_exc, sizeof(*sorted), cmp_exc);
  int oom = 0;
  for (size_t i = 0; i < m->n_spans; i++) {
    ss__tm_span *s = &m->spans[i];
    if (s->stack || s->status != 2) continue;
    ss__tm_exception key;
    memcpy(key.trace_id, s->trace_id, sizeof(key.trace_id));
    memcpy(key.span_id, s->span_id, sizeof(key.span_id));
    const ss__tm_exception *e = bsearch(&key, sorted, m->n_exc, sizeof(*sorted), cmp_exc);
    if (!e) continue;
    if (e->stack && !(s->stack = dupn(e->stack, strlen(e->stack)))) oom = 1;
    if (!s->exc_type && e->type && !(s->exc_type = dupn(e->type, strlen(e->type)))) oom = 1;
    if (!s->exc_message && e->message &&
        !(s->exc_message = dupn(e->message, strlen(e->message))))
      oom = 1;
  }
  free(sorted);
  return oom ? -ENOMEM : 0;
}

static void rollback(ss__tm *m, size_t n_spans, size_t n_res, size_t n_exc) {
  while (m->n_spans > n_spans) span_free(&m->spans[--m->n_spans]);
  while (m->n_exc > n_exc) exc_free(&m->exc[--m->n_exc]);
  if (m->n_res > n_res) {
    while (m->n_res > n_res) res_free(m->res[--m->n_res]);
    if (res_tab_build(m, m->res_tab_cap ? m->res_tab_cap : 64) < 0) {
      /* Without a table resources are no longer shared; nothing is wrong otherwise. */
    }
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
  const ss__json *rss = get(doc, "resourceSpans");
  const ss__json *rls = get(doc, "resourceLogs");
  const ss__json *rms = get(doc, "resourceMetrics");
  size_t n_spans = m->n_spans, n_res = m->n_res, n_exc = m->n_exc, n_logs = m->n_log_records;
  size_t n_sd = m->n_shim_spans_dropped, n_ld = m->n_shim_logs_dropped;
  int rc = 0;
  if (ss__json_is(rms, SS_JSON_ARRAY) && !rss && !rls) {
    m->n_metrics_lines++;
    rc = 1;
  } else if (ss__json_is(rls, SS_JSON_ARRAY) && !rss) {
    rc = add_logs(m, rls);
    if (rc == 0) rc = 1;
  } else if (!ss__json_is(rss, SS_JSON_ARRAY)) {
    if (errn)
      snprintf(err, errn, "%s",
               ss__json_is(doc, SS_JSON_OBJECT)
                   ? "no \"resourceSpans\", \"resourceLogs\" or \"resourceMetrics\" array"
                   : "not a JSON object");
    rc = -EINVAL;
    goto out;
  } else {
    for (size_t i = 0; i < ss__json_count(rss) && rc == 0; i++)
      rc = add_resource_spans(m, ss__json_at(rss, i), lineno);
  }
  if (rc < 0) {
    rollback(m, n_spans, n_res, n_exc);
    m->n_log_records = n_logs;
    m->n_shim_spans_dropped = n_sd;
    m->n_shim_logs_dropped = n_ld;
    if (errn) snprintf(err, errn, "out of memory");
  }
out:
  ss__json_free(doc);
  return rc;
}

void ss__tm_init(ss__tm *m) { memset(m, 0, sizeof(*m)); }

void ss__tm_free(ss__tm *m) {
  rollback(m, 0, 0, 0);
  free(m->spans);
  free(m->res);
  free(m->exc);
  free(m->res_tab);
  memset(m, 0, sizeof(*m));
}

void ss__tm_keep(ss__tm *m, const unsigned char *keep) {
  size_t k = 0;
  for (size_t i = 0; i < m->n_spans; i++) {
    if (keep[i]) m->spans[k++] = m->spans[i];
    else span_free(&m->spans[i]);
  }
  m->n_spans = k;
}

uint64_t ss__tm_end(const ss__tm_span *s) {
  return s->end_ns >= s->start_ns ? s->end_ns : s->start_ns;
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
