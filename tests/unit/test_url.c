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
    /* a fragment with a '=' keeps its names, every value redacted */
    {"http://h/p?sig=a#sig=frag", "http://h/p?sig=REDACTED#sig=REDACTED"},
    {"http://h/p#frag?sig=x", "http://h/p#frag?sig=REDACTED"},
    {"https://app/cb#access_token=xyz&token_type=bearer&state=s1&expires_in=3600",
     "https://app/cb#access_token=REDACTED&token_type=REDACTED&state=REDACTED"
     "&expires_in=REDACTED"},
    {"http://h/?token=abc&page=2#access_token=xyz", "http://h/?token=REDACTED&page=2#access_token=REDACTED"},
    {"http://h/#/items?id=3&x=", "http://h/#/items?id=REDACTED&x="},
    {"http://h/#section-2", "http://h/#section-2"},
    {"http://h/#", "http://h/#"},
    {"http://h/p?a=1#", "http://h/p?a=1#"},
    /* credential-looking query keys: whole words, snake, kebab, camel, any case */
    {"http://h/?token=t1&access_token=t2&refresh_token=t3&id_token=t4",
     "http://h/?token=REDACTED&access_token=REDACTED&refresh_token=REDACTED&id_token=REDACTED"},
    {"http://h/?TOKEN=t&Access_Token=t&accessToken=t&AccessToken=t&ACCESS-TOKEN=t",
     "http://h/?TOKEN=REDACTED&Access_Token=REDACTED&accessToken=REDACTED"
     "&AccessToken=REDACTED&ACCESS-TOKEN=REDACTED"},
    {"http://h/?accesstoken=t&authtoken=t&csrftoken=t&oauth_token=t",
     "http://h/?accesstoken=REDACTED&authtoken=REDACTED&csrftoken=REDACTED&oauth_token=REDACTED"},
    {"http://h/?auth=a&Authorization=b&auth_type=c&basicAuth=d",
     "http://h/?auth=REDACTED&Authorization=REDACTED&auth_type=REDACTED&basicAuth=REDACTED"},
    {"http://h/?api_key=k&apikey=k&api-key=k&apiKey=k&APIKey=k&X-API-KEY=k&APIKEY=k",
     "http://h/?api_key=REDACTED&apikey=REDACTED&api-key=REDACTED&apiKey=REDACTED"
     "&APIKey=REDACTED&X-API-KEY=REDACTED&APIKEY=REDACTED"},
    {"http://h/?key=k&Key=k&subscription-key=k&private_key=k&accessKey=k&secretkey=k",
     "http://h/?key=REDACTED&Key=REDACTED&subscription-key=REDACTED&private_key=REDACTED"
     "&accessKey=REDACTED&secretkey=REDACTED"},
    {"http://h/?secret=s&client_secret=s&clientSecret=s&clientsecret=s",
     "http://h/?secret=REDACTED&client_secret=REDACTED&clientSecret=REDACTED"
     "&clientsecret=REDACTED"},
    {"http://h/?password=p&Password=p&new_password=p&newPassword=p&user[password]=p",
     "http://h/?password=REDACTED&Password=REDACTED&new_password=REDACTED"
     "&newPassword=REDACTED&user[password]=REDACTED"},
    {"http://h/?passwd=p&pwd=p&PWD=p&pass=p&user_pass=p&passphrase=p",
     "http://h/?passwd=REDACTED&pwd=REDACTED&PWD=REDACTED&pass=REDACTED&user_pass=REDACTED"
     "&passphrase=REDACTED"},
    {"http://h/cb?code=c&state=s&Code=c&auth_code=c&authorization_code=c",
     "http://h/cb?code=REDACTED&state=s&Code=REDACTED&auth_code=REDACTED"
     "&authorization_code=REDACTED"},
    {"http://h/?code_verifier=v&client_assertion=a&otp=1",
     "http://h/?code_verifier=REDACTED&client_assertion=REDACTED&otp=REDACTED"},
    {"http://h/?signature=s&oauth_signature=s&sig=s&Sig=s",
     "http://h/?signature=REDACTED&oauth_signature=REDACTED&sig=REDACTED&Sig=REDACTED"},
    {"http://h/?session=s&sessionid=s&session_id=s&sessionId=s&JSESSIONID=s&PHPSESSID=s",
     "http://h/?session=REDACTED&sessionid=REDACTED&session_id=REDACTED&sessionId=REDACTED"
     "&JSESSIONID=REDACTED&PHPSESSID=REDACTED"},
    {"http://h/?jwt=j&bearer=b&credential=c&credentials=c&cookie=c",
     "http://h/?jwt=REDACTED&bearer=REDACTED&credential=REDACTED&credentials=REDACTED"
     "&cookie=REDACTED"},
    {"http://h/?token2=t&key1=k", "http://h/?token2=REDACTED&key1=REDACTED"},
    /* percent-encoded names are judged decoded; ';' separates pairs too */
    {"http://h/?access%5Ftoken=t&user%5Bpassword%5D=p&a=1;token=t",
     "http://h/?access%5Ftoken=REDACTED&user%5Bpassword%5D=REDACTED&a=1;token=REDACTED"},
    /* harmless keys: the letters inside another word, or code as part of a name */
    {"http://h/?monkey=1&keyboard=2&passage=3&tokenizer=4&page=5&sort=6&q=7&id=8",
     "http://h/?monkey=1&keyboard=2&passage=3&tokenizer=4&page=5&sort=6&q=7&id=8"},
    {"http://h/?author=a&keyword=k&compass=c&bypass=b&signal=s&design=d&hotkey=h",
     "http://h/?author=a&keyword=k&compass=c&bypass=b&signal=s&design=d&hotkey=h"},
    {"http://h/?country_code=de&errorCode=1&zipcode=1&postcode=2&sessions=3&passenger=4",
     "http://h/?country_code=de&errorCode=1&zipcode=1&postcode=2&sessions=3&passenger=4"},
    /* no value, empty value: nothing to redact */
    {"http://h/?token&password=&a=1", "http://h/?token&password=&a=1"},
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

