/* test_json_parse.c - the strict JSON parser: what it accepts, what it refuses (with the
 * byte offset), escapes, numbers, depth and truncation, and hostile input. */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/json.h"

static char err[256];

static ss__json *parse(const char *s) { return ss__json_parse(s, strlen(s), err, sizeof(err)); }

/* Asserts that s is refused and the message names `offset`. */
static void assert_refused_at(const char *s, size_t offset) {
  char want[64];
  ss__json *j = parse(s);
  ck_assert_msg(j == NULL, "accepted: %s", s);
  snprintf(want, sizeof(want), "at byte %zu", offset);
  ck_assert_msg(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", s, err, want);
}

static void assert_refused(const char *s) {
  ss__json *j = parse(s);
  ck_assert_msg(j == NULL, "accepted: %s", s);
  ck_assert_msg(err[0] != '\0', "no message for: %s", s);
}

START_TEST(test_parses_nested_document) {
  ss__json *j = parse(" {\"a\": [1, true, false, null, \"x\", {\"b\": {}}], \"c\": []}\n");
  ck_assert_ptr_nonnull(j);
  ck_assert_int_eq(j->type, SS_JSON_OBJECT);
  ck_assert_uint_eq(ss__json_count(j), 2);
  const ss__json *a = ss__json_get(j, "a");
  ck_assert_int_eq(a->type, SS_JSON_ARRAY);
  ck_assert_uint_eq(ss__json_count(a), 6);
  ck_assert_double_eq(ss__json_at(a, 0)->u.num.d, 1.0);
  ck_assert(ss__json_is(ss__json_at(a, 1), SS_JSON_BOOL) && ss__json_at(a, 1)->u.b);
  ck_assert(ss__json_is(ss__json_at(a, 2), SS_JSON_BOOL) && !ss__json_at(a, 2)->u.b);
  ck_assert(ss__json_is(ss__json_at(a, 3), SS_JSON_NULL));
  ck_assert_str_eq(ss__json_str(ss__json_at(a, 4), NULL), "x");
  ck_assert(ss__json_is(ss__json_get(ss__json_at(a, 5), "b"), SS_JSON_OBJECT));
  ck_assert_uint_eq(ss__json_count(ss__json_get(j, "c")), 0);
  ck_assert_ptr_null(ss__json_at(a, 6));
  ck_assert_ptr_null(ss__json_get(j, "missing"));
  ck_assert_ptr_null(ss__json_get(a, "a"));  /* not an object */
  ck_assert_str_eq(ss__json_at(j, 1)->key, "c");
  ss__json_free(j);
}
END_TEST

START_TEST(test_parses_scalars_at_top_level) {
  const char *ok[] = {"0", "-0", "\"\"", "true", "null", " 12 ", "1e3", "[]", "{}"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    ss__json *j = parse(ok[i]);
    ck_assert_msg(j != NULL, "%s: %s", ok[i], err);
    ss__json_free(j);
  }
}
END_TEST

START_TEST(test_duplicate_key_last_wins) {
  ss__json *j = parse("{\"k\":1,\"k\":2}");
  ck_assert_double_eq(ss__json_get(j, "k")->u.num.d, 2.0);
  ss__json_free(j);
}
END_TEST

START_TEST(test_simple_escapes) {
  ss__json *j = parse("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"");
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(j->u.s, "q\" b\\ s/ \b\f\n\r\t");
  ss__json_free(j);
}
END_TEST

START_TEST(test_unicode_escapes_become_utf8) {
  ss__json *j = parse("\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(j->u.s, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  ck_assert_uint_eq(j->len, 1 + 2 + 3 + 4);
  ss__json_free(j);
}
END_TEST

START_TEST(test_escaped_nul_is_kept_with_length) {
  size_t len;
  ss__json *j = parse("\"a\\u0000b\"");
  const char *s = ss__json_str(j, &len);
  ck_assert_uint_eq(len, 3);
  ck_assert(memcmp(s, "a\0b", 3) == 0);
  ss__json_free(j);
}
END_TEST

START_TEST(test_raw_utf8_accepted) {
  ss__json *j = parse("\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
  ck_assert_ptr_nonnull(j);
  ck_assert_str_eq(j->u.s, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  ss__json_free(j);
}
END_TEST

START_TEST(test_bad_strings_refused) {
  assert_refused_at("\"abc", 0);               /* unterminated */
  assert_refused_at("[\"a\\x\"]", 3);          /* unknown escape */
  assert_refused_at("\"\\u12G4\"", 1);         /* bad hex */
  assert_refused_at("\"\\ud83d\"", 1);         /* high surrogate alone */
  assert_refused_at("\"\\ud83d\\u0041\"", 1);  /* high surrogate, no low one */
  assert_refused_at("\"\\ude00\"", 1);         /* low surrogate alone */
  assert_refused_at("\"a\tb\"", 2);            /* raw control character */
  assert_refused_at("\"\xc0\x80\"", 1);        /* overlong NUL */
  assert_refused_at("\"\xed\xa0\x80\"", 1);    /* UTF-8 encoded surrogate */
  assert_refused_at("\"\x80\"", 1);            /* lone continuation byte */
  assert_refused_at("\"\xf4\x90\x80\x80\"", 1); /* above U+10FFFF */
  assert_refused_at("\"\xe2\x82\"", 1);        /* cut sequence */
  assert_refused("'single'");
}
END_TEST

START_TEST(test_numbers) {
  ss__json *j = parse("[0, -0, 12, -3.5, 1e3, 2E-2, 6.02e+23, 18446744073709551615]");
  ck_assert_ptr_nonnull(j);
  ck_assert_double_eq(ss__json_at(j, 2)->u.num.d, 12);
  ck_assert_double_eq(ss__json_at(j, 3)->u.num.d, -3.5);
  ck_assert_double_eq(ss__json_at(j, 4)->u.num.d, 1000);
  ck_assert_double_eq_tol(ss__json_at(j, 5)->u.num.d, 0.02, 1e-12);
  ck_assert_str_eq(ss__json_at(j, 6)->u.num.text, "6.02e+23");
  uint64_t u;
  ck_assert_int_eq(ss__json_uint64(ss__json_at(j, 7), &u), 0);
  ck_assert(u == UINT64_MAX);  /* exact, not through a double */
  ss__json_free(j);
}
END_TEST

START_TEST(test_integer_digits_of_exponent_and_fraction_forms) {
  struct { const char *in, *out; int rc; } c[] = {
      {"1e3", "1000", 0}, {"1E+3", "1000", 0}, {"-2.50e1", "-25", 0}, {"100.000", "100", 0},
      {"1500e-2", "15", 0}, {"0e99999999", "0", 0}, {"-0", "0", 0}, {"-0.0e-5", "0", 0},
      {"007", "7", 0}, {"1.7e18", "1700000000000000000", 0}, {"5e-100000000", NULL, -EINVAL},
      {"25e-1", NULL, -EINVAL}, {"1e-3", NULL, -EINVAL}, {"1e30", NULL, -ERANGE},
      {"1.", NULL, -EINVAL}, {"1e", NULL, -EINVAL}, {"e3", NULL, -EINVAL}, {"", NULL, -EINVAL},
      {"1 ", NULL, -EINVAL}, {"0x10", NULL, -EINVAL}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    char out[24] = "x";
    int rc = ss__json_int_digits(c[i].in, strlen(c[i].in), out, sizeof out);
    ck_assert_msg(rc == c[i].rc, "%s: %d", c[i].in, rc);
    if (c[i].out) ck_assert_str_eq(out, c[i].out);
  }
  ss__json *j = parse("[1e3, \"2.0e1\", 1.5]");
  int64_t v = 0;
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 0), &v), 0);
  ck_assert_int_eq(v, 1000);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 1), &v), 0);
  ck_assert_int_eq(v, 20);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 2), &v), -EINVAL);
  ss__json_free(j);
}
END_TEST

