/* url.c - URL credential redaction (see sanitize.h). Placeholder until the libcurl work
 * lands: conservative, it keeps only scheme and host. */
#include <string.h>

#include "runtime/sanitize.h"

size_t ss__url_redact(const char *in, size_t n, char *out, size_t cap) {
  const char *p = memmem(in, n, "://", 3);
  if (p == NULL || cap < 8) {
    memcpy(out, "REDACTED", cap < 8 ? cap : 8);
    return cap < 8 ? cap : 8;
  }
  size_t o = (size_t)(p - in) + 3, i = o;
  if (o > cap) o = i = 0;
  memcpy(out, in, o);
  const char *at = NULL;
  for (size_t k = i; k < n && in[k] != '/' && in[k] != '?' && in[k] != '#'; k++)
    if (in[k] == '@') at = in + k;
  if (at) i = (size_t)(at - in) + 1;
  while (i < n && in[i] != '/' && in[i] != '?' && in[i] != '#' && o < cap) out[o++] = in[i++];
  return o;
}
