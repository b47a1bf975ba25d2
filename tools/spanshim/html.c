/* html.c - the self-contained HTML report; see html.h. */
#include "tools/spanshim/html.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tools/common/buf.h"
#include "tools/common/otlp_json.h"
#include "tools/spanshim/triage.h"

/* ---- interned strings ---- */

typedef struct strtab {
  const char **s;   /* by index */
  size_t n, cap;
  size_t *tab;      /* index + 1, open addressing */
  size_t tab_cap;
} strtab;

static uint64_t str_hash(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static int strtab_grow(strtab *t) {
  size_t cap = t->tab_cap ? t->tab_cap * 2 : 1024;
  size_t *tab = calloc(cap, sizeof(*tab));
  if (!tab) return -ENOMEM;
  for (size_t i = 0; i < t->n; i++) {
    size_t k = str_hash(t->s[i]) & (cap - 1);
    while (tab[k]) k = (k + 1) & (cap - 1);
    tab[k] = i + 1;
  }
  free(t->tab);
  t->tab = tab;
  t->tab_cap = cap;
  return 0;
}

/* The index of s (kept by pointer: it must outlive the table), or -1 when out of memory. */
static long intern(strtab *t, const char *s) {
  if ((t->n + 1) * 2 > t->tab_cap && strtab_grow(t) < 0) return -1;
  size_t k = str_hash(s) & (t->tab_cap - 1);
  for (; t->tab[k]; k = (k + 1) & (t->tab_cap - 1))
    if (strcmp(t->s[t->tab[k] - 1], s) == 0) return (long)t->tab[k] - 1;
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 256;
    const char **p = realloc(t->s, cap * sizeof(*p));
    if (!p) return -1;
    t->s = p;
    t->cap = cap;
  }
  t->s[t->n] = s;
  t->tab[k] = ++t->n;
  return (long)t->n - 1;
}

static void strtab_free(strtab *t) {
  free(t->s);
  free(t->tab);
}

/* ---- the writer ---- */

typedef struct writer {
  ss__buf b;
  strtab st;
  const ss__tm *m;
  uint64_t t0;
  int oom;
} writer;

static void jstr(writer *w, const char *s) {
  if (!s) SS_BUF_LIT(&w->b, "null");
  else ss__jw_str(&w->b, s, strlen(s));
}

static void jint(writer *w, const char *s) {
  long i = intern(&w->st, s);
  if (i < 0) w->oom = 1;
  ss__buf_printf(&w->b, "%ld", i < 0 ? 0 : i);
}

/* Nanoseconds from the earliest span. */
static void jtime(writer *w, uint64_t ns) {
  ss__buf_printf(&w->b, "%llu", (unsigned long long)(ns >= w->t0 ? ns - w->t0 : 0));
}

/* [key, value, key, value, ...] as string indexes: values repeat as much as keys do
 * (methods, ports, statements), and each is then written once. */
static void jattrs(writer *w, const ss__tm_attr *a, size_t n) {
  ss__buf_putc(&w->b, '[');
  for (size_t i = 0; i < n; i++) {
    if (i) ss__buf_putc(&w->b, ',');
    jint(w, a[i].key);
    ss__buf_putc(&w->b, ',');
    jint(w, a[i].text);
  }
  ss__buf_putc(&w->b, ']');
}

static void jresources(writer *w) {
  SS_BUF_LIT(&w->b, ",\"res\":[");
  for (size_t i = 0; i < w->m->n_res; i++) {
    const ss__tm_resource *r = w->m->res[i];
    const ss__tm_attr *svc = ss__tm_res_attr(r, "service.name");
    const ss__tm_attr *pid = ss__tm_res_attr(r, "process.pid");
    const ss__tm_attr *exe = ss__tm_res_attr(r, "process.executable.name");
    if (i) ss__buf_putc(&w->b, ',');
    SS_BUF_LIT(&w->b, "{\"svc\":");
    jstr(w, svc ? svc->text : "unknown_service");
    SS_BUF_LIT(&w->b, ",\"pid\":");
    jstr(w, pid ? pid->text : NULL);
    SS_BUF_LIT(&w->b, ",\"exe\":");
    jstr(w, exe ? exe->text : NULL);
    SS_BUF_LIT(&w->b, ",\"attrs\":");
    jattrs(w, r->attrs, r->n_attrs);
    ss__buf_putc(&w->b, '}');
  }
  ss__buf_putc(&w->b, ']');
}

