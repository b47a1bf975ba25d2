/* http1.c - the incremental HTTP/1.x parser (see http1.h). step() decides one byte at a
 * time wherever a byte changes the state (line ends, ':', SP, list separators, digits of
 * Content-Length and chunk sizes); the runs between them (targets, names, plain values,
 * reason phrases, bodies) are taken in bulk. Header values are streamed straight into their
 * ss__h1_head buffers, so there is no line buffer: only the field name (up to sizeof name)
 * and list tokens (Connection, Transfer-Encoding, Expect) are kept. */
#include "http1.h" /* not runtime/http1.h: tests/bench/h1_cost.c includes this file */
#include "ids.h"

#include <string.h>
#if defined(__SSE2__) && !defined(SS_H1_NO_SSE2)
#include <emmintrin.h>
#define SSE2 1
#else
#define SSE2 0
#endif

enum phase {
  P_START,          /* before a message's first byte (blank lines tolerated for requests) */
  P_METHOD,         /* request line */
  P_TARGET,
  P_RL_VERSION,
  P_SL_VERSION,     /* status line */
  P_STATUS,
  P_REASON,
  P_LF,             /* after CR: LF must follow, then it is handled as in phase cr_from */
  P_LINE,           /* at the start of a header line (a pending field may be folded on) */
  P_NAME,
  P_VALUE,
  P_BODY_LEN,       /* body framed by Content-Length */
  P_BODY_CLOSE,     /* response body framed by the end of the stream */
  P_CHUNK_SIZE,
  P_CHUNK_EXT,
  P_CHUNK_DATA,
  P_CHUNK_DATA_END, /* the CRLF after chunk data */
  P_TRAILER_START,  /* at the start of a trailer line */
  P_TRAILER_LINE,
  P_DEAD,           /* BAD, closed, or tunnelled: nothing more is parsed */
};

/* Header fields the parser looks at. */
enum { H_OTHER, H_HOST, H_UA, H_TP, H_TS, H_CL, H_TE, H_CONN, H_EXPECT };

/* What a response answers (the request side's method). */
enum { Q_NORMAL, Q_HEAD, Q_CONNECT };

#define MAX_BLANK_LINES 4

static const char version_prefix[] = "HTTP/1.";

/* Character classes: token characters (RFC 9110 5.6.2), and method characters (upper-case
 * letters, digits, '-' and '_': VERSION-CONTROL, M-SEARCH). */
enum { C_TCHAR = 1, C_METHOD = 2 };
static const uint8_t cls[256] = {
    ['a' ... 'z'] = C_TCHAR,
    ['A' ... 'Z'] = C_TCHAR | C_METHOD,
    ['0' ... '9'] = C_TCHAR | C_METHOD,
    ['-'] = C_TCHAR | C_METHOD,
    ['_'] = C_TCHAR | C_METHOD,
    ['!'] = C_TCHAR, ['#'] = C_TCHAR, ['$'] = C_TCHAR, ['%'] = C_TCHAR, ['&'] = C_TCHAR,
    ['\''] = C_TCHAR, ['*'] = C_TCHAR, ['+'] = C_TCHAR, ['.'] = C_TCHAR, ['^'] = C_TCHAR,
    ['`'] = C_TCHAR, ['|'] = C_TCHAR, ['~'] = C_TCHAR,
};
/* Request-target bytes: anything above SP but DEL (obs-text too). */
static const uint8_t vis[256] = {['!' ... '~'] = 1, [0x80 ... 0xff] = 1};

static int is_tchar(unsigned c) { return cls[c & 0xff] & C_TCHAR; }
static int is_method_char(unsigned c) { return cls[c & 0xff] & C_METHOD; }