START_TEST(test_bad_numbers_refused) {
  assert_refused_at("01", 1);
  assert_refused_at("[-01]", 3);
  assert_refused_at("1.", 2);
  assert_refused_at("1.e5", 2);
  assert_refused_at("1e", 2);
  assert_refused_at("1e+", 3);
  assert_refused_at("-", 1);
  assert_refused_at(".5", 0);
  assert_refused_at("+1", 0);
  assert_refused_at("[NaN]", 1);
  assert_refused_at("Infinity", 0);
  assert_refused_at("0x10", 1);
}
END_TEST

START_TEST(test_integer_accessors) {
  ss__json *j = parse("[\"123\", \"-9223372036854775808\", \"9223372036854775808\", 1.5, "
                      "\"12a\", \"\", \"-\", 42, \"18446744073709551616\", -1]");
  int64_t i = 7;
  uint64_t u = 7;
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 0), &i), 0);
  ck_assert_int_eq(i, 123);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 1), &i), 0);
  ck_assert(i == INT64_MIN);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 2), &i), -ERANGE);
  ck_assert(i == INT64_MIN);  /* unchanged on failure */
  ck_assert_int_eq(ss__json_uint64(ss__json_at(j, 2), &u), 0);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 3), &i), -EINVAL);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 4), &i), -EINVAL);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 5), &i), -EINVAL);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 6), &i), -EINVAL);
  ck_assert_int_eq(ss__json_int64(ss__json_at(j, 7), &i), 0);
  ck_assert_int_eq(i, 42);
  ck_assert_int_eq(ss__json_uint64(ss__json_at(j, 8), &u), -ERANGE);
  ck_assert_int_eq(ss__json_uint64(ss__json_at(j, 9), &u), -EINVAL);
  ck_assert_int_eq(ss__json_int64(NULL, &i), -EINVAL);
  ss__json_free(j);
}
END_TEST

