/* json.c - strict recursive-descent JSON parser; see json.h for the contract.
 *
 * Recursion depth is bounded by opts.max_depth, so the C stack use is bounded too. Each
 * container collects its children in a growable array of nodes (children own their own
 * storage, so moving the array on growth is safe). */
#include "tools/common/json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef ss__jr parser;  /* the tree parser is a reader that builds nodes */

static int parse_value(parser *p, ss__json *out);

static void fail(parser *p, size_t at, const char *fmt, ...) {
  if (p->failed) return;  /* keep the first, most precise error */
  p->failed = 1;
  if (p->errn == 0) return;
  char what[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  snprintf(p->err, p->errn, "%s at byte %zu", what, at);
}

static void fail_unexpected(parser *p, const char *expected) {
  if (p->pos >= p->n)
    fail(p, p->pos, "unexpected end of input, expected %s", expected);
  else if (p->s[p->pos] >= 0x20 && p->s[p->pos] < 0x7f)
    fail(p, p->pos, "unexpected '%c', expected %s", p->s[p->pos], expected);
  else
    fail(p, p->pos, "unexpected byte 0x%02x, expected %s", p->s[p->pos], expected);
}

static void skip_ws(parser *p) {
  while (p->pos < p->n) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static void node_free(ss__json *j) {
  free(j->key);
  switch (j->type) {
  case SS_JSON_NUMBER: free(j->u.num.text); break;
  case SS_JSON_STRING: free(j->u.s); break;
  case SS_JSON_ARRAY:
  case SS_JSON_OBJECT:
    for (size_t i = 0; i < j->len; i++) node_free(&j->u.kids[i]);
    free(j->u.kids);
    break;
  default: break;
  }
}

static int literal(parser *p, const char *word, ss__json *out, int type, int b) {
  size_t len = strlen(word);
  if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0) {
    fail(p, p->pos, "invalid literal (expected '%s')", word);
    return -1;
  }
  p->pos += len;
  out->type = type;
  out->u.b = b;
  return 0;
}

/* ---- strings ---- */

static int hex4(const unsigned char *h, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = h[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v << 4 | d;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(unsigned cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Length of the valid UTF-8 sequence at s (at most `avail` bytes), or 0 if invalid:
 * overlong forms, surrogates and code points above U+10FFFF are rejected. */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
  unsigned c = s[0];
  size_t need;
  unsigned min, cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { need = 2; min = 0x80; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { need = 3; min = 0x800; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 4; min = 0x10000; cp = c & 0x07; }
  else return 0;
  if (avail < need) return 0;
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return need;
}

/* Decodes one escape at p->pos (just after the backslash) into o; returns bytes written,
 * or 0 on error. */
static size_t unescape(parser *p, char *o) {
  size_t at = p->pos - 1;
  if (p->pos >= p->n) { fail(p, at, "unterminated escape"); return 0; }
  unsigned char c = p->s[p->pos++];
  switch (c) {
  case '"': *o = '"'; return 1;
  case '\\': *o = '\\'; return 1;
  case '/': *o = '/'; return 1;
  case 'b': *o = '\b'; return 1;
  case 'f': *o = '\f'; return 1;
  case 'n': *o = '\n'; return 1;
  case 'r': *o = '\r'; return 1;
  case 't': *o = '\t'; return 1;
  case 'u': break;
  default: fail(p, at, "invalid escape '\\%c'", c >= 0x20 && c < 0x7f ? c : '?'); return 0;
  }
  unsigned cp, lo;
  if (p->n - p->pos < 4 || hex4(p->s + p->pos, &cp) < 0) {
    fail(p, at, "invalid \\u escape");
    return 0;
  }
  p->pos += 4;
  if (cp >= 0xdc00 && cp <= 0xdfff) { fail(p, at, "unpaired low surrogate"); return 0; }
  if (cp >= 0xd800 && cp <= 0xdbff) {
    /* A high surrogate must be followed by an escaped low surrogate. */
    if (p->n - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
        hex4(p->s + p->pos + 2, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
      fail(p, at, "unpaired high surrogate");
      return 0;
    }
    p->pos += 6;
    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
  }
  return put_utf8(cp, o);
}

/* Checks (o == NULL) or decodes into o the string body p->s[p->pos..end), which ends
 * just before its closing quote; returns the decoded length, or (size_t)-1 after fail(). */
static size_t string_body(parser *p, size_t end, char *o) {
  char tmp[4];
  size_t len = 0;
  while (p->pos < end) {
    unsigned char c = p->s[p->pos];
    if (c == '\\') {
      p->pos++;
      size_t k = unescape(p, o ? o + len : tmp);
      if (k == 0) return (size_t)-1;
      len += k;
    } else if (c < 0x20) {
      fail(p, p->pos, "control character 0x%02x in string", c);
      return (size_t)-1;
    } else {
      size_t k = utf8_seq(p->s + p->pos, end - p->pos);
      if (k == 0) { fail(p, p->pos, "invalid UTF-8 in string"); return (size_t)-1; }
      if (o) memcpy(o + len, p->s + p->pos, k);
      len += k;
      p->pos += k;
    }
  }
  return len;
}

/* The raw extent of the string at p->pos (its opening quote): its body is
 * s[*start..*end); p->pos is left at the opening quote. Returns 1 when the body is plain
 * (printable ASCII, no escapes: it is its own decoded form, nothing to check), 0 when
 * string_body must check and decode it, -1 when it is not closed. */
static int string_extent(parser *p, size_t *start, size_t *end) {
  size_t b = p->pos + 1, e = b;
  int plain = 1;
  while (e < p->n) {
    unsigned char c = p->s[e];
    if (c == '"') break;
    if (c == '\\') {
      plain = 0;
      e += 2;
      continue;
    }
    if (c < 0x20 || c >= 0x80) plain = 0;
    e++;
  }
  if (e >= p->n) { fail(p, p->pos, "unterminated string"); return -1; }
  *start = b;
  *end = e;
  return plain;
}

/* Parses a string starting at the opening quote; *out gets a NUL-terminated copy. */
static int parse_string(parser *p, char **out, size_t *out_len) {
  size_t start, end;
  if (string_extent(p, &start, &end) < 0) return -1;
  /* The decoded string is never longer than the raw one. */
  char *buf = malloc(end - start + 1);
  if (!buf) { fail(p, start, "out of memory"); return -1; }
  p->pos = start;
  size_t len = string_body(p, end, buf);
  if (len == (size_t)-1) {
    free(buf);
    return -1;
  }
  p->pos = end + 1;
  buf[len] = '\0';
  *out = buf;
  *out_len = len;
  return 0;
}

/* ---- numbers ---- */

static size_t digits(parser *p) {
  size_t k = 0;
  while (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') p->pos++, k++;
  return k;
}

/* Checks the number at p->pos against the JSON grammar and moves past it. */
static int scan_number(parser *p) {
  if (p->s[p->pos] == '-') p->pos++;
  if (p->pos < p->n && p->s[p->pos] == '0') {
    p->pos++;
    if (p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
      fail(p, p->pos, "leading zero in number");
      return -1;
    }
  } else if (digits(p) == 0) {
    fail_unexpected(p, "digit");
    return -1;
  }
  if (p->pos < p->n && p->s[p->pos] == '.') {
    p->pos++;
    if (digits(p) == 0) { fail_unexpected(p, "digit after '.'"); return -1; }
  }
  if (p->pos < p->n && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    p->pos++;
    if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (digits(p) == 0) { fail_unexpected(p, "digit in exponent"); return -1; }
  }
  return 0;
}

static int parse_number(parser *p, ss__json *out) {
  size_t start = p->pos;
  if (scan_number(p) < 0) return -1;
  size_t len = p->pos - start;
  char *text = malloc(len + 1);
  if (!text) { fail(p, start, "out of memory"); return -1; }
  memcpy(text, p->s + start, len);
  text[len] = '\0';
  out->type = SS_JSON_NUMBER;
  out->u.num.text = text;
  /* The grammar above already matched, so strtod (C locale in the tools) cannot stop
   * early; huge exponents give +-HUGE_VAL, which is what the literal means. */
  out->u.num.d = strtod(text, NULL);
  return 0;
}

/* ---- containers ---- */

static int push_kid(parser *p, ss__json **kids, size_t *len, size_t *cap, ss__json *kid) {
  if (*len == *cap) {
    size_t ncap = *cap ? *cap * 2 : 4;
    ss__json *nk = realloc(*kids, ncap * sizeof(*nk));
    if (!nk) { fail(p, p->pos, "out of memory"); return -1; }
    *kids = nk;
    *cap = ncap;
  }
  (*kids)[(*len)++] = *kid;
  return 0;
}

/* Parses one element or member into kid; for objects the key comes first. */
static int parse_item(parser *p, int is_obj, ss__json *kid) {
  memset(kid, 0, sizeof(*kid));
  skip_ws(p);
  if (is_obj) {
    if (p->pos >= p->n || p->s[p->pos] != '"') { fail_unexpected(p, "string key"); return -1; }
    if (parse_string(p, &kid->key, &kid->key_len) < 0) return -1;
    skip_ws(p);
    if (p->pos >= p->n || p->s[p->pos] != ':') {
      fail_unexpected(p, "':'");
      goto bad;
    }
    p->pos++;
    skip_ws(p);
  }
  if (parse_value(p, kid) < 0) goto bad;
  return 0;
bad:
  node_free(kid);
  return -1;
}

static int parse_container(parser *p, ss__json *out, int is_obj) {
  char close = is_obj ? '}' : ']';
  if (++p->depth > p->max_depth) {
    fail(p, p->pos, "nesting deeper than %d", p->max_depth);
    return -1;
  }
  p->pos++;
  out->type = is_obj ? SS_JSON_OBJECT : SS_JSON_ARRAY;
  ss__json *kids = NULL, kid;
  size_t len = 0, cap = 0;
  skip_ws(p);
  if (p->pos < p->n && p->s[p->pos] == close) {
    p->pos++;
    goto done;
  }
  for (;;) {
    if (parse_item(p, is_obj, &kid) < 0) goto bad;
    if (push_kid(p, &kids, &len, &cap, &kid) < 0) { node_free(&kid); goto bad; }
    skip_ws(p);
    if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
    if (p->pos < p->n && p->s[p->pos] == close) { p->pos++; break; }
    fail_unexpected(p, is_obj ? "',' or '}'" : "',' or ']'");
    goto bad;
  }
done:
  p->depth--;
  out->u.kids = kids;
  out->len = len;
  return 0;
bad:
  for (size_t i = 0; i < len; i++) node_free(&kids[i]);
  free(kids);
  return -1;
}

static int parse_value(parser *p, ss__json *out) {
  if (p->pos >= p->n) { fail_unexpected(p, "a value"); return -1; }
  switch (p->s[p->pos]) {
  case '{': return parse_container(p, out, 1);
  case '[': return parse_container(p, out, 0);
  case '"':
    out->type = SS_JSON_STRING;
    return parse_string(p, &out->u.s, &out->len);
  case 't': return literal(p, "true", out, SS_JSON_BOOL, 1);
  case 'f': return literal(p, "false", out, SS_JSON_BOOL, 0);
  case 'n': return literal(p, "null", out, SS_JSON_NULL, 0);
  default:
    if (p->s[p->pos] == '-' || (p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
      return parse_number(p, out);
    fail_unexpected(p, "a value");
    return -1;
  }
}

ss__json *ss__json_parse_opts(const char *s, size_t n, const ss__json_opts *o, char *err,
                              size_t errn) {
  parser p = {.s = (const unsigned char *)s, .n = s ? n : 0, .err = err, .errn = errn};
  p.max_depth = o && o->max_depth > 0 ? o->max_depth : SS_JSON_DEFAULT_DEPTH;
  if (errn) err[0] = '\0';
  ss__json *root = calloc(1, sizeof(*root));
  if (!root) {
    fail(&p, 0, "out of memory");
    return NULL;
  }
  skip_ws(&p);
  if (parse_value(&p, root) < 0) {
    free(root);
    return NULL;
  }
  skip_ws(&p);
  if (p.pos < p.n) {
    fail(&p, p.pos, "trailing characters after the value");
    ss__json_free(root);
    return NULL;
  }
  return root;
}

ss__json *ss__json_parse(const char *s, size_t n, char *err, size_t errn) {
  return ss__json_parse_opts(s, n, NULL, err, errn);
}

void ss__json_free(ss__json *j) {
  if (!j) return;
  node_free(j);
  free(j);
}

/* ---- accessors ---- */

const ss__json *ss__json_get(const ss__json *obj, const char *key) {
  if (!obj || obj->type != SS_JSON_OBJECT || !key) return NULL;
  size_t klen = strlen(key);
  for (size_t i = obj->len; i-- > 0;) {
    const ss__json *k = &obj->u.kids[i];
    if (k->key_len == klen && memcmp(k->key, key, klen) == 0) return k;
  }
  return NULL;
}

const ss__json *ss__json_at(const ss__json *j, size_t i) {
  if (!j || (j->type != SS_JSON_ARRAY && j->type != SS_JSON_OBJECT) || i >= j->len)
    return NULL;
  return &j->u.kids[i];
}

size_t ss__json_count(const ss__json *j) {
  if (!j || (j->type != SS_JSON_ARRAY && j->type != SS_JSON_OBJECT)) return 0;
  return j->len;
}

const char *ss__json_str(const ss__json *j, size_t *len) {
  if (!j || j->type != SS_JSON_STRING) return NULL;
  if (len) *len = j->len;
  return j->u.s;
}

int ss__json_is(const ss__json *j, int type) {
  return j != NULL && j->type == type;
}

int ss__json_int_digits(const char *t, size_t n, char *out, size_t outn) {
  size_t i = 0, k = 0;
  int neg = i < n && t[i] == '-';
  i += (size_t)neg;
  const char *ip = t + i, *fp = NULL;
  size_t il = 0, fl = 0;
  while (i < n && t[i] >= '0' && t[i] <= '9') i++, il++;
  if (il == 0) return -EINVAL;
  if (i < n && t[i] == '.') {
    fp = t + ++i;
    while (i < n && t[i] >= '0' && t[i] <= '9') i++, fl++;
    if (fl == 0) return -EINVAL;
  }
  long e = 0;
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    int eneg = ++i < n && t[i] == '-';
    if (i < n && (t[i] == '-' || t[i] == '+')) i++;
    size_t el = 0;
    for (; i < n && t[i] >= '0' && t[i] <= '9'; i++, el++)
      if (e < 100000) e = e * 10 + (t[i] - '0');
    if (el == 0) return -EINVAL;
    if (eneg) e = -e;
  }
  if (i != n) return -EINVAL;
  /* The value is the digits ip[0..il) fp[0..fl) times 10^(e - fl): integral when every
   * digit right of the point that the exponent leaves is 0. */
  long shift = e - (long)fl; /* > 0: zeros appended; < 0: digits cut (must be 0) */
  size_t nd = il + fl, keep = shift >= 0 ? nd : (size_t)-shift >= nd ? 0 : nd - (size_t)-shift;
  for (size_t d = keep; d < nd; d++)
    if ((d < il ? ip[d] : fp[d - il]) != '0') return -EINVAL;
  if (neg && outn > 1) out[k++] = '-';
  int lead = 1;
  for (size_t d = 0; d < keep; d++) {
    char c = d < il ? ip[d] : fp[d - il];
    if (lead && c == '0') continue;
    lead = 0;
    if (k + 1 >= outn) return -ERANGE;
    out[k++] = c;
  }
  for (long z = 0; !lead && z < shift; z++) {
    if (k + 1 >= outn) return -ERANGE;
    out[k++] = '0';
  }
  if (lead) k = 0, out[k++] = '0'; /* zero ("-0" too) */
  out[k] = '\0';
  return 0;
}

/* The decimal digits of an integer-valued node (see ss__json_int_digits), a NUMBER or a
 * STRING of the same shape, into buf[0..24); 0, -EINVAL or -ERANGE. */
static int int_text(const ss__json *j, char buf[24]) {
  if (!j) return -EINVAL;
  if (j->type == SS_JSON_NUMBER)
    return ss__json_int_digits(j->u.num.text, strlen(j->u.num.text), buf, 24);
  if (j->type == SS_JSON_STRING && strlen(j->u.s) == j->len)
    return ss__json_int_digits(j->u.s, j->len, buf, 24);
  return -EINVAL;
}

int ss__json_uint64(const ss__json *j, uint64_t *out) {
  char buf[24];
  int rc = int_text(j, buf);
  if (rc < 0) return rc;
  if (buf[0] == '-') return -EINVAL;
  uint64_t v = 0;
  for (const char *t = buf; *t; t++) {
    unsigned d = (unsigned)(*t - '0');
    if (v > (UINT64_MAX - d) / 10) return -ERANGE;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int ss__json_int64(const ss__json *j, int64_t *out) {
  char buf[24];
  int rc = int_text(j, buf);
  if (rc < 0) return rc;
  const char *t = buf;
  int neg = *t == '-';
  uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  for (t += neg; *t; t++) {
    unsigned d = (unsigned)(*t - '0');
    if (v > (lim - d) / 10) return -ERANGE;
    v = v * 10 + d;
  }
  *out = neg ? (int64_t)(0 - v) : (int64_t)v;
  return 0;
}

/* ---- the pull reader ---- */

void ss__jr_init(ss__jr *r, const char *s, size_t n, int max_depth, char *err, size_t errn) {
  memset(r, 0, sizeof *r);
  r->s = (const unsigned char *)s;
  r->n = s ? n : 0;
  r->max_depth = max_depth > 0 ? max_depth : SS_JSON_DEFAULT_DEPTH;
  r->err = err;
  r->errn = errn;
  if (errn) err[0] = '\0';
}

void ss__jr_init_at(ss__jr *r, const char *s, size_t n, size_t pos, int max_depth, char *err,
                    size_t errn) {
  ss__jr_init(r, s, n, max_depth, err, errn);
  r->pos = pos < r->n ? pos : r->n;
}

size_t ss__jr_pos(const ss__jr *r) { return r->pos; }

int ss__jr_peek(ss__jr *r) {
  if (r->failed) return -1;
  skip_ws(r);
  if (r->pos >= r->n) { fail_unexpected(r, "a value"); return -1; }
  switch (r->s[r->pos]) {
  case '{': return SS_JSON_OBJECT;
  case '[': return SS_JSON_ARRAY;
  case '"': return SS_JSON_STRING;
  case 't':
  case 'f': return SS_JSON_BOOL;
  case 'n': return SS_JSON_NULL;
  default:
    if (r->s[r->pos] == '-' || (r->s[r->pos] >= '0' && r->s[r->pos] <= '9'))
      return SS_JSON_NUMBER;
    fail_unexpected(r, "a value");
    return -1;
  }
}

static int jr_open(ss__jr *r, char c) {
  if (ss__jr_peek(r) < 0) return -1;
  if (r->s[r->pos] != c) {
    fail_unexpected(r, c == '{' ? "'{'" : "'['");
    return -1;
  }
  if (++r->depth > r->max_depth) {
    fail(r, r->pos, "nesting deeper than %d", r->max_depth);
    return -1;
  }
  r->pos++;
  r->first = 1;
  return 0;
}

int ss__jr_object(ss__jr *r) { return jr_open(r, '{'); }
int ss__jr_array(ss__jr *r) { return jr_open(r, '['); }

/* Before the next item of a container: 1 (an item follows), 0 (closed), -1. */
static int jr_more(ss__jr *r, char close) {
  if (r->failed) return -1;
  skip_ws(r);
  if (r->pos < r->n && r->s[r->pos] == close) {
    r->pos++;
    r->depth--;
    r->first = 0;
    return 0;
  }
  if (!r->first) {
    if (r->pos >= r->n || r->s[r->pos] != ',') {
      fail_unexpected(r, close == '}' ? "',' or '}'" : "',' or ']'");
      return -1;
    }
    r->pos++;
    skip_ws(r);
  }
  r->first = 0;
  return 1;
}

int ss__jr_next_key(ss__jr *r, const char **key, size_t *len) {
  int rc = jr_more(r, '}');
  if (rc <= 0) return rc;
  if (r->pos >= r->n || r->s[r->pos] != '"') { fail_unexpected(r, "string key"); return -1; }
  size_t start, end;
  int plain = string_extent(r, &start, &end);
  if (plain < 0) return -1;
  /* Keys are names: short ones are decoded into the reader, longer ones checked only
   * (no schema has them, so they come back as given, escapes and all). */
  r->pos = start;
  if (plain && end - start < sizeof r->key) {
    memcpy(r->key, r->s + start, end - start);
    r->key[end - start] = '\0';
    *key = r->key;
    *len = end - start;
  } else if (end - start < sizeof r->key) {
    size_t k = string_body(r, end, r->key);
    if (k == (size_t)-1) return -1;
    r->key[k] = '\0';
    *key = r->key;
    *len = k;
  } else {
    if (!plain && string_body(r, end, NULL) == (size_t)-1) return -1;
    *key = (const char *)r->s + start;
    *len = end - start;
  }
  r->pos = end + 1;
  skip_ws(r);
  if (r->pos >= r->n || r->s[r->pos] != ':') { fail_unexpected(r, "':'"); return -1; }
  r->pos++;
  return 1;
}

int ss__jr_next_item(ss__jr *r) { return jr_more(r, ']'); }

int ss__jr_string(ss__jr *r, size_t *max_len) {
  if (ss__jr_peek(r) != SS_JSON_STRING) {
    if (!r->failed) fail_unexpected(r, "a string");
    return -1;
  }
  size_t start, end, at = r->pos;
  int plain = string_extent(r, &start, &end);
  if (plain < 0) return -1;
  r->pos = start;
  if (!plain && string_body(r, end, NULL) == (size_t)-1) return -1;
  r->pos = at;
  r->str_start = start;
  r->str_end = end;
  r->str_plain = plain;
  *max_len = end - start;
  return 0;
}

size_t ss__jr_string_copy(ss__jr *r, char *out) {
  size_t k, start = r->str_start, end = r->str_end;  /* as ss__jr_string found them */
  if (r->str_plain) {
    memcpy(out, r->s + start, end - start);
    k = end - start;
  } else {
    r->pos = start;
    k = string_body(r, end, out);
  }
  r->pos = end + 1;
  out[k] = '\0';
  return k;
}

int ss__jr_number(ss__jr *r, const char **text, size_t *len) {
  if (ss__jr_peek(r) != SS_JSON_NUMBER) {
    if (!r->failed) fail_unexpected(r, "a number");
    return -1;
  }
  size_t start = r->pos;
  if (scan_number(r) < 0) return -1;
  *text = (const char *)r->s + start;
  *len = r->pos - start;
  return 0;
}

int ss__jr_literal(ss__jr *r) {
  ss__json tmp;
  int t = ss__jr_peek(r);
  if (t != SS_JSON_BOOL && t != SS_JSON_NULL) {
    if (!r->failed) fail_unexpected(r, "true, false or null");
    return -1;
  }
  char c = (char)r->s[r->pos];
  if (literal(r, c == 't' ? "true" : c == 'f' ? "false" : "null", &tmp, t, c == 't') < 0)
    return -1;
  return c == 't';
}

int ss__jr_skip(ss__jr *r) {
  const char *k;
  size_t n;
  int rc;
  switch (ss__jr_peek(r)) {
  case SS_JSON_OBJECT:
    if (ss__jr_object(r) < 0) return -1;
    while ((rc = ss__jr_next_key(r, &k, &n)) == 1)
      if (ss__jr_skip(r) < 0) return -1;
    return rc;
  case SS_JSON_ARRAY:
    if (ss__jr_array(r) < 0) return -1;
    while ((rc = ss__jr_next_item(r)) == 1)
      if (ss__jr_skip(r) < 0) return -1;
    return rc;
  case SS_JSON_STRING:
    if (ss__jr_string(r, &n) < 0) return -1;
    r->pos = r->str_end + 1;
    return 0;
  case SS_JSON_NUMBER: return ss__jr_number(r, &k, &n);
  case SS_JSON_BOOL:
  case SS_JSON_NULL: return ss__jr_literal(r) < 0 ? -1 : 0;
  default: return -1;
  }
}

int ss__jr_end(ss__jr *r) {
  if (r->failed) return -1;
  skip_ws(r);
  if (r->pos < r->n) {
    fail(r, r->pos, "trailing characters after the value");
    return -1;
  }
  return 0;
}

void ss__jr_fail(ss__jr *r, const char *what) { fail(r, r->pos, "%s", what); }
