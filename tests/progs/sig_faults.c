/* sig_faults MODE [N]: signals an app handles or ignores (issue 13 item 2). Makes one UDP
 * connect to 127.0.0.1:9 first (a span to deliver), then:
 *   recover N   a SIGSEGV handler that siglongjmps back; N null-pointer faults recovered
 *               (and one SIGBUS-free SIGFPE recovery), prints "recovered=N" and exits 0
 *   ignore      SIGSEGV set to SIG_IGN with signal(), then a fault: the kernel kills it
 *               with SIGSEGV
 *   ignore_sa   the same with sigaction(), after a handler was set and a sent SIGSEGV
 *               (ignored) was raised
 *   fault       a fault and nothing else (the disposition is what it inherited)
 *   roundtrip   sets handlers with several flag sets and prints what sigaction(sig, NULL,
 *               &old) reports for each (handler identity, flags, mask, restorer identity)
 *   reset       a SA_RESETHAND handler that returns: the second fault kills (SIGSEGV);
 *               the query inside the handler is printed
 *   reraise     a handler that restores SIG_DFL and raise()s, as crash reporters do */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile sig_atomic_t handled;

static void on_fault(int sig) {
  (void)sig;
  handled++;
  siglongjmp(env, 1);
}

static void on_fault_info(int sig, siginfo_t *si, void *uc) {
  (void)si;
  (void)uc;
  on_fault(sig);
}

static void on_reset(int sig) {
  struct sigaction q;
  sigaction(sig, NULL, &q);
  printf("in handler: dfl=%d flags=%#x\n", q.sa_handler == SIG_DFL, (unsigned)q.sa_flags);
  fflush(stdout);
}

static void on_reraise(int sig) {
  static const char msg[] = "reporting\n";
  (void)!write(1, msg, sizeof msg - 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

/* Both the pointer and the target volatile: the compiler may not drop the store. */
static void fault(void) {
  volatile int *volatile p = NULL;
  *p = 1;
}

static void fpe(void) {
  volatile int num = 7, zero = 0, result;
  result = num / zero;
  (void)result;
}

static void udp_connect(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
}

static const char *who(void *h) {
  if (h == (void *)SIG_DFL) return "dfl";
  if (h == (void *)SIG_IGN) return "ign";
  if (h == (void *)on_fault) return "on_fault";
  if (h == (void *)on_fault_info) return "on_fault_info";
  return "other";
}

static void show(int sig) {
  struct sigaction q;
  memset(&q, 0x5a, sizeof q);
  if (sigaction(sig, NULL, &q) != 0) {
    perror("sigaction");
    return;
  }
  unsigned long mask = 0;
  for (int s = 1; s < 64; s++)
    if (sigismember(&q.sa_mask, s)) mask |= 1UL << s;
  /* The restorer is glibc's; only whether it is set and whether it is the same every
   * time is portable between runs. */
  static void (*first_restorer)(void);
  if (q.sa_restorer && !first_restorer) first_restorer = q.sa_restorer;
  printf("sig=%d handler=%s flags=%#x mask=%#lx restorer=%s\n", sig,
         who((void *)q.sa_handler), (unsigned)q.sa_flags, mask,
         q.sa_restorer == NULL ? "null" : q.sa_restorer == first_restorer ? "same" : "other");
}

static void roundtrip(void) {
  int sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGUSR1, SIGPIPE};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    int sig = sigs[i];
    show(sig);
    struct sigaction a = {.sa_handler = on_fault};
    sigemptyset(&a.sa_mask);
    sigaddset(&a.sa_mask, SIGUSR2);
    a.sa_flags = SA_RESTART;
    sigaction(sig, &a, NULL);
    show(sig);
    a.sa_sigaction = on_fault_info;
    a.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigaction(sig, &a, NULL);
    show(sig);
    a.sa_handler = SIG_IGN;
    a.sa_flags = 0;
    sigaction(sig, &a, NULL);
    show(sig);
    signal(sig, on_fault);
    show(sig);
    a.sa_handler = SIG_DFL;
    sigaction(sig, &a, NULL);
    show(sig);
    signal(sig, SIG_DFL);
    show(sig);
    /* libcurl's pattern around every transfer: save, ignore, put the saved one back. */
    for (int k = 0; k < 2; k++) {
      struct sigaction saved, ign;
      sigaction(sig, NULL, &saved);
      ign = saved;
      ign.sa_handler = SIG_IGN;
      sigaction(sig, &ign, NULL);
      show(sig);
      sigaction(sig, &saved, NULL);
      show(sig);
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  udp_connect();
  const char *m = argv[1];
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!strcmp(m, "recover")) {
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    struct sigaction a = {.sa_handler = on_fault};
    sigemptyset(&a.sa_mask);
    sigaction(SIGSEGV, &a, NULL);
    sigaction(SIGFPE, &a, NULL);
    for (int i = 0; i < n; i++)
      if (sigsetjmp(env, 1) == 0) fault();
    if (sigsetjmp(env, 1) == 0) fpe();
    udp_connect();
    printf("recovered=%d\n", (int)handled);
    return 0;
  }
  if (!strcmp(m, "ignore")) {
    signal(SIGSEGV, SIG_IGN);
    printf("faulting\n");
    fault();
    printf("survived\n");
    return 0;
  }
  if (!strcmp(m, "ignore_sa")) {
    signal(SIGSEGV, on_fault);
    struct sigaction a = {.sa_handler = SIG_IGN};
    sigemptyset(&a.sa_mask);
    sigaction(SIGSEGV, &a, NULL);
    raise(SIGSEGV);
    printf("faulting\n");
    fault();
    printf("survived\n");
    return 0;
  }
  if (!strcmp(m, "fault")) {
    printf("faulting\n");
    fault();
    printf("survived\n");
    return 0;
  }
  if (!strcmp(m, "roundtrip")) {
    roundtrip();
    return 0;
  }
  if (!strcmp(m, "reset")) {
    struct sigaction a = {.sa_handler = on_reset, .sa_flags = SA_RESETHAND};
    sigemptyset(&a.sa_mask);
    sigaction(SIGSEGV, &a, NULL);
    raise(SIGSEGV);
    show(SIGSEGV);
    fault();
    printf("survived\n");
    return 0;
  }
  if (!strcmp(m, "reraise")) {
    signal(SIGSEGV, on_reraise);
    fault();
    printf("survived\n");
    return 0;
  }
  return 2;
}
