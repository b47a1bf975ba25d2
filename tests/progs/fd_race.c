/* fd_race MODE ...: the app's fds and bytes against a library that keeps fds of its own
 * (issue 13 item 3). Output is key=value counts that must be the same with and without a
 * preloaded library.
 *
 *   loop N CLOSED_PORT   N times: closefrom(3) or close_range(3, ~0U, 0) (alternately), a
 *                        socketpair (must be fds 3 and 4), a UDP connect (fd 5, a span),
 *                        a TCP connect to CLOSED_PORT refused (fd 5: a failed call, whose
 *                        stack is captured), then 64 bytes each way through the pair,
 *                        checked byte for byte, and nothing more readable. Counts EBADF
 *                        on the app's own fds and wrong or stray bytes; then, on a line
 *                        of its own, fds that were not at the expected number.
 *   drain [wait]         makes a UDP connect (a span), with `wait` waits (up to 20 s) until
 *                        an fd above 2 is listed in /proc/self/fd (the exporter's socket),
 *                        then closes every fd above 2 listed there, pass after pass, until
 *                        a pass lists none (at most 50 passes); counts passes and failed
 *                        closes.
 *   fill [MS]            a UDP connect (a span to deliver), a pause of MS ms (the exporter
 *                        posts meanwhile), then opens /dev/null until EMFILE; prints how
 *                        many and the first and last numbers. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int connect_to(int type, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, type, 0);
  if (fd >= 0) (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  return fd;
}

static int loop(int n, int closed_port) {
  int moved = 0, ebadf = 0, bad_bytes = 0, stray = 0;
  for (int i = 0; i < n; i++) {
    if (i % 2) closefrom(3);
    else close_range(3, ~0U, 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
      perror("socketpair");
      return 1;
    }
    if (sv[0] != 3 || sv[1] != 4) moved++;
    int u = connect_to(SOCK_DGRAM, 9);
    if (u != 5) moved++;
    close(u);
    int t = connect_to(SOCK_STREAM, closed_port);
    if (t != 5) moved++;
    close(t);
    for (int dir = 0; dir < 2; dir++) {
      char out[64], in[128];
      for (int k = 0; k < 64; k++) out[k] = (char)(i * 7 + k + dir);
      int w = sv[dir], r = sv[1 - dir];
      if (write(w, out, sizeof out) != (ssize_t)sizeof out && errno == EBADF) ebadf++;
      ssize_t got = 0;
      while (got < 64) {
        ssize_t k = read(r, in + got, 64 - (size_t)got);
        if (k <= 0) {
          if (k < 0 && errno == EBADF) ebadf++;
          break;
        }
        got += k;
      }
      if (got != 64 || memcmp(in, out, 64) != 0) bad_bytes++;
      if (recv(r, in, sizeof in, MSG_DONTWAIT) > 0) stray++;
    }
    if (close(sv[0]) != 0) ebadf++;
    if (close(sv[1]) != 0) ebadf++;
  }
  printf("iterations=%d ebadf=%d bad_bytes=%d stray=%d\n", n, ebadf, bad_bytes, stray);
  printf("moved=%d\n", moved);
  return 0;
}

/* The fds above 2 listed in /proc/self/fd (at most max). */
static int listed(int *fds, int max) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < max) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d)) fds[n++] = fd;
  }
  closedir(d);
  return n;
}

static int drain(int wait) {
  int passes = 0, failed = 0, fds[4096];
  close(connect_to(SOCK_DGRAM, 9));
  for (int i = 0; wait && i < 400 && listed(fds, 4096) == 0; i++) usleep(50000);
  for (; passes < 50; passes++) {
    int n = listed(fds, 4096);
    if (n < 0) return 1;
    if (n == 0) break;
    for (int i = 0; i < n; i++)
      if (close(fds[i]) != 0) failed++;
  }
  printf("passes=%d failed_closes=%d\n", passes, failed);
  return 0;
}

static int fill(int pause_ms) {
  close(connect_to(SOCK_DGRAM, 9));
  usleep((useconds_t)pause_ms * 1000);
  int first = -1, last = -1, count = 0, fd;
  while ((fd = open("/dev/null", O_RDONLY)) >= 0) {
    if (first < 0) first = fd;
    last = fd;
    count++;
  }
  printf("opened=%d first=%d last=%d errno=%s\n", count, first, last, strerrorname_np(errno));
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 4 && !strcmp(argv[1], "loop")) return loop(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 2 && !strcmp(argv[1], "drain")) return drain(argc > 2 && !strcmp(argv[2], "wait"));
  if (argc >= 2 && !strcmp(argv[1], "fill")) return fill(argc > 2 ? atoi(argv[2]) : 0);
  return 2;
}
