/* http.c - HTTP/1.1 request-head parser and chunked body decoder (RFC 9112), strict where
 * laxness invites request smuggling (Content-Length with Transfer-Encoding, conflicting
 * Content-Lengths, a transfer coding list not ending in chunked, Transfer-Encoding in
 * HTTP/1.0, whitespace before the colon, obsolete line folding, a chunk size that is not
 * plain hex, chunk data not followed by its line end), lenient where it costs nothing
 * (bare LF line ends, empty lines before the request line). */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "tools/spanshimd/spanshimd.h"

/* RFC 9110 tchar. */
static int is_tchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int ss__http_ieq(const char *s, size_t n, const char *lit) {
  return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* Position just past the blank line ending the head, or 0 if not found yet. */
static size_t find_head_end(const char *buf, size_t len, size_t *scan) {
  size_t i = *scan;
  for (; i < len; i++) {
    if (buf[i] != '\n') continue;
    if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
    if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    if (i + 2 >= len) break;  /* may complete with the next read */
  }
  *scan = i;
  return 0;
}

/* Splits the next line off [*p, end); returns its length without CR LF, or -1. */
static long next_line(const char **p, const char *end, const char **line) {
  const char *nl = memchr(*p, '\n', (size_t)(end - *p));
  if (nl == NULL) return -1;
  *line = *p;
  *p = nl + 1;
  const char *e = nl;
  if (e > *line && e[-1] == '\r') e--;
  return e - *line;
}

static int parse_request_line(const char *l, size_t n, ss__http_req *r) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)l[i])) i++;
  if (i == 0 || i >= n || l[i] != ' ') return -1;
  r->method = l;
  r->method_len = i;
  size_t t = ++i;
  while (i < n && l[i] != ' ') {
    if ((unsigned char)l[i] <= 0x20 || l[i] == 0x7f) return -1;
    i++;
  }
  if (i == t || i >= n) return -1;
  r->path = l + t;
  const char *q = memchr(r->path, '?', i - t);
  r->path_len = q ? (size_t)(q - r->path) : i - t;
  const char *v = l + i + 1;
  if (n - i - 1 != 8 || memcmp(v, "HTTP/1.", 7) != 0) return -1;
  if (v[7] != '0' && v[7] != '1') return -1;
  r->minor = v[7] - '0';
  return 0;
}

/* Comma-separated tokens of a Connection header. */
static void parse_connection(const char *v, size_t n, ss__http_req *r) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ',' || v[i] == ' ' || v[i] == '\t')) i++;
    size_t s = i;
    while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t') i++;
    if (ss__http_ieq(v + s, i - s, "close")) r->connection = SS_CONN_CLOSE;
    else if (ss__http_ieq(v + s, i - s, "keep-alive") && r->connection != SS_CONN_CLOSE)
      r->connection = SS_CONN_KEEP_ALIVE;
  }
}

static int parse_content_length(const char *v, size_t n, ss__http_req *r) {
  if (n == 0 || n > 18) return -1;
  int64_t x = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isdigit((unsigned char)v[i])) return -1;
    x = x * 10 + (v[i] - '0');
  }
  if (r->content_length >= 0 && r->content_length != x) return -1;
  r->content_length = x;
  return 0;
}

/* What the Transfer-Encoding lines said, over all of them (RFC 9112 6.1). */
typedef struct te_state {
  int seen;         /* a Transfer-Encoding header was present */
  int after_chunked; /* a coding came after chunked (or chunked twice) */
  int other;        /* a coding other than chunked */
} te_state;

/* Splits the comma-separated list v[0..n) into tokens (parameters after ';' dropped, OWS
 * trimmed, empty elements skipped) and calls fn on each. */
static void each_token(const char *v, size_t n, void (*fn)(const char *, size_t, void *),
                       void *arg) {
  size_t i = 0;
  while (i < n) {
    size_t s = i;
    while (i < n && v[i] != ',') i++;
    size_t e = i++;
    const char *semi = memchr(v + s, ';', e - s);
    if (semi) e = (size_t)(semi - v);
    while (s < e && (v[s] == ' ' || v[s] == '\t')) s++;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e > s) fn(v + s, e - s, arg);
  }
}

static void te_token(const char *t, size_t n, void *arg) {
  te_state *te = arg;
  if (te->seen == 2) te->after_chunked = 1;  /* chunked was not the last coding */
  if (ss__http_ieq(t, n, "chunked")) te->seen = 2;
  else te->other = 1;
}

/* Content-Encoding: identity is no coding; one of gzip (x-gzip) or deflate is taken;
 * anything else, or two codings stacked, is not (415). */
