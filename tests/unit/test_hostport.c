/* HOST:PORT splitting (runtime/hostport.h): the one rule for the transport's endpoint and
 * spanshimd's addresses. */
#include <check.h>
#include <string.h>

#include "runtime/hostport.h"

static const struct {
  const char *in;
  int rc;
  const char *host;
  long port;
} rows[] = {
    {"localhost", 0, "localhost", -1},
    {"localhost:4318", 0, "localhost", 4318},
    {"127.0.0.1:80", 0, "127.0.0.1", 80},
    {"[::1]", 0, "::1", -1},
    {"[::1]:4318", 0, "::1", 4318},
    {"::1:4318", 0, "::1", 4318},
    {"", -1, NULL, 0},
    {":80", -1, NULL, 0},
    {"host:", -1, NULL, 0},
    {"host:123456", -1, NULL, 0},
    {"host:65535", 0, "host", 65535},
    {"host:65536", -1, NULL, 0},
    {"127.0.0.1:99999", -1, NULL, 0},
    {"[::1]:70000", -1, NULL, 0},
    {"127.0.0.1:0", 0, "127.0.0.1", 0},
    {"host:8x", -1, NULL, 0},
    {"[::1", -1, NULL, 0},
    {"[::1]x", -1, NULL, 0},
    {"[]:80", -1, NULL, 0},
};

START_TEST(test_hostport_split_table) {
  ss__hostport hp;
  const char *in = rows[_i].in;
  int rc = ss__hostport_split(in, strlen(in), &hp);
  ck_assert_msg(rc == rows[_i].rc, "%s: rc %d", in, rc);
  if (rc != 0) return;
  ck_assert_int_eq((int)hp.host_len, (int)strlen(rows[_i].host));
  ck_assert(memcmp(hp.host, rows[_i].host, hp.host_len) == 0);
  ck_assert_int_eq(ss__hostport_port(&hp), rows[_i].port);
}
END_TEST

START_TEST(test_hostport_reads_only_n_bytes) {
  ss__hostport hp;
  const char *s = "example.com:8080/v1/traces";
  ck_assert_int_eq(ss__hostport_split(s, strlen("example.com:8080"), &hp), 0);
  ck_assert_int_eq(ss__hostport_port(&hp), 8080);
}
END_TEST

int main(void) {
  Suite *s = suite_create("hostport");
  TCase *tc = tcase_create("split");
  tcase_add_loop_test(tc, test_hostport_split_table, 0, (int)(sizeof rows / sizeof rows[0]));
  tcase_add_test(tc, test_hostport_reads_only_n_bytes);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
