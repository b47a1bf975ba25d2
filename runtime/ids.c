/* ids.c - trace/span ids, hex and the W3C traceparent header (see ids.h).
 *
 * Each thread draws from a SplittableRandom-style sequence (Steele, Lea and Flood, 2014):
 * a counter that advances by the thread's own odd gamma, each value through splitmix64's
 * finalizer (a bijection: a thread never repeats a value in 2^64 draws). Counter start and
 * gamma come from splitmix64(seed ^ a per-thread counter), so threads walk different
 * sequences. A draw claims its counter values with one instruction on x86-64 (xadd on the
 * thread's own word), so a signal handler that draws ids meanwhile takes other values.
 *
 * The process-wide seed changes only in ss__ids_reseed, which also bumps `gen`. A thread
 * whose ss__self.rng_gen differs from `gen` reseeds from the new seed, so a fork child
 * never repeats its parent's ids. A fork child reseeds at its first id, not in its fork
 * handler (a child that makes no span pays no getrandom): its handler sets `gen` to 0 and
 * keeps the old value in `gen_floor`, which the next gen exceeds. */
#include "runtime/ids.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "runtime/span.h"
#include "runtime/sys.h"

static _Atomic uint64_t seed;
static _Atomic uint32_t gen;             /* 0: never seeded (or not since a fork) */
static _Atomic uint32_t gen_floor;       /* gen before the fork: the next one is above */
static _Atomic uint64_t thread_counter;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* splitmix64's finalizer (Stafford's Mix13): a bijection of 64-bit words. */
static inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* Entropy when getrandom is unavailable (old kernel, seccomp, early boot): not good
 * randomness, but distinct per process and per call, which is what ids need. */
static uint64_t fallback_entropy(void) {
  struct timespec a, b;
  uint64_t x;
  int local;

  clock_gettime(CLOCK_REALTIME, &a);
  clock_gettime(CLOCK_MONOTONIC, &b);
  x = (uint64_t)a.tv_sec * 1000000000u + (uint64_t)a.tv_nsec;
  x ^= ((uint64_t)b.tv_nsec << 32) ^ (uint64_t)b.tv_sec;
  x ^= (uint64_t)ss__sys_getpid() << 40;
  x ^= (uint64_t)(uintptr_t)&local ^ ((uint64_t)(uintptr_t)&seed << 17);
  return splitmix64(&x);
}

void ss__ids_reseed(void) {
  uint64_t s;
  ssize_t n;
  int saved_errno = errno;

  do
    n = ss__sys_getrandom(&s, sizeof(s), GRND_NONBLOCK);
  while (n < 0 && errno == EINTR);
  if (n != (ssize_t)sizeof(s))
    s = fallback_entropy();
  errno = saved_errno;
  atomic_store_explicit(&seed, s, memory_order_relaxed);
  /* Release: a thread that sees the new gen also sees the new seed. Above the floor (no
   * thread's rng_gen from before a fork may match it); skip 0. */
  uint32_t g = atomic_load_explicit(&gen, memory_order_relaxed), want;
  do {
    uint32_t floor = atomic_load_explicit(&gen_floor, memory_order_relaxed);
    want = (g > floor ? g : floor) + 1;
    if (want == 0) want = 1;
  } while (!atomic_compare_exchange_weak_explicit(&gen, &g, want, memory_order_release,
                                                  memory_order_relaxed));
}

SS_FORK_TEXT void ss__ids_atfork_child(void) {
  uint32_t g = atomic_load_explicit(&gen, memory_order_relaxed);
  if (g == 0) return;
  atomic_store_explicit(&gen_floor, g, memory_order_relaxed);
  atomic_store_explicit(&gen, 0, memory_order_release);
}

/* The thread's sequence: rng[0] its counter, rng[1] its gamma (odd, with enough bit
 * changes to spread consecutive counters, as SplittableRandom's mixGamma). */
__attribute__((noinline, cold)) static void thread_seed(uint32_t g) {
  uint64_t x = atomic_load_explicit(&seed, memory_order_relaxed) ^
               atomic_fetch_add_explicit(&thread_counter, 1, memory_order_relaxed);
  uint64_t start = splitmix64(&x), gamma = splitmix64(&x) | 1;
  if (__builtin_popcountll(gamma ^ (gamma >> 1)) < 24) gamma ^= 0xaaaaaaaaaaaaaaaaULL;
  ss__self.rng[0] = start;
  ss__self.rng[1] = gamma;
  ss__self.rng_gen = g;
}

