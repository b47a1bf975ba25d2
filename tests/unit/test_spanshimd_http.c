/* spanshimd's HTTP/1.1 request-head parser: what it takes, what it refuses (and with
 * which status), and input that arrives in pieces; the chunked body decoder (extensions,
 * trailers, every split, the size bound) and the gzip/deflate body decoder (bombs). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tools/spanshimd/spanshimd.h"

static int parse(const char *s, ss__http_req *r) {
  size_t scan = 0;
  return ss__http_parse(s, strlen(s), &scan, r);
}

static int span_is(const char *p, size_t n, const char *want) {
  return strlen(want) == n && memcmp(p, want, n) == 0;
}

START_TEST(test_http_good_request_head_fills_every_field) {
  const char *s = "POST /v1/traces?x=1 HTTP/1.1\r\nHost: x\r\n"
                  "Content-Type: application/x-protobuf ; charset=binary\r\n"
                  "Content-Length: 42\r\nConnection: keep-alive, close\r\n"
                  "Expect: 100-continue\r\n\r\nBODY";
  ss__http_req r;
  ck_assert_int_eq(parse(s, &r), 1);
  ck_assert(span_is(r.method, r.method_len, "POST"));
  ck_assert(span_is(r.path, r.path_len, "/v1/traces"));
  ck_assert_int_eq(r.minor, 1);
  ck_assert_int_eq(r.content_length, 42);
  ck_assert_int_eq(r.chunked, 0);
  ck_assert_int_eq(r.connection, SS_CONN_CLOSE);
  ck_assert_int_eq(r.expect_continue, 1);
  ck_assert(span_is(r.ctype, r.ctype_len, "application/x-protobuf"));
  ck_assert_uint_eq(r.head_len, strlen(s) - 4);
}
END_TEST

START_TEST(test_http_bare_lf_and_leading_blank_lines_are_accepted) {
  ss__http_req r;
  ck_assert_int_eq(parse("\r\n\nGET /stats HTTP/1.0\nConnection: keep-alive\n\n", &r), 1);
  ck_assert(span_is(r.path, r.path_len, "/stats"));
  ck_assert_int_eq(r.minor, 0);
  ck_assert_int_eq(r.connection, SS_CONN_KEEP_ALIVE);
  ck_assert_int_eq(r.content_length, -1);
  ck_assert_ptr_null(r.ctype);
}
END_TEST

/* The head arrives one byte at a time (and in every two-piece split) on a growing
 * buffer, with the scan position carried between calls: incomplete until the blank line,
 * then the same result as in one piece. */
START_TEST(test_http_split_input_completes_exactly_at_the_blank_line) {
  const char *s = "POST /v1/logs HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
  size_t head = strlen(s) - 5;
  ss__http_req r;
  size_t scan = 0;
  for (size_t len = 0; len <= strlen(s); len++) {
    int rc = ss__http_parse(s, len, &scan, &r);
    ck_assert_int_eq(rc, len < head ? 0 : 1);
    if (rc == 1) {
      ck_assert_uint_eq(r.head_len, head);
      ck_assert_int_eq(r.content_length, 5);
      scan = 0;
    }
  }
  for (size_t cut = 1; cut < head; cut++) {
    scan = 0;
    ck_assert_int_eq(ss__http_parse(s, cut, &scan, &r), 0);
    ck_assert_int_eq(ss__http_parse(s, strlen(s), &scan, &r), 1);
    ck_assert_uint_eq(r.head_len, head);
  }
}
END_TEST

static const char *const bad[] = {
    "GET /\r\n\r\n",                                  /* no version */
    "GET / HTTP/2.0\r\n\r\n",                         /* not HTTP/1.x */
    "GET / HTTP/1.10\r\n\r\n",
    "GET  / HTTP/1.1\r\n\r\n",                        /* empty target */
    "G@T / HTTP/1.1\r\n\r\n",                         /* not a token */
    " GET / HTTP/1.1\r\n\r\n",
    "GET /a\x01 HTTP/1.1\r\n\r\n",                    /* control byte in the target */
    "GET / HTTP/1.1\r\nHost : x\r\n\r\n",             /* space before the colon */
    "GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",      /* obsolete line folding */
    "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
    "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n",             /* control byte in a value */
    "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",  /* 19 digits */
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    "POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
};

