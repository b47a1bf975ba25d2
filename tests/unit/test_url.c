/* url.full redaction: each row is a URL as an app passed it to libcurl and what the
 * exported attribute holds. */
#include <check.h>
#include <string.h>

#include "runtime/sanitize.h"

static const struct {
  const char *in, *want;
} rows[] = {
    {"http://example.com/a/b?x=1#f", "http://example.com/a/b?x=1#f"},
    {"https://alice:s3cret@example.com/", "https://REDACTED:REDACTED@example.com/"},
    {"https://alice@example.com:8443/p", "https://REDACTED:REDACTED@example.com:8443/p"},
    {"http://u:p@h", "http://REDACTED:REDACTED@h"},
    {"http://a:b@c@host/x", "http://REDACTED:REDACTED@host/x"},
    {"http://@host/", "http://REDACTED:REDACTED@host/"},
    {"https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F1"
     "&X-Amz-Signature=abc123&X-Amz-Security-Token=tok&X-Amz-Expires=60",
     "https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED"
     "&X-Amz-Signature=REDACTED&X-Amz-Security-Token=REDACTED&X-Amz-Expires=60"},
    {"https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIA&Expires=1&Signature=zz%3D",
     "https://b.s3.amazonaws.com/k?AWSAccessKeyId=REDACTED&Expires=1&Signature=REDACTED"},
    {"https://acct.blob.core.windows.net/c/b?sv=2020&sig=abc%2Bdef&se=2030",
     "https://acct.blob.core.windows.net/c/b?sv=2020&sig=REDACTED&se=2030"},
    {"https://storage.googleapis.com/b/o?X-Goog-Signature=ff00&X-Goog-Date=1",
     "https://storage.googleapis.com/b/o?X-Goog-Signature=REDACTED&X-Goog-Date=1"},
    {"http://h/?SIG=upper&sig=&sigx=1&xsig=2&sig", "http://h/?SIG=REDACTED&sig=&sigx=1&xsig=2&sig"},
    {"http://h/p?sig=a#sig=frag", "http://h/p?sig=REDACTED#sig=frag"},
    {"http://h/p#frag?sig=x", "http://h/p#frag?sig=x"},
    {"http://[::1]:8080/x?a=1", "http://[::1]:8080/x?a=1"},
    {"http://u:pw@[::1]:8080/", "http://REDACTED:REDACTED@[::1]:8080/"},
    {"http://127.0.0.1:80", "http://127.0.0.1:80"},
    {"http://[::1]", "http://[::1]"},
    /* cut short by the attribute length limit inside the userinfo */
    {"http://alice:s3cr", "http://REDACTED"},
    {"http://alice:123", "http://alice:123"},
    /* scheme-less, as curl accepts them */
    {"bob:pw@example.com/x", "REDACTED:REDACTED@example.com/x"},
    {"example.com/x?Signature=1", "example.com/x?Signature=REDACTED"},
    {"example.com", "example.com"},
    {"bob:pw", "REDACTED"},
    {"//u:p@h/", "//REDACTED:REDACTED@h/"},
    {"", ""},
};

START_TEST(test_url_redaction_table) {
  char out[512];
  size_t n = ss__url_redact(rows[_i].in, strlen(rows[_i].in), out, sizeof out);
  out[n] = '\0';
  ck_assert_str_eq(out, rows[_i].want);
}
END_TEST

START_TEST(test_url_output_is_bounded_by_cap) {
  const char *in = "http://u:p@h/?sig=1&sig=2&sig=3&sig=4";
  char out[64];
  for (size_t cap = 0; cap < 40; cap++) {
    memset(out, 'Z', sizeof out);
    size_t n = ss__url_redact(in, strlen(in), out, cap);
    ck_assert_uint_le(n, cap);
    ck_assert_int_eq(out[cap], 'Z');
    ck_assert_ptr_null(memmem(out, n, "u:p", 3));
  }
}
END_TEST

START_TEST(test_url_sanitize_pass_rewrites_url_full) {
  ss__attr attrs[2] = {
      {.key = "url.full", .type = SS_ATTR_STR, .len = 26, .v.s = "http://me:pw@h/?sig=abc&a=b"},
      {.key = "server.address", .type = SS_ATTR_STR, .len = 1, .v.s = "h"},
  };
  attrs[0].len = (uint32_t)strlen(attrs[0].v.s);
  ss__span s = {.attrs = attrs, .n_attrs = 2};
  char scratch[256], *p = scratch;
  size_t left = sizeof scratch;
  ck_assert_int_eq(ss__sanitize_span(&s, attrs, &p, &left), 0);
  ck_assert_int_eq((int)attrs[0].len, (int)strlen("http://REDACTED:REDACTED@h/?sig=REDACTED&a=b"));
  ck_assert(memcmp(attrs[0].v.s, "http://REDACTED:REDACTED@h/?sig=REDACTED&a=b", attrs[0].len) == 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("url");
  TCase *tc = tcase_create("redact");
  tcase_add_loop_test(tc, test_url_redaction_table, 0, (int)(sizeof rows / sizeof rows[0]));
  tcase_add_test(tc, test_url_output_is_bounded_by_cap);
  tcase_add_test(tc, test_url_sanitize_pass_rewrites_url_full);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
