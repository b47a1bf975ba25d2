/* otlp.c - OTLP protobuf written by hand into reused buffers; see otlp.h.
 *
 * Wire format (protobuf encoding spec): a field is a varint tag (number << 3 | wire type)
 * then its value: varint, 8 bytes (fixed64/double), 4 bytes (fixed32) or a varint length
 * and that many bytes (strings, bytes, messages). A message's length comes before it, so:
 *   - a KeyValue/AnyValue is sized first (its strings' UTF-8-fixed lengths are computed
 *     once and reused for the copy);
 *   - a span, event, status, log record or array is written after a 2-byte hole for its
 *     length, and moved by the few bytes needed when the length takes 1 or 3+ bytes (a
 *     span of 128..16383 bytes, the usual case, is never moved);
 *   - the request's envelope (Request → ResourceSpans → {Resource, ScopeSpans → {Scope,
 *     spans}}) is written last, into the room kept in front of the items.
 * Space is reserved once per item from an upper bound, so the writers below never check
 * bounds themselves. */
#include "runtime/otlp.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/bytes.h"
#include "runtime/ids.h"
#include "runtime/resource.h"
#include "runtime/utf8.h"

/* Wire types. */
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_I32 5
#define TAG(field, wt) (((unsigned)(field) << 3) | (wt))

/* Span.flags bits (trace.proto SpanFlags). */
#define FLAGS_TRACE_MASK 0xffu
#define FLAGS_HAS_IS_REMOTE 0x100u

#define HOLE 2 /* bytes left for a message length written afterwards */
/* What items leave free in a fixed buffer for ss__otlp_finish (two schema URLs of up to
 * 256 bytes). */
#define FIXED_FINISH_ROOM (2 * (16 + 3 * 256))

/* ---- buffer ---- */

void ss__pb_reset(ss__pb *b) {
  b->len = 0;
  b->failed = 0;
}

void ss__pb_free(ss__pb *b) {
  if (b->fixed) {
    ss__pb_reset(b);
    return;
  }
  free(b->p);
  *b = (ss__pb){0};
}

int ss__pb_reserve(ss__pb *b, size_t n) {
  if (b->cap - b->len >= n) return 0;
  if (b->fixed) return -ENOBUFS;
  /* Small first: an exiting fork child's one request fits in a few hundred bytes, and
   * every new heap page is a fault; the exporter's buffers double to their size once. */
  size_t cap = b->cap ? b->cap : 512;
  while (cap - b->len < n) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (p == NULL) {
    b->failed = 1;
    return -ENOMEM;
  }
  b->p = p;
  b->cap = cap;
  return 0;
}

/* ---- scalars ---- */

