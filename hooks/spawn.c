/* spawn.c - starting programs: the exec family, posix_spawn(p), system, popen/pclose.
 *
 * Each passes the caller's context to the child as TRACEPARENT (and, after a change of
 * user, the collector's socket as SPANSHIM_ENDPOINT: hooks/carrier.h). exec
 * also ends this image's process span and flushes first (hooks/process.c), except in a
 * vfork child. system and popen take no envp, so they are carried out here with
 * posix_spawn, as glibc does, when there is a context to pass; otherwise the real ones
 * run. fclose of a stream popen opened here is its pclose, as in glibc. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hooks/carrier.h"
#include "hooks/hook.h"
#include "hooks/hooks.h"
#include "runtime/sys.h"

extern char **environ;

SS_REAL(execve)
SS_REAL(execvpe)
SS_REAL(fexecve)
/* Typed stand-ins for libc functions that are missing (see SS_REAL_OR). */
static int missing_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                         const posix_spawnattr_t *attr, char *const argv[], char *const envp[]) {
  (void)pid, (void)path, (void)fa, (void)attr, (void)argv, (void)envp;
  return ENOSYS;
}
static FILE *missing_popen(const char *cmd, const char *mode) {
  (void)cmd, (void)mode;
  errno = ENOSYS;
  return NULL;
}
SS_REAL_OR(posix_spawn, missing_spawn)
SS_REAL_OR(posix_spawnp, missing_spawn)
SS_REAL(system)
SS_REAL_OR(popen, missing_popen)
SS_REAL(pclose)

/* In a vfork child memory is shared with the parent: end nothing, flush nothing. */
static int vfork_child(void) {
  return ss__sys_getpid() != ss__pid;
}

/* The image is about to be replaced: end this process's span and deliver. */
static void before_exec(void) {
  if (!ss__tracing_on() || vfork_child()) return;
  int deliver;
  SS_SAVE_ERRNO(ss__socket_ending(); deliver = ss__process_exec());
  if (deliver) ss__exit_flush();
}

/* The exec family funnels into these two, called directly (never through the exported
 * names, which would bind back to the hooks through the PLT). */
static int do_execve(const char *path, char *const argv[], char *const envp[]) {
  before_exec();
  SS_WITH_CARRIED_ENV(envp, real_execve()(path, argv, e_), real_execve()(path, argv, envp));
}

static int do_execvpe(const char *file, char *const argv[], char *const envp[]) {
  before_exec();
  SS_WITH_CARRIED_ENV(envp, real_execvpe()(file, argv, e_), real_execvpe()(file, argv, envp));
}

SS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  return do_execve(path, argv, envp);
}

SS_EXPORT int execv(const char *path, char *const argv[]) {
  return do_execve(path, argv, environ);
}

SS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  return do_execvpe(file, argv, envp);
}

SS_EXPORT int execvp(const char *file, char *const argv[]) {
  return do_execvpe(file, argv, environ);
}

SS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
  before_exec();
  SS_WITH_CARRIED_ENV(envp, real_fexecve()(fd, argv, e_), real_fexecve()(fd, argv, envp));
}

/* The execl family is variadic: gather its arguments on the stack and use the above. */
#define MAX_LIST_ARGS 4096

static int count_args(const char *arg0, va_list ap) {
  int n = 1;
  if (arg0 == NULL) return 0;
  while (va_arg(ap, const char *) != NULL)
    if (++n > MAX_LIST_ARGS) return -1;
  return n;
}

#define GATHER_ARGS(arg0, argv, n, ap)                                  \
  do {                                                                  \
    (argv)[0] = (char *)(arg0);                                         \
    for (int i_ = 1; i_ <= (n); i_++) (argv)[i_] = va_arg((ap), char *); \
  } while (0)

#define EXECL_BODY(tail_stmt, call)            \
  va_list ap;                                  \
  va_start(ap, arg0);                          \
  int n = count_args(arg0, ap);                \
  va_end(ap);                                  \
  if (n < 0) {                                 \
    errno = E2BIG;                             \
    return -1;                                 \
  }                                            \
  char *argv[n + 1];                           \
  va_start(ap, arg0);                          \
  GATHER_ARGS(arg0, argv, n, ap);              \
  tail_stmt;                                   \
  va_end(ap);                                  \
  argv[n] = NULL;                              \
  return call

SS_EXPORT int execl(const char *path, const char *arg0, ...) {
  EXECL_BODY((void)0, do_execve(path, argv, environ));
}

