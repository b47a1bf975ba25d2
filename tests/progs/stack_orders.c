/* stack_orders MODE PORT: failing calls from known application functions, for the
 * stack-trace suite. PORT is a closed TCP port on 127.0.0.1. Built with -g.
 *   one        load_orders() connects once (refused); prints line=N, the connect's line
 *   threads    8 threads each run load_orders() 50 times
 *   signal     the connect fails inside a SIGALRM handler (on_alarm)
 *   recurse    descend() recurses 10,000 deep, then load_orders() fails
 *   smallstack a thread with a 64 KiB stack runs load_orders()
 *   dns        resolve_orders() looks up a name that does not exist
 * Prints failed=N: the number of failed calls it made, and pid=PID. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;
static volatile int failed;

static int __attribute__((noinline)) load_orders(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int rc = connect(fd, (struct sockaddr *)&a, sizeof a); /* LOAD_ORDERS_CONNECT */
  close(fd);
  if (rc != 0) __atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
  return rc;
}

static int __attribute__((noinline)) resolve_orders(void) {
  struct addrinfo *res = NULL;
  int rc = getaddrinfo("orders.does-not-exist.invalid", "80", NULL, &res);
  if (rc == 0) freeaddrinfo(res);
  else __atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
  return rc;
}

static void *worker(void *arg) {
  (void)arg;
  for (int i = 0; i < 50; i++) load_orders();
  return NULL;
}

static void on_alarm(int sig) {
  (void)sig;
  load_orders();
}

static int __attribute__((noinline)) descend(int depth) {
  if (depth == 0) return load_orders();
  int rc = descend(depth - 1);
  return rc + (depth & 1) * 0; /* not a tail call */
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *mode = argv[1];
  port = atoi(argv[2]);
  if (!strcmp(mode, "one")) {
    load_orders();
  } else if (!strcmp(mode, "threads") || !strcmp(mode, "smallstack")) {
    int n = !strcmp(mode, "threads") ? 8 : 1;
    pthread_t t[8];
    pthread_attr_t at;
    pthread_attr_init(&at);
    if (n == 1) pthread_attr_setstacksize(&at, 64 * 1024);
    for (int i = 0; i < n; i++) pthread_create(&t[i], &at, worker, NULL);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  } else if (!strcmp(mode, "signal")) {
    signal(SIGALRM, on_alarm);
    alarm(1);
    pause();
  } else if (!strcmp(mode, "recurse")) {
    descend(10000);
  } else if (!strcmp(mode, "dns")) {
    resolve_orders();
  }
  printf("failed=%d pid=%d\n", failed, (int)getpid());
  return 0;
}
