/* test_http1.c - the incremental HTTP/1.x parser: real requests and responses (bytes as
 * curl 7.88, Python 3.11 urllib/http.client/http.server and nginx 1.22 send them, captured
 * on loopback) fed whole, at every split point and byte by byte, with identical events and
 * heads each way; framing (Content-Length, chunked with extensions and trailers, close,
 * HEAD/204/304, 1xx, pipelining); bounds; non-HTTP protocols and random bytes rejected
 * without crashing or reading outside the given buffers (every feed gets an exact-size
 * heap copy, so ASan sees any over-read). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/http1.h"

#define LIT(s) s, sizeof s - 1

/* ---- the driver: feed pieces, record what a caller would see ---- */

typedef struct {
  int ev;
  size_t at; /* stream offset just past the byte that completed the event (0 for BAD) */
  ss__h1_head head;
} event;

typedef struct {
  event ev[16];
  int n;
} transcript;

static void record(transcript *t, int ev, size_t at, const ss__h1 *p) {
  ck_assert_int_lt(t->n, 16);
  t->ev[t->n].ev = ev;
  t->ev[t->n].at = at;
  if (ev & SS_H1_HEAD) t->ev[t->n].head = p->head;
  t->n++;
}

/* Feeds one piece from an exact-size heap copy, the way a hook feeds one read. Returns 0
 * once the stream is BAD. */
static int feed_piece(ss__h1 *p, const char *data, size_t len, size_t base, transcript *t) {
  char *copy = malloc(len ? len : 1);
  size_t off = 0;
  int alive = 1;
  memcpy(copy, data, len);
  do {
    int ev = -1;
    size_t used = ss__h1_feed(p, copy + off, len - off, &ev);
    ck_assert_uint_le(used, len - off);
    if (ev == SS_H1_NEED) {
      ck_assert_uint_eq(used, len - off);
    } else if (ev & SS_H1_BAD) {
      ck_assert_int_eq(ev, SS_H1_BAD);
      ck_assert_uint_eq(used, len - off);
      record(t, SS_H1_BAD, 0, p);
      alive = 0;
    } else {
      ck_assert(ev == SS_H1_HEAD || ev == SS_H1_END || ev == (SS_H1_HEAD | SS_H1_END));
      ck_assert_uint_gt(used, 0);
      record(t, ev, base + off + used, p);
    }
    off += used;
  } while (alive && off < len);
  free(copy);
  return alive;
}

/* Feeds buf cut at the given offsets (ascending, inside (0, n)), then closes the stream
 * when close_end. Responses first queue the methods they answer. */
static void run(int role, const char *const *methods, const char *buf, size_t n,
                const size_t *cuts, size_t ncuts, int close_end, transcript *t) {
  ss__h1 p;
  size_t from = 0, k;
  ss__h1_init(&p, role);
  for (k = 0; methods && methods[k]; k++) ss__h1_expect_response_to(&p, methods[k]);
  memset(t, 0, sizeof *t);
  for (k = 0; k <= ncuts; k++) {
    size_t to = k < ncuts ? cuts[k] : n;
    if (!feed_piece(&p, buf + from, to - from, from, t)) return;
    from = to;
  }
  if (close_end && ss__h1_close(&p)) record(t, SS_H1_END, n, &p);
}

static void head_eq(const ss__h1_head *a, const ss__h1_head *b) {
  ck_assert_str_eq(a->method, b->method);
  ck_assert_str_eq(a->target, b->target);
  ck_assert_int_eq(a->version_minor, b->version_minor);
  ck_assert_int_eq(a->status, b->status);
  ck_assert_str_eq(a->host, b->host);
  ck_assert_str_eq(a->user_agent, b->user_agent);
  ck_assert_str_eq(a->traceparent, b->traceparent);
  ck_assert_str_eq(a->tracestate, b->tracestate);
  ck_assert_int_eq(a->content_length, b->content_length);
  ck_assert_int_eq(a->chunked, b->chunked);
  ck_assert_int_eq(a->conn_close, b->conn_close);
  ck_assert_int_eq(a->conn_keepalive, b->conn_keepalive);
  ck_assert_int_eq(a->conn_upgrade, b->conn_upgrade);
  ck_assert_int_eq(a->expect_continue, b->expect_continue);
  ck_assert_int_eq(a->has_traceparent, b->has_traceparent);
  ck_assert_int_eq(a->target_truncated, b->target_truncated);
  ck_assert_int_eq(a->persistent, b->persistent);
  ck_assert_int_eq(a->tunnel, b->tunnel);
}

static void transcript_eq(const transcript *a, const transcript *b, const char *how) {
  int k;
  ck_assert_msg(a->n == b->n, "%s: %d events, whole feed had %d", how, a->n, b->n);
  for (k = 0; k < a->n; k++) {
    ck_assert_msg(a->ev[k].ev == b->ev[k].ev && a->ev[k].at == b->ev[k].at,
                  "%s: event %d is %d at %zu, whole feed had %d at %zu", how, k, a->ev[k].ev,
                  a->ev[k].at, b->ev[k].ev, b->ev[k].at);
    if (a->ev[k].ev & SS_H1_HEAD) head_eq(&a->ev[k].head, &b->ev[k].head);
  }
}

/* The whole buffer in one feed, then every two-piece split and byte by byte must give
 * the same transcript. Returns the whole-feed transcript in *t for the caller's checks. */
static void feed_every_way(int role, const char *const *methods, const char *buf, size_t n,
                           int close_end, transcript *t) {
  static transcript other;
  static size_t cuts[1 << 16];
  size_t k;
  char how[64];
  run(role, methods, buf, n, NULL, 0, close_end, t);
  for (k = 1; k < n; k++) {
    run(role, methods, buf, n, &k, 1, close_end, &other);
    snprintf(how, sizeof how, "split at %zu", k);
    transcript_eq(&other, t, how);
  }
  ck_assert_uint_lt(n, sizeof cuts / sizeof cuts[0]);
  for (k = 1; k < n; k++) cuts[k - 1] = k;
  run(role, methods, buf, n, cuts, n ? n - 1 : 0, close_end, &other);
  transcript_eq(&other, t, "byte by byte");
}

static const char *const GET[] = {"GET", NULL};
static const char *const POST[] = {"POST", NULL};
static const char *const HEAD[] = {"HEAD", NULL};

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

/* ---- requests as real clients send them ---- */

static const char curl_get[] = "GET /orders/42?x=1 HTTP/1.1\r\n"
                               "Host: 127.0.0.1:18091\r\n"
                               "User-Agent: curl/7.88.1\r\n"
                               "Accept: */*\r\n"
                               "traceparent: " TP "\r\n"
                               "\r\n";

START_TEST(test_curl_get_is_one_bodiless_message_with_its_traceparent) {
  transcript t;
  const ss__h1_head *h;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(curl_get), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_uint_eq(t.ev[0].at, sizeof curl_get - 1);
  h = &t.ev[0].head;
  ck_assert_str_eq(h->method, "GET");
  ck_assert_str_eq(h->target, "/orders/42?x=1");
  ck_assert_int_eq(h->version_minor, 1);
  ck_assert_str_eq(h->host, "127.0.0.1:18091");
  ck_assert_str_eq(h->user_agent, "curl/7.88.1");
  ck_assert_str_eq(h->traceparent, TP);
  ck_assert_int_eq(h->has_traceparent, 1);
  ck_assert_str_eq(h->tracestate, "");
  ck_assert_int_eq(h->content_length, -1);
  ck_assert_int_eq(h->persistent, 1);
  ck_assert_int_eq(h->target_truncated, 0);
}
END_TEST