/* [sid, parent index or -1, depth, name, kind, status, start, duration, resource, attrs,
 *  status message|null, events|null, [type, message, stack]|null, unknown parent id|null] */
static void jspan(writer *w, const ss__tm_span *s, long parent, size_t depth) {
  ss__buf *b = &w->b;
  ss__buf_putc(b, '[');
  jstr(w, s->span_id);
  ss__buf_printf(b, ",%ld,%zu,", parent, depth);
  jint(w, s->name);
  ss__buf_printf(b, ",%d,%d,", s->kind, s->status);
  jtime(w, s->start_ns);
  ss__buf_printf(b, ",%llu,%zu,", (unsigned long long)(ss__tm_end(s) - s->start_ns),
                 s->res->idx);
  jattrs(w, s->attrs, s->n_attrs);
  ss__buf_putc(b, ',');
  jstr(w, s->status_message);
  ss__buf_putc(b, ',');
  if (s->n_events == 0) {
    SS_BUF_LIT(b, "null");
  } else {
    ss__buf_putc(b, '[');
    for (size_t i = 0; i < s->n_events; i++) {
      if (i) ss__buf_putc(b, ',');
      ss__buf_putc(b, '[');
      jint(w, s->events[i].name);
      ss__buf_putc(b, ',');
      jtime(w, s->events[i].time_ns);
      ss__buf_putc(b, ',');
      jattrs(w, s->events[i].attrs, s->events[i].n_attrs);
      ss__buf_putc(b, ']');
    }
    ss__buf_putc(b, ']');
  }
  ss__buf_putc(b, ',');
  if (s->stack || s->exc_type || s->exc_message) {
    ss__buf_putc(b, '[');
    jstr(w, s->exc_type);
    ss__buf_putc(b, ',');
    jstr(w, s->exc_message);
    ss__buf_putc(b, ',');
    jstr(w, s->stack);
    ss__buf_putc(b, ']');
  } else {
    SS_BUF_LIT(b, "null");
  }
  ss__buf_putc(b, ',');
  jstr(w, parent < 0 && s->parent_id[0] ? s->parent_id : NULL);
  ss__buf_putc(b, ']');
}

/* ---- one trace in tree order ---- */

typedef struct tree {
  const ss__tm_span **sp;   /* the trace's spans by start */
  size_t n;
  size_t *by_id;            /* indexes of sp sorted by span id */
  long *first, *next;       /* children lists, in start order */
  long *stack;
  size_t *depth;
  unsigned char *seen;
} tree;

static const ss__tm_span **g_sort_sp;  /* qsort has no context argument */

static int cmp_id_idx(const void *a, const void *b) {
  return strcmp(g_sort_sp[*(const size_t *)a]->span_id, g_sort_sp[*(const size_t *)b]->span_id);
}

static long find_parent(const tree *t, const char *id) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(t->sp[t->by_id[mid]]->span_id, id);
    if (c == 0) return (long)t->by_id[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return -1;
}

/* Writes the spans of one trace depth-first from each root (children by start); spans
 * in a parent cycle, never reached from a root, follow as roots of their own. `*next_idx`
 * is the index the first span gets in the output. */
