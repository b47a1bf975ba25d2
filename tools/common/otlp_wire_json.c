/* otlp_wire_json.c - OTLP JSON of an ExportTraceServiceRequest written straight from its
 * protobuf wire bytes (see otlp_json.h: ss__wire_traces_json).
 *
 * Why: unpacking a request with protobuf-c into a tree of malloc'd (arena) messages and
 * then walking the tree cost spanshimd about twice what writing the JSON does; here each
 * message is read once in place. The output is byte for byte what ss__json_traces writes
 * for the same bytes unpacked by protobuf-c (a fuzz target and a unit test compare them).
 *
 * To keep that promise simple, only the canonical encoding every OTel SDK and the shim
 * send is taken: each message is first indexed (where its singular fields are, where its
 * repeated ones start), then written in the JSON writer's field order. Anything else is
 * declined (return 1) and the caller unpacks with protobuf-c instead: malformed wire
 * data, a known field with an unexpected wire type, a singular field or a second oneof
 * member given twice (protobuf-c merges or replaces), a varint past 64 bits, AnyValue
 * nesting deeper than MAX_NEST, a Resource's entity_refs, a string that is not valid
 * UTF-8 (protobuf-c refuses those), groups. Unknown fields are skipped, as the tree
 * writer ignores them.
 *
 * Per span, what costs is its own fields (ids in hex, timestamps in decimal) and its
 * attributes; the JSON of a repeated attribute comes from a cache keyed by its bytes
 * (below). spanshimd's SQL enrichment can be applied as a span is written
 * (ss__wire_traces_json_sql), so a request with statements is read once, not rewritten
 * first. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "runtime/utf8.h"
#include "tools/common/jw_fmt.h"
#include "tools/common/otlp_json.h"

#define MAX_NEST 20         /* AnyValue levels written here; deeper: declined */
#define MAXF 17             /* field numbers 1..16 are known at every level */
#define DECLINE 1

enum { T_NONE = 0, T_VARINT, T_I64, T_LEN, T_I32, T_STR };

/* A message's known fields: which wire type each takes (T_STR: a string, T_LEN checked
 * for UTF-8), which are repeated, and which form a oneof (at most one present). */
typedef struct shape {
  uint8_t type[MAXF];
  uint32_t repeated;
  uint32_t oneof;
} shape;

#define BIT(n) (1u << (n))
static const shape REQ = {{[1] = T_LEN}, BIT(1), 0};
static const shape RSPANS = {{[1] = T_LEN, [2] = T_LEN, [3] = T_STR}, BIT(2), 0};
static const shape SSPANS = {{[1] = T_LEN, [2] = T_LEN, [3] = T_STR}, BIT(2), 0};
static const shape SPAN = {{[1] = T_LEN, [2] = T_LEN, [3] = T_STR, [4] = T_LEN, [5] = T_STR,
                            [6] = T_VARINT, [7] = T_I64, [8] = T_I64, [9] = T_LEN,
                            [10] = T_VARINT, [11] = T_LEN, [12] = T_VARINT, [13] = T_LEN,
                            [14] = T_VARINT, [15] = T_LEN, [16] = T_I32},
                           BIT(9) | BIT(11) | BIT(13), 0};
static const shape EVENT = {{[1] = T_I64, [2] = T_STR, [3] = T_LEN, [4] = T_VARINT}, BIT(3), 0};
static const shape LINK = {{[1] = T_LEN, [2] = T_LEN, [3] = T_STR, [4] = T_LEN, [5] = T_VARINT,
                            [6] = T_I32},
                           BIT(4), 0};
static const shape STATUS = {{[2] = T_STR, [3] = T_VARINT}, 0, 0};
static const shape KV = {{[1] = T_STR, [2] = T_LEN}, 0, 0};
static const shape ANY = {{[1] = T_STR, [2] = T_VARINT, [3] = T_VARINT, [4] = T_I64, [5] = T_LEN,
                           [6] = T_LEN, [7] = T_LEN},
                          0, BIT(1) | BIT(2) | BIT(3) | BIT(4) | BIT(5) | BIT(6) | BIT(7)};
static const shape LIST = {{[1] = T_LEN}, BIT(1), 0};  /* ArrayValue, KeyValueList */
static const shape RESOURCE = {{[1] = T_LEN, [2] = T_VARINT, [3] = T_LEN}, BIT(1) | BIT(3), 0};
static const shape SCOPE = {{[1] = T_STR, [2] = T_STR, [3] = T_LEN, [4] = T_VARINT}, BIT(3), 0};

/* One indexed message. For a singular field: its payload (p, v = length; for a string
 * the length up to its first NUL byte) or value (v); for a repeated one: where its
 * first element's tag starts (p) and how many (v). */
typedef struct msg {
  const uint8_t *end;
  struct { const uint8_t *p; uint64_t v; } f[MAXF];
  uint32_t seen;
  const uint8_t *run_end;  /* index_span: where field 9's elements end when they are one
                              run of bytes from f[9].p (nothing between them), else NULL */
} msg;

typedef struct wctx {
  ss__buf *b;
  ss__wire_info *info;
  ss__sql_planner plan;          /* SQL enrichment while writing, or NULL */
  unsigned fx;                   /* FX_* noted (for the run cache) */
  struct kvc_slot *last_run;     /* the run cache's entry the last span used, or NULL */
  uint64_t t_hi;                 /* the last timestamp's digits above the last 8 (0: none) */
  uint8_t t_len;                 /* and how many */
  char t_digits[24];
} wctx;

static inline int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  if (*p < end && **p < 0x80) {  /* most tags and lengths: one byte */
    *v = *(*p)++;
    return 0;
  }
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t c = *(*p)++;
    if (shift == 63 && c > 1) return -1;  /* past 64 bits */
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

static inline uint64_t le(const uint8_t *p, int n) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (n == 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
  }
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
#else
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
#endif
}

