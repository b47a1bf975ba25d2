/* exceptions.c - see exceptions.h. */
#include "runtime/exceptions.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/stack.h"
#include "runtime/symbolize.h"

#define BLOCK 65536
/* The first block is small: an exiting fork child symbolizes one caller, and every heap
 * page it touches is a fault (a block touches the page after it too: 1 KiB, not 4, keeps
 * a fork child's exit on one heap page fewer). */
#define FIRST_BLOCK (1024 - 64)
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

/* The exception log record of span s, with attributes ea[0..n). */
static void fill_log(ss__logrec *l, const ss__span *s, const ss__attr *ea, size_t n) {
  memset(l, 0, sizeof *l);
  l->time_ns = s->end_ns;
  exception_event(s, &l->event_name, &l->severity);
  memcpy(l->trace_id, s->trace_id, 16);
  memcpy(l->span_id, s->span_id, 8);
  l->flags = s->flags;
  l->attrs = ea;
  l->n_attrs = n;
}

static int add_log(ss__exc_batch *b, const ss__span *s, const ss__attr *ea, size_t n) {
  if (b->n_logs == b->cap_logs) {
    size_t cap = b->cap_logs ? b->cap_logs * 2 : 16;
    ss__logrec *l = realloc(b->logs, cap * sizeof *l);
    if (l == NULL) return -ENOMEM;
    b->logs = l;
    b->cap_logs = cap;
  }
  fill_log(&b->logs[b->n_logs++], s, ea, n);
  return 0;
}

/* Takes the raw stack attribute out of s (it is never exported raw; attrs is s's
 * writable array) and copies its addresses into pcs (136 at most); returns how many, or
 * -1 when s has none. */
static int take_stack(ss__span *s, ss__attr *attrs, uint64_t pcs[136]) {
  for (size_t i = 0; i < s->n_attrs; i++)
    if (attrs[i].type == SS_ATTR_STACK) {
      ss__attr raw = attrs[i];
      attrs[i] = attrs[--s->n_attrs];
      attrs[s->n_attrs] = raw;
      size_t n = raw.len / 8 > 136 ? 136 : raw.len / 8;
      memcpy(pcs, raw.v.s, n * 8);
      return (int)n;
    }
  return -1;
}

/* The exception attributes of s into ea (room for 4): type, message, the rendered trace
 * tr[0..trn) and the modules list md[0..mdn) when there are. Returns how many. */
static size_t exc_attrs(ss__attr *ea, const ss__span *s, const char *tr, size_t trn,
                        const char *md, size_t mdn) {
  const ss__attr *type = find(s, "error.type");
  size_t n = 0;
  ea[n++] = (ss__attr){.key = "exception.type", .type = SS_ATTR_STR,
                       .len = type ? type->len : 6, .v.s = type ? type->v.s : "_OTHER"};
  if (s->status_message)
    ea[n++] = (ss__attr){.key = "exception.message", .type = SS_ATTR_STR,
                         .len = s->status_message_len, .v.s = s->status_message};
  if (tr)
    ea[n++] = (ss__attr){.key = "exception.stacktrace", .type = SS_ATTR_STR,
                         .len = (uint32_t)trn, .v.s = tr};
  if (md)
    ea[n++] = (ss__attr){.key = "spanshim.stack.modules", .type = SS_ATTR_STRARR,
                         .len = (uint32_t)mdn, .v.s = md};
  return n;
}

static int exc_span_stack(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t attrs_cap,
                          unsigned signals);

int ss__exc_span(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t attrs_cap,
                 unsigned signals) {
  if (s->no_stack) { /* most spans: no stack to look for, no frame for one */
    code_attribution(b, s, attrs, attrs_cap);
    return 0;
  }
  return exc_span_stack(b, s, attrs, attrs_cap, signals);
}

__attribute__((noinline)) static int exc_span_stack(ss__exc_batch *b, ss__span *s, ss__attr *attrs,
                                                    size_t attrs_cap, unsigned signals) {
  uint64_t pcs[136]; /* copied out: code attribution may reuse the slot it sits in */
  int got = take_stack(s, attrs, pcs);
  size_t n_pcs = got > 0 ? (size_t)got : 0;
  code_attribution(b, s, attrs, attrs_cap);
  if (got < 0 || signals == 0) return 0;

  text trace = {0}, mods = {0};
  ss__loader_lock();
  render(pcs, n_pcs, b->max_frames, &trace, &mods);
  ss__loader_unlock();
  ss__attr *ea = balloc(b, 4 * sizeof *ea);
  ss__event *ev = balloc(b, sizeof *ev);
  char *tr = trace.p ? bstrdup(b, trace.p, trace.n) : NULL;
  char *md = mods.p ? balloc(b, mods.n) : NULL;
  if (md) memcpy(md, mods.p, mods.n);
  free(trace.p);
  free(mods.p);
  if (ea == NULL || ev == NULL) return -ENOMEM;
  size_t n = exc_attrs(ea, s, tr, trace.n, md, mods.n);
  if (signals & SS_EXC_EVENT) {
    *ev = (ss__event){.name = "exception", .time_ns = s->end_ns, .attrs = ea, .n_attrs = n};
    s->events = ev;
    s->n_events = 1;
  }
  if (signals & SS_EXC_LOG) return add_log(b, s, ea, n);
  return 0;
}

/* ---- signal-safe: a dying thread's ---- */

#define SIG_TRACE_BYTES 4096
#define SIG_MODS_BYTES 2048
#define SIG_MODS 8

typedef struct sbuf {
  char *p;
  size_t n, cap;
} sbuf;

