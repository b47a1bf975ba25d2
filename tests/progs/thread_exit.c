/* thread_exit PORT N: the main thread makes N UDP connects to 127.0.0.1:PORT, then a
 * worker thread makes N more and calls _exit(9) while main sleeps. Prints pid= first. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in a;
static int n;

static void burst(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  for (int i = 0; i < n; i++) (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
}

static void *worker(void *arg) {
  (void)arg;
  burst();
  _exit(9);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  n = atoi(argv[2]);
  printf("pid=%d\n", (int)getpid());
  fflush(stdout);
  burst();
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  for (;;) pause();
}
