/* waterfall.c - renders a trace model as a tree with time bars; see waterfall.h.
 *
 * Rows are built as plain text first so column widths are measured without colour codes,
 * then printed with colour added around the parts. The whole picture is drawn twice: a
 * first pass into a discarding stream finds the widest label, so every block's bars line
 * up in the same columns. */
#include "tools/common/waterfall.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define C_RESET "\033[0m"
#define C_BOLD "\033[1m"
#define C_DIM "\033[2m"
#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_YELLOW "\033[33m"
#define C_MAGENTA "\033[35m"
#define C_CYAN "\033[36m"

#define ROW_TEXT 1024
#define DETAIL_MAX 256

/* ---- bounded text ---- */

/* Columns of UTF-8 text: one per code point (the tree and block characters are narrow). */
static size_t u8_width(const char *s, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    if (((unsigned char)s[i] & 0xc0) != 0x80) w++;
  return w;
}

/* Bytes of s (n bytes) that fit in `cols` columns, cut at a code point boundary. */
static size_t u8_fit(const char *s, size_t n, size_t cols) {
  size_t w = 0, i = 0;
  for (; i < n; i++) {
    if (((unsigned char)s[i] & 0xc0) != 0x80) {
      if (w == cols) break;
      w++;
    }
  }
  return i;
}

typedef struct tbuf {
  char *p;
  size_t len, cap;
} tbuf;