static void sput(sbuf *b, const char *s, size_t n) {
  if (b->n + 1 >= b->cap) return;
  if (b->cap - b->n <= n) n = b->cap - b->n - 1; /* cut: the room is fixed */
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static void sputs(sbuf *b, const char *s) {
  sput(b, s, strlen(s));
}

static void sput_hex(sbuf *b, uint64_t v, int width) {
  char d[16];
  int n = 0;
  do d[n++] = "0123456789abcdef"[v & 15]; while ((v >>= 4) != 0 || n < width);
  char out[16];
  for (int i = 0; i < n; i++) out[i] = d[n - 1 - i];
  sput(b, out, (size_t)n);
}

static void sput_dec(sbuf *b, unsigned v) {
  char d[12];
  int n = 0;
  do d[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  while (n > 0) sput(b, &d[--n], 1);
}

/* The GNU build id of the object mapped at map_start (its ELF header) and loaded at l_addr,
 * in hex, from its notes in memory; "" when it has none. */
static void build_id_in_memory(const void *map_start, uintptr_t l_addr, char *hex, size_t cap) {
  const ElfW(Ehdr) *eh = map_start;
  hex[0] = '\0';
  if (eh == NULL || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0) return;
  const ElfW(Phdr) *ph = (const ElfW(Phdr) *)((const char *)map_start + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_NOTE) continue;
    const char *p = (const char *)(l_addr + ph[i].p_vaddr), *end = p + ph[i].p_memsz;
    while ((size_t)(end - p) >= sizeof(ElfW(Nhdr))) {
      const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
      const char *name = p + sizeof *nh;
      const unsigned char *desc = (const unsigned char *)name + ((nh->n_namesz + 3) & ~3u);
      if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0 &&
          (size_t)nh->n_descsz * 2 < cap) {
        for (size_t k = 0; k < nh->n_descsz; k++) {
          hex[2 * k] = "0123456789abcdef"[desc[k] >> 4];
          hex[2 * k + 1] = "0123456789abcdef"[desc[k] & 15];
        }
        hex[2 * nh->n_descsz] = '\0';
        return;
      }
      p = (const char *)desc + ((nh->n_descsz + 3) & ~3u);
    }
  }
}

/* The path of the program itself (its link map names it ""), read once. */
static const char *exe_path(void) {
  static char exe[512];
  if (exe[0] == '\0') {
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return "?";
    exe[n] = '\0';
  }
  return exe;
}

static void render_sigsafe(const uint64_t *pcs, size_t n, int max, sbuf *trace, sbuf *mods) {
  struct link_map *named[SIG_MODS];
  size_t n_named = 0;
  struct dl_find_object self;
  int have_self = _dl_find_object((void *)(uintptr_t)&render_sigsafe, &self) == 0;
  int k = 0;
  for (size_t i = 0; i < n && (max <= 0 || k < max); i++) {
    struct dl_find_object fo;
    int known = _dl_find_object((void *)(uintptr_t)(pcs[i] - 1), &fo) == 0;
    if (known && have_self && fo.dlfo_link_map == self.dlfo_link_map) continue;
    const struct link_map *lm = known ? fo.dlfo_link_map : NULL;
    const char *module = lm && lm->l_name && lm->l_name[0] ? lm->l_name : exe_path();
    sputs(trace, "#");
    sput_dec(trace, (unsigned)k++);
    sputs(trace, " 0x");
    sput_hex(trace, pcs[i], 16);
    sputs(trace, " in ??");
    if (known) {
      sputs(trace, " (");
      sputs(trace, module);
      sputs(trace, "+0x");
      sput_hex(trace, pcs[i] - lm->l_addr, 1);
      sputs(trace, ")");
    }
    sputs(trace, "\n");
    if (!known) continue;
    size_t j = 0;
    while (j < n_named && named[j] != fo.dlfo_link_map) j++;
    if (j < n_named || n_named == SIG_MODS) continue;
    named[n_named++] = fo.dlfo_link_map;
    char id[2 * 64 + 1];
    build_id_in_memory(fo.dlfo_map_start, lm->l_addr, id, sizeof id);
    sputs(mods, id[0] ? id : "-");
    sputs(mods, " ");
    sputs(mods, module);
    if (mods->n < mods->cap) mods->p[mods->n++] = '\0'; /* string array: NUL-separated */
  }
}

int ss__exc_span_sigsafe(ss__span *s, ss__attr *attrs, size_t attrs_cap, unsigned signals,
                         int max_frames, ss__logrec *log) {
  static char trace_mem[SIG_TRACE_BYTES], mods_mem[SIG_MODS_BYTES];
  static ss__attr ea[4];
  static ss__event ev;
  (void)attrs_cap;
  uint64_t pcs[136];
  int got = take_stack(s, attrs, pcs);
  if (got < 0 || signals == 0) return 0;
  sbuf trace = {trace_mem, 0, sizeof trace_mem}, mods = {mods_mem, 0, sizeof mods_mem};
  render_sigsafe(pcs, (size_t)got, max_frames, &trace, &mods);
  size_t n = exc_attrs(ea, s, trace.n ? trace.p : NULL, trace.n, mods.n ? mods.p : NULL,
                       mods.n);
  if (signals & SS_EXC_EVENT) {
    ev = (ss__event){.name = "exception", .time_ns = s->end_ns, .attrs = ea, .n_attrs = n};
    s->events = &ev;
    s->n_events = 1;
  }
  if (!(signals & SS_EXC_LOG)) return 0;
  fill_log(log, s, ea, n);
  return 1;
}