/* Claims n draws of this thread's sequence (add = n * gamma): the counter before them. */
static inline __attribute__((always_inline)) uint64_t claim(uint64_t add) {
#if defined(__x86_64__)
  /* One instruction: a signal handler runs before or after it, never in between. */
  __asm__ volatile("xaddq %0, %1" : "+r"(add), "+m"(ss__self.rng[0]));
  return add;
#else
  return __atomic_fetch_add(&ss__self.rng[0], add, __ATOMIC_RELAXED);
#endif
}

/* The thread's generator, seeded for the current generation first when it is not. */
static inline __attribute__((always_inline)) void seeded(void) {
  uint32_t g = atomic_load_explicit(&gen, memory_order_acquire);

  if (__builtin_expect(g == 0, 0)) {
    /* The process's first id (the shim seeds nothing at start, nor does a tool): seed
     * here; later callers see gen != 0. */
    ss__ids_reseed();
    g = atomic_load_explicit(&gen, memory_order_acquire);
  }
  if (__builtin_expect(ss__self.rng_gen != g, 0)) thread_seed(g);
}

static inline __attribute__((always_inline)) uint64_t next64(void) {
  seeded();
  uint64_t gamma = ss__self.rng[1];
  return mix64(claim(gamma) + gamma);
}

/* Big-endian store (ids are bytes; the value is random either way, but ss__ratio_keep
 * reads the trace id's low half big-endian, as the spec's TraceIdRatioBased does). */
static void put64(uint8_t *p, uint64_t v) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

/* ss__ids_new when the thread's generator must be (re)seeded first, or a draw was zero. */
__attribute__((noinline, cold)) static void ids_slow(uint8_t trace[16], uint8_t span[8]) {
  if (trace) ss__trace_id_new(trace);
  ss__span_id_new(span);
}

void ss__ids_new(uint8_t trace[16], uint8_t span[8]) {
  /* The fast path: a thread seeded for the current generation (gen 0 never matches: it
   * means unseeded, or a fork child not reseeded yet) claims its three (or one) counter
   * values at once. */
  uint32_t g = atomic_load_explicit(&gen, memory_order_acquire);
  if (__builtin_expect(ss__self.rng_gen != g || g == 0, 0)) {
    ids_slow(trace, span);
    return;
  }
  uint64_t gamma = ss__self.rng[1];
  uint64_t c = claim(trace ? 3 * gamma : gamma);
  uint64_t v = mix64(c + gamma);
  if (trace) {
    uint64_t hi = v, lo = mix64(c + 2 * gamma);
    v = mix64(c + 3 * gamma);
    if (__builtin_expect((hi | lo) == 0 || v == 0, 0)) {
      ids_slow(trace, span); /* never an all-zero id: draw again */
      return;
    }
    put64(trace, hi);
    put64(trace + 8, lo);
  } else if (__builtin_expect(v == 0, 0)) {
    ids_slow(NULL, span);
    return;
  }
  put64(span, v);
}

void ss__trace_id_new(uint8_t id[16]) {
  uint64_t hi, lo;

  do {
    hi = next64();
    lo = next64();
  } while ((hi | lo) == 0);
  put64(id, hi);
  put64(id + 8, lo);
}

void ss__span_id_new(uint8_t id[8]) {
  uint64_t v;

  do
    v = next64();
  while (v == 0);
  put64(id, v);
}

int ss__id_is_zero(const uint8_t *id, size_t n) {
  uint64_t acc = 0, w;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) { /* ids are 8 or 16 bytes: a word at a time */
    memcpy(&w, id + i, 8);
    acc |= w;
  }
  for (; i < n; i++) acc |= id[i];
  return acc == 0;
}

/* The two hex digits of every byte value: one 2-byte copy per byte (a traceparent is 25
 * bytes, formatted for every injected request). */
