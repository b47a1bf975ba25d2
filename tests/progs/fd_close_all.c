/* fd_close_all MODE N [SEGVS]
 *
 * An app that takes every fd it did not open away, as daemons do, while it makes spans:
 * N refused TCP connects to 127.0.0.1:1, each followed (MODE loop) by close() of fds 3 to
 * 1023 or (MODE range) by a raw close_range(3, ~0U, 0) system call (no libc wrapper: the
 * shim cannot spare its fds). Then SEGVS recovered SIGSEGVs (sigsetjmp/siglongjmp) and,
 * for MODE proc, close() of every fd /proc/self/fd lists above 2, the soft RLIMIT_NOFILE
 * set to 10 and /dev/null opened until EMFILE (MODE exhaust: the same without the /proc
 * loop; MODE prochard: as proc with the hard limit 10 too). Prints "opened=K errno=E" for those and "pid=P"; exits 0. */
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

static void on_segv(int sig) {
  (void)sig;
  siglongjmp(jb, 1);
}

static void refused_connect(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  connect(s, (struct sockaddr *)&a, sizeof a);
  close(s);
}

static void close_listed(void) {
  int fds[4096], k = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL && k < 4096) {
    int f = atoi(e->d_name);
    if (f > 2 && f != dirfd(d)) fds[k++] = f;
  }
  if (d != NULL) closedir(d);
  for (int i = 0; i < k; i++) close(fds[i]);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *mode = argv[1];
  int n = atoi(argv[2]), segvs = argc > 3 ? atoi(argv[3]) : 0;
  for (int i = 0; i < n; i++) {
    refused_connect();
    if (strcmp(mode, "loop") == 0)
      for (int f = 3; f < 1024; f++) close(f);
    else if (strcmp(mode, "range") == 0)
      syscall(SYS_close_range, 3, ~0U, 0);
  }
  signal(SIGSEGV, on_segv);
  for (int i = 0; i < segvs; i++)
    if (!sigsetjmp(jb, 1)) *(volatile int *)(long)(argc - 4) = 1; /* NULL */
  int hard = strcmp(mode, "prochard") == 0;
  if (strcmp(mode, "proc") == 0 || strcmp(mode, "exhaust") == 0 || hard) {
    if (strcmp(mode, "exhaust") != 0) close_listed();
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = 10;
    if (hard) r.rlim_max = 10;
    setrlimit(RLIMIT_NOFILE, &r);
    int k = 0;
    while (open("/dev/null", O_RDONLY) >= 0) k++;
    printf("opened=%d errno=%d\n", k, errno);
  }
  printf("pid=%d\n", (int)getpid());
  return 0;
}
