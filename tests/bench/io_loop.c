/* io_loop N MODE [thread]: N iterations of write(a, 64 bytes) + read(b, 64 bytes) on the calling
 * thread, timed around the loop only (after 1000 untimed warm-up iterations, which also
 * start the shim's exporter thread when it is loaded, and classify the fds).
 *   tcp         a connected TCP loopback pair made here (connect + accept: the shim's
 *               client and server HTTP candidates), binary non-HTTP payload; the writer is
 *               the connected end, the reader the accepted end
 *   socketpair  an AF_UNIX SOCK_STREAM socketpair (not seen created by the shim)
 *   pipe        a pipe
 *   file        an unlinked temp file: write, lseek back, read, lseek back (the two lseeks
 *               are in the timed loop but not in C, so per-call times are not comparable
 *               with the other modes; the with/without delta is)
 * With "thread", an idle second thread is started first: glibc then takes its
 * multi-threaded path in read/write (cancellation enable/disable around the syscall), as
 * it does in any process the shim is in (its exporter thread), so the shim's own cost can
 * be told from that of the process having threads.
 * Prints: pid=P n=N calls=C ns_per_call=X cpu_ns_per_call=Y threads=T, where C = 2N
 * reads+writes, Y is this thread's own CPU time per call (CLOCK_THREAD_CPUTIME_ID) and T
 * the process's threads at the end (the shim starts its exporter at its first span). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int tcp_pair(int *w, int *r) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) ||
      getsockname(ls, (struct sockaddr *)&a, &l))
    return -1;
  *w = socket(AF_INET, SOCK_STREAM, 0);
  if (*w < 0 || connect(*w, (struct sockaddr *)&a, sizeof a)) return -1;
  *r = accept(ls, NULL, NULL);
  int one = 1;
  setsockopt(*w, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  close(ls);
  return *r < 0 ? -1 : 0;
}

static void *idle(void *arg) {
  for (;;) pause();
  return arg;
}

int main(int argc, char **argv) {
  if (argc > 3 && !strcmp(argv[3], "thread")) {
    pthread_t t;
    if (pthread_create(&t, NULL, idle, NULL)) {
      perror("pthread_create");
      return 1;
    }
  }
  long n = argc > 1 ? atol(argv[1]) : 200000;
  const char *mode = argc > 2 ? argv[2] : "tcp";
  int w = -1, r = -1, file = 0;
  if (!strcmp(mode, "tcp")) {
    if (tcp_pair(&w, &r)) {
      perror("tcp pair");
      return 1;
    }
  } else if (!strcmp(mode, "socketpair")) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
      perror("socketpair");
      return 1;
    }
    w = sv[0];
    r = sv[1];
  } else if (!strcmp(mode, "pipe")) {
    int p[2];
    if (pipe(p)) {
      perror("pipe");
      return 1;
    }
    w = p[1];
    r = p[0];
  } else if (!strcmp(mode, "file")) {
    char path[] = "/tmp/ss-io-loop-XXXXXX";
    w = r = mkstemp(path);
    if (w < 0) {
      perror("mkstemp");
      return 1;
    }
    unlink(path);
    file = 1;
  } else {
    fprintf(stderr, "io_loop: mode tcp|socketpair|pipe|file\n");
    return 2;
  }
  /* Not an HTTP request line: a binary record header, as a database protocol sends. */
  char out[64], in[64];
  for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(i * 7 + 1);
  out[0] = 0x16;
  struct timespec a, b, ca, cb;
  for (long round = 0; round < 2; round++) {
    long k = round ? n : 1000;
    if (round) {
      usleep(20000);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
      clock_gettime(CLOCK_MONOTONIC, &a);
    }
    for (long i = 0; i < k; i++) {
      if (write(w, out, sizeof out) != (ssize_t)sizeof out) {
        perror("write");
        return 1;
      }
      if (file) lseek(r, 0, SEEK_SET);
      size_t got = 0;
      while (got < sizeof in) {
        ssize_t m = read(r, in + got, sizeof in - got);
        if (m <= 0) {
          perror("read");
          return 1;
        }
        got += (size_t)m;
      }
      if (file) lseek(w, 0, SEEK_SET);
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
  double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  double cpu = (cb.tv_sec - ca.tv_sec) * 1e9 + (cb.tv_nsec - ca.tv_nsec);
  int threads = 0;
  FILE *st = fopen("/proc/self/status", "r");
  char line[256];
  while (st && fgets(line, sizeof line, st))
    if (!strncmp(line, "Threads:", 8)) threads = atoi(line + 8);
  if (st) fclose(st);
  printf("pid=%d n=%ld calls=%ld ns_per_call=%.1f cpu_ns_per_call=%.1f threads=%d\n",
         (int)getpid(), n, 2 * n, ns / (2.0 * n), cpu / (2.0 * n), threads);
  return 0;
}