START_TEST(test_http_bad_request_heads_get_400) {
  ss__http_req r;
  ck_assert_msg(parse(bad[_i], &r) == 400, "accepted: %s", bad[_i]);
}
END_TEST

START_TEST(test_http_content_length_limits) {
  ss__http_req r;
  ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r), 1);
  ck_assert_int_eq(r.content_length, 0);
  ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", &r), 1);
  ck_assert_int_eq(r.content_length, 999999999999999999ll);  /* 18 digits: the receiver 413s */
  ck_assert_int_eq(parse("POST / HTTP/1.1\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", &r), 1);
  ck_assert_int_eq(r.content_length, 7);  /* repeated, agreeing: fine */
  ck_assert_int_eq(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), 1);
  ck_assert_int_eq(r.chunked, 1);         /* the receiver answers 411 */
  ck_assert_int_eq(r.content_length, -1);
}
END_TEST

START_TEST(test_http_oversize_heads_get_431) {
  size_t n = SS_MAX_HEAD + 64;
  char *s = malloc(n + 1);
  ss__http_req r;
  size_t scan = 0;
  memset(s, 'a', n);
  memcpy(s, "GET / HTTP/1.1\r\nX: ", 19);
  s[n] = 0;
  ck_assert_int_eq(ss__http_parse(s, SS_MAX_HEAD, &scan, &r), 0);  /* could still end */
  ck_assert_int_eq(ss__http_parse(s, n, &scan, &r), 431);          /* no end in sight */
  memcpy(s + n - 4, "\r\n\r\n", 4);
  scan = 0;
  ck_assert_int_eq(ss__http_parse(s, n, &scan, &r), 431);          /* complete, too long */
  free(s);
}
END_TEST

START_TEST(test_http_too_many_headers_get_431) {
  char s[8192];
  size_t o = (size_t)snprintf(s, sizeof s, "GET / HTTP/1.1\r\n");
  for (int i = 0; i <= SS_MAX_HEADERS; i++) o += (size_t)snprintf(s + o, sizeof s - o, "H%d: v\r\n", i);
  snprintf(s + o, sizeof s - o, "\r\n");
  ss__http_req r;
  ck_assert_int_eq(parse(s, &r), 431);
}
END_TEST

/* ---- Transfer-Encoding and Content-Encoding ---- */

static const struct {
  const char *head;
  int rc, chunked;
} te_cases[] = {
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 1, 1},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED \r\n\r\n", 1, 1},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, 1},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", 501, 1},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400, 0},   /* not last */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400, 0},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, 0}, /* twice */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, 0},            /* no length */
    {"POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", 400, 0},
    {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400, 0},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0},         /* 1.0: faulty */
};

START_TEST(test_http_transfer_encoding_must_end_in_chunked) {
  ss__http_req r;
  int rc = parse(te_cases[_i].head, &r);
  ck_assert_msg(rc == te_cases[_i].rc, "%s: %d", te_cases[_i].head, rc);
  if (rc != 400) ck_assert_int_eq(r.chunked, te_cases[_i].chunked);
}
END_TEST

static const struct {
  const char *value;
  int coding;
} ce_cases[] = {
    {NULL, SS_CE_IDENTITY},         {"identity", SS_CE_IDENTITY},
    {"", SS_CE_IDENTITY},           {"gzip", SS_CE_GZIP},
    {"GZip", SS_CE_GZIP},           {"x-gzip", SS_CE_GZIP},
    {"deflate", SS_CE_DEFLATE},     {"identity, gzip", SS_CE_GZIP},
    {"br", SS_CE_UNSUPPORTED},      {"zstd", SS_CE_UNSUPPORTED},
    {"gzip, gzip", SS_CE_UNSUPPORTED}, /* stacked codings are not taken */
    {"deflate, gzip", SS_CE_UNSUPPORTED},
};