static size_t vlen(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

static uint8_t *put_varint(uint8_t *o, uint64_t v) {
  while (v >= 0x80) {
    *o++ = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  *o++ = (uint8_t)v;
  return o;
}

static uint8_t *put_tag(uint8_t *o, unsigned field, unsigned wt) {
  return put_varint(o, TAG(field, wt));
}

static uint8_t *put_fixed64(uint8_t *o, unsigned field, uint64_t v) {
  o = put_tag(o, field, WT_I64);
  v = htole64(v);
  memcpy(o, &v, 8);
  return o + 8;
}

static uint8_t *put_fixed32(uint8_t *o, unsigned field, uint32_t v) {
  o = put_tag(o, field, WT_I32);
  v = htole32(v);
  memcpy(o, &v, 4);
  return o + 4;
}

static inline uint8_t *put_bytes(uint8_t *o, unsigned field, const void *p, size_t n) {
  o = put_tag(o, field, WT_LEN);
  o = put_varint(o, n);
  ss__copy_short(o, p, n); /* p may be NULL for an empty value */
  return o + n;
}

/* ---- strings: cut at NUL, invalid UTF-8 bytes become U+FFFD ---- */

typedef struct str {
  const char *s;
  size_t len;   /* input bytes used (up to an embedded NUL) */
  size_t out;   /* bytes written */
  int clean;    /* valid UTF-8 as is: copied with memcpy */
} str;

static int word_needs_look(uint64_t w) {
  /* a byte with the high bit set, or a zero byte */
  return ((w & 0x8080808080808080ull) | ((w - 0x0101010101010101ull) & ~w & 0x8080808080808080ull)) != 0;
}

/* 1 when none of the len bytes at s is NUL or has its high bit set: read a word at a
 * time, the last (partial) word by overlapping loads, so a short string costs no loop. */
static inline int plain_ascii(const char *s, size_t len) {
  size_t i = 0;
  for (; i + 8 <= len; i += 8)
    if (word_needs_look(ss__load64(s + i))) return 0;
  size_t t = len - i;
  if (t == 0) return 1;
  uint64_t w;
  if (len >= 8)
    w = ss__load64(s + len - 8);
  else if (t >= 4)
    w = ss__load32(s) | ss__load32(s + t - 4) << 32;
  else /* 1..3 bytes: the first, middle and last, padded with plain bytes */
    w = (uint64_t)(uint8_t)s[0] | (uint64_t)(uint8_t)s[t / 2] << 8 |
        (uint64_t)(uint8_t)s[t - 1] << 16 | 0x0101010101000000ull;
  return !word_needs_look(w);
}

/* str_of for a string that is not plain ASCII (or has a NUL): byte by byte. */
__attribute__((noinline)) static str str_of_slow(const char *s, size_t len) {
  str r = {s, 0, 0, 1};
  if (s == NULL) return r;
  size_t i = 0;
  while (i + 8 <= len) {
    uint64_t w;
    memcpy(&w, s + i, 8);
    if (word_needs_look(w)) break;
    i += 8;
  }
  if (i < len && len - i < 8) { /* the tail in one word, padded with a plain byte */
    uint64_t w = 0x0101010101010101ull;
    memcpy(&w, s + i, len - i);
    if (!word_needs_look(w)) i = len;
  }
  size_t bad = 0;
  const unsigned char *u = (const unsigned char *)s;
  while (i < len) {
    if (u[i] == 0) break;
    if (u[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = ss__utf8_seq(u + i, len - i);
    if (k == 0) {
      bad++;
      i++;
    } else {
      /* a NUL never sits inside a valid multi-byte sequence */
      i += k;
    }
  }
  r.len = i;
  r.out = i + 2 * bad;
  r.clean = bad == 0;
  return r;
}

/* Measures len bytes at s (NULL: none) as a string field's value. */
static inline str str_of(const char *s, size_t len) {
  if (s == NULL || plain_ascii(s, len)) return (str){s, s ? len : 0, s ? len : 0, 1};
  return str_of_slow(s, len);
}

static str cstr_of(const char *s) {
  return str_of(s, s ? strlen(s) : 0);
}

/* cstr_of for a string of c's kind (otlp.h): from the table when it was measured before.
 * c == NULL: measured every time. */
#define CONST_PROBES 4 /* slots a string may take after its own, when that one is used */

/* const_of when s is not in its own slot i: in one of the next few, else measured and
 * kept in the first free one (else in slot i). */
__attribute__((noinline)) static str const_miss(ss__otlp_consts *c, size_t i, const char *s) {
  size_t free_at = c->p[i] == NULL ? i : SIZE_MAX;
  for (size_t k = 1; k <= CONST_PROBES; k++) {
    size_t j = (i + k) % SS_OTLP_CONSTS;
    if (c->p[j] == s) return (str){s, c->len[j], c->len[j], 1};
    if (c->p[j] == NULL && free_at == SIZE_MAX) free_at = j;
  }
  str r = cstr_of(s);
  if (r.clean && r.len <= UINT32_MAX) {
    if (free_at == SIZE_MAX) free_at = i;
    c->p[free_at] = s;
    c->len[free_at] = (uint32_t)r.len;
  }
  return r;
}

static inline str const_of(ss__otlp_consts *c, const char *s) {
  if (c == NULL || s == NULL) return cstr_of(s);
  /* Fibonacci hashing of the address: its top 6 bits pick one of the 64 slots. */
  _Static_assert(SS_OTLP_CONSTS == 64, "the shift below picks 6 bits");
  size_t i = (size_t)(((uintptr_t)s * 0x9e3779b97f4a7c15ull) >> 58);
  if (c->p[i] == s) return (str){s, c->len[i], c->len[i], 1};
  /* The next slot inline too: where a second string of the same slot lands (which one
   * does depends on the link's layout of the shim's constants). */
  size_t j = (i + 1) % SS_OTLP_CONSTS;
  if (c->p[j] == s) return (str){s, c->len[j], c->len[j], 1};
  return const_miss(c, i, s);
}

/* put_str_body for a string with invalid UTF-8: each bad byte becomes U+FFFD. */
__attribute__((noinline)) static uint8_t *put_str_fixed(uint8_t *o, const str *v) {
  const unsigned char *u = (const unsigned char *)v->s;
  for (size_t i = 0; i < v->len;) {
    size_t k = u[i] < 0x80 ? 1 : ss__utf8_seq(u + i, v->len - i);
    if (k == 0) {
      memcpy(o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(o, u + i, k);
      o += k;
      i += k;
    }
  }
  return o;
}

static inline uint8_t *put_str_body(uint8_t *o, const str *v) {
  if (__builtin_expect(v->clean, 1)) {
    ss__copy_short(o, v->s, v->len);
    return o + v->len;
  }
  return put_str_fixed(o, v);
}

static size_t str_field_size(unsigned field, const str *v) {
  return vlen(TAG(field, WT_LEN)) + vlen(v->out) + v->out;
}

/* A string field; empty strings are left out (proto3) unless `always`. */
static inline uint8_t *put_str(uint8_t *o, unsigned field, const str *v, int always) {
  if (v->out == 0 && !always) return o;
  o = put_tag(o, field, WT_LEN);
  o = put_varint(o, v->out);
  return put_str_body(o, v);
}

/* Upper bound of a string field's size for len input bytes. */
static size_t str_bound(size_t len) {
  return 16 + 3 * len;
}

/* ---- messages written after a hole for their length ---- */

static uint8_t *open_msg(uint8_t *o, unsigned field) {
  o = put_tag(o, field, WT_LEN);
  return o + HOLE;
}

/* body is where open_msg returned, end where the message ends; returns the new end. */
static uint8_t *close_msg(uint8_t *body, uint8_t *end) {
  size_t n = (size_t)(end - body), vl = vlen(n);
  uint8_t *lenp = body - HOLE;
  if (vl != HOLE) memmove(lenp + vl, body, n);
  put_varint(lenp, n);
  return lenp + vl + n;
}

/* ---- attributes ---- */

static size_t strarr_count(const char *items, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (items[i] == 0) n++;
  if (len > 0 && items[len - 1] != 0) n++; /* tolerate a missing final NUL */
  return n;
}

/* An ArrayValue of strings, as AnyValue.array_value (field 5). */
static uint8_t *put_strarr(uint8_t *o, const char *items, size_t len) {
  uint8_t *arr = open_msg(o, 5);
  o = arr;
  for (size_t i = 0; i < len;) {
    const char *end = memchr(items + i, 0, len - i);
    size_t l = end ? (size_t)(end - (items + i)) : len - i;
    str v = str_of(items + i, l);
    size_t av = str_field_size(1, &v);
    o = put_tag(o, 1, WT_LEN);
    o = put_varint(o, av);
    o = put_str(o, 1, &v, 1);
    i += l + 1;
  }
  return close_msg(arr, o);
}

static size_t any_bound(const ss__attr *a) {
  if (a->type == SS_ATTR_STR) return str_bound(a->len);
  if (a->type == SS_ATTR_STRARR) return 16 + strarr_count(a->v.s, a->len) * 16 + 3 * a->len;
  return 16;
}

/* AnyValue contents of a; for strings, v holds the measured value. Unknown types (and a
 * stack that was not taken out) give an empty AnyValue rather than failing the batch. */
static size_t any_size(const ss__attr *a, const str *v) {
  switch (a->type) {
  case SS_ATTR_STR: return str_field_size(1, v);
  case SS_ATTR_INT: return 1 + vlen((uint64_t)a->v.i);
  case SS_ATTR_BOOL: return 2;
  case SS_ATTR_DOUBLE: return 9;
  default: return 0;
  }
}

static uint8_t *put_any(uint8_t *o, const ss__attr *a, const str *v) {
  switch (a->type) {
  case SS_ATTR_STR: return put_str(o, 1, v, 1);
  case SS_ATTR_INT:
    o = put_tag(o, 3, WT_VARINT);
    return put_varint(o, (uint64_t)a->v.i);
  case SS_ATTR_BOOL:
    o = put_tag(o, 2, WT_VARINT);
    *o++ = a->v.i != 0;
    return o;
  case SS_ATTR_DOUBLE: {
    uint64_t bits;
    memcpy(&bits, &a->v.d, 8);
    return put_fixed64(o, 4, bits);
  }
  default: return o;
  }
}

/* ---- the KeyValue cache (otlp.h) ---- */

#define KV_VAL_MAX 24 /* value bytes a cached string may have */
struct ss__otlp_kv {
  const char *key;    /* NULL: empty */
  uint64_t val[3];    /* the value: its bytes zero-padded, or the number's bits */
  uint8_t type, vlen; /* SS_ATTR_*, string length */
  uint8_t n;          /* bytes of enc; 0: seen once, not encoded yet */
  uint8_t enc[SS_OTLP_KV_BYTES - 8 - 24 - 3]; /* the KeyValue after its field tag */
};
_Static_assert(sizeof(struct ss__otlp_kv) == SS_OTLP_KV_BYTES, "otlp.h's slot size");

/* The value of a as the cache keys it (v: three words, zero-padded), or 0 when a is not
 * cached (arrays, longer strings). */
static inline __attribute__((always_inline)) int kv_value(const ss__attr *a, uint64_t v[3]) {
  v[0] = v[1] = v[2] = 0;
  if (__builtin_expect(a->type == SS_ATTR_STR, 1)) {
    size_t n = a->len;
    if (n > KV_VAL_MAX) return 0;
    if (n > 16) {
      memcpy(v, a->v.s, 16);
      memcpy((char *)v + n - 8, a->v.s + n - 8, 8);
    } else {
      ss__copy_short(v, a->v.s, n);
    }
    return 1;
  }
  switch (a->type) {
  case SS_ATTR_INT:
  case SS_ATTR_DOUBLE: memcpy(&v[0], &a->v, 8); return 1;
  case SS_ATTR_BOOL: v[0] = a->v.i != 0; return 1;
  default: return 0;
  }
}

static inline size_t kv_slot(const char *key, const uint64_t v[3], uint8_t type) {
  _Static_assert(SS_OTLP_KVS == 256, "the shift below picks 8 bits");
  uint64_t h =
      (v[0] * 0xbf58476d1ce4e5b9ull) ^ (v[1] + (v[2] << 1) + type) ^ (uint64_t)(uintptr_t)key;
  return (size_t)((h * 0x9e3779b97f4a7c15ull) >> 56);
}

__attribute__((noinline)) static uint8_t *put_kv_encode(uint8_t *o, unsigned field,
                                                        const ss__attr *a, ss__otlp_consts *c);

/* put_kv through the cache: NULL when a is not cacheable (the caller encodes it). */
static inline __attribute__((always_inline)) uint8_t *
put_kv_cached(uint8_t *o, unsigned field, const ss__attr *a, ss__otlp_consts *c) {
  uint64_t v[3];
  if (!kv_value(a, v)) return NULL;
  ss__otlp_kv *k = &c->kv[kv_slot(a->key, v, a->type)];
  uint8_t vlen = a->type == SS_ATTR_STR ? (uint8_t)a->len : 0;
  if (k->key == a->key && k->type == a->type && k->vlen == vlen && k->val[0] == v[0] &&
      k->val[1] == v[1] && k->val[2] == v[2]) {
    if (__builtin_expect(k->n != 0, 1)) { /* a hit: the tag, then the bytes kept */
      *o++ = (uint8_t)TAG(field, WT_LEN); /* fields 3, 6, 9: one byte */
      size_t n = k->n;
      if (n > 64) {
        memcpy(o, k->enc, n); /* a long key (two 32-byte copies would leave a gap) */
      } else if (n > 32) {
        memcpy(o, k->enc, 32);
        memcpy(o + n - 32, k->enc + n - 32, 32);
      } else if (n > 16) {
        memcpy(o, k->enc, 16);
        memcpy(o + n - 16, k->enc + n - 16, 16);
      } else {
        ss__copy_short(o, k->enc, n);
      }
      return o + n;
    }
    /* Its second sighting: encoded as usual, and kept. */
    uint8_t *end = put_kv_encode(o, field, a, c);
    size_t n = (size_t)(end - o) - 1;
    if (n <= sizeof k->enc) {
      memcpy(k->enc, o + 1, n);
      k->n = (uint8_t)n;
    }
    return end;
  }
  k->key = a->key; /* its first sighting here: remembered, not encoded twice */
  k->type = a->type;
  k->vlen = vlen;
  memcpy(k->val, v, sizeof v);
  k->n = 0;
  return put_kv_encode(o, field, a, c);
}

/* A KeyValue as field `field` of the enclosing message, without the cache. */
__attribute__((noinline)) static uint8_t *put_kv_encode(uint8_t *o, unsigned field,
                                                        const ss__attr *a, ss__otlp_consts *c) {
  str key = const_of(c, a->key);
  if (a->type == SS_ATTR_STRARR) { /* sized afterwards: nested twice */
    uint8_t *kv = open_msg(o, field);
    o = put_str(kv, 1, &key, 0);
    uint8_t *av = open_msg(o, 2);
    o = put_strarr(av, a->v.s, a->len);
    o = close_msg(av, o);
    return close_msg(kv, o);
  }
  str v = {0};
  if (a->type == SS_ATTR_STR) v = str_of(a->v.s, a->len);
  size_t avs = any_size(a, &v);
  size_t kvs = (key.out ? str_field_size(1, &key) : 0) + 1 + vlen(avs) + avs;
  o = put_tag(o, field, WT_LEN);
  o = put_varint(o, kvs);
  o = put_str(o, 1, &key, 0);
  o = put_tag(o, 2, WT_LEN);
  o = put_varint(o, avs);
  return put_any(o, a, &v);
}

static size_t kv_bound(const ss__attr *a, ss__otlp_consts *c) {
  return 24 + str_bound(const_of(c, a->key).len) + any_bound(a);
}

static size_t attrs_bound(const ss__attr *a, size_t n, ss__otlp_consts *c) {
  size_t b = 0;
  for (size_t i = 0; i < n; i++) b += kv_bound(&a[i], c);
  return b;
}

static uint8_t *put_attrs(uint8_t *o, unsigned field, const ss__attr *a, size_t n,
                          ss__otlp_consts *c) {
  if (c != NULL && c->kv != NULL && field < 16) { /* the cache's loop, its checks made once */
    for (size_t i = 0; i < n; i++) {
      uint8_t *end = put_kv_cached(o, field, &a[i], c);
      o = end != NULL ? end : put_kv_encode(o, field, &a[i], c);
    }
    return o;
  }
  for (size_t i = 0; i < n; i++) o = put_kv_encode(o, field, &a[i], c);
  return o;
}

/* ---- spans ---- */

/* ---- the attribute-list cache (otlp.h) ---- */

#define LIST_MAX 8
#define LIST_ENC 480
struct ss__otlp_list {
  uint32_t n;       /* attributes; 0: empty */
  uint32_t enc_len; /* bytes of enc; 0: seen once, not kept yet */
  uint64_t hash;
  struct {
    const char *key;
    uint64_t val[3]; /* as kv_value gives them */
    uint32_t tv;     /* type | string length << 8 */
  } a[LIST_MAX];
  uint8_t enc[LIST_ENC]; /* the span's KeyValues, field 9, tags included */
};
_Static_assert(sizeof(struct ss__otlp_list) <= SS_OTLP_LIST_BYTES, "otlp.h's list size");

/* A span's attribute list as the list cache sees it: its values, hash and slot. */
typedef struct list_key {
  size_t n;
  uint64_t hash; /* set once hashed (a miss of the last list) */
  uint64_t val[LIST_MAX][3];
  uint32_t tv[LIST_MAX];
  ss__otlp_list *slot;
  int hit; /* slot holds this list, written: enc_len bytes to copy */
} list_key;

/* 1 when l holds the list of s that k describes. */
static inline int list_same(const ss__otlp_list *l, const ss__span *s, const list_key *k) {
  if (l->n != k->n) return 0;
  for (size_t i = 0; i < k->n; i++)
    if (l->a[i].key != s->attrs[i].key || l->a[i].tv != k->tv[i] ||
        l->a[i].val[0] != k->val[i][0] || l->a[i].val[1] != k->val[i][1] ||
        l->a[i].val[2] != k->val[i][2])
      return 0;
  return 1;
}

/* Fills k for s's attributes; 0 when the list is not cacheable (too long, an attribute
 * the KeyValue cache does not keep, no cache). The slot of the last list looked up is
 * tried first (a run of the same span), then the list's own. */
static int list_find(ss__otlp_consts *c, const ss__span *s, list_key *k) {
  size_t n = s->n_attrs;
  if (c == NULL || c->lists == NULL || c->kv == NULL || n == 0 || n > LIST_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    const ss__attr *a = &s->attrs[i];
    if (!kv_value(a, k->val[i])) return 0;
    k->tv[i] = a->type | (a->type == SS_ATTR_STR ? a->len << 8 : 0);
  }
  k->n = n;
  ss__otlp_list *l = c->list_last;
  if (l != NULL && l->enc_len != 0 && list_same(l, s, k)) {
    k->hash = l->hash;
    k->slot = l;
    k->hit = 1;
    return 1;
  }
  uint64_t h = n;
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint64_t)(uintptr_t)s->attrs[i].key ^ k->tv[i] ^ k->val[i][0] ^ (k->val[i][1] << 1) ^
         (k->val[i][2] << 2)) *
        0x9e3779b97f4a7c15ull;
  _Static_assert(SS_OTLP_LISTS == 16, "the shift below picks 4 bits");
  l = &c->lists[h >> 60];
  c->list_last = l;
  k->hash = h;
  k->slot = l;
  k->hit = l->hash == h && l->enc_len != 0 && list_same(l, s, k);
  return 1;
}

/* After a miss, with the list written at [from, to): the slot remembers the list on its
 * first sighting there and keeps its bytes on the second. */
static void list_keep(const ss__span *s, const list_key *k, const uint8_t *from,
                      const uint8_t *to) {
  ss__otlp_list *l = k->slot;
  if (l->hash == k->hash && list_same(l, s, k)) {
    size_t len = (size_t)(to - from);
    if (len > 0 && len <= LIST_ENC) {
      memcpy(l->enc, from, len);
      l->enc_len = (uint32_t)len;
    }
    return;
  }
  l->n = (uint32_t)k->n;
  l->hash = k->hash;
  l->enc_len = 0;
  for (size_t i = 0; i < k->n; i++) {
    l->a[i].key = s->attrs[i].key;
    l->a[i].tv = k->tv[i];
    memcpy(l->a[i].val, k->val[i], sizeof l->a[i].val);
  }
}

/* lk: the span's attribute list in the list cache (NULL: none): a hit's size is known. */
static size_t span_bound(const ss__span *s, ss__otlp_consts *c, const list_key *lk) {
  size_t attrs = lk != NULL && lk->hit ? lk->slot->enc_len : attrs_bound(s->attrs, s->n_attrs, c);
  size_t b = 128 + str_bound(const_of(c, s->name).len) + str_bound(s->trace_state_len) + attrs +
             str_bound(s->status_message_len);
  for (size_t i = 0; i < s->n_events; i++)
    b += 32 + str_bound(const_of(c, s->events[i].name).len) +
         attrs_bound(s->events[i].attrs, s->events[i].n_attrs, c);
  return b;
}

static uint8_t *put_span(uint8_t *o, const ss__span *s, ss__otlp_consts *c, const list_key *lk) {
  uint64_t parent;
  memcpy(&parent, s->parent_id, 8);
  int root = parent == 0;
  uint8_t *sp = open_msg(o, 2); /* ScopeSpans.spans */
  o = put_bytes(sp, 1, s->trace_id, sizeof s->trace_id);
  o = put_bytes(o, 2, s->span_id, sizeof s->span_id);
  if (s->trace_state_len > 0) {
    str ts = str_of(s->trace_state, s->trace_state_len);
    o = put_str(o, 3, &ts, 0);
  }
  if (!root) o = put_bytes(o, 4, s->parent_id, sizeof s->parent_id);
  str name = const_of(c, s->name);
  o = put_str(o, 5, &name, 0);
  if (s->kind) {
    o = put_tag(o, 6, WT_VARINT);
    o = put_varint(o, s->kind);
  }
  if (s->start_ns) o = put_fixed64(o, 7, s->start_ns);
  if (s->end_ns) o = put_fixed64(o, 8, s->end_ns);
  if (lk != NULL && lk->hit) {
    memcpy(o, lk->slot->enc, lk->slot->enc_len);
    o += lk->slot->enc_len;
  } else {
    uint8_t *from = o;
    o = put_attrs(o, 9, s->attrs, s->n_attrs, c);
    if (lk != NULL) list_keep(s, lk, from, o);
  }
  for (size_t i = 0; i < s->n_events; i++) {
    const ss__event *e = &s->events[i];
    uint8_t *ev = open_msg(o, 11);
    o = ev;
    if (e->time_ns) o = put_fixed64(o, 1, e->time_ns);
    str en = const_of(c, e->name);
    o = put_str(o, 2, &en, 0);
    o = put_attrs(o, 3, e->attrs, e->n_attrs, c);
    o = close_msg(ev, o);
  }
  if (s->status != SS_STATUS_UNSET || s->status_message_len != 0) {
    uint8_t *st = open_msg(o, 15);
    str msg = str_of(s->status_message, s->status_message_len);
    o = put_str(st, 2, &msg, 0);
    if (s->status) {
      o = put_tag(o, 3, WT_VARINT);
      o = put_varint(o, s->status);
    }
    o = close_msg(st, o);
  }
  /* A root span has no parent, so "the parent is remote" is known to be false; for a
   * child, ss__span does not say whether the parent came from TRACEPARENT (remote) or
   * from this thread (local), so the bit stays "unknown" as the spec allows. */
  uint32_t flags = (s->flags & FLAGS_TRACE_MASK) | (root ? FLAGS_HAS_IS_REMOTE : 0);
  if (flags) o = put_fixed32(o, 16, flags);
  return close_msg(sp, o);
}

/* ---- log records ---- */

static size_t log_bound(const ss__logrec *l) {
  return 160 + str_bound(l->event_name ? strlen(l->event_name) : 0) +
         str_bound(l->body ? strlen(l->body) : 0) + attrs_bound(l->attrs, l->n_attrs, NULL);
}

static uint8_t *put_log(uint8_t *o, const ss__logrec *l) {
  uint8_t *lr = open_msg(o, 2); /* ScopeLogs.log_records */
  o = lr;
  if (l->time_ns) o = put_fixed64(o, 1, l->time_ns);
  if (l->severity) {
    o = put_tag(o, 2, WT_VARINT);
    o = put_varint(o, (uint64_t)l->severity);
  }
  str sev = cstr_of(l->severity >= 17   ? "ERROR"
                    : l->severity >= 13 ? "WARN"
                    : l->severity >= 9  ? "INFO"
                                        : "DEBUG");
  o = put_str(o, 3, &sev, 0);
  if (l->body) {
    ss__attr b = {.key = "", .type = SS_ATTR_STR, .len = (uint32_t)strlen(l->body)};
    b.v.s = l->body;
    str v = str_of(b.v.s, b.len);
    size_t avs = any_size(&b, &v);
    o = put_tag(o, 5, WT_LEN);
    o = put_varint(o, avs);
    o = put_any(o, &b, &v);
  }
  o = put_attrs(o, 6, l->attrs, l->n_attrs, NULL);
  if (l->flags) o = put_fixed32(o, 8, l->flags);
  if (!ss__id_is_zero(l->trace_id, sizeof l->trace_id))
    o = put_bytes(o, 9, l->trace_id, sizeof l->trace_id);
  if (!ss__id_is_zero(l->span_id, sizeof l->span_id))
    o = put_bytes(o, 10, l->span_id, sizeof l->span_id);
  if (l->time_ns) o = put_fixed64(o, 11, l->time_ns);
  str en = cstr_of(l->event_name);
  o = put_str(o, 12, &en, 0);
  return close_msg(lr, o);
}

/* ---- the envelope ---- */

int ss__otlp_head_build(ss__otlp_head *h, const ss__resource *res, const ss__scope *scope,
                        const char *schema_url) {
  ss__pb_reset(&h->resource);
  ss__pb_reset(&h->scope);
  h->schema_url = schema_url;
  if (res && ss__pb_reserve(&h->resource, attrs_bound(res->attrs, res->n_attrs, NULL)) == 0) {
    uint8_t *o = put_attrs(h->resource.p, 1, res->attrs, res->n_attrs, NULL);
    h->resource.len = (size_t)(o - h->resource.p);
  } else if (res) {
    h->resource.failed = 1;
  }
  if (scope) {
    size_t b = 32 + str_bound(scope->name ? strlen(scope->name) : 0) +
               str_bound(scope->version ? strlen(scope->version) : 0) +
               attrs_bound(scope->attrs, scope->n_attrs, NULL);
    if (ss__pb_reserve(&h->scope, b) == 0) {
      str n = cstr_of(scope->name), v = cstr_of(scope->version);
      uint8_t *o = put_str(h->scope.p, 1, &n, 0);
      o = put_str(o, 2, &v, 0);
      o = put_attrs(o, 3, scope->attrs, scope->n_attrs, NULL);
      h->scope.len = (size_t)(o - h->scope.p);
    } else {
      h->scope.failed = 1;
    }
  }
  /* Request, ResourceSpans, Resource, ScopeSpans, Scope: a tag and a length each. */
  h->room = 5 * 6 + h->resource.len + h->scope.len;
  return h->resource.failed || h->scope.failed ? -ENOMEM : 0;
}

void ss__otlp_head_free(ss__otlp_head *h) {
  ss__pb_free(&h->resource);
  ss__pb_free(&h->scope);
}

void ss__otlp_begin(ss__otlp_req *q, const ss__otlp_head *h, int logs) {
  ss__pb_reset(&q->pb);
  q->n = 0;
  q->logs = logs;
  q->items_at = h->room;
  if (ss__pb_reserve(&q->pb, h->room) == 0) q->pb.len = h->room;
  else q->pb.failed = 1;
}

int ss__otlp_add_span(ss__otlp_req *q, const ss__span *s) {
  if (q->pb.failed) return -ENOMEM;
  list_key k;
  const list_key *lk = list_find(q->consts, s, &k) ? &k : NULL;
  int rc =
      ss__pb_reserve(&q->pb, span_bound(s, q->consts, lk) + (q->pb.fixed ? FIXED_FINISH_ROOM : 0));
  if (rc != 0) return rc;
  uint8_t *o = put_span(q->pb.p + q->pb.len, s, q->consts, lk);
  q->pb.len = (size_t)(o - q->pb.p);
  q->n++;
  return 0;
}

int ss__otlp_add_log(ss__otlp_req *q, const ss__logrec *l) {
  if (q->pb.failed) return -ENOMEM;
  int rc = ss__pb_reserve(&q->pb, log_bound(l) + (q->pb.fixed ? FIXED_FINISH_ROOM : 0));
  if (rc != 0) return rc;
  uint8_t *o = put_log(q->pb.p + q->pb.len, l);
  q->pb.len = (size_t)(o - q->pb.p);
  q->n++;
  return 0;
}

static size_t len_field_size(unsigned field, size_t n) {
  return vlen(TAG(field, WT_LEN)) + vlen(n) + n;
}

int ss__otlp_finish(ss__otlp_req *q, const ss__otlp_head *h, const uint8_t **body,
                    size_t *len) {
  str schema = cstr_of(h->schema_url);
  if (q->pb.failed || ss__pb_reserve(&q->pb, 2 * str_bound(schema.len)) != 0) return -ENOMEM;
  /* ScopeSpans.schema_url ends the items' message, ResourceSpans.schema_url comes after
   * it: both go at the end, in field order. */
  uint8_t *o = q->pb.p + q->pb.len;
  o = put_str(o, 3, &schema, 0);
  size_t scope_msg = (size_t)(o - q->pb.p) - q->items_at + len_field_size(1, h->scope.len);
  o = put_str(o, 3, &schema, 0);
  q->pb.len = (size_t)(o - q->pb.p);
  size_t rs_schema = schema.out ? str_field_size(3, &schema) : 0;
  size_t rs_msg = len_field_size(1, h->resource.len) + len_field_size(2, scope_msg) + rs_schema;
  size_t prefix = vlen(TAG(1, WT_LEN)) + vlen(rs_msg) + len_field_size(1, h->resource.len) +
                  vlen(TAG(2, WT_LEN)) + vlen(scope_msg) + len_field_size(1, h->scope.len);
  if (prefix > q->items_at) return -ENOMEM; /* head changed since begin */
  uint8_t *start = q->pb.p + q->items_at - prefix, *w = start;
  w = put_tag(w, 1, WT_LEN); /* resource_spans / resource_logs */
  w = put_varint(w, rs_msg);
  w = put_bytes(w, 1, h->resource.p, h->resource.len); /* resource */
  w = put_tag(w, 2, WT_LEN); /* scope_spans / scope_logs */
  w = put_varint(w, scope_msg);
  w = put_bytes(w, 1, h->scope.p, h->scope.len); /* scope */
  *body = start;
  *len = q->pb.len - (size_t)(start - q->pb.p);
  return 0;
}

/* ---- one-shot forms ---- */

static int one_shot(const ss__resource *res, const ss__scope *scope, int logs,
                    const void *items, size_t n, uint8_t **out, size_t *out_len) {
  ss__otlp_head h = {0};
  ss__otlp_req q = {0};
  const uint8_t *body;
  size_t len;
  int rc = ss__otlp_head_build(&h, res, scope, SS_SCHEMA_URL);
  if (rc == 0) {
    ss__otlp_begin(&q, &h, logs);
    for (size_t i = 0; i < n && rc == 0; i++)
      rc = logs ? ss__otlp_add_log(&q, (const ss__logrec *)items + i)
                : ss__otlp_add_span(&q, (const ss__span *)items + i);
  }
  if (rc == 0) rc = ss__otlp_finish(&q, &h, &body, &len);
  if (rc == 0) {
    *out = malloc(len ? len : 1);
    if (*out == NULL) rc = -ENOMEM;
    else {
      memcpy(*out, body, len);
      *out_len = len;
    }
  }
  ss__pb_free(&q.pb);
  ss__otlp_head_free(&h);
  return rc;
}

int ss__otlp_encode_traces(const ss__resource *res, const ss__scope *scope,
                           const ss__span *spans, size_t n, uint8_t **out, size_t *out_len) {
  return one_shot(res, scope, 0, spans, n, out, out_len);
}

int ss__otlp_encode_logs(const ss__resource *res, const ss__scope *scope,
                         const ss__logrec *logs, size_t n, uint8_t **out, size_t *out_len) {
  return one_shot(res, scope, 1, logs, n, out, out_len);
}
