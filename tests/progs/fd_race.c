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
 *   drain [wait|settle]  makes a UDP connect (a span), with `wait` waits (up to 20 s) until
 *                        an fd above 2 is listed in /proc/self/fd (the exporter's socket),
 *                        with `settle` 300 ms,
 *                        then closes every fd above 2 listed there, pass after pass, until
 *                        a pass lists none (at most 50 passes); counts passes and failed
 *                        closes.
 *   fill [MS]            a UDP connect (a span to deliver), a pause of MS ms (the exporter
 *                        posts meanwhile), then opens /dev/null until EMFILE; prints how
 *                        many and the first and last numbers.
 *   threads N CLOSED_PORT  4 threads open and close fds in a tight loop (files, UDP
 *                        sockets, pipes, eventfds, dups, socketpairs), each allocation
 *                        under the app's own lock, and check that every new fd is the
 *                        lowest number free in the app's view (the kernel's rule: with
 *                        every allocation of the process under one lock, only fds someone
 *                        else makes can move it); meanwhile 2 threads make N connects
 *                        each, by turns a refused TCP one (a failure: stack captured,
 *                        exception record) and a UDP one, their sockets taken under the
 *                        same lock.
 *                        Prints "wrong=K" (fds not at the lowest free number) and, on a
 *                        line of its own, how many fds were opened. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
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

static int drain(int wait, int settle) {
  int passes = 0, failed = 0, fds[4096];
  close(connect_to(SOCK_DGRAM, 9));
  for (int i = 0; wait && i < 400 && listed(fds, 4096) == 0; i++) usleep(50000);
  if (settle) usleep(300000); /* a preloaded exporter posts meanwhile */
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

/* ---- threads ---- */

#define VIEW 512 /* the app's fds stay far below: its view is fds 0..VIEW-1 */

static pthread_mutex_t app_lock = PTHREAD_MUTEX_INITIALIZER;
static char held[VIEW];            /* the app's open fds, under app_lock */
static long opened, wrong;         /* under app_lock */
static _Atomic int tracers_left;
static int closed_port_g, rounds_g;

/* The k lowest free numbers in the app's view. */
static void lowest(int *want, int k) {
  for (int i = 0, got = 0; i < VIEW && got < k; i++)
    if (!held[i]) want[got++] = i;
}

/* Under app_lock: the n fds just made must be want[0..n) (pipe and socketpair give the
 * lower first); records them either way. */
static void check(const int *fd, const int *want, int n) {
  for (int i = 0; i < n; i++) {
    if (fd[i] < 0) continue;
    opened++;
    if (fd[i] != want[i]) {
      if (wrong < 5) fprintf(stderr, "fd %d, the lowest free was %d\n", fd[i], want[i]);
      wrong++;
    }
    if (fd[i] < VIEW) held[fd[i]] = 1;
  }
}

static void app_close(int fd) {
  pthread_mutex_lock(&app_lock);
  close(fd);
  if (fd >= 0 && fd < VIEW) held[fd] = 0;
  pthread_mutex_unlock(&app_lock);
}

/* One allocation of kind op under app_lock; its fds go to mine[]. */
static int make(int op, int *mine, int n_mine) {
  int fd[2] = {-1, -1}, want[2], n = 1;
  pthread_mutex_lock(&app_lock);
  lowest(want, 2);
  switch (op) {
  case 0: fd[0] = open("/dev/null", O_RDONLY | O_CLOEXEC); break;
  case 1: fd[0] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0); break;
  case 2: n = 2; if (pipe2(fd, O_CLOEXEC) != 0) fd[0] = fd[1] = -1; break;
  case 3: fd[0] = eventfd(0, EFD_CLOEXEC); break;
  case 4: fd[0] = n_mine ? dup(mine[0]) : open("/dev/null", O_RDONLY); break;
  default: n = 2; if (socketpair(AF_UNIX, SOCK_STREAM, 0, fd) != 0) fd[0] = fd[1] = -1; break;
  }
  check(fd, want, n);
  pthread_mutex_unlock(&app_lock);
  for (int i = 0; i < n; i++)
    if (fd[i] >= 0) mine[n_mine++] = fd[i];
  return n_mine;
}

static void *app_thread(void *arg) {
  unsigned seed = (unsigned)(uintptr_t)arg;
  int mine[16], n = 0;
  while (atomic_load(&tracers_left) > 0) {
    n = make((int)(rand_r(&seed) % 6), mine, n);
    while (n > 6 || (n > 0 && rand_r(&seed) % 3 == 0)) {
      int k = (int)(rand_r(&seed) % (unsigned)n);
      app_close(mine[k]);
      mine[k] = mine[--n];
    }
  }
  while (n > 0) app_close(mine[--n]);
  return NULL;
}

/* A socket of the app's, made under its lock. */
static int app_socket(int type) {
  int fd, want;
  pthread_mutex_lock(&app_lock);
  lowest(&want, 1);
  fd = socket(AF_INET, type, 0);
  check(&fd, &want, 1);
  pthread_mutex_unlock(&app_lock);
  return fd;
}

static void *tracer_thread(void *arg) {
  (void)arg;
  for (int i = 0; i < rounds_g; i++) {
    int type = i % 2 ? SOCK_DGRAM : SOCK_STREAM;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)(i % 2 ? 9 : closed_port_g))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = app_socket(type);
    (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
    app_close(fd);
  }
  atomic_fetch_sub(&tracers_left, 1);
  return NULL;
}

static int threads(int rounds, int closed_port) {
  pthread_t app[4], tr[2];
  rounds_g = rounds;
  closed_port_g = closed_port;
  for (int i = 0; i < VIEW; i++) held[i] = fcntl(i, F_GETFD) >= 0;
  atomic_store(&tracers_left, 2);
  for (int i = 0; i < 2; i++) pthread_create(&tr[i], NULL, tracer_thread, NULL);
  for (int i = 0; i < 4; i++) pthread_create(&app[i], NULL, app_thread, (void *)(uintptr_t)(i + 1));
  for (int i = 0; i < 2; i++) pthread_join(tr[i], NULL);
  for (int i = 0; i < 4; i++) pthread_join(app[i], NULL);
  printf("wrong=%ld\n", wrong);
  printf("opened=%ld\n", opened);
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 4 && !strcmp(argv[1], "loop")) return loop(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 2 && !strcmp(argv[1], "drain"))
    return drain(argc > 2 && !strcmp(argv[2], "wait"), argc > 2 && !strcmp(argv[2], "settle"));
  if (argc >= 2 && !strcmp(argv[1], "fill")) return fill(argc > 2 ? atoi(argv[2]) : 0);
  if (argc >= 4 && !strcmp(argv[1], "threads")) return threads(atoi(argv[2]), atoi(argv[3]));
  return 2;
}
