/* waterfall.h - the terminal picture of traces: one block per trace, spans as a tree with
 * a time bar each.
 *
 * Traces are ordered by their first start; spans form a tree by parent id (children by
 * start), spans whose parent is not in the model sit at the top of their trace marked
 * `↳`. Runs of one-span traces from the same process are listed under one process
 * heading so programs that make many unrelated calls still read well. Attribute values
 * are sanitized (control characters, and so terminal escapes, become spaces) before they
 * reach the terminal.
 *
 * Rendering reads the model and writes to `out`; it allocates scratch memory and frees it
 * before returning. Not thread-safe for one FILE, otherwise stateless. */
#ifndef SS_WATERFALL_H
#define SS_WATERFALL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/common/trace_model.h"

typedef struct ss__wf_opts {
  int color;          /* ANSI colours and bold; the caller decides (TTY, NO_COLOR) */
  int bar_width;      /* columns of the time bar; <= 0: SS_WF_BAR_WIDTH */
  int label_width;    /* most columns for tree + name + details; <= 0: SS_WF_LABEL_WIDTH */
  size_t max_traces;  /* traces shown before "... N more traces"; 0: SS_WF_MAX_TRACES */
  size_t max_rows;    /* spans shown per trace; 0: SS_WF_MAX_ROWS */
  int summary;        /* after the picture: the slowest spans and the failing ones */
  int stacks;         /* under a failed span: the first frames of its exception stack */
} ss__wf_opts;

#define SS_WF_BAR_WIDTH 30
#define SS_WF_LABEL_WIDTH 64
#define SS_WF_MAX_TRACES 200
#define SS_WF_MAX_ROWS 500
#define SS_WF_SLOWEST 5     /* spans listed under "slowest" */
#define SS_WF_FAILING 10    /* spans listed under "failing" */
#define SS_WF_STACK_FRAMES 6 /* frames shown under a failed span */

/* Writes the waterfall of every span in m, then a summary line. Returns 0, -ENOMEM (some
 * output may have been written) or -EIO when writing to out failed. */
int ss__waterfall(FILE *out, const ss__tm *m, const ss__wf_opts *o);

/* A duration for people: "850 ns", "1.25 µs", "12.3 ms", "123 ms", "4.50 s", "2m05s",
 * "1h02m". Always NUL-terminated. */
void ss__wf_duration(uint64_t ns, char *out, size_t n);

#endif
