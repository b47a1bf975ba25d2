/* proc_crash MODE PORT: makes one UDP connect to 127.0.0.1:PORT (a span to deliver), then
 * dies as MODE says:
 *   segv      null pointer write (default action: killed by SIGSEGV)
 *   abort     abort()
 *   fpe       integer division by zero
 *   handler3  its own SIGSEGV handler (installed with sigaction) exits with status 3
 *   signal3   the same with signal()
 *   kill      raise(SIGSEGV) from the program (not a fault)
 * Prints "before" on stdout first (flushed), and "handler" from its handler. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_segv(int sig) {
  (void)sig;
  static const char msg[] = "handler\n";
  (void)!write(1, msg, sizeof msg - 1);
  _exit(3);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  printf("before\n");
  fflush(stdout);
  const char *m = argv[1];
  if (!strcmp(m, "handler3")) {
    struct sigaction sa = {.sa_handler = on_segv};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
  } else if (!strcmp(m, "signal3")) {
    signal(SIGSEGV, on_segv);
  }
  if (!strcmp(m, "abort")) abort();
  if (!strcmp(m, "kill")) raise(SIGSEGV);
  if (!strcmp(m, "fpe")) {
    /* Both operands volatile: gcc turns 1/x into a comparison that never traps. */
    volatile int num = 7, zero = 0, result;
    result = num / zero;
    (void)result;
  }
  volatile int *p = NULL;
  *p = 1;
  return 0;
}
