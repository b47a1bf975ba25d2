/* view.c - `spanshim view FILE`, and reading a spans file into a waterfall (shared with
 * `run`). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "tools/common/duration.h"
#include "tools/common/perfetto.h"
#include "tools/common/trace_model.h"
#include "tools/common/waterfall.h"
#include "tools/spanshim/cli.h"
#include "tools/spanshim/html.h"
#include "tools/spanshim/load.h"
#include "tools/spanshim/triage.h"

#define MAX_SPANS 1000000      /* keeps memory bounded on huge files */

static const char view_usage[] =
    "usage: spanshim view [--no-color] [--errors] [--slower-than DUR] [--service NAME]\n"
    "                     [--trace ID] [--grep TEXT] [--limit N]\n"
    "                     [--json | --summary | --perfetto OUT.json | --html OUT.html]\n"
    "                     FILE...\n";
static const char view_help[] =
    "\n"
    "Prints the waterfall of the spans in FILE..., OTLP JSON as spanshimd --out writes it\n"
    "(one {\"resourceSpans\":[...]} object per line; pretty-printed objects and\n"
    "snake_case field names are read too). Exception log records give failed spans\n"
    "their stacks, also from the logs file spanshimd writes beside FILE\n"
    "(spanshim-traces.jsonl -> spanshim-logs.jsonl); metrics lines are skipped.\n"
    "FILE '-' reads stdin. Malformed lines are reported with\n"
    "their line number and skipped. Colour is used on a terminal unless NO_COLOR is set\n"
    "or --no-color is given. After the picture: the slowest spans and the failing ones.\n"
    "\n"
    "Which traces (all conditions must hold; a trace matches when one of its spans does,\n"
    "and is shown whole):\n"
    "  --errors            a span with status ERROR\n"
    "  --slower-than DUR   a span lasting at least DUR (250ms, 2s, 100us; bare: ms)\n"
    "  --service NAME      a span of service.name NAME\n"
    "  --trace ID          the trace id starts with ID\n"
    "  --grep TEXT         a span name, status message or attribute value contains TEXT\n"
    "                      (ignoring case)\n"
    "  --limit N           the first N matching traces (by start time)\n"
    "What to write instead of the waterfall:\n"
    "  --json              the matching spans as OTLP JSON lines (resource and scope kept),\n"
    "                      for jq\n"
    "  --summary           RED table: per service and span name, count, rate, errors,\n"
    "                      p50/p95/p99 duration\n"
    "  --perfetto OUT.json Chrome trace event JSON (ui.perfetto.dev, chrome://tracing)\n"
    "  --html OUT.html     one self-contained HTML report (trace list, waterfall, span\n"
    "                      details with stacks, services summary; no network needed)\n"
    "OUT '-' is stdout.\n"
    "Exits 0 when spans were shown or written; 1 when a FILE cannot be read or there\n"
    "is no span to show (nothing readable, no span with valid ids, no trace matches);\n"
    "2 on bad usage.\n";

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

static int load(ss__tm *m, char *const *paths, size_t n, ss__docs *docs) {
  ss__tm_init(m);
  m->max_spans = MAX_SPANS;
  long ok = ss__load_files(m, paths, n, docs);
  if (ok == 0) ss__err("%s%s: nothing readable (no OTLP JSON lines)", paths[0],
                       n > 1 ? " ..." : "");
  if (m->n_dropped)
    ss__err("only the first %zu spans are shown (%zu more not read)", m->n_spans,
            m->n_dropped);
  return ok > 0 ? 0 : 1;
}

static int waterfall(FILE *out, const ss__tm *m, int color, int tty_fd) {
  ss__wf_opts o = {.color = color, .label_width = label_width(tty_fd), .summary = 1,
                   .stacks = 1};
  int rc = ss__waterfall(out, m, &o);
  fflush(out);
  if (rc < 0) {
    ss__err("writing the waterfall: %s", strerror(-rc));
    return 1;
  }
  return 0;
}

