/* ownfd.c - the shim's own fds, out of the app's way; see ownfd.h. */
#include "runtime/ownfd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/sys.h"

/* The calling thread has an fd table of its own (ss__own_go_private): its fds are made
 * where the kernel puts them, in that table, and registered nowhere. */
static __thread int private_table __attribute__((tls_model("initial-exec")));
/* That table is a copy of the app's (ss__own_go_private_copy): the app's fds, as they were
 * then, are there under their own numbers. */
static __thread int copied_table __attribute__((tls_model("initial-exec")));
/* A pidfd of this process in that table (for ss__own_borrow); -1 none. */
static __thread int self_pidfd __attribute__((tls_model("initial-exec")));

/* Registered fds, stored as fd + 1 (0: free slot). */
/* Aligned 64: with the config, the tracer and the transport on the first page of .bss
 * (see ss__cfg in shim/shim.c), which a fork child writes anyway; the fd guards read it
 * at every close, and a page of its own never touched would be a fault to read. */
static _Atomic int owned[SS_OWN_MAX] __attribute__((aligned(64)));
/* Dekker pair: a birth proceeds only with no app closer inside; an app closer waits out a
 * birth. Sequentially consistent atomics: each side increments its own count, then reads
 * the other's, so at least one of them sees the other. */
static _Atomic int births, closers;

static void wait_zero(_Atomic int *v) {
  for (int spins = 0; atomic_load(v) != 0; spins++) {
    if (spins < 64) __builtin_ia32_pause();
    else sched_yield();
  }
}

static void birth_begin(void) {
  for (;;) {
    atomic_fetch_add(&births, 1);
    if (atomic_load(&closers) == 0) return;
    atomic_fetch_sub(&births, 1); /* the app goes first */
    wait_zero(&closers);
  }
}

static void birth_end(void) {
  atomic_fetch_sub(&births, 1);
}

void ss__own_app_enter(void) {
  atomic_fetch_add(&closers, 1);
  wait_zero(&births);
}

void ss__own_app_leave(void) {
  atomic_fetch_sub(&closers, 1);
}

static int nofile(const struct rlimit *set, struct rlimit *old) {
  return (int)syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, set, old);
}

/* Above a soft limit up to this, fds go above it (the fd table grows to it: 32 KiB at
 * most); above a bigger one, from 1000 up. */
#define ABOVE_MAX 4096

/* Where fds go when they cannot go above the soft limit. */
static int in_range_base(rlim_t soft) {
  if (soft > 1024) return 1000;
  return soft >= 3 + SS_OWN_MAX ? (int)soft - SS_OWN_MAX : 3;
}

/* Raises the soft limit by SS_OWN_MAX for one system call: 0 with the limits before in
 * *before and the raised ones in *up, or -1 (EMFILE) when the hard limit leaves no room. */
static int room_begin(const struct rlimit *cur, struct rlimit *up, struct rlimit *before) {
  if (cur->rlim_max != RLIM_INFINITY && cur->rlim_max < cur->rlim_cur + SS_OWN_MAX) {
    errno = EMFILE;
    return -1;
  }
  *up = (struct rlimit){cur->rlim_cur + SS_OWN_MAX, cur->rlim_max};
  return nofile(up, before);
}

/* Puts the app's limit back; if the app set one meanwhile, that one stands. Keeps errno. */
static void room_end(const struct rlimit *up, const struct rlimit *before) {
  int err = errno;
  struct rlimit seen;
  if (nofile(before, &seen) == 0 &&
      (seen.rlim_cur != up->rlim_cur || seen.rlim_max != up->rlim_max))
    nofile(&seen, NULL);
  errno = err;
}

/* A copy of fd at or above the soft limit, raised for the duration of one fcntl; -1 when
 * the hard limit leaves no room. */
static int dup_above_limit(int fd, const struct rlimit *cur) {
  struct rlimit up, before;
  if (room_begin(cur, &up, &before) != 0) return -1;
  int hi = ss__sys_fcntl(fd, F_DUPFD_CLOEXEC, (int)before.rlim_cur);
  room_end(&up, &before);
  return hi;
}

/* An fd born with the app holding every number its soft limit allows (EMFILE: a daemon
 * that exhausted its fds, then exits and must deliver or log its last spans) is made
 * above that limit, raised for the one system call, when the hard limit leaves room. */