static const char curl_post[] = "POST /submit HTTP/1.1\r\n"
                                "Host: 127.0.0.1:18091\r\n"
                                "User-Agent: curl/7.88.1\r\n"
                                "Accept: */*\r\n"
                                "Content-Length: 7\r\n"
                                "Content-Type: application/x-www-form-urlencoded\r\n"
                                "\r\n"
                                "a=1&b=2";

START_TEST(test_curl_post_head_then_end_after_content_length) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(curl_post), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_uint_eq(t.ev[0].at, sizeof curl_post - 1 - 7);
  ck_assert_str_eq(t.ev[0].head.method, "POST");
  ck_assert_int_eq(t.ev[0].head.content_length, 7);
  ck_assert_int_eq(t.ev[0].head.has_traceparent, 0);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof curl_post - 1);
}
END_TEST

static const char curl_expect[] = "POST /up HTTP/1.1\r\n"
                                  "Host: 127.0.0.1:18091\r\n"
                                  "User-Agent: curl/7.88.1\r\n"
                                  "Accept: */*\r\n"
                                  "Expect: 100-continue\r\n"
                                  "Content-Length: 5\r\n"
                                  "Content-Type: application/x-www-form-urlencoded\r\n"
                                  "\r\n"
                                  "hello";

START_TEST(test_curl_expect_continue_request_reports_the_expectation) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(curl_expect), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.expect_continue, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof curl_expect - 1);
}
END_TEST

static const char curl_http10[] = "GET /old HTTP/1.0\r\n"
                                  "Host: 127.0.0.1:18091\r\n"
                                  "User-Agent: curl/7.88.1\r\n"
                                  "Accept: */*\r\n"
                                  "\r\n";
static const char http10_keepalive[] = "GET /ka HTTP/1.0\r\n"
                                       "Host: a\r\n"
                                       "Connection: Keep-Alive\r\n"
                                       "\r\n";

START_TEST(test_http10_request_is_not_persistent_unless_keep_alive) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(curl_http10), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[0].head.version_minor, 0);
  ck_assert_int_eq(t.ev[0].head.persistent, 0);
  feed_every_way(SS_H1_REQUEST, NULL, LIT(http10_keepalive), 0, &t);
  ck_assert_int_eq(t.ev[0].head.conn_keepalive, 1);
  ck_assert_int_eq(t.ev[0].head.persistent, 1);
}
END_TEST

static const char urllib_get[] = "GET /inventory?sku=7 HTTP/1.1\r\n"
                                 "Accept-Encoding: identity\r\n"
                                 "Host: 127.0.0.1:18091\r\n"
                                 "User-Agent: Python-urllib/3.11\r\n"
                                 "Connection: close\r\n"
                                 "\r\n";
static const char urllib_post[] = "POST /api HTTP/1.1\r\n"
                                  "Accept-Encoding: identity\r\n"
                                  "Content-Length: 8\r\n"
                                  "Host: 127.0.0.1:18091\r\n"
                                  "User-Agent: Python-urllib/3.11\r\n"
                                  "Content-Type: application/json\r\n"
                                  "Connection: close\r\n"
                                  "\r\n"
                                  "{\"a\": 1}";

START_TEST(test_urllib_requests_with_connection_close) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(urllib_get), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_str_eq(t.ev[0].head.target, "/inventory?sku=7");
  ck_assert_str_eq(t.ev[0].head.user_agent, "Python-urllib/3.11");
  ck_assert_int_eq(t.ev[0].head.conn_close, 1);
  ck_assert_int_eq(t.ev[0].head.persistent, 0);
  feed_every_way(SS_H1_REQUEST, NULL, LIT(urllib_post), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.content_length, 8);
  ck_assert_uint_eq(t.ev[1].at, sizeof urllib_post - 1);
}
END_TEST

static const char httpclient_chunked[] = "POST /stream HTTP/1.1\r\n"
                                         "Host: 127.0.0.1:18091\r\n"
                                         "Accept-Encoding: identity\r\n"
                                         "Transfer-Encoding: chunked\r\n"
                                         "\r\n"
                                         "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";

START_TEST(test_http_client_chunked_request_ends_at_last_chunk) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(httpclient_chunked), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.chunked, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof httpclient_chunked - 1);
}
END_TEST

static const char chunked_ext_trailers[] =
    "POST /upload HTTP/1.1\r\n"
    "Host: example.com\r\n"
    "TRANSFER-ENCODING: gzip, Chunked\r\n"
    "Trailer: Expires, X-Checksum\r\n"
    "\r\n"
    "4;name=val;q=\"a;b\r\"\r\n"
    "Wiki\r\n"
    "5 ; ext\r\n"
    "pedia\r\n"
    "E\r\n"
    " in\r\n\r\nchunks.\r\n"
    "000;last\r\n"
    "Expires: never\r\n"
    "X-Checksum: abc\r\n"
    "\r\n"
    "GET /next HTTP/1.1\r\nHost: example.com\r\n\r\n";

START_TEST(test_chunked_with_extensions_and_trailers_then_next_request) {
  transcript t;
  size_t first = sizeof chunked_ext_trailers - 1 - strlen("GET /next HTTP/1.1\r\nHost: "
                                                          "example.com\r\n\r\n");
  feed_every_way(SS_H1_REQUEST, NULL, LIT(chunked_ext_trailers), 0, &t);
  ck_assert_int_eq(t.n, 3);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.chunked, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, first);
  ck_assert_int_eq(t.ev[2].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_str_eq(t.ev[2].head.target, "/next");
  ck_assert_int_eq(t.ev[2].head.chunked, 0);
  ck_assert_uint_eq(t.ev[2].at, sizeof chunked_ext_trailers - 1);
}
END_TEST

START_TEST(test_list_fields_match_whole_tokens_in_any_case) {
  static const char req[] = "POST /t HTTP/1.0\r\n"
                            "Connection: an-unusually-long-connection-option, Keep-Alive\r\n"
                            "Connection: closed, xclose, upgrade;x=1\r\n"
                            "Expect: 100-Continue\r\n"
                            "Transfer-Encoding: chunked-ish, CHUNKED ;p=\"a\\\",b\"\r\n"
                            "\r\n0\r\n\r\n";
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(req), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.conn_keepalive, 1);
  ck_assert_int_eq(t.ev[0].head.conn_close, 0);
  ck_assert_int_eq(t.ev[0].head.conn_upgrade, 1);
  ck_assert_int_eq(t.ev[0].head.persistent, 1);
  ck_assert_int_eq(t.ev[0].head.expect_continue, 1);
  ck_assert_int_eq(t.ev[0].head.chunked, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
}
END_TEST