static unsigned lower(unsigned c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

static int is_ows(unsigned c) { return c == ' ' || c == '\t'; }

/* Unaligned loads (one mov each); compared only with loads of the same kind, so the byte
 * order does not matter. */
static uint64_t ld8(const void *s) {
  uint64_t w;
  memcpy(&w, s, 8);
  return w;
}
static uint32_t ld4(const void *s) {
  uint32_t w;
  memcpy(&w, s, 4);
  return w;
}

/* Whether 4 or 8 token bytes at s are the lower-case letters and '-' of w, in any case: OR
 * 0x20 turns only 'A'..'Z' into 'a'..'z' and nothing else in a token into a letter or '-'
 * (0x0d | 0x20 is '-', but CR is not a token byte). */
static int ci4(const unsigned char *s, const char *w) { return (ld4(s) | 0x20202020u) == ld4(w); }
static int ci8(const unsigned char *s, const char *w) {
  return (ld8(s) | 0x2020202020202020ull) == ld8(w);
}

static int hexval(unsigned c) {
  if (c >= '0' && c <= '9') return (int)(c - '0');
  c = lower(c);
  if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
  return -1;
}

static int bad(ss__h1 *p) {
  p->phase = P_DEAD;
  return SS_H1_BAD;
}

static char *dst(ss__h1 *p) { return (char *)&p->head + p->dst_off; }

static void reset_head(ss__h1 *p) {
  ss__h1_head *h = &p->head;
  h->method[0] = h->target[0] = h->host[0] = h->user_agent[0] = '\0';
  h->traceparent[0] = h->tracestate[0] = '\0';
  h->version_minor = h->status = 0;
  h->content_length = -1;
  h->chunked = h->conn_close = h->conn_keepalive = h->conn_upgrade = 0;
  h->expect_continue = h->has_traceparent = h->target_truncated = 0;
  h->persistent = h->tunnel = 0;
  p->pending = p->te_seen = p->te_chunked = 0;
  p->val_len = 0;
}

/* The next message starts with the next byte. */
static int msg_end(ss__h1 *p) {
  p->phase = P_START;
  p->count = 0;
  p->vpos = 0;
  return SS_H1_END;
}

/* Content-Length: a list of equal decimal values ("5" or "5, 5"), equal across fields. */
static int cl_elem_end(ss__h1 *p) {
  if (!p->ndig) return -1;
  if (p->head.content_length >= 0 && p->head.content_length != p->num) return -1;
  p->head.content_length = p->num;
  p->num = 0;
  p->ndig = p->ws_after = 0;
  return 0;
}

static int cl_char(ss__h1 *p, unsigned c) {
  if (c >= '0' && c <= '9') {
    if (p->ws_after || p->num > (INT64_MAX - (int64_t)(c - '0')) / 10) return -1;
    p->num = p->num * 10 + (int64_t)(c - '0');
    if (p->ndig < 255) p->ndig++;
    return 0;
  }
  if (c == ' ' || c == '\t') {
    if (p->ndig) p->ws_after = 1;
    return 0;
  }
  if (c == ',') return cl_elem_end(p);
  return -1;
}

static int tok_is(const ss__h1 *p, const char *word, size_t n) {
  return p->tok_len == n && memcmp(p->tok, word, n) == 0;
}
#define TOK_IS(p, lit) tok_is(p, lit, sizeof lit - 1)

/* One token of a Connection / Transfer-Encoding / Expect list is complete. */
static void tok_end(ss__h1 *p) {
  if (p->tok_len == 0) return;
  switch (p->hdr) {
  case H_TE:
    p->te_seen = 1;
    p->te_chunked = (uint8_t)TOK_IS(p, "chunked"); /* only the last coding frames */
    break;
  case H_CONN:
    if (TOK_IS(p, "close")) p->head.conn_close = 1;
    if (TOK_IS(p, "keep-alive")) p->head.conn_keepalive = 1;
    if (TOK_IS(p, "upgrade")) p->head.conn_upgrade = 1;
    break;
  case H_EXPECT:
    if (TOK_IS(p, "100-continue")) p->head.expect_continue = 1;
    break;
  }
  p->tok_len = 0;
}

static void tok_char(ss__h1 *p, unsigned c) {
  if (p->tok_quote) { /* a quoted-string parameter value: commas inside do not count */
    if (p->tok_quote == 2)
      p->tok_quote = 1;
    else if (c == '\\')
      p->tok_quote = 2;
    else if (c == '"')
      p->tok_quote = 0;
  } else if (c == ',') {
    tok_end(p);
    p->tok_skip = 0;
  } else if (p->tok_skip) {
    if (c == '"') p->tok_quote = 1; /* parameters (";q=1") or junk: up to the next comma */
  } else if (is_tchar(c)) {
    if (p->tok_len < sizeof p->tok)
      p->tok[p->tok_len++] = (char)lower(c);
    else
      p->tok_len = sizeof p->tok + 1; /* too long to be a word we know */
  } else {
    tok_end(p);
    if (c == '"') p->tok_quote = 1;
    if (c != ' ' && c != '\t') p->tok_skip = 1;
  }
}

/* A value byte after the leading OWS: store it, and interpret it for the framing fields. */
static int value_char(ss__h1 *p, unsigned c) {
  int ows = c == ' ' || c == '\t';
  if (p->skip_ows) {
    if (ows) return 0;
    p->skip_ows = 0;
  }
  if (p->dst_cap) {
    uint32_t at = (uint32_t)p->dst_base + p->val_len;
    if (at + 1 < p->dst_cap) dst(p)[at] = (char)c;
  }
  p->val_len++;
  if (!ows) p->val_trim = p->val_len;
  if (p->hdr == H_CL) return cl_char(p, c);
  if (p->hdr == H_TE || p->hdr == H_CONN || p->hdr == H_EXPECT) tok_char(p, c);
  return 0;
}

static void set_dst(ss__h1 *p, size_t off, size_t cap) {
  p->dst_off = (uint16_t)off;
  p->dst_cap = (uint16_t)cap;
  p->dst_base = 0;
}

/* Which field a name of len token bytes is, in any case: by length first, so most names cost
 * one switch, then whole words at once (overlapping loads). */
static int field_id(const unsigned char *n, size_t len) {
  switch (len) {
  case 4:
    return ci4(n, "host") ? H_HOST : H_OTHER;
  case 6:
    return ci4(n, "expe") && ci4(n + 2, "pect") ? H_EXPECT : H_OTHER;
  case 10:
    if (ci8(n, "user-age") && ci4(n + 6, "gent")) return H_UA;
    if (ci8(n, "tracesta") && ci4(n + 6, "tate")) return H_TS;
    if (ci8(n, "connecti") && ci4(n + 6, "tion")) return H_CONN;
    return H_OTHER;
  case 11:
    return ci8(n, "tracepar") && ci4(n + 7, "rent") ? H_TP : H_OTHER;
  case 14:
    return ci8(n, "content-") && ci8(n + 6, "t-length") ? H_CL : H_OTHER;
  case 17:
    return ci8(n, "transfer") && ci8(n + 8, "-encodin") && ci8(n + 9, "encoding") ? H_TE
                                                                                  : H_OTHER;
  default:
    return H_OTHER;
  }
}

/* The field name ended at ':': decide what the value means and where it goes. */
static void name_end(ss__h1 *p, int hdr) {
  ss__h1_head *h = &p->head;
  p->hdr = (uint8_t)hdr;
  p->dst_cap = 0;
  if (p->hdr == H_HOST) {
    if (!h->host[0]) set_dst(p, offsetof(ss__h1_head, host), sizeof h->host);
  } else if (p->hdr == H_UA) {
    if (!h->user_agent[0])
      set_dst(p, offsetof(ss__h1_head, user_agent), sizeof h->user_agent);
  } else if (p->hdr == H_TP) {
    if (!h->has_traceparent)
      set_dst(p, offsetof(ss__h1_head, traceparent), sizeof h->traceparent);
  } else if (p->hdr == H_TS) {
    size_t len = strlen(h->tracestate);
    if (len == 0) {
      set_dst(p, offsetof(ss__h1_head, tracestate), sizeof h->tracestate);
    } else if (len + 2 < sizeof h->tracestate) {
      set_dst(p, offsetof(ss__h1_head, tracestate), sizeof h->tracestate);
      h->tracestate[len] = ',';
      p->dst_base = (uint16_t)(len + 1);
    }
  }
  p->val_len = p->val_trim = 0;
  p->num = 0;
  p->ndig = p->ws_after = 0;
  p->tok_len = p->tok_skip = p->tok_quote = 0;
  p->skip_ows = 1;
  p->pending = 1;
}

/* The field's last line ended and the next line is not a continuation of it. */
static int field_end(ss__h1 *p) {
  p->pending = 0;
  if (p->hdr == H_CL) return cl_elem_end(p);
  if (p->hdr == H_TE || p->hdr == H_CONN || p->hdr == H_EXPECT) tok_end(p);
  if (p->dst_cap) {
    uint32_t at = (uint32_t)p->dst_base + p->val_trim;
    if (p->val_trim == 0 && p->dst_base) at = p->dst_base - 1u; /* empty: drop the ',' */
    int cut = at + 1 > p->dst_cap;
    if (cut) at = p->dst_cap - 1u;
    dst(p)[at] = '\0';
    /* W3C: a tracestate over 512 characters loses long members, then members at its end;
     * the one the buffer cut is incomplete. */
    if (cut && p->hdr == H_TS) ss__tracestate_trim(dst(p), at, 1);
    if (p->hdr == H_TP && p->val_trim) p->head.has_traceparent = 1;
  }
  return 0;
}

static int q_front(const ss__h1 *p) { return p->q_len ? p->q[p->q_first] : Q_NORMAL; }

static void q_pop(ss__h1 *p) {
  if (!p->q_len) return;
  p->q_first = (uint8_t)((p->q_first + 1) % sizeof p->q);
  p->q_len--;
}

/* The blank line ended a request head: frame the body. */
static int request_head_done(ss__h1 *p) {
  ss__h1_head *h = &p->head;
  int end;
  if (p->te_seen) {
    if (!p->te_chunked) return bad(p); /* a request must end in chunked (RFC 9112 6.3) */
    h->chunked = 1;
  }
  h->persistent = (uint8_t)(!h->conn_close && (h->version_minor >= 1 || h->conn_keepalive));
  if (h->chunked) {
    p->phase = P_CHUNK_SIZE;
    p->count = 0;
    p->num = 0;
    p->ndig = p->ws_after = 0;
    return SS_H1_HEAD;
  }
  if (h->content_length > 0 && memcmp(h->method, "CONNECT", 8) != 0) {
    p->phase = P_BODY_LEN;
    p->remaining = h->content_length;
    return SS_H1_HEAD;
  }
  end = msg_end(p);
  return SS_H1_HEAD | end;
}

/* The blank line ended a response head: interim, bodiless, or framed how. */
static int response_head_done(ss__h1 *p) {
  ss__h1_head *h = &p->head;
  int st = h->status, asked = q_front(p);
  h->chunked = (uint8_t)(p->te_seen && p->te_chunked);
  h->persistent = (uint8_t)(!h->conn_close && (h->version_minor >= 1 || h->conn_keepalive));
  if (st >= 100 && st < 200 && st != 101) {
    msg_end(p); /* interim: the final response to the same request follows */
    return SS_H1_HEAD;
  }
  q_pop(p);
  if (st == 101 || (asked == Q_CONNECT && st >= 200 && st < 300)) {
    h->tunnel = 1;
    h->persistent = 0;
    p->phase = P_DEAD;
    return SS_H1_HEAD | SS_H1_END;
  }
  if (asked == Q_HEAD || st == 204 || st == 304) return SS_H1_HEAD | msg_end(p);
  if (h->chunked) {
    p->phase = P_CHUNK_SIZE;
    p->count = 0;
    p->num = 0;
    p->ndig = p->ws_after = 0;
    return SS_H1_HEAD;
  }
  if (!p->te_seen && h->content_length >= 0) {
    if (h->content_length == 0) return SS_H1_HEAD | msg_end(p);
    p->phase = P_BODY_LEN;
    p->remaining = h->content_length;
    return SS_H1_HEAD;
  }
  h->persistent = 0;
  p->phase = P_BODY_CLOSE;
  return SS_H1_HEAD;
}

static int head_done(ss__h1 *p) {
  return p->role == SS_H1_REQUEST ? request_head_done(p) : response_head_done(p);
}

static int chunk_size_done(ss__h1 *p) {
  if (!p->ndig) return bad(p);
  p->count = 0;
  if (p->num == 0) {
    p->phase = P_TRAILER_START;
    return 0;
  }
  p->remaining = p->num;
  p->phase = P_CHUNK_DATA;
  return 0;
}

/* Start of a message: leading blank lines (requests), else the first start-line byte. */
static int start_char(ss__h1 *p, unsigned c) {
  if (p->role == SS_H1_REQUEST) {
    if (c == '\r' || c == '\n') {
      if (c == '\n' && ++p->vpos > MAX_BLANK_LINES) return bad(p);
      if (c == '\r') {
        p->cr_from = P_START;
        p->phase = P_LF;
      }
      return 0;
    }
    if (c < 'A' || c > 'Z') return bad(p);
    reset_head(p);
    p->head.method[0] = (char)c;
    p->val_len = 1;
    p->phase = P_METHOD;
    return 0;
  }
  if (c != 'H') return bad(p);
  reset_head(p);
  p->vpos = 1;
  p->phase = P_SL_VERSION;
  return 0;
}

/* "HTTP/1.x" of either start line; vpos is how much of it matched so far. */
static int version_char(ss__h1 *p, unsigned c) {
  if (p->vpos < sizeof version_prefix - 1) {
    if (c != (unsigned char)version_prefix[p->vpos]) return bad(p);
    p->vpos++;
    return 0;
  }
  if (p->vpos == sizeof version_prefix - 1) {
    if (c < '0' || c > '9') return bad(p);
    p->head.version_minor = (int)(c - '0');
    p->vpos++;
    return 0;
  }
  if (p->phase == P_SL_VERSION) {
    if (c != ' ') return bad(p);
    p->head.status = 0;
    p->ndig = 0;
    p->phase = P_STATUS;
    return 0;
  }
  if (c == '\r') {
    p->cr_from = P_RL_VERSION;
    p->phase = P_LF;
    return 0;
  }
  if (c != '\n') return bad(p);
  p->phase = P_LINE;
  return 0;
}

static int request_line_char(ss__h1 *p, unsigned c) {
  ss__h1_head *h = &p->head;
  if (p->phase == P_METHOD) {
    if (c == ' ') {
      h->method[p->val_len] = '\0';
      p->val_len = 0;
      p->phase = P_TARGET;
      return 0;
    }
    if (!is_method_char(c) || p->val_len + 1 >= sizeof h->method) return bad(p);
    h->method[p->val_len++] = (char)c;
    return 0;
  }
  /* P_TARGET: target_run took the visible bytes (obs-text too); this one ends it */
  if (c != ' ' || p->val_len == 0) return bad(p);
  h->target[p->val_len < sizeof h->target ? p->val_len : sizeof h->target - 1] = '\0';
  p->vpos = 0;
  p->phase = P_RL_VERSION;
  return 0;
}

static int status_char(ss__h1 *p, unsigned c) {
  if (p->phase == P_STATUS && p->ndig < 3) {
    if (c < '0' || c > '9' || (p->ndig == 0 && (c < '1' || c > '5'))) return bad(p);
    p->head.status = p->head.status * 10 + (int)(c - '0');
    p->ndig++;
    return 0;
  }
  if (c == '\r') {
    p->cr_from = p->phase;
    p->phase = P_LF;
    return 0;
  }
  if (c == '\n') {
    p->phase = P_LINE;
    return 0;
  }
  if (p->phase == P_STATUS && c != ' ') return bad(p);
  p->phase = P_REASON; /* any bytes up to the line end */
  return 0;
}

static int line_start_char(ss__h1 *p, unsigned c) {
  if (c == ' ' || c == '\t') {
    if (!p->pending) return bad(p); /* whitespace before the first field: RFC 9112 2.2 */
    value_char(p, ' ');              /* obs-fold: the continuation joins with one space */
    p->skip_ows = 1;
    p->phase = P_VALUE;
    return 0;
  }
  if (p->pending && field_end(p) < 0) return bad(p);
  if (c == '\r') {
    p->cr_from = P_LINE;
    p->phase = P_LF;
    return 0;
  }
  if (c == '\n') return head_done(p);
  if (!is_tchar(c)) return bad(p);
  p->name[0] = (char)lower(c);
  p->name_len = 1;
  p->phase = P_NAME;
  return 0;
}

static int header_char(ss__h1 *p, unsigned c) {
  if (p->phase == P_NAME) { /* name_run took the token characters; this one ends it */
    if (c != ':') return bad(p);
    name_end(p, field_id((const unsigned char *)p->name, p->name_len));
    p->phase = P_VALUE;
    return 0;
  }
  /* P_VALUE */
  if (c == '\r') {
    p->cr_from = P_VALUE;
    p->phase = P_LF;
    return 0;
  }
  if (c == '\n') {
    p->phase = P_LINE;
    return 0;
  }
  return value_char(p, c) < 0 ? bad(p) : 0;
}

static int chunk_char(ss__h1 *p, unsigned c) {
  switch (p->phase) {
  case P_CHUNK_SIZE: {
    int d = hexval(c);
    if (d >= 0) {
      if (p->ws_after || p->num > (INT64_MAX >> 4)) return bad(p);
      p->num = p->num * 16 + d;
      p->ndig = 1;
      return 0;
    }
    if (c == ' ' || c == '\t') {
      if (!p->ndig) return bad(p);
      p->ws_after = 1;
      return 0;
    }
    if (c == ';') {
      if (!p->ndig) return bad(p);
      p->phase = P_CHUNK_EXT;
      return 0;
    }
    if (c == '\r') {
      p->cr_from = P_CHUNK_SIZE;
      p->phase = P_LF;
      return 0;
    }
    if (c == '\n') return chunk_size_done(p);
    return bad(p);
  }
  case P_CHUNK_EXT: /* extensions are skipped up to the line end */
    return c == '\n' ? chunk_size_done(p) : 0;
  case P_CHUNK_DATA_END:
    if (c == '\r') {
      p->cr_from = P_CHUNK_DATA_END;
      p->phase = P_LF;
      return 0;
    }
    if (c != '\n') return bad(p);
    p->phase = P_CHUNK_SIZE;
    p->count = 0;
    p->num = 0;
    p->ndig = p->ws_after = 0;
    return 0;
  case P_TRAILER_START:
    if (c == '\r') {
      p->cr_from = P_TRAILER_START;
      p->phase = P_LF;
      return 0;
    }
    if (c == '\n') return msg_end(p);
    p->phase = P_TRAILER_LINE;
    return 0;
  default: /* P_TRAILER_LINE: trailer fields are not interpreted */
    if (c == '\n') p->phase = P_TRAILER_START;
    return 0;
  }
}

/* One byte of a bounded unit. Returns event bits. */
static int step(ss__h1 *p, unsigned c) {
  if (++p->count > SS_H1_MAX_HEAD) return bad(p);
  if (p->phase == P_LF) {
    if (c != '\n') return bad(p);
    p->phase = p->cr_from; /* the LF ends the line as a bare LF would */
  }
  switch (p->phase) {
  case P_START:
    return start_char(p, c);
  case P_METHOD:
  case P_TARGET:
    return request_line_char(p, c);
  case P_RL_VERSION:
  case P_SL_VERSION:
    return version_char(p, c);
  case P_STATUS:
  case P_REASON:
    return status_char(p, c);
  case P_LINE:
    return line_start_char(p, c);
  case P_NAME:
  case P_VALUE:
    return header_char(p, c);
  case P_CHUNK_SIZE:
  case P_CHUNK_EXT:
  case P_CHUNK_DATA_END:
  case P_TRAILER_START:
  case P_TRAILER_LINE:
    return chunk_char(p, c);
  default:
    return bad(p);
  }
}

void ss__h1_init(ss__h1 *p, int role) {
  memset(p, 0, sizeof *p);
  p->role = (uint8_t)(role == SS_H1_RESPONSE ? SS_H1_RESPONSE : SS_H1_REQUEST);
  p->head.content_length = -1;
  p->phase = P_START;
}

/* Runs of bytes that need no per-byte decision, taken in bulk; the byte that ends a run
 * (CR, LF, SP, a bad byte) goes through step. Each returns the run's length, capped just
 * over the bound so that step's count reports the overflow. */
static size_t cap_run(ss__h1 *p, size_t k) {
  if (k > SS_H1_MAX_HEAD + 1) k = SS_H1_MAX_HEAD + 1;
  p->count += (uint32_t)k;
  return k;
}

/* Up to CR or LF: a reason phrase, or a value nobody interprets (stored or not). */
static size_t line_run(const unsigned char *s, size_t n) {
  const unsigned char *lf = memchr(s, '\n', n), *cr;
  size_t k = lf ? (size_t)(lf - s) : n;
  cr = memchr(s, '\r', k);
  return cr ? (size_t)(cr - s) : k;
}

static size_t value_run(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t k = cap_run(p, line_run(s, n)), j = k;
  if (p->dst_cap) {
    uint32_t at = (uint32_t)p->dst_base + p->val_len;
    if (at + 1 < p->dst_cap) {
      size_t room = p->dst_cap - 1u - at;
      memcpy(dst(p) + at, s, k < room ? k : room);
    }
    while (j > 0 && (s[j - 1] == ' ' || s[j - 1] == '\t')) j--;
    if (j) p->val_trim = p->val_len + (uint32_t)j;
  }
  p->val_len += (uint32_t)k;
  return k;
}

static size_t target_run(ss__h1 *p, const unsigned char *s, size_t n) {
  ss__h1_head *h = &p->head;
  size_t k = 0;
  while (k < n && s[k] > ' ' && s[k] != 0x7f) k++;
  k = cap_run(p, k);
  if (p->val_len + 1 < sizeof h->target) {
    size_t room = sizeof h->target - 1 - p->val_len;
    memcpy(h->target + p->val_len, s, k < room ? k : room);
    if (k > room) h->target_truncated = 1;
  } else if (k) {
    h->target_truncated = 1;
  }
  p->val_len += (uint32_t)k;
  return k;
}

static size_t name_run(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t k = 0, len = p->name_len;
  while (k < n && is_tchar(s[k])) {
    if (len < sizeof p->name) p->name[len] = (char)lower(s[k]);
    len++, k++;
  }
  /* a name longer than the buffer is longer than any name we look for */
  p->name_len = (uint8_t)(len <= sizeof p->name ? len : sizeof p->name + 1);
  return cap_run(p, k);
}

/* OWS before a value; the value itself when nothing interprets it byte by byte. */
static size_t value_start_run(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t k = 0;
  if (p->skip_ows) {
    while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
    k = cap_run(p, k);
    if (k == n || s[k] == '\r' || s[k] == '\n') return k;
    p->skip_ows = 0;
  }
  if (p->hdr == H_CL || p->hdr == H_TE || p->hdr == H_CONN || p->hdr == H_EXPECT) return k;
  return k + value_run(p, s + k, n - k);
}

static size_t version_run(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t k = 0;
  while (k < n && p->vpos < sizeof version_prefix - 1 &&
         s[k] == (unsigned char)version_prefix[p->vpos])
    k++, p->vpos++;
  return cap_run(p, k);
}

/* A run in the current phase starting at s, or 0 when the next byte needs step. */
static size_t run(ss__h1 *p, const unsigned char *s, size_t n) {
  switch (p->phase) {
  case P_TARGET:
    return target_run(p, s, n);
  case P_REASON:
    return cap_run(p, line_run(s, n));
  case P_NAME:
    return name_run(p, s, n);
  case P_VALUE:
    return value_start_run(p, s, n);
  case P_RL_VERSION:
  case P_SL_VERSION:
    return version_run(p, s, n);
  default:
    return 0;
  }
}

/* ---- whole lines ----
 * A read or write usually holds a whole head, or at least whole lines. Those are taken a
 * line at a time: the line end and a field name's end are found a word at a time, the start
 * line is checked as a whole, a field name is matched as whole words, a value is copied or
 * skipped in one go. Each leaves exactly the state the byte path would (the tests feed every
 * message whole, at every split point and byte by byte, and compare). Anything else goes
 * the byte path from the start of its line, untouched: a line that does not end within the
 * buffer, a folded line, blank lines before a request, and any line that is not plainly
 * well formed (the byte path finds what is wrong with it). */

#define ONES 0x0101010101010101ull
#define HIGH 0x8080808080808080ull
/* The high bit of each byte of w below c: exact for the lowest such byte; bytes above it
 * may be flagged falsely, bytes >= 0x80 never are. */
#define BELOW(w, c) (((w) - ONES * (c)) & ~(w) & HIGH)
/* The high bit of each byte of w in [lo, hi]: exact for every byte below 0x80 that has no
 * byte >= 0x80 below it (the sums carry only out of those). */
#define IN(w, lo, hi) (((w) + ONES * (0x80 - (lo))) & ~((w) + ONES * (0x7f - (hi))) & HIGH)

/* A line longer than this is over the bound anyway: the scan for its end stops there. */
#define SCAN_MAX (SS_H1_MAX_HEAD + 2)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && !defined(SS_H1_NO_SWAR)
#define SWAR 1 /* the first byte in memory is the lowest of a loaded word */
#else
#define SWAR 0
#endif

/* The first CR or LF among the bytes flagged in m (a word loaded from s + at). */
static size_t eol_in(const unsigned char *s, size_t at, uint64_t m) {
  while (m) {
    size_t j = at + (size_t)(__builtin_ctzll(m) >> 3);
    if (s[j] == '\n' || s[j] == '\r') return j;
    m &= m - 1;
  }
  return (size_t)-1;
}

#if SSE2
static __m128i load16(const unsigned char *s) { return _mm_loadu_si128((const __m128i *)s); }

/* Bit j set when s[j] is CR or LF, for the 16 bytes at s. */
static unsigned crlf16(const unsigned char *s) {
  __m128i v = load16(s);
  return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')),
                                                  _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))));
}