#define MADE_ABOVE_ON_EMFILE(fd, call)                                  \
  do {                                                                  \
    struct rlimit cur_, up_, before_;                                   \
    if ((fd) < 0 && errno == EMFILE && nofile(NULL, &cur_) == 0 &&      \
        room_begin(&cur_, &up_, &before_) == 0) {                       \
      (fd) = (call);                                                    \
      room_end(&up_, &before_);                                         \
    }                                                                   \
  } while (0)

/* A copy of fd out of the app's way (see ownfd.h), or -1 with errno; fd stays open. In
 * order: above a soft limit of ABOVE_MAX or less; from in_range_base up; above any soft limit
 * (the table grows to it: only when the app holds every number up there); with
 * allow_low, anywhere (a new fd: better a number the app is not using than no export; a
 * move asked for by the app's dup2 rather drops the connection, remade at the next
 * export). */
static int copy_high(int fd, int allow_low) {
  struct rlimit cur;
  if (nofile(NULL, &cur) != 0) {
    cur.rlim_cur = 1024;
    cur.rlim_max = 0;
  }
  int hi = -1;
  if (cur.rlim_cur <= ABOVE_MAX) hi = dup_above_limit(fd, &cur);
  if (hi < 0) hi = ss__sys_fcntl(fd, F_DUPFD_CLOEXEC, in_range_base(cur.rlim_cur));
  if (hi < 0 && cur.rlim_cur > ABOVE_MAX) hi = dup_above_limit(fd, &cur);
  if (hi < 0 && allow_low) hi = ss__sys_fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return hi;
}

static int reg(int fd) {
  for (int i = 0; i < SS_OWN_MAX; i++) {
    int empty = 0;
    if (atomic_compare_exchange_strong(&owned[i], &empty, fd + 1)) return 0;
  }
  return -1;
}

static void unreg(int fd) {
  for (int i = 0; i < SS_OWN_MAX; i++) {
    int want = fd + 1;
    if (atomic_compare_exchange_strong(&owned[i], &want, 0)) return;
  }
}

/* Takes a just-born low fd (or -1): moves it high, registers it. Inside a birth. */
static int adopt(int low) {
  if (low < 0) return -1;
  int hi = copy_high(low, 1);
  int err = errno;
  ss__sys_close(low);
  if (hi >= 0 && reg(hi) != 0) {
    ss__sys_close(hi);
    hi = -1;
    err = EMFILE;
  }
  if (hi < 0) errno = err;
  return hi;
}

/* Ends the birth begun for `low` (just created, or -1), adopting it. */
static int born(int low) {
  int fd = adopt(low);
  int err = errno;
  birth_end();
  errno = err;
  return fd;
}

int ss__own_socket(int domain, int type, int protocol) {
  if (private_table) return ss__sys_socket(domain, type | SOCK_CLOEXEC, protocol);
  birth_begin();
  int fd = ss__sys_socket(domain, type | SOCK_CLOEXEC, protocol);
  MADE_ABOVE_ON_EMFILE(fd, ss__sys_socket(domain, type | SOCK_CLOEXEC, protocol));
  return born(fd);
}

int ss__own_open(const char *path, int flags, mode_t mode) {
  if (private_table) return ss__sys_open(path, flags | O_CLOEXEC, mode);
  birth_begin();
  int fd = ss__sys_open(path, flags | O_CLOEXEC, mode);
  MADE_ABOVE_ON_EMFILE(fd, ss__sys_open(path, flags | O_CLOEXEC, mode));
  return born(fd);
}

int ss__own_open_brief(const char *path, int flags) {
  if (private_table) return ss__sys_open(path, flags | O_CLOEXEC, 0);
  birth_begin();
  int fd = ss__sys_open(path, flags | O_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    birth_end();
    errno = err;
  }
  return fd;
}

void ss__own_close_brief(int fd) {
  ss__sys_close(fd);
  if (!private_table) birth_end();
}

int ss__own_close(int fd) {
  if (private_table) return ss__sys_close(fd);
  /* Closed first, forgotten after: while both are true the app's close of the number is
   * answered EBADF, which is what the kernel answers an unused number. */
  int rc = ss__sys_close(fd);
  int err = errno;
  unreg(fd);
  errno = err;
  return rc;
}

void ss__own_forget(int fd) {
  if (!private_table) unreg(fd);
}

int ss__own_move(int fd) {
  int hi = copy_high(fd, 0);
  int err = errno;
  if (hi >= 0 && reg(hi) != 0) {
    ss__sys_close(hi);
    hi = -1;
    err = EMFILE;
  }
  unreg(fd);
  errno = err;
  return hi;
}

