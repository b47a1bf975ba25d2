/* span.c - starting, ending and serializing spans on the app thread; see span.h. */
#include "runtime/span.h"

#include <stddef.h>
#include <string.h>

#include "runtime/bytes.h"
#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/span_rec.h"
#include "runtime/stack.h"

__thread ss__thread ss__self __attribute__((tls_model("initial-exec")));
ss__tracer ss__tracer_g;

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
_Static_assert(sizeof(ss__rec_attr) == SS__REC_ATTR_HEAD, "span.h's inline attributes");

int ss__tracer_init(const ss__config *c, size_t ring_bytes, void (*on_commit)(void)) {
  int rc = ss__ring_init(&ss__tracer_g.ring, ring_bytes);
  if (rc != 0) return rc;
  ss__tracer_g.attr_value_limit = c->attr_value_limit;
  ss__tracer_g.sampler = c->sampler;
  ss__tracer_g.ratio_bound = ss__ratio_bound(c->sampler_ratio);
  ss__tracer_g.root_parent = c->parent;
  if (c->parent.valid && c->tracestate != NULL && c->tracestate[0] != '\0') {
    ss__tracer_g.root_parent.ts = c->tracestate;
    ss__tracer_g.root_parent.ts_len = (uint16_t)strlen(c->tracestate);
  }
  ss__tracer_g.export_traces = c->traces_exporter != 0;
  ss__tracer_g.propagate_only = (uint8_t)c->disabled;
  ss__tracer_g.on_commit = on_commit;
  ss__tracer_g.stack_depth = c->stack_depth;
  return 0;
}

uint32_t ss__span_value_limit(void) {
  return ss__tracer_g.attr_value_limit;
}

int ss__ctx_depth(void) {
  return ss__self.depth;
}

int ss__ctx_push(const ss__ctx *c) {
  int d = ss__self.depth++;
  if (d < SS_CTX_DEPTH) ss__self.ctx[d] = *c;
  return d;
}

void ss__ctx_pop(int token) {
  if (token >= 0 && ss__self.depth > token) ss__self.depth = token;
}

int ss__ctx_replace(int token, const ss__ctx *c) {
  if (token < 0 || ss__self.depth != token + 1) return 0;
  if (token < SS_CTX_DEPTH) ss__self.ctx[token] = *c;
  return 1;
}

void ss__ctx_reset(const ss__ctx *c) {
  ss__self.depth = 0;
  if (c) ss__ctx_push(c);
}

void ss__rec_ctx(const void *rec, ss__ctx *out) {
  const ss__rec *r = rec;
  *out = (ss__ctx){0};
  memcpy(out->trace_id, r->trace_id, 16);
  memcpy(out->span_id, r->span_id, 8);
  out->flags = r->flags;
  out->valid = 1;
}

int ss__ctx_root(ss__ctx *out) {
  *out = ss__tracer_g.root_parent;
  return out->valid;
}

void ss__ctx_set_root(const ss__ctx *c) {
  ss__tracer_g.root_parent = *c;
}

void ss__dropped(enum ss__drop_reason why) {
  unsigned i = (unsigned)why < SS_DROP_REASONS ? (unsigned)why : SS_DROP_OTHER;
  atomic_fetch_add_explicit(&ss__tracer_g.drops[i], 1, memory_order_relaxed);
}

uint64_t ss__dropped_count(int why) {
  if (why == SS_DROP_RING_FULL)
    return atomic_load_explicit(&ss__tracer_g.ring.dropped, memory_order_relaxed);
  if (why < 0 || why >= SS_DROP_REASONS) return 0;
  return atomic_load_explicit(&ss__tracer_g.drops[why], memory_order_relaxed);
}

uint64_t ss__dropped_total(void) {
  uint64_t n = ss__dropped_count(SS_DROP_RING_FULL);
  for (int i = 0; i < SS_DROP_REASONS; i++) n += ss__dropped_count(i);
  return n;
}

uint64_t ss__tracer_activity(void) {
  return atomic_load_explicit(&ss__tracer_g.ring.head, memory_order_acquire) + ss__dropped_total();
}

