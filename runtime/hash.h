/* hash.h - hashing a pointer into a small table.
 *
 * For the fixed, open-addressed tables hooks keep per handle (libpq connections, libcurl
 * easy handles): a Fibonacci multiply after folding the high bits in, so handles that
 * differ only in their low bits (malloc alignment) spread across the table. Pure; safe
 * anywhere, signal handlers included. */
#ifndef SS_HASH_H
#define SS_HASH_H

#include <stdint.h>

/* 24 well-mixed bits of p; take it modulo the table size. */
static inline uint32_t ss__ptr_hash(const void *p) {
  uint64_t x = (uint64_t)(uintptr_t)p;
  x ^= x >> 17;
  x *= 0x9E3779B97F4A7C15ull;
  return (uint32_t)(x >> 40);
}

#endif
