/* Timeout arithmetic (runtime/deadline.h) and table hashing (runtime/hash.h). */
#include <check.h>
#include <stdint.h>
#include <time.h>

#include "runtime/deadline.h"
#include "runtime/hash.h"

START_TEST(test_ms_until_never_negative) {
  ck_assert_uint_eq(ss__ms_until(1000, 400), 600);
  ck_assert_uint_eq(ss__ms_until(1000, 1000), 0);
  ck_assert_uint_eq(ss__ms_until(1000, 5000), 0);
}
END_TEST

START_TEST(test_timespec_after_ms_is_normalized_and_ahead) {
  struct timespec now, t;
  clock_gettime(CLOCK_MONOTONIC, &now);
  t = ss__timespec_after_ms(CLOCK_MONOTONIC, 1999);
  ck_assert_int_lt(t.tv_nsec, 1000000000L);
  int64_t d = (int64_t)(t.tv_sec - now.tv_sec) * 1000 + (t.tv_nsec - now.tv_nsec) / 1000000;
  ck_assert_int_ge(d, 1999);
  ck_assert_int_lt(d, 2999);
}
END_TEST

START_TEST(test_ptr_hash_spreads_aligned_pointers) {
  /* 64 malloc-aligned neighbours land in many of 64 slots, not a few. */
  int used[64] = {0}, distinct = 0;
  for (uintptr_t i = 0; i < 64; i++) {
    uint32_t h = ss__ptr_hash((const void *)(0x7f0000001000u + i * 16)) % 64;
    if (!used[h]++) distinct++;
  }
  ck_assert_int_ge(distinct, 32);
  ck_assert_uint_lt(ss__ptr_hash((void *)~(uintptr_t)0), 1u << 24);
  ck_assert_uint_eq(ss__ptr_hash((void *)0x1234), ss__ptr_hash((void *)0x1234));
}
END_TEST

START_TEST(test_hash_bytes_is_fnv1a) {
  ck_assert_uint_eq(ss__hash_bytes("", 0), 14695981039346656037ull);
  ck_assert_uint_eq(ss__hash_bytes("a", 1), 0xaf63dc4c8601ec8cull);
}
END_TEST

int main(void) {
  Suite *s = suite_create("deadline");
  TCase *tc = tcase_create("deadline");
  tcase_add_test(tc, test_ms_until_never_negative);
  tcase_add_test(tc, test_timespec_after_ms_is_normalized_and_ahead);
  tcase_add_test(tc, test_ptr_hash_spreads_aligned_pointers);
  tcase_add_test(tc, test_hash_bytes_is_fnv1a);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