/* Draws the ids a context left for later (SS_LAZY_*). */
static void draw_ids(ss__ctx *c) {
  ss__ids_new((c->lazy & SS_LAZY_TRACE) ? c->trace_id : NULL, c->span_id);
  c->lazy = 0;
}

/* Draws a lazy entry of this thread's stack in place: into a copy first, so a signal
 * handler that reads the entry meanwhile sees it lazy or whole (and, at worst, draws ids
 * of its own for a span that is not recorded). */
__attribute__((noinline)) static void draw_entry(ss__ctx *e) {
  ss__ctx t = *e;
  draw_ids(&t);
  memcpy(e->trace_id, t.trace_id, 16);
  memcpy(e->span_id, t.span_id, 8);
  atomic_signal_fence(memory_order_release);
  e->lazy = 0;
}

/* This thread's current context as ss__ctx_current gives it when it returns 1, by
 * pointer (into the stack, or the root parent); NULL when there is none. */
static inline __attribute__((always_inline)) const ss__ctx *current(void) {
  int d = ss__self.depth;
  if (d > 0) {
    ss__ctx *e = &ss__self.ctx[(d > SS_CTX_DEPTH ? SS_CTX_DEPTH : d) - 1];
    if (__builtin_expect(e->lazy != 0, 0)) draw_entry(e);
    if (!e->valid || (e->live && atomic_load_explicit(e->live, memory_order_acquire) != e->gen))
      return NULL;
    return e;
  }
  return ss__tracer_g.root_parent.valid ? &ss__tracer_g.root_parent : NULL;
}

int ss__ctx_current(ss__ctx *out) {
  int d = ss__self.depth;
  if (d > 0) {
    ss__ctx *e = &ss__self.ctx[(d > SS_CTX_DEPTH ? SS_CTX_DEPTH : d) - 1];
    if (__builtin_expect(e->lazy != 0, 0)) draw_entry(e);
    *out = *e;
    /* An invalid entry is a barrier (what starts under it is a root), and so is one whose
     * owner ended it (an inherited request context after its response). */
    if (out->live && atomic_load_explicit(out->live, memory_order_acquire) != out->gen)
      out->valid = 0;
    return out->valid;
  }
  if (ss__tracer_g.root_parent.valid) {
    *out = ss__tracer_g.root_parent;
    return 1;
  }
  return 0;
}

static int ratio_sample(const uint8_t tid[16]) {
  return ss__ratio_keep(ss__tracer_g.ratio_bound, tid);
}

/* 1 when the sampler decides a root span by its trace id. */
static int needs_trace_id(int sampler) {
  return sampler == SS_SAMPLER_RATIO || sampler == SS_SAMPLER_PB_RATIO;
}

static int should_sample(const ss__ctx *parent, const uint8_t tid[16]) {
  switch (ss__tracer_g.sampler) {
    case SS_SAMPLER_ALWAYS_ON: return 1;
    case SS_SAMPLER_ALWAYS_OFF: return 0;
    case SS_SAMPLER_RATIO: return ratio_sample(tid);
    case SS_SAMPLER_PB_ALWAYS_OFF: return parent ? (parent->flags & 1) : 0;
    case SS_SAMPLER_PB_RATIO: return parent ? (parent->flags & 1) : ratio_sample(tid);
    default: return parent ? (parent->flags & 1) : 1;
  }
}

/* OTEL_SDK_DISABLED: a non-recording span whose context is its parent's (so what is
 * injected passes the caller's context on unchanged), or an invalid one without a parent. */
static int start_propagate_only(ss__sb *b, const ss__ctx *parent) {
  ss__ctx c = {0};
  if (parent != NULL) {
    c = *parent;
    memcpy(b->s.trace_id, parent->trace_id, 16);
    memcpy(b->s.span_id, parent->span_id, 8);
    b->s.flags = parent->flags;
  }
  b->recording = 0;
  b->s.attrs = b->attrs;
  b->token = ss__ctx_push(&c);
  b->pushed = 1;
  return 0;
}

/* memset(s, 0, sizeof *s) as stores of its fields (a `rep stos` costs more than the span
 * has fields); name, kind and attrs are the caller's. A new ss__span field goes here too:
 * the assertion says when the struct changed. */