/* Bit j set when s[j] is in [lo, lo + span] (unsigned). */
static __m128i in16(__m128i v, char lo, char span) {
  __m128i d = _mm_sub_epi8(v, _mm_set1_epi8(lo));
  return _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(span)), d);
}
#endif

/* Offset of the first CR or LF in s[0..n), or n. */
static size_t eol_scan(const unsigned char *s, size_t n) {
  size_t k = 0, j;
#if SSE2
  if (n >= 16) {
    unsigned m;
    for (; k + 16 <= n; k += 16)
      if ((m = crlf16(s + k)) != 0) return k + (size_t)__builtin_ctz(m);
    if (k < n && (m = crlf16(s + n - 16) >> (k - (n - 16))) != 0) /* overlapping the last */
      return k + (size_t)__builtin_ctz(m);
    return n;
  }
#endif
  if (SWAR && n >= 8) {
    for (; k + 8 <= n; k += 8) {
      uint64_t m = BELOW(ld8(s + k), 0x0e); /* CR, LF and a few others, told apart after */
      if (m && (j = eol_in(s, k, m)) != (size_t)-1) return j;
    }
    if (k < n) { /* the last word overlaps the one before: only its bytes from k count */
      uint64_t m = BELOW(ld8(s + n - 8), 0x0e) & (~0ull << (8 * (k - (n - 8))));
      if (m && (j = eol_in(s, n - 8, m)) != (size_t)-1) return j;
    }
    return n;
  }
  while (k < n && s[k] != '\n' && s[k] != '\r') k++;
  return k;
}

