/* process.c - processes: the process span, and the W3C context carried to children
 * through the environment (TRACEPARENT), per the OTel env-carrier spec.
 *
 * Process span (SPANSHIM_PROCESS_SPAN=1; on under `spanshim run`): starts in the
 * constructor as a child of TRACEPARENT, named after the executable, and becomes the
 * parent of every span in the process that has no other parent. It ends at exit (with
 * process.exit.code: exit(), return from main, _exit/_Exit), at a fatal signal (status
 * ERROR, error.type = the signal's name; see shim/signals.c), or when exec replaces the
 * image. A fork child continues under the context active at fork and has no process span
 * of its own; its exec'd image gets one.
 *
 * Propagation: every exec family call, posix_spawn(p), system and popen passes the
 * calling thread's current context as TRACEPARENT in the child's environment (replacing
 * an inherited one); TRACESTATE and BAGGAGE pass through as inherited. The parent's
 * environ is never modified: a new envp is built on the stack (no allocation, so this
 * is safe in a vfork child). system and popen take no envp, so they are carried out here
 * with posix_spawn, as glibc does, when there is a context to pass; otherwise the real
 * ones run. With OTEL_PROPAGATORS=none nothing is injected. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/sanitize.h"
#include "runtime/sys.h"
#include "shim/shim.h"

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
__attribute__((noreturn)) static void missing_exit(int status) {
  for (;;) syscall(SYS_exit_group, status);
}
SS_REAL_OR(posix_spawn, missing_spawn)
SS_REAL_OR(posix_spawnp, missing_spawn)
SS_REAL(system)
SS_REAL_OR(popen, missing_popen)
SS_REAL(pclose)
SS_REAL_OR(exit, missing_exit)

/* ---- the process span ---- */
#define PROC_REC_BYTES 12288
#define ARGS_BYTES 4096
#define MAX_ARGS 128

static uint64_t proc_rec[PROC_REC_BYTES / 8];
static _Atomic int proc_state; /* 0 none, 1 open, 2 ended */
static char proc_name[256];
static char proc_path[4096];
static char proc_args[ARGS_BYTES];
static _Atomic int exit_code = -1; /* known once exit/_exit/main's return says it */

static size_t collect_args(int argc, char **argv) {
  size_t used = 0;
  int secret = 0;
  for (int i = 0; i < argc && i < MAX_ARGS && argv && argv[i]; i++) {
    if (used + 2 > sizeof proc_args) break;
    used += ss__arg_redact(argv[i], &secret, proc_args + used, sizeof proc_args - used - 1);
    proc_args[used++] = '\0';
  }
  return used;
}

static void exe_names(void) {
  ssize_t n = readlink("/proc/self/exe", proc_path, sizeof proc_path - 1);
  if (n <= 0) n = 0;
  proc_path[n] = '\0';
  const char *base = strrchr(proc_path, '/');
  base = base ? base + 1 : (n ? proc_path : program_invocation_short_name);
  size_t len = strnlen(base, sizeof proc_name - 1);
  memcpy(proc_name, base, len);
  proc_name[len] = '\0';
}

void ss__process_start(int argc, char **argv) {
  if (!ss__cfg.process_span || !(ss__cfg.hooks & SS_HOOK_PROCESS)) return;
  exe_names();
  size_t args_len = collect_args(argc, argv);
  ss__sb b;
  if (!ss__span_start_at(&b, proc_name, SS_KIND_INTERNAL, NULL)) { /* no calling code */
    ss__span_pop(&b);
    return;
  }
  ss__span_int(&b, "process.pid", getpid());
  ss__span_int(&b, "process.parent_pid", getppid());
  ss__span_str(&b, "process.executable.name", proc_name, (size_t)-1);
  if (proc_path[0]) ss__span_str(&b, "process.executable.path", proc_path, (size_t)-1);
  if (args_len) ss__span_strarr(&b, "process.command_args", proc_args, args_len);
  ss__span_pop(&b);
  if (ss__span_park(&b, proc_rec, sizeof proc_rec) == 0) return;
  ss__ctx c = {.flags = b.s.flags, .valid = 1};
  memcpy(c.trace_id, b.s.trace_id, 16);
  memcpy(c.span_id, b.s.span_id, 8);
  ss__ctx_set_root(&c); /* every parentless span in this process nests under it */
  atomic_store(&proc_state, 1);
}

void ss__process_note_exit(int code) {
  atomic_store(&exit_code, code & 0xff);
}

