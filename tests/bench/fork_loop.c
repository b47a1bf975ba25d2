/* fork_loop N THREADS [connect|none]: a process with THREADS extra threads (blocked in a
 * condition wait, as a pool's idle workers are) forks N children one after another and
 * waits for each; a child makes one UDP connect to 127.0.0.1:9 (or nothing) and _exits.
 * The loop is run as is: preload it (or not) from outside.
 * Prints: n=N us_per_fork=X cpu_us_per_fork=C failures=F (C: CPU time of the loop and its
 * children, user + system, per fork). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stop;

static void *idle(void *arg) {
  (void)arg;
  pthread_mutex_lock(&m);
  while (!stop) pthread_cond_wait(&cv, &m);
  pthread_mutex_unlock(&m);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long n = atol(argv[1]);
  int threads = atoi(argv[2]);
  int do_connect = argc < 4 || strcmp(argv[3], "none") != 0;
  pthread_t t[64];
  if (threads > 64) threads = 64;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, idle, NULL);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  long fail = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < n; i++) {
    pid_t p = fork();
    if (p == 0) {
      if (do_connect) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) _exit(1);
        close(fd);
      }
      _exit(0);
    }
    int st;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail++;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double us = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3;
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  double cpu = 0;
  struct timeval *tv[4] = {&self.ru_utime, &self.ru_stime, &kids.ru_utime, &kids.ru_stime};
  for (int i = 0; i < 4; i++) cpu += tv[i]->tv_sec * 1e6 + tv[i]->tv_usec;
  printf("n=%ld us_per_fork=%.1f cpu_us_per_fork=%.1f failures=%ld\n", n, us / n, cpu / n, fail);
  pthread_mutex_lock(&m);
  stop = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&m);
  for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  return fail != 0;
}