static inline __attribute__((always_inline)) void span_clear(ss__span *s) {
  _Static_assert(sizeof(ss__span) == 136, "ss__span changed: clear its new fields here");
  static const uint8_t zero[16];
  memcpy(s->trace_id, zero, 16);
  memcpy(s->span_id, zero, 8);
  memcpy(s->parent_id, zero, 8);
  s->flags = 0;
  s->status = 0;
  s->no_stack = 0;
  s->status_message = NULL;
  s->status_message_len = 0;
  s->start_ns = s->end_ns = 0;
  s->n_attrs = 0;
  s->events = NULL;
  s->n_events = 0;
  s->caller = 0;
  s->trace_state = NULL;
  s->trace_state_len = 0;
}

int ss__span_start_at(ss__sb *b, const char *name, int kind, void *caller) {
  const ss__ctx *parent = current();
  ss__span *s = &b->s;

  /* The decision comes first, so a span the sampler drops costs no ids and no clock read:
   * a child takes its trace id from the parent; a root needs its new trace id to decide
   * (traceidratio), and children and propagation need it either way. */
  span_clear(s);
  s->name = name;
  s->kind = (uint8_t)kind;
  s->attrs = b->attrs;
  b->n_stack = 0;
  b->exc = 0;
  b->lazy = 0;
  b->ts = NULL;
  b->ts_len = 0;
  b->rec_size = sizeof(ss__rec);
  if (ss__tracer_g.propagate_only) return start_propagate_only(b, parent);
  if (parent) {
    memcpy(s->trace_id, parent->trace_id, 16);
    memcpy(s->parent_id, parent->span_id, 8);
    b->ts = parent->ts;
    b->ts_len = parent->ts_len;
  } else if (needs_trace_id(ss__tracer_g.sampler)) {
    ss__trace_id_new(s->trace_id);
  } else {
    b->lazy = SS_LAZY_TRACE;
  }
  int sampled = should_sample(parent, s->trace_id);
  /* W3C Level 2: our trace ids are random (flag 0x02); an inherited id keeps its flag. */
  s->flags = (uint8_t)((sampled ? 1 : 0) | (parent ? (parent->flags & 2) : 2));
  if (!ss__tracer_g.export_traces) sampled = 0;
  /* No collector to send to: the span is counted as dropped now and not recorded (the
   * trace stays sampled for children and propagation). */
  if (sampled && atomic_load_explicit(&ss__tracer_g.no_sink, memory_order_relaxed)) {
    ss__dropped(SS_DROP_NO_COLLECTOR);
    sampled = 0;
  }
  b->recording = (uint8_t)sampled;
  /* A span that is not recorded draws its ids only if something reads its context (a
   * child, an injected header): most never are. */
  if (sampled) {
    ss__ids_new(b->lazy ? s->trace_id : NULL, s->span_id);
    b->lazy = 0;
  } else {
    b->lazy |= SS_LAZY_SPAN;
  }

  /* Pushed as ss__ctx_push does (the depth first, so a signal handler's pushes go above
   * it), written in place. */
  int d = ss__self.depth++;
  if (d < SS_CTX_DEPTH) {
    ss__ctx *e = &ss__self.ctx[d];
    memcpy(e->trace_id, s->trace_id, 16);
    memcpy(e->span_id, s->span_id, 8);
    e->flags = s->flags;
    e->valid = 1;
    e->lazy = b->lazy;
    e->gen = 0;
    e->live = NULL;
    e->ts = b->ts;
    e->ts_len = b->ts_len;
  }
  b->token = d;
  b->pushed = 1;
  if (sampled) {
    if (d == 0) s->caller = (uint64_t)(uintptr_t)caller;
    s->start_ns = ss__now_ns();
  }
  return b->recording;
}

/* Length to store for a string value: capped at the attribute value limit, never
 * cutting a UTF-8 sequence in half. */
static inline __attribute__((always_inline)) uint32_t capped_len(const char *s, uint32_t len) {
  uint32_t lim = ss__tracer_g.attr_value_limit;
  if (lim == 0 || len <= lim) return len;
  while (lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80) lim--;
  return lim;
}

