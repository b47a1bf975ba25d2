/* ring.c - bounded lock-free MPSC ring of variable-length records (see ring.h).
 *
 * Positions (`head`, `tail`) count bytes ever reserved/released and never wrap in
 * practice; a position's offset in the buffer is pos & (cap - 1) and its lap is
 * pos >> cap_shift. Each record is preceded by an 8-byte slot header:
 *
 *   uint32 len     bytes reserved after the header (multiple of 8)
 *   uint32 state   0: not written; marker(lap) | BUSY: reserved; marker(lap): committed;
 *                  marker(lap) | PAD: padding up to the end of the buffer, skip it
 *
 * A record never straddles the end of the buffer: when it would, the producer reserves
 * the rest of the lap as padding together with the record, in the same CAS. It also
 * starts the next lap early, the same way, once past the first quarter of the buffer while
 * the backlog (head - tail) is at most half the offset (so at least an eighth of the ring
 * is free the moment the lap starts, and all of it once the consumer has taken that
 * backlog): a consumer that keeps up
 * then cycles through the first part of the buffer only, and the pages after it are never
 * touched (the resident memory follows the backlog, not the capacity). The capacity is
 * unchanged: a backlog that grows runs on into the rest of the buffer. Padding is never
 * written nor zeroed, so its pages stay untouched.
 *
 * The consumer zeroes every byte it releases. So every byte outside [tail, head) is zero
 * (fresh mmap pages are zero too), and a header the consumer reads at `tail` holds either
 * 0, a reservation, or what its producer published -- never a stale record's payload that
 * happens to look like a header. The lap marker is the second line of defence: a header
 * left behind by an earlier lap can never equal the marker the consumer expects now.
 *
 * Ordering: producers load `tail` with acquire before writing into the space the consumer
 * zeroed and released; they publish with a release store of `state`, which the consumer
 * loads with acquire. Nothing else needs to be ordered. */
#include "runtime/ring.h"
#include "runtime/sys.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

typedef struct slot {
  uint32_t len;
  _Atomic uint32_t state;
} slot;

#define HDR ((uint64_t)sizeof(slot))
#define PAD_BIT 0x80000000u
#define BUSY_BIT 0x40000000u
#define LAP_MOD 0x3fffffffu /* markers run 1..LAP_MOD: never 0, never touching flag bits */
#define MIN_CAP 4096u
#define MAX_CAP ((uint64_t)1 << 34) /* keeps SS_RING_MAX_RECORD within uint32 len */
/* Where a producer may start the next lap early (a quarter of the ring). */
#define EARLY_LAP(r) ((r)->cap / 4)

static uint32_t marker(const ss__ring *r, uint64_t pos) {
  return (uint32_t)((pos >> r->cap_shift) % LAP_MOD) + 1;
}

static slot *slot_at(const ss__ring *r, uint64_t pos) {
  return (slot *)(r->buf + (pos & (r->cap - 1)));
}

int ss__ring_init(ss__ring *r, size_t cap) {
  uint64_t c = MIN_CAP;
  unsigned shift = 12;
  void *p;

  if ((uint64_t)cap > MAX_CAP)
    return -EINVAL;
  while (c < cap) {
    c <<= 1;
    shift++;
  }
  p = mmap(NULL, c, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return -errno;
  memset(r, 0, sizeof(*r));
  atomic_init(&r->head, 0);
  atomic_init(&r->tail, 0);
  atomic_init(&r->dropped, 0);
  atomic_init(&r->committed, 0);
  r->buf = p;
  r->cap = c;
  r->cap_shift = shift;
  return 0;
}

static void *drop(ss__ring *r) {
  atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
  return NULL;
}

void *ss__ring_reserve(ss__ring *r, size_t len) {
  uint64_t h, t, off, need, pad;
  slot *s;

  /* An unmapped ring (cap 0) refuses everything, so a hook running before init is safe. */
  if (len > SS_RING_MAX_RECORD(r->cap) || r->buf == NULL)
    return drop(r);
  need = HDR + (((uint64_t)len + 7) & ~(uint64_t)7);
  h = atomic_load_explicit(&r->head, memory_order_relaxed);
  for (;;) {
    off = h & (r->cap - 1);
    /* Acquire: the consumer zeroed what it released before publishing `tail`. */
    t = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (t > h) { /* h is stale: both moved on since we read it */
      h = atomic_load_explicit(&r->head, memory_order_relaxed);
      continue;
    }
    pad = off + need > r->cap ? r->cap - off : 0;
    /* Past the first quarter with a small backlog: the next lap starts now, so the pages
     * after here are touched only when a backlog needs them (see the top of the file). */
    if (pad == 0 && off >= EARLY_LAP(r) && (h - t) <= off / 2 && (h - t) + need <= off)
      pad = r->cap - off;
    if (h + pad + need - t > r->cap)
      return drop(r);
    if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + pad + need,
                                              memory_order_relaxed, memory_order_relaxed))
      break;
  }
  if (pad) {
    s = slot_at(r, h);
    s->len = (uint32_t)(pad - HDR);
    atomic_store_explicit(&s->state, marker(r, h) | PAD_BIT, memory_order_release);
    h += pad;
  }
  s = slot_at(r, h);
  s->len = (uint32_t)(need - HDR);
  /* Remember the lap for commit, which only gets the pointer; BUSY keeps it unpublished. */
  atomic_store_explicit(&s->state, marker(r, h) | BUSY_BIT, memory_order_relaxed);
  return s + 1;
}

