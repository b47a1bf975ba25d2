/* otlp.h - OTLP protobuf encoding of spans, via protobuf-c (generated into build/gen).
 *
 * Pure functions: callers own inputs and outputs; the encoded buffer is malloc'd and the
 * caller frees it. Used by the shim's exporter thread (never on an app thread) and by the
 * tools. */
#ifndef SS_OTLP_H
#define SS_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/attr.h"

/* Encodes an ExportTraceServiceRequest with one ResourceSpans holding one ScopeSpans.
 * Returns 0 and a malloc'd buffer in *out (length in *out_len), or -ENOMEM. */
int ss__otlp_encode_traces(const ss__resource *res, const ss__scope *scope,
                           const ss__span *spans, size_t n, uint8_t **out, size_t *out_len);

/* Encodes an ExportLogsServiceRequest with one ResourceLogs holding one ScopeLogs (the
 * scope's name and version only). Same ownership and errors as above. */
int ss__otlp_encode_logs(const ss__resource *res, const ss__scope *scope,
                         const ss__logrec *logs, size_t n, uint8_t **out, size_t *out_len);

#endif
