/* netaddr.c - numeric IP address text; see netaddr.h. */
#include "runtime/netaddr.h"

#include <string.h>

static char *put_u8(char *p, unsigned v) {
  if (v >= 100) *p++ = (char)('0' + v / 100);
  if (v >= 10) *p++ = (char)('0' + v / 10 % 10);
  *p++ = (char)('0' + v % 10);
  return p;
}

size_t ss__ip4_format(const uint8_t a[4], char *out) {
  char *p = out;
  for (int i = 0; i < 4; i++) {
    if (i) *p++ = '.';
    p = put_u8(p, a[i]);
  }
  *p = '\0';
  return (size_t)(p - out);
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
