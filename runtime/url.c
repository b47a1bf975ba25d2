/* url.c - URL credential redaction for url.full and url.query (see sanitize.h).
 *
 * What leaves: the URL as it was, except
 *  - userinfo (`user:pass@`, `user@`) becomes `REDACTED:REDACTED@` (OTel semconv);
 *  - the value of a query parameter whose name looks like a credential becomes `REDACTED`,
 *    name kept (the rule is ss__cred_name below: no list entry per service is needed);
 *  - a fragment holding a `=` (OAuth implicit flow `#access_token=...&state=...`, SPA
 *    state) keeps its names and has every value replaced by `REDACTED`;
 *  - an authority that runs to the end of the value and is not `host[:port]` (a URL cut
 *    short by the attribute length limit inside `user:pass`) becomes `REDACTED` whole.
 * Path and every other parameter are kept. Query pairs are split at `&` and `;`; an empty
 * value stays empty. Runs on the exporter thread only; no allocation; output bounded by
 * cap (cut short rather than overflow). */
#include <string.h>
#include <strings.h>

#include "runtime/outbuf.h"
#include "runtime/sanitize.h"
#include "runtime/hostport.h"

/* Exact names of signing keys (AWS SigV2/SigV4, Azure SAS, GCS), kept from before the
 * word rule; the word rule covers them all too. */
static const char *const signed_keys[] = {
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId",
    "Signature",       "sig",              "X-Goog-Signature",
};

/* A word of a key (see words below) that marks a credential wherever it stands:
 * `token`, `access_token`, `accessToken`, `X-API-Key`, `client_secret`, `session_id`. */
static const char cred_words[][16] = { /* inline, not pointers (see sqlstate.c's codes) */
    "token",      "tokens",      "auth",       "authorization", "key",        "keys",
    "apikey",     "accesskey",   "secretkey",  "privatekey",    "signingkey", "sessionkey",
    "authkey",    "appkey",      "clientkey",  "masterkey",     "secret",     "secrets",
    "password",   "passwords",   "passwd",     "pwd",           "pass",       "passphrase",
    "sig",        "signature",   "session",    "sessionid",     "sessid",     "jwt",
    "bearer",     "credential",  "credentials", "verifier",     "assertion",  "cookie",
    "otp",
};

/* A word ending in one of these is a credential too: `accesstoken`, `csrftoken`,
 * `clientsecret`, `newpassword`, `jsessionid`, `phpsessid`. (`key` and `pass` are not
 * suffixes: monkey, compass.) */
static const char *const cred_suffixes[] = {
    "token", "secret", "password", "passwd", "sessionid", "sessid",
};

/* Credentials only as the whole key: `code` is OAuth's authorization code, while
 * `country_code` or `errorCode` are not secrets. */
static const char *const cred_whole[] = {"code"};

/* SPANSHIM_REDACT_QUERY_KEYS: lowercased names, each NUL-terminated, an empty name ends
 * the list. Written at init (ss__url_redact_keys_set) before the exporter thread runs. */
static char extra_keys[1024];
static int extra_keys_set; /* extra_keys was ever written */

#define KEY_MAX 256 /* longer keys (decoded) are not judged: their values are redacted */

typedef ss__out out;
#define put ss__out_put

static int is_signed_key(const char *k, size_t n) {
  for (size_t i = 0; i < sizeof signed_keys / sizeof signed_keys[0]; i++)
    if (strlen(signed_keys[i]) == n && strncasecmp(signed_keys[i], k, n) == 0) return 1;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The key percent-decoded (`access%5Ftoken` is access_token); -1 when longer than cap. */
static long decode_key(const char *k, size_t n, char *buf, size_t cap) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) {
    char c = k[i];
    if (c == '%' && i + 2 < n && hexval(k[i + 1]) >= 0 && hexval(k[i + 2]) >= 0) {
      c = (char)(hexval(k[i + 1]) * 16 + hexval(k[i + 2]));
      i += 2;
    }
    if (m == cap) return -1;
    buf[m++] = c;
  }
  return (long)m;
}

static int is_word(const char *w, size_t n, const char *word) {
  return strlen(word) == n && strncasecmp(word, w, n) == 0;
}

static int in_list(const char *w, size_t n, const char *const *list, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (is_word(w, n, list[i])) return 1;
  return 0;
}

static int in_words(const char *w, size_t n, const char (*list)[16], size_t count) {
  for (size_t i = 0; i < count; i++)
    if (is_word(w, n, list[i])) return 1;
  return 0;
}

static int has_suffix(const char *w, size_t n) {
  for (size_t i = 0; i < sizeof cred_suffixes / sizeof cred_suffixes[0]; i++) {
    size_t s = strlen(cred_suffixes[i]);
    if (n >= s && strncasecmp(cred_suffixes[i], w + n - s, s) == 0) return 1;
  }
  return 0;
}