/* Appends what fits, never splitting a UTF-8 sequence; always NUL-terminated. */
static void tb_add(tbuf *b, const char *s, size_t n) {
  if (b->len + 1 >= b->cap) return;
  size_t room = b->cap - 1 - b->len;
  if (n > room) {
    n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void tb_str(tbuf *b, const char *s) { tb_add(b, s, strlen(s)); }

/* Appends attribute text made safe for a terminal: control characters become spaces;
 * with `collapse`, whitespace runs become one space (SQL over several lines). At most
 * `cols` columns, with "…" when cut. */
static void tb_clean(tbuf *b, const char *s, int collapse, size_t cols) {
  char tmp[DETAIL_MAX * 4];
  size_t k = 0;
  int space = 1;
  for (const unsigned char *c = (const unsigned char *)s; *c && k < sizeof(tmp) - 1; c++) {
    unsigned char ch = *c < 0x20 || *c == 0x7f ? ' ' : *c;
    /* C1 controls (U+0080..U+009F, e.g. CSI) act like ESC sequences on some terminals. */
    if (c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f) {
      ch = ' ';
      c++;
    }
    if (collapse && ch == ' ' && space) continue;
    space = ch == ' ';
    tmp[k++] = (char)ch;
  }
  while (collapse && k > 0 && tmp[k - 1] == ' ') k--;
  size_t fit = u8_fit(tmp, k, cols);
  if (fit < k || (s[0] && k == sizeof(tmp) - 1)) {
    fit = u8_fit(tmp, k, cols > 1 ? cols - 1 : 0);
    tb_add(b, tmp, fit);
    tb_str(b, "…");
  } else {
    tb_add(b, tmp, k);
  }
}

/* ---- durations ---- */

static void sig3(char *out, size_t n, double v, const char *unit) {
  const char *f = v < 9.995 ? "%.2f %s" : v < 99.95 ? "%.1f %s" : "%.0f %s";
  snprintf(out, n, f, v, unit);
}

void ss__wf_duration(uint64_t ns, char *out, size_t n) {
  if (n == 0) return;
  if (ns < 1000) snprintf(out, n, "%" PRIu64 " ns", ns);
  else if (ns < 999500) sig3(out, n, ns / 1e3, "µs");
  else if (ns < 999500000) sig3(out, n, ns / 1e6, "ms");
  else if (ns < 59950000000ull) sig3(out, n, ns / 1e9, "s");
  else if (ns < 3600000000000ull) {
    uint64_t s = (ns + 500000000) / 1000000000;
    snprintf(out, n, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  } else {
    uint64_t m = (ns + 30000000000ull) / 60000000000ull;
    snprintf(out, n, "%" PRIu64 "h%02" PRIu64 "m", m / 60, m % 60);
  }
}

/* ---- span facts ---- */

static const char *attr_text(const ss__tm_span *s, const char *key) {
  const ss__tm_attr *a = ss__tm_span_attr(s, key);
  return a && a->text[0] ? a->text : NULL;
}

static int span_failed(const ss__tm_span *s) {
  return s->status == 2 || attr_text(s, "error.type") != NULL;
}

static int span_finished(const ss__tm_span *s) {
  return s->end_ns != 0 && s->end_ns >= s->start_ns;
}

/* "addr:port", bracketing IPv6 addresses; just addr when there is no port. */
static void tb_hostport(tbuf *b, const char *addr, const char *port) {
  int v6 = port && strchr(addr, ':') != NULL;
  if (v6) tb_str(b, "[");
  tb_clean(b, addr, 0, 60);
  if (v6) tb_str(b, "]");
  if (port) {
    tb_str(b, ":");
    tb_clean(b, port, 0, 8);
  }
}

static void detail_http(tbuf *b, const ss__tm_span *s) {
  const char *url = attr_text(s, "url.full"), *st = attr_text(s, "http.response.status_code");
  const char *method = attr_text(s, "http.request.method");
  /* HTTP client spans are named after the method; say it once. */
  const char *sep = "";
  if (strcmp(method, s->name) != 0) {
    tb_clean(b, method, 0, 16);
    sep = " ";
  }
  if (url) {
    tb_str(b, sep);
    tb_clean(b, url, 0, 80);
  } else if (attr_text(s, "server.address")) {
    tb_str(b, sep);
    tb_hostport(b, attr_text(s, "server.address"), attr_text(s, "server.port"));
  }
  if (st) {
    tb_str(b, " → ");
    tb_clean(b, st, 0, 8);
  }
}

static void detail_db(tbuf *b, const ss__tm_span *s) {
  const char *q = attr_text(s, "db.query.text"), *rows = attr_text(s, "db.response.returned_rows");
  if (q) {
    tb_clean(b, q, 1, 60);
  } else {
    const char *host = attr_text(s, "server.address"), *ns = attr_text(s, "db.namespace");
    if (host) tb_hostport(b, host, attr_text(s, "server.port"));
    if (ns) {
      tb_str(b, host ? " " : "");
      tb_clean(b, ns, 0, 40);
    }
  }
  if (rows) {
    tb_str(b, " → ");
    tb_clean(b, rows, 0, 12);
    tb_str(b, strcmp(rows, "1") == 0 ? " row" : " rows");
  }
}

static void detail_process(tbuf *b, const ss__tm_span *s) {
  const char *args = attr_text(s, "process.command_args"), *code = attr_text(s, "process.exit.code");
  if (!args) args = attr_text(s, "process.executable.name");
  if (args) tb_clean(b, args, 0, 60);
  if (code && strcmp(code, "0") != 0) {
    tb_str(b, " → exit ");
    tb_clean(b, code, 0, 8);
  }
}

static void detail_dns(tbuf *b, const ss__tm_span *s) {
  tb_clean(b, attr_text(s, "dns.question.name"), 0, 60);
  /* The answer count's key is not fixed by the semantic conventions; take any int. */
  for (size_t i = 0; i < s->n_attrs; i++) {
    const ss__tm_attr *a = &s->attrs[i];
    if (a->type == 2 && strncmp(a->key, "dns.answer", 10) == 0) {
      char tmp[48];
      snprintf(tmp, sizeof(tmp), " → %" PRId64 " answer%s", a->i, a->i == 1 ? "" : "s");
      tb_str(b, tmp);
      break;
    }
  }
}

static void detail_net(tbuf *b, const ss__tm_span *s) {
  const char *peer = attr_text(s, "network.peer.address");
  const char *server = attr_text(s, "server.address");
  const char *local = attr_text(s, "network.local.address");
  tb_hostport(b, peer, attr_text(s, "network.peer.port"));
  if (s->kind == 2 && (local || attr_text(s, "network.local.port"))) {
    tb_str(b, " → ");
    tb_hostport(b, local ? local : "", attr_text(s, "network.local.port"));
  } else if (server && strcmp(server, peer) != 0) {
    tb_str(b, " (");
    tb_clean(b, server, 0, 60);
    tb_str(b, ")");
  }
}

/* The few attributes that say what a span did, chosen by what kind of span it is. */
static void span_detail(tbuf *b, const ss__tm_span *s) {
  if (attr_text(s, "http.request.method")) detail_http(b, s);
  else if (attr_text(s, "db.query.text") || attr_text(s, "db.system.name") ||
           attr_text(s, "db.system"))
    detail_db(b, s);
  else if (attr_text(s, "process.command_args") || attr_text(s, "process.exit.code") ||
           attr_text(s, "process.executable.name"))
    detail_process(b, s);
  else if (attr_text(s, "dns.question.name")) detail_dns(b, s);
  else if (attr_text(s, "network.peer.address")) detail_net(b, s);
  else if (attr_text(s, "server.address"))
    tb_hostport(b, attr_text(s, "server.address"), attr_text(s, "server.port"));
}

static void span_error(tbuf *b, const ss__tm_span *s) {
  const char *type = attr_text(s, "error.type");
  if (!span_failed(s)) return;
  tb_str(b, "✗ ");
  tb_clean(b, type ? type : "error", 0, 40);
  if (s->status_message && (!type || strcmp(type, s->status_message) != 0)) {
    tb_str(b, ": ");
    tb_clean(b, s->status_message, 1, 100);
  }
}

/* ---- processes ---- */

static const char *res_text(const ss__tm_resource *r, const char *key) {
  const ss__tm_attr *a = ss__tm_res_attr(r, key);
  return a && a->text[0] ? a->text : NULL;
}

/* "curl (pid 42)" for a span's resource. */
static void tb_process(tbuf *b, const ss__tm_resource *r) {
  const char *svc = res_text(r, "service.name"), *pid = res_text(r, "process.pid");
  tb_clean(b, svc ? svc : "unknown service", 0, 40);
  if (pid) {
    tb_str(b, " (pid ");
    tb_clean(b, pid, 0, 12);
    tb_str(b, ")");
  }
}

static int same_process(const ss__tm_resource *a, const ss__tm_resource *b) {
  const char *keys[] = {"service.name", "process.pid"};
  if (a == b) return 1;
  for (int i = 0; i < 2; i++) {
    const char *x = res_text(a, keys[i]), *y = res_text(b, keys[i]);
    if ((x == NULL) != (y == NULL) || (x && strcmp(x, y) != 0)) return 0;
  }
  return 1;
}

/* ---- traces ---- */

typedef struct trace {
  const ss__tm_span **sp;  /* spans of the trace, by start */
  size_t n;
  uint64_t start, end;
  size_t errors;
} trace;

typedef struct row {
  const ss__tm_span *s;
  char text[ROW_TEXT];     /* prefix + name + " " + detail, plain */
  size_t prefix_len, name_len;
  char err[256];
  char dur[32];
} row;

typedef struct render {
  FILE *out;
  const ss__wf_opts *o;
  int bar_w, label_w;
  size_t widest;           /* widest label seen (measuring pass) */
  int fixed_label;         /* label width for every block (drawing pass); 0: per block */
  row *rows;               /* scratch, max_rows + 1 */
  size_t n_rows;
} render;

static int cmp_span(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  int c = strcmp(x->trace_id, y->trace_id);
  if (c) return c;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return x < y ? -1 : x > y;  /* input order: the spans sit in one array */
}

static int cmp_trace(const void *a, const void *b) {
  const trace *x = a, *y = b;
  if (x->start != y->start) return x->start < y->start ? -1 : 1;
  return x->sp[0] < y->sp[0] ? -1 : x->sp[0] > y->sp[0];
}

/* Groups the sorted spans into traces, ordered by start. */
static trace *make_traces(const ss__tm_span **sp, size_t n, size_t *n_out) {
  trace *t = calloc(n ? n : 1, sizeof(*t));
  size_t k = 0;
  if (!t) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || strcmp(sp[i]->trace_id, sp[i - 1]->trace_id) != 0) {
      t[k++] = (trace){.sp = &sp[i], .start = sp[i]->start_ns, .end = ss__tm_end(sp[i])};
    }
    trace *c = &t[k - 1];
    c->n++;
    if (ss__tm_end(sp[i]) > c->end) c->end = ss__tm_end(sp[i]);
    c->errors += span_failed(sp[i]);
  }
  qsort(t, k, sizeof(*t), cmp_trace);
  *n_out = k;
  return t;
}

/* ---- output ---- */

static void put(render *r, const char *color, const char *s, size_t n) {
  if (n == 0) return;
  if (color && r->o->color) fputs(color, r->out);
  fwrite(s, 1, n, r->out);
  if (color && r->o->color) fputs(C_RESET, r->out);
}

static void puts_c(render *r, const char *color, const char *s) { put(r, color, s, strlen(s)); }

static void pad(render *r, size_t n) {
  for (; n > 0; n--) fputc(' ', r->out);
}

static const char *kind_color(const ss__tm_span *s) {
  if (span_failed(s)) return C_RED;
  switch (s->kind) {
  case 2: return C_GREEN;
  case 3: return C_CYAN;
  case 4: case 5: return C_YELLOW;
  default: return C_MAGENTA;
  }
}

/* The time bar of a span in the window [t0, t1]: whole cells of '█' plus an eighth
 * block for the remainder, at least an eighth so every span shows. */
static void put_bar(render *r, const ss__tm_span *s, uint64_t t0, uint64_t t1) {
  static const char *const eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  int w = r->bar_w, cells = w * 8;
  double total = t1 > t0 ? (double)(t1 - t0) : 1.0;
  /* Both ends in eighths of a cell; the bar starts on the nearest cell boundary and keeps
   * its true end, so long bars end where the span ended. */
  int a8 = (int)((double)(s->start_ns - t0) / total * cells + 0.5);
  int b8 = (int)((double)(ss__tm_end(s) - t0) / total * cells + 0.5);
  int first = (a8 + 4) / 8;
  if (first > w - 1) first = w - 1;
  int len8 = b8 - first * 8;
  if (len8 < 1) len8 = 1;
  if (len8 > cells - first * 8) len8 = cells - first * 8;
  char bar[SS_WF_BAR_WIDTH * 3 * 8 + 16];
  tbuf b = {bar, 0, sizeof(bar)};
  for (int i = 0; i < len8 / 8; i++) tb_str(&b, "█");
  tb_str(&b, eighths[len8 % 8]);
  int used = first + len8 / 8 + (len8 % 8 != 0);
  put(r, C_DIM, "│", strlen("│"));
  pad(r, (size_t)first);
  put(r, kind_color(s), bar, b.len);
  pad(r, (size_t)(w - used));
  put(r, C_DIM, "│", strlen("│"));
}

/* The first frames of a failed span's stack, under its row, indented past the tree. */
static void print_stack(render *r, const row *rw) {
  const char *p = rw->s->stack;
  for (int k = 0; *p && k < SS_WF_STACK_FRAMES; k++) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    char line[512];
    tbuf b = {line, 0, sizeof line};
    line[0] = '\0';
    tb_clean(&b, "", 0, 0);
    char frame[400];
    snprintf(frame, sizeof frame, "%.*s", (int)(n < 399 ? n : 399), p);
    tb_clean(&b, frame, 0, 160);
    fputs("  ", r->out);
    pad(r, rw->prefix_len + 3);
    puts_c(r, C_DIM, line);
    fputc('\n', r->out);
    p += n + (nl != NULL);
  }
}

