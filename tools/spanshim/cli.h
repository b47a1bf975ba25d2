/* cli.h - the spanshim command line: `run` and `view`, and what they share.
 *
 * Each command takes its own argv (argv[0] is the command name) and returns the process
 * exit status: 0 success, 1 failure, 2 bad usage; `run` returns the traced command's
 * status. Messages go to stderr prefixed "spanshim: "; help goes to stdout. The CLI is
 * single-threaded; `run` installs signal handlers while it waits for the command. */
#ifndef SS_CLI_H
#define SS_CLI_H

#include <stddef.h>
#include <stdio.h>

int ss__cmd_run(int argc, char **argv);
int ss__cmd_view(int argc, char **argv);

/* Directory of the running binary (from /proc/self/exe) into out; 0 or -errno. */
int ss__self_dir(char *out, size_t n);

/* Whether to colour output on fd: a TTY, NO_COLOR unset or empty, and not forced off. */
int ss__want_color(int fd, int no_color);

/* Reads an OTLP JSON lines file (or stdin for "-") and writes its waterfall to out,
 * colouring when `color`, fitting the label column to the terminal on `tty_fd` (or -1).
 * Malformed lines are reported on stderr with their line number and skipped. Returns 0,
 * or 1 when the file cannot be opened or no line in it could be read. */
int ss__show_file(FILE *out, const char *path, int color, int tty_fd);

/* Writes the HTML report of the spans in paths[0..n) to out_path ('-': stdout); messages
 * as ss__show_file. 0, or 1 when nothing was readable or the report not written. */
int ss__html_report(const char *out_path, char *const *paths, size_t n);

void ss__err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "spanshim: CMD: " + fmt (one %s: arg) on stderr, then the usage text; returns 2. */
int ss__usage_error(const char *cmd, const char *usage, const char *fmt, const char *arg);

#endif
