/* hash.h - the hashes for in-memory tables, in one place: FNV-1a over bytes (names,
 * statement texts), a word-at-a-time hash for longer cache keys (spanshimd's attribute
 * cache), and a multiplicative mix of a 64-bit value (pointers, ids) whose high bits
 * are the well-mixed ones: take a table index from the top, not the bottom.
 * Not for anything an attacker must not predict. Pure functions; safe anywhere, signal
 * handlers included. Used by the hooks' per-handle tables (libpq connections, libcurl
 * easy handles) and by spanshimd (tools/common/hash.h forwards here). */
#ifndef SS_HASH_H
#define SS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit FNV-1a of p[0..n). */
static inline uint64_t ss__hash_bytes(const void *p, size_t n) {
  const uint8_t *b = p;
  uint64_t h = 14695981039346656037ull; /* FNV offset basis */
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/* A 64-bit hash of p[0..n) read 8 bytes at a time (a rotate and a multiply per word,
 * a xorshift-multiply at the end): for cache keys of tens to hundreds of bytes, where
 * FNV-1a's multiply per byte is the cost. The length is mixed in, so a key and its
 * zero-padded longer self differ. For tables whose entries are compared whole. */
static inline uint64_t ss__hash_words(const void *p, size_t n) {
  const uint8_t *b = p;
  uint64_t h = (n + 1) * 0x9e3779b97f4a7c15ull, w;
  size_t rest = n;
  for (; rest >= 8; b += 8, rest -= 8) {
    __builtin_memcpy(&w, b, 8);
    h = ((h << 23 | h >> 41) ^ w) * 0xff51afd7ed558ccdull;
  }
  if (rest) {  /* the last 8 bytes again when there are 8 (no byte-count copy), else these */
    w = 0;
    if (n >= 8) __builtin_memcpy(&w, b + rest - 8, 8);
    else __builtin_memcpy(&w, b, rest);
    h = ((h << 23 | h >> 41) ^ w) * 0xff51afd7ed558ccdull;
  }
  h ^= h >> 29;
  return h * 0xc4ceb9fe1a85ec53ull;
}

/* x with its bits spread upward (Fibonacci hashing after a fold of the high bits, which
 * pointers and other aligned values leave nearly constant at the bottom). */
static inline uint64_t ss__hash_mix64(uint64_t x) {
  x ^= x >> 17;
  return x * 0x9e3779b97f4a7c15ull;
}

/* 24 well-mixed bits of a pointer, for a table index (modulo the table size). */
static inline uint32_t ss__ptr_hash(const void *p) {
  return (uint32_t)(ss__hash_mix64((uint64_t)(uintptr_t)p) >> 40);
}

#endif
