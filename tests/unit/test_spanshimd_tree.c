/* spanshimd's traced tree (tree.c): /proc/PID/stat read past any process name, a peer of
 * another uid refused until its parent is remembered, then admitted as its descendant;
 * a full table sweeps the processes that ended, at most once a second, and counts what it
 * could not remember. */
#include <check.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tools/spanshimd/spanshimd.h"

START_TEST(test_tree_proc_stat_reads_past_a_name_with_parentheses_and_spaces) {
  int go[2];
  ck_assert_int_eq(pipe(go), 0);
  pid_t kid = fork();
  if (kid == 0) {
    prctl(PR_SET_NAME, "a) b (c 1 2");
    char c;
    close(go[1]);
    if (read(go[0], &c, 1) < 0) _exit(1);
    _exit(0);
  }
  close(go[0]);
  int ppid = 0;
  uint64_t start = 0, mine = 0;
  char comm[32] = "";
  for (int i = 0; i < 1000 && strcmp(comm, "a) b (c 1 2\n") != 0; i++) { /* its new name */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)kid);
    FILE *f = fopen(path, "r");
    if (f && !fgets(comm, sizeof comm, f)) comm[0] = '\0';
    if (f) fclose(f);
    usleep(1000);
  }
  ck_assert_str_eq(comm, "a) b (c 1 2\n");
  ck_assert_int_eq(ss__proc_stat(kid, &ppid, &start), 0);
  ck_assert_int_eq(ppid, getpid());
  ck_assert_int_eq(ss__proc_stat(getpid(), NULL, &mine), 0);
  ck_assert(start >= mine && mine > 0);
  close(go[1]);
  waitpid(kid, NULL, 0);
  ck_assert_int_eq(ss__proc_stat(kid, &ppid, &start), -1); /* gone */
}
END_TEST

/* A child that drops to nobody and connects to path once per byte read from go[0]. */
static pid_t nobody_connector(const char *path, const int go[2]) {
  pid_t kid = fork();
  if (kid != 0) return kid;
  close(go[1]);
  if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  char c;
  while (read(go[0], &c, 1) == 1) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) _exit(3);
    if (read(go[0], &c, 1) != 1) _exit(4); /* held until the parent has looked at it */
    close(fd);
  }
  _exit(0);
}

START_TEST(test_tree_another_uid_is_refused_until_its_parent_is_remembered) {
  if (geteuid() != 0) {
    fprintf(stderr, "SKIP test_tree_another_uid_...: needs root to become nobody\n");
    return;
  }
  char dir[] = "/tmp/ss-tree-XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  ck_assert_int_eq(chmod(dir, 0711), 0);
  snprintf(path, sizeof path, "%s/s", dir);
  int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  ck_assert_int_eq(chmod(path, 0666), 0);
  ck_assert_int_eq(listen(lfd, 4), 0);
  int go[2];
  ck_assert_int_eq(pipe(go), 0);
  pid_t kid = nobody_connector(path, go);
  close(go[0]);
  ss__opts o;
  memset(&o, 0, sizeof o);
  ss__proc_id id;

  ck_assert_int_eq(write(go[1], "c", 1), 1); /* connect */
  int fd = accept(lfd, NULL, NULL);
  ck_assert_int_ge(fd, 0);
  const char *why;
  ck_assert_int_eq(ss__peer_admit(&o, fd, &id, &why), 0); /* nobody, and no one remembered */
  ck_assert_str_eq(why, "not an allowed user, nor of the traced tree");
  close(fd);
  ck_assert_int_eq(write(go[1], "r", 1), 1);         /* release */

  ss__proc_id me = {.pid = getpid()};
  ck_assert_int_eq(ss__proc_stat(me.pid, NULL, &me.start), 0);
  ss__tree_remember(&me); /* as if we had sent spans as root */
  ck_assert_int_eq(write(go[1], "c", 1), 1);
  fd = accept(lfd, NULL, NULL);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(ss__peer_admit(&o, fd, &id, &why), 2); /* our child: the traced tree */
  ck_assert_int_eq(id.pid, kid);
  ck_assert_uint_eq(ss__stats_g.tree_admitted, 1);
  ck_assert_uint_eq(ss__stats_g.tree_processes, 2); /* it is remembered too */
  close(fd);
  ck_assert_int_eq(write(go[1], "r", 1), 1);
  close(go[1]); /* the child ends */
  int status;
  waitpid(kid, &status, 0);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(lfd);
  unlink(path);
  rmdir(dir);
}
END_TEST

