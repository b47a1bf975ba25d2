/* log.c - the shim's own diagnostics (see log.h).
 *
 * One line per call, "prefix[pid]: message\n", formatted on the stack and written with a
 * single write(2) so lines from several threads or processes sharing the fd never
 * interleave. Control characters in the message (a newline in a configured value, an
 * escape sequence) are written escaped, so one call is always one line and no value can
 * forge a line of its own. errno is preserved: callers log from inside hooks. */
#include "runtime/log.h"
#include "runtime/sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#define LINE_MAX_BYTES 512
#define LOG_FD_MIN 900            /* where the log file's fd lives: away from the app's */

int ss__log_level = SS_LOG_OFF;
static int log_fd = 2;
static char log_prefix[32] = "spanshim";

void ss__log_setup(int level, int fd, const char *prefix) {
  ss__log_level = level;
  log_fd = fd >= 0 ? fd : 2;
  if (prefix != NULL)
    snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

int ss__log_open_file(const char *path) {
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
  int f, fd;

  if (path == NULL || *path == '\0')
    return 2;
  /* A setuid/setgid or capability-raising process creates no file: it would be made
   * with its privileges where its caller may not write. */
  if (getauxval(AT_SECURE) == 0)
    flags |= O_CREAT;
  f = ss__sys_open(path, flags, 0644);
  if (f < 0)
    return 2;
  fd = ss__sys_fcntl(f, F_DUPFD_CLOEXEC, LOG_FD_MIN);
  if (fd < 0)
    return f;
  ss__sys_close(f);
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

void ss__log(int level, const char *fmt, ...) {
  char msg[LINE_MAX_BYTES], buf[LINE_MAX_BYTES];
  int saved_errno = errno;
  va_list ap;
  int n, m;

  if (level > ss__log_level || level <= SS_LOG_OFF)
    return;
  n = snprintf(buf, sizeof(buf), "%s[%d]: ", log_prefix, (int)getpid());
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
  n += (int)ss__log_escape(buf + n, sizeof(buf) - 1 - (size_t)n, msg, (size_t)m);
  buf[n++] = '\n';
  while (ss__sys_write(log_fd, buf, (size_t)n) < 0 && errno == EINTR)
    ;
  errno = saved_errno;
}