void ss__process_end(int how, int value) {
  int open = 1;
  if (!atomic_compare_exchange_strong(&proc_state, &open, 2)) return;
  int status = SS_STATUS_UNSET;
  char buf[160];
  if (how == SS_PROC_EXIT && value >= 0) {
    ss__rec_add_int(proc_rec, sizeof proc_rec, "process.exit.code", value);
    if (value != 0) {
      int n = snprintf(buf, sizeof buf, "%d", value);
      ss__rec_add_str(proc_rec, sizeof proc_rec, "error.type", buf, (size_t)n);
      n = snprintf(buf, sizeof buf, "exit status %d", value);
      ss__rec_add_str(proc_rec, sizeof proc_rec, NULL, buf, (size_t)n);
      status = SS_STATUS_ERROR | SS_STATUS_NO_STACK; /* an exit status, not a failed call */
    }
  } else if (how == SS_PROC_SIGNAL) {
    /* Signal-safe: no stdio. "SIG" + abbreviation, and the static description. */
    const char *abbrev = sigabbrev_np(value), *descr = sigdescr_np(value);
    size_t n = 0;
    memcpy(buf, "SIG", 3);
    n = 3;
    if (abbrev) {
      size_t l = strnlen(abbrev, 32);
      memcpy(buf + n, abbrev, l);
      n += l;
    }
    ss__rec_add_str(proc_rec, sizeof proc_rec, "error.type", buf, n);
    if (descr) ss__rec_add_str(proc_rec, sizeof proc_rec, NULL, descr, strlen(descr));
    status = SS_STATUS_ERROR | SS_STATUS_IN_SIGNAL; /* the crashing thread's stack */
  }
  ss__rec_finish(proc_rec, ss__now_ns(), status);
}

void ss__process_atfork_child(void) {
  /* The parent's span is the parent's to end; the child continues under it. */
  atomic_store(&proc_state, 0);
  atomic_store(&exit_code, -1);
}

void ss__process_exiting(void) {
  ss__process_end(SS_PROC_EXIT, atomic_load(&exit_code));
}

/* ---- exit codes ---- */
SS_EXPORT void exit(int status) {
  ss__process_note_exit(status);
  real_exit()(status);
  __builtin_unreachable();
}

typedef int (*main_fn)(int, char **, char **);
static main_fn real_main;

static int main_wrapper(int argc, char **argv, char **envp) {
  int rc = real_main(argc, argv, envp);
  ss__process_note_exit(rc); /* __libc_start_main calls exit() internally */
  return rc;
}

typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void),
                        void (*)(void), void *);

SS_EXPORT int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
                                void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
  start_fn real = (start_fn)ss__dlsym_next("__libc_start_main");
  real_main = main;
  if (real == NULL) real_exit()(main_wrapper(argc, argv, environ)); /* not with glibc */
  return real(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}

/* ---- environment carrier ---- */
#define TP_VAR "TRACEPARENT="

typedef struct carrier {
  char tp[sizeof TP_VAR + SS_TRACEPARENT_LEN];
} carrier;

/* 1 when there is a context to pass on, formatted into *c. */
static int want_inject(carrier *c) {
  ss__ctx ctx;
  if (!ss__active(SS_HOOK_PROCESS) || !(ss__cfg.propagators & SS_PROP_TRACECONTEXT) ||
      !ss__ctx_current(&ctx))
    return 0;
  memcpy(c->tp, TP_VAR, sizeof TP_VAR - 1);
  ss__traceparent_format(&ctx, c->tp + sizeof TP_VAR - 1);
  return 1;
}

static size_t env_count(char *const *envp) {
  size_t n = 0;
  while (envp && envp[n]) n++;
  return n;
}

/* envp without TRACEPARENT, plus ours, into out (room for env_count(envp) + 2). */
static char **carry(char *const *envp, char **out, carrier *c) {
  size_t o = 0;
  for (size_t i = 0; envp && envp[i]; i++)
    if (strncmp(envp[i], TP_VAR, sizeof TP_VAR - 1) != 0) out[o++] = envp[i];
  out[o++] = c->tp;
  out[o] = NULL;
  return out;
}

/* In a vfork child memory is shared with the parent: end nothing, flush nothing. */
static int vfork_child(void) {
  return getpid() != ss__pid;
}

/* The image is about to be replaced: end this process's span and deliver. */
static void before_exec(void) {
  if (atomic_load(&ss__init_state) != SS_INIT_ON || vfork_child()) return;
  int saved = errno;
  ss__process_end(SS_PROC_EXEC, 0);
  errno = saved;
  ss__exit_flush();
}

#define WITH_CARRIED_ENV(envp, call_with_env, call_plain)         \
  do {                                                             \
    carrier c_;                                                    \
    if (want_inject(&c_)) {                                        \
      char *env_[env_count(envp) + 2];                             \
      char **e_ = carry((envp), env_, &c_);                        \
      return call_with_env;                                        \
    }                                                              \
    return call_plain;                                             \
  } while (0)

