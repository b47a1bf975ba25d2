/* process.c - exec: the image is about to be replaced, so deliver what this process traced
 * first (bounded by SPANSHIM_EXIT_FLUSH_MS, as at exit). Nothing is traced or changed
 * here yet: the call and its arguments reach libc exactly as the app made them. Context
 * propagation into the new image and process spans build on these hooks.
 *
 * The execl family is variadic: its arguments are gathered into an array on the stack
 * (no allocation: this may run in a vfork child) and passed to the real execv family. */
#include <stdarg.h>
#include <unistd.h>

#include "shim/shim.h"

SS_REAL(execve)
SS_REAL(execv)
SS_REAL(execvp)
SS_REAL(execvpe)
SS_REAL(fexecve)

#define MAX_LIST_ARGS 4096

SS_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  ss__exit_flush();
  return real_execve()(path, argv, envp);
}

SS_EXPORT int execv(const char *path, char *const argv[]) {
  ss__exit_flush();
  return real_execv()(path, argv);
}

SS_EXPORT int execvp(const char *file, char *const argv[]) {
  ss__exit_flush();
  return real_execvp()(file, argv);
}

SS_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  ss__exit_flush();
  return real_execvpe()(file, argv, envp);
}

SS_EXPORT int fexecve(int fd, char *const argv[], char *const envp[]) {
  ss__exit_flush();
  return real_fexecve()(fd, argv, envp);
}

/* Counts the variadic list after arg0 up to its NULL; -1 when longer than we carry. */
static int count_args(const char *arg0, va_list ap) {
  int n = 1;
  if (arg0 == NULL) return 0;
  while (va_arg(ap, const char *) != NULL)
    if (++n > MAX_LIST_ARGS) return -1;
  return n;
}

#define GATHER_ARGS(arg0, argv, n, ap)                      \
  do {                                                      \
    (argv)[0] = (char *)(arg0);                             \
    for (int i_ = 1; i_ <= (n); i_++) (argv)[i_] = va_arg(ap, char *); \
  } while (0)

SS_EXPORT int execl(const char *path, const char *arg0, ...) {
  va_list ap;
  va_start(ap, arg0);
  int n = count_args(arg0, ap);
  va_end(ap);
  if (n < 0) { errno = E2BIG; return -1; }
  char *argv[n + 1];
  va_start(ap, arg0);
  GATHER_ARGS(arg0, argv, n, ap);
  va_end(ap);
  argv[n] = NULL;
  return execv(path, argv);
}

SS_EXPORT int execlp(const char *file, const char *arg0, ...) {
  va_list ap;
  va_start(ap, arg0);
  int n = count_args(arg0, ap);
  va_end(ap);
  if (n < 0) { errno = E2BIG; return -1; }
  char *argv[n + 1];
  va_start(ap, arg0);
  GATHER_ARGS(arg0, argv, n, ap);
  va_end(ap);
  argv[n] = NULL;
  return execvp(file, argv);
}

SS_EXPORT int execle(const char *path, const char *arg0, ...) {
  va_list ap;
  va_start(ap, arg0);
  int n = count_args(arg0, ap);
  va_end(ap);
  if (n < 0) { errno = E2BIG; return -1; }
  char *argv[n + 1];
  va_start(ap, arg0);
  GATHER_ARGS(arg0, argv, n, ap);
  (void)va_arg(ap, char *); /* the terminating NULL */
  char *const *envp = va_arg(ap, char *const *);
  va_end(ap);
  argv[n] = NULL;
  return execve(path, argv, envp);
}