static void ce_token(const char *t, size_t n, void *arg) {
  ss__http_req *r = arg;
  int c;
  if (ss__http_ieq(t, n, "identity")) return;
  if (ss__http_ieq(t, n, "gzip") || ss__http_ieq(t, n, "x-gzip")) c = SS_CE_GZIP;
  else if (ss__http_ieq(t, n, "deflate")) c = SS_CE_DEFLATE;
  else c = SS_CE_UNSUPPORTED;
  r->content_encoding = r->content_encoding == SS_CE_IDENTITY ? c : SS_CE_UNSUPPORTED;
}

static int parse_header(const char *l, size_t n, ss__http_req *r, te_state *te) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)l[i])) i++;
  if (i == 0 || i >= n || l[i] != ':') return -1;  /* also refuses folding and "X :" */
  size_t name_len = i++;
  while (i < n && (l[i] == ' ' || l[i] == '\t')) i++;
  size_t e = n;
  while (e > i && (l[e - 1] == ' ' || l[e - 1] == '\t')) e--;
  for (size_t k = i; k < e; k++) {
    unsigned char c = (unsigned char)l[k];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return -1;
  }
  const char *v = l + i;
  size_t vn = e - i;
  if (ss__http_ieq(l, name_len, "content-length")) return parse_content_length(v, vn, r);
  if (ss__http_ieq(l, name_len, "transfer-encoding")) {
    if (te->seen == 0) te->seen = 1;
    each_token(v, vn, te_token, te);
  } else if (ss__http_ieq(l, name_len, "content-encoding")) {
    each_token(v, vn, ce_token, r);
  } else if (ss__http_ieq(l, name_len, "connection")) parse_connection(v, vn, r);
  else if (ss__http_ieq(l, name_len, "expect")) {
    if (!ss__http_ieq(v, vn, "100-continue")) return -1;
    r->expect_continue = 1;
  } else if (ss__http_ieq(l, name_len, "authorization")) {
    r->authorization = v;
    r->authorization_len = vn;
    r->authorizations++;
  } else if (ss__http_ieq(l, name_len, "user-agent")) {
    r->from_shim = vn >= 9 && memcmp(v, "spanshim/", 9) == 0;
  } else if (ss__http_ieq(l, name_len, "spanshim-tree")) {
    r->tree_token = v;
    r->tree_token_len = vn;
  } else if (ss__http_ieq(l, name_len, "content-type")) {
    const char *semi = memchr(v, ';', vn);
    size_t m = semi ? (size_t)(semi - v) : vn;
    while (m > 0 && (v[m - 1] == ' ' || v[m - 1] == '\t')) m--;
    r->ctype = v;
    r->ctype_len = m;
  }
  return 0;
}

int ss__http_parse(const char *buf, size_t len, size_t *scan, ss__http_req *r) {
  size_t skip = 0;  /* RFC 9112 2.2: ignore empty lines before the request line */
  while (skip < len && (buf[skip] == '\r' || buf[skip] == '\n') && skip < 8) skip++;
  if (*scan < skip) *scan = skip;
  size_t end = find_head_end(buf, len, scan);
  if (end == 0) return len > SS_MAX_HEAD ? 431 : 0;
  if (end > SS_MAX_HEAD) return 431;
  memset(r, 0, sizeof *r);
  r->content_length = -1;
  r->head_len = end;
  const char *p = buf + skip, *e = buf + end, *line;
  long n = next_line(&p, e, &line);
  if (n <= 0 || parse_request_line(line, (size_t)n, r) != 0) return 400;
  int headers = 0;
  te_state te = {0, 0, 0};
  while ((n = next_line(&p, e, &line)) > 0) {
    if (++headers > SS_MAX_HEADERS) return 431;
    if (parse_header(line, (size_t)n, r, &te) != 0) return 400;
  }
  if (te.seen) {
    /* The body's length cannot be known unless chunked is the final coding, applied
     * once; Transfer-Encoding means faulty framing in HTTP/1.0 and must not come with a
     * Content-Length (RFC 9112 6.1, 6.3). */
    if (te.seen != 2 || te.after_chunked || r->minor == 0 || r->content_length >= 0)
      return 400;
    r->chunked = 1;
    if (te.other) return 501;  /* a transfer coding we do not implement, under chunked */
  }
  return 1;
}

/* ---- chunked bodies (RFC 9112 7.1) ---- */

enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER, CH_DONE };

static void skip_ws(const char *l, size_t n, size_t *i) {
  while (*i < n && (l[*i] == ' ' || l[*i] == '\t')) (*i)++;
}

/* chunk-size [ chunk-ext ]: hex digits, then *( BWS ";" BWS name [ BWS "=" BWS
 * ( token / quoted-string ) ] ). 0, -1 (malformed) or -2 (a size past 2^60). */