START_TEST(test_http_content_encoding_is_recognized) {
  char head[256];
  if (ce_cases[_i].value)
    snprintf(head, sizeof head, "POST /v1/traces HTTP/1.1\r\nContent-Encoding: %s\r\n"
             "Content-Length: 1\r\n\r\n", ce_cases[_i].value);
  else
    snprintf(head, sizeof head, "POST /v1/traces HTTP/1.1\r\nContent-Length: 1\r\n\r\n");
  ss__http_req r;
  ck_assert_int_eq(parse(head, &r), 1);
  ck_assert_msg(r.content_encoding == ce_cases[_i].coding, "%s: %d", head, r.content_encoding);
}
END_TEST

/* ---- chunked bodies ---- */

/* Runs the decoder over s as it grows from `piece` bytes at a time (0: all at once) in
 * a copy the decoder may write to; returns its last result and the decoded bytes. */
static int dechunk(const char *s, size_t n, size_t piece, size_t max, char *out, size_t *out_len,
                   size_t *raw) {
  char *buf = malloc(n + 1);
  memcpy(buf, s, n);
  ss__chunked c;
  memset(&c, 0, sizeof c);
  int rc = 0;
  for (size_t len = piece ? (piece < n ? piece : n) : n;; len = len + piece < n ? len + piece : n) {
    rc = ss__chunked_decode(&c, buf, len, max);
    if (rc != 0 || len == n) break;
  }
  memcpy(out, buf, c.out);
  *out_len = c.out;
  *raw = c.pos;
  free(buf);
  return rc;
}

static const char chunked_body[] =
    "5;name=value;quoted=\"a \\\"b\\\" ;c\"\r\nhello\r\n"
    "1 ; bare\r\n,\r\n"
    "0000000A\r\n 01234567\n\r\n"
    "0;last\r\nX-Checksum: abc\r\nServer-Timing: t;dur=1\r\n\r\n"
    "POST /next";  /* the next request, pipelined */

START_TEST(test_chunked_extensions_trailers_and_every_split_decode_alike) {
  size_t n = sizeof chunked_body - 1, raw_want = n - strlen("POST /next");
  for (size_t piece = 0; piece <= n; piece++) {
    char out[64];
    size_t len, raw;
    int rc = dechunk(chunked_body, n, piece, 1000, out, &len, &raw);
    ck_assert_msg(rc == 1, "piece %zu: %d", piece, rc);
    ck_assert_uint_eq(len, 16);
    ck_assert(memcmp(out, "hello, 01234567\n", 16) == 0);
    ck_assert_uint_eq(raw, raw_want);
  }
  /* incomplete at every cut before the end of the trailer section */
  for (size_t cut = 0; cut < raw_want; cut++) {
    char out[64];
    size_t len, raw;
    ck_assert_int_eq(dechunk(chunked_body, cut, 0, 1000, out, &len, &raw), 0);
  }
}
END_TEST

static const char *const bad_chunked[] = {
    "x\r\n",                         /* not hex */
    "\r\n",                          /* no size */
    " 5\r\nhello\r\n0\r\n\r\n",        /* space before the size */
    "0x5\r\nhello\r\n0\r\n\r\n",
    "5 6\r\nhello\r\n0\r\n\r\n",
    "5;\r\nhello\r\n0\r\n\r\n",        /* extension without a name */
    "5;a=\r\nhello\r\n0\r\n\r\n",      /* ... without its value */
    "5;a=\"x\r\nhello\r\n0\r\n\r\n",    /* unterminated quoted string */
    "5;a\x01\r\nhello\r\n0\r\n\r\n",
    "5\r\nhelloX\r\n0\r\n\r\n",        /* data longer than its size */
    "5\r\nhello\rX0\r\n\r\n",
    "0\r\nno colon\r\n\r\n",           /* bad trailer field */
    "0\r\n : x\r\n\r\n",
};