static int is_extra(const char *w, size_t n) {
  for (const char *e = extra_keys; *e; e += strlen(e) + 1)
    if (strlen(e) == n && strncasecmp(e, w, n) == 0) return 1;
  return 0;
}

enum { C_OTHER, C_LOWER, C_UPPER, C_DIGIT };

static int cls(char c) {
  if (c >= 'a' && c <= 'z') return C_LOWER;
  if (c >= 'A' && c <= 'Z') return C_UPPER;
  if (c >= '0' && c <= '9') return C_DIGIT;
  return C_OTHER;
}

/* Whether a word starts at k[i] (0 < i < n, k[i] a letter or digit): after a separator,
 * between letters and digits, at a camelCase hump (`aB`), and before the last capital of
 * a capital run that a lowercase letter follows (`APIKey` is API|Key). */
static int word_starts(const char *k, size_t n, size_t i) {
  int p = cls(k[i - 1]), c = cls(k[i]);
  if (p == C_OTHER) return 1;
  if ((p == C_DIGIT) != (c == C_DIGIT)) return 1;
  if (p == C_LOWER && c == C_UPPER) return 1;
  return p == C_UPPER && c == C_UPPER && i + 1 < n && cls(k[i + 1]) == C_LOWER;
}

/* The rule: does the name (raw, percent-encoded as in a URL) name a credential? */
int ss__cred_name(const char *raw, size_t rn) {
  char k[KEY_MAX];
  long dn = decode_key(raw, rn, k, sizeof k);
  if (dn < 0) return 1;
  size_t n = (size_t)dn;
  if (is_signed_key(k, n) || is_extra(k, n) ||
      in_list(k, n, cred_whole, sizeof cred_whole / sizeof cred_whole[0]))
    return 1;
  size_t i = 0;
  while (i < n) {
    while (i < n && cls(k[i]) == C_OTHER) i++;
    if (i == n) break;
    size_t e = i + 1;
    while (e < n && cls(k[e]) != C_OTHER && !word_starts(k, n, e)) e++;
    if (in_words(k + i, e - i, cred_words, sizeof cred_words / sizeof cred_words[0]) ||
        has_suffix(k + i, e - i) || is_extra(k + i, e - i))
      return 1;
    i = e;
  }
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

/* name=value pairs split at '&' and ';': a non-empty value is redacted when `all` or when
 * its name is a credential. */
static void put_pairs(out *o, const char *q, size_t n, int all) {
  size_t i = 0;
  while (i < n) {
    size_t e = i;
    while (e < n && q[e] != '&' && q[e] != ';') e++;
    const char *eq = memchr(q + i, '=', e - i);
    if (eq && (size_t)(eq - q) + 1 < e && (all || ss__cred_name(q + i, (size_t)(eq - q) - i))) {
      put(o, q + i, (size_t)(eq - q) - i + 1);
      put(o, "REDACTED", 8);
    } else {
      put(o, q + i, e - i);
    }
    if (e < n) put(o, q + e, 1);
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
    put_pairs(&o, in + q + 1, f - q - 1, 0);
    q = f;
  }
  if (q < n) { /* '#' */
    put(&o, "#", 1);
    if (memchr(in + q + 1, '=', n - q - 1)) put_pairs(&o, in + q + 1, n - q - 1, 1);
    else put(&o, in + q + 1, n - q - 1);
  }
  return o.n;
}

size_t ss__url_query_redact(const char *in, size_t n, char *outbuf, size_t cap) {
  out o = {outbuf, 0, cap};
  put_pairs(&o, in, n, 0);
  return o.n;
}

int ss__url_redact_keys_set(const char *list) {
  size_t used = 0;
  int dropped = 0;
  /* Cleared only when it was written: at start it is all zero, and touching it would cost
   * every process the faults of its pages (even to read). */
  if (extra_keys_set) memset(extra_keys, 0, sizeof extra_keys);
  for (const char *p = list; p && *p;) {
    size_t len = strcspn(p, ",");
    const char *a = p, *b = p + len;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    size_t m = (size_t)(b - a);
    int ok = 1;
    for (size_t i = 0; i < m; i++)
      if ((unsigned char)a[i] <= 0x20 || a[i] == 0x7f || a[i] == '=' || a[i] == '&' ||
          a[i] == ';' || a[i] == '#')
        ok = 0;
    if (m > 0 && (!ok || m >= KEY_MAX || used + m + 2 > sizeof extra_keys)) {
      dropped++;
    } else if (m > 0) {
      extra_keys_set = 1;
      for (size_t i = 0; i < m; i++)
        extra_keys[used + i] = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] + 32) : a[i];
      used += m + 1;
    }
    p += len;
    if (*p == ',') p++;
  }
  return dropped;
}
