/* connect_loop N [udp|refused] [RATE]: N connects on the calling thread, timed with
 * clock_gettime(CLOCK_MONOTONIC) around the loop only (after 1000 untimed warm-up calls,
 * which also start the shim's exporter thread when it is loaded).
 *   udp      connect() one UDP socket to 127.0.0.1:9 again and again (no packets sent)
 *   refused  socket + TCP connect to a bound, not listening, 127.0.0.1 port + close
 *   RATE     connects per second (default 0: as fast as it goes); paced by sleeping until
 *            each block of 256 calls is due, so the loop neither spins nor bursts
 * Prints: pid=P n=N ns_per_op=X cpu_ns_per_op=Y, where Y is this thread's own CPU time
 * (CLOCK_THREAD_CPUTIME_ID): what the shim adds on the app thread, without the time the
 * exporter thread and the collector take from the app on a small machine. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in dst;

static void one_refused(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  (void)!connect(fd, (struct sockaddr *)&dst, sizeof dst);
  close(fd);
}

/* Sleeps until call i is due at `rate` calls per second after *start. */
static void pace(const struct timespec *start, long i, double rate) {
  double due = (double)start->tv_sec * 1e9 + start->tv_nsec + (double)i * 1e9 / rate;
  struct timespec t = {.tv_sec = (time_t)(due / 1e9)};
  t.tv_nsec = (long)(due - (double)t.tv_sec * 1e9);
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  int refused = argc > 2 && !strcmp(argv[2], "refused");
  double rate = argc > 3 ? atof(argv[3]) : 0;
  dst.sin_family = AF_INET;
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int holder = -1, udp = -1;
  if (refused) {
    holder = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t l = sizeof dst;
    if (bind(holder, (struct sockaddr *)&dst, sizeof dst) ||
        getsockname(holder, (struct sockaddr *)&dst, &l)) {
      perror("bind");
      return 1;
    }
  } else {
    dst.sin_port = htons(9);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  }
  for (int i = 0; i < 1000; i++) {
    if (refused)
      one_refused();
    else
      (void)!connect(udp, (struct sockaddr *)&dst, sizeof dst);
  }
  usleep(20000);
  struct timespec a, b, ca, cb;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
  clock_gettime(CLOCK_MONOTONIC, &a);
  if (refused) {
    for (long i = 0; i < n; i++) one_refused();
  } else {
    for (long i = 0; i < n; i++) {
      if (rate > 0 && (i & 255) == 0) pace(&a, i, rate);
      if (connect(udp, (struct sockaddr *)&dst, sizeof dst) != 0) {
        perror("connect");
        return 1;
      }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
  double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  double cpu = (cb.tv_sec - ca.tv_sec) * 1e9 + (cb.tv_nsec - ca.tv_nsec);
  printf("pid=%d n=%ld ns_per_op=%.1f cpu_ns_per_op=%.1f\n", (int)getpid(), n + 1000, ns / n,
         cpu / n);
  return 0;
}