static inline __attribute__((always_inline)) ss__attr *next_attr(ss__sb *b, const char *key,
                                                                 uint8_t type) {
  if (!b->recording || b->s.n_attrs >= SS_SPAN_MAX_ATTRS) return NULL;
  ss__attr *a = &b->attrs[b->s.n_attrs++];
  a->key = key;
  a->type = type;
  return a;
}

void ss__span_str_slow(ss__sb *b, const char *key, const char *s, size_t len) {
  if (s == NULL) return;
  ss__attr *a = next_attr(b, key, SS_ATTR_STR);
  if (a == NULL) return;
  a->v.s = s;
  /* Capped now: the length the record stores (serialize reads it as it is). */
  uint32_t n = capped_len(s, (uint32_t)(len == (size_t)-1 ? strlen(s) : len));
  a->len = n;
  b->rec_size += (uint32_t)(sizeof(ss__rec_attr) + ALIGN8(n));
}

void ss__span_bool(ss__sb *b, const char *key, int v) {
  ss__attr *a = next_attr(b, key, SS_ATTR_BOOL);
  if (a == NULL) return;
  a->len = 0;
  a->v.i = v != 0;
  b->rec_size += (uint32_t)(sizeof(ss__rec_attr) + 8);
}

static uint32_t capped_arr_len(const char *s, uint32_t len);

void ss__span_strarr(ss__sb *b, const char *key, const char *items, size_t len) {
  ss__attr *a = next_attr(b, key, SS_ATTR_STRARR);
  if (a == NULL) return;
  a->v.s = items;
  a->len = (uint32_t)len;
  b->rec_size += (uint32_t)(sizeof(ss__rec_attr) + ALIGN8(capped_arr_len(items, (uint32_t)len)));
}

/* Capture depth: the configured frames plus room for the shim's own, dropped later. */
static int capture_depth(void) {
  int d = ss__tracer_g.stack_depth;
  if (d <= 0) return 0;
  d += 8;
  return d > SS_STACK_MAX ? SS_STACK_MAX : d;
}

void ss__span_error(ss__sb *b, const char *type, const char *message) {
  b->s.status = SS_STATUS_ERROR;
  if (b->recording) {
    b->exc = 1;
    if (capture_depth()) {
      if (!ss__stack_ready()) ss__stack_load(); /* the first failure of the process */
      b->n_stack = (uint16_t)ss__stack_capture(b->stack, capture_depth());
    }
  }
  if (type) ss__span_str(b, "error.type", type, (size_t)-1);
  if (message) {
    b->s.status_message = message;
    b->s.status_message_len = (uint32_t)strlen(message);
  }
}

void ss__span_fail(ss__sb *b, const char *type) {
  b->s.status = SS_STATUS_ERROR;
  if (type) ss__span_str(b, "error.type", type, (size_t)-1);
}

void ss__span_scratch(ss__sb *b) {
  memset(b, 0, sizeof *b);
  b->recording = 1;
  b->s.attrs = b->attrs;
  b->rec_size = sizeof(ss__rec);
}

/* b's context entry while it is on this thread's stack, else NULL. */
static ss__ctx *own_entry(const ss__sb *b) {
  if (!b->pushed || b->token < 0 || b->token >= SS_CTX_DEPTH || ss__self.depth <= b->token)
    return NULL;
  return &ss__self.ctx[b->token];
}

/* A lazy span's ids: the ones a child drew into its entry, else drawn now (into the entry
 * too while it is pushed, so children started later agree). */
static void draw_own(ss__sb *b) {
  ss__ctx *e = own_entry(b);
  if (e != NULL) {
    if (e->lazy) draw_entry(e);
    memcpy(b->s.trace_id, e->trace_id, 16);
    memcpy(b->s.span_id, e->span_id, 8);
  } else {
    ss__ctx t = {.lazy = b->lazy};
    memcpy(t.trace_id, b->s.trace_id, 16);
    draw_ids(&t);
    memcpy(b->s.trace_id, t.trace_id, 16);
    memcpy(b->s.span_id, t.span_id, 8);
  }
  b->lazy = 0;
}

