/* triage.c - filters, the RED table and OTLP JSON of matching spans; see triage.h. */
#include "tools/spanshim/triage.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/buf.h"
#include "tools/common/json.h"
#include "tools/common/otlp_json.h"
#include "tools/common/waterfall.h"

/* ---- traces ---- */

static int cmp_by_trace(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  int c = strcmp(x->trace_id, y->trace_id);
  if (c) return c;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return x < y ? -1 : x > y;  /* input order */
}

static int cmp_by_start(const void *a, const void *b) {
  const ss__trace *x = a, *y = b;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return strcmp(x->sp[0]->trace_id, y->sp[0]->trace_id);
}

int ss__traces_build(const ss__tm *m, ss__traces *out) {
  memset(out, 0, sizeof(*out));
  size_t n = m->n_spans, nt = 0;
  out->sp = malloc((n ? n : 1) * sizeof(*out->sp));
  out->t = malloc((n ? n : 1) * sizeof(*out->t));
  if (!out->sp || !out->t) {
    ss__traces_free(out);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) out->sp[i] = &m->spans[i];
  qsort(out->sp, n, sizeof(*out->sp), cmp_by_trace);
  for (size_t i = 0; i < n;) {
    ss__trace *t = &out->t[nt++];
    size_t j = i;
    t->sp = &out->sp[i];
    t->start_ns = UINT64_MAX;
    t->end_ns = 0;
    t->errors = 0;
    for (; j < n && strcmp(out->sp[j]->trace_id, out->sp[i]->trace_id) == 0; j++) {
      const ss__tm_span *s = out->sp[j];
      if (s->start_ns < t->start_ns) t->start_ns = s->start_ns;
      if (ss__tm_end(s) > t->end_ns) t->end_ns = ss__tm_end(s);
      t->errors += s->status == 2;
    }
    t->n = j - i;
    i = j;
  }
  out->n = nt;
  qsort(out->t, nt, sizeof(*out->t), cmp_by_start);
  return 0;
}

void ss__traces_free(ss__traces *t) {
  free(t->sp);
  free(t->t);
  memset(t, 0, sizeof(*t));
}

/* ---- filters ---- */

int ss__filter_active(const ss__filter *f) {
  return f->errors || f->slower_ns || f->service || f->trace || f->grep || f->limit;
}

static int span_greps(const ss__tm_span *s, const char *text) {
  if (strcasestr(s->name, text)) return 1;
  if (s->status_message && strcasestr(s->status_message, text)) return 1;
  for (size_t i = 0; i < s->n_attrs; i++)
    if (strcasestr(s->attrs[i].text, text)) return 1;
  return 0;
}

static int trace_matches(const ss__trace *t, const ss__filter *f) {
  int err = !f->errors, slow = !f->slower_ns, svc = !f->service, grep = !f->grep;
  if (f->trace && strncasecmp(t->sp[0]->trace_id, f->trace, strlen(f->trace)) != 0) return 0;
  for (size_t i = 0; i < t->n && !(err && slow && svc && grep); i++) {
    const ss__tm_span *s = t->sp[i];
    err = err || s->status == 2;
    slow = slow || ss__tm_end(s) - s->start_ns >= f->slower_ns;
    if (!svc) {
      const ss__tm_attr *a = ss__tm_res_attr(s->res, "service.name");
      svc = a && strcmp(a->text, f->service) == 0;
    }
    grep = grep || span_greps(s, f->grep);
  }
  return err && slow && svc && grep;
}

long ss__select(ss__tm *m, const ss__filter *f) {
  ss__traces ts;
  if (ss__traces_build(m, &ts) < 0) return -ENOMEM;
  unsigned char *keep = calloc(m->n_spans ? m->n_spans : 1, 1);
  if (!keep) {
    ss__traces_free(&ts);
    return -ENOMEM;
  }
  long kept = 0;
  for (size_t i = 0; i < ts.n && (!f->limit || (size_t)kept < f->limit); i++) {
    if (!trace_matches(&ts.t[i], f)) continue;
    kept++;
    for (size_t k = 0; k < ts.t[i].n; k++) keep[ts.t[i].sp[k] - m->spans] = 1;
  }
  ss__traces_free(&ts);
  ss__tm_keep(m, keep);
  free(keep);
  return kept;
}

/* ---- RED ---- */

static const char *service_of(const ss__tm_span *s) {
  const ss__tm_attr *a = ss__tm_res_attr(s->res, "service.name");
  return a ? a->text : "unknown_service";
}

