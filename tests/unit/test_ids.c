/* test_ids.c - id generation, hex, and W3C traceparent parsing/formatting. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/ids.h"
#include "runtime/span.h"

static int cmp8(const void *a, const void *b) {
  return memcmp(a, b, 8);
}
static int cmp16(const void *a, const void *b) {
  return memcmp(a, b, 16);
}

static int count_dups(void *v, size_t n, size_t sz) {
  int dups = 0;
  qsort(v, n, sz, sz == 8 ? cmp8 : cmp16);
  for (size_t i = 1; i < n; i++)
    dups += memcmp((char *)v + (i - 1) * sz, (char *)v + i * sz, sz) == 0;
  return dups;
}

#define N 100000

/* W3C Trace Context: trimming keeps at most 512 characters, dropping members over 128
 * characters first, then members from the end; whole members only. */
static const char *trim(const char *in, int cut) {
  static char buf[2048];
  size_t n = strlen(in);
  memcpy(buf, in, n + 1);
  size_t m = ss__tracestate_trim(buf, n, cut);
  ck_assert_uint_eq(m, strlen(buf));
  return buf;
}

START_TEST(test_tracestate_trim) {
  char in[1500], want[600], big[201];
  ck_assert_str_eq(trim("a=1,b=2", 0), "a=1,b=2");   /* short: as it is */
  ck_assert_str_eq(trim("a=1, b=2,,c", 0), "a=1, b=2,,c");
  memset(big, 'x', 200);
  big[200] = '\0';
  size_t n = (size_t)snprintf(in, sizeof in, "k0=%s", big); /* one long member first */
  want[0] = '\0';
  for (int i = 1; i <= 20; i++) {
    char m[64];
    int ml = snprintf(m, sizeof m, "m%02d=%040d", i, i); /* 44 characters */
    n += (size_t)snprintf(in + n, sizeof in - n, " ,%s", m);
    if (strlen(want) + (want[0] ? 1 : 0) + (size_t)ml <= 512)
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", want[0] ? "," : "", m);
  }
  ck_assert_uint_gt(strlen(in), 512);
  ck_assert_str_eq(trim(in, 0), want);
  ck_assert_uint_le(strlen(want), 512);
  ck_assert_str_eq(trim("a=1,b=2,c=partial", 1), "a=1,b=2"); /* cut: the last is incomplete */
  ck_assert_str_eq(trim("onlypartial", 1), "");
}
END_TEST

START_TEST(test_ids_are_nonzero_and_distinct_over_100k) {
  static uint8_t tids[N][16], sids[N][8];
  ss__ids_reseed();
  for (int i = 0; i < N; i++) {
    ss__trace_id_new(tids[i]);
    ss__span_id_new(sids[i]);
    ck_assert(!ss__id_is_zero(tids[i], 16));
    ck_assert(!ss__id_is_zero(sids[i], 8));
  }
  ck_assert_int_eq(count_dups(tids, N, 16), 0);
  ck_assert_int_eq(count_dups(sids, N, 8), 0);
}
END_TEST

START_TEST(test_ids_work_before_explicit_reseed) {
  uint8_t a[8], b[8];
  ss__span_id_new(a);
  ss__span_id_new(b);
  ck_assert(!ss__id_is_zero(a, 8));
  ck_assert(memcmp(a, b, 8) != 0);
}
END_TEST

#define NT 8
#define PER_T 20000
static uint8_t thread_ids[NT * PER_T][8];

static void *gen_thread(void *arg) {
  size_t base = (size_t)(uintptr_t)arg * PER_T;
  for (size_t i = 0; i < PER_T; i++)
    ss__span_id_new(thread_ids[base + i]);
  return NULL;
}

START_TEST(test_threads_get_distinct_sequences) {
  pthread_t t[NT];
  ss__ids_reseed();
  for (uintptr_t i = 0; i < NT; i++)
    ck_assert_int_eq(pthread_create(&t[i], NULL, gen_thread, (void *)i), 0);
  for (int i = 0; i < NT; i++)
    pthread_join(t[i], NULL);
  ck_assert_int_eq(count_dups(thread_ids, NT * PER_T, 8), 0);
}
END_TEST

START_TEST(test_reseed_changes_sequence) {
  uint8_t before[8], after[8];
  uint64_t saved[4];
  uint32_t saved_gen;

  ss__ids_reseed();
  ss__span_id_new(before); /* seeds this thread */
  memcpy(saved, ss__self.rng, sizeof(saved));
  saved_gen = ss__self.rng_gen;
  ss__span_id_new(before); /* what comes next without a reseed */
  memcpy(ss__self.rng, saved, sizeof(saved));
  ss__self.rng_gen = saved_gen;
  ss__ids_reseed();
  ss__span_id_new(after);
  ck_assert_uint_ne(ss__self.rng_gen, saved_gen);
  ck_assert(memcmp(before, after, 8) != 0);
}
END_TEST

