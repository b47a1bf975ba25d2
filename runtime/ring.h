/* ring.h - bounded lock-free ring of variable-length records, many producers, one consumer.
 *
 * Producers (app threads, signal handlers) reserve space with one CAS on `head`, write, and
 * commit with a release store; when the ring is full the record is dropped and counted,
 * never waited for. No allocation, no lock, no system call on the producer side. The one
 * consumer (the exporter thread, or whoever holds the exporter's drain lock) reads records
 * in reservation order; a record reserved but not yet committed holds back the ones after
 * it until it is committed.
 *
 * Every slot header carries the lap of the position it was written at, so stale headers
 * from an earlier lap (or from a parent process, after fork) are never taken as records.
 * Memory: `cap` bytes, mapped once by ss__ring_init and never freed. */
#ifndef SS_RING_H
#define SS_RING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ss__ring {
  _Atomic uint64_t head;      /* bytes ever reserved (producers) */
  char pad0[56];
  _Atomic uint64_t tail;      /* bytes ever released (consumer) */
  char pad1[56];
  _Atomic uint64_t dropped;   /* records refused because the ring was full */
  _Atomic uint64_t committed; /* records committed, ever */
  char pad2[48];
  /* Read-only after init, on a line of its own so counter updates never evict it. */
  unsigned char *buf;
  uint64_t cap;               /* power of two */
  unsigned cap_shift;
} __attribute__((aligned(64))) ss__ring;

/* Largest record a ring of capacity cap accepts. */
#define SS_RING_MAX_RECORD(cap) ((cap) / 4)

/* Maps a ring of `cap` bytes (rounded up to a power of two, at least 4 KiB).
 * Returns 0, or -errno with *r unchanged. */
int ss__ring_init(ss__ring *r, size_t cap);

/* Reserves len bytes (any size; rounded up to 8) for a record. Returns a pointer to
 * write the record to, 8-byte aligned, or NULL when the ring is full or len is larger
 * than SS_RING_MAX_RECORD (the drop is counted). Async-signal-safe. */
void *ss__ring_reserve(ss__ring *r, size_t len);
/* Publishes a record returned by ss__ring_reserve. */
void ss__ring_commit(ss__ring *r, void *rec);
/* reserve + memcpy + commit; 0 or -1 (dropped and counted). */
int ss__ring_put(ss__ring *r, const void *rec, size_t len);

/* Consumer side, one caller at a time. Returns the next committed record and stores its
 * reserved length in *len, or NULL when none is ready. The record stays valid until
 * ss__ring_release. */
void *ss__ring_peek(ss__ring *r, size_t *len);
void ss__ring_release(ss__ring *r);

/* Bytes reserved and not yet released. */
uint64_t ss__ring_used(const ss__ring *r);

/* In a fork child: forgets everything the parent had queued (the parent exports it) and
 * any reservation another parent thread held. Counters restart at zero. */
void ss__ring_reset_in_child(ss__ring *r);

#endif
