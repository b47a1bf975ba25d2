/* hostport.h - the one rule for splitting "HOST:PORT" (URL authorities, --listen and
 * --metrics addresses, endpoint strings).
 *
 * Accepted: "host", "host:port", "[v6]", "[v6]:port", and an unbracketed IPv6 address
 * followed by a port ("::1:4318": the port is after the last colon). The port is 1 to 5
 * digits, at most 65535 (getaddrinfo would take 99999 as 34463: another port). Nothing is copied or allocated and no locale is consulted, so this is safe
 * anywhere (signal handlers, the shim's app threads). Used by the transport's endpoint
 * (runtime/transport.c) and spanshimd's --listen/--metrics/upstream addresses. */
#ifndef SS_HOSTPORT_H
#define SS_HOSTPORT_H

#include <stddef.h>

typedef struct ss__hostport {
  const char *host;  /* into the input; without the brackets of "[v6]" */
  size_t host_len;   /* at least 1 */
  const char *port;  /* into the input; NULL when there is none */
  size_t port_len;
} ss__hostport;

/* Splits s[0..n) into *hp. Returns 0, or -1 (hp unspecified) for an empty host, an
 * unclosed '[', anything but ":port" after ']', or a port that is empty, longer than 5
 * or not all digits, or over 65535. */
int ss__hostport_split(const char *s, size_t n, ss__hostport *hp);
/* The port as a number (0..65535 after a split that succeeded); -1 when hp has none. */
long ss__hostport_port(const ss__hostport *hp);

#endif
