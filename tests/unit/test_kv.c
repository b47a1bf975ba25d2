/* `key=value` lists (OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS): what the one
 * parser accepts, decodes and skips. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "runtime/kv.h"

typedef struct seen {
  char text[512]; /* "k=v;" per accepted entry */
  int refuse_key_x;
} seen;

static int collect(void *arg, const char *k, size_t kl, const char *v, size_t vl) {
  seen *s = arg;
  if (s->refuse_key_x && strcmp(k, "x") == 0) return 1;
  size_t n = strlen(s->text);
  snprintf(s->text + n, sizeof s->text - n, "%.*s=%.*s;", (int)kl, k, (int)vl, v);
  return 0;
}

static const struct {
  const char *in, *want;
  int bad;
} rows[] = {
    {"", "", 0},
    {"a=1", "a=1;", 0},
    {"a=1,b=2", "a=1;b=2;", 0},
    {" a = 1 ,\tb=2\t", "a=1;b=2;", 0},
    {"a=1,,b=2,", "a=1;b=2;", 0},
    {"k=hello%20world%2C%3d", "k=hello world,=;", 0},
    {"k%41=v", "kA=v;", 0},
    {"a=x=y", "a=x=y;", 0},
    {"a=", "a=;", 0},
    {"noequals,b=2", "b=2;", 1},
    {"=v,b=2", "b=2;", 1},
    {"a=%zz,b=%4,c=%41", "c=A;", 2},
    {"%00=v", "", 1},
    {"service.name=api,deployment.environment=prod",
     "service.name=api;deployment.environment=prod;", 0},
};

START_TEST(test_kv_parse_table) {
  char buf[256];
  seen s = {.text = ""};
  snprintf(buf, sizeof buf, "%s", rows[_i].in);
  int bad = ss__kv_parse(buf, collect, &s);
  ck_assert_msg(strcmp(s.text, rows[_i].want) == 0, "%s: got %s want %s", rows[_i].in, s.text,
                rows[_i].want);
  ck_assert_int_eq(bad, rows[_i].bad);
}
END_TEST

START_TEST(test_kv_refused_entries_count_as_malformed) {
  char buf[] = "a=1,x=2,b=3";
  seen s = {.text = "", .refuse_key_x = 1};
  ck_assert_int_eq(ss__kv_parse(buf, collect, &s), 1);
  ck_assert_str_eq(s.text, "a=1;b=3;");
}
END_TEST

static int value_len(void *arg, const char *k, size_t kl, const char *v, size_t vl) {
  (void)k, (void)kl, (void)v;
  *(size_t *)arg = vl;
  return 0;
}

START_TEST(test_kv_decoded_nul_keeps_value_length) {
  char buf[] = "k=a%00b";
  size_t vl = 0;
  ck_assert_int_eq(ss__kv_parse(buf, value_len, &vl), 0);
  ck_assert_int_eq((int)vl, 3); /* "a\0b": the caller can see and refuse the NUL */
}
END_TEST

START_TEST(test_pct_decode_in_place) {
  char a[] = "x%2Fy%2fz";
  ck_assert_int_eq(ss__pct_decode(a, strlen(a)), 5);
  ck_assert_str_eq(a, "x/y/z");
  char b[] = "%4";
  ck_assert_int_eq(ss__pct_decode(b, strlen(b)), -1);
  char c[] = "%G1";
  ck_assert_int_eq(ss__pct_decode(c, strlen(c)), -1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("kv");
  TCase *tc = tcase_create("parse");
  tcase_add_loop_test(tc, test_kv_parse_table, 0, (int)(sizeof rows / sizeof rows[0]));
  tcase_add_test(tc, test_kv_refused_entries_count_as_malformed);
  tcase_add_test(tc, test_kv_decoded_nul_keeps_value_length);
  tcase_add_test(tc, test_pct_decode_in_place);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