static const char pipelined[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                                "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz"
                                "\r\n" /* a stray CRLF after a body, tolerated (RFC 9112 2.2) */
                                "DELETE /c?d=1 HTTP/1.1\r\nHost: h\r\n\r\n";

START_TEST(test_three_pipelined_requests_in_one_buffer) {
  transcript t;
  size_t a = strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  size_t bh = a + strlen("POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n");
  feed_every_way(SS_H1_REQUEST, NULL, LIT(pipelined), 0, &t);
  ck_assert_int_eq(t.n, 4);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_uint_eq(t.ev[0].at, a);
  ck_assert_str_eq(t.ev[0].head.target, "/a");
  ck_assert_int_eq(t.ev[1].ev, SS_H1_HEAD);
  ck_assert_uint_eq(t.ev[1].at, bh);
  ck_assert_str_eq(t.ev[1].head.method, "POST");
  ck_assert_int_eq(t.ev[2].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[2].at, bh + 3);
  ck_assert_int_eq(t.ev[3].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_str_eq(t.ev[3].head.method, "DELETE");
  ck_assert_str_eq(t.ev[3].head.target, "/c?d=1");
  ck_assert_uint_eq(t.ev[3].at, sizeof pipelined - 1);
}
END_TEST

static const char folded[] = "GET / HTTP/1.1\r\n"
                             "Host:example.com  \r\n"
                             "User-Agent: folded\r\n"
                             "  agent/1.0 \r\n"
                             "X-Long: a\r\n"
                             "\tb\r\n"
                             "Connection: \r\n"
                             " keep-alive\r\n"
                             "tracestate: a=1\r\n"
                             "TraceState:\t b=2 \r\n"
                             "tracestate:\r\n"
                             "traceparent: " TP "\r\n"
                             "Traceparent: 00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-00\r\n"
                             "host: second.example\r\n"
                             "\r\n";

START_TEST(test_folded_lines_join_with_one_space_and_first_fields_win) {
  transcript t;
  const ss__h1_head *h;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(folded), 0, &t);
  ck_assert_int_eq(t.n, 1);
  h = &t.ev[0].head;
  ck_assert_str_eq(h->host, "example.com");
  ck_assert_str_eq(h->user_agent, "folded agent/1.0");
  ck_assert_int_eq(h->conn_keepalive, 1);
  ck_assert_str_eq(h->tracestate, "a=1,b=2");
  ck_assert_str_eq(h->traceparent, TP);
}
END_TEST

START_TEST(test_bare_lf_line_ends_are_tolerated) {
  static const char req[] = "GET /lf HTTP/1.1\nHost: a\nContent-Length: 2\n\nokGET / HTTP/1.1\n\n";
  static const char resp[] = "HTTP/1.1 200 OK\nContent-Length: 1\n\nx";
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, LIT(req), 0, &t);
  ck_assert_int_eq(t.n, 3);
  ck_assert_str_eq(t.ev[0].head.host, "a");
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_int_eq(t.ev[2].ev, SS_H1_HEAD | SS_H1_END);
  feed_every_way(SS_H1_RESPONSE, GET, LIT(resp), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
}
END_TEST

/* ---- responses as real servers send them ---- */

static const char py_200[] = "HTTP/1.0 200 OK\r\n"
                             "Server: SimpleHTTP/0.6 Python/3.11.7\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                             "Content-type: text/plain\r\n"
                             "Content-Length: 6\r\n"
                             "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                             "\r\n"
                             "hello\n";

START_TEST(test_python_http_server_http10_response_with_length) {
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(py_200), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.status, 200);
  ck_assert_int_eq(t.ev[0].head.version_minor, 0);
  ck_assert_int_eq(t.ev[0].head.content_length, 6);
  ck_assert_int_eq(t.ev[0].head.persistent, 0);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof py_200 - 1);
}
END_TEST

/* BaseHTTPRequestHandler: send_response(200); end_headers(); wfile.write(...) */
static const char py_unframed[] = "HTTP/1.0 200 OK\r\n"
                                  "Server: BaseHTTP/0.6 Python/3.11.7\r\n"
                                  "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                                  "\r\n"
                                  "streamed until the server closes";

START_TEST(test_response_without_length_ends_at_close) {
  transcript t;
  ss__h1 p;
  int ev;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(py_unframed), 1, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.persistent, 0);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof py_unframed - 1);
  /* without the close, no END; a close elsewhere completes nothing */
  feed_every_way(SS_H1_RESPONSE, GET, LIT(py_unframed), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ss__h1_init(&p, SS_H1_RESPONSE);
  ck_assert_int_eq(ss__h1_close(&p), 0);
  ck_assert_uint_eq(ss__h1_feed(&p, "HTTP/1.1", 8, &ev), 8);
  ck_assert_int_eq(ev, SS_H1_BAD);
  ss__h1_init(&p, SS_H1_RESPONSE);
  ck_assert_uint_eq(ss__h1_feed(&p, LIT("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"), &ev),
                    38);
  ck_assert_int_eq(ev, SS_H1_HEAD);
  ss__h1_feed(&p, "abc", 3, &ev);
  ck_assert_int_eq(ss__h1_close(&p), 0); /* truncated, not complete */
}
END_TEST

static const char ng_200[] = "HTTP/1.1 200 OK\r\n"
                             "Server: nginx/1.22.1\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 6\r\n"
                             "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                             "Connection: keep-alive\r\n"
                             "ETag: \"6b0d8b0c-6\"\r\n"
                             "Accept-Ranges: bytes\r\n"
                             "\r\n"
                             "hello\n";
static const char ng_head[] = "HTTP/1.1 200 OK\r\n"
                              "Server: nginx/1.22.1\r\n"
                              "Date: Mon, 30 Nov 2026 14:41:21 GMT\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: 6\r\n"
                              "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                              "Connection: keep-alive\r\n"
                              "ETag: \"6b0d8b0c-6\"\r\n"
                              "Accept-Ranges: bytes\r\n"
                              "\r\n";

START_TEST(test_response_to_head_has_no_body_despite_content_length) {
  transcript t;
  char both[512];
  size_t n = 0;
  static const char *const head_then_get[] = {"HEAD", "GET", NULL};
  feed_every_way(SS_H1_RESPONSE, HEAD, LIT(ng_head), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[0].head.content_length, 6);
  ck_assert_int_eq(t.ev[0].head.persistent, 1);
  /* the same bytes answering a GET wait for the body */
  feed_every_way(SS_H1_RESPONSE, GET, LIT(ng_head), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  /* pipelined: the HEAD response, then a GET's response with its body */
  memcpy(both + n, ng_head, sizeof ng_head - 1), n += sizeof ng_head - 1;
  memcpy(both + n, ng_200, sizeof ng_200 - 1), n += sizeof ng_200 - 1;
  feed_every_way(SS_H1_RESPONSE, head_then_get, both, n, 0, &t);
  ck_assert_int_eq(t.n, 3);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[2].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[2].at, n);
}
END_TEST

static const char ng_204[] = "HTTP/1.1 204 No Content\r\n"
                             "Server: nginx/1.22.1\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:20 GMT\r\n"
                             "Connection: keep-alive\r\n"
                             "X-A: b\r\n"
                             "\r\n";
