/* fd_chaos OUTDIR [SLEEP_MS]
 *
 * A program that is hostile to any library keeping an fd of its own, as daemons and
 * shells are: it closes every fd above 2 four ways (a close loop to 1024, close_range(3,
 * ~0U, 0), closefrom(3), and a close loop to the soft RLIMIT_NOFILE), then dup2()s its own
 * file onto every fd from 1000 to the soft limit - 1 (where the shim keeps its socket),
 * dup3()s it onto 999, and later dup2()s another file onto every fd from 3 to 899
 * (leaving 900..998 free for its sockets). Between
 * phases it makes UDP connects (spans) and sleeps SLEEP_MS (default 300) so an exporter
 * can send them. Then it writes its files through many of those fds.
 *
 * Files: OUTDIR/a.txt = "A line 0\n" .. "A line 99\n";
 *        OUTDIR/b.txt = "B line 0\n" .. "B line 99\n" then "B2 line 0\n" .. "B2 line 99\n".
 * Connect ports: 10001..10005 before the closing, 20001..20005 after the first dup2 round,
 * 30001..30005 after the second. Prints pid= and the counts of failed syscalls. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static int sleep_ms = 300;

static void connects(int base) {
  for (int i = 1; i <= 5; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(base + i)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      perror("udp connect");
      exit(1);
    }
    close(fd);
  }
  usleep(sleep_ms * 1000);
}

static void put(int fd, const char *fmt, int i) {
  char line[64];
  int n = snprintf(line, sizeof line, fmt, i);
  if (write(fd, line, n) != n) {
    perror("write");
    exit(1);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  if (argc > 2) sleep_ms = atoi(argv[2]);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  int lim = rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
  char pa[4096], pb[4096];
  snprintf(pa, sizeof pa, "%s/a.txt", argv[1]);
  snprintf(pb, sizeof pb, "%s/b.txt", argv[1]);
  printf("pid=%d\nnofile=%d\n", (int)getpid(), lim);
  fflush(stdout);

  connects(10000);

  /* Close everything, four ways. Nothing of ours is open any more, so every close fails
   * with EBADF: the counts must be the same with and without a preloaded library. */
  int ok = 0, ebadf = 0;
  for (int fd = 3; fd <= 1024; fd++)
    if (close(fd) == 0) ok++;
    else if (errno == EBADF) ebadf++;
  printf("close_low ok=%d ebadf=%d\n", ok, ebadf);
  errno = 0;
  int r = close_range(3, ~0U, 0);
  printf("close_range=%d errno=%s\n", r, r ? strerrorname_np(errno) : "0");
  closefrom(3);
  ok = ebadf = 0;
  for (int fd = 3; fd < lim; fd++)
    if (close(fd) == 0) ok++;
    else if (errno == EBADF) ebadf++;
  printf("close_all ok=%d ebadf=%d\n", ok, ebadf);

  /* Our file, everywhere up high. */
  int a = open(pa, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (a < 0) {
    perror(pa);
    return 1;
  }
  int dup_fail = 0;
  for (int fd = 1000; fd < lim; fd++)
    if (fd != a && dup2(a, fd) != fd) dup_fail++;
  if (dup3(a, 999, O_CLOEXEC) != 999) dup_fail++;
  printf("dup_fail=%d\n", dup_fail);
  /* Where the next fds land must not depend on a preloaded library either. */
  int probe = open("/dev/null", O_RDONLY);
  printf("next_fd=%d\n", probe);
  close(probe);

  connects(20000);

  const int afds[] = {a, 999, 1000, 1500, lim - 1, lim / 2};
  for (int i = 0; i < 100; i++) put(afds[i % 6], "A line %d\n", i);

  int b = open(pb, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (b < 0) {
    perror(pb);
    return 1;
  }
  for (int i = 0; i < 100; i++) put(b, "B line %d\n", i);
  /* Second round: b over every low fd that is not one of ours (the shim may have had to
   * put its socket down here, with everything above 999 taken). */
  dup_fail = 0;
  for (int fd = 3; fd < 900; fd++)
    if (fd != a && fd != b && dup2(b, fd) != fd) dup_fail++;
  printf("dup_fail2=%d\n", dup_fail);
  probe = open("/dev/null", O_RDONLY);
  printf("next_fd2=%d\n", probe);
  close(probe);

  connects(30000);

  const int bfds[] = {b, 3 == a || 3 == b ? 4 : 3, 500, 899};
  for (int i = 0; i < 100; i++) put(bfds[i % 4], "B2 line %d\n", i);
  printf("done\n");
  return 0;
}
