/* load.h - reading span files for `spanshim view` and `run`: OTLP JSON lines, also
 * pretty-printed (one object over many lines) or concatenated documents.
 *
 * A document starts at a '{' and ends where its braces balance (strings and escapes are
 * followed, so braces inside values do not count). A line that starts with '{' in column
 * 0 while a document is still open means the open one was cut short (a writer died
 * mid-line): it is reported as truncated and the new line starts afresh, so one bad line
 * never swallows the rest of a file; the lines the open one had taken (up to
 * SS_LOAD_RESCAN_LINES of them) are read again on their own, so each bad line among JSON
 * lines is reported with its own number. Anything else outside a document is reported as
 * malformed with its line number. Reports go to stderr ("spanshim: FILE:LINE: what"),
 * the first SS_LOAD_MAX_REPORTS one by one, the rest counted.
 *
 * Single-threaded; the caller owns the model and the optional document store. */
#ifndef SS_LOAD_H
#define SS_LOAD_H

#include <stddef.h>

#include "tools/common/buf.h"
#include "tools/common/trace_model.h"

#define SS_LOAD_MAX_REPORTS 20
#define SS_LOAD_RESCAN_LINES 64  /* an unclosed document over more lines is skipped whole */
#define SS_LOAD_MAX_DOC (1u << 30)  /* one document larger than this is skipped, reported */

/* The raw text of every document read, when the caller wants to write parts of them back
 * (`view --json`). doc i is text.data[off[i] .. off[i]+len[i]). */
typedef struct ss__docs {
  ss__buf text;
  size_t *off, *len;
  size_t n, cap;
} ss__docs;

/* Reads every document of the files (path "-" is stdin) into m, keeping their text in
 * docs when docs is not NULL; for each file, also the logs file spanshimd writes beside
 * it (ss__beside: spanshim-traces.jsonl → spanshim-logs.jsonl, spans.jsonl →
 * spans.logs.jsonl) when it exists and is not named itself; then links exception log
 * records to their spans. Returns
 * the number of documents read successfully (traces, logs or metrics), or -1 when a file
 * could not be opened or read (reported; the others are still read). */
long ss__load_files(ss__tm *m, char *const *paths, size_t n_paths, ss__docs *docs);

void ss__docs_free(ss__docs *d);

#endif
