/* fdguard.c - keeps the app from closing the shim's socket or writing into it.
 *
 * Daemons close every fd and dup2 over numbers they believe free. close/close_range/
 * closefrom skip the shim's fd, answering as if it were not open (which is what the app
 * would see without the shim); dup2/dup3 onto it first move the shim's socket elsewhere,
 * so the app gets exactly the fd it asked for and its data never reaches the collector.
 * Closing an fd also ends a pending non-blocking connect span on it. */
#include <errno.h>
#include <limits.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/exporter.h"
#include "hooks/hook.h"

SS_REAL(close)
SS_REAL(dup2)
SS_REAL(dup3)

static int ours(int fd) {
  return !ss__internal() && ss__exporter_owns_fd(fd);
}

SS_EXPORT int close(int fd) {
  if (ss__tracing_on()) {
    if (ours(fd)) {
      errno = EBADF;
      return -1;
    }
    ss__socket_fd_closed(fd);
  }
  return real_close()(fd);
}

static void before_overwrite(int newfd) {
  if (!ss__tracing_on()) return;
  SS_SAVE_ERRNO({
    if (ours(newfd)) ss__exporter_move_fd();
    ss__socket_fd_closed(newfd);
  });
}

SS_EXPORT int dup2(int oldfd, int newfd) {
  if (oldfd != newfd) before_overwrite(newfd);
  return real_dup2()(oldfd, newfd);
}

SS_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (oldfd != newfd) before_overwrite(newfd);
  return real_dup3()(oldfd, newfd, flags);
}

static int sys_close_range(unsigned lo, unsigned hi, int flags) {
  return (int)syscall(SYS_close_range, lo, hi, flags);
}

/* close_range over [lo, hi] minus the shim's fd. */
static int close_range_sparing(unsigned lo, unsigned hi, int flags) {
  int mine = ss__exporter_fd();
  if (!ss__tracing_on() || ss__internal())
    return sys_close_range(lo, hi, flags);
  if (!(flags & CLOSE_RANGE_CLOEXEC)) ss__socket_fds_closed(lo, hi);
  if (mine < 0 || (unsigned)mine < lo || (unsigned)mine > hi)
    return sys_close_range(lo, hi, flags);
  int rc = 0;
  if ((unsigned)mine > lo) rc = sys_close_range(lo, (unsigned)mine - 1, flags);
  if (rc == 0 && (unsigned)mine < hi) rc = sys_close_range((unsigned)mine + 1, hi, flags);
  return rc;
}

SS_EXPORT int close_range(unsigned int first, unsigned int last, int flags) {
  if (first > last) {
    errno = EINVAL;
    return -1;
  }
  return close_range_sparing(first, last, flags);
}

SS_EXPORT void closefrom(int lowfd) {
  if (lowfd < 0) lowfd = 0;
  SS_SAVE_ERRNO({
    if (close_range_sparing((unsigned)lowfd, UINT_MAX, 0) != 0) {
      /* Kernels without close_range: close one by one, as glibc does. */
      long max = sysconf(_SC_OPEN_MAX);
      for (long fd = lowfd; fd < max; fd++)
        if (!ours((int)fd)) real_close()((int)fd);
    }
  });
}