static void jtrace_spans(writer *w, tree *t, size_t *next_idx, long *out_idx) {
  size_t n = t->n;
  for (size_t i = 0; i < n; i++) t->by_id[i] = i;
  g_sort_sp = t->sp;
  qsort(t->by_id, n, sizeof(*t->by_id), cmp_id_idx);
  long *parent = t->stack + n;  /* second half of the scratch */
  for (size_t i = 0; i < n; i++) {
    t->first[i] = t->next[i] = -1;
    t->seen[i] = 0;
    parent[i] = t->sp[i]->parent_id[0] ? find_parent(t, t->sp[i]->parent_id) : -1;
    if (parent[i] == (long)i) parent[i] = -1;
  }
  for (size_t k = n; k-- > 0;) {  /* backwards, so each list ends up in start order */
    if (parent[k] < 0) continue;
    t->next[k] = t->first[parent[k]];
    t->first[parent[k]] = (long)k;
  }
  for (int pass = 0; pass < 2; pass++) {
    for (size_t r = 0; r < n; r++) {
      if (t->seen[r] || (pass == 0 && parent[r] >= 0)) continue;
      size_t sp = 0;
      t->stack[sp++] = (long)r;
      t->seen[r] = 1;
      while (sp) {
        long i = t->stack[--sp];
        int linked = parent[i] >= 0 && t->seen[parent[i]] == 2;
        long p = linked ? out_idx[parent[i]] : -1;
        t->depth[i] = linked ? t->depth[parent[i]] + 1 : 0;
        out_idx[i] = (long)(*next_idx)++;
        t->seen[i] = 2;
        if (*next_idx > 1) ss__buf_putc(&w->b, ',');
        jspan(w, t->sp[i], p, t->depth[i]);
        /* Push children in reverse so the earliest is written first. */
        size_t mark = sp;
        for (long c = t->first[i]; c >= 0; c = t->next[c])
          if (!t->seen[c]) {
            t->stack[sp++] = c;
            t->seen[c] = 1;
          }
        for (size_t a = mark, z = sp; z > a + 1; a++, z--) {
          long tmp = t->stack[a];
          t->stack[a] = t->stack[z - 1];
          t->stack[z - 1] = tmp;
        }
      }
    }
  }
}

static int jtraces(writer *w, const ss__traces *ts) {
  size_t n = w->m->n_spans ? w->m->n_spans : 1;
  tree t;
  memset(&t, 0, sizeof(t));
  t.by_id = malloc(n * sizeof(*t.by_id));
  t.first = malloc(n * sizeof(*t.first));
  t.next = malloc(n * sizeof(*t.next));
  t.stack = malloc(2 * n * sizeof(*t.stack));
  t.seen = malloc(n);
  t.depth = malloc(n * sizeof(*t.depth));
  long *out_idx = malloc(n * sizeof(*out_idx));
  size_t *starts = malloc((ts->n ? ts->n : 1) * sizeof(*starts));
  int rc = 0;
  if (!t.by_id || !t.first || !t.next || !t.stack || !t.seen || !t.depth || !out_idx || !starts) {
    rc = -ENOMEM;
    goto out;
  }
  size_t next_idx = 0;
  SS_BUF_LIT(&w->b, ",\"spans\":[");
  for (size_t i = 0; i < ts->n; i++) {
    t.sp = ts->t[i].sp;
    t.n = ts->t[i].n;
    starts[i] = next_idx;
    jtrace_spans(w, &t, &next_idx, out_idx);
  }
  SS_BUF_LIT(&w->b, "]\n,\"traces\":[");
  for (size_t i = 0; i < ts->n; i++) {
    const ss__trace *tr = &ts->t[i];
    if (i) ss__buf_putc(&w->b, ',');
    ss__buf_putc(&w->b, '[');
    jstr(w, tr->sp[0]->trace_id);
    ss__buf_printf(&w->b, ",%zu,%zu,", starts[i], tr->n);
    jtime(w, tr->start_ns);
    ss__buf_printf(&w->b, ",%llu,%zu]", (unsigned long long)(tr->end_ns - tr->start_ns),
                   tr->errors);
  }
  ss__buf_putc(&w->b, ']');
out:
  free(t.by_id);
  free(t.first);
  free(t.next);
  free(t.stack);
  free(t.seen);
  free(t.depth);
  free(out_idx);
  free(starts);
  return rc;
}

