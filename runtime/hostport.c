/* hostport.c - splitting "HOST:PORT" (see hostport.h). */
#include <string.h>

#include "runtime/hostport.h"

static int digits(const char *p, size_t n) {
  if (n == 0 || n > 5) return 0;
  for (size_t i = 0; i < n; i++)
    if (p[i] < '0' || p[i] > '9') return 0;
  return 1;
}

int ss__hostport_split(const char *s, size_t n, ss__hostport *hp) {
  const char *end = s + n, *colon = NULL;
  hp->port = NULL;
  hp->port_len = 0;
  if (n > 0 && s[0] == '[') {
    const char *rb = memchr(s, ']', n);
    if (rb == NULL) return -1;
    hp->host = s + 1;
    hp->host_len = (size_t)(rb - s - 1);
    if (rb + 1 < end) {
      if (rb[1] != ':') return -1;
      colon = rb + 1;
    }
  } else {
    for (const char *p = end; p > s; p--)
      if (p[-1] == ':') {
        colon = p - 1;
        break;
      }
    hp->host = s;
    hp->host_len = colon ? (size_t)(colon - s) : n;
  }
  if (hp->host_len == 0) return -1;
  if (colon) {
    hp->port = colon + 1;
    hp->port_len = (size_t)(end - colon - 1);
    if (!digits(hp->port, hp->port_len) || ss__hostport_port(hp) > 65535) return -1;
  }
  return 0;
}

long ss__hostport_port(const ss__hostport *hp) {
  if (hp->port == NULL) return -1;
  long v = 0;
  for (size_t i = 0; i < hp->port_len; i++) v = v * 10 + (hp->port[i] - '0');
  return v;
}