/* A header line at l[0..n) (l[0] a token byte): returns the offset of its first CR or LF
 * (scanning at most SCAN_MAX bytes), or n when it has none there, and sets *k to where its
 * name's usual bytes (letters, digits, '-') end, at most there. */
static size_t header_scan(const unsigned char *l, size_t n, size_t *k) {
  size_t lim = n < SCAN_MAX ? n : SCAN_MAX;
#if SSE2
  if (lim >= 16) { /* one block holds most names, and many whole lines */
    __m128i v = load16(l);
    __m128i name = _mm_or_si128(_mm_or_si128(in16(_mm_or_si128(v, _mm_set1_epi8(0x20)), 'a', 25),
                                             in16(v, '0', 9)),
                                _mm_cmpeq_epi8(v, _mm_set1_epi8('-')));
    unsigned eol = (unsigned)_mm_movemask_epi8(_mm_or_si128(
        _mm_cmpeq_epi8(v, _mm_set1_epi8('\r')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))));
    *k = (size_t)__builtin_ctz(~(unsigned)_mm_movemask_epi8(name)); /* CR, LF stop it */
    if (eol) return (size_t)__builtin_ctz(eol);
    return 16 + eol_scan(l + 16, lim - 16);
  }
#endif
  *k = 0;
  return eol_scan(l, lim);
}

