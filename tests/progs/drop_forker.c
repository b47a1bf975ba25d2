/* drop_forker PORT KIDS [burst] [wait]
 *
 * Run as root: drops to nobody (setgroups, setgid, setuid 65534) (with `wait`: then says
 * "dropped" and waits for a line on stdin), then forks KIDS children, each of which
 * makes one connect to 127.0.0.1:PORT (a span) and exits at once (_exit 5); the parent
 * reaps each child as soon as it ends (with `burst`: forks them all, then reaps them
 * all). Then the parent makes one connect itself.
 * Output: uid=N kids=N reaped=N codes_ok=N */
#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct sockaddr_in target;

static void one_connect(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)connect(fd, (struct sockaddr *)&target, sizeof target);
  close(fd);
}

static int reap(int *ok) {
  int st;
  if (wait(&st) < 0) return 0;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 5) (*ok)++;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: drop_forker PORT KIDS [burst]\n");
    return 2;
  }
  int kids = atoi(argv[2]), burst = 0, wait_line = 0;
  for (int i = 3; i < argc; i++) {
    burst |= strcmp(argv[i], "burst") == 0;
    wait_line |= strcmp(argv[i], "wait") == 0;
  }
  target.sin_family = AF_INET;
  target.sin_port = htons((unsigned short)atoi(argv[1]));
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
    perror("drop");
    return 1;
  }
  if (wait_line) {
    char line[16];
    printf("dropped\n");
    fflush(stdout);
    if (fgets(line, sizeof line, stdin) == NULL) return 1;
  }
  int reaped = 0, ok = 0;
  for (int i = 0; i < kids; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      one_connect();
      _exit(5);
    }
    if (!burst) reaped += reap(&ok);
  }
  while (burst && reaped < kids) reaped += reap(&ok);
  one_connect();
  printf("uid=%d kids=%d reaped=%d codes_ok=%d\n", (int)getuid(), kids, reaped, ok);
  return 0;
}
