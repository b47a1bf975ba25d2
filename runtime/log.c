/* log.c - the shim's own diagnostics (see log.h).
 *
 * One line per call, "prefix[pid]: message\n", formatted on the stack and written with a
 * single write(2) so lines from several threads or processes sharing the fd never
 * interleave. Control characters in the message (a newline in a configured value, an
 * escape sequence) are written escaped, so one call is always one line and no value can
 * forge a line of its own. errno is preserved: callers log from inside hooks. */
#include "runtime/log.h"
#include "runtime/outbuf.h"
#include "runtime/ownfd.h"
#include "runtime/sanitize.h"
#include "runtime/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define LINE_MAX_BYTES 512

int ss__log_level = SS_LOG_OFF;
static _Atomic int log_fd = 2; /* -1: our log file was closed by the app; reopen it */
static char log_path[4096];    /* the log file's, once ss__log_open_file opened it */
static char log_prefix[32] = "spanshim";

void ss__log_setup(int level, int fd, const char *prefix) {
  ss__log_level = level;
  atomic_store(&log_fd, fd >= 0 ? fd : 2);
  /* Written only when it changes, and not with snprintf: at start the shim's prefix is
   * already there, and neither its page nor printf's code need be touched. */
  if (prefix != NULL && strncmp(log_prefix, prefix, sizeof log_prefix) != 0) {
    ss__out o = {log_prefix, 0, sizeof log_prefix - 1};
    ss__out_puts(&o, prefix);
    log_prefix[o.n] = '\0';
  }
}

static int open_file(const char *path) {
  int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_NOCTTY;
  /* A setuid/setgid or capability-raising process creates no file: it would be made
   * with its privileges where its caller may not write. */
  if (getauxval(AT_SECURE) == 0)
    flags |= O_CREAT;
  return ss__own_open(path, flags, 0644);
}

int ss__log_open_file(const char *path) {
  if (path == NULL || *path == '\0' || strlen(path) >= sizeof log_path)
    return 2;
  int fd = open_file(path);
  if (fd < 0)
    return 2;
  memcpy(log_path, path, strlen(path) + 1);
  return fd;
}

size_t ss__log_escape(char *out, size_t cap, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;

  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char e = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
    size_t need = c >= 0x20 && c != 0x7f ? 1 : e ? 2 : 4;
    if (o + need > cap)
      break;
    if (need == 1) {
      out[o++] = (char)c;
    } else if (need == 2) {
      out[o++] = '\\';
      out[o++] = e;
    } else {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  return o;
}

void ss__log_fd_closed_by_app(int fd) {
  int cur = fd;
  if (fd != 2 && atomic_compare_exchange_strong(&log_fd, &cur, -1)) ss__own_close(fd);
}

void ss__log_fd_overwritten_by_app(int fd) {
  int cur = fd;
  if (fd == 2 || !atomic_compare_exchange_strong(&log_fd, &cur, -1)) return;
  int hi = ss__own_move(fd);
  cur = -1;
  if (hi >= 0 && !atomic_compare_exchange_strong(&log_fd, &cur, hi)) ss__own_close(hi);
}

/* The fd to write to: the log file reopened if the app closed ours. */
static int current_fd(void) {
  int fd = atomic_load(&log_fd);
  if (fd >= 0 || log_path[0] == '\0') return fd;
  int nfd = open_file(log_path), cur = -1;
  if (nfd < 0) return -1;
  if (atomic_compare_exchange_strong(&log_fd, &cur, nfd)) return nfd;
  ss__own_close(nfd);
  return cur;
}

/* 0, or -1 when fd turned out closed (EBADF) before anything was written. */
static int write_all(int fd, const char *s, size_t n) {
  while (fd >= 0 && n > 0) {
    ssize_t w = ss__sys_write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EBADF) return -1;
    if (w <= 0) break;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Our log file's fd fd was closed behind our back (a raw close_range system call the fd
 * guards cannot see): forgotten, not closed (the number may be the app's by now), so
 * that the file is reopened for this line. 1 when it was ours. */
static int log_fd_gone(int fd) {
  int cur = fd;
  if (fd <= 2 || log_path[0] == '\0' || !atomic_compare_exchange_strong(&log_fd, &cur, -1))
    return 0;
  ss__own_forget(fd);
  return 1;
}

/* Writes s[0..n) to fd, a number of the app's table, from a thread with a table of its
 * own: through a copy borrowed for the write. */
static int write_borrowed(int fd, const char *s, size_t n) {
  int mine = ss__own_borrow(fd);
  if (mine < 0) return errno == EBADF ? -1 : 0;
  int rc = write_all(mine, s, n);
  ss__own_unborrow(mine, fd);
  return rc;
}

/* Writes s[0..n) to the log. On a thread with an fd table of its own (the exporter's,
 * runtime/ownfd.h) the app's fd is borrowed for the write (the log file reopened there
 * when the app closed ours); elsewhere the app's table has it. A warning or error whose
 * log file the app closed and which cannot be reopened (the app holds every fd its hard
 * limit allows) goes to stderr rather than nowhere: it may be the only record of a loss. */
static void write_log(int level, const char *s, size_t n) {
  if (ss__own_is_private()) {
    int fd = atomic_load(&log_fd);
    if (fd < 0 && log_path[0] != '\0') {
      int mine = open_file(log_path);
      if (mine < 0 && level <= SS_LOG_WARN) write_borrowed(2, s, n);
      write_all(mine, s, n);
      if (mine >= 0) ss__own_close(mine);
    } else if (fd >= 0) {
      if (write_borrowed(fd, s, n) != 0 && log_fd_gone(fd)) write_log(level, s, n);
    }
    return;
  }
  int fd = current_fd();
  if (fd < 0 && level <= SS_LOG_WARN) write_all(2, s, n);
  if (write_all(fd, s, n) != 0 && log_fd_gone(fd)) {
    write_log(level, s, n); /* reopened (once: a new fd is not gone) */
    return;
  }
  if (fd > 2 && log_path[0] != '\0' && ss__own_in_app_range(fd))
    ss__log_fd_closed_by_app(fd); /* not held on a number the app could use */
}

void ss__log(int level, const char *fmt, ...) {
  char msg[LINE_MAX_BYTES], buf[LINE_MAX_BYTES];
  int saved_errno = errno;
  va_list ap;
  int n, m;

  if (level > ss__log_level || level <= SS_LOG_OFF)
    return;
  n = snprintf(buf, sizeof(buf), "%s[%d]: ", log_prefix, (int)ss__sys_getpid());
  if (n < 0 || n >= (int)sizeof(buf) - 1)
    n = 0;
  va_start(ap, fmt);
  m = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (m < 0)
    m = 0;
  if (m > (int)sizeof(msg) - 1) /* truncated */
    m = (int)sizeof(msg) - 1;
  if (m > 0 && msg[m - 1] == '\n') /* the line's own end, not part of the message */
    m--;
  /* Credentials a message may quote (an endpoint's userinfo, a header value) are
   * redacted as in status messages (sanitize.h); then control characters escaped. */
  char red[LINE_MAX_BYTES * 2];
  m = (int)ss__text_redact(msg, (size_t)m, red, sizeof(red));
  n += (int)ss__log_escape(buf + n, sizeof(buf) - 1 - (size_t)n, red, (size_t)m);
  buf[n++] = '\n';
  write_log(level, buf, (size_t)n);
  errno = saved_errno;
}

void ss__log_line(const char *line, size_t n) {
  int saved_errno = errno;
  write_log(SS_LOG_DEBUG, line, n); /* spans: never to stderr instead of the file */
  errno = saved_errno;
}