static const char ng_304[] = "HTTP/1.1 304 Not Modified\r\n"
                             "Server: nginx/1.22.1\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:31 GMT\r\n"
                             "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                             "Connection: keep-alive\r\n"
                             "ETag: \"6b0d8b0c-6\"\r\n"
                             "\r\n";
static const char py_304[] = "HTTP/1.0 304 Not Modified\r\n"
                             "Server: SimpleHTTP/0.6 Python/3.11.7\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                             "\r\n";

START_TEST(test_204_and_304_have_no_body) {
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(ng_204), 1, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[0].head.status, 204);
  feed_every_way(SS_H1_RESPONSE, GET, LIT(ng_304), 1, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  /* HTTP/1.0 without a length: still no body, not "until close" */
  feed_every_way(SS_H1_RESPONSE, GET, LIT(py_304), 1, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[0].head.status, 304);
}
END_TEST

static const char ng_100[] = "HTTP/1.1 100 Continue\r\n"
                             "\r\n"
                             "HTTP/1.1 501 Unsupported method ('POST')\r\n"
                             "Server: nginx/1.22.1\r\n"
                             "Date: Mon, 30 Nov 2026 14:41:32 GMT\r\n"
                             "Content-Type: text/html;charset=utf-8\r\n"
                             "Content-Length: 357\r\n"
                             "Connection: keep-alive\r\n"
                             "\r\n"
                             "<!DOCTYPE HTML>\n<html lang=\"en\">\n    <head>\n        <meta "
                             "charset=\"utf-8\">\n        <title>Error response</title>\n    "
                             "</head>\n    <body>\n        <h1>Error response</h1>\n        "
                             "<p>Error code: 501</p>\n        <p>Message: Unsupported method "
                             "('POST').</p>\n        <p>Error code explanation: 501 - Server "
                             "does not support this operation.</p>\n    </body>\n</html>\n";

START_TEST(test_100_continue_is_an_interim_head_then_the_final_response) {
  transcript t;
  static const char *const two[] = {"POST", "GET", NULL};
  char buf[1024];
  size_t n = sizeof ng_100 - 1;
  feed_every_way(SS_H1_RESPONSE, POST, LIT(ng_100), 0, &t);
  ck_assert_int_eq(t.n, 3);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[0].head.status, 100);
  ck_assert_uint_eq(t.ev[0].at, 25);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[1].head.status, 501);
  ck_assert_int_eq(t.ev[1].head.content_length, 357);
  ck_assert_int_eq(t.ev[2].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[2].at, sizeof ng_100 - 1);
  /* the interim response did not use up the queued method: a HEAD-less GET follows */
  memcpy(buf, ng_100, n);
  memcpy(buf + n, ng_204, sizeof ng_204 - 1);
  feed_every_way(SS_H1_RESPONSE, two, buf, n + sizeof ng_204 - 1, 0, &t);
  ck_assert_int_eq(t.n, 4);
  ck_assert_int_eq(t.ev[3].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[3].head.status, 204);
}
END_TEST

static const char ng_gzip_chunked[] =
    "HTTP/1.1 200 OK\r\n"
    "Server: nginx/1.22.1\r\n"
    "Date: Mon, 30 Nov 2026 14:41:21 GMT\r\n"
    "Content-Type: text/plain\r\n"
    "Last-Modified: Mon, 30 Nov 2026 14:41:18 GMT\r\n"
    "Transfer-Encoding: chunked\r\n"
    "Connection: keep-alive\r\n"
    "ETag: W/\"6b0d8b0e-21\"\r\n"
    "Content-Encoding: gzip\r\n"
    "\r\n"
    "23\r\n"
    "\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03\xcbH\xcd\xc9\xc9WH\xaf\xca,P\xc8\xc0\xc6\xe4"
    "\x02\x00\xf4\x08\xa4\xd1!\x00\x00\x00\r\n"
    "0\r\n"
    "\r\n";

START_TEST(test_nginx_gzip_chunked_response) {
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(ng_gzip_chunked), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.chunked, 1);
  ck_assert_int_eq(t.ev[0].head.persistent, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_uint_eq(t.ev[1].at, sizeof ng_gzip_chunked - 1);
}
END_TEST

START_TEST(test_pipelined_responses_follow_the_queued_methods) {
  static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
                             "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
                             "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
  static const char *const methods[] = {"GET", "HEAD", "GET", "PUT", NULL};
  transcript t;
  feed_every_way(SS_H1_RESPONSE, methods, LIT(resp), 0, &t);
  ck_assert_int_eq(t.n, 6);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_END);
  ck_assert_int_eq(t.ev[2].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[3].ev, SS_H1_HEAD);
  ck_assert_int_eq(t.ev[4].ev, SS_H1_END);
  ck_assert_int_eq(t.ev[5].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[5].head.status, 404);
  ck_assert_uint_eq(t.ev[5].at, sizeof resp - 1);
}
END_TEST

