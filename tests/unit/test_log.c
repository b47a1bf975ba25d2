/* test_log.c - diagnostics: level filter, line format, one write, errno kept. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/log.h"

static int fd = -1;

static void setup(void) {
  fd = memfd_create("log", 0);
  ck_assert_int_ge(fd, 0);
}

static void teardown(void) {
  ss__log_setup(SS_LOG_OFF, 2, "spanshim");
  close(fd);
}

static const char *text(void) {
  static char buf[4096];
  ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  ck_assert_int_ge(n, 0);
  buf[n] = '\0';
  return buf;
}

START_TEST(test_default_level_is_off) {
  ck_assert_int_eq(ss__log_level, SS_LOG_OFF);
}
END_TEST

START_TEST(test_line_has_prefix_pid_and_newline) {
  char want[128];
  ss__log_setup(SS_LOG_INFO, fd, "spanshimd");
  ss__log(SS_LOG_WARN, "hello %d", 42);
  snprintf(want, sizeof(want), "spanshimd[%d]: hello 42\n", (int)getpid());
  ck_assert_str_eq(text(), want);
}
END_TEST

START_TEST(test_levels_above_setting_are_dropped) {
  ss__log_setup(SS_LOG_WARN, fd, "spanshim");
  ss__log(SS_LOG_INFO, "info");
  SS_LOG(SS_LOG_DEBUG, "debug");
  SS_LOG(SS_LOG_ERROR, "error");
  ss__log(SS_LOG_OFF, "never");
  ck_assert_ptr_null(strstr(text(), "info"));
  ck_assert_ptr_null(strstr(text(), "debug"));
  ck_assert_ptr_null(strstr(text(), "never"));
  ck_assert_ptr_nonnull(strstr(text(), "error\n"));
}
END_TEST

START_TEST(test_errno_is_preserved) {
  ss__log_setup(SS_LOG_DEBUG, fd, "spanshim");
  errno = ECONNREFUSED;
  ss__log(SS_LOG_ERROR, "x");
  ck_assert_int_eq(errno, ECONNREFUSED);
  ss__log_setup(SS_LOG_DEBUG, 9999, "spanshim"); /* write fails with EBADF */
  errno = EAGAIN;
  ss__log(SS_LOG_ERROR, "x");
  ck_assert_int_eq(errno, EAGAIN);
}
END_TEST

START_TEST(test_long_line_truncated_with_newline) {
  char big[2000];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  ss__log_setup(SS_LOG_DEBUG, fd, "spanshim");
  ss__log(SS_LOG_ERROR, "%s", big);
  ss__log(SS_LOG_ERROR, "next\n"); /* a trailing newline is not doubled */
  const char *t = text();
  const char *nl = strchr(t, '\n');
  ck_assert_ptr_nonnull(nl);
  ck_assert_int_eq(nl - t + 1, 512);
  ck_assert_str_eq(strstr(t, "]: next"), "]: next\n");
}
END_TEST

START_TEST(test_control_characters_are_escaped_one_line_per_call) {
  char want[160];
  ss__log_setup(SS_LOG_DEBUG, fd, "spanshim");
  ss__log(SS_LOG_ERROR, "endpoint %s", "unix:/x\nspanshim[1]: forged\r\t\x1b[31m\x7f");
  snprintf(want, sizeof(want),
           "spanshim[%d]: endpoint unix:/x\\nspanshim[1]: forged\\r\\t\\x1b[31m\\x7f\n",
           (int)getpid());
  ck_assert_str_eq(text(), want);
}
END_TEST

/* A diagnostic that quotes configuration or a peer carries no credential. */
START_TEST(test_credentials_in_a_line_are_redacted) {
  char want[256];
  ss__log_setup(SS_LOG_DEBUG, fd, "spanshim");
  ss__log(SS_LOG_INFO, "cannot reach the collector at %s; %s=\"%s\"", "http://u:pw@h:4318/v1",
          "OTEL_EXPORTER_OTLP_HEADERS", "api-key=k1,x=1");
  snprintf(want, sizeof(want),
           "spanshim[%d]: cannot reach the collector at http://REDACTED:REDACTED@h:4318/v1; "
           "OTEL_EXPORTER_OTLP_HEADERS=\"api-key=REDACTED\"\n", (int)getpid());
  ck_assert_str_eq(text(), want);
}
END_TEST

START_TEST(test_escape_cuts_at_a_whole_character) {
  char out[8];
  ck_assert_uint_eq(ss__log_escape(out, sizeof out, "abcde\x01", 6), 5);
  ck_assert_uint_eq(ss__log_escape(out, sizeof out, "ab\ncd", 5), 6);
  ck_assert_int_eq(memcmp(out, "ab\\ncd", 6), 0);
}
END_TEST

START_TEST(test_log_file_symlink_is_not_followed) {
  char dir[] = "/tmp/ss-log-XXXXXX", target[64], link[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(target, sizeof target, "%s/target", dir);
  snprintf(link, sizeof link, "%s/link", dir);
  ck_assert_int_eq(symlink(target, link), 0);
  ck_assert_int_eq(ss__log_open_file(link), 2);  /* ELOOP: stderr instead */
  ck_assert_int_eq(access(target, F_OK), -1);     /* nothing created through it */
  int f = ss__log_open_file(target);              /* a plain path is created */
  ck_assert_int_ge(f, 900);
  close(f);
  unlink(link);
  unlink(target);
  rmdir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("log");
  TCase *tc = tcase_create("log");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_default_level_is_off);
  tcase_add_test(tc, test_line_has_prefix_pid_and_newline);
  tcase_add_test(tc, test_levels_above_setting_are_dropped);
  tcase_add_test(tc, test_errno_is_preserved);
  tcase_add_test(tc, test_long_line_truncated_with_newline);
  tcase_add_test(tc, test_control_characters_are_escaped_one_line_per_call);
  tcase_add_test(tc, test_escape_cuts_at_a_whole_character);
  tcase_add_test(tc, test_credentials_in_a_line_are_redacted);
  tcase_add_test(tc, test_log_file_symlink_is_not_followed);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
