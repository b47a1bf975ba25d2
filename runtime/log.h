/* log.h - the shim's own diagnostics.
 *
 * Off by default (SPANSHIM_LOG_LEVEL). Lines go to SPANSHIM_LOG_FILE or stderr, never to
 * the app's stdout, formatted into a stack buffer and written with one write(2): no
 * allocation, no stdio, usable from any thread. */
#ifndef SS_LOG_H
#define SS_LOG_H

enum { SS_LOG_OFF = 0, SS_LOG_ERROR = 1, SS_LOG_WARN = 2, SS_LOG_INFO = 3, SS_LOG_DEBUG = 4 };

extern int ss__log_level;

/* Where lines go: an fd the shim owns (or 2), and the prefix ("spanshim", "spanshimd"). */
void ss__log_setup(int level, int fd, const char *prefix);
void ss__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SS_LOG(level, ...) \
  do { if ((level) <= ss__log_level) ss__log((level), __VA_ARGS__); } while (0)

#endif