START_TEST(test_status_line_without_reason_and_odd_transfer_codings) {
  static const char no_reason[] = "HTTP/1.1 200\r\ncontent-length: 1\r\n\r\nx";
  static const char gzip_only[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                                  "Content-Length: 3\r\n\r\nabcdef";
  static const char te_req[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(no_reason), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.status, 200);
  /* a response whose codings do not end in chunked runs until close, ignoring the length */
  feed_every_way(SS_H1_RESPONSE, GET, LIT(gzip_only), 1, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.chunked, 0);
  ck_assert_uint_eq(t.ev[1].at, sizeof gzip_only - 1);
  /* a request's cannot be framed at all */
  feed_every_way(SS_H1_REQUEST, NULL, LIT(te_req), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
}
END_TEST

START_TEST(test_switching_protocols_and_connect_end_http_on_the_stream) {
  static const char ws[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\n\r\n\x81\x05hello";
  static const char tunnel[] = "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01";
  static const char *const connect[] = {"CONNECT", NULL};
  static const char req[] = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, LIT(ws), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_int_eq(t.ev[0].head.tunnel, 1);
  ck_assert_int_eq(t.ev[0].head.conn_upgrade, 1);
  ck_assert_int_eq(t.ev[1].ev, SS_H1_BAD);
  feed_every_way(SS_H1_RESPONSE, connect, LIT(tunnel), 0, &t);
  ck_assert_int_eq(t.n, 2);
  ck_assert_int_eq(t.ev[0].head.tunnel, 1);
  feed_every_way(SS_H1_REQUEST, NULL, LIT(req), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  ck_assert_str_eq(t.ev[0].head.target, "example.com:443");
}
END_TEST

/* ---- bounds and malformed heads ---- */

static size_t make_head(char *buf, size_t cap, const char *field, size_t value_len) {
  size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: h\r\n%s: ", field);
  memset(buf + n, 'v', value_len);
  n += value_len;
  memcpy(buf + n, "\r\n\r\n", 4);
  return n + 4;
}

START_TEST(test_long_fields_are_skipped_or_truncated_within_the_head_bound) {
  static char buf[SS_H1_MAX_HEAD + 64];
  transcript t;
  size_t n = make_head(buf, sizeof buf, "X-Big", 12000);
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
  n = make_head(buf, sizeof buf, "User-Agent", 12000);
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_uint_eq(strlen(t.ev[0].head.user_agent), sizeof t.ev[0].head.user_agent - 1);
  n = make_head(buf, sizeof buf, "A-Field-Name-Longer-Than-The-Name-Buffer", 100);
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
}
END_TEST

START_TEST(test_head_over_the_bound_is_bad) {
  static char buf[SS_H1_MAX_HEAD + 64];
  transcript t;
  size_t n = make_head(buf, sizeof buf, "X-Big", SS_H1_MAX_HEAD);
  size_t cut = n / 2;
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  run(SS_H1_REQUEST, NULL, buf, n, &cut, 1, 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  n = make_head(buf, sizeof buf, "User-Agent", SS_H1_MAX_HEAD);
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  /* exactly at the bound is still fine */
  n = make_head(buf, sizeof buf, "X-Big", 0);
  n = make_head(buf, sizeof buf, "X-Big", SS_H1_MAX_HEAD - n);
  ck_assert_uint_eq(n, SS_H1_MAX_HEAD);
  run(SS_H1_REQUEST, NULL, buf, n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD | SS_H1_END);
}
END_TEST

START_TEST(test_long_target_is_truncated_and_flagged) {
  static char buf[4096];
  transcript t;
  size_t n = 0;
  memcpy(buf, "GET /", 5), n = 5;
  memset(buf + n, 'p', 1000), n += 1000;
  memcpy(buf + n, " HTTP/1.1\r\n\r\n", 13), n += 13;
  feed_every_way(SS_H1_REQUEST, NULL, buf, n, 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].head.target_truncated, 1);
  ck_assert_uint_eq(strlen(t.ev[0].head.target), sizeof t.ev[0].head.target - 1);
}
END_TEST

static const struct {
  const char *text;
  int64_t want; /* content length, or -2 for BAD */
} cl_cases[] = {
    {"Content-Length: 5\r\n", 5},
    {"Content-Length: 5\r\ncontent-length:5 \r\n", 5},
    {"Content-Length: 5, 5\r\n", 5},
    {"Content-Length: 5\r\nContent-Length: 6\r\n", -2},
    {"Content-Length: 5, 6\r\n", -2},
    {"Content-Length: -1\r\n", -2},
    {"Content-Length: 0x10\r\n", -2},
    {"Content-Length: 1 2\r\n", -2},
    {"Content-Length: \r\n", -2},
    {"Content-Length: 99999999999999999999\r\n", -2},
    {"Content-Length: 9223372036854775807\r\n", INT64_MAX},
};

START_TEST(test_content_length_values_and_conflicts) {
  char buf[256];
  transcript t;
  int n = snprintf(buf, sizeof buf, "PUT /x HTTP/1.1\r\nHost: h\r\n%s\r\n", cl_cases[_i].text);
  run(SS_H1_REQUEST, NULL, buf, (size_t)n, NULL, 0, 0, &t);
  ck_assert_int_eq(t.n, 1);
  if (cl_cases[_i].want == -2) {
    ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  } else {
    ck_assert_int_eq(t.ev[0].ev, SS_H1_HEAD);
    ck_assert_int_eq(t.ev[0].head.content_length, cl_cases[_i].want);
  }
}
END_TEST

static const char *const bad_heads[] = {
    "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
    "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
    "GET / HTTP/1.1\r\n leading: space\r\n\r\n",
    "GET / HTTP/1.1\r\n: empty\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Other: a\rb\r\n\r\n",
    "GET / HTTP/1.1\r\nX-Other: a\r\r\n\r\n",
    "GET / HTTP/2.0\r\n\r\n",
    "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "GET /\r\n",
    "GET  / HTTP/1.1\r\n\r\n",
    "get / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1 \r\n\r\n",
    "GET /a\x01 HTTP/1.1\r\n\r\n",
    "AVERYLONGMETHODNAMEOVER24 / HTTP/1.1\r\n\r\n",
    "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1 1\r\n",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
};

START_TEST(test_malformed_requests_are_bad) {
  transcript t;
  feed_every_way(SS_H1_REQUEST, NULL, bad_heads[_i], strlen(bad_heads[_i]), 0, &t);
  ck_assert_int_ge(t.n, 1);
  ck_assert_int_eq(t.ev[t.n - 1].ev, SS_H1_BAD);
}
END_TEST

static const char *const bad_responses[] = {
    "HTTP/1.1 20 OK\r\n\r\n",     "HTTP/1.1 2000 OK\r\n\r\n",   "HTTP/1.1 099 Low\r\n\r\n",
    "HTTP/1.1 600 High\r\n\r\n",  "HTTP/2 200\r\n\r\n",         "HTTP/1.1  200 OK\r\n\r\n",
    "HTTP/1.x 200 OK\r\n\r\n",    "http/1.1 200 OK\r\n\r\n",    "ICY 200 OK\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
};

START_TEST(test_malformed_responses_are_bad) {
  transcript t;
  feed_every_way(SS_H1_RESPONSE, GET, bad_responses[_i], strlen(bad_responses[_i]), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
}
END_TEST

/* ---- other protocols on the same sockets ---- */

/* How many bytes, fed one at a time, until the parser says BAD (0: never). */
static size_t bytes_until_bad(int role, const char *buf, size_t n) {
  ss__h1 p;
  size_t k;
  ss__h1_init(&p, role);
  for (k = 0; k < n; k++) {
    int ev;
    char one = buf[k];
    ss__h1_feed(&p, &one, 1, &ev);
    if (ev == SS_H1_BAD) return k + 1;
  }
  return 0;
}

static const char pg_startup[] = "\x00\x00\x00\x29\x00\x03\x00\x00user\0postgres\0database\0"
                                 "app\0application_name\0psql\0\0";
static const char pg_sslrequest[] = "\x00\x00\x00\x08\x04\xd2\x16\x2f";
static const char tls_client_hello[] =
    "\x16\x03\x01\x00\xf4\x01\x00\x00\xf0\x03\x03\x5b\x1c\x7e\x42\x9a\x11\x00\x3e\x13\x02\x13"
    "\x03\x13\x01\xc0\x2c\xc0\x30\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0\x2b\x01\x00\x00\x75\x00"
    "\x00\x00\x0e\x00\x0c\x00\x00\x09localhost";
static const char tls_server_hello[] = "\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03";
static const char redis_ping[] = "*1\r\n$4\r\nPING\r\n";
static const char redis_inline[] = "PING\r\n";
static const char redis_pong[] = "+PONG\r\n";
static const char smtp_ehlo[] = "EHLO mail.example.com\r\n";
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

START_TEST(test_other_protocols_are_rejected_within_a_few_bytes) {
  transcript t;
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(pg_startup)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(pg_sslrequest)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(tls_client_hello)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(redis_ping)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(redis_inline)), 5);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_REQUEST, LIT(smtp_ehlo)), 22);
  ck_assert_uint_le(bytes_until_bad(SS_H1_REQUEST, LIT(h2_preface)), 14);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_RESPONSE, LIT(tls_server_hello)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_RESPONSE, LIT(redis_pong)), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_RESPONSE, "R\0\0\0\x08\0\0\0\0", 9), 1);
  ck_assert_uint_eq(bytes_until_bad(SS_H1_RESPONSE, LIT(curl_get)), 1);
  /* and whole, at every split */
  feed_every_way(SS_H1_REQUEST, NULL, LIT(pg_startup), 0, &t);
  ck_assert_int_eq(t.n, 1);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  feed_every_way(SS_H1_REQUEST, NULL, LIT(tls_client_hello), 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
  feed_every_way(SS_H1_REQUEST, NULL, LIT(redis_ping), 0, &t);
  ck_assert_int_eq(t.ev[0].ev, SS_H1_BAD);
}
END_TEST

