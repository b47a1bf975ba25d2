/* process.command_args must never carry a credential: each row is an argv as typed and
 * what the exported attribute holds. */
#include <check.h>
#include <string.h>

#include "runtime/sanitize.h"

static const struct {
  const char *argv[6];
  const char *want[6];
} rows[] = {
    {{"psql", "postgresql://alice:s3cret@db/app", NULL},
     {"psql", "postgresql://REDACTED:REDACTED@db/app", NULL}},
    {{"mysql", "--password=hunter2", "-h", "db", NULL},
     {"mysql", "--password=REDACTED", "-h", "db", NULL}},
    {{"tool", "--password", "hunter2", "next", NULL},
     {"tool", "--password", "REDACTED", "next", NULL}},
    {{"psql", "host=db user=bob password=pw123 dbname=x", NULL},
     {"psql", "host=db user=bob password=REDACTED dbname=x", NULL}},
    {{"curl", "https://s3/b/k?X-Amz-Signature=abc&X-Amz-Credential=AK%2F1&x=1", NULL},
     {"curl", "https://s3/b/k?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&x=1", NULL}},
    {{"curl", "-H", "Authorization: Bearer eyJ", "-u", "bob:pw", NULL},
     {"curl", "-H", "Authorization: REDACTED", "-u", "bob:REDACTED", NULL}},
    {{"curl", "-H", "cookie: session=1", "https://x/?sig=zz&token=t", NULL},
     {"curl", "-H", "cookie: REDACTED", "https://x/?sig=REDACTED&token=REDACTED", NULL}},
    {{"ls", "-la", "/tmp", "a=b", NULL}, {"ls", "-la", "/tmp", "a=b", NULL}},
    {{"git", "clone", "https://user@github.com/x.git", NULL},
     {"git", "clone", "https://REDACTED:REDACTED@github.com/x.git", NULL}},
    {{"sh", "-c", "export API_TOKEN=abc; run", NULL},
     {"sh", "-c", "export API_TOKEN=REDACTED; run", NULL}},
};

START_TEST(test_credentials_in_arguments_are_redacted) {
  int state = 0;
  for (int k = 0; rows[_i].argv[k]; k++) {
    char out[256];
    size_t n = ss__arg_redact(rows[_i].argv[k], &state, out, sizeof out);
    out[n] = '\0';
    ck_assert_str_eq(out, rows[_i].want[k]);
  }
}
END_TEST

START_TEST(test_output_is_bounded_by_cap) {
  int state = 0;
  char out[10];
  size_t n = ss__arg_redact("password=0123456789abcdef", &state, out, sizeof out);
  ck_assert_uint_le(n, sizeof out);
  n = ss__arg_redact("plain-argument-longer-than-ten", &state, out, sizeof out);
  ck_assert_uint_eq(n, sizeof out);
  ck_assert(memcmp(out, "plain-argu", 10) == 0);
}
END_TEST

int main(void) {
  Suite *s = suite_create("args");
  TCase *tc = tcase_create("redact");
  tcase_add_loop_test(tc, test_credentials_in_arguments_are_redacted, 0,
                      (int)(sizeof rows / sizeof rows[0]));
  tcase_add_test(tc, test_output_is_bounded_by_cap);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