static int jred(writer *w) {
  ss__red_row *r;
  size_t n;
  double window;
  if (ss__red(w->m, &r, &n, &window) < 0) return -ENOMEM;
  ss__buf_printf(&w->b, ",\"window\":%.9g,\"red\":[", window);
  for (size_t i = 0; i < n; i++) {
    if (i) ss__buf_putc(&w->b, ',');
    ss__buf_putc(&w->b, '[');
    jstr(w, r[i].service);
    ss__buf_putc(&w->b, ',');
    jstr(w, r[i].name);
    ss__buf_printf(&w->b, ",%zu,%.6g,%zu,%llu,%llu,%llu,", r[i].count, r[i].rate, r[i].errors,
                   (unsigned long long)r[i].p50, (unsigned long long)r[i].p95,
                   (unsigned long long)r[i].p99);
    jstr(w, r[i].kind);
    ss__buf_putc(&w->b, ']');
  }
  ss__buf_putc(&w->b, ']');
  free(r);
  return 0;
}

static int build_data(writer *w, const ss__html_opts *o) {
  const ss__tm *m = w->m;
  ss__traces ts;
  if (ss__traces_build(m, &ts) < 0) return -ENOMEM;
  w->t0 = ts.n ? ts.t[0].start_ns : 0;
  ss__buf_printf(&w->b, "{\"v\":1,\"t0\":\"%llu\",\"files\":[", (unsigned long long)w->t0);
  for (size_t i = 0; i < o->n_files; i++) {
    if (i) ss__buf_putc(&w->b, ',');
    jstr(w, o->files[i]);
  }
  ss__buf_printf(&w->b,
                 "],\"counts\":{\"spans\":%zu,\"dropped\":%zu,\"invalid\":%zu,"
                 "\"logs\":%zu,\"metrics\":%zu}",
                 m->n_spans, m->n_dropped, m->n_invalid, m->n_log_records, m->n_metrics_lines);
  jresources(w);
  int rc = jtraces(w, &ts);
  if (rc == 0) rc = jred(w);
  if (rc == 0) {
    SS_BUF_LIT(&w->b, "\n,\"strs\":[");
    for (size_t i = 0; i < w->st.n; i++) {
      if (i) ss__buf_putc(&w->b, ',');
      jstr(w, w->st.s[i]);
    }
    SS_BUF_LIT(&w->b, "]}");
  }
  ss__traces_free(&ts);
  if (rc == 0 && w->oom) rc = -ENOMEM;
  return rc == 0 ? ss__buf_error(&w->b) : rc;
}

/* JSON inside <script>: '<' only occurs in strings, where \u003c means the same, so no
 * "</script" or "<!--" can appear. */
static int put_script_json(FILE *out, const char *s, size_t n) {
  const char *end = s + n;
  while (s < end) {
    const char *lt = memchr(s, '<', (size_t)(end - s));
    size_t k = lt ? (size_t)(lt - s) : (size_t)(end - s);
    if (fwrite(s, 1, k, out) != k) return -EIO;
    s += k;
    if (lt) {
      if (fputs("\\u003c", out) < 0) return -EIO;
      s++;
    }
  }
  return 0;
}

/* n bytes as base64 into out (4 * ceil(n / 3) bytes); returns the length. */
static size_t base64(const unsigned char *p, size_t n, char *out) {
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    out[k++] = b64[v >> 18 & 63];
    out[k++] = b64[v >> 12 & 63];
    out[k++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
    out[k++] = i + 2 < n ? b64[v & 63] : '=';
  }
  return k;
}