START_TEST(test_structure_errors_name_the_offset) {
  assert_refused_at("[1,]", 3);
  assert_refused_at("{\"a\":1,}", 7);
  assert_refused_at("{\"a\" 1}", 5);
  assert_refused_at("{a:1}", 1);
  assert_refused_at("[1 2]", 3);
  assert_refused_at("{\"a\":1 \"b\":2}", 7);
  assert_refused_at("1 2", 2);
  assert_refused_at("[] x", 3);
  assert_refused_at("", 0);
  assert_refused_at("   ", 3);
  assert_refused_at("tru", 0);
  assert_refused_at("nul", 0);
  assert_refused_at("[1] // c", 4);
  assert_refused_at("/* c */ 1", 0);
  ck_assert_ptr_nonnull(strstr(err, "unexpected '/'"));
}
END_TEST

START_TEST(test_every_truncation_refused) {
  const char *doc = "{\"resourceSpans\":[{\"a\":[1,-2.5e3,true,null,\"\\ud83d\\ude00\"]}]}";
  size_t n = strlen(doc);
  ss__json *full = ss__json_parse(doc, n, err, sizeof(err));
  ck_assert_ptr_nonnull(full);
  ss__json_free(full);
  /* The copy has no NUL after the cut, so a parser relying on one would overrun. */
  for (size_t k = 0; k < n; k++) {
    char *cut = malloc(k ? k : 1);
    memcpy(cut, doc, k);
    ss__json *j = ss__json_parse(cut, k, err, sizeof(err));
    ck_assert_msg(j == NULL, "prefix of %zu bytes accepted", k);
    ck_assert_msg(strstr(err, "at byte") != NULL, "prefix %zu: %s", k, err);
    free(cut);
  }
}
END_TEST

