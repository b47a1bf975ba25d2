/* exceptions.c - see exceptions.h. */
#include "runtime/exceptions.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config.h"
#include "runtime/stack.h"
#include "runtime/symbolize.h"

#define BLOCK 65536
/* The first block is small: an exiting fork child symbolizes one caller, and every heap
 * page it touches is a fault (a 64 KiB block touches the page after it too). */
#define FIRST_BLOCK (4096 - 64)
#define MAX_MODULES_NAMED 64

typedef struct ss__exc_block {
  struct ss__exc_block *next;
  size_t used, cap;
  max_align_t data[];
} block;

static void *balloc(ss__exc_batch *b, size_t n) {
  n = (n + 15) & ~(size_t)15;
  block *k = b->blocks;
  if (k == NULL || k->cap - k->used < n) {
    size_t cap = n > BLOCK ? n : k == NULL ? FIRST_BLOCK : BLOCK;
    k = malloc(sizeof(block) + cap);
    if (k == NULL) return NULL;
    k->next = b->blocks;
    k->used = 0;
    k->cap = cap;
    b->blocks = k;
  }
  void *p = (char *)k->data + k->used;
  k->used += n;
  return p;
}

static char *bstrdup(ss__exc_batch *b, const char *s, size_t n) {
  char *p = balloc(b, n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

void ss__exc_reset(ss__exc_batch *b) {
  /* One block and the records' array are kept for the next batch (no malloc and free of
   * 64 KiB per batch, whose pages glibc would hand back and fault in again): the largest
   * of at most BLOCK bytes (the first one is small, those after it BLOCK). */
  block *keep = NULL;
  for (block *k = b->blocks; k; k = k->next)
    if (k->cap <= BLOCK && (keep == NULL || k->cap > keep->cap)) keep = k;
  for (block *k = b->blocks, *next; k; k = next) {
    next = k->next;
    if (k != keep) free(k);
  }
  b->blocks = keep;
  if (keep) {
    keep->next = NULL;
    keep->used = 0;
  }
  b->n_logs = 0;
  memset(b->callers, 0, sizeof b->callers); /* their names were in the blocks */
}

static const ss__attr *find(const ss__span *s, const char *key) {
  for (size_t i = 0; i < s->n_attrs; i++)
    if (s->attrs[i].key && strcmp(s->attrs[i].key, key) == 0) return &s->attrs[i];
  return NULL;
}

/* A growable text in one malloc'd buffer, copied into the batch at the end. */
typedef struct text {
  char *p;
  size_t n, cap;
} text;

static void tputf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tputf(text *t, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0) return;
    if (t->p && t->n + (size_t)w < t->cap) {
      t->n += (size_t)w;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->n + (size_t)w + 1) cap *= 2;
    char *np = realloc(t->p, cap);
    if (np == NULL) return;
    t->p = np;
    t->cap = cap;
  }
}

/* The gdb-like trace and the "build-id path" list of the modules it names. */
static void render(const uint64_t *pcs, size_t n, int max, text *trace, text *mods) {
  const char *named[MAX_MODULES_NAMED];
  size_t n_named = 0;
  int k = 0;
  for (size_t i = 0; i < n && (max <= 0 || k < max); i++) {
    ss__frame f;
    int known = ss__symbolize(pcs[i], &f) == 0;
    if (known && f.in_shim) continue;
    tputf(trace, "#%d 0x%016" PRIx64 " in %s", k++, pcs[i], f.func ? f.func : "??");
    if (known) tputf(trace, " (%s+0x%" PRIx64 ")", f.module, f.offset);
    tputf(trace, "\n");
    if (!known) continue;
    size_t j = 0;
    while (j < n_named && named[j] != f.module) j++;
    if (j == n_named && n_named < MAX_MODULES_NAMED) {
      named[n_named++] = f.module;
      tputf(mods, "%s %s", f.build_id[0] ? f.build_id : "-", f.module);
      if (mods->p) mods->p[mods->n++] = '\0'; /* string array: NUL-separated items */
    }
  }
}

/* The caller's function name, symbolized once per batch and call site (b->callers). */
static const ss__exc_caller *caller_name(ss__exc_batch *b, uint64_t caller) {
  ss__exc_caller *c = &b->callers[(caller >> 4) % SS_EXC_CALLERS];
  if (c->caller == caller) return c;
  ss__frame f;
  *c = (ss__exc_caller){.caller = caller};
  ss__loader_lock(); /* the symbol cache's lock (symbolize.h) */
  if (ss__symbolize(caller, &f) == 0 && !f.in_shim && f.func != NULL) {
    size_t n = strlen(f.func);
    c->name = bstrdup(b, f.func, n);
    c->len = c->name ? (uint32_t)n : 0;
  }
  ss__loader_unlock();
  return c;
}

