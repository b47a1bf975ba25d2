/* bytes.h - short byte moves without a call: unaligned word loads and a copy for the
 * few-byte strings most span fields are (keys, addresses, short values), where a memcpy
 * call costs more than the bytes. Pure inline functions over caller memory: any thread,
 * async-signal-safe. */
#ifndef SS_BYTES_H
#define SS_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Unaligned loads (one mov each), in the machine's byte order. */
static inline uint64_t ss__load64(const void *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  return w;
}

static inline uint64_t ss__load32(const void *p) {
  uint32_t w;
  memcpy(&w, p, 4);
  return w;
}

/* memcpy(o, p, n) for buffers that do not overlap: up to 16 bytes by two overlapping
 * word moves (never reading or writing outside the n bytes), longer ones by memcpy. */
static inline __attribute__((always_inline)) void ss__copy_short(void *o, const void *p,
                                                                 size_t n) {
  unsigned char *d = o;
  const unsigned char *s = p;
  if (n > 16) {
    memcpy(d, s, n);
  } else if (n >= 8) {
    uint64_t a = ss__load64(s), b = ss__load64(s + n - 8);
    memcpy(d, &a, 8);
    memcpy(d + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a = (uint32_t)ss__load32(s), b = (uint32_t)ss__load32(s + n - 4);
    memcpy(d, &a, 4);
    memcpy(d + n - 4, &b, 4);
  } else if (n > 0) {
    unsigned char x = s[0], y = s[n / 2], z = s[n - 1];
    d[0] = x;
    d[n / 2] = y;
    d[n - 1] = z;
  }
}

#endif