/* The end of the line whose content goes on at s + k, in s[0..n): returns its length
 * through its LF and sets *e to where its content ends (its CR or LF); 0 when it does not
 * end within s[0..n), or with a CR not followed by LF. */
static size_t line_end(const unsigned char *s, size_t k, size_t n, size_t *e) {
  size_t lim = n < SCAN_MAX ? n : SCAN_MAX, j;
  if (k >= lim) return 0;
  j = k + eol_scan(s + k, lim - k);
  if (j >= lim) return 0;
  *e = j;
  if (s[j] == '\n') return j + 1;
  return j + 1 < n && s[j + 1] == '\n' ? j + 2 : 0;
}

static int is_digit(unsigned c) { return c >= '0' && c <= '9'; }

/* "HTTP/1.x" */
static int version_at(const unsigned char *s) {
  return ld4(s) == ld4("HTTP") && ld4(s + 3) == ld4("P/1.") && is_digit(s[7]);
}

/* Whether s[0..n) are all request-target bytes. */
static int target_ok(const unsigned char *s, size_t n) {
  size_t k = 0;
#if SSE2
  if (n >= 16) {
    __m128i bad = _mm_setzero_si128();
    for (; k + 16 <= n; k += 16) {
      __m128i v = load16(s + k);
      bad = _mm_or_si128(bad, _mm_or_si128(in16(v, 0, 0x20), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))));
    }
    { /* overlapping the last block: all its bytes are in s[0..n) */
      __m128i v = load16(s + n - 16);
      bad = _mm_or_si128(bad, _mm_or_si128(in16(v, 0, 0x20), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f))));
    }
    return _mm_movemask_epi8(bad) == 0;
  }
