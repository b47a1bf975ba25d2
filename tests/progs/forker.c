/* forker PARENT_PORT CHILD_PORT PARENT_PORT2: UDP connect to 127.0.0.1:PARENT_PORT, fork;
 * the child prints child_pid=, connects to CHILD_PORT and exits; the parent waits, prints
 * parent_pid=, connects to PARENT_PORT2 and exits with the child's status. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void udp_connect(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) perror("connect");
  close(fd);
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  udp_connect(atoi(argv[1]));
  fflush(stdout);
  pid_t p = fork();
  if (p < 0) {
    perror("fork");
    return 1;
  }
  if (p == 0) {
    printf("child_pid=%d\n", (int)getpid());
    fflush(stdout);
    udp_connect(atoi(argv[2]));
    exit(0);
  }
  int st = 0;
  waitpid(p, &st, 0);
  printf("parent_pid=%d\n", (int)getpid());
  udp_connect(atoi(argv[3]));
  return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
