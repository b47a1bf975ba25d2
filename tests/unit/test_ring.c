/* test_ring.c - the MPSC span ring: order, content, wraparound, drops, concurrency, fork. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/ring.h"

/* A test record: who, which, how long, and a checksum over the rest. */
typedef struct trec {
  uint32_t producer;
  uint32_t len;   /* bytes of the whole record */
  uint64_t seq;
  uint64_t sum;
} trec;

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

static uint64_t payload_sum(const unsigned char *p, size_t n, uint64_t seed) {
  uint64_t h = seed;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Fills buf (len >= sizeof(trec)) with a record whose payload derives from (prod, seq). */
static void make_rec(unsigned char *buf, size_t len, uint32_t prod, uint64_t seq) {
  trec *t = (trec *)buf;
  uint64_t x = mix(((uint64_t)prod << 40) ^ seq);

  for (size_t i = sizeof(trec); i < len; i++)
    buf[i] = (unsigned char)(x >> ((i % 8) * 8)) ^ (unsigned char)i;
  t->producer = prod;
  t->len = (uint32_t)len;
  t->seq = seq;
  t->sum = payload_sum(buf + sizeof(trec), len - sizeof(trec), mix(seq ^ prod));
}

static int rec_ok(const void *p, size_t reserved) {
  const trec *t = p;
  if (t->len < sizeof(trec) || t->len > reserved || reserved != ((t->len + 7u) & ~7u))
    return 0;
  return t->sum == payload_sum((const unsigned char *)p + sizeof(trec),
                               t->len - sizeof(trec), mix(t->seq ^ t->producer));
}

START_TEST(test_init_rounds_capacity_to_power_of_two) {
  ss__ring r;
  ck_assert_int_eq(ss__ring_init(&r, 1), 0);
  ck_assert_uint_eq(r.cap, 4096);
  ck_assert_uint_eq(r.cap_shift, 12);
  ck_assert_int_eq(ss__ring_init(&r, 5000), 0);
  ck_assert_uint_eq(r.cap, 8192);
  ck_assert_uint_eq(1ull << r.cap_shift, r.cap);
  ck_assert_int_eq(ss__ring_init(&r, 65536), 0);
  ck_assert_uint_eq(r.cap, 65536);
  ck_assert_uint_eq(ss__ring_used(&r), 0);
}
END_TEST

START_TEST(test_empty_ring_peeks_nothing) {
  ss__ring r;
  size_t len = 99;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
  ck_assert_uint_eq(len, 99);
}
END_TEST

START_TEST(test_unmapped_ring_refuses_everything) {
  static ss__ring r; /* zeroed, never initialized: a hook before init */
  size_t len;
  ck_assert_ptr_null(ss__ring_reserve(&r, 0));
  ck_assert_ptr_null(ss__ring_reserve(&r, 16));
  ck_assert_int_eq(ss__ring_put(&r, "x", 1), -1);
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
  ss__ring_release(&r);
  ck_assert_uint_eq(r.dropped, 3);
  ck_assert_uint_eq(ss__ring_used(&r), 0);
}
END_TEST

START_TEST(test_put_peek_release_keeps_order_and_content) {
  ss__ring r;
  unsigned char buf[256];
  size_t len;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  for (uint64_t i = 0; i < 10; i++) {
    make_rec(buf, sizeof(trec) + i * 5, 1, i);
    ck_assert_int_eq(ss__ring_put(&r, buf, sizeof(trec) + i * 5), 0);
  }
  ck_assert_uint_eq(r.committed, 10);
  for (uint64_t i = 0; i < 10; i++) {
    void *p = ss__ring_peek(&r, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 8, 0);
    ck_assert_uint_eq(len, (sizeof(trec) + i * 5 + 7) & ~7u);
    ck_assert(rec_ok(p, len));
    ck_assert_uint_eq(((trec *)p)->seq, i);
    /* Peeking again without release yields the same record. */
    ck_assert_ptr_eq(ss__ring_peek(&r, &len), p);
    ss__ring_release(&r);
  }
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
  ck_assert_uint_eq(ss__ring_used(&r), 0);
  ck_assert_uint_eq(r.dropped, 0);
}
END_TEST

START_TEST(test_reserve_rounds_length_to_8) {
  ss__ring r;
  size_t len;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  void *a = ss__ring_reserve(&r, 1);
  void *b = ss__ring_reserve(&r, 9);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  ck_assert_uint_eq((char *)b - (char *)a, 8 + 8);
  ck_assert_uint_eq(ss__ring_used(&r), 8 + 8 + 8 + 16);
  ss__ring_commit(&r, a);
  ss__ring_commit(&r, b);
  ck_assert_ptr_eq(ss__ring_peek(&r, &len), a);
  ck_assert_uint_eq(len, 8);
  ss__ring_release(&r);
  ck_assert_ptr_eq(ss__ring_peek(&r, &len), b);
  ck_assert_uint_eq(len, 16);
}
END_TEST

START_TEST(test_uncommitted_record_holds_back_later_ones) {
  ss__ring r;
  size_t len;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  void *a = ss__ring_reserve(&r, 16);
  void *b = ss__ring_reserve(&r, 16);
  memset(b, 'b', 16);
  ss__ring_commit(&r, b);
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
  memset(a, 'a', 16);
  ss__ring_commit(&r, a);
  ck_assert_ptr_eq(ss__ring_peek(&r, &len), a);
  ss__ring_release(&r);
  ck_assert_ptr_eq(ss__ring_peek(&r, &len), b);
  ck_assert_int_eq(((char *)b)[15], 'b');
  ss__ring_release(&r);
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
}
END_TEST

START_TEST(test_oversize_record_is_rejected_and_counted) {
  ss__ring r;
  static unsigned char big[8192];
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  ck_assert_ptr_null(ss__ring_reserve(&r, SS_RING_MAX_RECORD(r.cap) + 1));
  ck_assert_int_eq(ss__ring_put(&r, big, sizeof(big)), -1);
  ck_assert_ptr_null(ss__ring_reserve(&r, (size_t)-1));
  ck_assert_uint_eq(r.dropped, 3);
  ck_assert_uint_eq(ss__ring_used(&r), 0);
  /* The largest allowed record fits. */
  ck_assert_int_eq(ss__ring_put(&r, big, SS_RING_MAX_RECORD(r.cap)), 0);
}
END_TEST

START_TEST(test_full_ring_drops_and_counts_without_corruption) {
  ss__ring r;
  unsigned char buf[128];
  size_t len;
  uint64_t ok = 0, dropped = 0;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  for (uint64_t i = 0; i < 200; i++) {
    make_rec(buf, 100, 1, i);
    if (ss__ring_put(&r, buf, 100) == 0)
      ok++;
    else
      dropped++;
  }
  ck_assert_uint_eq(ok, 4096 / (8 + 104));
  ck_assert_uint_eq(r.dropped, dropped);
  ck_assert_uint_eq(r.committed, ok);
  ck_assert_uint_le(ss__ring_used(&r), 4096);
  for (uint64_t i = 0; i < ok; i++) {
    void *p = ss__ring_peek(&r, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert(rec_ok(p, len));
    ck_assert_uint_eq(((trec *)p)->seq, i);
    ss__ring_release(&r);
  }
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
  /* Room again after draining. */
  make_rec(buf, 100, 1, 999);
  ck_assert_int_eq(ss__ring_put(&r, buf, 100), 0);
  ck_assert(rec_ok(ss__ring_peek(&r, &len), len));
}
END_TEST

START_TEST(test_wraparound_with_variable_sizes_many_laps) {
  ss__ring r;
  unsigned char buf[1100];
  size_t len;
  uint64_t next_put = 0, next_get = 0, seed = 7;
  ck_assert_int_eq(ss__ring_init(&r, 4096), 0);
  /* Keep a varying backlog so padding lands at every offset over ~500 laps. */
  while (next_get < 100000) {
    int burst = (int)((seed = mix(seed)) % 6);
    for (int k = 0; k < burst; k++) {
      size_t n = sizeof(trec) + (size_t)((seed = mix(seed)) % (1024 - sizeof(trec)));
      make_rec(buf, n, 3, next_put);
      if (ss__ring_put(&r, buf, n) == 0)
        next_put++;
    }
    int take = (int)((seed = mix(seed)) % 5);
    for (int k = 0; k < take; k++) {
      void *p = ss__ring_peek(&r, &len);
      if (p == NULL) {
        ck_assert_uint_eq(next_get, next_put);
        break;
      }
      ck_assert(rec_ok(p, len));
      ck_assert_uint_eq(((trec *)p)->seq, next_get);
      next_get++;
      ss__ring_release(&r);
    }
  }
  ck_assert_uint_gt(atomic_load(&r.tail) >> r.cap_shift, 100);
  ck_assert_uint_eq(r.committed, next_put);
}
END_TEST

/* 20,000 records of 200 bytes through a 64 KiB ring whose consumer takes everything
 * after every per_look-th record; asserts many laps in order, that the records stayed in
 * the first quarter (and a bit) and that the rest of the buffer was never written. */
static void cycle_in_first_quarter(ss__ring *r, uint64_t per_look) {
  unsigned char buf[256];
  size_t len;
  uint64_t next_get = 0, highest = 0;
  ck_assert_int_eq(ss__ring_init(r, 65536), 0);
  for (uint64_t seq = 0; seq < 20000; seq++) {
    make_rec(buf, 200, 1, seq);
    void *p = ss__ring_reserve(r, 200);
    ck_assert_ptr_nonnull(p);
    memcpy(p, buf, 200);
    ss__ring_commit(r, p);
    uint64_t end = (uint64_t)((unsigned char *)p - r->buf) + 200;
    if (end > highest) highest = end;
    if (seq % per_look == per_look - 1)
      while ((p = ss__ring_peek(r, &len)) != NULL) {
        ck_assert(rec_ok(p, len));
        ck_assert_uint_eq(((trec *)p)->seq, next_get++);
        ss__ring_release(r);
      }
  }
  ck_assert_uint_gt(atomic_load(&r->tail) >> r->cap_shift, 10); /* many laps */
  ck_assert_uint_le(highest, r->cap / 4 + 256);
  for (size_t i = r->cap / 4 + 256; i < r->cap; i++) /* never written */
    ck_assert_uint_eq(r->buf[i], 0);
}

/* A consumer that keeps up: the producer starts each lap early, so the records stay in the
 * first part of the buffer and the rest is never written (not resident); a backlog that
 * grows still gets the whole capacity. */
START_TEST(test_small_backlog_stays_in_the_first_part_of_the_buffer) {
  ss__ring r;
  cycle_in_first_quarter(&r, 4); /* a backlog of up to 4 records */
  /* A backlog of most of the capacity still fits. */
  uint64_t n = 0;
  while (ss__ring_reserve(&r, 200) != NULL && n < r.cap) {
    n++;
  }
  ck_assert_uint_ge(n * (200 + 8), r.cap - r.cap / 4 - 2 * 208);
}
END_TEST

/* A consumer that looks now and then (the exporter thread, every millisecond while spans
 * come fast) leaves a backlog of a few dozen records at each look: a backlog of up to half
 * the first quarter still starts the next lap there, so the pages after it stay unwritten
 * (the resident memory of a process making spans at full speed). */
START_TEST(test_backlog_of_a_consumer_that_looks_now_and_then_stays_in_the_first_quarter) {
  ss__ring r;
  cycle_in_first_quarter(&r, (65536 / 4) / 2 / 208 - 1); /* just under half the quarter */
}
END_TEST

/* ---- many producers, one consumer ---- */
#define NPROD 8
#define PER_PROD 200000

typedef struct prod_arg {
  ss__ring *r;
  uint32_t id;
  uint64_t ok, failed;
} prod_arg;

static _Atomic int producers_left;

static void *producer(void *arg) {
  prod_arg *a = arg;
  unsigned char buf[600];
  uint64_t seed = a->id + 1;

  for (uint64_t seq = 0; seq < PER_PROD; seq++) {
    seed = mix(seed);
    /* Mostly small records, sometimes large ones, like spans with and without SQL. */
    size_t n = sizeof(trec) + (seed % 16 == 0 ? seed % 560 : seed % 72);
    make_rec(buf, n, a->id, seq);
    if (seed % 2) {
      if (ss__ring_put(a->r, buf, n) == 0)
        a->ok++;
      else
        a->failed++;
    } else {
      void *p = ss__ring_reserve(a->r, n);
      if (p == NULL) {
        a->failed++;
        continue;
      }
      memcpy(p, buf, n);
      ss__ring_commit(a->r, p);
      a->ok++;
    }
  }
  atomic_fetch_sub(&producers_left, 1);
  return NULL;
}

typedef struct cons_arg {
  ss__ring *r;
  uint64_t got[NPROD];
  int64_t last[NPROD];
  int bad;
} cons_arg;

static void *consumer(void *arg) {
  cons_arg *c = arg;
  size_t len;

  for (int i = 0; i < NPROD; i++)
    c->last[i] = -1;
  for (;;) {
    int done = atomic_load(&producers_left) == 0;
    void *p = ss__ring_peek(c->r, &len);
    if (p == NULL) {
      if (done && ss__ring_peek(c->r, &len) == NULL)
        break;
      sched_yield();
      continue;
    }
    const trec *t = p;
    if (!rec_ok(p, len) || t->producer >= NPROD || (int64_t)t->seq <= c->last[t->producer]) {
      c->bad++;
    } else {
      c->last[t->producer] = (int64_t)t->seq;
      c->got[t->producer]++;
    }
    ss__ring_release(c->r);
  }
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

START_TEST(test_many_producers_one_consumer_lose_nothing_uncounted) {
  ss__ring r;
  pthread_t pt[NPROD], ct;
  prod_arg pa[NPROD];
  static cons_arg ca;
  uint64_t ok = 0, failed = 0;

  ck_assert_int_eq(ss__ring_init(&r, 1 << 18), 0);
  memset(&ca, 0, sizeof(ca));
  ca.r = &r;
  atomic_store(&producers_left, NPROD);
  double t0 = now_s();
  ck_assert_int_eq(pthread_create(&ct, NULL, consumer, &ca), 0);
  for (uint32_t i = 0; i < NPROD; i++) {
    pa[i] = (prod_arg){.r = &r, .id = i};
    ck_assert_int_eq(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
  }
  for (int i = 0; i < NPROD; i++)
    pthread_join(pt[i], NULL);
  double t1 = now_s();
  pthread_join(ct, NULL);
  for (int i = 0; i < NPROD; i++) {
    ck_assert_uint_eq(pa[i].ok + pa[i].failed, PER_PROD);
    ck_assert_uint_eq(ca.got[i], pa[i].ok);
    ok += pa[i].ok;
    failed += pa[i].failed;
  }
  ck_assert_int_eq(ca.bad, 0);
  ck_assert_uint_eq(r.committed, ok);
  ck_assert_uint_eq(r.dropped, failed);
  ck_assert_uint_eq(ok + failed, (uint64_t)NPROD * PER_PROD);
  ck_assert_uint_eq(ss__ring_used(&r), 0);
  fprintf(stderr, "ring: %d producers: %.2f M records/s offered, %.2f M/s committed, "
          "%.1f%% dropped\n", NPROD, NPROD * (double)PER_PROD / (t1 - t0) / 1e6,
          ok / (t1 - t0) / 1e6, 100.0 * failed / ((double)NPROD * PER_PROD));
}
END_TEST

/* ---- fork ---- */
typedef struct holder {
  ss__ring *r;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int reserved, go;
} holder;

static void *hold_reservation(void *arg) {
  holder *h = arg;
  unsigned char buf[64];
  void *p = ss__ring_reserve(h->r, 64);

  make_rec(buf, 64, 0, 0);
  memcpy(p, buf, 40); /* half written when the fork happens */
  pthread_mutex_lock(&h->mu);
  h->reserved = 1;
  pthread_cond_broadcast(&h->cv);
  while (!h->go)
    pthread_cond_wait(&h->cv, &h->mu);
  pthread_mutex_unlock(&h->mu);
  memcpy(p, buf, 64);
  ss__ring_commit(h->r, p);
  return NULL;
}

/* Runs in the child; returns an exit code naming the first failed check. */
static int child_checks(ss__ring *r) {
  unsigned char buf[600];
  size_t len;
  uint64_t seed = 1, put = 0, got = 0;

  ss__ring_reset_in_child(r);
  if (ss__ring_peek(r, &len) != NULL) return 10;
  if (ss__ring_used(r) != 0) return 11;
  if (r->dropped != 0 || r->committed != 0) return 12;
  /* Several laps over the parent's leftovers: none of it may resurface. */
  while (got < 20000) {
    size_t n = sizeof(trec) + (size_t)((seed = mix(seed)) % 500);
    make_rec(buf, n, 5, put);
    if (ss__ring_put(r, buf, n) == 0)
      put++;
    void *p;
    while ((p = ss__ring_peek(r, &len)) != NULL) {
      if (!rec_ok(p, len)) return 13;
      if (((trec *)p)->producer != 5 || ((trec *)p)->seq != got) return 14;
      got++;
      ss__ring_release(r);
    }
  }
  return r->committed == put ? 0 : 15;
}

START_TEST(test_reset_in_child_forgets_parent_records_and_reservations) {
  ss__ring r;
  holder h = {.r = &r, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  pthread_t th;
  unsigned char buf[64];
  size_t len;
  int status;

  ck_assert_int_eq(ss__ring_init(&r, 8192), 0);
  ck_assert_int_eq(pthread_create(&th, NULL, hold_reservation, &h), 0);
  pthread_mutex_lock(&h.mu);
  while (!h.reserved)
    pthread_cond_wait(&h.cv, &h.mu);
  pthread_mutex_unlock(&h.mu);
  for (uint64_t i = 1; i <= 20; i++) {
    make_rec(buf, 64, 0, i);
    ck_assert_int_eq(ss__ring_put(&r, buf, 64), 0);
  }
  ck_assert_ptr_null(ss__ring_peek(&r, &len)); /* held back by the reservation */

  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0)
    _exit(child_checks(&r));
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status));
  ck_assert_int_eq(WEXITSTATUS(status), 0);

  /* The parent is untouched: once the holder commits, all 21 records come out. */
  pthread_mutex_lock(&h.mu);
  h.go = 1;
  pthread_cond_broadcast(&h.cv);
  pthread_mutex_unlock(&h.mu);
  pthread_join(th, NULL);
  for (uint64_t i = 0; i <= 20; i++) {
    void *p = ss__ring_peek(&r, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert(rec_ok(p, len));
    ck_assert_uint_eq(((trec *)p)->seq, i);
    ss__ring_release(&r);
  }
  ck_assert_ptr_null(ss__ring_peek(&r, &len));
}
END_TEST

static Suite *ring_suite(void) {
  Suite *s = suite_create("ring");
  TCase *tc = tcase_create("single");
  tcase_add_test(tc, test_init_rounds_capacity_to_power_of_two);
  tcase_add_test(tc, test_empty_ring_peeks_nothing);
  tcase_add_test(tc, test_unmapped_ring_refuses_everything);
  tcase_add_test(tc, test_put_peek_release_keeps_order_and_content);
  tcase_add_test(tc, test_reserve_rounds_length_to_8);
  tcase_add_test(tc, test_uncommitted_record_holds_back_later_ones);
  tcase_add_test(tc, test_oversize_record_is_rejected_and_counted);
  tcase_add_test(tc, test_full_ring_drops_and_counts_without_corruption);
  tcase_add_test(tc, test_wraparound_with_variable_sizes_many_laps);
  tcase_add_test(tc, test_small_backlog_stays_in_the_first_part_of_the_buffer);
  tcase_add_test(tc, test_backlog_of_a_consumer_that_looks_now_and_then_stays_in_the_first_quarter);
  tcase_set_timeout(tc, 60);
  suite_add_tcase(s, tc);
  tc = tcase_create("concurrent");
  tcase_add_test(tc, test_many_producers_one_consumer_lose_nothing_uncounted);
  tcase_add_test(tc, test_reset_in_child_forgets_parent_records_and_reservations);
  tcase_set_timeout(tc, 600);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(ring_suite());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
