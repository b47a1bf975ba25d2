/* sys.h - the shim's own system calls, made without going through its own hooks.
 *
 * Inside libspanshim.so an ordinary call to socket(), connect(), close(), write() ... binds
 * to the shim's exported hook of that name (the library defines it with default
 * visibility), so the exporter, the log and symbolization would trace themselves, or loop
 * once read/write hooks parse HTTP. Every I/O call the runtime makes for itself goes
 * through this module instead: file-descriptor calls are made as raw system calls
 * (syscall(2): no interposition is possible), and the few libc functions that are not
 * system calls (getaddrinfo, pthread_create, sigaction) are taken from the next object
 * after this one in the lookup order (dlsym RTLD_NEXT), i.e. libc itself, the first time
 * they are needed.
 *
 * Conventions: each function returns what the libc function of the same name returns and
 * sets errno the same way (-1 and errno on failure). The fd calls are async-signal-safe
 * and usable in a fork child; ss__sys_getaddrinfo, ss__sys_pthread_create and
 * ss__sys_sigaction take the dynamic loader's lock the first time (not in a signal
 * handler); when libc has no such function they fail with ENOSYS (EAI_SYSTEM for
 * getaddrinfo). Thread-safe. Used by the tools too, where they are plain libc calls. */
#ifndef SS_SYS_H
#define SS_SYS_H

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

struct addrinfo;

/* The code a fork child runs in its fork handlers goes in one place, at the start of the
 * shim's code (the default link script puts .text.hot.* there): a fork child faults in
 * every 64 KiB window of code it runs (the kernel copies no page table of a file mapping
 * into it), and these functions are spread over every source file. */
#define SS_FORK_TEXT __attribute__((section(".text.hot.ss_fork"), noinline))

int ss__sys_socket(int domain, int type, int protocol);
int ss__sys_connect(int fd, const struct sockaddr *sa, socklen_t len);
int ss__sys_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int ss__sys_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int ss__sys_shutdown(int fd, int how);
int ss__sys_close(int fd);
ssize_t ss__sys_read(int fd, void *buf, size_t n);
struct pollfd;
/* poll(2), as ppoll with no signal mask change: the shim's own waits must not go through
 * its poll hook (hooks/http.c), which an app's event loop passes. */
int ss__sys_poll(struct pollfd *p, unsigned long n, int ms);
ssize_t ss__sys_write(int fd, const void *buf, size_t n);
ssize_t ss__sys_writev(int fd, const struct iovec *iov, int n);
ssize_t ss__sys_sendmsg(int fd, const struct msghdr *m, int flags);
ssize_t ss__sys_recv(int fd, void *buf, size_t n, int flags);
/* open(2) relative to the working directory (openat AT_FDCWD). */
int ss__sys_open(const char *path, int flags, mode_t mode);
/* fcntl(2) with an integer argument (F_DUPFD_CLOEXEC, F_GETFD, F_SETFD, F_GETFL...). */
int ss__sys_fcntl(int fd, int cmd, int arg);
/* lstat(2): the link itself when path names a symlink (fstatat AT_SYMLINK_NOFOLLOW). */
int ss__sys_lstat(const char *path, struct stat *st);
/* fstat(2) itself: glibc's fstat is fstatat(fd, "", AT_EMPTY_PATH), whose "" the kernel
 * reads from a page of libc's constants (a fault in a fork child that touched none). */
int ss__sys_fstat(int fd, struct stat *st);
/* getrandom(2) through syscall(), which the shim's other calls run anyway: libc's
 * getrandom is a page of its code of its own (a fault in a fork child's first id). */
ssize_t ss__sys_getrandom(void *buf, size_t n, unsigned flags);

int ss__sys_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res);
void ss__sys_freeaddrinfo(struct addrinfo *res);
/* Returns 0 or an error number, as pthread_create does; the new thread starts with no
 * inherited span context (the shim's pthread_create hook is not involved). */
int ss__sys_pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                           void *arg);
int ss__sys_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
/* Looks up now what ss__sys_pthread_create will call (takes the loader lock once): before
 * a fork, so no child looks it up itself, faulting in the loader's pages. */
void ss__sys_resolve_thread(void);

/* getpid(2), getppid(2) and geteuid(2) made inline, with no libc call: at process start
 * each such call faulted in a page of libc's code of its own. They never fail; they are
 * async-signal-safe and right in a vfork child (the kernel's answer, never a cache). */
static inline long ss__sys_call0(long nr) {
#if defined(__x86_64__)
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "0"(nr) : "rcx", "r11", "memory");
  return r;
#else
  return syscall(nr);
#endif
}
static inline pid_t ss__sys_getpid(void) {
  return (pid_t)ss__sys_call0(SYS_getpid);
}
static inline pid_t ss__sys_getppid(void) {
  return (pid_t)ss__sys_call0(SYS_getppid);
}
static inline uid_t ss__sys_geteuid(void) {
  return (uid_t)ss__sys_call0(SYS_geteuid);
}

/* In a fork child: makes m a fresh unlocked mutex (another parent thread may have held it
 * at the fork), writing it only when it is not one already, so the page it lives on is
 * not copied for nothing. Default-type mutexes only. */
void ss__mutex_reinit(pthread_mutex_t *m);

/* The path of this process's executable (/proc/self/exe's target), read once per image
 * and kept (a fork child runs the same file: it reads nothing); "" when /proc cannot say.
 * The kernel's " (deleted)" mark is kept. Thread-safe (pthread_once); not in a signal
 * handler before its first call. The string lives for the process. */
const char *ss__sys_exe_path(void);

#endif