#endif
  if (SWAR && n >= 8) {
    uint64_t bad = 0, w;
    for (; k + 8 <= n; k += 8) {
      w = ld8(s + k);
      bad |= BELOW(w, 0x21) | BELOW(w ^ (ONES * 0x7f), 1); /* SP and below, DEL */
    }
    w = ld8(s + n - 8); /* overlapping the last word: all its bytes are in s[0..n) */
    bad |= BELOW(w, 0x21) | BELOW(w ^ (ONES * 0x7f), 1);
    return !bad; /* flags are false only above true ones */
  }
  while (k < n && vis[s[k]]) k++;
  return k == n;
}

/* A request line at s (s[0] is 'A'..'Z'): returns its length when it is whole and well
 * formed within s[0..n) (method SP target SP HTTP/1.x, head bound kept), having stored it;
 * else 0. */
static size_t request_line(ss__h1 *p, const unsigned char *s, size_t n) {
  ss__h1_head *h = &p->head;
  size_t m = 1, e, v, len, tlen;
  while (m < n && is_method_char(s[m])) m++;
  if (m >= n || s[m] != ' ' || m >= sizeof h->method) return 0;
  len = line_end(s, m + 1, n, &e);
  if (!len || e < m + 11 || p->count + len > SS_H1_MAX_HEAD) return 0;
  v = e - 9; /* the SP before the version; the target is all that lies between */
  if (s[v] != ' ' || !version_at(s + v + 1) || !target_ok(s + m + 1, v - m - 1)) return 0;
  reset_head(p);
  memcpy(h->method, s, m);
  h->method[m] = '\0';
  tlen = v - m - 1;
  if (tlen < sizeof h->target) {
    memcpy(h->target, s + m + 1, tlen);
    h->target[tlen] = '\0';
  } else {
    memcpy(h->target, s + m + 1, sizeof h->target - 1);
    h->target[sizeof h->target - 1] = '\0';
    h->target_truncated = 1;
  }
  h->version_minor = (int)(s[e - 1] - '0');
  p->val_len = (uint32_t)tlen;
  p->vpos = sizeof version_prefix;
  p->count += (uint32_t)len;
  return len;
}