static void print_row(render *r, const row *rw, uint64_t t0, uint64_t t1) {
  size_t len = strlen(rw->text);
  size_t fit = u8_fit(rw->text, len, (size_t)r->label_w);
  int cut = fit < len;
  if (cut) fit = u8_fit(rw->text, len, (size_t)r->label_w - 1);
  size_t p = rw->prefix_len < fit ? rw->prefix_len : fit;
  size_t nm = rw->prefix_len + rw->name_len < fit ? rw->prefix_len + rw->name_len : fit;
  fputs("  ", r->out);
  put(r, C_DIM, rw->text, p);
  put(r, rw->err[0] ? C_RED C_BOLD : C_BOLD, rw->text + p, nm - p);
  fwrite(rw->text + nm, 1, fit - nm, r->out);
  if (cut) fputs("…", r->out);
  pad(r, (size_t)r->label_w - u8_width(rw->text, fit) - (size_t)cut + 2);
  put_bar(r, rw->s, t0, t1);
  size_t dw = u8_width(rw->dur, strlen(rw->dur));
  pad(r, dw < 9 ? 9 - dw : 1);
  fputs(rw->dur, r->out);
  if (rw->err[0]) {
    fputs("  ", r->out);
    puts_c(r, C_RED, rw->err);
  }
  fputc('\n', r->out);
  if (r->o->stacks && rw->err[0] && rw->s->stack) print_stack(r, rw);
}