#define HEX2(b) "0123456789abcdef"[(b) >> 4], "0123456789abcdef"[(b) & 15]
#define HEX2_ROW(r)                                                                       \
  HEX2(r + 0), HEX2(r + 1), HEX2(r + 2), HEX2(r + 3), HEX2(r + 4), HEX2(r + 5),           \
      HEX2(r + 6), HEX2(r + 7), HEX2(r + 8), HEX2(r + 9), HEX2(r + 10), HEX2(r + 11),     \
      HEX2(r + 12), HEX2(r + 13), HEX2(r + 14), HEX2(r + 15)
static const char hex2[512] = {
    HEX2_ROW(0x00), HEX2_ROW(0x10), HEX2_ROW(0x20), HEX2_ROW(0x30),
    HEX2_ROW(0x40), HEX2_ROW(0x50), HEX2_ROW(0x60), HEX2_ROW(0x70),
    HEX2_ROW(0x80), HEX2_ROW(0x90), HEX2_ROW(0xa0), HEX2_ROW(0xb0),
    HEX2_ROW(0xc0), HEX2_ROW(0xd0), HEX2_ROW(0xe0), HEX2_ROW(0xf0)};

void ss__hex_encode(const uint8_t *in, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) memcpy(out + 2 * i, hex2 + 2 * in[i], 2);
}

static int hexval(char c, int lower_only) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (!lower_only && c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static int decode(const char *in, size_t n, uint8_t *out, int lower_only) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(in[2 * i], lower_only), lo = hexval(in[2 * i + 1], lower_only);
    if (hi < 0 || lo < 0)
      return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

int ss__hex_decode(const char *in, size_t n, uint8_t *out) {
  return decode(in, n, out, 0);
}

static int blank(char c) {
  return c == ' ' || c == '\t';
}

/* W3C Trace Context, "traceparent Header Field Values" and "Versioning of traceparent":
 * every field is lower-case hex (HEXDIGLC); version ff is invalid; version 00 is exactly
 * 55 chars; a later version is parsed as 00 when it has at least 55 chars and, if longer,
 * a '-' right after the flags (the rest belongs to that version). */
int ss__traceparent_parse(const char *s, size_t len, ss__ctx *out) {
  uint8_t ver, flags;
  ss__ctx c = {0};

  if (s == NULL)
    return -1;
  while (len > 0 && blank(s[0]))
    s++, len--;
  while (len > 0 && blank(s[len - 1]))
    len--;
  if (len < SS_TRACEPARENT_LEN || decode(s, 1, &ver, 1) != 0 || ver == 0xff)
    return -1;
  if (ver == 0 ? len != SS_TRACEPARENT_LEN
               : len > SS_TRACEPARENT_LEN && s[SS_TRACEPARENT_LEN] != '-')
    return -1;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-')
    return -1;
  memset(&c, 0, sizeof(c));
  if (decode(s + 3, 16, c.trace_id, 1) != 0 || decode(s + 36, 8, c.span_id, 1) != 0 ||
      decode(s + 53, 1, &flags, 1) != 0)
    return -1;
  if (ss__id_is_zero(c.trace_id, 16) || ss__id_is_zero(c.span_id, 8))
    return -1;
  /* Keep the flags we know (sampled, and Level 2's random); the rest are reserved and
   * must be sent as zero. */
  c.flags = flags & 0x03;
  c.valid = 1;
  *out = c;
  return 0;
}

void ss__traceparent_format(const ss__ctx *c, char out[SS_TRACEPARENT_LEN + 1]) {
  memcpy(out, "00-", 3);
  ss__hex_encode(c->trace_id, 16, out + 3);
  out[35] = '-';
  ss__hex_encode(c->span_id, 8, out + 36);
  out[52] = '-';
  ss__hex_encode(&c->flags, 1, out + 53);
  out[SS_TRACEPARENT_LEN] = '\0';
}

uint64_t ss__ratio_bound(double ratio) {
  if (ratio >= 1.0) return UINT64_MAX;
  if (!(ratio > 0.0)) return 0; /* also NaN */
  return (uint64_t)(ratio * 18446744073709551616.0);
}

int ss__ratio_keep(uint64_t bound, const uint8_t trace_id[16]) {
  if (bound == UINT64_MAX) return 1;
  uint64_t x = 0;
  for (int i = 8; i < 16; i++) x = (x << 8) | trace_id[i];
  return x < bound;
}