START_TEST(test_bad_stream_stays_bad_and_consumes_everything) {
  ss__h1 p;
  int ev;
  ss__h1_init(&p, SS_H1_REQUEST);
  ck_assert_uint_eq(ss__h1_feed(&p, LIT(tls_client_hello), &ev), sizeof tls_client_hello - 1);
  ck_assert_int_eq(ev, SS_H1_BAD);
  ck_assert_uint_eq(ss__h1_feed(&p, LIT(curl_get), &ev), sizeof curl_get - 1);
  ck_assert_int_eq(ev, SS_H1_BAD);
  ck_assert_uint_eq(ss__h1_feed(&p, NULL, 0, &ev), 0);
  ck_assert_int_eq(ev, SS_H1_BAD);
  ss__h1_init(&p, SS_H1_REQUEST);
  ck_assert_uint_eq(ss__h1_feed(&p, NULL, 0, &ev), 0);
  ck_assert_int_eq(ev, SS_H1_NEED);
}
END_TEST

/* xorshift64*: a fixed seed, so a failure reproduces */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545f4914f6cdd1dull;
}

/* Feeds buf in random pieces; only checks the driver's invariants (no crash, no over-read,
 * consumption within bounds, BAD is final). */
static void feed_random_pieces(int role, const char *buf, size_t n) {
  transcript t;
  size_t cuts[8], ncuts = 0, k;
  static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST", NULL};
  for (k = 0; k < 8 && n > 1; k++) {
    size_t c = 1 + (size_t)(rng() % (n - 1));
    if (ncuts == 0 || c > cuts[ncuts - 1]) cuts[ncuts++] = c;
  }
  run(role, methods, buf, n, cuts, ncuts, rng() & 1, &t);
  for (k = 0; k + 1 < (size_t)t.n; k++) ck_assert_int_ne(t.ev[k].ev, SS_H1_BAD);
}

START_TEST(test_random_bytes_never_crash) {
  static char buf[1024];
  int iter;
  for (iter = 0; iter < 4000; iter++) {
    size_t n = (size_t)(rng() % sizeof buf), k;
    for (k = 0; k < n; k++) buf[k] = (char)rng();
    /* a quarter start like HTTP so the deeper states see garbage too */
    if ((iter & 3) == 1 && n > 16) memcpy(buf, "GET /x HTTP/1.1\n", 16);
    if ((iter & 3) == 2 && n > 13) memcpy(buf, "HTTP/1.1 200\n", 13);
    feed_random_pieces(SS_H1_REQUEST, buf, n);
    feed_random_pieces(SS_H1_RESPONSE, buf, n);
  }
}
END_TEST

/* Real messages with a few bytes changed to bytes that matter to the grammar. */
START_TEST(test_mutated_real_messages_never_crash) {
  static const struct {
    const char *s;
    size_t n;
    int role;
  } seeds[] = {
      {LIT(curl_get), SS_H1_REQUEST},          {LIT(curl_post), SS_H1_REQUEST},
      {LIT(chunked_ext_trailers), SS_H1_REQUEST}, {LIT(pipelined), SS_H1_REQUEST},
      {LIT(folded), SS_H1_REQUEST},            {LIT(ng_100), SS_H1_RESPONSE},
      {LIT(ng_gzip_chunked), SS_H1_RESPONSE},  {LIT(py_unframed), SS_H1_RESPONSE},
  };
  static const char interesting[] = "\r\n :;,\t0123456789aAfF-\0\x80\xff";
  static char buf[1024];
  int iter;
  for (iter = 0; iter < 4000; iter++) {
    size_t which = (size_t)(rng() % (sizeof seeds / sizeof seeds[0]));
    size_t n = seeds[which].n, k, flips = 1 + rng() % 4;
    memcpy(buf, seeds[which].s, n);
    for (k = 0; k < flips; k++)
      buf[rng() % n] = (rng() & 1) ? (char)rng()
                                   : interesting[rng() % (sizeof interesting - 1)];
    if (rng() % 4 == 0) n = (size_t)(rng() % (n + 1)); /* truncated too */
    feed_random_pieces(seeds[which].role, buf, n);
  }
}
END_TEST

/* ---- whole lines and byte by byte agree ----
 * The parser takes lines that are whole within one feed a line at a time and everything
 * else a byte at a time; these feed messages whose lines stress the line-at-a-time path
 * (names of every length and of the rarer token bytes, values with control bytes, tabs and
 * trailing OWS, lines ending near the end of the buffer, start lines at their limits) and
 * require the same events and heads from every split point and byte by byte. */

