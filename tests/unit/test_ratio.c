/* The traceidratio rule (runtime/ids.h): the bound a ratio gives and which trace ids it
 * keeps; the same rule in the shim and in spanshimd. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "runtime/ids.h"

static void tid_with_low(uint64_t low, uint8_t t[16]) {
  memset(t, 0xab, 8);
  for (int i = 15; i >= 8; i--, low >>= 8) t[i] = (uint8_t)low;
}

START_TEST(test_ratio_bound_edges) {
  ck_assert_uint_eq(ss__ratio_bound(1.0), UINT64_MAX);
  ck_assert_uint_eq(ss__ratio_bound(2.5), UINT64_MAX);
  ck_assert_uint_eq(ss__ratio_bound(0.0), 0);
  ck_assert_uint_eq(ss__ratio_bound(-1.0), 0);
  ck_assert_uint_eq(ss__ratio_bound(NAN), 0);
  ck_assert_uint_eq(ss__ratio_bound(0.5), (uint64_t)1 << 63);
  ck_assert_uint_eq(ss__ratio_bound(0.25), (uint64_t)1 << 62);
}
END_TEST

START_TEST(test_ratio_keep_reads_last_8_bytes_big_endian) {
  uint8_t t[16];
  uint64_t half = ss__ratio_bound(0.5);
  tid_with_low(half - 1, t);
  ck_assert_int_eq(ss__ratio_keep(half, t), 1);
  tid_with_low(half, t);
  ck_assert_int_eq(ss__ratio_keep(half, t), 0);
  tid_with_low(UINT64_MAX, t);
  ck_assert_int_eq(ss__ratio_keep(UINT64_MAX, t), 1); /* ratio 1 keeps everything */
  tid_with_low(0, t);
  ck_assert_int_eq(ss__ratio_keep(0, t), 0); /* ratio 0 keeps nothing */
  /* The first 8 bytes do not matter. */
  tid_with_low(1, t);
  memset(t, 0x00, 8);
  ck_assert_int_eq(ss__ratio_keep(2, t), 1);
  memset(t, 0xff, 8);
  ck_assert_int_eq(ss__ratio_keep(2, t), 1);
}
END_TEST

START_TEST(test_ratio_keeps_about_the_ratio_of_random_ids) {
  uint64_t bound = ss__ratio_bound(0.1);
  int kept = 0, n = 20000;
  ss__ids_reseed();
  for (int i = 0; i < n; i++) {
    uint8_t t[16];
    ss__trace_id_new(t);
    kept += ss__ratio_keep(bound, t);
  }
  ck_assert_int_gt(kept, n / 10 - n / 50);
  ck_assert_int_lt(kept, n / 10 + n / 50);
}
END_TEST

int main(void) {
  Suite *s = suite_create("ratio");
  TCase *tc = tcase_create("traceidratio");
  tcase_add_test(tc, test_ratio_bound_edges);
  tcase_add_test(tc, test_ratio_keep_reads_last_8_bytes_big_endian);
  tcase_add_test(tc, test_ratio_keeps_about_the_ratio_of_random_ids);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