/* The exec family funnels into these two, called directly (never through the exported
 * names, which would bind back to the hooks through the PLT). */
static int do_execve(const char *path, char *const argv[], char *const envp[]) {
  before_exec();
  WITH_CARRIED_ENV(envp, real_execve()(path, argv, e_), real_execve()(path, argv, envp));
}

static int do_execvpe(const char *file, char *const argv[], char *const envp[]) {
  before_exec();
  WITH_CARRIED_ENV(envp, real_execvpe()(file, argv, e_), real_execvpe()(file, argv, envp));
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
  WITH_CARRIED_ENV(envp, real_fexecve()(fd, argv, e_), real_fexecve()(fd, argv, envp));
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
  WITH_CARRIED_ENV(envp, real_posix_spawn()(pid, path, fa, attr, argv, e_),
                   real_posix_spawn()(pid, path, fa, attr, argv, envp));
}

SS_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
                           const posix_spawnattr_t *attr, char *const argv[],
                           char *const envp[]) {
  WITH_CARRIED_ENV(envp, real_posix_spawnp()(pid, file, fa, attr, argv, e_),
                   real_posix_spawnp()(pid, file, fa, attr, argv, envp));
}

/* ---- system ---- */

/* While any system() runs, SIGINT and SIGQUIT are ignored in the caller (POSIX); the
 * first caller saves the dispositions and the last restores them. sys_lock is a leaf
 * lock held only around those sigaction calls. */
static pthread_mutex_t sys_lock = PTHREAD_MUTEX_INITIALIZER;
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
  int saved = errno;
  sigprocmask(SIG_SETMASK, &omask, NULL);
  sys_leave();
  errno = saved;
  return status;
}

SS_EXPORT int system(const char *cmd) {
  carrier c;
  if (!want_inject(&c)) return real_system()(cmd);
  char *env[env_count(environ) + 2];
  /* system(NULL) asks whether a shell is there, by running one, as glibc does. */
  if (cmd == NULL) return run_shell("exit 0", carry(environ, env, &c)) == 0;
  return run_shell(cmd, carry(environ, env, &c));
}

/* ---- popen/pclose ---- */

/* Streams this file opened, for pclose. popen_lock is a leaf lock. */
#define POPEN_MAX 64
static struct {
  FILE *f;
  pid_t pid;
} popens[POPEN_MAX];
static pthread_mutex_t popen_lock = PTHREAD_MUTEX_INITIALIZER;

static int popen_slot(void) {
  for (int i = 0; i < POPEN_MAX; i++)
    if (popens[i].f == NULL) return i;
  return -1;
}

static FILE *spawn_popen(const char *cmd, int reading, int cloexec, char *const *envp) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return NULL;
  int child = reading ? fds[1] : fds[0], mine = reading ? fds[0] : fds[1];
  int target = reading ? 1 : 0;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (child != target)
    posix_spawn_file_actions_adddup2(&fa, child, target);
  /* POSIX: the child must not hold streams of earlier popen calls. */
  for (int i = 0; i < POPEN_MAX; i++)
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
  int slot = popen_slot();
  popens[slot].f = f;
  popens[slot].pid = pid;
  return f;
}

SS_EXPORT FILE *popen(const char *cmd, const char *mode) {
  carrier c;
  if (cmd == NULL || mode == NULL || (mode[0] != 'r' && mode[0] != 'w') || !want_inject(&c))
    return real_popen()(cmd, mode);
  int cloexec = strchr(mode, 'e') != NULL;
  pthread_mutex_lock(&popen_lock);
  FILE *f;
  if (popen_slot() < 0 || fcntl(mode[0] == 'r' ? 1 : 0, F_GETFD) < 0) {
    /* Table full, or the target fd is closed (glibc's own handling of that case is
     * subtle): let glibc do it, uninjected. */
    pthread_mutex_unlock(&popen_lock);
    return real_popen()(cmd, mode);
  }
  {
    char *env[env_count(environ) + 2];
    f = spawn_popen(cmd, mode[0] == 'r', cloexec, carry(environ, env, &c));
  }
  pthread_mutex_unlock(&popen_lock);
  return f;
}

SS_EXPORT int pclose(FILE *f) {
  pid_t pid = -1;
  pthread_mutex_lock(&popen_lock);
  for (int i = 0; i < POPEN_MAX && f; i++)
    if (popens[i].f == f) {
      pid = popens[i].pid;
      popens[i].f = NULL;
    }
  pthread_mutex_unlock(&popen_lock);
  if (pid < 0) return real_pclose()(f);
  fclose(f);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return status;
}
