/* log.h - the shim's own diagnostics.
 *
 * Off by default (SPANSHIM_LOG_LEVEL). Lines go to SPANSHIM_LOG_FILE or stderr, never to
 * the app's stdout, formatted into a stack buffer and written with one write(2): no
 * allocation, no stdio, usable from any thread. */
#ifndef SS_LOG_H
#define SS_LOG_H

#include <stddef.h>

enum { SS_LOG_OFF = 0, SS_LOG_ERROR = 1, SS_LOG_WARN = 2, SS_LOG_INFO = 3, SS_LOG_DEBUG = 4 };

extern int ss__log_level;

/* Where lines go: an fd the shim owns (or 2), and the prefix ("spanshim", "spanshimd"). */
void ss__log_setup(int level, int fd, const char *prefix);
/* Logs one line at `level` (dropped above the configured level). Control characters of
 * the formatted message come out escaped (\n, \r, \t, \xNN), so it stays one line.
 * Preserves errno; async-signal-safe as far as vsnprintf is. */
/* For the fd guards, when fd is ours (ss__owns): the app closed it (seen in
 * /proc/self/fd), so it is closed for real and the file is reopened for the next line; or
 * the app dup2s onto it, so the log moves to another number first. Other fds: nothing. */
void ss__log_fd_closed_by_app(int fd);
void ss__log_fd_overwritten_by_app(int fd);
void ss__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* SPANSHIM_LOG_FILE: opens path for appending, never following a symlink at its last
 * component (O_NOFOLLOW), created 0644 when missing — except in a secure-execution
 * process (AT_SECURE: setuid, setgid, file capabilities), which only appends to a file
 * that already exists. The fd is close-on-exec and out of the app's way (runtime/ownfd.h);
 * the path is remembered, to reopen the file when the app closes our fd. Returns the fd,
 * or 2 (stderr) when path is NULL/empty or cannot be opened. */
int ss__log_open_file(const char *path);
/* Copies s[0..n) to out (at most cap bytes, cut at a whole character) with bytes below
 * 0x20 and 0x7f escaped as above; returns the bytes written. No NUL is added. */
size_t ss__log_escape(char *out, size_t cap, const char *s, size_t n);

/* Writes one whole line (n bytes, ending in '\n') to the diagnostics fd, whatever the
 * level: the console exporter's output. One write(2); errno preserved. */
void ss__log_line(const char *line, size_t n);

#define SS_LOG(level, ...) \
  do { if ((level) <= ss__log_level) ss__log((level), __VA_ARGS__); } while (0)

#endif
