/* sampler.c - tail sampling: keep every trace with an error or a slow span, and a
 * deterministic share of the others.
 *
 * A span passes at once when its trace is already decided "keep", when its trace id falls
 * in the ratio (the trace id's last 8 bytes, big-endian, below ratio * 2^64: the shim's
 * traceidratio rule, ss__ratio_keep in runtime/ids.h, so every collector and every
 * process agrees without talking), or when it is itself an error (status ERROR)
 * or slower than --keep-slower-than: then the trace becomes "keep" and the spans held for
 * it so far are released with it. Any other span is held, serialized (the compact form:
 * the memory bound counts these bytes), in its trace's entry; a trace whose decision window (--decision-wait, counted from its first held span)
 * ends without a reason to keep it is dropped whole and remembered as "drop".
 *
 * Late spans: a span arriving after its trace was dropped is dropped too, unless it is an
 * error or slow span itself, which is kept (with the rest of the trace from then on).
 * Decisions are remembered for the last SS_SAMPLER_CACHE traces.
 *
 * Memory: held spans are bounded by --sample-buffer bytes (serialized size plus
 * bookkeeping); when a new span would exceed it the oldest traces are dropped early and
 * counted as evicted. The decision cache is a fixed array. Receiver thread only.
 *
 * What passes is handed back decoded, never as bytes: a request that passes whole is
 * returned as it is; otherwise a new request is assembled in the sampler's own arena from
 * the caller's Span structs themselves (not copies) and the released held spans,
 * unpacked from their stored form. */
#include <stdlib.h>
#include <string.h>

#include "runtime/deadline.h"
#include "runtime/hash.h"
#include "runtime/ids.h"
#include "tools/common/arena.h"
#include "tools/spanshimd/spanshimd.h"

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans pb_rs;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans pb_ss;

#define NBUCKETS 65536u
#define SPAN_OVERHEAD 48u

/* A held span's ResourceSpans and ScopeSpans without their children, serialized: what it
 * needs to be sent on under the right resource and scope. Shared by the spans of one
 * scope of one request (refs). */
typedef struct group {
  size_t refs;
  uint64_t gen;             /* rs/ss below were unpacked during process call `gen` */
  pb_rs *rs;
  pb_ss *ss;
  size_t rs_len, ss_len;    /* bytes of the ResourceSpans part, then of the ScopeSpans part */
  uint8_t data[];
} group;

typedef struct held {
  struct held *next;
  group *g;
  size_t len;
  uint8_t data[];
} held;

typedef struct trace {
  uint8_t tid[16];
  uint64_t deadline_ms;
  held *first, *last;
  size_t bytes, n;
  struct trace *hnext;               /* bucket chain */
  struct trace *older, *newer;       /* creation order = deadline order */
} trace;

typedef struct cache_node {
  uint8_t tid[16];
  uint8_t used, keep;
  uint32_t next;                     /* bucket chain, index + 1 (0 ends) */
} cache_node;

/* One span to send on, in order; consecutive ones under the same ScopeSpans (the
 * caller's, or one unpacked during this call: both outlive the call, so no two differ
 * only in time) share a ResourceSpans. */
typedef struct emit {
  const pb_rs *rs;
  const pb_ss *ss;
  pb_span *span;
} emit;

static ss__sampler_cfg cfg;
static int enabled;
static uint64_t ratio_bound;         /* UINT64_MAX: everything is in the ratio */
static trace *buckets[NBUCKETS];
static trace *oldest, *newest;
static size_t held_bytes;
static cache_node *cache;
static uint32_t *cache_buckets, cache_pos;
static ss__arena out_arena = SS_ARENA_INIT;  /* what one process call hands back */
static ProtobufCAllocator out_alloc;
static uint64_t gen;
static emit *emits;
static size_t n_emits, cap_emits;

ss__sampler_stats ss__samp_stats_g;

/* A trace id's table hash: its two halves mixed (trace ids are random, but a sender's
 * may not be). */
static uint32_t tid_hash(const uint8_t *t) {
  uint64_t a, b;
  memcpy(&a, t, 8);
  memcpy(&b, t + 8, 8);
  return (uint32_t)(ss__hash_mix64(a ^ ss__hash_mix64(b)) >> 32);
}

/* ---- decision cache ---- */

static cache_node *cache_find(const uint8_t *t) {
  uint32_t i = cache_buckets[tid_hash(t) & (2 * cfg.cache_traces - 1)];
  while (i) {
    cache_node *n = &cache[i - 1];
    if (memcmp(n->tid, t, 16) == 0) return n;
    i = n->next;
  }
  return NULL;
}

