/* html.h - the trace report as one self-contained HTML file (`spanshim view --html`,
 * `spanshim run --html`).
 *
 * The file holds everything it needs: the page (tools/spanshim/report/report.html), its
 * style and script (report.css, report.js; hand-written, no library), built into the
 * binary, and the spans as JSON, gzip'd and base64-encoded (a third of the size: a big
 * report reads and parses faster), in a <script> element the page inflates with the
 * browser's own DecompressionStream. A Content-Security-Policy of default-src 'none'
 * means the page can fetch nothing, so it opens offline from file:// and never calls
 * out. Span data reaches the page only as base64 (no value can close the script
 * element) and goes into the DOM as text, never as markup.
 *
 * The JSON is shaped for a fast start with 100k+ spans: spans come grouped by trace in
 * tree order (depth-first, children by start time) with their depth and parent index,
 * names and attribute keys are interned, times are nanoseconds from the earliest span,
 * and the RED table is computed here (the same numbers as `view --summary`).
 * Single-threaded; scratch memory is freed before returning. */
#ifndef SS_HTML_H
#define SS_HTML_H

#include <stddef.h>
#include <stdio.h>

#include "tools/common/trace_model.h"

typedef struct ss__html_opts {
  const char *const *files;  /* shown in the header */
  size_t n_files;
} ss__html_opts;

/* Writes the report of m. 0, -ENOMEM or -EIO. */
int ss__html_write(FILE *out, const ss__tm *m, const ss__html_opts *o);

/* The page, script and style built in (NUL-terminated). */
extern const char ss__report_html[], ss__report_js[], ss__report_css[];

#endif
