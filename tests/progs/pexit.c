/* pexit MODE PORT: one connect to 127.0.0.1:PORT (refused), printf("bye") with no newline
 * (left in stdio's buffer for exit to flush), an atexit handler that prints " atexit",
 * then the main thread calls pthread_exit(0).
 *   MODE main:   main is the last thread (glibc: exit(0) from its pthread_exit)
 *   MODE worker: a worker still runs; it connects again and returns last (glibc: exit(0)
 *                from the worker's end)
 * Without a tracer the process prints "bye atexit" and exits 0. Prints pid= first. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in a;

static void one_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
}

static void bye(void) {
  printf(" atexit");
}

static void *worker(void *arg) {
  (void)arg;
  struct timespec ts = {0, 50 * 1000000L};
  nanosleep(&ts, NULL); /* main is gone by now, most runs: either order ends the same */
  one_connect();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[2]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  printf("pid=%d\n", (int)getpid());
  fflush(stdout);
  atexit(bye);
  one_connect();
  printf("bye");
  if (strcmp(argv[1], "worker") == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0) return 3;
  }
  pthread_exit(0);
}