void ss__span_ctx(ss__sb *b, ss__ctx *out) {
  if (b->lazy) draw_own(b);
  *out = (ss__ctx){0};
  memcpy(out->trace_id, b->s.trace_id, 16);
  memcpy(out->span_id, b->s.span_id, 8);
  out->flags = b->s.flags;
  out->valid = !ss__id_is_zero(b->s.trace_id, 16);
  out->ts = b->ts;
  out->ts_len = b->ts_len;
}

void ss__span_rename(ss__sb *b, const char *name) {
  b->s.name = name;
}

void ss__span_message(ss__sb *b, const char *msg, size_t len) {
  b->s.status_message = msg;
  b->s.status_message_len = (uint32_t)len;
}

void ss__rec_finish_from(void *rec, size_t cap, const ss__sb *b, const char *skip,
                         uint64_t end_ns) {
  for (size_t i = 0; i < b->s.n_attrs; i++) {
    const ss__attr *a = &b->attrs[i];
    if (skip && strcmp(a->key, skip) == 0) continue;
    if (a->type == SS_ATTR_INT) ss__rec_add_int(rec, cap, a->key, a->v.i);
    else ss__rec_add_str(rec, cap, a->key, a->v.s, a->len);
  }
  if (b->s.status_message) { /* cut to what still fits, never split a UTF-8 sequence */
    const ss__rec *r = rec;
    size_t used = r->size + sizeof(ss__rec_attr), len = b->s.status_message_len;
    size_t room = cap > used ? (cap - used) & ~(size_t)7 : 0;
    if (len > room) {
      len = room;
      while (len > 0 && ((unsigned char)b->s.status_message[len] & 0xC0) == 0x80) len--;
    }
    if (len) ss__rec_add_str(rec, cap, NULL, b->s.status_message, len);
  }
  ss__rec_finish(rec, end_ns, b->s.status);
}

void ss__span_set_start(ss__sb *b, uint64_t ns) {
  if (ns != 0 && ns < b->s.start_ns) b->s.start_ns = ns;
}

void ss__span_pop(ss__sb *b) {
  if (b->pushed) {
    /* Keep the ids a child drew for this lazy span: ss__span_ctx may still be asked. */
    if (__builtin_expect(b->lazy != 0, 0)) {
      ss__ctx *e = own_entry(b);
      if (e != NULL && !e->lazy) draw_own(b);
    }
    /* Down to its own entry, as ss__ctx_pop does: never below it (an entry a caller's
     * ss__ctx_pop took already must not cost the context under it, e.g. the request a
     * thread serves when a pipelined request's span is parked). */
    if (b->token >= 0 && ss__self.depth > b->token) ss__self.depth = b->token;
    b->pushed = 0;
  }
}

/* String arrays (NUL-terminated items one after another): each item is capped on its own,
 * as the spec says for arrays. With dst, also writes the capped items there. Returns the
 * capped array's length. */
static uint32_t capped_arr(const char *s, uint32_t len, unsigned char *dst) {
  uint32_t total = 0, i = 0;
  while (i < len) {
    const char *end = memchr(s + i, 0, len - i);
    uint32_t l = end ? (uint32_t)(end - (s + i)) : len - i;
    uint32_t k = capped_len(s + i, l);
    if (dst) {
      memcpy(dst + total, s + i, k);
      if (end) dst[total + k] = '\0';
    }
    total += k + (end ? 1 : 0);
    i += l + 1;
  }
  return total;
}

static uint32_t capped_arr_len(const char *s, uint32_t len) {
  return ss__tracer_g.attr_value_limit ? capped_arr(s, len, NULL) : len;
}

static inline __attribute__((always_inline)) uint32_t stored_len(const ss__attr *a) {
  if (a->type == SS_ATTR_STR) return a->len; /* capped by ss__span_str */
  if (a->type == SS_ATTR_STRARR) return capped_arr_len(a->v.s, a->len);
  return 8;
}