int ss__show_file(FILE *out, const char *path, int color, int tty_fd) {
  ss__tm m;
  char *paths[1] = {(char *)path};
  int status = load(&m, paths, 1, NULL);
  if (status == 0) status = waterfall(out, &m, color, tty_fd);
  ss__tm_free(&m);
  return status;
}

/* Opens OUT ('-': stdout), runs write, closes; prints what failed. 0 or 1. */
static int write_out(const char *out_path, int (*write)(FILE *, const ss__tm *, const void *),
                     const ss__tm *m, const void *arg) {
  int to_stdout = strcmp(out_path, "-") == 0;
  FILE *out = to_stdout ? stdout : fopen(out_path, "w");
  int rc = out ? write(out, m, arg) : -errno;
  if (out && !to_stdout && fclose(out) != 0 && rc == 0) rc = -EIO;
  if (out && to_stdout && fflush(out) != 0 && rc == 0) rc = -EIO;
  if (rc < 0) {
    ss__err("%s: %s", to_stdout ? "<stdout>" : out_path, strerror(-rc));
    return 1;
  }
  return 0;
}

static int w_perfetto(FILE *f, const ss__tm *m, const void *arg) {
  (void)arg;
  return ss__perfetto_write(f, m);
}

static int w_json(FILE *f, const ss__tm *m, const void *docs) {
  return ss__json_matching(f, m, docs);
}

static int w_summary(FILE *f, const ss__tm *m, const void *arg) {
  (void)arg;
  return ss__red_print(f, m);
}

static int w_html(FILE *f, const ss__tm *m, const void *arg) {
  return ss__html_write(f, m, arg);
}

int ss__html_report(const char *out_path, char *const *paths, size_t n) {
  ss__tm m;
  int status = load(&m, paths, n, NULL);
  if (status == 0) {
    ss__html_opts ho = {.files = (const char *const *)paths, .n_files = n};
    status = write_out(out_path, w_html, &m, &ho);
  }
  ss__tm_free(&m);
  return status;
}

typedef struct view_opts {
  int no_color, json, summary;
  const char *perfetto, *html;
  ss__filter f;
  char **files;
  size_t n_files;
} view_opts;

static int usage_error(const char *fmt, const char *arg) {
  return ss__usage_error("view", view_usage, fmt, arg);
}

/* "--name VALUE" or "--name=VALUE": 1 with *val set (NULL when the value is missing). */
static int opt(char **argv, int argc, int *i, const char *name, const char **val) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return 0;
  if (argv[*i][n] == '=') {
    *val = argv[*i] + n + 1;
    return 1;
  }
  if (argv[*i][n] != '\0') return 0;
  *val = *i + 1 < argc ? argv[++*i] : NULL;
  return 1;
}

