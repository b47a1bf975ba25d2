/* forkstorm CHILDREN: two threads make UDP connects non-stop (port 9) while the main
 * thread forks CHILDREN children one after another; child i makes 10 UDP connects to
 * port 30000+i and exits. Every child must finish within 10 s (a fork taken while the
 * shim's exporter holds a lock must not deadlock the child). Prints pid=, then
 * child=i:PID for each child, and threads=N (connects made by the threads). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;
static atomic_long made;

static void udp(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) perror("connect");
  close(fd);
}

static void *spin(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    udp(9);
    atomic_fetch_add(&made, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20;
  printf("pid=%d\n", (int)getpid());
  fflush(stdout);
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, spin, NULL);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    fflush(stdout); /* else each child flushes our buffered lines again at exit */
    pid_t p = fork();
    if (p == 0) {
      alarm(10);
      for (int k = 0; k < 10; k++) udp(30000 + i);
      exit(0);
    }
    int st = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
      pid_t w = waitpid(p, &st, WNOHANG);
      if (w == p) break;
      clock_gettime(CLOCK_MONOTONIC, &now);
      if (now.tv_sec - t0.tv_sec > 10) {
        kill(p, SIGKILL);
        waitpid(p, &st, 0);
        break;
      }
      usleep(1000);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      printf("child %d failed: status 0x%x\n", i, st);
      bad++;
    }
    printf("child=%d:%d\n", i, (int)p);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  printf("threads=%ld\n", atomic_load(&made));
  return bad ? 1 : 0;
}