static int cmp_red(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  int c = strcmp(service_of(x), service_of(y));
  if (!c) c = strcmp(x->name, y->name);
  if (!c) c = (x->kind > y->kind) - (x->kind < y->kind);
  if (c) return c;
  uint64_t dx = ss__tm_end(x) - x->start_ns, dy = ss__tm_end(y) - y->start_ns;
  return dx < dy ? -1 : dx > dy;
}

/* Nearest-rank percentile q (0..1] of n sorted spans. */
static uint64_t pct(const ss__tm_span *const *sp, size_t n, double q) {
  size_t rank = (size_t)(q * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return ss__tm_end(sp[rank - 1]) - sp[rank - 1]->start_ns;
}

int ss__red(const ss__tm *m, ss__red_row **rows, size_t *n_rows, double *window_s) {
  size_t n = m->n_spans, k = 0;
  const ss__tm_span **sp = malloc((n ? n : 1) * sizeof(*sp));
  ss__red_row *r = malloc((n ? n : 1) * sizeof(*r));
  *rows = NULL;
  *n_rows = 0;
  if (!sp || !r) {
    free(sp);
    free(r);
    return -ENOMEM;
  }
  uint64_t lo = UINT64_MAX, hi = 0;
  for (size_t i = 0; i < n; i++) {
    sp[i] = &m->spans[i];
    if (sp[i]->start_ns < lo) lo = sp[i]->start_ns;
    if (ss__tm_end(sp[i]) > hi) hi = ss__tm_end(sp[i]);
  }
  double window = n && hi > lo ? (double)(hi - lo) / 1e9 : 0;
  qsort(sp, n, sizeof(*sp), cmp_red);
  for (size_t i = 0; i < n;) {
    size_t j = i, errors = 0;
    for (; j < n && strcmp(service_of(sp[j]), service_of(sp[i])) == 0 &&
           strcmp(sp[j]->name, sp[i]->name) == 0 && sp[j]->kind == sp[i]->kind;
         j++)
      errors += sp[j]->status == 2;
    static const char *const kinds[] = {"", "internal", "server", "client", "producer",
                                         "consumer"};
    ss__red_row *row = &r[k++];
    row->service = service_of(sp[i]);
    row->name = sp[i]->name;
    row->kind = sp[i]->kind >= 0 && sp[i]->kind <= 5 ? kinds[sp[i]->kind] : "";
    row->count = j - i;
    row->errors = errors;
    row->rate = window > 0 ? (double)row->count / window : (double)row->count;
    row->p50 = pct(sp + i, j - i, 0.50);
    row->p95 = pct(sp + i, j - i, 0.95);
    row->p99 = pct(sp + i, j - i, 0.99);
    i = j;
  }
  free(sp);
  *rows = r;
  *n_rows = k;
  *window_s = window;
  return 0;
}

/* s in w display columns (a UTF-8 sequence takes one), left- or right-aligned, cut with
 * "…", control characters as spaces. */
static void cell(ss__buf *b, const char *s, size_t w, int right) {
  size_t cols = 0, c = 0;
  for (const char *p = s; *p; p++) cols += ((unsigned char)*p & 0xc0) != 0x80;
  size_t limit = cols > w ? w - 1 : w, pad = cols < w ? w - cols : 0;
  for (; right && pad; pad--) ss__buf_putc(b, ' ');
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if ((ch & 0xc0) != 0x80 && c++ == limit) break;
    ss__buf_putc(b, ch < 0x20 || ch == 0x7f ? ' ' : (char)ch);
  }
  if (cols > w) ss__buf_puts(b, "…");
  for (; pad; pad--) ss__buf_putc(b, ' ');
}