static const char *const line_cases[] = {
    "GET /a HTTP/1.1\r\nX:\r\nX-Y_z.w~!#$%&'*+^`|: v\r\n\r\n",
    "GET /a HTTP/1.1\r\nAn-Unusually-Long-Field-Name-Here: 1\r\nHost:h\r\n\r\n",
    "GET /a HTTP/1.1\r\nhOsT: \t a b \t \r\nUSER-AGENT:\tua/1 \x0b\x0c\x01x\t\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\nUser-Agent:\r\n ua folded\r\n\r\n",
    "GET /a HTTP/1.1\r\nTraceparent: " TP " \r\nTRACESTATE: a=1\r\ntracestate: \r\n"
    "tracestate: b=2 \r\n\r\n",
    "GET /a HTTP/1.1\r\ntraceparent:\r\ntraceparent: " TP "\r\n\r\n",
    "POST /a HTTP/1.1\r\nContent-Length: 0003 \r\n\r\nabc",
    "POST /a HTTP/1.1\r\nContent-Length: 2, 2\r\ncontent-length:2\r\n\r\nab",
    "POST /a HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
    "POST /a HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
    "POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "POST /a HTTP/1.1\r\nContent-Length: 1\r\n 2\r\n\r\nab",
    "POST /a HTTP/1.1\r\nContent-Length: x1\r\n\r\n",
    "POST /a HTTP/1.1\r\nContent-Length:\r\n\r\n",
    "POST /a HTTP/1.1\r\nTransfer-Encoding: gzip , CHUNKED \r\n\r\n1\r\na\r\n0\r\n\r\n",
    "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked;q=\"a,b\"\r\n\r\n0\r\n\r\n",
    "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n gzip\r\n\r\n",
    "GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\nConnection: close, upgrade\r\n\r\n",
    "GET /a HTTP/1.0\r\nConnection: keep-alive-and-some-more-bytes\r\nExpect: 100-Continue\r\n\r\n",
    "GET /a HTTP/1.1\r\nConnection: keep-alive\r\n , close\r\n\r\n",
    "GET /a HTTP/1.1\nHost: lf\nX: y\n\nGET /b HTTP/1.1\r\n\r\n",
    "\r\n\nGET /a HTTP/1.1\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost : a\r\n\r\n",
    "GET /a HTTP/1.1\r\nHo\"st: a\r\n\r\n",
    "GET /a HTTP/1.1\r\nNoColon\r\n\r\n",
    "GET /a HTTP/1.1\r\n: empty name\r\n\r\n",
    "GET /a HTTP/1.1\r\n\x80x: a\r\n\r\n",
    "GET /a HTTP/1.1 \r\n\r\n",
    "GET /a HTTP/1.10\r\n\r\n",
    "GET /a  HTTP/1.1\r\n\r\n",
    "GET  /a HTTP/1.1\r\n\r\n",
    "GET /a b HTTP/1.1\r\n\r\n",
    "GET /a\x7f HTTP/1.1\r\n\r\n",
    "GET /\x80\xff\x01 HTTP/1.1\r\n\r\n",
    "GET /\xc3\xa9t\xc3\xa9?q=\xe2\x82\xac HTTP/1.1\r\n\r\n",
    "GET /a HTTP/2.0\r\n\r\n",
    "GET /a HTTPS1.1\r\n\r\n",
    "G-E_T9 /a HTTP/1.1\r\n\r\n",
    "Get /a HTTP/1.1\r\n\r\n",
    "ABCDEFGHIJKLMNOPQRSTUVW /a HTTP/1.1\r\n\r\n",
    "ABCDEFGHIJKLMNOPQRSTUVWX /a HTTP/1.1\r\n\r\n",
    "CONNECT h:443 HTTP/1.1\r\nContent-Length: 5\r\n\r\n",
    "GET /a HTTP/1.1\r\n\r",
    "GET /a HTTP/1.1\r\nHost: a\r",
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: x\r\n\r\nab",
    "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
    "HTTP/1.1 200 \r\n\r\n",
    "HTTP/1.1 200  \x01\x80 odd reason \r\n\r\n",
    "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/1.1 099 OK\r\n\r\n",
    "HTTP/1.1 600 OK\r\n\r\n",
    "HTTP/1.1 20\r\n\r\n",
    "HTTP/1.1  200 OK\r\n\r\n",
    "HTTP/1.x 200 OK\r\n\r\n",
    "HTTP/1.0 100 Continue\r\n\r\nHTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-A: 1\r\n\tfolded\r\nX-B: 2\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n\r\n",
    "HTTP/1.1 200 OK\nX-A: 1\n\n",
};

START_TEST(test_lines_whole_and_byte_by_byte_agree) {
  static const char *const methods[] = {"GET", "GET", "GET", NULL};
  transcript t;
  size_t k;
  for (k = 0; k < sizeof line_cases / sizeof line_cases[0]; k++) {
    const char *m = line_cases[k];
    feed_every_way(strncmp(m, "HTTP/", 5) == 0 ? SS_H1_RESPONSE : SS_H1_REQUEST, methods, m,
                   strlen(m), 0, &t);
  }
}
END_TEST

/* Header lines of every length from 1 to 40 bytes, ending at every distance from the end
 * of the buffer (the word-at-a-time scans look at the last bytes of the buffer twice). */
START_TEST(test_lines_of_every_length_agree) {
  static const char *const get[] = {"GET", NULL};
  static char buf[256];
  transcript t;
  size_t name, value, n;
  for (name = 1; name <= 20; name++) {
    for (value = 0; value <= 20; value++) {
      n = (size_t)snprintf(buf, sizeof buf, "HTTP/1.1 200 OK\r\n%.*s:%.*s\r\n\r\n", (int)name,
                           "Content-LengthXXXXXXXXXXXX", (int)value, " 12345678901234567890");
      feed_every_way(SS_H1_RESPONSE, get, buf, n, 1, &t);
      n = (size_t)snprintf(buf, sizeof buf, "GET /%.*s HTTP/1.1\r\n%.*s: %.*s\r\n\r\n",
                           (int)value, "abcdefghijklmnopqrstuvwxyz", (int)name,
                           "user-agent-xxxxxxxxxxxxxxx", (int)value, "v\tw x\x01yz0123456789abcdef");
      feed_every_way(SS_H1_REQUEST, NULL, buf, n, 0, &t);
    }
  }
}
END_TEST

/* Mutated real messages: whole, and byte by byte, the same transcript. */
START_TEST(test_mutated_messages_whole_and_byte_by_byte_agree) {
  static const struct {
    const char *s;
    size_t n;
    int role;
  } seeds[] = {
      {LIT(curl_get), SS_H1_REQUEST},   {LIT(curl_post), SS_H1_REQUEST},
      {LIT(urllib_post), SS_H1_REQUEST}, {LIT(pipelined), SS_H1_REQUEST},
      {LIT(folded), SS_H1_REQUEST},     {LIT(ng_200), SS_H1_RESPONSE},
      {LIT(py_200), SS_H1_RESPONSE},    {LIT(ng_100), SS_H1_RESPONSE},
  };
  static const char *const methods[] = {"GET", "HEAD", "GET", "POST", NULL};
  static const char interesting[] = "\r\n :;,\t0123456789aAfF-_\"\0\x7f\x80\xff\x0b";
  static char buf[1024];
  static size_t cuts[1024];
  transcript whole, bytes;
  int iter;
  for (iter = 0; iter < 3000; iter++) {
    size_t which = (size_t)(rng() % (sizeof seeds / sizeof seeds[0]));
    size_t n = seeds[which].n, k, flips = 1 + rng() % 3;
    memcpy(buf, seeds[which].s, n);
    for (k = 0; k < flips; k++)
      buf[rng() % n] = (rng() & 1) ? (char)rng()
                                   : interesting[rng() % (sizeof interesting - 1)];
    for (k = 1; k < n; k++) cuts[k - 1] = k;
    run(seeds[which].role, methods, buf, n, NULL, 0, 1, &whole);
    run(seeds[which].role, methods, buf, n, cuts, n - 1, 1, &bytes);
    transcript_eq(&bytes, &whole, "mutated, byte by byte");
  }
}
END_TEST

/* ---- the stateless helpers ---- */

START_TEST(test_scan_request_finds_line_head_and_traceparent) {
  size_t le, he;
  int tp;
  const size_t line = strlen("GET /orders/42?x=1 HTTP/1.1\r\n");
  ck_assert_int_eq(ss__h1_scan_request(LIT(curl_get), &le, &he, &tp), 0);
  ck_assert_uint_eq(le, line);
  ck_assert_uint_eq(he, sizeof curl_get - 1);
  ck_assert_int_eq(tp, 1);
  ck_assert_int_eq(ss__h1_scan_request(LIT(curl_post), &le, &he, &tp), 0);
  ck_assert_uint_eq(he, sizeof curl_post - 1 - 7);
  ck_assert_int_eq(tp, 0);
  /* a partial head: the line is known, the end is not */
  ck_assert_int_eq(ss__h1_scan_request(curl_get, line + 10, &le, &he, &tp), 0);
  ck_assert_uint_eq(le, line);
  ck_assert_uint_eq(he, 0);
  ck_assert_int_eq(tp, 0);
  /* every prefix shorter than the request line could still be one */
  for (size_t k = 0; k < line; k++) {
    ck_assert_int_eq(ss__h1_scan_request(curl_get, k, &le, &he, &tp), 1);
    ck_assert_uint_eq(le, 0);
  }
}
END_TEST