/* One field at *p: number, wire type, payload; 0 or -1 (malformed or a group). */
static inline __attribute__((always_inline)) int field(const uint8_t **p, const uint8_t *end,
                                                       unsigned *no, int *wt,
                                                       const uint8_t **data, uint64_t *v) {
  uint64_t tag;
  if (varint(p, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
  *no = (unsigned)(tag >> 3);
  *wt = (int)(tag & 7);
  *data = NULL;
  switch (*wt) {
  case 0: return varint(p, end, v);
  case 1:
    if (end - *p < 8) return -1;
    *v = le(*p, 8);
    *p += 8;
    return 0;
  case 5:
    if (end - *p < 4) return -1;
    *v = le(*p, 4);
    *p += 4;
    return 0;
  case 2:
    if (varint(p, end, v) != 0 || *v > (uint64_t)(end - *p)) return -1;
    *data = *p;
    *p += *v;
    return 0;
  default: return -1;
  }
}

#define HIGH8 0x8080808080808080ull
#define ONES8 0x0101010101010101ull

/* Whether p[0..n) is valid UTF-8 (as protobuf-c wants strings); *cut is where the first
 * NUL byte is (n if none): the tree path's strings end there. One pass, 8 ASCII bytes
 * at a time. */
static inline int ascii8(const uint8_t *p) {  /* 8 bytes of ASCII, no NUL */
  uint64_t x;
  memcpy(&x, p, 8);
  return ((x | ((x - ONES8) & ~x)) & HIGH8) == 0;
}

static inline int ascii4(const uint8_t *p) {
  uint32_t x;
  memcpy(&x, p, 4);
  return ((x | ((x - 0x01010101u) & ~x)) & 0x80808080u) == 0;
}

static int scan_str(const uint8_t *p, size_t n, size_t *cut) {
  size_t i = 0;
  *cut = n;
  /* Most strings are plain ASCII: whole words, the last one overlapping the one before
   * (4-byte words below 8 bytes); anything else goes byte by byte below. */
  if (n >= 8) {
    while (i + 8 <= n && ascii8(p + i)) i += 8;
    if (i == n || (i + 8 > n && ascii8(p + n - 8))) return 1;
    i = 0;
  } else if (n >= 4 && ascii4(p) && ascii4(p + n - 4)) {
    return 1;
  }
  while (i < n) {
    if (i + 8 <= n) {
      uint64_t x;
      memcpy(&x, p + i, 8);
      if (((x | ((x - ONES8) & ~x)) & HIGH8) == 0) {  /* ASCII, no NUL */
        i += 8;
        continue;
      }
    }
    if (p[i] < 0x80) {
      if (p[i] == 0 && *cut == n) *cut = i;
      i++;
      continue;
    }
    size_t k = ss__utf8_seq(p + i, n - i);
    if (k == 0) return 0;
    i += k;
  }
  return 1;
}

static const int wire_of[] = {[T_VARINT] = 0, [T_I64] = 1, [T_LEN] = 2, [T_I32] = 5,
                              [T_STR] = 2};

/* Indexes p[0..n) as a message of shape s; 0, or DECLINE. */
static int index_msg(msg *m, const uint8_t *p, size_t n, const shape *s) {
  const uint8_t *end = p + n;
  m->end = end;
  m->seen = 0;
  while (p < end) {
    const uint8_t *start = p, *data;
    unsigned no;
    int wt;
    uint64_t v;
    if (field(&p, end, &no, &wt, &data, &v) != 0) return DECLINE;
    int t = no < MAXF ? s->type[no] : T_NONE;
    if (t == T_NONE) continue;  /* unknown: protobuf-c keeps it, JSON leaves it out */
    if (wt != wire_of[t]) return DECLINE;
    if (t == T_STR) {  /* its length up to the first NUL */
      size_t cut;
      if (!scan_str(data, (size_t)v, &cut)) return DECLINE;
      v = cut;
    }
    uint32_t bit = BIT(no);
    if (s->repeated & bit) {
      if (!(m->seen & bit)) m->f[no].p = start, m->f[no].v = 0;
      m->f[no].v++;
      while (*start < 0x80 && p < end && *p == *start) {  /* more right after it (spans) */
        const uint8_t *q = p + 1;
        if (varint(&q, end, &v) != 0 || v > (uint64_t)(end - q)) return DECLINE;
        p = q + v;
        m->f[no].v++;
      }
    } else {
      if ((m->seen & bit) || (s->oneof & bit && m->seen & s->oneof)) return DECLINE;
      m->f[no].p = data;
      m->f[no].v = v;
    }
    m->seen |= bit;
  }
  return 0;
}

/* index_msg for a Span (most of what a request holds), with its usual tags read by a
 * switch on the tag byte; any other tag (a wrong wire type, an unknown field, a long
 * tag) makes it start over with index_msg, which decides. The same answers. */
static int index_span(msg *m, const uint8_t *p, size_t n) {
  const uint8_t *q = p, *end = p + n, *data, *run_end = NULL;
  int broken = 0;
  m->end = end;
  m->seen = 0;
  m->run_end = NULL;
  while (q < end) {
    const uint8_t *start = q;
    unsigned tag = *q++, no = tag >> 3;
    uint64_t v;
    size_t cut;
    switch (tag) {
    case 0x4a:  /* attributes (9): usually one run of them, read here in a tight loop */
      if (m->seen & BIT(9)) {
        if (run_end != start) broken = 1;
      } else {
        m->f[9].p = start, m->f[9].v = 0;
      }
      do {
        if (varint(&q, end, &v) != 0 || v > (uint64_t)(end - q)) return DECLINE;
        q += v;
        m->f[9].v++;
      } while (q < end && *q == 0x4a && (q++, 1));
      run_end = q;
      m->seen |= BIT(9);
      continue;
    case 0x0a: case 0x12: case 0x1a: case 0x22: case 0x2a: case 0x5a: case 0x6a:
    case 0x7a:  /* length-delimited: 1 2 3 4 5 11 13 15 */
      if (varint(&q, end, &v) != 0 || v > (uint64_t)(end - q)) return DECLINE;
      data = q;
      q += v;
      if ((no == 3 || no == 5) && !scan_str(data, (size_t)v, &cut)) return DECLINE;
      if (no == 3 || no == 5) v = cut;
      break;
    case 0x30: case 0x50: case 0x60: case 0x70:  /* varints: 6 10 12 14 */
      if (varint(&q, end, &v) != 0) return DECLINE;
      data = NULL;
      break;
    case 0x39: case 0x41:  /* fixed64: 7 8 */
      if (end - q < 8) return DECLINE;
      v = le(q, 8);
      q += 8;
      data = NULL;
      break;
    case 0x85:  /* fixed32 16 (flags): tag 0x85 0x01 */
      if (end - q < 5 || *q != 0x01) return index_msg(m, p, n, &SPAN);
      v = le(q + 1, 4);
      q += 5;
      no = 16;
      data = NULL;
      break;
    default: return index_msg(m, p, n, &SPAN);
    }
    uint32_t bit = BIT(no);
    if (SPAN.repeated & bit) {
      if (!(m->seen & bit)) m->f[no].p = start, m->f[no].v = 0;
      m->f[no].v++;
    } else {
      if (m->seen & bit) return DECLINE;
      m->f[no].p = data;
      m->f[no].v = v;
    }
    m->seen |= bit;
  }
  if (!broken) m->run_end = run_end;
  return 0;
}

/* The next element of repeated field `no` at or after *p (a message already indexed, so
 * well-formed); its payload, or NULL at the end. */
static __attribute__((noinline)) const uint8_t *next_of_slow(const uint8_t **p,
                                                            const uint8_t *end, unsigned no,
                                                            size_t *len) {
  while (*p < end) {
    const uint8_t *data;
    unsigned n;
    int wt;
    uint64_t v;
    if (field(p, end, &n, &wt, &data, &v) != 0) return NULL;  /* cannot happen: indexed */
    if (n == no && wt == 2) {
      *len = (size_t)v;
      return data;
    }
  }
  return NULL;
}

static inline const uint8_t *next_of(const uint8_t **p, const uint8_t *end, unsigned no,
                                     size_t *len) {
  /* Usually the next field is the next element, its tag and length a byte each. */
  const uint8_t *q = *p;
  uint64_t v;
  if (q < end && q[0] == (uint8_t)(no << 3 | 2) && no < 16) {
    q++;
    if (varint(&q, end, &v) == 0 && v <= (uint64_t)(end - q)) {
      *len = (size_t)v;
      *p = q + v;
      return q;
    }
  }
  return next_of_slow(p, end, no, len);
}

#define HAS(m, no) ((m)->seen & BIT(no))

/* KeyValue and AnyValue are most of what a request holds: their usual encoding (key then
 * value, each with a one-byte length; one value field) is indexed without the general
 * loop. Anything else goes through index_msg. */
static int index_kv(msg *m, const uint8_t *p, size_t n) {
  size_t kl = n > 2 ? p[1] : 0, cut;
  if (n >= 4 && p[0] == 0x0a && kl < 0x80 && kl + 4 <= n && p[kl + 2] == 0x12 &&
      p[kl + 3] < 0x80 && kl + 4 + p[kl + 3] == n) {
    if (!scan_str(p + 2, kl, &cut)) return DECLINE;
    m->end = p + n;
    m->seen = BIT(1) | BIT(2);
    m->f[1].p = p + 2, m->f[1].v = cut;
    m->f[2].p = p + kl + 4, m->f[2].v = p[kl + 3];
    return 0;
  }
  return index_msg(m, p, n, &KV);
}

static int index_any(msg *m, const uint8_t *p, size_t n) {
  size_t cut;
  if (n >= 2 && p[0] == 0x0a && p[1] < 0x80 && (size_t)p[1] + 2 == n) {  /* a string */
    if (!scan_str(p + 2, p[1], &cut)) return DECLINE;
    m->end = p + n;
    m->seen = BIT(1);
    m->f[1].p = p + 2, m->f[1].v = cut;
    return 0;
  }
  if (n >= 2 && n <= 10 && p[0] == 0x18 && p[n - 1] < 0x80) {  /* an int, to the end */
    const uint8_t *q = p + 1;
    uint64_t v;
    if (varint(&q, p + n, &v) == 0 && q == p + n) {
      m->end = p + n;
      m->seen = BIT(3);
      m->f[3].v = v;
      return 0;
    }
  }
  return index_msg(m, p, n, &ANY);
}

/* ---- writing (or, with no buffer, checking alone: the same walk and answers) ---- */

#define KEY(b, n, lit) ss__jw_key((b), (n), (lit), sizeof(lit) - 1)

static void str_of(ss__buf *b, const msg *m, unsigned no) {
  if (!HAS(m, no)) SS_BUF_LIT(b, "\"\"");
  else ss__jw_str(b, (const char *)m->f[no].p, (size_t)m->f[no].v);
}

static int any_value(wctx *w, const uint8_t *p, size_t len, int depth);

/* Key names spanshimd's enrichment looks for (info flags), at the level `want` says. */
enum { ATTRS_PLAIN = 0, ATTRS_SPAN = 1, ATTRS_EVENT = 2 };

/* What a key is to note_key: */
enum { KEY_OTHER = 0, KEY_SQL = 1, KEY_STACKS = 2 };

static int key_class(const msg *kv) {
  if (!HAS(kv, 1)) return KEY_OTHER;
  size_t kl = (size_t)kv->f[1].v;
  const char *k = (const char *)kv->f[1].p;
  if (kl == 13 && memcmp(k, "db.query.text", 13) == 0) return KEY_SQL;
  if (kl == 22 && memcmp(k, "spanshim.stack.modules", 22) == 0) return KEY_STACKS;
  return KEY_OTHER;
}

/* What a KeyValue's key made the walk note in ss__wire_info (kept with a cached run of
 * them, to be noted again on a hit): */
enum { FX_SQL = 1, FX_STACKS = 2 };

static void note_key(wctx *w, int cls, int level) {
  if (level == ATTRS_SPAN && cls == KEY_SQL) w->info->sql = 1, w->fx |= FX_SQL;
  if (level == ATTRS_EVENT && cls == KEY_STACKS) w->info->stacks = 1, w->fx |= FX_STACKS;
}

static void note_fx(wctx *w, unsigned fx) {
  if (fx & FX_SQL) w->info->sql = 1;
  if (fx & FX_STACKS) w->info->stacks = 1;
  w->fx |= fx;
}

/* ---- the attribute caches ----
 * Attributes repeat: a service sends the same keys with the same few values span after
 * span (network.transport udp, http.request.method GET, its statements' texts), and
 * often a span's whole attribute list is the last one's again (the same call to the same
 * peer). The JSON of a top-level KeyValue, and of a span's attribute list, depends on
 * their wire bytes alone, so it is kept, keyed by those bytes (compared whole on a hit: a
 * hash collision is only a miss): one hash, one compare and one copy instead of
 * indexing, UTF-8 checks and escaping. Two tables: one of single KeyValues (1,024 slots
 * of 584 bytes), one of a span's whole list when its KeyValues are one run of bytes (256
 * slots of 2 KiB; a list that misses there goes through the first). An entry is taken in
 * on its second sighting in a row at its slot, so values seen once (ids, unique URLs)
 * cost a hash and no copy; a check (no JSON written) keeps the bytes alone, which say
 * they are valid. Direct-mapped, fixed size (1,096 KiB together, each allocated at its
 * first use), one pair per thread that writes (spanshimd: the receiver's);
 * ss__wire_cache_free releases the calling thread's. */
#define KVC_NO_JSON 0xffff     /* jlen of an entry taken in by a check: known valid */

typedef struct kvc_slot {
  uint64_t hash;               /* of the wire bytes held; 0: empty */
  uint64_t seen;               /* the last bytes missed here: taken if they come again */
  uint16_t wlen, jlen;
  uint8_t tag;                 /* a KeyValue: its KEY_*; a run: the FX_* it noted */
  uint16_t next;               /* a run: the slot (index + 1) of the run that came after
                                  it last time (0: none), tried before hashing */
  char bytes[];                /* wire bytes, then the JSON */
} kvc_slot;

typedef struct kvc_table {
  char *slots;                 /* 2^bits slots of `size` bytes, or NULL */
  unsigned bits;
  uint32_t size;
} kvc_table;

static __thread kvc_table kv_tab = {NULL, 10, 584}, run_tab = {NULL, 8, 2048};

void ss__wire_cache_free(void) {
  free(kv_tab.slots);
  kv_tab.slots = NULL;
  free(run_tab.slots);
  run_tab.slots = NULL;
}

/* The slot of bytes p[0..n) (*h: their hash, never 0), or NULL when they do not fit one
 * (or the table cannot be allocated). */
static kvc_slot *kvc_slot_of(kvc_table *t, const uint8_t *p, size_t n, uint64_t *h) {
  *h = ss__hash_words(p, n) | 1;
  if (n >= t->size - offsetof(kvc_slot, bytes)) return NULL;
  if (t->slots == NULL && (t->slots = calloc((size_t)1 << t->bits, t->size)) == NULL)
    return NULL;
  return (kvc_slot *)(t->slots + (*h >> (64 - t->bits)) * t->size);  /* the top bits */
}

/* Whether slot s holds p[0..n) (hash h), with JSON when b wants it. */
static inline int kvc_hit(const kvc_slot *s, uint64_t h, const uint8_t *p, size_t n,
                          const ss__buf *b) {
  return s && s->hash == h && s->wlen == n && (!b || s->jlen != KVC_NO_JSON) &&
         memcmp(s->bytes, p, n) == 0;
}

/* After a miss of p[0..n) at s: takes it in with its JSON b->data[mark..b->len) (b NULL:
 * checked only) and tag, when it was the last miss there too and it fits. */
static void kvc_offer(const kvc_table *t, kvc_slot *s, uint64_t h, const uint8_t *p, size_t n,
                      const ss__buf *b, size_t mark, unsigned tag) {
  if (s == NULL || (b && b->oom)) return;
  if (s->seen != h) {
    s->seen = h;
    return;
  }
  size_t jl = b ? b->len - mark : 0;
  if (n + jl > t->size - offsetof(kvc_slot, bytes) || jl >= KVC_NO_JSON) return;
  s->hash = h;
  s->wlen = (uint16_t)n;
  s->jlen = b ? (uint16_t)jl : KVC_NO_JSON;  /* checked only: no JSON to give */
  s->tag = (uint8_t)tag;
  memcpy(s->bytes, p, n);
  if (b) memcpy(s->bytes + n, b->data + mark, jl);
}

/* One KeyValue p[0..n) at depth `depth` (its JSON object to w->b, or checked); 0 or
 * DECLINE. */
static int one_kv(wctx *w, const uint8_t *p, size_t n, int depth, int level) {
  ss__buf *b = w->b;
  msg kv;
  int k = 0;
  if (index_kv(&kv, p, n) != 0) return DECLINE;
  note_key(w, key_class(&kv), level);
  if (b) {
    ss__buf_putc(b, '{');
    KEY(b, &k, "key");
    str_of(b, &kv, 1);
    if (HAS(&kv, 2)) KEY(b, &k, "value");
  }
  if (HAS(&kv, 2) && any_value(w, kv.f[2].p, (size_t)kv.f[2].v, depth + 1) != 0)
    return DECLINE;
  if (b) ss__buf_putc(b, '}');
  return 0;
}

/* A top-level KeyValue, through the cache. */
static int cached_kv(wctx *w, const uint8_t *p, size_t n, int level) {
  ss__buf *b = w->b;
  uint64_t h;
  kvc_slot *s = kvc_slot_of(&kv_tab, p, n, &h);
  if (kvc_hit(s, h, p, n, b)) {
    note_key(w, s->tag, level);
    if (b) ss__buf_append(b, s->bytes + n, s->jlen);
    return 0;
  }
  size_t mark = b ? b->len : 0;
  if (one_kv(w, p, n, 0, level) != 0) return DECLINE;
  if (s && s->seen == h) {  /* to be taken in: its class */
    msg kv;
    index_kv(&kv, p, n);  /* taken just now: cannot fail */
    kvc_offer(&kv_tab, s, h, p, n, b, mark, (unsigned)key_class(&kv));
  } else {
    kvc_offer(&kv_tab, s, h, p, n, b, mark, 0);
  }
  return 0;
}

/* The KeyValues of m's repeated field no, as a JSON array (w->b NULL: checked only). */
static int key_values(wctx *w, const msg *m, unsigned no, int depth, int level) {
  ss__buf *b = w->b;
  const uint8_t *p = m->f[no].p, *kvp;
  size_t kvl, i = 0;
  if (b) ss__buf_putc(b, '[');
  for (uint64_t left = m->f[no].v; left && (kvp = next_of(&p, m->end, no, &kvl)); left--) {
    if (b && i++) ss__buf_putc(b, ',');
    if ((depth == 0 ? cached_kv(w, kvp, kvl, level) : one_kv(w, kvp, kvl, depth, level)) != 0)
      return DECLINE;
  }
  if (b) ss__buf_putc(b, ']');
  return 0;
}

/* ---- SQL enrichment as the span is written (ss__wire_traces_json_sql) ---- */

/* A KeyValue's key, and its string value when it has one (p NULL otherwise), read
 * without checks: protobuf-c's C strings (up to a NUL), the last of a field given twice.
 * Only for bytes the writer goes on to check whole: when they are not what it takes,
 * it declines them, and whatever was read here is not used. */
static ss__strv cut_str(const uint8_t *p, size_t n) {
  const uint8_t *z = memchr(p, 0, n);
  return (ss__strv){(const char *)p, z ? (size_t)(z - p) : n};
}

static void kv_peek(const uint8_t *p, size_t n, ss__strv *key, ss__strv *sval) {
  const uint8_t *end = p + n, *data, *q, *vd;
  size_t kl = n >= 2 ? p[1] : 0;
  if (n >= 4 && p[0] == 0x0a && kl < 0x80 && kl + 4 <= n && p[kl + 2] == 0x12) {
    /* key, then a value holding a string, each once: as everyone writes them */
    uint64_t vl, sl;
    const uint8_t *v = p + kl + 3, *sv;
    if (varint(&v, end, &vl) == 0 && vl == (uint64_t)(end - v) && vl >= 2 && v[0] == 0x0a) {
      sv = v + 1;
      if (varint(&sv, end, &sl) == 0 && sl == (uint64_t)(end - sv)) {
        *key = cut_str(p + 2, kl);
        *sval = cut_str(sv, (size_t)sl);
        return;
      }
    }
  }
  unsigned no, vno;
  int wt, vwt;
  uint64_t v, vv;
  *key = (ss__strv){"", 0};
  *sval = (ss__strv){NULL, 0};
  while (p < end && field(&p, end, &no, &wt, &data, &v) == 0) {
    if (wt != 2) continue;
    if (no == 1) *key = cut_str(data, (size_t)v);
    if (no != 2) continue;
    *sval = (ss__strv){NULL, 0};
    for (q = data; q < data + v && field(&q, data + v, &vno, &vwt, &vd, &vv) == 0;)
      *sval = vno == 1 && vwt == 2 ? cut_str(vd, (size_t)vv) : (ss__strv){NULL, 0};
  }
}


/* A KeyValue's key as it is in place: when the key comes first with a one-byte length
 * and is not given again (as everyone writes it), its bytes before any NUL cut (1);
 * else the key as kv_peek reads it, exactly (0). */
static inline int kv_key_raw(const uint8_t *p, size_t n, ss__strv *k) {
  if (n >= 2 && p[0] == 0x0a && p[1] < 0x80 && (size_t)p[1] + 2 <= n &&
      ((size_t)p[1] + 2 == n || p[p[1] + 2] == 0x12)) {
    *k = (ss__strv){(const char *)p + 2, p[1]};
    return 1;
  }
  ss__strv v;
  kv_peek(p, n, k, &v);
  return 0;
}

/* Whether key k (from kv_key_raw, `raw` its answer) is lit[0..ln), which has no NUL. */
static inline int key_is(ss__strv k, int raw, const char *lit, size_t ln) {
  if (k.n != ln && !(raw && k.n > ln && k.p[ln] == 0)) return 0;
  return memcmp(k.p, lit, ln) == 0;
}

/* Whether the KeyValue p[0..n) may have the key db.query.text: a key written first
 * with a one-byte length is compared in place (as protobuf-c reads it: up to a NUL);
 * anything else is looked at closely. */
static int maybe_sql_key(const uint8_t *p, size_t n) {
  if (n < 2 || p[0] != 0x0a || p[1] >= 0x80) return 1;
  size_t kl = p[1];
  return kl >= 13 && kl + 2 <= n && memcmp(p + 2, "db.query.text", 13) == 0 &&
         (kl == 13 || p[15] == 0);
}

/* What enrichment reads of span m (ss__sql_in: the first attribute of each key, its
 * string value or none); 1 when it has db.query.text, 0 when not (or when its bytes
 * are for the writer to decline). */
static int sql_read(const msg *m, ss__sql_in *in) {
  static const struct { const char *k; size_t n; } keys[4] = {
      {"db.query.text", 13}, {"db.system.name", 14}, {"db.system", 9},
      {"db.operation.name", 17}};
  ss__strv *slot[4] = {&in->text, &in->sys_name, &in->sys, &in->api_op};
  const uint8_t *p = m->f[9].p, *kvp = NULL;
  size_t kvl;
  unsigned seen = 0;
  uint64_t left = m->f[9].v;
  for (p = m->f[9].p; left && (kvp = next_of(&p, m->end, 9, &kvl)) != NULL; left--)
    if (maybe_sql_key(kvp, kvl)) break;
  if (!left) kvp = NULL;
  if (kvp == NULL) return 0;  /* most spans: no statement */
  memset(in, 0, sizeof *in);
  in->name = HAS(m, 5) ? (ss__strv){(const char *)m->f[5].p, (size_t)m->f[5].v}
                       : (ss__strv){"", 0};
  left = m->f[9].v;
  for (p = m->f[9].p; left && (kvp = next_of(&p, m->end, 9, &kvl)) != NULL; left--) {
    ss__strv k;
    int raw = kv_key_raw(kvp, kvl, &k);
    for (unsigned i = 0; i < 4; i++) {
      if ((seen & BIT(i)) || !key_is(k, raw, keys[i].k, keys[i].n)) continue;
      kv_peek(kvp, kvl, &k, slot[i]);
      seen |= BIT(i);
      break;
    }
  }
  return (seen & 1) != 0;
}

/* An attribute an edit sets: {"key":K,"value":{"stringValue":V}}. */
static void edit_kv(ss__buf *b, const char *key, ss__strv v) {
  int k = 0, n = 0;
  ss__buf_putc(b, '{');
  KEY(b, &k, "key");
  ss__jw_str(b, key, strlen(key));
  KEY(b, &k, "value");
  ss__buf_putc(b, '{');
  KEY(b, &n, "stringValue");
  ss__jw_str(b, v.p, v.n);
  SS_BUF_LIT(b, "}}");
}

/* The span attributes of m (field 9) with edit e applied (as sqlsum.c's write_span does
 * to the bytes); what is replaced or removed is still checked. 0 or DECLINE. */
static int edited_attrs(wctx *w, const msg *m, const ss__sql_edit *e) {
  ss__buf *b = w->b;
  wctx check = {.b = NULL, .info = w->info};
  const uint8_t *p = m->f[9].p, *kvp;
  size_t kvl, i = 0;
  unsigned applied = 0;
  int removed = 0;
  ss__buf_putc(b, '[');
  for (uint64_t left = m->f[9].v; left && (kvp = next_of(&p, m->end, 9, &kvl)); left--) {
    size_t j;
    ss__strv k;
    int raw = kv_key_raw(kvp, kvl, &k);
    for (j = 0; j < e->n_set; j++)
      if (!(applied & BIT(j)) && key_is(k, raw, e->set[j].key, e->set[j].key_len)) break;
    int drop = j == e->n_set && e->remove && !removed &&
               key_is(k, raw, e->remove, strlen(e->remove));
    if (j < e->n_set || drop) {
      if (cached_kv(&check, kvp, kvl, ATTRS_SPAN) != 0) return DECLINE;
      if (drop) {
        removed = 1;
        continue;
      }
      if (i++) ss__buf_putc(b, ',');
      edit_kv(b, e->set[j].key, e->set[j].val);
      applied |= BIT(j);
      continue;
    }
    if (i++) ss__buf_putc(b, ',');
    if (cached_kv(w, kvp, kvl, ATTRS_SPAN) != 0) return DECLINE;
  }
  for (size_t j = 0; j < e->n_set; j++) {
    if (applied & BIT(j)) continue;
    if (i++) ss__buf_putc(b, ',');
    edit_kv(b, e->set[j].key, e->set[j].val);
  }
  ss__buf_putc(b, ']');
  return 0;
}

/* ---- the run cache's entries ----
 * An entry of the run cache is a span's attribute list (its wire bytes), its JSON when
 * it was written without an edit (jlen KVC_NO_JSON: none, only known valid), and, when
 * it holds a statement (tag FX_IN), where enrichment's inputs are in it (a run_sql) and
 * the last edit made of it (edit_key's bytes) with the JSON it gave: a span of a
 * statement seen before is enriched by a planner call and a compare of its answer, not
 * by reading its attributes again and writing the edited list anew. */
enum { FX_IN = 4 };

typedef struct run_sql {
  uint16_t off[4], len[4];  /* ss__sql_in's text, sys_name, sys, api_op; off 0xffff: none */
  uint16_t mlen, ejlen;     /* the edit's key and its JSON follow (mlen 0: none) */
} run_sql;

typedef struct run_ref {
  kvc_slot *s;              /* the entry (found), or the slot it would go to, or NULL */
  uint64_t h;               /* the run's hash, when not found */
} run_ref;

#define RUN_ROOM(t) ((t)->size - offsetof(kvc_slot, bytes))
#define EDIT_KEY_MAX 1024

static size_t json_len(const kvc_slot *s) { return s->jlen == KVC_NO_JSON ? 0 : s->jlen; }
static char *run_extra(kvc_slot *s) { return s->bytes + s->wlen + json_len(s); }

/* Looks span m's attribute run [m->f[9].p, m->run_end) up: 1 when an entry holds those
 * bytes (r->s), else 0 (r->s its slot or NULL, r->h the hash). The entry the last span
 * used is tried first, without hashing: consecutive spans often have the same list. */
/* Entry s is the current span's: the last span's entry learns that s came after it. */
static void run_follow(wctx *w, kvc_slot *s) {
  kvc_slot *l = w->last_run;
  if (l && l != s) l->next = (uint16_t)(((char *)s - run_tab.slots) / run_tab.size + 1);
  w->last_run = s;
}

static int run_find(wctx *w, const msg *m, run_ref *r) {
  const uint8_t *p = m->f[9].p;
  size_t n = (size_t)(m->run_end - p);
  kvc_slot *l = w->last_run, *c;
  if (l && l->wlen == n && memcmp(l->bytes, p, n) == 0) {  /* the same list again */
    r->s = l;
    return 1;
  }
  if (l && l->next) {  /* the list that came after it last time (statements in turn) */
    c = (kvc_slot *)(run_tab.slots + (size_t)(l->next - 1) * run_tab.size);
    if (c->wlen == n && memcmp(c->bytes, p, n) == 0) {
      r->s = c;
      run_follow(w, c);
      return 1;
    }
  }
  kvc_slot *s = kvc_slot_of(&run_tab, p, n, &r->h);
  r->s = s;
  if (!(s && s->hash == r->h && s->wlen == n && memcmp(s->bytes, p, n) == 0)) return 0;
  run_follow(w, s);
  return 1;
}

/* What enrichment reads of span m, from its entry (tag FX_IN). */
static void run_in(kvc_slot *s, const msg *m, ss__sql_in *in) {
  run_sql x;
  ss__strv *f[4] = {&in->text, &in->sys_name, &in->sys, &in->api_op};
  memcpy(&x, run_extra(s), sizeof x);
  for (int i = 0; i < 4; i++)
    *f[i] = x.off[i] == 0xffff ? (ss__strv){NULL, 0}
                               : (ss__strv){(const char *)m->f[9].p + x.off[i], x.len[i]};
  in->name = HAS(m, 5) ? (ss__strv){(const char *)m->f[5].p, (size_t)m->f[5].v}
                       : (ss__strv){"", 0};
}

/* Edit e as bytes that are equal exactly when two edits are (keys, values, what is
 * removed, the name); their length, or 0 when they do not fit k[0..cap). */
static size_t edit_key(const ss__sql_edit *e, char *k, size_t cap) {
  size_t n = 0;
#define PUT(src, len)                          \
  do {                                         \
    if ((len) > cap - n) return 0;             \
    memcpy(k + n, (src), (len));               \
    n += (len);                                \
  } while (0)
  uint32_t l;
  uint8_t c = (uint8_t)e->n_set;
  PUT(&c, 1);
  for (size_t i = 0; i < e->n_set; i++) {
    l = (uint32_t)e->set[i].key_len;
    PUT(&l, 4);
    PUT(e->set[i].key, e->set[i].key_len);
    l = (uint32_t)e->set[i].val.n;
    PUT(&l, 4);
    PUT(e->set[i].val.p, e->set[i].val.n);
  }
  l = e->remove ? (uint32_t)strlen(e->remove) : 0xffffffffu;
  PUT(&l, 4);
  if (e->remove) PUT(e->remove, l);
  l = e->name.p ? (uint32_t)e->name.n : 0xffffffffu;
  PUT(&l, 4);
  if (e->name.p) PUT(e->name.p, e->name.n);
#undef PUT
  return n;
}

/* Keeps an edit's key k[0..kl) and JSON j[0..jl) in entry s (tag FX_IN), when they fit. */
static void run_memo(const kvc_table *t, kvc_slot *s, const char *k, size_t kl, const char *j,
                     size_t jl) {
  char *x = run_extra(s);
  run_sql rs;
  memcpy(&rs, x, sizeof rs);
  rs.mlen = 0;
  if ((size_t)(x - s->bytes) + sizeof rs + kl + jl <= RUN_ROOM(t) && kl) {
    rs.mlen = (uint16_t)kl;
    rs.ejlen = (uint16_t)jl;
    memcpy(x + sizeof rs, k, kl);
    memcpy(x + sizeof rs + kl, j, jl);
  }
  memcpy(x, &rs, sizeof rs);
}

/* After a miss of span m's run at r: takes it in by kvc_offer's rule (its second sighting
 * in a row at the slot), with its JSON j[0..jl) (j NULL: none), what it noted (fx) and,
 * when `in` (read from this span) is given, where enrichment's inputs are. */
static void run_offer(wctx *w, const msg *m, const run_ref *r, const char *j, size_t jl,
                      unsigned fx, const ss__sql_in *in) {
  kvc_slot *s = r->s;
  const uint8_t *p = m->f[9].p;
  size_t n = (size_t)(m->run_end - p);
  if (s == NULL) return;
  if (s->seen != r->h) {
    s->seen = r->h;
    return;
  }
  if (!j) jl = 0;
  if (n + jl > RUN_ROOM(&run_tab) || jl >= KVC_NO_JSON) return;
  run_sql x = {.mlen = 0};
  if (in) {  /* enrichment's inputs: each inside the run, or none */
    const ss__strv *f[4] = {&in->text, &in->sys_name, &in->sys, &in->api_op};
    for (int i = 0; i < 4 && in; i++) {
      const uint8_t *q = (const uint8_t *)f[i]->p;
      x.off[i] = 0xffff, x.len[i] = 0;
      if (q == NULL) continue;
      if (q < p || f[i]->n > n || (size_t)(q - p) > n - f[i]->n) in = NULL;
      else x.off[i] = (uint16_t)(q - p), x.len[i] = (uint16_t)f[i]->n;
    }
  }
  if (in && n + jl + sizeof x > RUN_ROOM(&run_tab)) in = NULL;
  s->hash = r->h;
  s->wlen = (uint16_t)n;
  s->jlen = j ? (uint16_t)jl : KVC_NO_JSON;
  s->tag = (uint8_t)(fx | (in ? FX_IN : 0));
  memcpy(s->bytes, p, n);
  if (j) memcpy(s->bytes + n, j, jl);
  if (in) memcpy(s->bytes + n + jl, &x, sizeof x);
  s->next = 0;
  run_follow(w, s);
}

/* Span m's attribute run as a JSON array without an edit: from its entry when it has
 * JSON (and always for a check), else through key_values, offered to the cache. */
static int run_write(wctx *w, const msg *m, int level, run_ref *r, int hit) {
  ss__buf *b = w->b;
  size_t mark = b ? b->len : 0;
  if (hit && (!b || r->s->jlen != KVC_NO_JSON)) {
    note_fx(w, r->s->tag & (FX_SQL | FX_STACKS));
    if (b) ss__buf_append(b, r->s->bytes + r->s->wlen, r->s->jlen);
    return 0;
  }
  unsigned fx = w->fx;
  w->fx = 0;
  int rc = key_values(w, m, 9, 0, level);
  unsigned mine = w->fx;
  w->fx = fx | mine;
  if (rc != 0 || (b && b->oom)) return rc;
  ss__sql_in in;
  const ss__sql_in *inp = (mine & FX_SQL) && w->plan && sql_read(m, &in) ? &in : NULL;
  if (hit) r->h = r->s->hash;  /* found without JSON: replaced with it */
  run_offer(w, m, r, b ? b->data + mark : NULL, b ? b->len - mark : 0, mine, inp);
  return 0;
}

/* Span m's attributes with edit e (from inputs in): the JSON of the same edit of the same
 * run from its entry, else edited_attrs, kept in the entry (taken in, if it was not). */
static int run_edited(wctx *w, const msg *m, const ss__sql_edit *e, const ss__sql_in *in,
                      const run_ref *r, int hit) {
  ss__buf *b = w->b;
  char key[EDIT_KEY_MAX];
  size_t kl = m->run_end ? edit_key(e, key, sizeof key) : 0, mark = b->len;
  if (hit && kl && (r->s->tag & FX_IN)) {
    run_sql x;
    const char *xp = run_extra(r->s);
    memcpy(&x, xp, sizeof x);
    if (x.mlen == kl && memcmp(xp + sizeof x, key, kl) == 0) {
      note_fx(w, r->s->tag & (FX_SQL | FX_STACKS));
      ss__buf_append(b, xp + sizeof x + kl, x.ejlen);
      return 0;
    }
  }
  unsigned fx = w->fx;
  w->fx = 0;
  if (edited_attrs(w, m, e) != 0) return DECLINE;
  unsigned mine = w->fx | FX_SQL;  /* it holds a statement (replaced ones are not noted) */
  w->fx = fx | mine;
  if (!kl || b->oom) return 0;
  if (hit && (r->s->tag & FX_IN)) {
    run_memo(&run_tab, r->s, key, kl, b->data + mark, b->len - mark);
  } else if (!hit) {
    run_offer(w, m, r, NULL, 0, mine, in);
    if (r->s && r->s->hash == r->h && (r->s->tag & FX_IN))
      run_memo(&run_tab, r->s, key, kl, b->data + mark, b->len - mark);
  }
  return 0;
}

static void scalar(ss__buf *b, const msg *v, int *n) {
  if (HAS(v, 1)) {
    KEY(b, n, "stringValue");
    str_of(b, v, 1);
  } else if (HAS(v, 2)) {
    KEY(b, n, "boolValue");
    if (v->f[2].v) SS_BUF_LIT(b, "true");
    else SS_BUF_LIT(b, "false");
  } else if (HAS(v, 3)) {
    KEY(b, n, "intValue");
    ss__buf_putc(b, '"');
    ss__jw_i64(b, (int64_t)v->f[3].v);
    ss__buf_putc(b, '"');
  } else if (HAS(v, 4)) {
    double d;
    memcpy(&d, &v->f[4].v, sizeof d);
    KEY(b, n, "doubleValue");
    ss__jw_double(b, d);
  } else if (HAS(v, 7)) {
    KEY(b, n, "bytesValue");
    ss__jw_base64(b, v->f[7].p, (size_t)v->f[7].v);
  }
}

static int any_value(wctx *w, const uint8_t *p, size_t len, int depth) {
  ss__buf *b = w->b;
  msg v;
  int n = 0;
  if (depth > MAX_NEST || index_any(&v, p, len) != 0) return DECLINE;
  if (b) ss__buf_putc(b, '{');
  if (!HAS(&v, 1) && !HAS(&v, 2) && !HAS(&v, 3) && !HAS(&v, 4) && (HAS(&v, 5) || HAS(&v, 6))) {
    unsigned no = HAS(&v, 5) ? 5 : 6;
    msg list;
    int m = 0;
    if (index_msg(&list, v.f[no].p, (size_t)v.f[no].v, &LIST) != 0) return DECLINE;
    if (b) {
      if (no == 5) KEY(b, &n, "arrayValue");
      else KEY(b, &n, "kvlistValue");
      ss__buf_putc(b, '{');
      if (HAS(&list, 1)) KEY(b, &m, "values");
    }
    if (HAS(&list, 1)) {
      if (no == 6) {
        if (key_values(w, &list, 1, depth + 1, ATTRS_PLAIN) != 0) return DECLINE;
      } else {
        const uint8_t *q = list.f[1].p, *e;
        size_t el, i = 0;
        if (b) ss__buf_putc(b, '[');
        for (uint64_t left = list.f[1].v; left && (e = next_of(&q, list.end, 1, &el)); left--) {
          if (b && i++) ss__buf_putc(b, ',');
          if (any_value(w, e, el, depth + 1) != 0) return DECLINE;
        }
        if (b) ss__buf_putc(b, ']');
      }
    }
    if (b) ss__buf_putc(b, '}');
  } else if (b) {
    scalar(b, &v, &n);
  }
  if (b) ss__buf_putc(b, '}');
  return 0;
}

/* The messages above AnyValue are written from tables: each field in the JSON writer's
 * order, by kind. A field left at its default is left out, as ss__json_traces does. */
enum { J_STR, J_U32, J_TIME, J_ID, J_ATTRS, J_LIST, J_MSG };
enum { R_PLAIN, R_SPAN, R_RESOURCE }; /* what else a message's walk does */

typedef struct jmsg jmsg;
typedef struct jfield {
  uint8_t kind, no, level; /* level: J_ATTRS' ATTRS_* */
  const char *key;
  uint8_t kl;              /* strlen(key) */
  const jmsg *sub;         /* J_LIST, J_MSG */
} jfield;
struct jmsg {
  const shape *shape;
  int role;
  jfield f[17];            /* ended by a NULL key */
};

#define K(lit) lit, sizeof(lit) - 1
static const jmsg J_RESOURCE = {&RESOURCE, R_RESOURCE, {
    {J_ATTRS, 1, ATTRS_PLAIN, K("attributes"), NULL},
    {J_U32, 2, 0, K("droppedAttributesCount"), NULL}, {0}}};
static const jmsg J_SCOPE = {&SCOPE, R_PLAIN, {
    {J_STR, 1, 0, K("name"), NULL}, {J_STR, 2, 0, K("version"), NULL},
    {J_ATTRS, 3, ATTRS_PLAIN, K("attributes"), NULL},
    {J_U32, 4, 0, K("droppedAttributesCount"), NULL}, {0}}};
static const jmsg J_EVENT = {&EVENT, R_PLAIN, {
    {J_TIME, 1, 0, K("timeUnixNano"), NULL}, {J_STR, 2, 0, K("name"), NULL},
    {J_ATTRS, 3, ATTRS_EVENT, K("attributes"), NULL},
    {J_U32, 4, 0, K("droppedAttributesCount"), NULL}, {0}}};
static const jmsg J_LINK = {&LINK, R_PLAIN, {
    {J_ID, 1, 0, K("traceId"), NULL}, {J_ID, 2, 0, K("spanId"), NULL},
    {J_STR, 3, 0, K("traceState"), NULL}, {J_ATTRS, 4, ATTRS_PLAIN, K("attributes"), NULL},
    {J_U32, 5, 0, K("droppedAttributesCount"), NULL}, {J_U32, 6, 0, K("flags"), NULL}, {0}}};
static const jmsg J_STATUS = {&STATUS, R_PLAIN, {
    {J_STR, 2, 0, K("message"), NULL}, {J_U32, 3, 0, K("code"), NULL}, {0}}};
static const jmsg J_SPAN = {&SPAN, R_SPAN, {
    {J_ID, 1, 0, K("traceId"), NULL}, {J_ID, 2, 0, K("spanId"), NULL},
    {J_STR, 3, 0, K("traceState"), NULL}, {J_ID, 4, 0, K("parentSpanId"), NULL},
    {J_U32, 16, 0, K("flags"), NULL}, {J_STR, 5, 0, K("name"), NULL}, {J_U32, 6, 0, K("kind"), NULL},
    {J_TIME, 7, 0, K("startTimeUnixNano"), NULL}, {J_TIME, 8, 0, K("endTimeUnixNano"), NULL},
    {J_ATTRS, 9, ATTRS_SPAN, K("attributes"), NULL},
    {J_U32, 10, 0, K("droppedAttributesCount"), NULL}, {J_LIST, 11, 0, K("events"), &J_EVENT},
    {J_U32, 12, 0, K("droppedEventsCount"), NULL}, {J_LIST, 13, 0, K("links"), &J_LINK},
    {J_U32, 14, 0, K("droppedLinksCount"), NULL}, {J_MSG, 15, 0, K("status"), &J_STATUS}, {0}}};
static const jmsg J_SSPANS = {&SSPANS, R_PLAIN, {
    {J_MSG, 1, 0, K("scope"), &J_SCOPE}, {J_LIST, 2, 0, K("spans"), &J_SPAN},
    {J_STR, 3, 0, K("schemaUrl"), NULL}, {0}}};
static const jmsg J_RSPANS = {&RSPANS, R_PLAIN, {
    {J_MSG, 1, 0, K("resource"), &J_RESOURCE}, {J_LIST, 2, 0, K("scopeSpans"), &J_SSPANS},
    {J_STR, 3, 0, K("schemaUrl"), NULL}, {0}}};

static int all_zero(const uint8_t *p, uint64_t n) {  /* ids: by the word */
  uint64_t acc = 0, w, i = 0;
  for (; i + 8 <= n; i += 8) {
    memcpy(&w, p + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= p[i];
  return acc == 0;
}

/* Whether pipeline validation would take the span out (its rule, pipeline.c). */
static int bad_ids(const msg *s) {
  uint64_t tl = HAS(s, 1) ? s->f[1].v : 0, sl = HAS(s, 2) ? s->f[2].v : 0;
  uint64_t pl = HAS(s, 4) ? s->f[4].v : 0;
  return tl != 16 || all_zero(s->f[1].p, 16) || sl != 8 || all_zero(s->f[2].p, 8) ||
         (pl != 0 && pl != 8);
}

/* A scalar field of m, left out at its default (0, empty). */
static void scalar_field(ss__buf *b, int *n, const jfield *f, const msg *m) {
  unsigned no = f->no;
  uint64_t v = HAS(m, no) ? m->f[no].v : 0;
  if (f->kind == J_U32) v = (uint32_t)v;
  if (v == 0) return;
  ss__jw_key(b, n, f->key, f->kl);
  switch (f->kind) {
  case J_STR: str_of(b, m, no); break;
  case J_U32: ss__jw_u64(b, v); break;
  case J_TIME:
    ss__buf_putc(b, '"');
    ss__jw_u64(b, v);
    ss__buf_putc(b, '"');
    break;
  default: ss__jw_hex(b, m->f[no].p, (size_t)v); break; /* J_ID */
  }
}

/* ---- a span's own fields, straight ----
 * J_SPAN's first SPAN_HEAD fields (ids, trace state, flags, name, kind, times: every
 * span has most of them) are written by span_head after one room check, in the table's
 * order and by its rules (scalar_field's), instead of field by field through it. */
#define SPAN_HEAD 9

static inline char *key_at(char *o, int *n, const char *lit, size_t len) {
  if ((*n)++) *o++ = ',';
  *o++ = '"';
  memcpy(o, lit, len);
  o += len;
  *o++ = '"';
  *o++ = ':';
  return o;
}
#define KEY_AT(o, n, lit) key_at((o), (n), (lit), sizeof(lit) - 1)

static inline uint64_t val_of(const msg *m, unsigned no) { return HAS(m, no) ? m->f[no].v : 0; }

/* A timestamp, quoted (room for 26 at o). A request's times share their digits above
 * the last 8 (they change every 100 ms), so those are kept from the last one. */
static char *time_at(wctx *w, char *o, uint64_t v) {
  uint64_t hi = v / 100000000;
  *o++ = '"';
  if (hi == 0) {
    o = ss__jw_u64_at(o, v);
  } else {
    if (hi != w->t_hi) {  /* at most 12 digits: 2^64 / 10^8 < 10^12 */
      w->t_hi = hi;
      w->t_len = (uint8_t)(ss__jw_u64_at(w->t_digits, hi) - w->t_digits);
    }
    memcpy(o, w->t_digits, 16);
    o += w->t_len;
    ss__jw_digits8(o, (uint32_t)(v - hi * 100000000));
    o += 8;
  }
  *o++ = '"';
  return o;
}

static inline char *id_at(char *o, const msg *m, unsigned no) {
  *o++ = '"';
  o = ss__jw_hex_at(o, m->f[no].p, (size_t)m->f[no].v);
  *o++ = '"';
  return o;
}

/* Span m's fields before its attributes; e: its SQL edit, or NULL. *n as for ss__jw_key. */
static void span_head(wctx *w, int *n, const msg *m, const ss__sql_edit *e) {
  ss__buf *b = w->b;
  uint64_t v;
  ss__strv name = {(const char *)m->f[5].p, (size_t)val_of(m, 5)};
  if (e && e->name.p) name = e->name;
  size_t idl = (size_t)(val_of(m, 1) + val_of(m, 2) + val_of(m, 4)), tsl = (size_t)val_of(m, 3);
  char *o = ss__buf_room(b, 256 + 2 * idl + 6 * (tsl + name.n)), *start = o;
  if (o == NULL) return;
  if (val_of(m, 1)) o = id_at(KEY_AT(o, n, "traceId"), m, 1);
  if (val_of(m, 2)) o = id_at(KEY_AT(o, n, "spanId"), m, 2);
  if (tsl) o = ss__jw_str_at(KEY_AT(o, n, "traceState"), (const char *)m->f[3].p, tsl);
  if (val_of(m, 4)) o = id_at(KEY_AT(o, n, "parentSpanId"), m, 4);
  if ((v = (uint32_t)val_of(m, 16)) != 0) o = ss__jw_u64_at(KEY_AT(o, n, "flags"), v);
  if (name.n) o = ss__jw_str_at(KEY_AT(o, n, "name"), name.p, name.n);
  if ((v = (uint32_t)val_of(m, 6)) != 0) o = ss__jw_u64_at(KEY_AT(o, n, "kind"), v);
  if ((v = val_of(m, 7)) != 0) o = time_at(w, KEY_AT(o, n, "startTimeUnixNano"), v);
  if ((v = val_of(m, 8)) != 0) o = time_at(w, KEY_AT(o, n, "endTimeUnixNano"), v);
  b->len += (size_t)(o - start);
}

/* Writes (or with w->b NULL checks) the message p[0..len) as d says; 0 or DECLINE. */
static int write_msg(wctx *w, const uint8_t *p, size_t len, const jmsg *d) {
  ss__buf *b = w->b;
  msg m;
  int n = 0;
  if ((d->role == R_SPAN ? index_span(&m, p, len) : index_msg(&m, p, len, d->shape)) != 0)
    return DECLINE;
  if (d->role == R_RESOURCE && HAS(&m, 3)) return DECLINE; /* entity_refs */
  ss__sql_edit e;
  ss__sql_in in;
  int edited = 0, hit = 0;
  run_ref run = {NULL, 0};
  if (d->role == R_SPAN) {
    w->info->spans++;
    if (bad_ids(&m)) w->info->bad_ids++;
    if (m.run_end) hit = run_find(w, &m, &run);
    if (w->plan && b && HAS(&m, 9)) {  /* a list found says whether it holds a statement */
      int text = 0;
      if (hit && (run.s->tag & FX_IN)) run_in(run.s, &m, &in), text = 1;
      else if (!hit || (run.s->tag & FX_SQL)) text = sql_read(&m, &in);
      if (text) edited = w->plan(&in, &e);
    }
  }
  if (b) ss__buf_putc(b, '{');
  const jfield *f = d->f;
  if (d->role == R_SPAN && b) {  /* (edited only then) */
    span_head(w, &n, &m, edited ? &e : NULL);
    f += SPAN_HEAD;
  }
  for (; f->key; f++) {
    if (f->kind < J_ATTRS) {
      if (b) scalar_field(b, &n, f, &m);
      continue;
    }
    if (!HAS(&m, f->no)) continue;
    if (b) ss__jw_key(b, &n, f->key, f->kl);
    if (edited && f->kind == J_ATTRS) {
      if (run_edited(w, &m, &e, &in, &run, hit) != 0) return DECLINE;
    } else if (f->kind == J_ATTRS) {
      if ((d->role == R_SPAN && m.run_end ? run_write(w, &m, f->level, &run, hit)
                                          : key_values(w, &m, f->no, 0, f->level)) != 0)
        return DECLINE;
    } else if (f->kind == J_MSG) {
      if (write_msg(w, m.f[f->no].p, (size_t)m.f[f->no].v, f->sub) != 0) return DECLINE;
    } else { /* J_LIST */
      const uint8_t *q = m.f[f->no].p, *e;
      size_t el, i = 0;
      for (uint64_t left = m.f[f->no].v; left && (e = next_of(&q, m.end, f->no, &el)); left--) {
        if (b) ss__buf_putc(b, i++ ? ',' : '[');
        if (write_msg(w, e, el, f->sub) != 0) return DECLINE;
      }
      if (b) ss__buf_putc(b, ']');
    }
  }
  if (b) ss__buf_putc(b, '}');
  return 0;
}

/* Each ResourceSpans of the request q: 0 or DECLINE. */
static int each_resource_spans(wctx *w, const msg *q) {
  const uint8_t *it = q->f[1].p, *e;
  size_t el, i = 0;
  if (!HAS(q, 1)) return 0;
  for (uint64_t left = q->f[1].v; left && (e = next_of(&it, q->end, 1, &el)); left--) {
    if (w->b && i++) ss__buf_putc(w->b, ',');
    if (write_msg(w, e, el, &J_RSPANS) != 0) return DECLINE;
  }
  return 0;
}

int ss__wire_traces_check(const uint8_t *p, size_t len, ss__wire_info *info) {
  wctx w = {.b = NULL, .info = info};
  msg q;
  memset(info, 0, sizeof *info);
  if (index_msg(&q, p, len, &REQ) != 0) return DECLINE;
  return each_resource_spans(&w, &q);
}

int ss__wire_traces_json(const uint8_t *p, size_t len, ss__buf *out, ss__wire_info *info) {
  return ss__wire_traces_json_sql(p, len, out, info, NULL);
}

int ss__wire_traces_json_sql(const uint8_t *p, size_t len, ss__buf *out, ss__wire_info *info,
                             ss__sql_planner plan) {
  size_t start = out->len;
  wctx w = {.b = out, .info = info, .plan = plan};
  msg q;
  memset(info, 0, sizeof *info);
  if (index_msg(&q, p, len, &REQ) != 0) return DECLINE;
  SS_BUF_LIT(out, "{\"resourceSpans\":[");
  if (each_resource_spans(&w, &q) != 0) {
    out->len = start;
    return DECLINE;
  }
  SS_BUF_LIT(out, "]}\n");
  if (ss__buf_error(out) == 0) return 0;
  out->len = start;
  return -ENOMEM;
}