void ss__ring_commit(ss__ring *r, void *rec) {
  slot *s = (slot *)rec - 1;
  uint32_t st = atomic_load_explicit(&s->state, memory_order_relaxed);

  atomic_store_explicit(&s->state, st & ~BUSY_BIT, memory_order_release);
  atomic_fetch_add_explicit(&r->committed, 1, memory_order_relaxed);
}

int ss__ring_put(ss__ring *r, const void *rec, size_t len) {
  void *p = ss__ring_reserve(r, len);

  if (p == NULL)
    return -1;
  memcpy(p, rec, len);
  ss__ring_commit(r, p);
  return 0;
}

/* Zeroes the slot at tail (see the top of the file) and hands its space back. Padding
 * was never written: zero already, and its pages are left untouched. */
static uint64_t release_slot(ss__ring *r, uint64_t t, slot *s, int is_pad) {
  t += HDR + s->len;
  if (!is_pad)
    memset(s + 1, 0, s->len);
  s->len = 0;
  atomic_store_explicit(&s->state, 0, memory_order_relaxed);
  atomic_store_explicit(&r->tail, t, memory_order_release);
  return t;
}

void *ss__ring_peek(ss__ring *r, size_t *len) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);

  if (r->buf == NULL)
    return NULL;
  for (;;) {
    slot *s = slot_at(r, t);
    uint32_t m = marker(r, t);
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);

    if (st == (m | PAD_BIT)) {
      t = release_slot(r, t, s, 1);
      continue;
    }
    if (st != m)
      return NULL;
    *len = s->len;
    return s + 1;
  }
}

void ss__ring_release(ss__ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
  slot *s;

  if (r->buf == NULL)
    return;
  s = slot_at(r, t);
  /* Only after a successful peek: the slot at tail is a committed record. */
  if (atomic_load_explicit(&s->state, memory_order_relaxed) != marker(r, t))
    return;
  release_slot(r, t, s, 0);
}

uint64_t ss__ring_used(const ss__ring *r) {
  uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
  uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);

  return h > t ? h - t : 0;
}

SS_FORK_TEXT void ss__ring_reset_in_child(ss__ring *r) {
  uint64_t h;

  if (r->buf == NULL)
    return;
  /* Fresh zero pages for the part the parent ever wrote (positions run from 0, so that
   * is [0, head) until the first lap): the parent's queued records and any reservation a
   * vanished thread held are gone, and no page is copied on write. A parent that never
   * queued a span leaves nothing to do (a fork child of an untraced loop pays nothing). */
  h = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint64_t used = h < r->cap ? (h + 4095) & ~(uint64_t)4095 : r->cap;
  if (used > r->cap)
    used = r->cap;
  if (used && madvise(r->buf, used, MADV_DONTNEED) != 0)
    memset(r->buf, 0, used);
  atomic_store_explicit(&r->tail, h, memory_order_relaxed);
  atomic_store_explicit(&r->dropped, 0, memory_order_relaxed);
  atomic_store_explicit(&r->committed, 0, memory_order_relaxed);
}
