/* simple PORT EXITCODE: prints a line on stdout and one on stderr, makes one UDP connect to
 * 127.0.0.1:PORT, prints its result, and exits with EXITCODE. For output pass-through and
 * configuration tests. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 9;
  int code = argc > 2 ? atoi(argv[2]) : 0;
  printf("hello from simple\n");
  fprintf(stderr, "simple: a line on stderr\n");
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  int r = connect(fd, (struct sockaddr *)&a, sizeof a);
  int e = errno;
  printf("pid=%d\nconnect=%d errno=%s\n", (int)getpid(), r, r ? strerrorname_np(e) : "0");
  close(fd);
  return code;
}