/* Fills a row: tree prefix, orphan marker, name, details, error, duration. */
static void fill_row(row *rw, const ss__tm_span *s, const char *prefix, const char *lead) {
  tbuf b = {rw->text, 0, sizeof(rw->text)};
  rw->s = s;
  rw->text[0] = '\0';
  tb_str(&b, prefix);
  rw->prefix_len = b.len;
  if (lead) tb_str(&b, lead);
  tb_clean(&b, s->name[0] ? s->name : "(unnamed)", 0, 60);
  rw->name_len = b.len - rw->prefix_len;
  size_t before = b.len;
  tb_str(&b, " ");
  span_detail(&b, s);
  if (b.len == before + 1) b.p[--b.len] = '\0';  /* no details: no trailing blank */
  tbuf e = {rw->err, 0, sizeof(rw->err)};
  rw->err[0] = '\0';
  span_error(&e, s);
  if (span_finished(s)) ss__wf_duration(s->end_ns - s->start_ns, rw->dur, sizeof(rw->dur));
  else snprintf(rw->dur, sizeof(rw->dur), "?");
}

/* Label column: as wide as the widest row, within the configured maximum. */
static void fit_label(render *r) {
  size_t w = 10;
  for (size_t i = 0; i < r->n_rows; i++) {
    size_t rw = u8_width(r->rows[i].text, strlen(r->rows[i].text));
    if (rw > w) w = rw;
  }
  if (w > r->widest) r->widest = w;
  if (r->fixed_label) w = (size_t)r->fixed_label;
  r->label_w = (int)(w < (size_t)r->o->label_width ? w : (size_t)r->o->label_width);
}

