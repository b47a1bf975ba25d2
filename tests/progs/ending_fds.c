/* ending_fds MODE THREADS: a process that ends before it made any span, with THREADS (0
 * or 1) app threads opening and closing /dev/null in a loop meanwhile; each of those
 * checks that it gets the same (lowest free) fd number every time, and says so on stdout
 * when it does not ("shifted got=N want=M"). It closes with the raw system call, which
 * the shim's fd guards do not see: nothing of the shim holds it back. Prints "ready pid=N" first (flushed). MODE:
 *   _exit  _exit(3)
 *   exit   exit(3): atexit handlers, destructors and stdio's flush run after the shim's
 *   exec   execl("/bin/true"): the new image ends with status 0
 *   term   kill(getpid(), SIGTERM): dies of it (default action)
 *   int    raise(SIGINT)
 *   segv   a null pointer write in main
 *   abort  abort()
 *   setuid setuid(getuid()) (the shim says hello to the collector first), then _exit(3)
 * The loop has run at least 2,000 times before main ends the process. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic long rounds;

static void *opener(void *arg) {
  (void)arg;
  int want = open("/dev/null", O_RDONLY | O_CLOEXEC);
  close(want);
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd != want) {
      char msg[64];
      int n = snprintf(msg, sizeof msg, "shifted got=%d want=%d\n", fd, want);
      (void)!write(1, msg, (size_t)n);
    }
    if (fd >= 0) syscall(SYS_close, fd); /* raw: never waits for the shim's fd births */
    atomic_fetch_add(&rounds, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  const char *m = argv[1];
  printf("ready pid=%d\n", (int)getpid());
  fflush(stdout);
  if (atoi(argv[2]) > 0) {
    pthread_t t;
    pthread_create(&t, NULL, opener, NULL);
    while (atomic_load(&rounds) < 2000) sched_yield();
  }
  if (!strcmp(m, "_exit")) _exit(3);
  if (!strcmp(m, "exit")) exit(3);
  if (!strcmp(m, "exec")) execl("/bin/true", "true", (char *)NULL);
  if (!strcmp(m, "term")) kill(getpid(), SIGTERM);
  if (!strcmp(m, "int")) raise(SIGINT);
  if (!strcmp(m, "segv")) *(volatile int *)(uintptr_t)argc = 0; /* argc is 3: address 3 */
  if (!strcmp(m, "abort")) abort();
  if (!strcmp(m, "setuid")) {
    if (setuid(getuid()) != 0) return 1;
    _exit(3);
  }
  for (;;) pause(); /* a signal kills it */
}
