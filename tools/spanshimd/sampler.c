/* sampler.c - tail sampling: keep every trace with an error or a slow span, and a
 * deterministic share of the others.
 *
 * A span passes at once when its trace is already decided "keep", when its trace id falls
 * in the ratio (the trace id's last 8 bytes, big-endian, below ratio * 2^64: the same rule
 * the shim's traceidratio sampler and the W3C random trace-id flag use, so every collector
 * and every process agrees without talking), or when it is itself an error (status ERROR)
 * or slower than --keep-slower-than: then the trace becomes "keep" and the spans held for
 * it so far are released with it. Any other span is held, serialized, in its trace's
 * entry; a trace whose decision window (--decision-wait, counted from its first held span)
 * ends without a reason to keep it is dropped whole and remembered as "drop".
 *
 * Late spans: a span arriving after its trace was dropped is dropped too, unless it is an
 * error or slow span itself, which is kept (with the rest of the trace from then on).
 * Decisions are remembered for the last SS_SAMPLER_CACHE traces.
 *
 * Memory: held spans are bounded by --sample-buffer bytes (serialized size plus
 * bookkeeping); when a new span would exceed it the oldest traces are dropped early and
 * counted as evicted. The decision cache is a fixed array. Receiver thread only. */
#include <stdlib.h>
#include <string.h>

#include "tools/spanshimd/spanshimd.h"

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;

#define NBUCKETS 65536u
#define SPAN_OVERHEAD 48u

/* The ResourceSpans and ScopeSpans fields other than their children, serialized: what
 * a held span needs to be written back out under the right resource and scope. */
typedef struct group {
  size_t refs;
  size_t rs_len, ss_len;  /* bytes of the ResourceSpans part, then of the ScopeSpans part */
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

static ss__sampler_cfg cfg;
static int enabled;
static uint64_t ratio_bound;         /* UINT64_MAX: everything is in the ratio */
static trace *buckets[NBUCKETS];
static trace *oldest, *newest;
static size_t held_bytes;
static cache_node *cache;
static uint32_t *cache_buckets, cache_pos;

ss__sampler_stats ss__samp_stats_g;

static uint32_t tid_hash(const uint8_t *t) {
  uint64_t a, b;
  memcpy(&a, t, 8);
  memcpy(&b, t + 8, 8);
  uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ull)) * 0xff51afd7ed558ccdull;
  return (uint32_t)(h >> 32);
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

/* ---- serialization ---- */

static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

static void put_varint(ss__buf *b, uint64_t v) {
  while (v >= 0x80) {
    ss__buf_putc(b, (char)(v | 0x80));
    v >>= 7;
  }
  ss__buf_putc(b, (char)v);
}

static void put_msg(ss__buf *b, unsigned field, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  put_varint(b, field << 3 | 2);
  put_varint(b, n);
  char *d = ss__buf_room(b, n);
  if (d == NULL) return;
  protobuf_c_message_pack(m, (uint8_t *)d);
  b->len += n;
}

static void put_str(ss__buf *b, unsigned field, const char *s) {
  if (s == NULL || !*s) return;
  put_varint(b, field << 3 | 2);
  put_varint(b, strlen(s));
  ss__buf_puts(b, s);
}

static group *group_new(const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs,
                        const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss) {
  ss__buf b = SS_BUF_INIT;
  if (rs->resource) put_msg(&b, 1, &rs->resource->base);
  put_str(&b, 3, rs->schema_url);
  size_t rs_len = b.len;
  if (ss->scope) put_msg(&b, 1, &ss->scope->base);
  put_str(&b, 3, ss->schema_url);
  group *g = ss__buf_error(&b) ? NULL : malloc(sizeof *g + b.len);
  if (g) {
    g->refs = 0;
    g->rs_len = rs_len;
    g->ss_len = b.len - rs_len;
    memcpy(g->data, b.data, b.len);
  }
  ss__buf_free(&b);
  return g;
}

/* The spans to write, in order; consecutive ones with the same group share a
 * ResourceSpans. */
typedef struct emit {
  group *g;
  const uint8_t *p;  /* NULL: the span is at `off` in this request's packed buffer */
  size_t off, len;
} emit;

static emit *emits;
static size_t n_emits, cap_emits;

static int emit_add(group *g, const uint8_t *p, size_t off, size_t len) {
  if (n_emits == cap_emits) {
    size_t cap = cap_emits ? cap_emits * 2 : 256;
    emit *e = realloc(emits, cap * sizeof *e);
    if (e == NULL) return -1;
    emits = e;
    cap_emits = cap;
  }
  emits[n_emits++] = (emit){g, p, off, len};
  return 0;
}

static void write_emits(ss__buf *out, const ss__buf *packed) {
  for (size_t i = 0; i < n_emits;) {
    size_t j = i, spans = 0;
    group *g = emits[i].g;
    for (; j < n_emits && emits[j].g == g; j++)
      spans += 1 + varint_len(emits[j].len) + emits[j].len;
    size_t ss_len = g->ss_len + spans;
    size_t rs_len = g->rs_len + 1 + varint_len(ss_len) + ss_len;
    put_varint(out, 1 << 3 | 2);
    put_varint(out, rs_len);
    ss__buf_append(out, g->data, g->rs_len);
    put_varint(out, 2 << 3 | 2);
    put_varint(out, ss_len);
    ss__buf_append(out, g->data + g->rs_len, g->ss_len);
    for (; i < j; i++) {
      put_varint(out, 2 << 3 | 2);
      put_varint(out, emits[i].len);
      ss__buf_append(out, emits[i].p ? emits[i].p : (const uint8_t *)packed->data + emits[i].off,
                     emits[i].len);
    }
  }
}

/* ---- decisions ---- */