static size_t serialized_size(const ss__sb *b) {
  size_t n = b->rec_size; /* the header and attributes, summed as they were added */
  if (__builtin_expect(b->s.status_message != NULL || b->exc || b->ts_len, 0)) {
    if (b->s.status_message)
      n += sizeof(ss__rec_attr) + ALIGN8(capped_len(b->s.status_message, b->s.status_message_len));
    if (b->exc) n += sizeof(ss__rec_attr) + (size_t)b->n_stack * 8;
    if (b->ts_len) n += sizeof(ss__rec_attr) + ALIGN8(b->ts_len);
  }
  return n;
}

static const char stack_key[] = "spanshim.stack";
/* The record's tracestate travels as an attribute under this key; decoding moves it to
 * ss__span.trace_state. */
static const char tracestate_key[] = "\001tracestate";

/* Writes an attribute's header; its len bytes of value go right after it (then padding:
 * put_pad). */
/* The second word of an attribute's header: its type, padding zero, its length. */
static inline uint64_t head_word(uint8_t type, uint32_t len) {
  _Static_assert(offsetof(ss__rec_attr, type) == 8 && offsetof(ss__rec_attr, len) == 12,
                 "head_word's layout");
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (uint64_t)type | (uint64_t)len << 32;
#else
  return (uint64_t)type << 56 | len;
#endif
}

static inline __attribute__((always_inline)) unsigned char *
put_head(unsigned char *p, const char *key, uint8_t type, uint32_t len) {
  uint64_t k = (uint64_t)(uintptr_t)key, w = head_word(type, len);
  memcpy(p, &k, 8); /* two stores; the header's padding is zero */
  memcpy(p + 8, &w, 8);
  return p + sizeof(ss__rec_attr);
}

/* Zeroes the value's last 8-byte word (its padding), before the value is written. */
static unsigned char *put_pad(unsigned char *p, uint32_t len) {
  static const uint64_t zero;
  if (len) memcpy(p + ALIGN8(len) - 8, &zero, 8);
  return p + ALIGN8(len);
}

static inline __attribute__((always_inline)) unsigned char *
put_attr(unsigned char *p, const char *key, uint8_t type, const void *val, uint32_t len) {
  p = put_head(p, key, type, len);
  unsigned char *next = put_pad(p, len);
  ss__copy_short(p, val, len);
  return next;
}

static void serialize(const ss__sb *b, void *dst, size_t size) {
  const ss__span *s = &b->s;
  ss__rec *r = dst;
  /* The header as words (every byte written once, padding zero): a struct built on the
   * stack and copied costs twice the stores. */
  _Static_assert(offsetof(ss__rec, n_attrs) == 4 && offsetof(ss__rec, kind) == 6 &&
                     offsetof(ss__rec, status) == 7 && offsetof(ss__rec, trace_id) == 8 &&
                     offsetof(ss__rec, flags) == 40 && offsetof(ss__rec, has_stack) == 41 &&
                     offsetof(ss__rec, start_ns) == 48 && sizeof(ss__rec) == 80,
                 "serialize's header words");
  unsigned char *h = dst;
  uint16_t n = (uint16_t)(s->n_attrs + (s->status_message != NULL) + b->exc + (b->ts_len != 0));
  uint64_t w0, w5, t;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  w0 = (uint64_t)(uint32_t)size | (uint64_t)n << 32 | (uint64_t)s->kind << 48 |
       (uint64_t)s->status << 56;
  w5 = (uint64_t)s->flags | (uint64_t)b->exc << 8;
#else
  w0 = (uint64_t)(uint32_t)size << 32 | (uint64_t)n << 16 | (uint64_t)s->kind << 8 | s->status;
  w5 = (uint64_t)s->flags << 56 | (uint64_t)b->exc << 48;
#endif
  memcpy(h, &w0, 8);
  memcpy(h + 8, s->trace_id, 16);
  memcpy(h + 24, s->span_id, 8);
  memcpy(h + 32, s->parent_id, 8);
  memcpy(h + 40, &w5, 8);
  memcpy(h + 48, &s->start_ns, 8);
  memcpy(h + 56, &s->end_ns, 8);
  t = (uint64_t)(uintptr_t)s->name;
  memcpy(h + 64, &t, 8);
  memcpy(h + 72, &s->caller, 8);
  unsigned char *p = (unsigned char *)(r + 1);
  for (size_t i = 0; i < s->n_attrs; i++) {
    const ss__attr *a = &b->attrs[i];
    if (a->type == SS_ATTR_STR) {
      p = put_attr(p, a->key, SS_ATTR_STR, a->v.s, a->len); /* capped by ss__span_str */
    } else if (a->type != SS_ATTR_STRARR) {
      p = put_head(p, a->key, a->type, 8);
      memcpy(p, &a->v, 8);
      p += 8;
    } else if (stored_len(a) != a->len) { /* items cut */
      uint32_t len = stored_len(a);
      p = put_head(p, a->key, a->type, len);
      unsigned char *next = put_pad(p, len);
      capped_arr(a->v.s, a->len, p);
      p = next;
    } else {
      p = put_attr(p, a->key, a->type, a->v.s, a->len);
    }
  }
  if (s->status_message)
    p = put_attr(p, NULL, SS_ATTR_STR, s->status_message,
                 capped_len(s->status_message, s->status_message_len));
  if (b->ts_len) p = put_attr(p, tracestate_key, SS_ATTR_STR, b->ts, b->ts_len);
  if (b->exc) put_attr(p, stack_key, SS_ATTR_STACK, b->stack, (uint32_t)b->n_stack * 8);
}

