/* netaddr.c - numeric IP address text; see netaddr.h. */
#include "runtime/netaddr.h"

#include <string.h>

/* "0." .. "255." with their lengths: an IPv4 address is formatted on the app thread for
 * every sampled connect, so each octet is one 4-byte copy rather than divisions. */
#define O1(n) {#n ".", sizeof #n}
#define O10(d) O1(d##0), O1(d##1), O1(d##2), O1(d##3), O1(d##4), O1(d##5), O1(d##6), \
               O1(d##7), O1(d##8), O1(d##9)
/* clang-format off */
static const struct { char s[4]; uint32_t n; } octet[256] = { /* 8 bytes: scaled loads */
    O1(0), O1(1), O1(2), O1(3), O1(4), O1(5), O1(6), O1(7), O1(8), O1(9),
    O10(1), O10(2), O10(3), O10(4), O10(5), O10(6), O10(7), O10(8), O10(9),
    O10(10), O10(11), O10(12), O10(13), O10(14), O10(15), O10(16), O10(17), O10(18),
    O10(19), O10(20), O10(21), O10(22), O10(23), O10(24),
    O1(250), O1(251), O1(252), O1(253), O1(254), O1(255)};
/* clang-format on */
#undef O10
#undef O1

size_t ss__ip4_format(const uint8_t a[4], char *out) {
  const uint8_t b0 = a[0], b1 = a[1], b2 = a[2], b3 = a[3]; /* read before any store */
  char *p = out;
  /* Each octet with its dot (and, for short ones, spare) in one 4-byte copy; unrolled. */
  memcpy(p, octet[b0].s, 4);
  p += octet[b0].n;
  memcpy(p, octet[b1].s, 4);
  p += octet[b1].n;
  memcpy(p, octet[b2].s, 4);
  p += octet[b2].n;
  memcpy(p, octet[b3].s, 4);
  p += octet[b3].n;
  p[-1] = '\0'; /* the last dot */
  return (size_t)(p - 1 - out);
}

static char *put_hex16(char *p, unsigned v) {
  static const char hex[] = "0123456789abcdef";
  int started = 0;
  for (int shift = 12; shift >= 0; shift -= 4) {
    unsigned d = (v >> shift) & 0xf;
    if (d || started || shift == 0) {
      *p++ = hex[d];
      started = 1;
    }
  }
  return p;
}

size_t ss__ip6_format(const uint8_t a[16], char *out) {
  unsigned g[8];
  for (int i = 0; i < 8; i++) g[i] = (unsigned)a[2 * i] << 8 | a[2 * i + 1];

  /* The longest run of zero groups (length >= 2), first one on a tie. */
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (g[i] != 0) { i++; continue; }
    int j = i;
    while (j < 8 && g[j] == 0) j++;
    if (j - i > best_len && j - i >= 2) { best = i; best_len = j - i; }
    i = j;
  }
  /* inet_ntop writes ::a.b.c.d (compatible) and ::ffff:a.b.c.d (mapped) forms. */
  int v4_tail = best == 0 && (best_len == 6 || (best_len == 5 && g[5] == 0xffff));
  char *p = out;
  for (int i = 0; i < 8; i++) {
    if (i == best) {
      *p++ = ':';
      if (i == 0) *p++ = ':';
      i += best_len - 1;
      continue;
    }
    if (v4_tail && i == 6) {
      p += ss__ip4_format(a + 12, p);
      return (size_t)(p - out);
    }
    p = put_hex16(p, g[i]);
    if (i < 7) *p++ = ':';
  }
  *p = '\0';
  return (size_t)(p - out);
}
