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
 * code.function.name. Exporter thread only; memory lives until ss__exc_reset. */
#ifndef SS_EXCEPTIONS_H
#define SS_EXCEPTIONS_H

#include <stddef.h>

#include "runtime/attr.h"

typedef struct ss__exc_batch {
  struct ss__exc_block *blocks; /* owned strings and arrays */
  ss__logrec *logs;             /* exception log records of this batch */
  size_t n_logs, cap_logs;
  int max_frames;               /* frames shown (SPANSHIM_STACK_DEPTH); 0: all captured */
} ss__exc_batch;

/* Rewrites s (attrs is its writable array, with room for attrs_cap entries) and adds a
 * log record to b when `signals` (SS_EXC_*) asks for one. Returns 0, or -ENOMEM (the
 * span is then exported without its exception parts). */
int ss__exc_span(ss__exc_batch *b, ss__span *s, ss__attr *attrs, size_t attrs_cap,
                 unsigned signals);
/* Frees everything of the batch. */
void ss__exc_reset(ss__exc_batch *b);

#endif