static void print_rows(render *r, uint64_t t0, uint64_t t1) {
  fit_label(r);
  for (size_t i = 0; i < r->n_rows; i++) print_row(r, &r->rows[i], t0, t1);
}

static void header_counts(render *r, uint64_t ns, int have_dur, size_t spans, size_t errors,
                          const char *what) {
  char tmp[64];
  if (have_dur) {
    ss__wf_duration(ns, tmp, sizeof(tmp));
    puts_c(r, C_BOLD, " · ");
    puts_c(r, C_BOLD, tmp);
  }
  snprintf(tmp, sizeof(tmp), " · %zu %s%s", spans, what, spans == 1 ? "" : "s");
  puts_c(r, C_BOLD, tmp);
  if (errors) {
    snprintf(tmp, sizeof(tmp), " · %zu error%s", errors, errors == 1 ? "" : "s");
    puts_c(r, C_RED C_BOLD, tmp);
  }
  fputc('\n', r->out);
}

/* ---- one trace as a tree ---- */

#define NONE ((size_t)-1)

typedef struct tree {
  size_t *first, *last, *next; /* child lists, by index into the trace's spans */
  size_t *top, n_top;          /* top-level spans in order */
  size_t *cur;                 /* DFS: next child to visit per depth */
  unsigned char *more, *seen;  /* DFS: level has more siblings; span already shown */
} tree;

typedef struct idkey {
  const char *id;
  size_t idx;
} idkey;

static int cmp_idkey(const void *a, const void *b) {
  return strcmp(((const idkey *)a)->id, ((const idkey *)b)->id);
}

static void tree_free(tree *tr) {
  free(tr->first);
  free(tr->last);
  free(tr->next);
  free(tr->top);
  free(tr->cur);
  free(tr->more);
  free(tr->seen);
}

static int tree_alloc(tree *tr, size_t n) {
  memset(tr, 0, sizeof(*tr));
  tr->first = malloc(n * sizeof(size_t));
  tr->last = malloc(n * sizeof(size_t));
  tr->next = malloc(n * sizeof(size_t));
  tr->top = malloc(n * sizeof(size_t));
  tr->cur = malloc((n + 1) * sizeof(size_t));
  tr->more = calloc(n + 1, 1);
  tr->seen = calloc(n, 1);
  if (!tr->first || !tr->last || !tr->next || !tr->top || !tr->cur || !tr->more || !tr->seen) {
    tree_free(tr);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) tr->first[i] = tr->last[i] = tr->next[i] = NONE;
  return 0;
}

/* Parent of span i, by id, or NONE. A span that names itself is treated as parentless. */
static size_t find_parent(const trace *t, const idkey *ids, size_t i) {
  const ss__tm_span *s = t->sp[i];
  if (!s->parent_id[0] || strcmp(s->parent_id, s->span_id) == 0) return NONE;
  idkey k = {s->parent_id, 0};
  const idkey *hit = bsearch(&k, ids, t->n, sizeof(*ids), cmp_idkey);
  return hit ? hit->idx : NONE;
}

/* Links each span under its parent; spans arrive by start, so appending keeps children
 * ordered by start. Spans without a parent in the trace are top-level. */