static int parse_chunk_line(const char *l, size_t n, uint64_t *size) {
  size_t i = 0;
  uint64_t x = 0;
  for (; i < n && isxdigit((unsigned char)l[i]); i++) {
    if (x >> 60) return -2;
    int c = (unsigned char)l[i];
    x = x << 4 | (uint64_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
  }
  if (i == 0) return -1;
  *size = x;
  for (;;) {
    skip_ws(l, n, &i);
    if (i == n) return 0;
    if (l[i++] != ';') return -1;
    skip_ws(l, n, &i);
    size_t s = i;
    while (i < n && is_tchar((unsigned char)l[i])) i++;
    if (i == s) return -1;
    skip_ws(l, n, &i);
    if (i == n || l[i] != '=') continue;
    i++;
    skip_ws(l, n, &i);
    if (i < n && l[i] == '"') {
      for (i++;; i++) {
        if (i >= n) return -1;
        unsigned char c = (unsigned char)l[i];
        if (c == '"') break;
        if (c == '\\') {
          if (++i >= n) return -1;
          c = (unsigned char)l[i];
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) return -1;
      }
      i++;
    } else {
      s = i;
      while (i < n && is_tchar((unsigned char)l[i])) i++;
      if (i == s) return -1;
    }
  }
}

/* A trailer field line: name ":" value, as in the head; its content is not used. */
static int trailer_line_ok(const char *l, size_t n) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)l[i])) i++;
  if (i == 0 || i >= n || l[i] != ':') return 0;
  for (i++; i < n; i++) {
    unsigned char c = (unsigned char)l[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
  }
  return 1;
}

int ss__chunked_decode(ss__chunked *c, char *buf, size_t len, size_t max) {
  for (;;) {
    switch (c->state) {
    case CH_SIZE:
    case CH_TRAILER: {
      size_t avail = len - c->pos;
      size_t bound = c->state == CH_SIZE ? SS_MAX_CHUNK_LINE
                                         : SS_MAX_HEAD - (c->trailer < SS_MAX_HEAD ? c->trailer : SS_MAX_HEAD);
      const char *l = buf + c->pos;
      const char *nl = memchr(l, '\n', avail < bound ? avail : bound);
      if (nl == NULL) return avail < bound ? 0 : c->state == CH_SIZE ? 400 : 431;
      size_t n = (size_t)(nl - l);
      c->pos += n + 1;
      if (n && l[n - 1] == '\r') n--;
      if (c->state == CH_TRAILER) {
        if (n == 0) {
          c->state = CH_DONE;
          return 1;
        }
        c->trailer += n + 2;
        if (++c->trailers > SS_MAX_HEADERS) return 431;
        if (!trailer_line_ok(l, n)) return 400;
        break;
      }
      uint64_t size;
      int rc = parse_chunk_line(l, n, &size);
      if (rc == -1) return 400;
      if (rc == -2 || size > max - c->out) return 413;  /* known before the data comes */
      if (size == 0) {
        c->state = CH_TRAILER;
      } else {
        c->left = size;
        c->state = CH_DATA;
      }
      break;
    }
    case CH_DATA: {
      size_t n = len - c->pos;
      if (n > c->left) n = (size_t)c->left;
      if (n == 0) return 0;
      if (c->pos != c->out) memmove(buf + c->out, buf + c->pos, n);
      c->out += n;
      c->pos += n;
      c->left -= n;
      if (c->left == 0) c->state = CH_DATA_END;
      break;
    }
    case CH_DATA_END:
      if (c->pos >= len) return 0;
      if (buf[c->pos] == '\r') {
        if (c->pos + 1 >= len) return 0;
        if (buf[c->pos + 1] != '\n') return 400;
        c->pos++;
      } else if (buf[c->pos] != '\n') {
        return 400;
      }
      c->pos++;
      c->state = CH_SIZE;
      break;
    default:
      return 1;
    }
  }
}

/* Compares in time that depends only on the expected length (the token's), as the
 * Collector's bearertokenauth does with subtle.ConstantTimeCompare. */
static int ct_equal(const char *got, size_t got_len, const char *want, size_t want_len) {
  volatile unsigned char diff = (unsigned char)(got_len != want_len);
  for (size_t i = 0; i < want_len; i++)
    diff |= (unsigned char)((i < got_len ? got[i] : 0) ^ want[i]);
  return diff == 0;
}

int ss__bearer_ok(const ss__opts *o, const char *v, size_t n) {
  size_t i = 6;
  if (n < 7 || strncasecmp(v, "Bearer", 6) != 0 || v[6] != ' ') return 0;
  while (i < n && v[i] == ' ') i++;
  return ct_equal(v + i, n - i, o->listen_token, o->listen_token_len);
}
