/* spanshimd's gRPC message framing (grpcframe.c): one Length-Prefixed-Message taken,
 * everything else refused with the status a gRPC server gives; gzip/deflate messages
 * inflated under --max-body; grpc-message percent-encoding. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tools/spanshimd/grpc.h"

static size_t framed(uint8_t *out, int flag, const void *msg, size_t n) {
  out[0] = (uint8_t)flag;
  out[1] = (uint8_t)(n >> 24), out[2] = (uint8_t)(n >> 16);
  out[3] = (uint8_t)(n >> 8), out[4] = (uint8_t)n;
  memcpy(out + 5, msg, n);
  return n + 5;
}

static int unframe(const uint8_t *in, size_t n, int coding, size_t max, const uint8_t **msg,
                   size_t *len, const char **why) {
  static uint8_t *buf;
  static size_t cap;
  *why = NULL;
  return ss__grpc_unframe(in, n, coding, max, &buf, &cap, msg, len, why);
}

/* gzip (windowBits 31) or zlib (15) of in[0..n) into out; its length. */
static size_t compress_as(int wbits, const void *in, size_t n, uint8_t *out, size_t cap) {
  z_stream z;
  memset(&z, 0, sizeof z);
  ck_assert_int_eq(deflateInit2(&z, 9, Z_DEFLATED, wbits, 9, Z_DEFAULT_STRATEGY), Z_OK);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
  size_t got = z.total_out;
  deflateEnd(&z);
  return got;
}

START_TEST(test_grpc_one_plain_message_is_taken_in_place) {
  uint8_t in[64];
  size_t n = framed(in, 0, "hello", 5);
  const uint8_t *msg;
  size_t len;
  const char *why;
  ck_assert_int_eq(unframe(in, n, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_OK);
  ck_assert_ptr_eq(msg, in + 5);
  ck_assert_uint_eq(len, 5);
  /* An empty message (an empty export request) is a message too. */
  n = framed(in, 0, "", 0);
  ck_assert_int_eq(unframe(in, n, SS_CE_GZIP, 100, &msg, &len, &why), SS_GRPC_OK);
  ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(test_grpc_bad_framing_is_internal) {
  uint8_t in[64], two[64];
  size_t n = framed(in, 0, "hello", 5);
  memcpy(two, in, n);
  memcpy(two + n, in, n);
  const uint8_t *msg;
  size_t len;
  const char *why;
  ck_assert_int_eq(unframe(in, 0, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  ck_assert_str_eq(why, "no request message");
  ck_assert_int_eq(unframe(in, 3, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  ck_assert_int_eq(unframe(in, n - 1, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  ck_assert_int_eq(unframe(two, 2 * n, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  ck_assert(strstr(why, "more than one") != NULL);
  in[0] = 2;
  ck_assert_int_eq(unframe(in, n, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  in[0] = 1;  /* compressed, but the call named no grpc-encoding */
  ck_assert_int_eq(unframe(in, n, SS_CE_IDENTITY, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
  ck_assert(strstr(why, "grpc-encoding") != NULL);
  /* compressed and said gzip, but not gzip */
  ck_assert_int_eq(unframe(in, n, SS_CE_GZIP, 100, &msg, &len, &why), SS_GRPC_INTERNAL);
}
END_TEST

START_TEST(test_grpc_gzip_and_deflate_messages_are_inflated) {
  char text[1000];
  memset(text, 'a', sizeof text);
  uint8_t z[2000], in[2100];
  const uint8_t *msg;
  size_t len;
  const char *why;
  for (int i = 0; i < 2; i++) {
    size_t zn = compress_as(i ? 15 : 31, text, sizeof text, z, sizeof z);
    size_t n = framed(in, 1, z, zn);
    ck_assert_int_eq(unframe(in, n, i ? SS_CE_DEFLATE : SS_CE_GZIP, 1000, &msg, &len, &why),
                     SS_GRPC_OK);
    ck_assert_uint_eq(len, sizeof text);
    ck_assert(memcmp(msg, text, sizeof text) == 0);
    /* One byte over --max-body once inflated. */
    ck_assert_int_eq(unframe(in, n, i ? SS_CE_DEFLATE : SS_CE_GZIP, 999, &msg, &len, &why),
                     SS_GRPC_RESOURCE_EXHAUSTED);
    ck_assert(strstr(why, "decompressed") != NULL);
  }
}
END_TEST

START_TEST(test_grpc_plain_message_over_max_is_resource_exhausted) {
  uint8_t in[64];
  size_t n = framed(in, 0, "hello", 5);
  const uint8_t *msg;
  size_t len;
  const char *why;
  ck_assert_int_eq(unframe(in, n, SS_CE_IDENTITY, 4, &msg, &len, &why),
                   SS_GRPC_RESOURCE_EXHAUSTED);
  ck_assert_int_eq(unframe(in, n, SS_CE_IDENTITY, 5, &msg, &len, &why), SS_GRPC_OK);
}
END_TEST

START_TEST(test_grpc_message_is_percent_encoded) {
  char out[64];
  ss__grpc_pct_encode("50% of \xc3\xa9t\xc3\xa9\n", out, sizeof out);
  ck_assert_str_eq(out, "50%25 of %C3%A9t%C3%A9%0A");
  /* Truncated whole: never half an escape. */
  ss__grpc_pct_encode("ab\xc3\xa9", out, 5);
  ck_assert_str_eq(out, "ab");
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_grpc");
  TCase *tc = tcase_create("framing");
  tcase_add_test(tc, test_grpc_one_plain_message_is_taken_in_place);
  tcase_add_test(tc, test_grpc_bad_framing_is_internal);
  tcase_add_test(tc, test_grpc_gzip_and_deflate_messages_are_inflated);
  tcase_add_test(tc, test_grpc_plain_message_over_max_is_resource_exhausted);
  tcase_add_test(tc, test_grpc_message_is_percent_encoded);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