static int build_tree(const trace *t, tree *tr) {
  idkey *ids = malloc(t->n * sizeof(*ids));
  if (!ids || tree_alloc(tr, t->n) < 0) {
    free(ids);
    return -ENOMEM;
  }
  for (size_t i = 0; i < t->n; i++) ids[i] = (idkey){t->sp[i]->span_id, i};
  qsort(ids, t->n, sizeof(*ids), cmp_idkey);
  for (size_t i = 0; i < t->n; i++) {
    size_t p = find_parent(t, ids, i);
    if (p == NONE) {
      tr->top[tr->n_top++] = i;
    } else {
      if (tr->last[p] == NONE) tr->first[p] = i;
      else tr->next[tr->last[p]] = i;
      tr->last[p] = i;
    }
  }
  free(ids);
  return 0;
}

static void add_row(render *r, const trace *t, tree *tr, size_t i, size_t depth) {
  char prefix[ROW_TEXT];
  tbuf b = {prefix, 0, sizeof(prefix)};
  prefix[0] = '\0';
  for (size_t lvl = 1; lvl < depth; lvl++) tb_str(&b, tr->more[lvl] ? "│  " : "   ");
  if (depth > 0) tb_str(&b, tr->more[depth] ? "├─ " : "└─ ");
  /* A top-level span that names a parent: its parent is not in this file. */
  const char *lead = depth == 0 && t->sp[i]->parent_id[0] ? "↳ " : NULL;
  fill_row(&r->rows[r->n_rows++], t->sp[i], prefix, lead);
  tr->seen[i] = 1;
}

/* Depth-first from top-level span `top`, without recursion (traces can be deep). */
static void walk(render *r, const trace *t, tree *tr, size_t top) {
  size_t depth = 0;
  add_row(r, t, tr, top, 0);
  tr->cur[0] = tr->first[top];
  for (;;) {
    size_t c = tr->cur[depth];
    if (c == NONE) {
      if (depth == 0) return;
      depth--;
      continue;
    }
    tr->cur[depth] = tr->next[c];
    if (tr->seen[c]) continue;
    if (r->n_rows >= r->o->max_rows) return;
    tr->more[depth + 1] = tr->next[c] != NONE;
    add_row(r, t, tr, c, depth + 1);
    tr->cur[++depth] = tr->first[c];
  }
}

/* Rows of one trace; spans in a parent cycle (never reached from the top) are shown at
 * the top level too, so every span appears once. */
static int trace_rows(render *r, const trace *t) {
  tree tr;
  if (build_tree(t, &tr) < 0) return -ENOMEM;
  r->n_rows = 0;
  for (size_t k = 0; k < tr.n_top && r->n_rows < r->o->max_rows; k++)
    walk(r, t, &tr, tr.top[k]);
  for (size_t i = 0; i < t->n && r->n_rows < r->o->max_rows; i++)
    if (!tr.seen[i]) walk(r, t, &tr, i);
  tree_free(&tr);
  return 0;
}

static void trace_header(render *r, const trace *t) {
  char buf[512];
  tbuf b = {buf, 0, sizeof(buf)};
  buf[0] = '\0';
  tb_str(&b, "trace ");
  tb_add(&b, t->sp[0]->trace_id, 8);
  const ss__tm_resource *shown[3];
  size_t n_shown = 0, n_more = 0;
  for (size_t i = 0; i < t->n; i++) {
    size_t k = 0;
    while (k < n_shown && !same_process(shown[k], t->sp[i]->res)) k++;
    if (k < n_shown) continue;
    if (n_shown == 3) {
      n_more++;  /* counts spans of further processes, good enough for "+more" */
      continue;
    }
    shown[n_shown++] = t->sp[i]->res;
    tb_str(&b, n_shown == 1 ? " · " : ", ");
    tb_process(&b, t->sp[i]->res);
  }
  if (n_more) tb_str(&b, ", …");
  puts_c(r, C_BOLD, buf);
  header_counts(r, t->end - t->start, 1, t->n, t->errors, "span");
}

static int render_trace(render *r, const trace *t) {
  if (trace_rows(r, t) < 0) return -ENOMEM;
  trace_header(r, t);
  print_rows(r, t->start, t->end);
  if (r->n_rows < t->n) {
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "  … %zu more span%s in this trace\n", t->n - r->n_rows,
             t->n - r->n_rows == 1 ? "" : "s");
    puts_c(r, C_DIM, tmp);
  }
  return 0;
}