static void cache_put(const uint8_t *t, int keep) {
  cache_node *n = cache_find(t);
  if (n) {
    n->keep = (uint8_t)keep;
    return;
  }
  uint32_t mask = (uint32_t)(2 * cfg.cache_traces - 1);
  n = &cache[cache_pos];
  if (n->used) {  /* reuse the oldest node: unlink it from its chain */
    uint32_t *p = &cache_buckets[tid_hash(n->tid) & mask];
    while (*p && *p != cache_pos + 1) p = &cache[*p - 1].next;
    if (*p) *p = n->next;
  }
  memcpy(n->tid, t, 16);
  n->used = 1;
  n->keep = (uint8_t)keep;
  uint32_t *b = &cache_buckets[tid_hash(t) & mask];
  n->next = *b;
  *b = cache_pos + 1;
  cache_pos = (uint32_t)((cache_pos + 1) % cfg.cache_traces);
}

/* ---- held traces ---- */

static trace **trace_slot(const uint8_t *t) {
  trace **p = &buckets[tid_hash(t) & (NBUCKETS - 1)];
  while (*p && memcmp((*p)->tid, t, 16) != 0) p = &(*p)->hnext;
  return p;
}

static void group_unref(group *g) {
  if (--g->refs == 0) free(g);
}

/* Unlinks and frees a trace; its spans are counted as dropped when `dropped`. */
static void trace_free(trace *tr, int dropped, int evicted) {
  trace **p = trace_slot(tr->tid);
  if (*p == tr) *p = tr->hnext;
  if (tr->older) tr->older->newer = tr->newer;
  else oldest = tr->newer;
  if (tr->newer) tr->newer->older = tr->older;
  else newest = tr->older;
  for (held *h = tr->first, *next; h; h = next) {
    next = h->next;
    group_unref(h->g);
    free(h);
  }
  held_bytes -= tr->bytes;
  ss__samp_stats_g.held_spans -= tr->n;
  ss__samp_stats_g.held_bytes = held_bytes;
  if (dropped) {
    ss__samp_stats_g.dropped_spans += tr->n;
    ss__samp_stats_g.dropped_traces++;
    if (evicted) ss__samp_stats_g.evicted_spans += tr->n;
    cache_put(tr->tid, 0);
  }
  free(tr);
}

static trace *trace_new(const uint8_t *t, uint64_t now) {
  trace *tr = calloc(1, sizeof *tr);
  if (tr == NULL) return NULL;
  memcpy(tr->tid, t, 16);
  tr->deadline_ms = now + cfg.wait_ms;
  trace **p = trace_slot(t);
  tr->hnext = *p;
  *p = tr;
  tr->older = newest;
  if (newest) newest->newer = tr;
  else oldest = tr;
  newest = tr;
  held_bytes += sizeof *tr;
  tr->bytes += sizeof *tr;
  return tr;
}

/* ---- stored form ---- */

static group *group_new(const pb_rs *rs, const pb_ss *ss) {
  pb_rs r = *rs;
  pb_ss c = *ss;
  r.n_scope_spans = 0;
  c.n_spans = 0;
  size_t rn = protobuf_c_message_get_packed_size(&r.base);
  size_t cn = protobuf_c_message_get_packed_size(&c.base);
  group *g = malloc(sizeof *g + rn + cn);
  if (g == NULL) return NULL;
  memset(g, 0, sizeof *g);
  g->rs_len = protobuf_c_message_pack(&r.base, g->data);
  g->ss_len = protobuf_c_message_pack(&c.base, g->data + g->rs_len);
  return g;
}

/* The group's resource and scope, unpacked once per process call; 0 or -1. */
static int group_unpack(group *g) {
  if (g->gen == gen) return 0;
  g->rs = (pb_rs *)protobuf_c_message_unpack(&opentelemetry__proto__trace__v1__resource_spans__descriptor,
                                             &out_alloc, g->rs_len, g->data);
  g->ss = (pb_ss *)protobuf_c_message_unpack(&opentelemetry__proto__trace__v1__scope_spans__descriptor,
                                             &out_alloc, g->ss_len, g->data + g->rs_len);
  if (g->rs == NULL || g->ss == NULL) return -1;
  g->gen = gen;
  return 0;
}