SS_EXPORT int execlp(const char *file, const char *arg0, ...) {
  EXECL_BODY((void)0, do_execvpe(file, argv, environ));
}

SS_EXPORT int execle(const char *path, const char *arg0, ...) {
  char *const *envp;
  /* GATHER_ARGS consumed the list's NULL; the environment comes next. */
  EXECL_BODY(envp = va_arg(ap, char *const *), do_execve(path, argv, envp));
}

SS_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
                          const posix_spawnattr_t *attr, char *const argv[],
                          char *const envp[]) {
  SS_WITH_CARRIED_ENV(envp, real_posix_spawn()(pid, path, fa, attr, argv, e_),
                   real_posix_spawn()(pid, path, fa, attr, argv, envp));
}

SS_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[],
                           char *const envp[]) {
  SS_WITH_CARRIED_ENV(envp, real_posix_spawnp()(pid, file, fa, attr, argv, e_),
                   real_posix_spawnp()(pid, file, fa, attr, argv, envp));
}

/* ---- system ---- */

/* While any system() runs, SIGINT and SIGQUIT are ignored in the caller (POSIX); the
 * first caller saves the dispositions and the last restores them. sys_lock is a leaf
 * lock held only around those sigaction calls. */
/* Aligned 128, like popen_lock: first in .bss, on the page a fork child writes anyway
 * (see ss__cfg in shim/shim.c); its fork handler reads both. */
static pthread_mutex_t sys_lock __attribute__((aligned(128))) = PTHREAD_MUTEX_INITIALIZER;
static int sys_refs;
static struct sigaction sys_intr, sys_quit;

static void sys_enter(void) {
  struct sigaction ign = {.sa_handler = SIG_IGN};
  sigemptyset(&ign.sa_mask);
  pthread_mutex_lock(&sys_lock);
  if (sys_refs++ == 0) {
    ss__real_sigaction(SIGINT, &ign, &sys_intr);
    ss__real_sigaction(SIGQUIT, &ign, &sys_quit);
  }
  pthread_mutex_unlock(&sys_lock);
}

static void sys_leave(void) {
  pthread_mutex_lock(&sys_lock);
  if (--sys_refs == 0) {
    ss__real_sigaction(SIGINT, &sys_intr, NULL);
    ss__real_sigaction(SIGQUIT, &sys_quit, NULL);
  }
  pthread_mutex_unlock(&sys_lock);
}

static int run_shell(const char *cmd, char *const *envp) {
  sigset_t chld, omask, dflt;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sys_enter();
  sigprocmask(SIG_BLOCK, &chld, &omask);
  sigemptyset(&dflt);
  if (sys_intr.sa_handler != SIG_IGN) sigaddset(&dflt, SIGINT);
  if (sys_quit.sa_handler != SIG_IGN) sigaddset(&dflt, SIGQUIT);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &omask);
  posix_spawnattr_setsigdefault(&attr, &dflt);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  char *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
  pid_t pid;
  int status = -1, err = real_posix_spawn()(&pid, "/bin/sh", NULL, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  if (err == 0) {
    while (waitpid(pid, &status, 0) < 0)
      if (errno != EINTR) {
        status = -1;
        break;
      }
  } else {
    status = W_EXITCODE(127, 0); /* what glibc returns when the shell cannot start */
  }
  SS_SAVE_ERRNO({
    sigprocmask(SIG_SETMASK, &omask, NULL);
    sys_leave();
  });
  return status;
}

SS_EXPORT int system(const char *cmd) {
  ss__carrier c;
  if (!ss__carrier_want(&c)) return real_system()(cmd);
  char *env[ss__env_count(environ) + 3];
  /* system(NULL) asks whether a shell is there, by running one, as glibc does. */
  if (cmd == NULL) return run_shell("exit 0", ss__carrier_env(environ, env, &c)) == 0;
  return run_shell(cmd, ss__carrier_env(environ, env, &c));
}

/* ---- popen/pclose/fclose ---- */

/* Streams this file opened, so pclose (and fclose, which glibc makes the same call for a
 * popen stream) closes the stream, waits for its child and frees the entry. The table
 * starts static and grows on the heap (popen allocates its FILE there anyway), so any
 * number of streams is carried out here. popen_lock is a leaf lock; popen_open lets
 * every other fclose pass with one load. */
#define POPEN_FIRST 64
typedef struct popen_ent {
  FILE *f;
  pid_t pid;
} popen_ent;
static popen_ent popen_first[POPEN_FIRST];
static popen_ent *popens = popen_first;
static size_t popens_cap = POPEN_FIRST;
static _Atomic size_t popen_open;
static pthread_mutex_t popen_lock __attribute__((aligned(128))) = PTHREAD_MUTEX_INITIALIZER;