int ss__red_print(FILE *out, const ss__tm *m) {
  ss__red_row *r;
  size_t n;
  double window;
  if (ss__red(m, &r, &n, &window) < 0) return -ENOMEM;
  ss__buf b = SS_BUF_INIT;
  ss__buf_printf(&b, "%-24s %-36s %-8s %7s %9s %13s %9s %9s %9s\n", "service", "span", "kind",
                 "count", "rate/s", "errors", "p50", "p95", "p99");
  for (size_t i = 0; i < n; i++) {
    char p50[32], p95[32], p99[32], err[32];
    ss__wf_duration(r[i].p50, p50, sizeof(p50));
    ss__wf_duration(r[i].p95, p95, sizeof(p95));
    ss__wf_duration(r[i].p99, p99, sizeof(p99));
    snprintf(err, sizeof(err), "%zu (%.0f%%)", r[i].errors,
             100.0 * (double)r[i].errors / (double)r[i].count);
    cell(&b, r[i].service, 24, 0);
    ss__buf_putc(&b, ' ');
    cell(&b, r[i].name, 36, 0);
    ss__buf_putc(&b, ' ');
    cell(&b, r[i].kind, 8, 0);
    ss__buf_printf(&b, " %7zu %9.2f %13s ", r[i].count, r[i].rate, err);
    cell(&b, p50, 9, 1);
    ss__buf_putc(&b, ' ');
    cell(&b, p95, 9, 1);
    ss__buf_putc(&b, ' ');
    cell(&b, p99, 9, 1);
    ss__buf_putc(&b, '\n');
  }
  char w[32];
  ss__wf_duration((uint64_t)(window * 1e9), w, sizeof(w));
  ss__buf_printf(&b, "%zu span%s, %zu series, rate over %s\n", m->n_spans,
                 m->n_spans == 1 ? "" : "s", n, w);
  free(r);
  int rc = ss__buf_error(&b);
  if (rc == 0 && (fwrite(b.data, 1, b.len, out) != b.len || fflush(out) != 0)) rc = -EIO;
  ss__buf_free(&b);
  return rc;
}

/* ---- OTLP JSON of the matching spans ---- */

typedef struct idset {
  char (*id)[33];
  size_t n;
} idset;

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static int in_set(const idset *s, const ss__json *tid) {
  size_t len;
  const char *t = ss__json_str(tid, &len);
  char key[33];
  if (!t || len != 32) return 0;
  for (size_t i = 0; i < 32; i++)
    key[i] = (char)(t[i] >= 'A' && t[i] <= 'F' ? t[i] - 'A' + 'a' : t[i]);
  key[32] = '\0';
  return bsearch(key, s->id, s->n, sizeof(*s->id), cmp_id) != NULL;
}

/* Member names as OTLP JSON writes them, or as the proto spells them. */
static int key_is(const ss__json *j, const char *camel, const char *snake) {
  return j->key && (strcmp(j->key, camel) == 0 || strcmp(j->key, snake) == 0);
}

static const ss__json *member(const ss__json *o, const char *camel, const char *snake) {
  const ss__json *j = ss__json_get(o, camel);
  return j ? j : ss__json_get(o, snake);
}

/* A member name as OTLP JSON spells it: the proto's snake_case read from other writers
 * becomes lowerCamelCase ("trace_id" -> "traceId"), so the output is uniform for jq.
 * (Attribute keys are values, not member names, and are never changed.) */
static void jw_key(ss__buf *b, const char *k, size_t n) {
  if (!memchr(k, '_', n)) {
    ss__jw_str(b, k, n);
    return;
  }
  ss__buf camel = SS_BUF_INIT;
  for (size_t i = 0; i < n; i++) {
    if (k[i] == '_' && i + 1 < n && k[i + 1] >= 'a' && k[i + 1] <= 'z') {
      ss__buf_putc(&camel, (char)(k[++i] - 'a' + 'A'));
    } else {
      ss__buf_putc(&camel, k[i]);
    }
  }
  if (ss__buf_error(&camel)) b->oom = 1;
  else ss__jw_str(b, camel.data, camel.len);
  ss__buf_free(&camel);
}

static void jw_node(ss__buf *b, const ss__json *j) {
  switch (j->type) {
  case SS_JSON_NULL: SS_BUF_LIT(b, "null"); break;
  case SS_JSON_BOOL: ss__buf_puts(b, j->u.b ? "true" : "false"); break;
  case SS_JSON_NUMBER: ss__buf_puts(b, j->u.num.text); break;
  case SS_JSON_STRING: ss__jw_str(b, j->u.s, j->len); break;
  default:
    ss__buf_putc(b, j->type == SS_JSON_ARRAY ? '[' : '{');
    for (size_t i = 0; i < j->len; i++) {
      const ss__json *k = &j->u.kids[i];
      if (i) ss__buf_putc(b, ',');
      if (j->type == SS_JSON_OBJECT) {
        jw_key(b, k->key, k->key_len);
        ss__buf_putc(b, ':');
      }
      jw_node(b, k);
    }
    ss__buf_putc(b, j->type == SS_JSON_ARRAY ? ']' : '}');
  }
}

