/* perfetto.h - spans as Chrome trace event JSON, the format ui.perfetto.dev and
 * chrome://tracing open.
 *
 * Each process (resource: process.pid, else one number per resource) becomes a process
 * named after its service; each trace gets tracks (threads) of its own, named "trace
 * <id>", with its spans as complete ("X") events stacked on as few tracks as keep every
 * span properly nested. Timestamps are microseconds from the earliest span (with the
 * nanoseconds kept as decimals); "args" carry the span's ids, kind, status and
 * attributes. Reads the model, allocates scratch memory and frees it before returning;
 * not thread-safe for one FILE. */
#ifndef SS_PERFETTO_H
#define SS_PERFETTO_H

#include <stdio.h>

#include "tools/common/trace_model.h"

/* Writes the whole document to out. 0, -ENOMEM, or -EIO when writing failed. */
int ss__perfetto_write(FILE *out, const ss__tm *m);

#endif
