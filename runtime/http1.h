/* http1.h - an incremental HTTP/1.x message parser for the bytes an app reads and writes
 * on its sockets (RFC 9112): request and status lines, the header fields spans need,
 * message framing (Content-Length, chunked, until-close, no-body responses), pipelining.
 *
 * It runs on the app's thread inside the hooks, so it is pure and bounded: no allocation,
 * no locks, no syscalls, no locale, O(1) work per byte (body bytes are skipped in bulk),
 * state in one fixed-size caller-owned ss__h1 (one per direction of a stream), and it
 * never reads outside the buffer it is given. Not thread-safe per parser: the caller
 * serializes feeds on one ss__h1. Anything that is not HTTP/1.x is rejected early: a
 * request stream whose first byte is not an upper-case method letter, a response stream
 * not starting "HTTP/1." (TLS records, PostgreSQL, Redis, binary data) is BAD within its
 * first bytes, and from then on every feed costs nothing. The functions touch only the
 * memory they are given, so they are also async-signal-safe.
 *
 * Bounds: a message head (leading blank lines, start line, header lines) is at most
 * SS_H1_MAX_HEAD bytes; so is each chunk-size line and each trailer section. Over the
 * bound the stream is BAD. Header lines of any length within the bound are accepted;
 * values are stored only for the fields in ss__h1_head, truncated to their buffers.
 *
 * Leniency (RFC 9112): bare LF line ends, up to 4 blank lines before a request, obs-fold,
 * a status line without reason phrase, chunk extensions and trailers (skipped). BAD: a
 * CR not followed by LF, whitespace or any non-token byte in a field name (so "Host :"),
 * a line without ':', HTTP/0.9 or /2 start lines, a Content-Length that is not one
 * decimal value (equal repeats and "5, 5" are fine), a request whose Transfer-Encoding
 * does not end in chunked, a malformed chunk-size line. */
#ifndef SS_HTTP1_H
#define SS_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#define SS_H1_MAX_HEAD 16384

/* Which side of the conversation a parser reads. */
enum { SS_H1_REQUEST = 0, SS_H1_RESPONSE = 1 };

/* Events ss__h1_feed reports: a bit set. HEAD and END come together when a head completes
 * a message that has no body (GET, 204, a response to HEAD); test with &, not ==. */
enum { SS_H1_NEED = 0, SS_H1_HEAD = 1, SS_H1_END = 2, SS_H1_BAD = 4 };

/* One message head. Filled as the head is parsed; valid from the HEAD event until the
 * first byte of the next message is fed (so through the body and its END). Strings are
 * always NUL-terminated and cut to their buffers; header values are trimmed of OWS, and
 * obsolete line folding is joined with one space. A field that appears twice: the first
 * Host, User-Agent and traceparent win; tracestate values are joined with ",". */
typedef struct ss__h1_head {
  char method[24];         /* request: the method token as sent ("GET") */
  char target[512];        /* request: the request-target as sent (origin-form path?query,
                              absolute-form, authority-form or "*") */
  int version_minor;       /* 0 or 1: HTTP/1.<version_minor> */
  int status;              /* response: 100..599; interim 1xx are heads of their own */
  char host[256];          /* Host */
  char user_agent[256];    /* User-Agent */
  char traceparent[64];    /* traceparent, not validated here */
  char tracestate[512];    /* tracestate */
  int64_t content_length;  /* Content-Length, -1 when absent; framing prefers chunked */
  uint8_t chunked;         /* the last Transfer-Encoding coding is chunked */
  uint8_t conn_close;      /* Connection lists "close" */
  uint8_t conn_keepalive;  /* Connection lists "keep-alive" */
  uint8_t conn_upgrade;    /* Connection lists "upgrade" */
  uint8_t expect_continue; /* Expect: 100-continue */
  uint8_t has_traceparent; /* a non-empty traceparent was seen */
  uint8_t target_truncated;/* target[] holds only the start of the target */
  uint8_t persistent;      /* the connection stays open after this message (HTTP/1.1 without
                              close, HTTP/1.0 with keep-alive, and not framed by close) */
  uint8_t tunnel;          /* response: 101 or a 2xx to CONNECT; the stream stops being
                              HTTP after this message and further feeds are BAD */
} ss__h1_head;

/* A parser. head is public and read-only; everything else is private. */
typedef struct ss__h1 {
  ss__h1_head head;
  int64_t remaining;         /* body or chunk-data bytes still to come */
  int64_t num;               /* the Content-Length element or chunk size being read */
  uint32_t count;            /* bytes of the current bounded unit (head, chunk line, trailers) */
  uint32_t val_len, val_trim;/* header value bytes after leading OWS; up to the last non-OWS */
  uint16_t dst_off, dst_cap, dst_base; /* where in head the current value is stored (cap 0: nowhere) */
  uint8_t role, phase, cr_from, hdr, vpos, name_len, tok_len;
  uint8_t pending, skip_ows, ndig, ws_after, tok_skip, tok_quote, te_seen, te_chunked;
  uint8_t q[8], q_first, q_len; /* methods awaiting responses (response side) */
  char name[20];
  char tok[16];
} ss__h1;

/* Prepares p to parse one direction of a new stream: role SS_H1_REQUEST or
 * SS_H1_RESPONSE. Never fails. */
void ss__h1_init(ss__h1 *p, int role);

/* Feeds the next n bytes of the stream. Returns how many were consumed: all n, or fewer
 * when an event happened, up to and including the byte that completed it; the caller
 * feeds the rest again (loop while bytes remain), so each pipelined message is seen.
 * *ev is SS_H1_NEED (all consumed, nothing completed), SS_H1_HEAD (p->head is complete),
 * SS_H1_END (a message completed, framing done), SS_H1_HEAD|SS_H1_END (a head that is a
 * whole message), or SS_H1_BAD (not HTTP/1.x, or over a bound: the stream is abandoned,
 * n is returned, and every later feed returns n and BAD). n may be 0. */
size_t ss__h1_feed(ss__h1 *p, const char *buf, size_t n, int *ev);

/* Response side: the method of the next request this stream will answer, in order; queued
 * for pipelining (up to 8 pending; beyond that the extra ones frame as GET). HEAD responses
 * have no body; a 2xx to CONNECT is a tunnel. Without a call a response frames as for GET. */
void ss__h1_expect_response_to(ss__h1 *p, const char *method);

/* The stream ended (peer closed, fd closed). Returns 1 when a message in progress is
 * complete by that (a response framed by close), else 0. The parser is spent afterwards:
 * later feeds are BAD until ss__h1_init. */
int ss__h1_close(ss__h1 *p);

/* Stateless scan of a buffer the app is about to write, for traceparent injection.
 * Returns 0 when buf starts with a complete HTTP/1.x request line (CRLF or LF ended):
 * *line_end is the offset just past it, *head_end the offset just past the blank line that
 * ends the head (0 when the head does not end within buf), *has_tp whether a traceparent
 * field (name in any case) is among the header lines within buf. Returns 1 when buf is a
 * proper prefix of what could be a request line, -1 when it does not start an HTTP/1.x
 * request. Outputs are 0 unless 0 is returned. */
int ss__h1_scan_request(const char *buf, size_t n, size_t *line_end, size_t *head_end,
                        int *has_tp);

/* Quick test of a stream's first bytes: 1 when they start with a registered method and a
 * space ("GET ", "POST ", "PROPFIND ", ...), 0 when they cannot, -1 when too few bytes to
 * say (n == 0, or a proper prefix of such a start). */
int ss__h1_looks_like_request(const char *buf, size_t n);

#endif
