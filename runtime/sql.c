/* sql.c - SQL literal scrubbing (see sanitize.h). Placeholder until the libpq work lands:
 * conservative, it keeps only the statement's first keyword. */
#include <ctype.h>
#include <string.h>

#include "runtime/sanitize.h"

size_t ss__sql_scrub(const char *in, size_t n, char *out, size_t cap) {
  size_t i = 0, o = 0;
  while (i < n && isspace((unsigned char)in[i])) i++;
  while (i < n && isalpha((unsigned char)in[i]) && o + 2 < cap) out[o++] = in[i++];
  if (i < n && o + 2 < cap) {
    out[o++] = ' ';
    out[o++] = '?';
  }
  return o;
}