static uint64_t fake_ms = 1000000;
static uint64_t fake_clock(void) { return fake_ms; }

START_TEST(test_tree_a_full_table_forgets_the_ended_once_a_second_and_counts_the_rest) {
  /* pids over the kernel's limit (2^22) name no process: "ended" for the sweep. (Counts
   * are taken from where the table is: with CK_FORK=no the tests before left some.) The
   * clock is the test's: under valgrind or a loaded machine a real second may pass. */
  ss__tree_clock(fake_clock);
  fake_ms += 5000; /* a second and more since any sweep an earlier test made */
  uint64_t full0 = ss__stats_g.tree_full;
  for (int i = 0; ss__stats_g.tree_processes < 4096; i++) {
    ss__proc_id gone = {.pid = (1 << 22) + 1 + i, .start = 7};
    ss__tree_remember(&gone);
  }
  ss__proc_id alive = {.pid = getppid()}; /* not in the table yet */
  ck_assert_int_eq(ss__proc_stat(alive.pid, NULL, &alive.start), 0);
  ss__tree_remember(&alive); /* full: the sweep forgets every ended one */
  ck_assert_uint_le(ss__stats_g.tree_processes, 2); /* it (and, CK_FORK=no, us) */
  ck_assert_uint_eq(ss__stats_g.tree_full, full0);
  for (int i = 0; ss__stats_g.tree_processes < 4096; i++) {
    ss__proc_id gone = {.pid = (1 << 22) + 10000 + i, .start = 7};
    ss__tree_remember(&gone);
  }
  ss__proc_id one_more = {.pid = (1 << 22) + 20000, .start = 7};
  fake_ms += 999;
  ss__tree_remember(&one_more); /* full again within the second: not swept, counted */
  ck_assert_uint_eq(ss__stats_g.tree_full, full0 + 1);
  ck_assert_uint_eq(ss__stats_g.tree_processes, 4096);
  fake_ms += 1;
  ss__tree_remember(&one_more); /* a second later: swept, and it fits */
  ck_assert_uint_eq(ss__stats_g.tree_full, full0 + 1);
  ck_assert_uint_le(ss__stats_g.tree_processes, 3);
  ss__tree_clock(NULL);
}
END_TEST

START_TEST(test_tree_token_is_32_hex_digits_and_only_it_is_taken) {
  ck_assert_int_eq(ss__tree_token_init(), 0);
  const char *t = ss__tree_token();
  ck_assert_ptr_nonnull(t);
  ck_assert_uint_eq(strlen(t), SS_TREE_TOKEN_LEN);
  ck_assert_uint_eq(strspn(t, "0123456789abcdef"), SS_TREE_TOKEN_LEN);
  char other[SS_TREE_TOKEN_LEN + 1];
  memcpy(other, t, sizeof other);
  ck_assert(ss__tree_token_ok(other, SS_TREE_TOKEN_LEN));
  ck_assert(!ss__tree_token_ok(other, SS_TREE_TOKEN_LEN - 1)); /* a prefix */
  ck_assert(!ss__tree_token_ok(NULL, 0));
  other[SS_TREE_TOKEN_LEN - 1] = other[SS_TREE_TOKEN_LEN - 1] == '0' ? '1' : '0';
  ck_assert(!ss__tree_token_ok(other, SS_TREE_TOKEN_LEN)); /* one digit off */
  char again[SS_TREE_TOKEN_LEN + 1];
  memcpy(again, t, sizeof again);
  ck_assert_int_eq(ss__tree_token_init(), 0); /* another start: another token */
  ck_assert_str_ne(again, ss__tree_token());
}
END_TEST

int main(void) {
  Suite *s = suite_create("spanshimd_tree");
  TCase *tc = tcase_create("tree");
  tcase_add_test(tc, test_tree_proc_stat_reads_past_a_name_with_parentheses_and_spaces);
  tcase_add_test(tc, test_tree_another_uid_is_refused_until_its_parent_is_remembered);
  tcase_add_test(tc, test_tree_a_full_table_forgets_the_ended_once_a_second_and_counts_the_rest);
  tcase_add_test(tc, test_tree_token_is_32_hex_digits_and_only_it_is_taken);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? 1 : 0;
}
