/* duration.c - see duration.h. */
#include "tools/common/duration.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ss__parse_duration_ns(const char *s, uint64_t *ns) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || v < 0 || *s == '-') return -1;
  double mul = 1e6;
  if (*end == 0 || strcmp(end, "ms") == 0) mul = 1e6;
  else if (strcmp(end, "s") == 0) mul = 1e9;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mul = 60e9;
  else if (strcmp(end, "h") == 0) mul = 3600e9;
  else if (strcmp(end, "us") == 0 || strcmp(end, "µs") == 0) mul = 1e3;
  else if (strcmp(end, "ns") == 0) mul = 1;
  else return -1;
  if (v * mul > 1e18) return -1;
  *ns = (uint64_t)(v * mul);
  return 0;
}