SS_REAL(fclose)

/* A free entry (the table grown when full), or NULL when memory ran out. */
static popen_ent *popen_slot(void) {
  for (size_t i = 0; i < popens_cap; i++)
    if (popens[i].f == NULL) return &popens[i];
  popen_ent *bigger = calloc(popens_cap * 2, sizeof *bigger);
  if (bigger == NULL) return NULL;
  memcpy(bigger, popens, popens_cap * sizeof *bigger);
  if (popens != popen_first) free(popens);
  popens = bigger;
  popens_cap *= 2;
  return &popens[popens_cap / 2];
}

static FILE *spawn_popen(const char *cmd, int reading, int cloexec, char *const *envp,
                         popen_ent *slot) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return NULL;
  int child = reading ? fds[1] : fds[0], mine = reading ? fds[0] : fds[1];
  int target = reading ? 1 : 0;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (child != target)
    posix_spawn_file_actions_adddup2(&fa, child, target);
  /* POSIX: the child must not hold streams of earlier popen calls. */
  for (size_t i = 0; i < popens_cap; i++)
    if (popens[i].f) posix_spawn_file_actions_addclose(&fa, fileno(popens[i].f));
  char *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
  pid_t pid;
  int err = real_posix_spawn()(&pid, "/bin/sh", &fa, NULL, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  ss__sys_close(child);
  if (err != 0) {
    ss__sys_close(mine);
    errno = err;
    return NULL;
  }
  if (!cloexec) fcntl(mine, F_SETFD, 0);
  FILE *f = fdopen(mine, reading ? "r" : "w");
  if (f == NULL) {
    int e = errno;
    ss__sys_close(mine);
    waitpid(pid, NULL, 0);
    errno = e;
    return NULL;
  }
  slot->f = f;
  slot->pid = pid;
  atomic_fetch_add(&popen_open, 1);
  return f;
}

SS_EXPORT FILE *popen(const char *cmd, const char *mode) {
  ss__carrier c;
  if (cmd == NULL || mode == NULL || (mode[0] != 'r' && mode[0] != 'w') || !ss__carrier_want(&c))
    return real_popen()(cmd, mode);
  int cloexec = strchr(mode, 'e') != NULL;
  pthread_mutex_lock(&popen_lock);
  popen_ent *slot = popen_slot();
  FILE *f;
  if (slot == NULL || fcntl(mode[0] == 'r' ? 1 : 0, F_GETFD) < 0) {
    /* Out of memory, or the target fd is closed (glibc's own handling of that case is
     * subtle): let glibc do it, uninjected. */
    pthread_mutex_unlock(&popen_lock);
    return real_popen()(cmd, mode);
  }
  {
    char *env[ss__env_count(environ) + 3];
    f = spawn_popen(cmd, mode[0] == 'r', cloexec, ss__carrier_env(environ, env, &c), slot);
  }
  pthread_mutex_unlock(&popen_lock);
  return f;
}

/* The child of a stream popen opened here, its entry freed; -1 when f is not one. */
static pid_t popen_take(FILE *f) {
  pid_t pid = -1;
  pthread_mutex_lock(&popen_lock);
  for (size_t i = 0; i < popens_cap && f; i++)
    if (popens[i].f == f) {
      pid = popens[i].pid;
      popens[i].f = NULL;
      atomic_fetch_sub(&popen_open, 1);
      break;
    }
  pthread_mutex_unlock(&popen_lock);
  return pid;
}

/* glibc's pclose: close the stream, then wait for the child; its wait status. */
static int close_popen(FILE *f, pid_t pid) {
  real_fclose()(f);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return status;
}

SS_EXPORT int pclose(FILE *f) {
  pid_t pid = popen_take(f);
  return pid < 0 ? real_pclose()(f) : close_popen(f, pid);
}

SS_EXPORT int fclose(FILE *f) {
  if (__builtin_expect(atomic_load_explicit(&popen_open, memory_order_relaxed) == 0, 1))
    return real_fclose()(f);
  pid_t pid = popen_take(f);
  return pid < 0 ? real_fclose()(f) : close_popen(f, pid);
}

SS_FORK_TEXT void ss__spawn_atfork_child(void) {
  /* Another thread may have held these at the fork; the table (the parent's children,
   * as glibc's own list) stays. */
  ss__mutex_reinit(&popen_lock);
  ss__mutex_reinit(&sys_lock);
}
