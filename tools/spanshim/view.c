/* view.c - `spanshim view FILE`, and reading a spans file into a waterfall (shared with
 * `run`). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tools/common/perfetto.h"
#include "tools/common/trace_model.h"
#include "tools/common/waterfall.h"
#include "tools/spanshim/cli.h"

#define MAX_SPANS 1000000      /* keeps memory bounded on huge files */
#define MAX_LINE_REPORTS 20    /* malformed lines reported one by one, then counted */

static const char view_usage[] =
    "usage: spanshim view [--no-color] [--perfetto OUT.json] FILE\n";
static const char view_help[] =
    "\n"
    "Prints the waterfall of FILE, OTLP JSON lines as written by spanshimd --out\n"
    "(one {\"resourceSpans\":[...]} object per line; logs lines are counted). FILE '-'\n"
    "reads stdin. Malformed lines are reported with their line number and skipped.\n"
    "Colour is used on a terminal unless NO_COLOR is set or --no-color is given.\n"
    "After the picture: the slowest spans and the failing ones.\n"
    "--perfetto OUT.json writes the spans as Chrome trace event JSON instead (open it\n"
    "in ui.perfetto.dev or chrome://tracing); OUT.json '-' is stdout.\n"
    "Exits 1 when FILE cannot be read or holds no readable line.\n";

int ss__self_dir(char *out, size_t n) {
  char buf[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (len < 0) return -errno;
  buf[len] = '\0';
  char *slash = strrchr(buf, '/');
  if (!slash) return -ENOENT;
  *slash = '\0';
  if ((size_t)snprintf(out, n, "%s", buf) >= n) return -ENAMETOOLONG;
  return 0;
}

int ss__want_color(int fd, int no_color) {
  const char *nc = getenv("NO_COLOR");
  return !no_color && isatty(fd) && !(nc && nc[0]);
}

/* The label column gets what the terminal leaves after the bar and the duration. */
static int label_width(int fd) {
  struct winsize ws;
  if (fd < 0 || !isatty(fd) || ioctl(fd, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0) return 0;
  int w = (int)ws.ws_col - 2 - 2 - (SS_WF_BAR_WIDTH + 2) - 10 - 12;
  return w < 24 ? 24 : w > SS_WF_LABEL_WIDTH ? SS_WF_LABEL_WIDTH : w;
}

static int blank(const char *s, size_t n) {
  return strspn(s, " \t\r\n") >= n;
}

/* Feeds every line of f to the model; returns the number of lines read successfully. */
static size_t load(ss__tm *m, FILE *f, const char *name) {
  char *line = NULL, err[256];
  size_t cap = 0, lineno = 0, ok = 0, bad = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) {
    lineno++;
    if (blank(line, (size_t)len)) continue;
    int rc = ss__tm_add_line(m, line, (size_t)len, lineno, err, sizeof(err));
    if (rc >= 0) {
      ok++;
    } else if (++bad <= MAX_LINE_REPORTS) {
      ss__err("%s:%zu: %s", name, lineno, err);
    }
  }
  if (ferror(f)) ss__err("%s: %s", name, strerror(errno));
  if (bad > MAX_LINE_REPORTS)
    ss__err("%s: %zu more malformed lines not reported", name, bad - MAX_LINE_REPORTS);
  free(line);
  return ok;
}

int ss__show_file(FILE *out, const char *path, int color, int tty_fd) {
  int is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "r");
  if (!f) {
    ss__err("%s: %s", path, strerror(errno));
    return 1;
  }
  ss__tm m;
  ss__tm_init(&m);
  m.max_spans = MAX_SPANS;
  size_t ok = load(&m, f, is_stdin ? "<stdin>" : path);
  if (!is_stdin) fclose(f);
  int status = 0;
  if (ok == 0) {
    ss__err("%s: nothing readable (no OTLP JSON lines)", path);
    status = 1;
  } else {
    ss__wf_opts o = {.color = color, .label_width = label_width(tty_fd), .summary = 1,
                     .stacks = 1};
    int rc = ss__waterfall(out, &m, &o);
    fflush(out);
    if (rc < 0) {
      ss__err("writing the waterfall: %s", strerror(-rc));
      status = 1;
    }
  }
  ss__tm_free(&m);
  return status;
}

/* FILE's spans as Chrome trace JSON in out_path. */
static int perfetto(const char *path, const char *out_path) {
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (!f) {
    ss__err("%s: %s", path, strerror(errno));
    return 1;
  }
  ss__tm m;
  ss__tm_init(&m);
  m.max_spans = MAX_SPANS;
  size_t ok = load(&m, f, f == stdin ? "<stdin>" : path);
  if (f != stdin) fclose(f);
  int status = 1;
  if (ok == 0) {
    ss__err("%s: nothing readable (no OTLP JSON lines)", path);
  } else {
    int to_stdout = strcmp(out_path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(out_path, "w");
    int rc = out ? ss__perfetto_write(out, &m) : -errno;
    if (out && !to_stdout && fclose(out) != 0 && rc == 0) rc = -EIO;
    if (rc < 0) {
      ss__err("%s: %s", out_path, strerror(-rc));
    } else {
      status = 0;
      if (!to_stdout)
        fprintf(stderr, "spanshim: %zu spans written to %s (open it in ui.perfetto.dev)\n",
                m.n_spans, out_path);
    }
  }
  ss__tm_free(&m);
  return status;
}

int ss__cmd_view(int argc, char **argv) {
  int no_color = 0;
  const char *path = NULL, *perfetto_out = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("%s%s", view_usage, view_help);
      return 0;
    } else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) {
      no_color = 1;
    } else if (strcmp(a, "--perfetto") == 0 && i + 1 < argc) {
      perfetto_out = argv[++i];
    } else if (strncmp(a, "--perfetto=", 11) == 0 && a[11]) {
      perfetto_out = a + 11;
    } else if (strcmp(a, "--") == 0 && i + 1 < argc && !path) {
      path = argv[++i];
    } else if (a[0] == '-' && a[1] != '\0') {
      ss__err("view: unknown option '%s'", a);
      fputs(view_usage, stderr);
      return 2;
    } else if (path) {
      ss__err("view: one FILE only");
      fputs(view_usage, stderr);
      return 2;
    } else {
      path = a;
    }
  }
  if (!path) {
    ss__err("view: no FILE given");
    fputs(view_usage, stderr);
    return 2;
  }
  if (perfetto_out) return perfetto(path, perfetto_out);
  return ss__show_file(stdout, path, ss__want_color(1, no_color), 1);
}