/* A status line at s (s[0] is 'H'), as request_line: HTTP/1.x SP 3DIGIT [SP reason]. */
static size_t status_line(ss__h1 *p, const unsigned char *s, size_t n) {
  ss__h1_head *h = &p->head;
  size_t e, len = line_end(s, 0, n, &e);
  if (!len || e < 12 || p->count + len > SS_H1_MAX_HEAD || !version_at(s) || s[8] != ' ' ||
      s[9] < '1' || s[9] > '5' || !is_digit(s[10]) || !is_digit(s[11]) ||
      (e > 12 && s[12] != ' '))
    return 0;
  reset_head(p);
  h->version_minor = (int)(s[7] - '0');
  h->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
  p->vpos = sizeof version_prefix;
  p->ndig = 3;
  p->count += (uint32_t)len;
  return len;
}

/* A Content-Length value s[0..n) (after its leading OWS, n > 0). */
static int cl_value(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t t = n, k;
  int64_t num = 0;
  while (t > 0 && is_ows(s[t - 1])) t--;
  if (t <= 18) { /* one plain number (no overflow in 18 digits) */
    for (k = 0; k < t && is_digit(s[k]); k++) num = num * 10 + (s[k] - '0');
    if (k == t) {
      p->num = num;
      p->ndig = (uint8_t)t;
      p->ws_after = t < n;
      p->val_len = (uint32_t)n;
      p->val_trim = (uint32_t)t;
      return 0;
    }
  }
  for (k = 0; k < n; k++)
    if (value_char(p, s[k]) < 0) return -1;
  return 0;
}

/* A Connection / Transfer-Encoding / Expect value s[0..n) (after its leading OWS). */
static void list_value(ss__h1 *p, const unsigned char *s, size_t n) {
  size_t t = n, k;
  while (t > 0 && is_ows(s[t - 1])) t--;
  for (k = 0; k < t && is_tchar(s[k]); k++) {
  }
  if (k < t) { /* lists, parameters, quotes: byte by byte */
    for (k = 0; k < n; k++) value_char(p, s[k]);
    return;
  }
  for (k = 0; k < t && k < sizeof p->tok; k++) p->tok[k] = (char)lower(s[k]);
  p->tok_len = (uint8_t)(t <= sizeof p->tok ? t : sizeof p->tok + 1);
  if (t < n) tok_end(p); /* trailing OWS ends the token */
  p->val_len = (uint32_t)n;
  p->val_trim = (uint32_t)t;
}

/* A field value s[0..n) (after its leading OWS, n > 0), as value_char would take it. */
static int value_line(ss__h1 *p, const unsigned char *s, size_t n) {
  p->skip_ows = 0;
  switch (p->hdr) {
  case H_CL:
    return cl_value(p, s, n);
  case H_TE:
  case H_CONN:
  case H_EXPECT:
    list_value(p, s, n);
    return 0;
  }
  if (p->dst_cap) {
    uint32_t at = p->dst_base; /* val_len is 0 */
    size_t t = n;
    if (at + 1 < p->dst_cap) {
      size_t room = p->dst_cap - 1u - at;
      memcpy(dst(p) + at, s, n < room ? n : room);
    }
    while (is_ows(s[t - 1])) t--; /* s[0] is not OWS */
    p->val_trim = (uint32_t)t;
  }
  p->val_len = (uint32_t)n;
  return 0;
}

/* At the start of a message or of a header line: takes the whole, well-formed lines in
 * s[0..n). Returns how many bytes it took; *ev the event (HEAD, END, BAD: then n is
 * returned) when one happened, else 0, and the byte path goes on from there. */
static size_t lines_fast(ss__h1 *p, const unsigned char *s, size_t n, int *ev) {
  size_t i = 0;
  *ev = 0;
  if (p->phase == P_START) {
    if (p->role == SS_H1_REQUEST) {
      if (s[0] < 'A' || s[0] > 'Z' || !(i = request_line(p, s, n))) return 0;
    } else {
      if (s[0] != 'H' || !(i = status_line(p, s, n))) return 0;
    }
    p->phase = P_LINE;
  }
  while (i < n) {
    const unsigned char *l = s + i;
    size_t avail = n - i, len, k, e;
    int hdr;
    if (!is_tchar(l[0])) {
      if (l[0] == '\n')
        len = 1;
      else if (l[0] == '\r' && avail >= 2 && l[1] == '\n')
        len = 2;
      else
        break; /* a fold, a split CRLF, or BAD */
      if (p->count + len > SS_H1_MAX_HEAD) break;
      p->count += (uint32_t)len;
      if (p->pending) {
        if (p->hdr == H_OTHER)
          p->pending = 0;
        else if (field_end(p) < 0)
          goto bad;
      }
      *ev = head_done(p);
      return *ev & SS_H1_BAD ? n : i + len;
    }
    e = header_scan(l, avail, &k);
    if (e >= avail || e >= SCAN_MAX) break; /* not whole here (or over the bound) */
    while (is_tchar(l[k])) k++;             /* the rarer token bytes; l[e] stops it */
    if (l[k] != ':') break;
    if (l[e] == '\n')
      len = e + 1;
    else if (e + 1 < avail && l[e + 1] == '\n')
      len = e + 2;
    else
      break;
    if (p->count + len > SS_H1_MAX_HEAD) break;
    p->count += (uint32_t)len;
    if (p->pending) {
      if (p->hdr == H_OTHER)
        p->pending = 0;
      else if (field_end(p) < 0)
        goto bad;
    }
    hdr = field_id(l, k);
    if (hdr == H_OTHER) {
      /* nothing to store or interpret: for such a field only these are ever looked at
       * (by a folded line, field_end and the next name_end) */
      p->hdr = H_OTHER;
      p->dst_cap = 0;
      p->skip_ows = 1;
      p->pending = 1;
    } else {
      name_end(p, hdr);
      for (k++; l[k] == ' ' || l[k] == '\t'; k++) { /* l[e] stops it */
      }
      if (k < e && value_line(p, l + k, e - k) < 0) goto bad; /* else empty: skip_ows stays */
    }
    i += len;
  }
  return i;
bad:
  *ev = bad(p);
  return n;
}

