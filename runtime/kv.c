/* kv.c - `key=value` lists (see kv.h). */
#include "runtime/kv.h"

#include <string.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

long ss__pct_decode(char *s, size_t n) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      s[o++] = s[i];
      continue;
    }
    if (i + 2 >= n) return -1;
    int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
    if (hi < 0 || lo < 0) return -1;
    s[o++] = (char)(hi << 4 | lo);
    i += 2;
  }
  s[o] = '\0';
  return (long)o;
}

static int blank(char c) {
  return c == ' ' || c == '\t';
}

/* Trims [*a, *b) of blanks. */
static void trim(char **a, char **b) {
  while (*a < *b && blank(**a)) (*a)++;
  while (*b > *a && blank((*b)[-1])) (*b)--;
}

/* One entry in [p, e) (*e is writable: the separator or the NUL); 0, 1 if blank, -1 if
 * malformed or refused. */
static int entry(char *p, char *e, ss__kv_fn fn, void *arg) {
  trim(&p, &e);
  if (p == e) return 1;
  char *eq = memchr(p, '=', (size_t)(e - p));
  if (eq == NULL) return -1;
  char *kb = p, *ke = eq, *vb = eq + 1, *ve = e;
  trim(&kb, &ke);
  trim(&vb, &ve);
  if (kb == ke) return -1;
  long kl = ss__pct_decode(kb, (size_t)(ke - kb)); /* writes its NUL at most at *ke */
  long vl = ss__pct_decode(vb, (size_t)(ve - vb));
  if (kl <= 0 || kb[0] == '\0' || vl < 0) return -1;
  return fn(arg, kb, (size_t)kl, vb, (size_t)vl) == 0 ? 0 : -1;
}

int ss__kv_parse(char *s, ss__kv_fn fn, void *arg) {
  int bad = 0;
  char *p = s;
  while (*p != '\0') {
    char *e = p + strcspn(p, ",");
    int last = *e == '\0';
    *e = '\0';
    if (entry(p, e, fn, arg) < 0) bad++;
    p = last ? e : e + 1;
  }
  return bad;
}
