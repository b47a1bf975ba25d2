/* load.c - documents out of span files into the model; see load.h. */
#include "tools/spanshim/load.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/common/beside.h"

#include "tools/spanshim/cli.h"

typedef struct reader {
  ss__tm *m;
  ss__docs *docs;
  const char *name;
  ss__buf doc;        /* the open document so far */
  size_t doc_line;    /* line where it started */
  size_t *line_off;   /* where each of its lines starts in doc (line doc_line + i) */
  size_t n_lines, cap_lines;
  int depth, in_str, esc, skipping;
  size_t ok, bad;
} reader;

static void report(reader *r, size_t line, const char *what) {
  if (++r->bad <= SS_LOAD_MAX_REPORTS) ss__err("%s:%zu: %s", r->name, line, what);
}

static int docs_add(ss__docs *d, const char *s, size_t n) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    size_t *o = realloc(d->off, cap * sizeof(*o)), *l;
    if (!o) return -ENOMEM;
    d->off = o;
    if (!(l = realloc(d->len, cap * sizeof(*l)))) return -ENOMEM;
    d->len = l;
    d->cap = cap;
  }
  d->off[d->n] = d->text.len;
  d->len[d->n] = n;
  ss__buf_append(&d->text, s, n);
  if (ss__buf_error(&d->text)) return -ENOMEM;
  d->n++;
  return 0;
}

/* One whole document (or one stray line) to the model. */
static void feed(reader *r, const char *s, size_t n, size_t line) {
  char err[256];
  int rc = ss__tm_add_line(r->m, s, n, line, err, sizeof(err));
  if (rc < 0) {
    report(r, line, err);
    return;
  }
  r->ok++;
  if (rc == 0 && r->docs && docs_add(r->docs, s, n) < 0) report(r, line, "out of memory");
}

static void reset_doc(reader *r) {
  ss__buf_reset(&r->doc);
  r->n_lines = 0;
  r->depth = r->in_str = r->esc = r->skipping = 0;
}

static void close_doc(reader *r) {
  if (!r->skipping) feed(r, r->doc.data, r->doc.len, r->doc_line);
  reset_doc(r);
}

static void scan_line(reader *r, const char *line, size_t len, size_t lineno);

/* The open document was never closed: reported at its first line. Its later lines were
 * taken for its continuation; when there are few (a cut-short line among JSON lines),
 * each is read again on its own, so every bad line is reported with its number. */
static void abandon(reader *r, const char *why) {
  size_t first = r->doc_line, n = r->n_lines;
  if (r->skipping || n <= 1 || n > SS_LOAD_RESCAN_LINES) {
    char m[128];
    if (n > 1) snprintf(m, sizeof(m), "%s (lines %zu-%zu)", why, first, first + n - 1);
    report(r, first, n > 1 ? m : why);
    reset_doc(r);
    return;
  }
  report(r, first, why);
  ss__buf held = r->doc;
  size_t *off = r->line_off;
  memset(&r->doc, 0, sizeof(r->doc));
  r->line_off = NULL;
  r->cap_lines = 0;
  reset_doc(r);
  for (size_t k = 1; k < n; k++)
    scan_line(r, held.data + off[k], (k + 1 < n ? off[k + 1] : held.len) - off[k], first + k);
  ss__buf_free(&held);
  free(off);
}

static void add_doc_bytes(reader *r, const char *s, size_t n) {
  if (r->skipping) return;
  if (r->n_lines == r->cap_lines) {
    size_t cap = r->cap_lines ? r->cap_lines * 2 : 16;
    size_t *o = realloc(r->line_off, cap * sizeof(*o));
    if (!o) {
      report(r, r->doc_line, "out of memory");
      r->skipping = 1;
      return;
    }
    r->line_off = o;
    r->cap_lines = cap;
  }
  r->line_off[r->n_lines++] = r->doc.len;
  if (r->doc.len + n > SS_LOAD_MAX_DOC) {
    report(r, r->doc_line, "document over 1 GiB, skipped");
    r->skipping = 1;
    return;
  }
  ss__buf_append(&r->doc, s, n);
  if (ss__buf_error(&r->doc)) {
    report(r, r->doc_line, "out of memory");
    r->skipping = 1;
  }
}

