/* spanshimd's HTTP/1.1 request-head parser: what it takes, what it refuses (and with
 * which status), and input that arrives in pieces. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