/* A run of one-span traces of one process: one heading, one row per trace (its short id
 * first), bars on the run's common time scale. */
static void render_group(render *r, const trace *t, size_t n) {
  uint64_t t0 = t[0].start, t1 = t[0].end;
  size_t errors = 0;
  r->n_rows = 0;
  for (size_t i = 0; i < n; i++) {
    char prefix[16];
    const ss__tm_span *s = t[i].sp[0];
    snprintf(prefix, sizeof(prefix), "%.8s ", s->trace_id);
    fill_row(&r->rows[r->n_rows++], s, prefix, s->parent_id[0] ? "↳ " : NULL);
    if (t[i].end > t1) t1 = t[i].end;
    errors += t[i].errors;
  }
  char buf[256];
  tbuf b = {buf, 0, sizeof(buf)};
  buf[0] = '\0';
  tb_process(&b, t[0].sp[0]->res);
  puts_c(r, C_BOLD, buf);
  header_counts(r, t1 - t0, 1, n, errors, "one-span trace");
  print_rows(r, t0, t1);
}

/* How many traces from t[0] form a run worth grouping (0 or 1: none). */
static size_t group_len(const trace *t, size_t avail, size_t cap) {
  size_t k = 0;
  while (k < avail && k < cap && t[k].n == 1 &&
         same_process(t[k].sp[0]->res, t[0].sp[0]->res))
    k++;
  return k;
}

static void footer(render *r, const ss__tm *m, size_t n_traces) {
  char buf[512];
  int k = snprintf(buf, sizeof(buf), "%zu span%s in %zu trace%s", m->n_spans,
                   m->n_spans == 1 ? "" : "s", n_traces, n_traces == 1 ? "" : "s");
  if (m->n_dropped)
    k += snprintf(buf + k, sizeof(buf) - (size_t)k, "; %zu more not loaded", m->n_dropped);
  if (m->n_invalid)
    k += snprintf(buf + k, sizeof(buf) - (size_t)k, "; %zu without valid ids skipped",
                  m->n_invalid);
  if (m->n_log_records)
    k += snprintf(buf + k, sizeof(buf) - (size_t)k, "; %zu log record%s not shown",
                  m->n_log_records, m->n_log_records == 1 ? "" : "s");
  if (m->n_shim_spans_dropped)
    k += snprintf(buf + k, sizeof(buf) - (size_t)k, "; the shim dropped %zu span%s",
                  m->n_shim_spans_dropped, m->n_shim_spans_dropped == 1 ? "" : "s");
  if (m->n_shim_logs_dropped)
    snprintf(buf + k, sizeof(buf) - (size_t)k, "; the shim dropped %zu exception log record%s",
             m->n_shim_logs_dropped, m->n_shim_logs_dropped == 1 ? "" : "s");
  puts_c(r, C_DIM, buf);
  fputc('\n', r->out);
}

/* ---- the slowest and failing spans ---- */

static int cmp_duration(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  uint64_t dx = ss__tm_end(x) - x->start_ns, dy = ss__tm_end(y) - y->start_ns;
  return dx < dy ? 1 : dx > dy ? -1 : 0;
}

/* "  1.20 s  SELECT orders · shop (pid 42) · trace 3ecca8d6" */
static void summary_row(render *r, const char *head, const ss__tm_span *s, int failing) {
  char text[512], dur[32];
  tbuf b = {text, 0, sizeof(text)};
  text[0] = 0;
  ss__wf_duration(ss__tm_end(s) - s->start_ns, dur, sizeof(dur));
  fprintf(r->out, "%-8s %9s  ", head, span_finished(s) ? dur : "?");
  tb_clean(&b, s->name, 1, 60);
  tb_str(&b, " · ");
  tb_process(&b, s->res);
  tb_str(&b, " · trace ");
  tb_add(&b, s->trace_id, 8);
  puts_c(r, failing ? C_RED : NULL, text);
  if (failing) {
    char err[256];
    tbuf e = {err, 0, sizeof(err)};
    err[0] = 0;
    span_error(&e, s);
    fputs("  ", r->out);
    puts_c(r, C_RED, err);
  }
  fputc('\n', r->out);
}