static char *nested(size_t depth) {
  char *s = malloc(2 * depth + 1);
  memset(s, '[', depth);
  memset(s + depth, ']', depth);
  s[2 * depth] = '\0';
  return s;
}

START_TEST(test_depth_limit) {
  char *s = nested(SS_JSON_DEFAULT_DEPTH);
  ss__json *j = parse(s);
  ck_assert_msg(j != NULL, "%s", err);
  ss__json_free(j);
  free(s);
  s = nested(SS_JSON_DEFAULT_DEPTH + 1);
  assert_refused_at(s, SS_JSON_DEFAULT_DEPTH);
  ck_assert_ptr_nonnull(strstr(err, "nesting deeper than 128"));
  free(s);
  ss__json_opts o = {.max_depth = 3};
  ck_assert_ptr_null(ss__json_parse_opts("{\"a\":[[[1]]]}", 13, &o, err, sizeof(err)));
  j = ss__json_parse_opts("{\"a\":[[1]]}", 11, &o, err, sizeof(err));
  ck_assert_ptr_nonnull(j);
  ss__json_free(j);
}
END_TEST

START_TEST(test_depth_bomb_does_not_crash) {
  size_t n = 1000000;
  char *s = malloc(n);
  for (size_t i = 0; i < n; i++) s[i] = i % 2 ? '[' : '{';
  s[0] = '[';
  ck_assert_ptr_null(ss__json_parse(s, n, err, sizeof(err)));
  memset(s, '[', n);
  ck_assert_ptr_null(ss__json_parse(s, n, err, sizeof(err)));
  ck_assert_ptr_nonnull(strstr(err, "nesting"));
  free(s);
}
END_TEST

START_TEST(test_errors_without_buffer) {
  ck_assert_ptr_null(ss__json_parse("[", 1, NULL, 0));
  ck_assert_ptr_null(ss__json_parse(NULL, 0, err, sizeof(err)));
  char small[8];
  ck_assert_ptr_null(ss__json_parse("[1,]", 4, small, sizeof(small)));
  ck_assert_uint_lt(strlen(small), sizeof(small));
  ss__json_free(NULL);
}
END_TEST

/* Random documents built from JSON's own tokens, then mutated: nothing may crash or leak
 * (run under `make asan` / `make valgrind`), and anything accepted must be a tree. */
START_TEST(test_random_input_never_crashes) {
  static const char *const tok[] = {"{", "}", "[", "]", ",", ":", "\"k\"", "\"\\u00e9\"",
                                    "1", "-0.5e2", "true", "null", " ", "\"\\ud83d\\ude00\"",
                                    "\"", "\\", "\xff", "\x00", "e", "\"\\u"};
  uint64_t x = 0x9e3779b97f4a7c15u;
  char buf[256];
  for (int iter = 0; iter < 200000; iter++) {
    size_t len = 0;
    int ntok = (int)(x % 24);
    for (int t = 0; t < ntok; t++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      const char *s = tok[x % (sizeof(tok) / sizeof(tok[0]))];
      size_t sl = s[0] ? strlen(s) : 1;
      if (len + sl > sizeof(buf)) break;
      memcpy(buf + len, s, sl);
      len += sl;
    }
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    ss__json *j = ss__json_parse(buf, len, err, sizeof(err));
    if (j) ck_assert_int_ge(j->type, SS_JSON_NULL);
    else ck_assert_ptr_nonnull(strstr(err, "at byte"));
    /* The pull reader walking the same bytes agrees on what is JSON. */
    ss__jr r;
    char rerr[256];
    ss__jr_init(&r, buf, len, 0, rerr, sizeof rerr);
    int ok = ss__jr_skip(&r) == 0 && ss__jr_end(&r) == 0;
    ck_assert_msg(ok == (j != NULL), "reader %s what the parser %s: %.*s (%s)",
                  ok ? "took" : "refused", j ? "took" : "refused", (int)len, buf, rerr);
    if (!ok) ck_assert_ptr_nonnull(strstr(rerr, "at byte"));
    ss__json_free(j);
  }
}
END_TEST