/* Scans one line (with its newline), opening and closing documents. */
static void scan_line(reader *r, const char *line, size_t len, size_t lineno) {
  size_t i = 0;
  if (r->depth > 0 && line[0] == '{') abandon(r, "document not closed (cut short?), skipped");
  while (i < len) {
    size_t start = i;
    if (r->depth == 0) {
      i += strspn(line + i, " \t\r\n");
      if (i >= len) return;
      if (line[i] != '{') {  /* not a document: let the model say what is wrong with it */
        size_t end = len;
        while (end > i && strchr(" \t\r\n", line[end - 1])) end--;
        feed(r, line + i, end - i, lineno);
        return;
      }
      start = i;
      r->doc_line = lineno;
    }
    for (; i < len; i++) {
      char c = line[i];
      if (r->in_str) {
        if (r->esc) r->esc = 0;
        else if (c == '\\') r->esc = 1;
        else if (c == '"') r->in_str = 0;
      } else if (c == '"') {
        r->in_str = 1;
      } else if (c == '{' || c == '[') {
        r->depth++;
      } else if ((c == '}' || c == ']') && --r->depth == 0) {
        i++;
        break;
      }
    }
    if (r->depth == 0 && r->doc.len == 0 && !r->skipping) {
      feed(r, line + start, i - start, lineno);  /* the usual case: one line, no copy */
    } else {
      add_doc_bytes(r, line + start, i - start);
      if (r->depth == 0) close_doc(r);
    }
  }
}

static int read_file(reader *r, FILE *f) {
  char *line = NULL;
  size_t cap = 0, lineno = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) >= 0) scan_line(r, line, (size_t)len, ++lineno);
  int rc = ferror(f) ? -errno : 0;
  while (r->depth > 0) abandon(r, "document not closed at end of file, skipped");
  reset_doc(r);
  free(line);
  return rc;
}

/* Reads one file (or stdin); 0, or -1 when it cannot be opened or read (reported). */
static int load_one(reader *r, const char *path) {
  int is_stdin = strcmp(path, "-") == 0, failed = 0;
  FILE *f = is_stdin ? stdin : fopen(path, "r");
  r->name = is_stdin ? "<stdin>" : path;
  r->bad = 0;
  if (!f) {
    ss__err("%s: %s", path, strerror(errno));
    return -1;
  }
  int rc = read_file(r, f);
  if (rc < 0) {
    ss__err("%s: %s", r->name, strerror(-rc));
    failed = 1;
  }
  if (!is_stdin) fclose(f);
  if (r->bad > SS_LOAD_MAX_REPORTS)
    ss__err("%s: %zu more malformed line%s not reported", r->name,
            r->bad - SS_LOAD_MAX_REPORTS, r->bad - SS_LOAD_MAX_REPORTS == 1 ? "" : "s");
  return failed ? -1 : 0;
}

/* The logs file spanshimd writes beside a traces file (spanshim-traces.jsonl →
 * spanshim-logs.jsonl), when it exists and is not one of the files named; NULL else. */
static const char *logs_beside(const char *path, char *const *paths, size_t n_paths) {
  char a[PATH_MAX], b[PATH_MAX];
  struct stat st;
  if (strcmp(path, "-") == 0) return NULL;
  const char *logs = ss__beside(path, "logs");
  if (strcmp(logs, path) == 0 || stat(logs, &st) != 0 || !S_ISREG(st.st_mode) ||
      !realpath(logs, a))
    return NULL;
  for (size_t i = 0; i < n_paths; i++)
    if (strcmp(paths[i], "-") != 0 && realpath(paths[i], b) && strcmp(a, b) == 0) return NULL;
  return logs;
}

long ss__load_files(ss__tm *m, char *const *paths, size_t n_paths, ss__docs *docs) {
  reader r;
  memset(&r, 0, sizeof(r));
  r.m = m;
  r.docs = docs;
  int failed = 0;
  for (size_t i = 0; i < n_paths; i++) {
    if (load_one(&r, paths[i]) < 0) failed = 1;
    const char *logs = logs_beside(paths[i], paths, n_paths);
    char copy[PATH_MAX];
    if (logs && snprintf(copy, sizeof(copy), "%s", logs) < (int)sizeof(copy)) {
      size_t ok = r.ok;
      if (load_one(&r, copy) < 0) failed = 1;
      r.ok = ok;  /* a logs file alone does not make the traces file readable */
    }
  }
  ss__buf_free(&r.doc);
  free(r.line_off);
  if (ss__tm_link_exceptions(m) < 0) ss__err("out of memory linking exception records");
  return failed ? -1 : (long)r.ok;
}

void ss__docs_free(ss__docs *d) {
  ss__buf_free(&d->text);
  free(d->off);
  free(d->len);
  memset(d, 0, sizeof(*d));
}
