/* sigconnect N: the main thread makes N UDP connects while a 200 us interval timer's
 * SIGALRM handler makes one UDP connect (another socket, port 10) per signal, so spans
 * are made from a signal handler that interrupts a span in the making. Prints pid=,
 * main=N and handler=count. Exercises async-signal safety of the hot path. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static struct sockaddr_in dst9, dst10;
static int hfd;
static volatile sig_atomic_t handled;

static void on_alarm(int s) {
  (void)s;
  if (connect(hfd, (struct sockaddr *)&dst10, sizeof dst10) == 0) handled++;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000;
  dst9.sin_family = dst10.sin_family = AF_INET;
  dst9.sin_addr.s_addr = dst10.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  dst9.sin_port = htons(9);
  dst10.sin_port = htons(10);
  hfd = socket(AF_INET, SOCK_DGRAM, 0);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {.it_interval = {0, 200}, .it_value = {0, 200}};
  setitimer(ITIMER_REAL, &it, NULL);
  for (long i = 0; i < n; i++)
    if (connect(fd, (struct sockaddr *)&dst9, sizeof dst9) != 0) {
      perror("connect");
      return 1;
    }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  printf("pid=%d\nmain=%ld\nhandler=%d\n", (int)getpid(), n, (int)handled);
  return 0;
}