/* The pull reader, used as a decoder uses it: keys, items, values, then the end. */
START_TEST(test_pull_reader_walks_a_document) {
  const char *doc = " {\"k\\u00e9y\": [\"a\\nb\", -12, true, null], \"x\": {}} ";
  ss__jr r;
  const char *k, *t;
  size_t n, max;
  char s[16];
  ss__jr_init(&r, doc, strlen(doc), 4, err, sizeof err);
  ck_assert_int_eq(ss__jr_peek(&r), SS_JSON_OBJECT);
  ck_assert_int_eq(ss__jr_object(&r), 0);
  ck_assert_int_eq(ss__jr_next_key(&r, &k, &n), 1);
  ck_assert_uint_eq(n, 4);
  ck_assert(memcmp(k, "k\xc3\xa9y", 4) == 0);
  ck_assert_int_eq(ss__jr_array(&r), 0);
  ck_assert_int_eq(ss__jr_next_item(&r), 1);
  ck_assert_int_eq(ss__jr_string(&r, &max), 0);
  ck_assert_uint_le(max, sizeof s - 1);
  ck_assert_uint_eq(ss__jr_string_copy(&r, s), 3);
  ck_assert_str_eq(s, "a\nb");
  ck_assert_int_eq(ss__jr_next_item(&r), 1);
  ck_assert_int_eq(ss__jr_number(&r, &t, &n), 0);
  ck_assert(n == 3 && memcmp(t, "-12", 3) == 0);
  ck_assert_int_eq(ss__jr_next_item(&r), 1);
  ck_assert_int_eq(ss__jr_literal(&r), 1);
  ck_assert_int_eq(ss__jr_next_item(&r), 1);
  ck_assert_int_eq(ss__jr_literal(&r), 0);
  ck_assert_int_eq(ss__jr_next_item(&r), 0);
  ck_assert_int_eq(ss__jr_next_key(&r, &k, &n), 1);
  ck_assert_int_eq(ss__jr_skip(&r), 0);
  ck_assert_int_eq(ss__jr_next_key(&r, &k, &n), 0);
  ck_assert_int_eq(ss__jr_end(&r), 0);
  /* Depth bound, and a failure sticks. */
  ss__jr_init(&r, "[[[[[1]]]]]", 11, 4, err, sizeof err);
  ck_assert_int_eq(ss__jr_skip(&r), -1);
  ck_assert_ptr_nonnull(strstr(err, "nesting deeper than 4 at byte 4"));
  ck_assert_int_eq(ss__jr_peek(&r), -1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("json_parse");
  TCase *tc = tcase_create("json");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_parses_nested_document);
  tcase_add_test(tc, test_parses_scalars_at_top_level);
  tcase_add_test(tc, test_duplicate_key_last_wins);
  tcase_add_test(tc, test_simple_escapes);
  tcase_add_test(tc, test_unicode_escapes_become_utf8);
  tcase_add_test(tc, test_escaped_nul_is_kept_with_length);
  tcase_add_test(tc, test_raw_utf8_accepted);
  tcase_add_test(tc, test_bad_strings_refused);
  tcase_add_test(tc, test_numbers);
  tcase_add_test(tc, test_bad_numbers_refused);
  tcase_add_test(tc, test_integer_digits_of_exponent_and_fraction_forms);
  tcase_add_test(tc, test_integer_accessors);
  tcase_add_test(tc, test_structure_errors_name_the_offset);
  tcase_add_test(tc, test_every_truncation_refused);
  tcase_add_test(tc, test_depth_limit);
  tcase_add_test(tc, test_depth_bomb_does_not_crash);
  tcase_add_test(tc, test_errors_without_buffer);
  tcase_add_test(tc, test_random_input_never_crashes);
  tcase_add_test(tc, test_pull_reader_walks_a_document);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