START_TEST(test_fork_child_reseeded_differs_from_parent) {
  uint8_t parent[8], child[8];
  int fds[2], status;

  ss__ids_reseed();
  ss__span_id_new(parent);
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    ss__ids_atfork_child(); /* what the shim's fork handler does: a reseed at the first id */
    ss__span_id_new(child);
    _exit(write(fds[1], child, 8) == 8 ? 0 : 1);
  }
  ss__span_id_new(parent);
  ck_assert_int_eq(read(fds[0], child, 8), 8);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(memcmp(parent, child, 8) != 0);
  close(fds[0]);
  close(fds[1]);
}
END_TEST

/* ss__ids_new (the span start's one call): ids as distinct and non-zero as the single
 * draws', a thread's sequence shared with them, and a fork child's first ids not its
 * parent's next ones. */
START_TEST(test_ids_new_distinct_and_fork_child_differs) {
  static uint8_t tids[N][16], sids[N][8];
  ss__ids_reseed();
  for (int i = 0; i < N; i++) {
    ss__ids_new(i % 3 ? tids[i] : NULL, sids[i]);
    if (i % 3 == 0) ss__trace_id_new(tids[i]); /* interleaved with the single draws */
    ck_assert(!ss__id_is_zero(tids[i], 16));
    ck_assert(!ss__id_is_zero(sids[i], 8));
  }
  ck_assert_int_eq(count_dups(tids, N, 16), 0);
  ck_assert_int_eq(count_dups(sids, N, 8), 0);
  uint8_t pt[16], ps[8], ct[16], cs[8];
  int fds[2], status;
  ck_assert_int_eq(pipe(fds), 0);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    ss__ids_atfork_child();
    ss__ids_new(ct, cs);
    _exit(write(fds[1], ct, 16) == 16 && write(fds[1], cs, 8) == 8 ? 0 : 1);
  }
  ss__ids_new(pt, ps);
  ck_assert_int_eq(read(fds[0], ct, 16), 16);
  ck_assert_int_eq(read(fds[0], cs, 8), 8);
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert_int_eq(status, 0);
  ck_assert(memcmp(pt, ct, 16) != 0);
  ck_assert(memcmp(ps, cs, 8) != 0);
  close(fds[0]);
  close(fds[1]);
}
END_TEST

START_TEST(test_id_is_zero) {
  uint8_t z[16] = {0}, nz[16] = {0};
  nz[15] = 1;
  ck_assert(ss__id_is_zero(z, 16));
  ck_assert(!ss__id_is_zero(nz, 16));
  ck_assert(ss__id_is_zero(nz, 15));
}
END_TEST

START_TEST(test_hex_round_trip) {
  uint8_t in[256], out[256];
  char hex[512];
  for (int i = 0; i < 256; i++)
    in[i] = (uint8_t)i;
  ss__hex_encode(in, 256, hex);
  ck_assert(memcmp(hex, "000102", 6) == 0);
  ck_assert(memcmp(hex + 2 * 0xab, "abacad", 6) == 0);
  ck_assert(memcmp(hex + 510, "ff", 2) == 0);
  ck_assert_int_eq(ss__hex_decode(hex, 256, out), 0);
  ck_assert(memcmp(in, out, 256) == 0);
}
END_TEST

START_TEST(test_hex_decode_accepts_upper_rejects_junk) {
  uint8_t out[4] = {0};
  ck_assert_int_eq(ss__hex_decode("DEADbeef", 4, out), 0);
  ck_assert_uint_eq(out[0], 0xde);
  ck_assert_uint_eq(out[3], 0xef);
  ck_assert_int_eq(ss__hex_decode("deadbeeg", 4, out), -1);
  ck_assert_int_eq(ss__hex_decode("dead bee", 4, out), -1);
  ck_assert_int_eq(ss__hex_decode("0x00", 2, out), -1);
}
END_TEST

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"

static const struct {
  const char *s;
  int ok;
  uint8_t flags;
} tp_cases[] = {
    {"00-" TID "-" SID "-01", 1, 1},
    {"00-" TID "-" SID "-00", 1, 0},
    {"  00-" TID "-" SID "-01\t", 1, 1},          /* surrounding blanks */
    {"00-" TID "-" SID "-ff", 1, 3},              /* reserved flag bits dropped */
    {"01-" TID "-" SID "-01", 1, 1},              /* future version, same length */
    {"cc-" TID "-" SID "-01-what-the-future", 1, 1}, /* future version, extra fields */
    {"cc-" TID "-" SID "-01-", 1, 1},
    {"cc-" TID "-" SID "-01x", 0, 0},             /* future: must be '-' after flags */
    {"cc-" TID "-" SID "-01.", 0, 0},
    {"ff-" TID "-" SID "-01", 0, 0},              /* version ff is invalid */
    {"00-" TID "-" SID "-01-", 0, 0},             /* version 00 is exactly 55 chars */
    {"00-" TID "-" SID "-01x", 0, 0},
    {"00-" TID "-" SID "-1", 0, 0},
    {"00-" TID "-" SID, 0, 0},
    {"00-00000000000000000000000000000000-" SID "-01", 0, 0}, /* zero trace id */
    {"00-" TID "-0000000000000000-01", 0, 0},                 /* zero span id */
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", 0, 0}, /* upper case */
    {"00-" TID "-00F067AA0BA902B7-01", 0, 0},
    {"00-" TID "-" SID "-0A", 0, 0},
    {"0A-" TID "-" SID "-01", 0, 0},
    {"00-" TID "0-" SID "-01", 0, 0},             /* trace id too long */
    {"00-" TID "-" SID "0-1", 0, 0},
    {"00_" TID "-" SID "-01", 0, 0},              /* wrong separators */
    {"00-" TID "_" SID "-01", 0, 0},
    {"00-" TID "-" SID "_01", 0, 0},
    {"00-4bf92f3577b34da6a3ce929d0e0e473g-" SID "-01", 0, 0}, /* not hex */
    {"00-" TID "-00f067aa0ba902bz-01", 0, 0},
    {"00-" TID "-" SID "-0g", 0, 0},
    {"0-" TID "-" SID "-01x", 0, 0},
    {"", 0, 0},
    {"   ", 0, 0},
    {"00-" TID "-" SID "- 1", 0, 0},
};