/* The data as gzip in base64 (see html.h). 0, -ENOMEM or -EIO. */
static int put_gzip_base64(FILE *out, const char *s, size_t n) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) return -ENOMEM;
  unsigned char zbuf[3 * 16384];
  char text[4 * 16384];
  size_t have = 0, done = 0;
  int zr = Z_OK, rc = 0;
  while (rc == 0 && zr != Z_STREAM_END) {
    if (z.avail_in == 0 && done < n) {
      size_t c = n - done > (1u << 30) ? (1u << 30) : n - done;
      z.next_in = (Bytef *)(uintptr_t)(s + done);
      z.avail_in = (uInt)c;
      done += c;
    }
    z.next_out = zbuf + have;
    z.avail_out = (uInt)(sizeof(zbuf) - have);
    zr = deflate(&z, done == n ? Z_FINISH : Z_NO_FLUSH);
    if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
      rc = -EIO;
      break;
    }
    have = sizeof(zbuf) - z.avail_out;
    size_t whole = zr == Z_STREAM_END ? have : have / 3 * 3;  /* base64 in whole groups */
    size_t k = base64(zbuf, whole, text);
    if (k && fwrite(text, 1, k, out) != k) rc = -EIO;
    memmove(zbuf, zbuf + whole, have - whole);
    have -= whole;
  }
  deflateEnd(&z);
  return rc;
}

static int put_text(FILE *out, const char *s, size_t n) {
  return fwrite(s, 1, n, out) == n ? 0 : -EIO;
}

int ss__html_write(FILE *out, const ss__tm *m, const ss__html_opts *o) {
  writer w;
  memset(&w, 0, sizeof(w));
  w.m = m;
  int rc = build_data(&w, o);
  /* The page has four places, in this order, for the title, style, data and script. */
  static const char *const marks[] = {"@TITLE@", "@CSS@", "@DATA@", "@JS@"};
  const char *p = ss__report_html, *env = getenv("SPANSHIM_REPORT_PLAIN");
  int plain = env && strcmp(env, "1") == 0;
  for (size_t i = 0; i < 4 && rc == 0; i++) {
    const char *at = strstr(p, marks[i]);
    if (i == 2 && plain) {  /* the data element's type says which form it holds */
      const char *ty = strstr(p, "application/x-spanshim-json-gzip-base64");
      if (!ty || ty > at) {
        rc = -EINVAL;
        break;
      }
      if ((rc = put_text(out, p, (size_t)(ty - p))) != 0) break;
      if ((rc = put_text(out, "application/json", 16)) != 0) break;
      p = ty + strlen("application/x-spanshim-json-gzip-base64");
    }
    if (!at) {
      rc = -EINVAL;  /* a broken template is a build error; tests catch it */
      break;
    }
    rc = put_text(out, p, (size_t)(at - p));
    if (rc) break;
    if (i == 0) {
      const char *f = o->n_files ? o->files[0] : "spans";
      for (; *f && rc == 0; f++)  /* the title is markup: escape what could be */
        rc = fputs(*f == '<' ? "&lt;" : *f == '&' ? "&amp;" : (char[]){*f, 0}, out) < 0 ? -EIO
                                                                                     : 0;
      if (rc == 0) rc = fputs(" · spanshim report", out) < 0 ? -EIO : 0;
    } else if (i == 1) {
      rc = put_text(out, ss__report_css, strlen(ss__report_css));
    } else if (i == 2) {
      rc = plain ? put_script_json(out, w.b.data, w.b.len)
                 : put_gzip_base64(out, w.b.data, w.b.len);
    } else {
      rc = put_text(out, ss__report_js, strlen(ss__report_js));
    }
    p = at + strlen(marks[i]);
  }
  if (rc == 0) rc = put_text(out, p, strlen(p));
  if (rc == 0 && fflush(out) != 0) rc = -EIO;
  strtab_free(&w.st);
  ss__buf_free(&w.b);
  return rc;
}
