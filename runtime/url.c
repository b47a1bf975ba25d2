/* url.c - URL credential redaction for url.full (see sanitize.h).
 *
 * What leaves: the URL as it was, except
 *  - userinfo (`user:pass@`, `user@`) becomes `REDACTED:REDACTED@` (OTel semconv);
 *  - the value of a query parameter whose name is a known signing/credential key
 *    (AWS SigV2/SigV4, Azure SAS `sig`, GCS) becomes `REDACTED`, name kept;
 *  - an authority that runs to the end of the value and is not `host[:port]` (a URL cut
 *    short by the attribute length limit inside `user:pass`) becomes `REDACTED` whole.
 * Path, fragment and every other parameter are kept. Runs on the exporter thread only;
 * no allocation; output bounded by cap (cut short rather than overflow). */
#include <string.h>
#include <strings.h>

#include "runtime/sanitize.h"
#include "runtime/hostport.h"

static const char *const signed_keys[] = {
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId",
    "Signature",       "sig",              "X-Goog-Signature",
};

typedef struct out {
  char *p;
  size_t n, cap;
} out;

static void put(out *o, const char *s, size_t n) {
  if (n > o->cap - o->n) n = o->cap - o->n;
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static int is_signed_key(const char *k, size_t n) {
  for (size_t i = 0; i < sizeof signed_keys / sizeof signed_keys[0]; i++)
    if (strlen(signed_keys[i]) == n && strncasecmp(signed_keys[i], k, n) == 0) return 1;
  return 0;
}

/* Offset just past "scheme://", or 0 when the value has no valid scheme. */
static size_t authority_start(const char *in, size_t n) {
  size_t i = 0;
  while (i < n && i < 64 &&
         ((in[i] >= 'a' && in[i] <= 'z') || (in[i] >= 'A' && in[i] <= 'Z') ||
          (i > 0 && ((in[i] >= '0' && in[i] <= '9') || in[i] == '+' || in[i] == '-' ||
                     in[i] == '.'))))
    i++;
  if (i > 0 && i + 3 <= n && memcmp(in + i, "://", 3) == 0) return i + 3;
  if (n >= 2 && in[0] == '/' && in[1] == '/') return 2; /* scheme-relative */
  return 0;
}

/* host, [v6], host:digits, [v6]:digits (runtime/hostport.h's rule); empty counts too. */
static int is_hostport(const char *h, size_t n) {
  ss__hostport hp;
  return n == 0 || ss__hostport_split(h, n, &hp) == 0;
}

static void put_query(out *o, const char *q, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t e = i;
    while (e < n && q[e] != '&') e++;
    const char *eq = memchr(q + i, '=', e - i);
    if (eq && (size_t)(eq - q) + 1 < e && is_signed_key(q + i, (size_t)(eq - q) - i)) {
      put(o, q + i, (size_t)(eq - q) - i + 1);
      put(o, "REDACTED", 8);
    } else {
      put(o, q + i, e - i);
    }
    if (e < n) put(o, "&", 1);
    i = e + 1;
  }
}

size_t ss__url_redact(const char *in, size_t n, char *outbuf, size_t cap) {
  out o = {outbuf, 0, cap};
  size_t a = authority_start(in, n), e = a;
  while (e < n && in[e] != '/' && in[e] != '?' && in[e] != '#') e++;
  put(&o, in, a);
  if (a > 0 || e < n) {
    const char *at = NULL;
    for (size_t k = a; k < e; k++)
      if (in[k] == '@') at = in + k;
    if (at) {
      put(&o, "REDACTED:REDACTED@", 18);
      put(&o, at + 1, (size_t)(in + e - at - 1));
    } else if (e == n && !is_hostport(in + a, e - a)) {
      put(&o, "REDACTED", 8);
    } else {
      put(&o, in + a, e - a);
    }
  } else {
    /* No scheme and nothing after: a bare word; treat it as a host only if it looks
     * like one, else it might be a cut-short user:pass. */
    if (is_hostport(in, n) && memchr(in, '@', n) == NULL) put(&o, in, n);
    else put(&o, "REDACTED", 8);
    return o.n;
  }
  /* path, then query (up to '#'), then fragment */
  size_t q = e;
  while (q < n && in[q] != '?' && in[q] != '#') q++;
  put(&o, in + e, q - e);
  if (q < n && in[q] == '?') {
    size_t f = q + 1;
    while (f < n && in[f] != '#') f++;
    put(&o, "?", 1);
    put_query(&o, in + q + 1, f - q - 1);
    q = f;
  }
  put(&o, in + q, n - q);
  return o.n;
}

size_t ss__url_query_redact(const char *in, size_t n, char *outbuf, size_t cap) {
  out o = {outbuf, 0, cap};
  put_query(&o, in, n);
  return o.n;
}