/* Returns -1 to go on, else the exit status. */
static int parse(int argc, char **argv, view_opts *o) {
  memset(o, 0, sizeof(*o));
  o->files = calloc((size_t)argc, sizeof(*o->files));
  if (!o->files) return 1;
  int only_files = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    if (only_files || a[0] != '-' || a[1] == '\0') {
      o->files[o->n_files++] = argv[i];
    } else if (strcmp(a, "--") == 0) {
      only_files = 1;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("%s%s", view_usage, view_help);
      return 0;
    } else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) {
      o->no_color = 1;
    } else if (strcmp(a, "--errors") == 0) {
      o->f.errors = 1;
    } else if (strcmp(a, "--json") == 0) {
      o->json = 1;
    } else if (strcmp(a, "--summary") == 0) {
      o->summary = 1;
    } else if (opt(argv, argc, &i, "--perfetto", &v)) {
      if (!(o->perfetto = v) || !*v) return usage_error("--perfetto needs a file", "");
    } else if (opt(argv, argc, &i, "--html", &v)) {
      if (!(o->html = v) || !*v) return usage_error("--html needs a file", "");
    } else if (opt(argv, argc, &i, "--slower-than", &v)) {
      if (!v || ss__parse_duration_ns(v, &o->f.slower_ns) < 0 || o->f.slower_ns == 0)
        return usage_error("--slower-than: not a duration: '%s'", v ? v : "");
    } else if (opt(argv, argc, &i, "--service", &v)) {
      if (!(o->f.service = v)) return usage_error("--service needs a NAME", "");
    } else if (opt(argv, argc, &i, "--trace", &v)) {
      if (!v || !*v || strspn(v, "0123456789abcdefABCDEF") != strlen(v) || strlen(v) > 32)
        return usage_error("--trace: not a trace id (prefix): '%s'", v ? v : "");
      o->f.trace = v;
    } else if (opt(argv, argc, &i, "--grep", &v)) {
      if (!v || !*v) return usage_error("--grep needs TEXT", "");
      o->f.grep = v;
    } else if (opt(argv, argc, &i, "--limit", &v)) {
      char *end;
      errno = 0;
      long long n = v ? strtoll(v, &end, 10) : 0;
      if (!v || !*v || *end || errno || n <= 0)
        return usage_error("--limit: not a positive number: '%s'", v ? v : "");
      o->f.limit = (size_t)n;
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (o->n_files == 0) return usage_error("no FILE given", "");
  if ((o->json != 0) + (o->summary != 0) + (o->perfetto != NULL) + (o->html != NULL) > 1)
    return usage_error("one of --json, --summary, --perfetto, --html at a time", "");
  return -1;
}

static int view(const view_opts *o) {
  ss__tm m;
  ss__docs docs;
  memset(&docs, 0, sizeof(docs));
  int status = load(&m, o->files, o->n_files, o->json ? &docs : NULL);
  if (status == 0 && m.n_spans == 0) { /* read, but nothing to show: as for no match */
    char why[96] = "";
    if (m.n_invalid)
      snprintf(why, sizeof(why), " (%zu without valid ids skipped)", m.n_invalid);
    ss__err("%s%s: no spans to show%s", o->files[0], o->n_files > 1 ? " ..." : "", why);
    status = 1;
  }
  if (status == 0 && ss__filter_active(&o->f)) {
    long n = ss__select(&m, &o->f);
    if (n < 0) {
      ss__err("out of memory");
      status = 1;
    } else if (n == 0) {
      ss__err("no trace matches");
      status = 1;
    }
  }
  if (status == 0) {
    if (o->json) {
      status = write_out("-", w_json, &m, &docs);
    } else if (o->summary) {
      status = write_out("-", w_summary, &m, NULL);
    } else if (o->perfetto) {
      status = write_out(o->perfetto, w_perfetto, &m, NULL);
      if (status == 0 && strcmp(o->perfetto, "-") != 0)
        fprintf(stderr, "spanshim: %zu span%s written to %s (open it in ui.perfetto.dev)\n",
                m.n_spans, m.n_spans == 1 ? "" : "s", o->perfetto);
    } else if (o->html) {
      ss__html_opts ho = {.files = (const char *const *)o->files, .n_files = o->n_files};
      status = write_out(o->html, w_html, &m, &ho);
      if (status == 0 && strcmp(o->html, "-") != 0)
        fprintf(stderr, "spanshim: %zu span%s written to %s (open it in a browser)\n",
                m.n_spans, m.n_spans == 1 ? "" : "s", o->html);
    } else {
      status = waterfall(stdout, &m, ss__want_color(1, o->no_color), 1);
    }
  }
  ss__docs_free(&docs);
  ss__tm_free(&m);
  return status;
}

int ss__cmd_view(int argc, char **argv) {
  view_opts o;
  int rc = parse(argc, argv, &o);
  if (rc < 0) rc = view(&o);
  free(o.files);
  return rc;
}
