/* execer PORT exec|_exit|exit: UDP connect to 127.0.0.1:PORT, print pid=, then leave the
 * process image by execv("/bin/true"), _exit(0) or exit(0). Spans made before must still
 * be exported. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) perror("connect");
  printf("pid=%d\n", (int)getpid());
  fflush(stdout);
  if (!strcmp(argv[2], "exec")) {
    execl("/bin/true", "true", (char *)0);
    perror("execl");
    return 1;
  }
  if (!strcmp(argv[2], "_exit")) _exit(0);
  exit(0);
}
