/* paced N INTERVAL_US: N UDP connects to 127.0.0.1:9, one every INTERVAL_US, then prints
 * pid= and produced=N. For tests that change the collector while spans keep coming. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  long n = atol(argv[1]), us = atol(argv[2]);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  for (long i = 0; i < n; i++) {
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
      perror("connect");
      return 1;
    }
    usleep(us);
  }
  close(fd);
  printf("pid=%d\nproduced=%ld\n", (int)getpid(), n);
  return 0;
}
