/* tracestate.c - W3C tracestate trimming (see ids.h). Kept apart from ids.c so the HTTP
 * parser's benchmark (tests/bench/h1_cost.c) links it alone. */
#include <string.h>

#include "runtime/ids.h"

size_t ss__tracestate_trim(char *s, size_t len, int cut) {
  size_t r = 0, w = 0, total = 0;

  if (!cut && len <= SS_TRACESTATE_MAX) {
    s[len] = '\0';
    return len;
  }
  if (cut) /* the last member lost its end: only whole members count */
    while (len > 0 && s[len - 1] != ',') len--;
  /* One pass: keep members of at most 128 characters while they fit. Dropping the long
   * ones first and then from the end is the same as skipping long ones and stopping at
   * the first that does not fit (order is kept, later ones would be dropped first). */
  while (r < len) {
    size_t b = r, e;
    while (r < len && s[r] != ',') r++;
    e = r++;
    while (b < e && (s[b] == ' ' || s[b] == '\t')) b++;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    if (e == b || e - b > SS_TRACESTATE_MEMBER_MAX) continue;
    if (total + (w ? 1 : 0) + (e - b) > SS_TRACESTATE_MAX) break;
    if (w) s[w++] = ',';
    memmove(s + w, s + b, e - b);
    w += e - b;
    total = w;
  }
  s[w] = '\0';
  return w;
}
