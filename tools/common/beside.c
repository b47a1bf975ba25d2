/* beside.c - see beside.h. */
#include "tools/common/beside.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char *ss__beside(const char *out, const char *signal) {
  static char buf[2][4096];
  static int which;
  char *b = buf[which ^= 1];
  struct stat st;
  if (stat(out, &st) == 0 && !S_ISREG(st.st_mode)) return out;
  const char *slash = strrchr(out, '/');
  const char *name = slash ? slash + 1 : out;
  const char *t = NULL;
  for (const char *p = strstr(name, "traces"); p; p = strstr(p + 1, "traces")) t = p;
  if (t) {
    snprintf(b, sizeof buf[0], "%.*s%s%s", (int)(t - out), out, signal, t + 6);
    return b;
  }
  const char *dot = strrchr(name, '.');
  if (dot == NULL || dot == name) dot = name + strlen(name);
  snprintf(b, sizeof buf[0], "%.*s.%s%s", (int)(dot - out), out, signal, dot);
  return b;
}