void ss__span_end(ss__sb *b) {
  ss__span_pop(b);
  if (!b->recording) return;
  b->s.end_ns = ss__now_ns();
  size_t size = serialized_size(b);
  void *dst = ss__ring_reserve(&ss__tracer_g.ring, size);
  if (dst == NULL) { /* counted by the ring; its exception record here */
    if (b->exc) atomic_fetch_add_explicit(&ss__tracer_g.exc_dropped, 1, memory_order_relaxed);
    return;
  }
  serialize(b, dst, size);
  ss__ring_commit(&ss__tracer_g.ring, dst);
  if (ss__tracer_g.on_commit) ss__tracer_g.on_commit();
}

size_t ss__span_park(const ss__sb *b, void *dst, size_t cap) {
  if (!b->recording) return 0;
  size_t size = serialized_size(b);
  if (size > cap) return 0;
  serialize(b, dst, size);
  ((ss__rec *)dst)->end_ns = 0;
  return size;
}

int ss__rec_add_str(void *rec, size_t cap, const char *key, const char *s, size_t len) {
  ss__rec *r = rec;
  uint32_t n = capped_len(s, (uint32_t)len);
  if (r->size + sizeof(ss__rec_attr) + ALIGN8(n) > cap) return -1;
  put_attr((unsigned char *)rec + r->size, key, SS_ATTR_STR, s, n);
  r->size += (uint32_t)(sizeof(ss__rec_attr) + ALIGN8(n));
  r->n_attrs++;
  return 0;
}

int ss__rec_add_int(void *rec, size_t cap, const char *key, int64_t v) {
  ss__rec *r = rec;
  if (r->size + sizeof(ss__rec_attr) + 8 > cap) return -1;
  put_attr((unsigned char *)rec + r->size, key, SS_ATTR_INT, &v, 8);
  r->size += (uint32_t)(sizeof(ss__rec_attr) + 8);
  r->n_attrs++;
  return 0;
}