static int in_ratio(const uint8_t *t) {
  if (ratio_bound == UINT64_MAX) return 1;
  uint64_t x = 0;
  for (int i = 8; i < 16; i++) x = x << 8 | t[i];
  return x < ratio_bound;
}

static int interesting(const pb_span *s, int *slow) {
  *slow = cfg.slow_ns && s->end_time_unix_nano > s->start_time_unix_nano &&
          s->end_time_unix_nano - s->start_time_unix_nano >= cfg.slow_ns;
  int err = s->status &&
            s->status->code == OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
  return err ? 1 : *slow ? 2 : 0;
}

/* Releases a held trace into the emit list (its spans stay allocated until the caller
 * calls release_pending). */
static trace *pending[8192];
static size_t n_pending;

static void release_pending(void) {
  for (size_t i = 0; i < n_pending; i++) trace_free(pending[i], 0, 0);
  n_pending = 0;
}

static void make_room(size_t need) {
  while (oldest && held_bytes + need > cfg.max_bytes) {
    int busy = 0;
    for (size_t i = 0; i < n_pending; i++) busy |= pending[i] == oldest;
    if (busy) break;
    trace_free(oldest, 1, 1);
  }
}

/* Holds one span of an undecided trace; 0, or -1 when it was dropped instead. */
static int hold(const uint8_t *tid, group *g, const pb_span *s, uint64_t now) {
  size_t n = protobuf_c_message_get_packed_size(&s->base);
  make_room(n + SPAN_OVERHEAD + sizeof(trace));
  trace **slot = trace_slot(tid);
  trace *tr = *slot ? *slot : trace_new(tid, now);
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
  h->g = g;
  h->next = NULL;
  g->refs++;
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

int ss__sampler_process(const ss__traces_req *q, ss__buf *out, uint64_t now) {
  static ss__buf packed = SS_BUF_INIT;  /* this request's kept spans, serialized */
  int all_pass = 1;
  n_emits = 0;
  ss__buf_reset(&packed);
  group **groups = NULL;
  size_t n_groups = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++) {
    const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = q->resource_spans[i];
    for (size_t j = 0; j < rs->n_scope_spans; j++) {
      const Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];
      group *g = group_new(rs, ss);
      group **gs = g ? realloc(groups, (n_groups + 1) * sizeof *gs) : NULL;
      if (gs == NULL) {
        free(g);
        continue;
      }
      groups = gs;
      groups[n_groups++] = g;
      g->refs++;  /* ours, until the end of this call */
      for (size_t k = 0; k < ss->n_spans; k++) {
        const pb_span *s = ss->spans[k];
        const uint8_t *tid = s->trace_id.data;
        int slow, keep = 0;
        if (s->trace_id.len != 16) {
          keep = 1;
        } else {
          cache_node *c = cache_find(tid);
          int why = interesting(s, &slow);
          if (c && c->keep) {
            keep = 1;
          } else if (in_ratio(tid)) {
            keep = 1;
            if (!c) ss__samp_stats_g.kept_traces_ratio++, cache_put(tid, 1);
          } else if (why) {
            keep = 1;
            if (why == 1) ss__samp_stats_g.kept_traces_error++;
            else ss__samp_stats_g.kept_traces_slow++;
            cache_put(tid, 1);
            trace *tr = *trace_slot(tid);
            if (tr && n_pending < sizeof pending / sizeof *pending) {
              for (held *h = tr->first; h; h = h->next) emit_add(h->g, h->data, 0, h->len);
              ss__samp_stats_g.kept_spans += tr->n;
              pending[n_pending++] = tr;
              all_pass = 0;
            }
          } else if (c) {
            ss__samp_stats_g.dropped_spans++;  /* late span of a dropped trace */
          } else {
            hold(tid, g, s, now);
          }
        }
        if (!keep) {
          all_pass = 0;
          continue;
        }
        ss__samp_stats_g.kept_spans++;
        size_t off = packed.len, n = protobuf_c_message_get_packed_size(&s->base);
        char *d = ss__buf_room(&packed, n);
        if (d == NULL) continue;
        protobuf_c_message_pack(&s->base, (uint8_t *)d);
        packed.len += n;
        emit_add(g, NULL, off, n);
      }
    }
  }
  if (!all_pass) write_emits(out, &packed);
  release_pending();
  for (size_t i = 0; i < n_groups; i++) group_unref(groups[i]);
  free(groups);
  if (packed.cap > (8u << 20)) ss__buf_free(&packed);
  return all_pass;
}

int64_t ss__sampler_tick(uint64_t now) {
  while (oldest && oldest->deadline_ms <= now) trace_free(oldest, 1, 0);
  return oldest ? (int64_t)(oldest->deadline_ms - now) : -1;
}

int ss__sampler_init(const ss__sampler_cfg *c) {
  cfg = *c;
  uint32_t n = 1024;
  while (n < cfg.cache_traces && n < (1u << 24)) n <<= 1;
  cfg.cache_traces = n;
  cache = calloc(n, sizeof *cache);
  cache_buckets = calloc(2 * (size_t)n, sizeof *cache_buckets);
  if (cache == NULL || cache_buckets == NULL) return -1;
  if (cfg.ratio >= 1.0) ratio_bound = UINT64_MAX;
  else if (cfg.ratio <= 0.0) ratio_bound = 0;
  else ratio_bound = (uint64_t)(cfg.ratio * 18446744073709551616.0);
  enabled = 1;
  return 0;
}

int ss__sampler_enabled(void) { return enabled; }

void ss__sampler_free(void) {
  while (oldest) trace_free(oldest, 1, 0);
  free(cache);
  free(cache_buckets);
  free(emits);
  cache = NULL;
  cache_buckets = NULL;
  emits = NULL;
  cap_emits = n_emits = 0;
  enabled = 0;
}
