/* fd_gauntlet MODE N SEGVS LIMIT
 *
 * One process doing, in turn, what daemons and hostile-but-legal programs do to their fds
 * (a tester's program, kept as it was written): a refused TCP connect to 127.0.0.1:1; a
 * connect and an accept with bad pointers (EFAULT) and a connect with a bad length
 * (EINVAL), around a loopback listener and a client connected to it; N rounds of a Unix
 * socketpair carrying 2 bytes, a refused connect, then fds 3 and up closed by MODE
 * (closefrom: closefrom(3); range: a raw close_range(3, ~0U, 0) system call; loop: close()
 * of 3..1023; none: nothing, the pairs pile up); three passes closing every fd
 * /proc/self/fd lists above 2; SEGVS SIGSEGVs recovered by a handler with siglongjmp;
 * then RLIMIT_NOFILE set to LIMIT (soft and hard; 0: left alone) and /dev/null opened
 * until it fails. Prints what each step saw (errno values, fd numbers, stray bytes,
 * counts); exits 3.
 *
 * Spans under the shim, process spans on: N + 1 refused connects, the listener's
 * connect, the EFAULT accept, the EINVAL connect and the process span: N + 5. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static sigjmp_buf jb;
static volatile sig_atomic_t faults;

static void on_segv(int sig) {
  (void)sig;
  faults++;
  siglongjmp(jb, 1);
}

static void refused_connect(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(s, (struct sockaddr *)&a, sizeof a);
  close(s);
}

static void bad_pointers(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  errno = 0;
  int r = connect(s, (struct sockaddr *)8, 16);
  printf("connect bad pointer r=%d errno=%d\n", r, errno);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(l, (struct sockaddr *)&a, sizeof a);
  listen(l, 1);
  socklen_t al = sizeof a;
  getsockname(l, (struct sockaddr *)&a, &al);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  connect(c, (struct sockaddr *)&a, sizeof a);
  errno = 0;
  r = accept(l, (struct sockaddr *)&a, (socklen_t *)8);
  printf("accept bad pointer r=%d errno=%d\n", r, errno);
  errno = 0;
  r = connect(s, (struct sockaddr *)&a, (socklen_t)-1);
  printf("connect bad length r=%d errno=%d\n", r, errno);
  close(s);
  close(l);
  close(c);
}

static void close_rest(const char *mode) {
  if (strcmp(mode, "closefrom") == 0)
    closefrom(3);
  else if (strcmp(mode, "range") == 0)
    syscall(SYS_close_range, 3, ~0U, 0);
  else if (strcmp(mode, "loop") == 0)
    for (int f = 3; f < 1024; f++) close(f);
}

static void close_listed(void) {
  int closed = 0;
  for (int pass = 0; pass < 3; pass++) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      int f = atoi(e->d_name);
      if (f <= 2 || f == dirfd(d)) continue;
      if (close(f) == 0) closed++;
      else printf("close %d errno=%d\n", f, errno);
    }
    if (d != NULL) closedir(d);
  }
  printf("closed listed %d\n", closed);
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  const char *mode = argv[1];
  int n = atoi(argv[2]), segvs = atoi(argv[3]), limit = atoi(argv[4]);
  printf("errno at main %d\n", errno);
  refused_connect();
  int fd = open("/dev/null", O_RDONLY);
  printf("first fd %d\n", fd);
  close(fd);
  bad_pointers();
  int bad = 0, stray = 0;
  for (int i = 0; i < n; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
      bad++;
      continue;
    }
    write(sv[0], "ab", 2);
    refused_connect();
    char b[64];
    ssize_t got = read(sv[1], b, sizeof b);
    if (got != 2 || memcmp(b, "ab", 2) != 0) stray++;
    close_rest(mode);
  }
  printf("socketpair failed %d stray %d\n", bad, stray);
  close_listed();
  struct sigaction sa = {.sa_handler = on_segv};
  sigaction(SIGSEGV, &sa, NULL);
  for (int i = 0; i < segvs; i++)
    if (!sigsetjmp(jb, 1)) *(volatile int *)(long)(argc - 5 + 8) = 1; /* address 8 */
  printf("recovered %d faults\n", (int)faults);
  struct sigaction old;
  sigaction(SIGSEGV, NULL, &old);
  printf("sa_flags %x\n", (unsigned)old.sa_flags);
  fd = open("/dev/null", O_RDONLY);
  printf("fd after %d\n", fd);
  if (limit > 0) {
    struct rlimit rl = {(rlim_t)limit, (rlim_t)limit};
    printf("setrlimit %d\n", setrlimit(RLIMIT_NOFILE, &rl));
    int k = 0;
    while (open("/dev/null", O_RDONLY) >= 0) k++;
    printf("opened up to the limit %d errno=%d\n", k, errno);
  }
  return 3;
}