START_TEST(test_traceparent_parse_table) {
  const char *s = tp_cases[_i].s;
  ss__ctx c;
  memset(&c, 0xaa, sizeof(c));
  int rc = ss__traceparent_parse(s, strlen(s), &c);
  if (!tp_cases[_i].ok) {
    ck_assert_msg(rc == -1, "accepted invalid traceparent \"%s\"", s);
    ck_assert_uint_eq(c.valid, 0xaa); /* untouched */
    return;
  }
  ck_assert_msg(rc == 0, "rejected valid traceparent \"%s\"", s);
  ck_assert_uint_eq(c.valid, 1);
  ck_assert_uint_eq(c.flags, tp_cases[_i].flags);
  ck_assert_uint_eq(c.trace_id[0], 0x4b);
  ck_assert_uint_eq(c.trace_id[15], 0x36);
  ck_assert_uint_eq(c.span_id[0], 0x00);
  ck_assert_uint_eq(c.span_id[7], 0xb7);
}
END_TEST

START_TEST(test_traceparent_parse_respects_len) {
  const char *s = "00-" TID "-" SID "-01garbage";
  ss__ctx c;
  ck_assert_int_eq(ss__traceparent_parse(s, SS_TRACEPARENT_LEN, &c), 0);
  ck_assert_int_eq(ss__traceparent_parse(s, SS_TRACEPARENT_LEN - 1, &c), -1);
  ck_assert_int_eq(ss__traceparent_parse(NULL, 0, &c), -1);
}
END_TEST

START_TEST(test_traceparent_format_round_trip) {
  const char *s = "00-" TID "-" SID "-01";
  char out[SS_TRACEPARENT_LEN + 1];
  ss__ctx c, d;
  ck_assert_int_eq(ss__traceparent_parse(s, strlen(s), &c), 0);
  ss__traceparent_format(&c, out);
  ck_assert_str_eq(out, s);
  for (int i = 0; i < 1000; i++) {
    memset(&c, 0, sizeof(c));
    ss__trace_id_new(c.trace_id);
    ss__span_id_new(c.span_id);
    c.flags = (uint8_t)(i & 1);
    ss__traceparent_format(&c, out);
    ck_assert_uint_eq(strlen(out), SS_TRACEPARENT_LEN);
    ck_assert_int_eq(ss__traceparent_parse(out, strlen(out), &d), 0);
    ck_assert(memcmp(c.trace_id, d.trace_id, 16) == 0);
    ck_assert(memcmp(c.span_id, d.span_id, 8) == 0);
    ck_assert_uint_eq(c.flags, d.flags);
  }
}
END_TEST

static Suite *ids_suite(void) {
  Suite *s = suite_create("ids");
  TCase *tc = tcase_create("gen");
  tcase_add_test(tc, test_ids_work_before_explicit_reseed);
  tcase_add_test(tc, test_ids_are_nonzero_and_distinct_over_100k);
  tcase_add_test(tc, test_threads_get_distinct_sequences);
  tcase_add_test(tc, test_reseed_changes_sequence);
  tcase_add_test(tc, test_fork_child_reseeded_differs_from_parent);
  tcase_add_test(tc, test_ids_new_distinct_and_fork_child_differs);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tc = tcase_create("w3c");
  tcase_add_test(tc, test_id_is_zero);
  tcase_add_test(tc, test_hex_round_trip);
  tcase_add_test(tc, test_hex_decode_accepts_upper_rejects_junk);
  tcase_add_loop_test(tc, test_traceparent_parse_table, 0,
                      (int)(sizeof(tp_cases) / sizeof(tp_cases[0])));
  tcase_add_test(tc, test_traceparent_parse_respects_len);
  tcase_add_test(tc, test_traceparent_format_round_trip);
  tcase_add_test(tc, test_tracestate_trim);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(ids_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
