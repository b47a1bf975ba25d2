/* exceptions.h - the exporter's second pass over a decoded span: code attribution and
 * exception records.
 *
 * A span that carries a raw stack (see span.h: ss__span_error, ss__rec_finish) failed; it
 * gets an `exception` span event and/or an `exception` OTLP log record correlated to it
 * (SPANSHIM_EXCEPTION_SIGNAL / OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN), with exception.type
 * (error.type), exception.message (the status message) and exception.stacktrace written
 * like gdb's `bt` ("#N 0xADDR in function (module+0xoffset)"), frames inside the shim left
 * out; spanshim.stack.modules lists "build-id path" for every module named, so the
 * collector can add file:line from DWARF. A span whose outermost caller is known gets
 * code.function.name. Exporter thread only; symbolizing takes the loader lock (stack.h).
 * What it makes lives until ss__exc_reset. */
#ifndef SS_EXCEPTIONS_H
#define SS_EXCEPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/attr.h"

/* The last callers of a batch and their function names (copies in the batch's blocks):
 * most spans of a batch come from a few call sites, symbolized once per batch. */
#define SS_EXC_CALLERS 8
typedef struct ss__exc_caller {
  uint64_t caller;  /* 0: empty */
  const char *name; /* NULL: no name to give */
  uint32_t len;
} ss__exc_caller;

typedef struct ss__exc_batch {
  struct ss__exc_block *blocks; /* owned strings and arrays */
  ss__exc_caller callers[SS_EXC_CALLERS];
  ss__logrec *logs;             /* exception log records of this batch */
  size_t n_logs, cap_logs;
  int max_frames;               /* frames shown (SPANSHIM_STACK_DEPTH); 0: all captured */
} ss__exc_batch;

/* Rewrites s (attrs is its writable array, with room for attrs_cap entries) and adds a
 * log record to b when `signals` (SS_EXC_*) asks for one. Returns 0, or -ENOMEM (the
 * span is then exported without its exception parts). */
int ss__exc_span(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t attrs_cap,
                 unsigned signals);
/* The same for a dying thread's signal-safe encoder (a process killed by a fault before
 * it started an exporter thread): no allocation, no lock, no stdio. Frames are named by
 * module and offset (_dl_find_object, glibc 2.35+, and the module's build-id note read in
 * memory), without function names (spanshimd adds file:line by build id); frames inside
 * the shim are left out. What it makes lives in static storage until the next call: one
 * caller at a time (the dying thread, under the exporter's exit lock), and the span and
 * *log must be encoded before it is called again. Returns 1 when *log was made (signals
 * asks for a log record), 0 when not (no stack, or no log wanted), -1 when it could not
 * be (the span then goes without its exception parts). */
int ss__exc_span_sigsafe(ss__span *s, ss__attr *attrs, size_t attrs_cap, unsigned signals,
                         int max_frames, ss__logrec *log);
/* Empties the batch for the next one: what it points to is gone; one block of memory and
 * the records' array are kept for reuse (the batch holds them for its owner's life). */
void ss__exc_reset(ss__exc_batch *b);

#endif