START_TEST(test_chunked_malformed_gets_400) {
  const char *s = bad_chunked[_i];
  for (size_t piece = 0; piece <= strlen(s); piece++) {
    char out[64];
    size_t len, raw;
    ck_assert_msg(dechunk(s, strlen(s), piece, 1000, out, &len, &raw) == 400, "accepted: %s", s);
  }
}
END_TEST

START_TEST(test_chunked_size_bound_is_known_from_the_size_line) {
  char out[64];
  size_t len, raw;
  /* 10 + 6 bytes against max 16: fine; max 15: 413 at the second size line, data unseen */
  const char *s = "a\r\n0123456789\r\n6\r\nabcdef\r\n0\r\n\r\n";
  ck_assert_int_eq(dechunk(s, strlen(s), 0, 16, out, &len, &raw), 1);
  ck_assert_uint_eq(len, 16);
  ck_assert_int_eq(dechunk(s, 18, 0, 15, out, &len, &raw), 413);
  ck_assert_int_eq(dechunk("fffffffffffffffffffff\r\n", 24, 0, 100, out, &len, &raw), 413);
  ck_assert_int_eq(dechunk("10000000000000000\r\n", 19, 0, (size_t)-1, out, &len, &raw), 413);
  /* a size line (extensions) or trailer section that never ends */
  size_t n = SS_MAX_CHUNK_LINE + 10;
  char *big = malloc(n + SS_MAX_HEAD);
  memset(big, 'a', n);
  memcpy(big, "5;", 2);
  ck_assert_int_eq(dechunk(big, n, 0, 100, out, &len, &raw), 400);
  memcpy(big, "0\r\nX: ", 6);
  memset(big + 6, 'a', n + SS_MAX_HEAD - 6);
  ck_assert_int_eq(dechunk(big, n + SS_MAX_HEAD, 0, 100, out, &len, &raw), 431);
  free(big);
}
END_TEST

/* ---- Content-Encoding ---- */

static uint8_t *compress_with(int wbits, const void *in, size_t n, size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof z);
  ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
  size_t cap = deflateBound(&z, n) + 64;
  uint8_t *out = malloc(cap);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
  *out_len = cap - z.avail_out;
  deflateEnd(&z);
  return out;
}

START_TEST(test_inflate_gzip_zlib_and_raw_deflate_round_trip) {
  char text[5000];
  for (size_t i = 0; i < sizeof text; i++) text[i] = (char)("otlp"[i % 4] + i % 7);
  static const struct { int coding, wbits; } k[] = {
      {SS_CE_GZIP, 31}, {SS_CE_DEFLATE, 15}, {SS_CE_DEFLATE, -15}};
  uint8_t *out = NULL;
  size_t cap = 0, n;
  for (size_t i = 0; i < 3; i++) {
    size_t zn;
    uint8_t *z = compress_with(k[i].wbits, text, sizeof text, &zn);
    ck_assert_int_eq(ss__inflate(k[i].coding, z, zn, sizeof text, &out, &cap, &n), 200);
    ck_assert_uint_eq(n, sizeof text);
    ck_assert(memcmp(out, text, n) == 0);
    /* one byte over the bound: 413; truncated, or followed by junk: 400 */
    ck_assert_int_eq(ss__inflate(k[i].coding, z, zn, sizeof text - 1, &out, &cap, &n), 413);
    ck_assert_int_eq(ss__inflate(k[i].coding, z, zn - 1, sizeof text, &out, &cap, &n), 400);
    uint8_t *junk = malloc(zn + 1);
    memcpy(junk, z, zn);
    junk[zn] = 'x';
    ck_assert_int_eq(ss__inflate(k[i].coding, junk, zn + 1, sizeof text, &out, &cap, &n), 400);
    free(junk);
    free(z);
  }
  /* gzip members one after another make one body (RFC 1952 2.2) */
  size_t an, bn;
  uint8_t *a = compress_with(31, "hello, ", 7, &an), *b = compress_with(31, "world", 5, &bn);
  uint8_t *ab = malloc(an + bn);
  memcpy(ab, a, an);
  memcpy(ab + an, b, bn);
  ck_assert_int_eq(ss__inflate(SS_CE_GZIP, ab, an + bn, 100, &out, &cap, &n), 200);
  ck_assert_uint_eq(n, 12);
  ck_assert(memcmp(out, "hello, world", 12) == 0);
  free(a), free(b), free(ab);
  ck_assert_int_eq(ss__inflate(SS_CE_GZIP, (const uint8_t *)"", 0, 100, &out, &cap, &n), 400);
  ck_assert_int_eq(ss__inflate(SS_CE_GZIP, (const uint8_t *)"not gzip", 8, 100, &out, &cap, &n), 400);
  ck_assert_int_eq(ss__inflate(SS_CE_DEFLATE, (const uint8_t *)"\xff\xff", 2, 100, &out, &cap, &n), 400);
  free(out);
}
END_TEST

