/* triage.h - questions asked of a span model from the command line: which traces match
 * (--errors, --slower-than, --service, --trace, --grep, --limit), the RED table per
 * service and span name (--summary, and the HTML report's services view), the matching
 * spans written back as OTLP JSON lines (--json).
 *
 * Everything here reads or filters a model the caller owns; scratch memory is freed
 * before returning. Single-threaded. */
#ifndef SS_TRIAGE_H
#define SS_TRIAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tools/common/trace_model.h"
#include "tools/spanshim/load.h"

/* The spans of a model grouped by trace. */
typedef struct ss__trace {
  const ss__tm_span **sp;   /* its spans, by start time (points into ss__traces.sp) */
  size_t n;
  uint64_t start_ns, end_ns; /* earliest start, latest end */
  size_t errors;            /* spans with status ERROR */
} ss__trace;

typedef struct ss__traces {
  const ss__tm_span **sp;   /* all spans, grouped by trace */
  ss__trace *t;             /* traces by start time (ties: trace id) */
  size_t n;
} ss__traces;

/* Groups m's spans; 0 or -ENOMEM. The result points into m: free it before m changes. */
int ss__traces_build(const ss__tm *m, ss__traces *out);
void ss__traces_free(ss__traces *t);

typedef struct ss__filter {
  int errors;               /* a span with status ERROR */
  uint64_t slower_ns;       /* a span lasting at least this (0: off) */
  const char *service;      /* a span of this service.name (exact) */
  const char *trace;        /* trace id starts with this (hex, any case) */
  const char *grep;         /* a span whose name or attribute value contains this,
                               ignoring case */
  size_t limit;             /* at most this many traces, the earliest first (0: all) */
} ss__filter;

/* Whether the filter asks anything at all. */
int ss__filter_active(const ss__filter *f);

/* Keeps only the traces that match every condition of f (a trace matches a condition
 * when one of its spans does), whole. Returns the number of traces kept, or -ENOMEM
 * (model unchanged). */
long ss__select(ss__tm *m, const ss__filter *f);

/* One row of the RED table. */
typedef struct ss__red_row {
  const char *service, *name;   /* point into the model */
  const char *kind;             /* "server", "client", "internal", "producer", "consumer"
                                   or "" (unspecified): a service's answers and its calls
                                   to others are rows of their own */
  size_t count, errors;
  double rate;                  /* spans per second over the model's time window */
  uint64_t p50, p95, p99;       /* duration percentiles (nearest rank), ns */
} ss__red_row;

/* The RED table of m, by service, span name and kind, in *rows (caller frees) and *n; the
 * window (first start to last end, seconds) in *window_s. 0 or -ENOMEM. */
int ss__red(const ss__tm *m, ss__red_row **rows, size_t *n, double *window_s);

/* Prints the RED table. 0, -ENOMEM or -EIO. */
int ss__red_print(FILE *out, const ss__tm *m);

/* Writes each stored document again with only the spans whose trace is in m (resource
 * and scope kept; documents left with no span skipped), one per line, member names in
 * lowerCamelCase whatever the input used. 0, -ENOMEM or -EIO. */
int ss__json_matching(FILE *out, const ss__tm *m, const ss__docs *docs);

#endif