static int emit_add(const pb_rs *rs, const pb_ss *ss, pb_span *span) {
  if (n_emits == cap_emits) {
    size_t cap = cap_emits ? cap_emits * 2 : 256;
    emit *e = realloc(emits, cap * sizeof *e);
    if (e == NULL) return -1;
    emits = e;
    cap_emits = cap;
  }
  emits[n_emits++] = (emit){rs, ss, span};
  return 0;
}

/* Sends a held trace on: its spans are unpacked into the out arena, in the order they
 * arrived, and the trace is freed. 0, or -1 when memory ran out (the spans are lost). */
static int release(trace *tr) {
  int rc = 0;
  for (held *h = tr->first; h && rc == 0; h = h->next) {
    pb_span *sp = (pb_span *)protobuf_c_message_unpack(
        &opentelemetry__proto__trace__v1__span__descriptor, &out_alloc, h->len, h->data);
    if (sp == NULL || group_unpack(h->g) != 0 || emit_add(h->g->rs, h->g->ss, sp) != 0)
      rc = -1;
  }
  ss__samp_stats_g.kept_spans += tr->n;
  trace_free(tr, 0, 0);
  return rc;
}

/* The request of the emits: one ResourceSpans with one ScopeSpans per run of spans with
 * the same ScopeSpans, the resource and scope fields shallow-copied from the templates. */
static ss__traces_req *assemble(void) {
  ss__traces_req *q = ss__arena_alloc(&out_arena, sizeof *q);
  size_t runs = 0;
  for (size_t i = 0; i < n_emits; i++) runs += i == 0 || emits[i].ss != emits[i - 1].ss;
  pb_rs **rss = ss__arena_alloc(&out_arena, (runs + 1) * sizeof *rss);
  if (q == NULL || rss == NULL) return NULL;
  opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(q);
  q->resource_spans = rss;
  for (size_t i = 0, j; i < n_emits; i = j) {
    for (j = i + 1; j < n_emits && emits[j].ss == emits[i].ss; j++) {
    }
    pb_rs *rs = ss__arena_alloc(&out_arena, sizeof *rs);
    pb_ss *ss = ss__arena_alloc(&out_arena, sizeof *ss);
    pb_ss **ssp = ss__arena_alloc(&out_arena, sizeof *ssp);
    pb_span **spans = ss__arena_alloc(&out_arena, (j - i) * sizeof *spans);
    if (rs == NULL || ss == NULL || ssp == NULL || spans == NULL) return NULL;
    *rs = *emits[i].rs;
    *ss = *emits[i].ss;
    for (size_t k = i; k < j; k++) spans[k - i] = emits[k].span;
    ss->spans = spans;
    ss->n_spans = j - i;
    *ssp = ss;
    rs->scope_spans = ssp;
    rs->n_scope_spans = 1;
    rss[q->n_resource_spans++] = rs;
  }
  return q;
}

/* ---- decisions ---- */

static int interesting(const pb_span *s, int *slow) {
  *slow = cfg.slow_ns && s->end_time_unix_nano > s->start_time_unix_nano &&
          s->end_time_unix_nano - s->start_time_unix_nano >= cfg.slow_ns;
  int err = s->status &&
            s->status->code == OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
  return err ? 1 : *slow ? 2 : 0;
}

static void make_room(size_t need) {
  while (oldest && held_bytes + need > cfg.max_bytes) trace_free(oldest, 1, 1);
}

/* Holds one span of an undecided trace (serialized; *g is made on first use and then
 * shared by the scope's held spans); 0, or -1 when it was dropped instead. */
static int hold(const uint8_t *tid, group **g, const pb_rs *rs, const pb_ss *ss,
                const pb_span *s, uint64_t now) {
  size_t n = protobuf_c_message_get_packed_size(&s->base);
  make_room(n + SPAN_OVERHEAD + sizeof(trace));
  if (*g == NULL && (*g = group_new(rs, ss)) != NULL) (*g)->refs++;  /* the caller's ref */
  trace **slot = trace_slot(tid);
  trace *tr = *g == NULL ? NULL : *slot ? *slot : trace_new(tid, now);
  held *h = tr ? malloc(sizeof *h + n) : NULL;
  if (h == NULL || held_bytes + n + SPAN_OVERHEAD > cfg.max_bytes) {
    free(h);
    ss__samp_stats_g.evicted_spans++;
    ss__samp_stats_g.dropped_spans++;
    if (tr && tr->n == 0) trace_free(tr, 0, 0);
    return -1;
  }
  protobuf_c_message_pack(&s->base, h->data);
  h->len = n;
  h->g = *g;
  h->next = NULL;
  (*g)->refs++;
  if (tr->last) tr->last->next = h;
  else tr->first = h;
  tr->last = h;
  tr->n++;
  tr->bytes += n + SPAN_OVERHEAD;
  held_bytes += n + SPAN_OVERHEAD;
  ss__samp_stats_g.held_spans++;
  ss__samp_stats_g.held_bytes = held_bytes;
  return 0;
}

