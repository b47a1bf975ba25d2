/* jw_fmt.h - the JSON writer's number and id formatting, at a pointer (internal to
 * tools/common: otlp_json.c and otlp_wire_json.c).
 *
 * Each function writes at o, which the caller has made room for (ss__buf_room), and
 * returns the end of what it wrote; nothing is allocated or checked, so a span's fixed
 * fields can be written after one room check. Ids go through whole words (16 hex digits
 * per 4 bytes at a time), numbers eight digits per 64-bit word. Pure; safe anywhere. */
#ifndef SS_JW_FMT_H
#define SS_JW_FMT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* s[0..len) as a quoted, escaped JSON string (ss__jw_str's rules) at o, which has room
 * for 6 * len + 2. */
char *ss__jw_str_at(char *o, const char *s, size_t len);

/* Every byte's two hex digits (ids of a length other than a multiple of 4). */
extern const char ss__jw_hexpairs[513];

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The 8 hex digits of p[0..4) as one little-endian word: each byte spread into a 16-bit
 * lane, its nibbles into the lane's two bytes (high first), then '0' or 'a' - 10 added. */
static inline uint64_t ss__jw_hex4(const uint8_t *p) {
  uint32_t w32;
  memcpy(&w32, p, 4);
  uint64_t t = w32;
  t = (t | t << 16) & 0x0000ffff0000ffffull;
  t = (t | t << 8) & 0x00ff00ff00ff00ffull;
  uint64_t nib = (t >> 4 & 0x000f000f000f000full) | (t & 0x000f000f000f000full) << 8;
  uint64_t letters = ((nib + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  return nib + 0x3030303030303030ull + letters * 0x27;  /* 'a' - '0' - 10 */
}
#endif

#ifdef __SSE2__
/* The ASCII hex digits of 16 nibbles (one in each byte): '0' added, and 'a' - '0' - 10
 * more where a nibble is above 9. */
static inline __m128i ss__jw_hex_digits(__m128i nib) {
  __m128i big = _mm_cmpgt_epi8(nib, _mm_set1_epi8(9));
  return _mm_add_epi8(_mm_add_epi8(nib, _mm_set1_epi8('0')),
                      _mm_and_si128(big, _mm_set1_epi8('a' - '0' - 10)));
}
#endif

/* n bytes as 2n lowercase hex digits (unquoted) at o (room for 2n). */
static inline char *ss__jw_hex_at(char *o, const uint8_t *p, size_t n) {
  size_t i = 0;
#ifdef __SSE2__
  const __m128i low4 = _mm_set1_epi8(0x0f);
  for (; i + 16 <= n; i += 16) {  /* trace ids */
    __m128i x = _mm_loadu_si128((const __m128i *)(p + i));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4), lo = _mm_and_si128(x, low4);
    _mm_storeu_si128((__m128i *)(o + 2 * i), ss__jw_hex_digits(_mm_unpacklo_epi8(hi, lo)));
    _mm_storeu_si128((__m128i *)(o + 2 * i + 16), ss__jw_hex_digits(_mm_unpackhi_epi8(hi, lo)));
  }
  if (i + 8 <= n) {  /* span ids */
    __m128i x = _mm_loadl_epi64((const __m128i *)(p + i));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4), lo = _mm_and_si128(x, low4);
    _mm_storeu_si128((__m128i *)(o + 2 * i), ss__jw_hex_digits(_mm_unpacklo_epi8(hi, lo)));
    i += 8;
  }
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; i + 4 <= n; i += 4) {  /* ids: 16 and 8 bytes */
    uint64_t d = ss__jw_hex4(p + i);
    memcpy(o + 2 * i, &d, 8);
  }
#endif
  for (; i < n; i++) memcpy(o + 2 * i, ss__jw_hexpairs + 2 * p[i], 2);
  return o + 2 * n;
}

/* v < 10^8 as 8 ASCII digits, zero-padded, at o. On little-endian machines all 8 at once
 * in one 64-bit word: v split into two halves of 4 digits (32-bit lanes), each into two
 * of 2 digits (16-bit lanes), each into two digits (bytes), by multiplying by reciprocals
 * that are exact in these ranges (x * 10486 >> 20 = x / 100 for x < 43,699; x * 103 >> 10
 * = x / 10 for x < 179). */
static inline void ss__jw_digits8(char *o, uint32_t v) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t ab = (uint64_t)(v / 10000) | (uint64_t)(v % 10000) << 32;
  uint64_t hi = ((ab * 10486) >> 20) & 0x0000007f0000007full;
  uint64_t c = hi | (ab - hi * 100) << 16;
  uint64_t h2 = ((c * 103) >> 10) & 0x000f000f000f000full;
  uint64_t d = (h2 | (c - h2 * 10) << 8) + 0x3030303030303030ull;
  memcpy(o, &d, 8);
#else
  for (int i = 7; i >= 0; i--, v /= 10) o[i] = (char)('0' + v % 10);
#endif
}

/* v in decimal (unquoted, no leading zeros) at o (room for 24: the digits are written in
 * three groups of 8 from the right into a scratch buffer, then copied from the first
 * that is not a leading zero, 24 bytes at once: a copy of fixed size). */
static inline char *ss__jw_u64_at(char *o, uint64_t v) {
  if (v < 10) {
    *o = (char)('0' + v);
    return o + 1;
  }
  char t[48];
  memset(t + 24, 0, 24);  /* copied below (past the digits), never used */
  size_t start = 16;
  ss__jw_digits8(t + 16, (uint32_t)(v % 100000000));
  uint64_t q = v / 100000000;
  if (q) {
    ss__jw_digits8(t + 8, (uint32_t)(q % 100000000));
    start = 8;
    if ((q /= 100000000) != 0) {
      ss__jw_digits8(t, (uint32_t)q);
      start = 0;
    }
  }
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t w;  /* the group holds a digit other than '0' (the top group is not zero) */
  memcpy(&w, t + start, 8);
  start += (size_t)__builtin_ctzll(w ^ 0x3030303030303030ull) / 8;
#else
  while (t[start] == '0') start++;
#endif
  memcpy(o, t + start, 24);  /* the digits and what follows them: room the caller gave */
  return o + 24 - start;
}

#endif