static size_t wanted_spans(const idset *s, const ss__json *scope_spans) {
  const ss__json *spans = member(scope_spans, "spans", "spans");
  size_t n = 0;
  for (size_t i = 0; i < ss__json_count(spans); i++)
    n += in_set(s, member(ss__json_at(spans, i), "traceId", "trace_id"));
  return n;
}

static size_t wanted_in_rs(const idset *s, const ss__json *rs) {
  const ss__json *sss = member(rs, "scopeSpans", "scope_spans");
  size_t n = 0;
  for (size_t i = 0; i < ss__json_count(sss); i++) n += wanted_spans(s, ss__json_at(sss, i));
  return n;
}

/* Object o with the array member named camel/snake filtered: only items for which
 * keep(s, item) > 0, each written by `item`. */
static void jw_filtered(ss__buf *b, const idset *s, const ss__json *o, const char *camel,
                        const char *snake, size_t (*keep)(const idset *, const ss__json *),
                        void (*item)(ss__buf *, const idset *, const ss__json *)) {
  ss__buf_putc(b, '{');
  for (size_t i = 0; i < o->len; i++) {
    const ss__json *k = &o->u.kids[i];
    if (i) ss__buf_putc(b, ',');
    jw_key(b, k->key, k->key_len);
    ss__buf_putc(b, ':');
    if (!key_is(k, camel, snake) || k->type != SS_JSON_ARRAY) {
      jw_node(b, k);
      continue;
    }
    ss__buf_putc(b, '[');
    int first = 1;
    for (size_t x = 0; x < k->len; x++) {
      if (keep(s, &k->u.kids[x]) == 0) continue;
      if (!first) ss__buf_putc(b, ',');
      first = 0;
      item(b, s, &k->u.kids[x]);
    }
    ss__buf_putc(b, ']');
  }
  ss__buf_putc(b, '}');
}

static size_t keep_span(const idset *s, const ss__json *span) {
  return in_set(s, member(span, "traceId", "trace_id"));
}
static void jw_span(ss__buf *b, const idset *s, const ss__json *span) {
  (void)s;
  jw_node(b, span);
}
static void jw_ss(ss__buf *b, const idset *s, const ss__json *ss) {
  jw_filtered(b, s, ss, "spans", "spans", keep_span, jw_span);
}
static void jw_rs(ss__buf *b, const idset *s, const ss__json *rs) {
  jw_filtered(b, s, rs, "scopeSpans", "scope_spans", wanted_spans, jw_ss);
}

static int build_idset(const ss__tm *m, idset *s) {
  s->id = malloc((m->n_spans ? m->n_spans : 1) * sizeof(*s->id));
  s->n = 0;
  if (!s->id) return -ENOMEM;
  for (size_t i = 0; i < m->n_spans; i++) memcpy(s->id[s->n++], m->spans[i].trace_id, 33);
  qsort(s->id, s->n, sizeof(*s->id), cmp_id);
  size_t k = 0;
  for (size_t i = 0; i < s->n; i++)
    if (k == 0 || strcmp(s->id[k - 1], s->id[i]) != 0) memmove(s->id[k++], s->id[i], 33);
  s->n = k;
  return 0;
}

int ss__json_matching(FILE *out, const ss__tm *m, const ss__docs *docs) {
  idset s;
  if (build_idset(m, &s) < 0) return -ENOMEM;
  ss__buf b = SS_BUF_INIT;
  int rc = 0;
  for (size_t i = 0; i < docs->n && rc == 0; i++) {
    ss__json *doc = ss__json_parse(docs->text.data + docs->off[i], docs->len[i], NULL, 0);
    const ss__json *rss = member(doc, "resourceSpans", "resource_spans");
    size_t n = 0;
    for (size_t k = 0; k < ss__json_count(rss); k++) n += wanted_in_rs(&s, ss__json_at(rss, k));
    if (n) {
      ss__buf_reset(&b);
      jw_filtered(&b, &s, doc, "resourceSpans", "resource_spans", wanted_in_rs, jw_rs);
      ss__buf_putc(&b, '\n');
      rc = ss__buf_error(&b);
      if (rc == 0 && fwrite(b.data, 1, b.len, out) != b.len) rc = -EIO;
    }
    ss__json_free(doc);
  }
  if (rc == 0 && fflush(out) != 0) rc = -EIO;
  ss__buf_free(&b);
  free(s.id);
  return rc;
}