void ss__rec_finish(void *rec, uint64_t end_ns, int status) {
  ss__rec *r = rec;
  uint64_t stack[SS_STACK_MAX];
  int n = 0;
  int exc = (status & ~SS_STATUS_IN_SIGNAL) == SS_STATUS_ERROR;
  if (atomic_load_explicit(&ss__tracer_g.no_sink, memory_order_relaxed)) {
    ss__dropped(SS_DROP_NO_COLLECTOR); /* see ss__span_start_at */
    if (exc) atomic_fetch_add_explicit(&ss__tracer_g.exc_dropped, 1, memory_order_relaxed);
    return;
  }
  r->end_ns = end_ns;
  r->status = (uint8_t)(status & ~(SS_STATUS_NO_STACK | SS_STATUS_IN_SIGNAL));
  if (exc && capture_depth()) {
    if (!ss__stack_ready() && !(status & SS_STATUS_IN_SIGNAL)) ss__stack_load();
    n = ss__stack_capture(stack, capture_depth());
  }
  size_t extra = exc ? sizeof(ss__rec_attr) + (size_t)n * 8 : 0;
  /* The parked record is copied as it is; the stack goes after it, in the ring only. */
  unsigned char *dst = ss__ring_reserve(&ss__tracer_g.ring, r->size + extra);
  if (dst == NULL) {
    if (exc) atomic_fetch_add_explicit(&ss__tracer_g.exc_dropped, 1, memory_order_relaxed);
    return;
  }
  memcpy(dst, rec, r->size);
  if (exc) {
    put_attr(dst + r->size, stack_key, SS_ATTR_STACK, stack, (uint32_t)n * 8);
    ((ss__rec *)dst)->size += (uint32_t)extra;
    ((ss__rec *)dst)->n_attrs++;
    ((ss__rec *)dst)->has_stack = 1;
  }
  ss__ring_commit(&ss__tracer_g.ring, dst);
  if (ss__tracer_g.on_commit) ss__tracer_g.on_commit();
}

int ss__rec_has_stack(const void *rec, size_t len) {
  const ss__rec *r = rec;
  if (len < sizeof *r || r->size > len || r->size < sizeof *r || !r->has_stack) return 0;
  const unsigned char *p = (const unsigned char *)(r + 1), *end = (const unsigned char *)rec + r->size;
  for (uint16_t i = 0; i < r->n_attrs; i++) {
    if ((size_t)(end - p) < sizeof(ss__rec_attr)) return 0;
    const ss__rec_attr *ra = (const ss__rec_attr *)p;
    if (ra->type == SS_ATTR_STACK) return 1;
    p += sizeof *ra + ((ra->type == SS_ATTR_STR || ra->type == SS_ATTR_STRARR) ? ALIGN8(ra->len) : 8);
  }
  return 0;
}

int ss__rec_decode(const void *rec, size_t len, ss__span *out, ss__attr *attrs, size_t max) {
  const ss__rec *r = rec;
  if (len < sizeof *r || r->size > len || r->size < sizeof *r) return -1;
  span_clear(out);
  memcpy(out->trace_id, r->trace_id, 16);
  memcpy(out->span_id, r->span_id, 8);
  memcpy(out->parent_id, r->parent_id, 8);
  out->flags = r->flags;
  out->kind = r->kind;
  out->status = r->status;
  out->no_stack = !r->has_stack;
  out->name = r->name;
  out->start_ns = r->start_ns;
  out->end_ns = r->end_ns;
  out->caller = r->caller;
  out->attrs = attrs;
  const unsigned char *p = (const unsigned char *)(r + 1), *end = (const unsigned char *)rec + r->size;
  size_t n = 0;
  for (uint16_t i = 0, na = r->n_attrs; i < na; i++) {
    if ((size_t)(end - p) < sizeof(ss__rec_attr)) return -1;
    const ss__rec_attr *ra = (const ss__rec_attr *)p;
    const char *key = ra->key;
    uint8_t type = ra->type;
    uint32_t len = ra->len;
    p += sizeof *ra;
    int bytes = type == SS_ATTR_STR || type == SS_ATTR_STRARR || type == SS_ATTR_STACK;
    size_t vlen = bytes ? ALIGN8(len) : 8;
    if ((size_t)(end - p) < vlen) return -1;
    if (__builtin_expect(key == NULL, 0)) {
      out->status_message = (const char *)p;
      out->status_message_len = len;
    } else if (__builtin_expect(key == tracestate_key, 0)) {
      out->trace_state = (const char *)p;
      out->trace_state_len = len;
    } else if (n < max) {
      ss__attr *a = &attrs[n++];
      a->key = key;
      a->type = type;
      a->len = len;
      if (bytes)
        a->v.s = (const char *)p;
      else
        memcpy(&a->v, p, 8);
    }
    p += vlen;
  }
  out->n_attrs = n;
  return 0;
}
