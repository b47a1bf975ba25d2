/* sig_spans N PORT MODE [ARG...]: makes N UDP connects to 127.0.0.1:PORT (N spans to
 * deliver), prints "pid=P ready" (flushed), then does what MODE says:
 *   wait      reads stdin until EOF, then exits 0 (the test kills it meanwhile)
 *   handler   its own SIGTERM handler (sigaction) writes "handler" and _exit(7); then wait
 *   ignore    SIG_IGN for SIGTERM (signal()); then wait, and prints "survived" at EOF
 *   block     SIGTERM blocked (sigprocmask); then wait; at EOF prints "pending=0|1"
 *   raise SIG raise(SIG) (a number)
 *   pipe      writes to a pipe whose read end is closed (SIGPIPE, default action)
 *   busy      4 threads make spans forever (the test kills it mid-export)
 *   query     what sigaction/signal report, before and after the app sets its own
 *   exec      SIG_IGN for SIGPIPE and SIGHUP, a handler for SIGINT, SIGTERM left alone;
 *             then execs itself in mode "kernel" without LD_PRELOAD
 *   kernel    the kernel's own dispositions (raw rt_sigaction, past any interposer) */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2,
                           SIGALRM, SIGSEGV, SIGABRT, SIGXCPU, SIGPROF};
#define NSIGS (sizeof sigs / sizeof sigs[0])

static int port;

static void one_span(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  (void)!connect(fd, (struct sockaddr *)&a, sizeof a);
  close(fd);
}

static void wait_eof(void) {
  char buf[256];
  while (read(0, buf, sizeof buf) > 0) {
  }
}

static void on_term(int sig) {
  (void)sig;
  static const char msg[] = "handler\n";
  (void)!write(1, msg, sizeof msg - 1);
  _exit(7);
}

static void on_int(int sig) {
  (void)sig;
}

static const char *what(void (*h)(int)) {
  return h == SIG_DFL ? "dfl" : h == SIG_IGN ? "ign" : h == on_term ? "on_term"
                                                    : h == on_int ? "on_int" : "other";
}

static void print_app_view(const char *when) {
  for (size_t i = 0; i < NSIGS; i++) {
    struct sigaction old;
    memset(&old, 0xa5, sizeof old);
    if (sigaction(sigs[i], NULL, &old) != 0) {
      printf("%s %s=error\n", when, sigabbrev_np(sigs[i]));
      continue;
    }
    printf("%s %s=%s flags=%#x mask=%#lx\n", when, sigabbrev_np(sigs[i]), what(old.sa_handler),
           (unsigned)old.sa_flags, ((unsigned long *)&old.sa_mask)[0]);
  }
}

struct ksigaction {
  void *handler;
  unsigned long flags;
  void *restorer;
  unsigned long mask;
};

static void print_kernel_view(void) {
  for (size_t i = 0; i < NSIGS; i++) {
    struct ksigaction k;
    if (syscall(SYS_rt_sigaction, sigs[i], NULL, &k, 8) != 0) {
      printf("kernel %s=error\n", sigabbrev_np(sigs[i]));
      continue;
    }
    const char *h = k.handler == (void *)SIG_DFL ? "dfl" : k.handler == (void *)SIG_IGN ? "ign"
                                                                                     : "handler";
    printf("kernel %s=%s\n", sigabbrev_np(sigs[i]), h);
  }
}

static void *spin(void *arg) {
  (void)arg;
  for (;;) one_span();
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  int n = atoi(argv[1]);
  port = atoi(argv[2]);
  const char *m = argv[3];
  if (!strcmp(m, "kernel")) {
    print_kernel_view();
    return 0;
  }
  for (int i = 0; i < n; i++) one_span();
  if (!strcmp(m, "handler")) {
    struct sigaction sa = {.sa_handler = on_term};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
  } else if (!strcmp(m, "ignore")) {
    signal(SIGTERM, SIG_IGN);
  } else if (!strcmp(m, "block")) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGTERM);
    sigprocmask(SIG_BLOCK, &s, NULL);
  }
  printf("pid=%d ready\n", (int)getpid());
  fflush(stdout);
  if (!strcmp(m, "raise")) {
    raise(argc > 4 ? atoi(argv[4]) : SIGTERM);
    printf("still here\n");
    return 0;
  }
  if (!strcmp(m, "pipe")) {
    int p[2];
    if (pipe(p) != 0) return 3;
    close(p[0]);
    (void)!write(p[1], "x", 1);
    printf("still here\n");
    return 0;
  }
  if (!strcmp(m, "busy")) {
    pthread_t t;
    for (int i = 0; i < 4; i++) pthread_create(&t, NULL, spin, NULL);
    wait_eof();
    return 0;
  }
  if (!strcmp(m, "query")) {
    print_app_view("start");
    struct sigaction sa = {.sa_handler = on_term, .sa_flags = SA_RESTART | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    struct sigaction old;
    sigaction(SIGTERM, &sa, &old);
    printf("old SIGTERM=%s\n", what(old.sa_handler));
    printf("signal SIGINT old=%s\n", what(signal(SIGINT, on_int)));
    printf("signal SIGPIPE old=%s\n", what(signal(SIGPIPE, SIG_IGN)));
    struct sigaction dfl = {.sa_handler = SIG_DFL, .sa_flags = SA_RESTART};
    sigemptyset(&dfl.sa_mask);
    sigaddset(&dfl.sa_mask, SIGUSR2);
    sigaction(SIGHUP, &dfl, &old);
    printf("old SIGHUP=%s\n", what(old.sa_handler));
    print_app_view("set");
    printf("signal SIGINT back old=%s\n", what(signal(SIGINT, SIG_DFL)));
    printf("signal SIGPIPE back old=%s\n", what(signal(SIGPIPE, SIG_DFL)));
    sigaction(SIGTERM, &dfl, &old);
    printf("old SIGTERM=%s\n", what(old.sa_handler));
    print_app_view("back");
    printf("SIGKILL rc=%d\n", sigaction(SIGKILL, &dfl, NULL));
    return 0;
  }
  if (!strcmp(m, "exec")) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, on_int);
    extern char **environ;
    char *env[256];
    int k = 0;
    for (char **e = environ; *e && k < 255; e++)
      if (strncmp(*e, "LD_PRELOAD=", 11) != 0) env[k++] = *e;
    env[k] = NULL;
    char *args[] = {argv[0], "0", "0", "kernel", NULL};
    fflush(stdout);
    execve("/proc/self/exe", args, env);
    return 4;
  }
  wait_eof();
  if (!strcmp(m, "block")) {
    sigset_t p;
    sigpending(&p);
    printf("pending=%d\n", sigismember(&p, SIGTERM));
  }
  printf("survived\n");
  return 0;
}