static void code_attribution(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t cap) {
  if (s->caller == 0 || s->n_attrs >= cap) return;
  const ss__exc_caller *c = caller_name(b, s->caller);
  if (c->name == NULL) return;
  ss__attr *a = &attrs[s->n_attrs++];
  a->key = "code.function.name";
  a->type = SS_ATTR_STR;
  a->len = c->len;
  a->v.s = c->name;
}

/* The semconv event for the failed operation (semconv 1.40: db/database-exceptions,
 * http/http-exceptions): database client operations and HTTP client requests are WARN
 * (13), HTTP server requests ERROR (17); anything else the generic `exception`, ERROR. */
static void exception_event(const ss__span *s, const char **name, int *severity) {
  int http = find(s, "http.request.method") != NULL;
  if (find(s, "db.system.name") != NULL && s->kind == SS_KIND_CLIENT) {
    *name = "db.client.operation.exception";
    *severity = 13; /* SEVERITY_NUMBER_WARN */
  } else if (http && s->kind == SS_KIND_CLIENT) {
    *name = "http.client.request.exception";
    *severity = 13;
  } else if (http && s->kind == SS_KIND_SERVER) {
    *name = "http.server.request.exception";
    *severity = 17; /* SEVERITY_NUMBER_ERROR */
  } else {
    *name = "exception";
    *severity = 17;
  }
}

static int add_log(ss__exc_batch *b, const ss__span *s, const ss__attr *ea, size_t n) {
  if (b->n_logs == b->cap_logs) {
    size_t cap = b->cap_logs ? b->cap_logs * 2 : 16;
    ss__logrec *l = realloc(b->logs, cap * sizeof *l);
    if (l == NULL) return -ENOMEM;
    b->logs = l;
    b->cap_logs = cap;
  }
  ss__logrec *l = &b->logs[b->n_logs++];
  memset(l, 0, sizeof *l);
  l->time_ns = s->end_ns;
  exception_event(s, &l->event_name, &l->severity);
  memcpy(l->trace_id, s->trace_id, 16);
  memcpy(l->span_id, s->span_id, 8);
  l->flags = s->flags;
  l->attrs = ea;
  l->n_attrs = n;
  return 0;
}

int ss__exc_span(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t attrs_cap,
                 unsigned signals) {
  const ss__attr *raw = NULL;
  for (size_t i = 0; i < s->n_attrs; i++)
    if (attrs[i].type == SS_ATTR_STACK) { /* take it out: never exported raw */
      ss__attr tmp = attrs[i];
      attrs[i] = attrs[--s->n_attrs];
      attrs[s->n_attrs] = tmp;
      raw = &attrs[s->n_attrs];
      break;
    }
  uint64_t pcs[136];
  size_t n_pcs = 0;
  if (raw) { /* copied out: code attribution may reuse the slot it sits in */
    n_pcs = raw->len / 8 > 136 ? 136 : raw->len / 8;
    memcpy(pcs, raw->v.s, n_pcs * 8);
  }
  code_attribution(b, s, attrs, attrs_cap);
  if (raw == NULL || signals == 0) return 0;

  text trace = {0}, mods = {0};
  ss__loader_lock();
  render(pcs, n_pcs, b->max_frames, &trace, &mods);
  ss__loader_unlock();
  const ss__attr *type = find(s, "error.type");
  ss__attr *ea = balloc(b, 4 * sizeof *ea);
  ss__event *ev = balloc(b, sizeof *ev);
  char *tr = trace.p ? bstrdup(b, trace.p, trace.n) : NULL;
  char *md = mods.p ? balloc(b, mods.n) : NULL;
  if (md) memcpy(md, mods.p, mods.n);
  free(trace.p);
  free(mods.p);
  if (ea == NULL || ev == NULL) return -ENOMEM;
  size_t n = 0;
  ea[n++] = (ss__attr){.key = "exception.type", .type = SS_ATTR_STR,
                       .len = type ? type->len : 6, .v.s = type ? type->v.s : "_OTHER"};
  if (s->status_message)
    ea[n++] = (ss__attr){.key = "exception.message", .type = SS_ATTR_STR,
                         .len = s->status_message_len, .v.s = s->status_message};
  if (tr)
    ea[n++] = (ss__attr){.key = "exception.stacktrace", .type = SS_ATTR_STR,
                         .len = (uint32_t)trace.n, .v.s = tr};
  if (md)
    ea[n++] = (ss__attr){.key = "spanshim.stack.modules", .type = SS_ATTR_STRARR,
                         .len = (uint32_t)mods.n, .v.s = md};
  if (signals & SS_EXC_EVENT) {
    *ev = (ss__event){.name = "exception", .time_ns = s->end_ns, .attrs = ea, .n_attrs = n};
    s->events = ev;
    s->n_events = 1;
  }
  if (signals & SS_EXC_LOG) return add_log(b, s, ea, n);
  return 0;
}