size_t ss__h1_feed(ss__h1 *p, const char *buf, size_t n, int *ev) {
  const unsigned char *s = (const unsigned char *)buf;
  size_t i = 0;
  *ev = SS_H1_NEED;
  while (i < n) {
    size_t take;
    int e;
    switch (p->phase) {
    case P_DEAD:
      *ev = SS_H1_BAD;
      return n;
    case P_BODY_CLOSE:
      return n;
    case P_BODY_LEN:
    case P_CHUNK_DATA:
      take = (uint64_t)p->remaining < n - i ? (size_t)p->remaining : n - i;
      i += take;
      p->remaining -= (int64_t)take;
      if (p->remaining > 0) return n;
      if (p->phase == P_CHUNK_DATA) {
        p->phase = P_CHUNK_DATA_END;
        continue;
      }
      *ev = msg_end(p);
      return i;
    case P_START:
    case P_LINE:
      i += lines_fast(p, s + i, n - i, &e);
      if (e) {
        *ev = e;
        return i;
      }
      if (i == n) return n;
      /* fall through - a line the byte path takes */
    default:
      i += run(p, s + i, n - i);
      if (p->count > SS_H1_MAX_HEAD) {
        *ev = bad(p);
        return n;
      }
      if (i == n) return n;
      break;
    }
    e = step(p, s[i++]);
    if (e & SS_H1_BAD) {
      *ev = SS_H1_BAD;
      return n;
    }
    if (e) {
      *ev = e;
      return i;
    }
  }
  if (p->phase == P_DEAD) *ev = SS_H1_BAD;
  return n;
}

void ss__h1_expect_response_to(ss__h1 *p, const char *method) {
  uint8_t kind = Q_NORMAL;
  /* byte by byte, stopping at the first difference: method may be shorter than either */
  if (!method) {
  } else if (method[0] == 'H') {
    if (method[1] == 'E' && method[2] == 'A' && method[3] == 'D' && !method[4]) kind = Q_HEAD;
  } else if (method[0] == 'C') {
    if (strcmp(method + 1, "ONNECT") == 0) kind = Q_CONNECT;
  }
  if (p->q_len >= sizeof p->q) return;
  p->q[(p->q_first + p->q_len) % sizeof p->q] = kind;
  p->q_len++;
}

int ss__h1_close(ss__h1 *p) {
  int done = p->phase == P_BODY_CLOSE;
  p->phase = P_DEAD;
  return done;
}

/* The request line of ss__h1_scan_request: returns the offset past it, 0 when buf is a
 * prefix of one, -1 when it is not one. */
static long scan_request_line(const unsigned char *s, size_t n) {
  size_t i = 0, t;
  while (i < n && is_method_char(s[i]) && (i > 0 || (s[i] >= 'A' && s[i] <= 'Z'))) i++;
  if (i >= sizeof ((ss__h1_head *)0)->method) return -1;
  if (i == n) return 0;
  if (i == 0 || s[i] != ' ') return -1;
  t = ++i;
  while (i < n && s[i] > ' ' && s[i] != 0x7f) i++;
  if (i == n) return 0;
  if (i == t || s[i] != ' ') return -1;
  i++;
  for (t = 0; t < sizeof version_prefix; t++, i++) {
    if (i == n) return 0;
    if (t < sizeof version_prefix - 1 ? s[i] != (unsigned char)version_prefix[t]
                                      : (s[i] < '0' || s[i] > '9'))
      return -1;
  }
  if (i < n && s[i] == '\r') i++;
  if (i == n) return 0;
  if (s[i] != '\n') return -1;
  return (long)(i + 1);
}

static int is_traceparent_name(const unsigned char *s, size_t n) {
  static const char want[] = "traceparent:";
  size_t k;
  if (n < sizeof want - 1) return 0;
  for (k = 0; k < sizeof want - 1; k++)
    if (lower(s[k]) != (unsigned char)want[k]) return 0;
  return 1;
}

int ss__h1_scan_request(const char *buf, size_t n, size_t *line_end, size_t *head_end,
                        int *has_tp) {
  const unsigned char *s = (const unsigned char *)buf;
  long le = scan_request_line(s, n);
  size_t i;
  *line_end = *head_end = 0;
  *has_tp = 0;
  if (le <= 0) return le < 0 ? -1 : 1;
  *line_end = (size_t)le;
  for (i = (size_t)le; i < n;) {
    const unsigned char *lf;
    if (s[i] == '\n' || (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')) {
      *head_end = i + (s[i] == '\r' ? 2 : 1);
      break;
    }
    if (is_traceparent_name(s + i, n - i)) *has_tp = 1;
    lf = memchr(s + i, '\n', n - i);
    if (!lf) break;
    i = (size_t)(lf - s) + 1;
  }
  return 0;
}

int ss__h1_looks_like_request(const char *buf, size_t n) {
  static const char *const methods[] = {
      "GET",    "HEAD", "POST", "PUT",    "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
      "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH",
      "MKCALENDAR", "QUERY"};
  int maybe = 0;
  size_t k;
  if (n == 0) return -1;
  for (k = 0; k < sizeof methods / sizeof methods[0]; k++) {
    size_t len = strlen(methods[k]);
    size_t m = n < len ? n : len;
    if (memcmp(buf, methods[k], m) != 0) continue;
    if (n <= len) {
      maybe = 1;
      continue;
    }
    if (buf[len] == ' ') return 1;
  }
  return maybe ? -1 : 0;
}