int ss__owns(int fd) {
  if (fd < 0) return 0;
  for (int i = 0; i < SS_OWN_MAX; i++)
    if (atomic_load_explicit(&owned[i], memory_order_acquire) == fd + 1) return 1;
  return 0;
}

int ss__own_list(int *out, int max) {
  int n = 0;
  for (int i = 0; i < SS_OWN_MAX && n < max; i++) {
    int v = atomic_load_explicit(&owned[i], memory_order_acquire);
    if (v == 0) continue;
    int j = n++;
    for (; j > 0 && out[j - 1] > v - 1; j--) out[j] = out[j - 1];
    out[j] = v - 1;
  }
  return n;
}

int ss__own_in_app_range(int fd) {
  struct rlimit cur;
  return nofile(NULL, &cur) == 0 && cur.rlim_cur <= 1024 && (rlim_t)fd < cur.rlim_cur;
}

void ss__own_library_begin(void) {
  if (!private_table) birth_begin();
}

void ss__own_library_end(void) {
  if (!private_table) birth_end();
}

/* ---- a table of our own ---- */

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

int ss__own_go_private(void) {
  if (private_table) return 0;
  /* What borrowing needs must be there first: once unshared there is no way back. An
   * invalid call answers EBADF or EINVAL where the system call exists (and ENOSYS or, under
   * a seccomp filter, EPERM where it does not) and makes no fd. */
  if (syscall(SYS_pidfd_getfd, -1, 0, 0) == 0 || errno != EBADF) return -ENOSYS;
  if (syscall(SYS_pidfd_open, ss__sys_getpid(), ~0u) == 0 || errno != EINVAL) return -ENOSYS;
  /* Closing the whole range while unsharing copies none of the app's fds into the new
   * table (the kernel copies only those below the range), so no file of the app's is
   * held open by us even for a moment. */
  if (syscall(SYS_close_range, 0u, ~0u, CLOSE_RANGE_UNSHARE) != 0) return -errno;
  private_table = 1;
  self_pidfd = (int)syscall(SYS_pidfd_open, ss__sys_getpid(), 0u);
  return 0;
}

int ss__own_go_private_copy(void) {
  if (private_table) return 0;
  /* close_range(~0U, ~0U, CLOSE_RANGE_UNSHARE) copies every fd below ~0U and closes none;
   * unshare(CLONE_FILES) does the same where close_range is missing or filtered. */
  if (syscall(SYS_close_range, ~0u, ~0u, CLOSE_RANGE_UNSHARE) != 0 &&
      syscall(SYS_unshare, CLONE_FILES) != 0)
    return -errno;
  private_table = copied_table = 1;
  self_pidfd = -1;
  return 0;
}

typedef struct helper_job {
  int (*fn)(void *);
  void *arg;
} helper_job;

static void *helper_main(void *p) {
  helper_job *h = p;
  (void)ss__own_go_private_copy(); /* else fn's fds are born high and guarded */
  h->fn(h->arg);
  return NULL;
}

int ss__own_run_in_copy(int (*fn)(void *), void *arg) {
  helper_job h = {fn, arg};
  pthread_t th;
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setstacksize(&at, 256 * 1024);
  int rc = ss__sys_pthread_create(&th, &at, helper_main, &h);
  pthread_attr_destroy(&at);
  if (rc != 0) return -rc;
  pthread_join(th, NULL);
  return 0;
}

int ss__own_is_private(void) {
  return private_table;
}

int ss__own_borrow(int fd) {
  if (!private_table || copied_table || fd < 0) return fd;
  if (self_pidfd < 0) {
    errno = EBADF;
    return -1;
  }
  return (int)syscall(SYS_pidfd_getfd, self_pidfd, fd, 0u);
}

void ss__own_unborrow(int mine, int fd) {
  if (private_table && !copied_table && mine >= 0 && mine != fd) ss__sys_close(mine);
}

void ss__own_prepare(void) {
  birth_begin();
  for (int src = 2; src >= 0; src--) {
    int hi = copy_high(src, 0);
    if (hi >= 0) {
      ss__sys_close(hi);
      break;
    }
  }
  birth_end();
}

SS_FORK_TEXT void ss__own_atfork_child(void) {
  /* A fork child's table is a copy of the forking thread's, which is the app's: the
   * exporter thread (the one with a table of its own) never forks. */
  if (private_table) private_table = 0;
  if (copied_table) copied_table = 0;
  if (atomic_load(&births) != 0) atomic_store(&births, 0);
  if (atomic_load(&closers) != 0) atomic_store(&closers, 0);
}
