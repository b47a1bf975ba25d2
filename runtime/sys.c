/* sys.c - the shim's own system calls; see sys.h. */
#include "runtime/sys.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ss__sys_socket(int domain, int type, int protocol) {
  return (int)syscall(SYS_socket, domain, type, protocol);
}

int ss__sys_connect(int fd, const struct sockaddr *sa, socklen_t len) {
  return (int)syscall(SYS_connect, fd, sa, len);
}

int ss__sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  return (int)syscall(SYS_getsockopt, fd, level, name, val, len);
}

int ss__sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
  return (int)syscall(SYS_setsockopt, fd, level, name, val, len);
}

int ss__sys_shutdown(int fd, int how) {
  return (int)syscall(SYS_shutdown, fd, how);
}

int ss__sys_close(int fd) {
  return (int)syscall(SYS_close, fd);
}

ssize_t ss__sys_read(int fd, void *buf, size_t n) {
  return syscall(SYS_read, fd, buf, n);
}

int ss__sys_poll(struct pollfd *p, unsigned long n, int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000}, *t = ms < 0 ? NULL : &ts;
  return (int)syscall(SYS_ppoll, p, n, t, NULL, (size_t)8);
}

ssize_t ss__sys_write(int fd, const void *buf, size_t n) {
  return syscall(SYS_write, fd, buf, n);
}

ssize_t ss__sys_writev(int fd, const struct iovec *iov, int n) {
  return syscall(SYS_writev, fd, iov, n);
}

ssize_t ss__sys_sendmsg(int fd, const struct msghdr *m, int flags) {
  return syscall(SYS_sendmsg, fd, m, flags);
}

ssize_t ss__sys_recv(int fd, void *buf, size_t n, int flags) {
  return syscall(SYS_recvfrom, fd, buf, n, flags, NULL, NULL);
}

int ss__sys_open(const char *path, int flags, mode_t mode) {
  return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

int ss__sys_fcntl(int fd, int cmd, int arg) {
  return (int)syscall(SYS_fcntl, fd, cmd, arg);
}

/* libc's definition of `name`: the next one after this object. Cached by the caller. */
static void *next_def(void *_Atomic *cache, const char *name) {
  void *p = atomic_load_explicit(cache, memory_order_acquire);
  if (p == NULL) {
    p = dlsym(RTLD_NEXT, name);
    if (p != NULL) atomic_store_explicit(cache, p, memory_order_release);
  }
  return p;
}

#define NEXT(name) ((__typeof__(&name))next_def(&next_##name, #name))
static void *_Atomic next_getaddrinfo, *_Atomic next_freeaddrinfo, *_Atomic next_pthread_create,
    *_Atomic next_sigaction;

int ss__sys_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res) {
  __typeof__(&getaddrinfo) f = NEXT(getaddrinfo);
  if (f == NULL) {
    errno = ENOSYS;
    return EAI_SYSTEM;
  }
  return f(node, service, hints, res);
}

void ss__sys_freeaddrinfo(struct addrinfo *res) {
  __typeof__(&freeaddrinfo) f = NEXT(freeaddrinfo);
  if (f != NULL) f(res);
}

int ss__sys_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                           void *arg) {
  __typeof__(&pthread_create) f = NEXT(pthread_create);
  return f ? f(th, attr, fn, arg) : ENOSYS;
}

void ss__sys_resolve_thread(void) {
  (void)NEXT(pthread_create);
}

int ss__sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  __typeof__(&sigaction) f = NEXT(sigaction);
  if (f == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return f(sig, act, old);
}

int ss__sys_lstat(const char *path, struct stat *st) {
  return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

ssize_t ss__sys_getrandom(void *buf, size_t n, unsigned flags) {
  return syscall(SYS_getrandom, buf, n, flags);
}

int ss__sys_fstat(int fd, struct stat *st) {
  return (int)syscall(SYS_fstat, fd, st);
}

SS_FORK_TEXT void ss__mutex_reinit(pthread_mutex_t *m) {
  static const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  if (memcmp(m, &fresh, sizeof fresh) != 0) pthread_mutex_init(m, NULL);
}

static char exe_path[4096];
static pthread_once_t exe_once = PTHREAD_ONCE_INIT;

static void read_exe_path(void) {
  ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
  exe_path[n > 0 ? n : 0] = '\0';
}

const char *ss__sys_exe_path(void) {
  pthread_once(&exe_once, read_exe_path);
  return exe_path;
}
