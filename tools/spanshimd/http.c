/* http.c - HTTP/1.1 request-head parser (RFC 9112), strict where laxness invites request
 * smuggling (Content-Length with Transfer-Encoding, conflicting Content-Lengths,
 * whitespace before the colon, obsolete line folding), lenient where it costs nothing
 * (bare LF line ends, empty lines before the request line). */
#include <ctype.h>
#include <string.h>

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

static int parse_header(const char *l, size_t n, ss__http_req *r) {
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
  if (ss__http_ieq(l, name_len, "transfer-encoding")) r->chunked = 1;
  else if (ss__http_ieq(l, name_len, "connection")) parse_connection(v, vn, r);
  else if (ss__http_ieq(l, name_len, "expect")) {
    if (!ss__http_ieq(v, vn, "100-continue")) return -1;
    r->expect_continue = 1;
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
  while ((n = next_line(&p, e, &line)) > 0) {
    if (++headers > SS_MAX_HEADERS) return 431;
    if (parse_header(line, (size_t)n, r) != 0) return 400;
  }
  if (r->chunked && r->content_length >= 0) return 400;
  return 1;
}