START_TEST(test_url_query_alone) {
  const char *in = "q=x&apiKey=k&page=2&client_secret=s";
  char out[128];
  size_t n = ss__url_query_redact(in, strlen(in), out, sizeof out);
  out[n] = '\0';
  ck_assert_str_eq(out, "q=x&apiKey=REDACTED&page=2&client_secret=REDACTED");
}
END_TEST

static const char *redact(const char *in) {
  static char out[512];
  size_t n = ss__url_redact(in, strlen(in), out, sizeof out - 1);
  out[n] = '\0';
  return out;
}

START_TEST(test_url_extra_keys) {
  ck_assert_int_eq(ss__url_redact_keys_set(" Ticket , x-my-sso,,SAMLResponse "), 0);
  /* whole key, any case, and a word of a key */
  ck_assert_str_eq(redact("http://h/?ticket=1&TICKET=2&sso_ticket=3&ticketing=4"),
                   "http://h/?ticket=REDACTED&TICKET=REDACTED&sso_ticket=REDACTED&ticketing=4");
  ck_assert_str_eq(redact("http://h/?X-My-SSO=1&x-my=2&samlresponse=3&page=4&token=5"),
                   "http://h/?X-My-SSO=REDACTED&x-my=2&samlresponse=REDACTED&page=4"
                   "&token=REDACTED");
  /* names that can never be a key are dropped and counted; the others stay */
  ck_assert_int_eq(ss__url_redact_keys_set("a=b,ok,x y,c#d,e\x01"), 4);
  ck_assert_str_eq(redact("http://h/?ok=1&ticket=2"), "http://h/?ok=REDACTED&ticket=2");
  /* more than fits */
  char big[3000];
  memset(big, 0, sizeof big);
  for (int i = 0; i < 300; i++) strcat(big, "abcdefgh,");
  ck_assert_int_gt(ss__url_redact_keys_set(big), 0);
  ck_assert_str_eq(redact("http://h/?abcdefgh=1"), "http://h/?abcdefgh=REDACTED");
  ck_assert_int_eq(ss__url_redact_keys_set(NULL), 0);
  ck_assert_str_eq(redact("http://h/?ok=1&ticket=2&abcdefgh=3"),
                   "http://h/?ok=1&ticket=2&abcdefgh=3");
}
END_TEST

START_TEST(test_url_long_key_is_redacted) {
  char in[600] = "http://h/?", want[600] = "http://h/?";
  char key[300];
  memset(key, 'a', sizeof key - 1);
  key[sizeof key - 1] = '\0';
  strcat(in, key), strcat(in, "=v&b=1");
  strcat(want, key), strcat(want, "=REDACTED&b=1");
  ck_assert_str_eq(redact(in), want);
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
  tcase_add_test(tc, test_url_query_alone);
  tcase_add_test(tc, test_url_extra_keys);
  tcase_add_test(tc, test_url_long_key_is_redacted);
  tcase_add_test(tc, test_url_output_is_bounded_by_cap);
  tcase_add_test(tc, test_url_sanitize_pass_rewrites_url_full);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
