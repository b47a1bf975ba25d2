/* rss N: N UDP connects to 127.0.0.1:9, a 200 ms pause (so an exporter has run), then
 * prints this process's VmRSS and VmHWM from /proc/self/status, in kB.
 * Prints: pid=P vmrss_kb=X vmhwm_kb=Y */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static long field(const char *name) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(name);
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, name, n) && line[n] == ':') v = atol(line + n + 1);
  if (f) fclose(f);
  return v;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 10000;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  for (long i = 0; i < n; i++) (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  usleep(200000);
  printf("pid=%d vmrss_kb=%ld vmhwm_kb=%ld\n", (int)getpid(), field("VmRSS"), field("VmHWM"));
  close(fd);
  return 0;
}
