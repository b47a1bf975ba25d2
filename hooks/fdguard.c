/* fdguard.c - keeps the app from closing the shim's fds or writing into them, and keeps
 * the app's fds and bytes its own (runtime/ownfd.h has where our fds live and why).
 *
 * Daemons close every fd and dup2 over numbers they believe free.
 *  - close_range/closefrom skip our fds, answering as if they were not open (which is
 *    what the app would see without the shim).
 *  - close() of one of ours (an app closing what /proc/self/fd lists) succeeds and gives
 *    the number up for real: the collector connection is dropped and remade when the
 *    exporter next sends, the log file reopened for its next line. The app's next pass
 *    finds it gone. (A blind close of a number the app never opened sees the success
 *    too; the kernel would have said EBADF. Above a soft limit of 1024 or less, where our
 *    fds normally are, only a loop past the app's own limit meets one.)
 *  - dup2/dup3 onto one of ours first move it elsewhere, so the app gets exactly the fd
 *    it asked for and its data never reaches the collector or our log.
 *  - Every one of these waits while one of our fds is being born at a low number, so the
 *    app can neither close it nor have its own data written into that number.
 * Closing an fd also ends a pending non-blocking connect span on it. */
#include <errno.h>
#include <limits.h>
#include <linux/close_range.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/exporter.h"
#include "runtime/log.h"
#include "runtime/ownfd.h"
#include "hooks/hook.h"

SS_REAL(close)
SS_REAL(dup2)
SS_REAL(dup3)

static int guarded(void) {
  return ss__tracing_on() && !ss__internal();
}

static int ours(int fd) {
  return guarded() && ss__owns(fd);
}

/* The app closed fd, one of ours. */
static void give_up(int fd) {
  SS_SAVE_ERRNO({
    ss__transport_release(&ss__transport_g, fd);
    ss__log_fd_closed_by_app(fd);
  });
}

void ss__fdguard_atfork_prepare(void) {
  (void)real_close();
  (void)real_dup2();
  (void)real_dup3();
}

SS_EXPORT int close(int fd) {
  if (!guarded()) return real_close()(fd);
  if (ss__owns(fd)) { /* it was listed in /proc/self/fd: closed, it is gone */
    give_up(fd);
    return 0;
  }
  ss__socket_fd_closed(fd);
  ss__own_app_enter();
  int rc = real_close()(fd);
  SS_SAVE_ERRNO(ss__own_app_leave());
  return rc;
}

static void before_overwrite(int newfd) {
  SS_SAVE_ERRNO({
    if (ss__owns(newfd)) {
      if (ss__exporter_owns_fd(newfd)) ss__exporter_move_fd();
      ss__log_fd_overwritten_by_app(newfd);
    }
    ss__socket_fd_closed(newfd);
  });
}

SS_EXPORT int dup2(int oldfd, int newfd) {
  if (!guarded()) return real_dup2()(oldfd, newfd);
  if (oldfd != newfd) before_overwrite(newfd);
  ss__own_app_enter();
  int rc = real_dup2()(oldfd, newfd);
  SS_SAVE_ERRNO(ss__own_app_leave());
  return rc;
}

SS_EXPORT int dup3(int oldfd, int newfd, int flags) {
  if (!guarded()) return real_dup3()(oldfd, newfd, flags);
  if (oldfd != newfd) before_overwrite(newfd);
  ss__own_app_enter();
  int rc = real_dup3()(oldfd, newfd, flags);
  SS_SAVE_ERRNO(ss__own_app_leave());
  return rc;
}

static int sys_close_range(unsigned lo, unsigned hi, int flags) {
  return (int)syscall(SYS_close_range, lo, hi, flags);
}

/* close_range over [lo, hi] minus our fds. */
static int close_range_sparing(unsigned lo, unsigned hi, int flags) {
  if (!guarded()) return sys_close_range(lo, hi, flags);
  if (!(flags & CLOSE_RANGE_CLOEXEC)) ss__socket_fds_closed(lo, hi);
  ss__own_app_enter();
  int mine[SS_OWN_MAX], n = ss__own_list(mine, SS_OWN_MAX), rc = 0;
  unsigned from = lo;
  for (int i = 0; i < n && rc == 0; i++) { /* ours are below INT_MAX: m + 1 fits */
    unsigned m = (unsigned)mine[i];
    if (m < from || m > hi) continue;
    if (m > from) rc = sys_close_range(from, m - 1, flags);
    from = m + 1;
  }
  if (rc == 0 && from <= hi) rc = sys_close_range(from, hi, flags);
  SS_SAVE_ERRNO(ss__own_app_leave());
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