/* 64 MiB of zeros is 64 KiB of gzip: with a 1 MiB bound, inflating stops just past it and
 * the output buffer never holds more than the bound and a byte. */
START_TEST(test_inflate_bomb_stops_at_the_bound) {
  size_t big = 64u << 20;
  uint8_t *zeros = calloc(1, big);
  size_t zn;
  uint8_t *z = compress_with(31, zeros, big, &zn);
  free(zeros);
  ck_assert_uint_lt(zn, 1u << 20);
  uint8_t *out = NULL;
  size_t cap = 0, n;
  ck_assert_int_eq(ss__inflate(SS_CE_GZIP, z, zn, 1u << 20, &out, &cap, &n), 413);
  ck_assert_uint_le(cap, (1u << 20) + 1);
  ck_assert_int_eq(ss__inflate(SS_CE_GZIP, z, zn, big, &out, &cap, &n), 200);
  ck_assert_uint_eq(n, big);
  free(out);
  free(z);
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_http");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, test_http_good_request_head_fills_every_field);
  tcase_add_test(tc, test_http_bare_lf_and_leading_blank_lines_are_accepted);
  tcase_add_test(tc, test_http_split_input_completes_exactly_at_the_blank_line);
  tcase_add_loop_test(tc, test_http_bad_request_heads_get_400, 0, (int)(sizeof bad / sizeof *bad));
  tcase_add_test(tc, test_http_content_length_limits);
  tcase_add_test(tc, test_http_oversize_heads_get_431);
  tcase_add_test(tc, test_http_too_many_headers_get_431);
  tcase_add_loop_test(tc, test_http_transfer_encoding_must_end_in_chunked, 0,
                      (int)(sizeof te_cases / sizeof *te_cases));
  tcase_add_loop_test(tc, test_http_content_encoding_is_recognized, 0,
                      (int)(sizeof ce_cases / sizeof *ce_cases));
  suite_add_tcase(s, tc);
  TCase *tb = tcase_create("body");
  tcase_set_timeout(tb, 30);
  tcase_add_test(tb, test_chunked_extensions_trailers_and_every_split_decode_alike);
  tcase_add_loop_test(tb, test_chunked_malformed_gets_400, 0,
                      (int)(sizeof bad_chunked / sizeof *bad_chunked));
  tcase_add_test(tb, test_chunked_size_bound_is_known_from_the_size_line);
  tcase_add_test(tb, test_inflate_gzip_zlib_and_raw_deflate_round_trip);
  tcase_add_test(tb, test_inflate_bomb_stops_at_the_bound);
  suite_add_tcase(s, tb);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
