/* log.c - the shim's own diagnostics (see log.h).
 *
 * One line per call, "prefix[pid]: message\n", formatted on the stack and written with a
 * single write(2) so lines from several threads or processes sharing the fd never
 * interleave. errno is preserved: callers log from inside hooks. */
#include "runtime/log.h"
#include "runtime/sys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_BYTES 512

int ss__log_level = SS_LOG_OFF;
static int log_fd = 2;
static char log_prefix[32] = "spanshim";

void ss__log_setup(int level, int fd, const char *prefix) {
  ss__log_level = level;
  log_fd = fd >= 0 ? fd : 2;
  if (prefix != NULL)
    snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

void ss__log(int level, const char *fmt, ...) {
  char buf[LINE_MAX_BYTES];
  int saved_errno = errno;
  va_list ap;
  int n, m;

  if (level > ss__log_level || level <= SS_LOG_OFF)
    return;
  n = snprintf(buf, sizeof(buf), "%s[%d]: ", log_prefix, (int)getpid());
  if (n < 0 || n >= (int)sizeof(buf) - 1)
    n = 0;
  va_start(ap, fmt);
  m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
  va_end(ap);
  if (m < 0)
    m = 0;
  n += m;
  if (n > (int)sizeof(buf) - 1) /* truncated: keep the newline */
    n = (int)sizeof(buf) - 1;
  if (n > 0 && buf[n - 1] == '\n')
    n--;
  buf[n++] = '\n';
  while (ss__sys_write(log_fd, buf, (size_t)n) < 0 && errno == EINTR)
    ;
  errno = saved_errno;
}