START_TEST(test_scan_request_matches_traceparent_in_any_case) {
  static const char odd[] = "POST /x HTTP/1.1\nHost: a\nTraceParent: " TP "\n\nbody";
  static const char upper[] = "GET / HTTP/1.0\r\nTRACEPARENT:" TP "\r\n";
  static const char lookalike[] = "GET / HTTP/1.1\r\nX-traceparent: 1\r\ntraceparentx: 2\r\n"
                                  "  traceparent: folded\r\n\r\n";
  size_t le, he;
  int tp;
  ck_assert_int_eq(ss__h1_scan_request(LIT(odd), &le, &he, &tp), 0);
  ck_assert_uint_eq(le, strlen("POST /x HTTP/1.1\n"));
  ck_assert_uint_eq(he, sizeof odd - 1 - 4);
  ck_assert_int_eq(tp, 1);
  ck_assert_int_eq(ss__h1_scan_request(LIT(upper), &le, &he, &tp), 0);
  ck_assert_uint_eq(he, 0);
  ck_assert_int_eq(tp, 1);
  ck_assert_int_eq(ss__h1_scan_request(LIT(lookalike), &le, &he, &tp), 0);
  ck_assert_int_eq(tp, 0);
}
END_TEST

START_TEST(test_scan_request_rejects_what_is_not_a_request) {
  size_t le = 7, he = 7;
  int tp = 7;
  ck_assert_int_eq(ss__h1_scan_request(LIT(py_200), &le, &he, &tp), -1);
  ck_assert_uint_eq(le, 0);
  ck_assert_uint_eq(he, 0);
  ck_assert_int_eq(tp, 0);
  ck_assert_int_eq(ss__h1_scan_request(LIT(tls_client_hello), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(LIT(pg_startup), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(LIT(redis_inline), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(LIT("GET / HTTP/2.0\r\n\r\n"), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(LIT("GET / HTTP/1.1\rX"), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(LIT("GET / HTTP/1.1\r"), &le, &he, &tp), 1);
  ck_assert_int_eq(ss__h1_scan_request(LIT("GET HTTP/1.1\r\n"), &le, &he, &tp), -1);
  ck_assert_int_eq(ss__h1_scan_request(NULL, 0, &le, &he, &tp), 1);
}
END_TEST

START_TEST(test_looks_like_request_on_first_bytes) {
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("GET /")), 1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("GET ")), 1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("PROPFIND /dav")), 1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("OPTIONS * HTTP/1.1")), 1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("GE")), -1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("P")), -1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("POST")), -1);
  ck_assert_int_eq(ss__h1_looks_like_request(NULL, 0), -1);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("GET/")), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("get /")), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("PRI * HTTP/2.0")), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT("PING\r\n")), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT(tls_client_hello)), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT(pg_startup)), 0);
  ck_assert_int_eq(ss__h1_looks_like_request(LIT(redis_ping)), 0);
}
END_TEST

START_TEST(test_parser_state_is_small) {
  ck_assert_uint_le(sizeof(ss__h1), 1792);
}
END_TEST

static Suite *http1_suite(void) {
  Suite *s = suite_create("http1");
  TCase *tc = tcase_create("requests");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_curl_get_is_one_bodiless_message_with_its_traceparent);
  tcase_add_test(tc, test_curl_post_head_then_end_after_content_length);
  tcase_add_test(tc, test_curl_expect_continue_request_reports_the_expectation);
  tcase_add_test(tc, test_http10_request_is_not_persistent_unless_keep_alive);
  tcase_add_test(tc, test_urllib_requests_with_connection_close);
  tcase_add_test(tc, test_http_client_chunked_request_ends_at_last_chunk);
  tcase_add_test(tc, test_chunked_with_extensions_and_trailers_then_next_request);
  tcase_add_test(tc, test_list_fields_match_whole_tokens_in_any_case);
  tcase_add_test(tc, test_three_pipelined_requests_in_one_buffer);
  tcase_add_test(tc, test_folded_lines_join_with_one_space_and_first_fields_win);
  tcase_add_test(tc, test_bare_lf_line_ends_are_tolerated);
  suite_add_tcase(s, tc);
  tc = tcase_create("responses");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_python_http_server_http10_response_with_length);
  tcase_add_test(tc, test_response_without_length_ends_at_close);
  tcase_add_test(tc, test_response_to_head_has_no_body_despite_content_length);
  tcase_add_test(tc, test_204_and_304_have_no_body);
  tcase_add_test(tc, test_100_continue_is_an_interim_head_then_the_final_response);
  tcase_add_test(tc, test_nginx_gzip_chunked_response);
  tcase_add_test(tc, test_pipelined_responses_follow_the_queued_methods);
  tcase_add_test(tc, test_status_line_without_reason_and_odd_transfer_codings);
  tcase_add_test(tc, test_switching_protocols_and_connect_end_http_on_the_stream);
  suite_add_tcase(s, tc);
  tc = tcase_create("bounds");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_long_fields_are_skipped_or_truncated_within_the_head_bound);
  tcase_add_test(tc, test_head_over_the_bound_is_bad);
  tcase_add_test(tc, test_long_target_is_truncated_and_flagged);
  tcase_add_loop_test(tc, test_content_length_values_and_conflicts, 0,
                      (int)(sizeof cl_cases / sizeof cl_cases[0]));
  tcase_add_loop_test(tc, test_malformed_requests_are_bad, 0,
                      (int)(sizeof bad_heads / sizeof bad_heads[0]));
  tcase_add_loop_test(tc, test_malformed_responses_are_bad, 0,
                      (int)(sizeof bad_responses / sizeof bad_responses[0]));
  suite_add_tcase(s, tc);
  tc = tcase_create("not_http");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_other_protocols_are_rejected_within_a_few_bytes);
  tcase_add_test(tc, test_bad_stream_stays_bad_and_consumes_everything);
  tcase_add_test(tc, test_random_bytes_never_crash);
  tcase_add_test(tc, test_mutated_real_messages_never_crash);
  tcase_add_test(tc, test_lines_whole_and_byte_by_byte_agree);
  tcase_add_test(tc, test_lines_of_every_length_agree);
  tcase_add_test(tc, test_mutated_messages_whole_and_byte_by_byte_agree);
  suite_add_tcase(s, tc);
  tc = tcase_create("helpers");
  tcase_add_test(tc, test_scan_request_finds_line_head_and_traceparent);
  tcase_add_test(tc, test_scan_request_matches_traceparent_in_any_case);
  tcase_add_test(tc, test_scan_request_rejects_what_is_not_a_request);
  tcase_add_test(tc, test_looks_like_request_on_first_bytes);
  tcase_add_test(tc, test_parser_state_is_small);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(http1_suite());
  int failed;
  printf("sizeof(ss__h1) = %zu\n", sizeof(ss__h1));
  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
