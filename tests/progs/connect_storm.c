/* connect_storm THREADS PER_THREAD [refused|accept|udp]
 *
 * THREADS threads each make PER_THREAD connects to 127.0.0.1, then the program prints
 * its pid and how many spans it produced, and exits (the shim flushes at exit).
 *   refused  TCP connects to a bound but not listening port: ECONNREFUSED, fast.
 *            Produces exactly THREADS*PER_THREAD `connect` spans.
 *   accept   TCP connects to an in-process listener whose thread accept4()s and closes
 *            every connection: THREADS*PER_THREAD `connect` + as many `accept` spans.
 *   udp      UDP connects (one socket per thread, reconnected each time).
 * Output: pid=N / connects=N / accepts=N / produced=N / refused=N ok=N other=N */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in target;
static int mode; /* 0 refused, 1 accept, 2 udp */
static long per_thread;
static atomic_long n_ok, n_refused, n_other, n_accepted;
static int listen_fd = -1;
static long accepts_wanted;

static void *worker(void *arg) {
  (void)arg;
  int udp = -1;
  if (mode == 2) udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  for (long i = 0; i < per_thread; i++) {
    int fd = udp;
    if (mode != 2) fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      perror("socket");
      exit(1);
    }
    int r = connect(fd, (struct sockaddr *)&target, sizeof target);
    if (r == 0)
      atomic_fetch_add(&n_ok, 1);
    else if (errno == ECONNREFUSED)
      atomic_fetch_add(&n_refused, 1);
    else
      atomic_fetch_add(&n_other, 1);
    if (mode != 2) close(fd);
  }
  if (udp >= 0) close(udp);
  return NULL;
}

static void *acceptor(void *arg) {
  (void)arg;
  while (atomic_load(&n_accepted) < accepts_wanted) {
    int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      perror("accept4");
      exit(1);
    }
    atomic_fetch_add(&n_accepted, 1);
    close(c);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: connect_storm THREADS PER_THREAD [refused|accept|udp]\n");
    return 2;
  }
  int threads = atoi(argv[1]);
  per_thread = atol(argv[2]);
  const char *m = argc > 3 ? argv[3] : "refused";
  mode = !strcmp(m, "accept") ? 1 : !strcmp(m, "udp") ? 2 : 0;

  memset(&target, 0, sizeof target);
  target.sin_family = AF_INET;
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int holder = -1;
  pthread_t acc;
  if (mode == 2) {
    target.sin_port = htons(9);
  } else {
    /* Bound, not listening (refused), or listening (accept): either way the port is ours. */
    holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(holder, (struct sockaddr *)&target, sizeof target) < 0) {
      perror("bind");
      return 1;
    }
    socklen_t sl = sizeof target;
    getsockname(holder, (struct sockaddr *)&target, &sl);
    if (mode == 1) {
      if (listen(holder, 4096) < 0) {
        perror("listen");
        return 1;
      }
      listen_fd = holder;
      accepts_wanted = (long)threads * per_thread;
      pthread_create(&acc, NULL, acceptor, NULL);
    }
  }
  pthread_t *t = calloc(threads, sizeof *t);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, NULL);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  if (mode == 1) pthread_join(acc, NULL);
  if (holder >= 0) close(holder);
  long connects = (long)threads * per_thread;
  long accepts = atomic_load(&n_accepted);
  printf("pid=%d\nconnects=%ld\naccepts=%ld\nproduced=%ld\nrefused=%ld ok=%ld other=%ld\n",
         (int)getpid(), connects, accepts, connects + accepts, atomic_load(&n_refused),
         atomic_load(&n_ok), atomic_load(&n_other));
  free(t);
  return 0;
}