/* Decides one span: 1 keep (and send on now), 0 not now (held or dropped). A trace that
 * this span makes "keep" is released into the emits first; *oom is set if that failed. */
static int decide(const pb_span *s, group **g, const pb_rs *rs, const pb_ss *ss, uint64_t now,
                  int *released, int *oom) {
  const uint8_t *tid = s->trace_id.data;
  if (s->trace_id.len != 16) return 1;
  cache_node *c = cache_find(tid);
  int slow, why = interesting(s, &slow);
  if (c && c->keep) return 1;
  if (ss__ratio_keep(ratio_bound, tid)) {
    if (!c) ss__samp_stats_g.kept_traces_ratio++, cache_put(tid, 1);
    return 1;
  }
  if (why) {
    if (why == 1) ss__samp_stats_g.kept_traces_error++;
    else ss__samp_stats_g.kept_traces_slow++;
    cache_put(tid, 1);
    trace *tr = *trace_slot(tid);
    if (tr) {
      *released = 1;
      if (release(tr) != 0) *oom = 1;
    }
    return 1;
  }
  if (c) ss__samp_stats_g.dropped_spans++;  /* late span of a dropped trace */
  else hold(tid, g, rs, ss, s, now);
  return 0;
}

const ss__traces_req *ss__sampler_process(const ss__traces_req *q, uint64_t now) {
  int all_pass = 1, oom = 0;
  n_emits = 0;
  gen++;
  ss__arena_reset(&out_arena, 0);
  for (size_t i = 0; i < q->n_resource_spans; i++) {
    const pb_rs *rs = q->resource_spans[i];
    for (size_t j = 0; j < rs->n_scope_spans; j++) {
      const pb_ss *ss = rs->scope_spans[j];
      group *g = NULL;  /* made when the first span of this scope is held */
      for (size_t k = 0; k < ss->n_spans; k++) {
        int released = 0;
        int keep = decide(ss->spans[k], &g, rs, ss, now, &released, &oom);
        if (released || !keep) all_pass = 0;
        if (!keep) continue;
        ss__samp_stats_g.kept_spans++;
        if (emit_add(rs, ss, ss->spans[k]) != 0) oom = 1;
      }
      if (g) group_unref(g);
    }
  }
  if (all_pass) return q;
  ss__traces_req *out = oom ? NULL : assemble();
  return out;
}

int64_t ss__sampler_tick(uint64_t now) {
  while (oldest && oldest->deadline_ms <= now) trace_free(oldest, 1, 0);
  return oldest ? (int64_t)ss__ms_until(oldest->deadline_ms, now) : -1;
}

int ss__sampler_init(const ss__sampler_cfg *c) {
  cfg = *c;
  uint32_t n = 1024;
  while (n < cfg.cache_traces && n < (1u << 24)) n <<= 1;
  cfg.cache_traces = n;
  cache = calloc(n, sizeof *cache);
  cache_buckets = calloc(2 * (size_t)n, sizeof *cache_buckets);
  if (cache == NULL || cache_buckets == NULL) {
    free(cache);
    free(cache_buckets);
    cache = NULL;
    cache_buckets = NULL;
    return -1;
  }
  cache_pos = 0;
  ratio_bound = ss__ratio_bound(cfg.ratio);  /* the shim's traceidratio rule */
  out_arena.keep_max = 8u << 20;  /* one huge release must not pin its memory */
  ss__pb_allocator(&out_alloc, &out_arena);
  enabled = 1;
  return 0;
}

int ss__sampler_enabled(void) { return enabled; }

void ss__sampler_free(void) {
  while (oldest) trace_free(oldest, 1, 0);
  free(cache);
  free(cache_buckets);
  free(emits);
  ss__arena_release(&out_arena);
  cache = NULL;
  cache_buckets = NULL;
  emits = NULL;
  cap_emits = n_emits = 0;
  cache_pos = 0;
  enabled = 0;
}