static int summary(render *r, const ss__tm_span **sp, size_t n) {
  if (n < 3) return 0;  /* the picture says it all */
  const ss__tm_span **by = malloc(n * sizeof(*by));
  if (!by) return -ENOMEM;
  memcpy(by, sp, n * sizeof(*by));
  qsort(by, n, sizeof(*by), cmp_duration);
  for (size_t i = 0; i < n && i < SS_WF_SLOWEST; i++)
    summary_row(r, i == 0 ? "slowest" : "", by[i], 0);
  size_t failed = 0;
  for (size_t i = 0; i < n; i++) failed += (size_t)span_failed(sp[i]);
  for (size_t i = 0, shown = 0; i < n && shown < SS_WF_FAILING; i++)
    if (span_failed(by[i])) summary_row(r, shown++ == 0 ? "failing" : "", by[i], 1);
  if (failed > SS_WF_FAILING)
    fprintf(r->out, "%-8s %zu more failing span%s\n", "", failed - SS_WF_FAILING,
            failed - SS_WF_FAILING == 1 ? "" : "s");
  fputc('\n', r->out);
  free(by);
  return 0;
}

static void opts_defaults(ss__wf_opts *o, const ss__wf_opts *in) {
  if (in) *o = *in;
  else memset(o, 0, sizeof(*o));
  if (o->bar_width <= 0 || o->bar_width > SS_WF_BAR_WIDTH * 8) o->bar_width = SS_WF_BAR_WIDTH;
  if (o->label_width <= 0) o->label_width = SS_WF_LABEL_WIDTH;
  if (o->label_width < 16) o->label_width = 16;
  if (o->label_width > ROW_TEXT / 4) o->label_width = ROW_TEXT / 4;
  if (o->max_traces == 0) o->max_traces = SS_WF_MAX_TRACES;
  if (o->max_rows == 0) o->max_rows = SS_WF_MAX_ROWS;
}

static int render_all(render *r, const trace *t, size_t nt) {
  size_t shown = 0, i = 0;
  while (i < nt && shown < r->o->max_traces) {
    size_t g = t[i].n == 1 ? group_len(&t[i], nt - i, r->o->max_traces - shown) : 0;
    if (g > r->o->max_rows) g = r->o->max_rows;
    if (i > 0) fputc('\n', r->out);
    if (g >= 2) {
      render_group(r, &t[i], g);
    } else {
      g = 1;
      if (render_trace(r, &t[i]) < 0) return -ENOMEM;
    }
    i += g;
    shown += g;
  }
  if (i < nt) {
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "\n… %zu more trace%s not shown\n", nt - i,
             nt - i == 1 ? "" : "s");
    puts_c(r, C_DIM, tmp);
  }
  return 0;
}

static ssize_t discard(void *c, const char *buf, size_t n) {
  (void)c;
  (void)buf;
  return (ssize_t)n;
}

/* Draws everything into a stream that discards it, to learn the widest label. */
static int measure(render *r, const trace *t, size_t nt) {
  FILE *null = fopencookie(NULL, "w", (cookie_io_functions_t){.write = discard});
  if (!null) return -ENOMEM;
  FILE *out = r->out;
  r->out = null;
  int rc = render_all(r, t, nt);
  fclose(null);
  r->out = out;
  r->fixed_label = (int)r->widest;
  return rc;
}

int ss__waterfall(FILE *out, const ss__tm *m, const ss__wf_opts *o_in) {
  ss__wf_opts o;
  opts_defaults(&o, o_in);
  render r = {.out = out, .o = &o, .bar_w = o.bar_width};
  size_t n = m->n_spans, nt = 0;
  const ss__tm_span **sp = malloc((n ? n : 1) * sizeof(*sp));
  r.rows = malloc(o.max_rows * sizeof(*r.rows));
  trace *t = NULL;
  int rc = -ENOMEM;
  if (!sp || !r.rows) goto done;
  for (size_t i = 0; i < n; i++) sp[i] = &m->spans[i];
  qsort(sp, n, sizeof(*sp), cmp_span);
  if (!(t = make_traces(sp, n, &nt))) goto done;
  if (nt == 0) fputs("no spans\n", out);
  if ((rc = measure(&r, t, nt)) < 0 || (rc = render_all(&r, t, nt)) < 0) goto done;
  if (nt) fputc('\n', out);
  if (o.summary && (rc = summary(&r, sp, n)) < 0) goto done;
  footer(&r, m, nt);
  rc = ferror(out) ? -EIO : 0;
done:
  free(t);
  free(r.rows);
  free(sp);
  return rc;
}
