/* console.h - the `console` exporter of OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER.
 *
 * One JSON object per line, written to the shim's diagnostics (SPANSHIM_LOG_FILE, else
 * stderr) whatever the log level: {"span":{name, traceId, spanId, parentSpanId, traceState,
 * flags, kind, startTimeUnixNano, endTimeUnixNano, durationNs, status, attributes, events,
 * resource}} or {"log":{eventName, timeUnixNano, severityNumber, traceId, spanId,
 * attributes, resource}} (resource: service.name and process.pid). Ids are hex, times
 * strings as in OTLP JSON, attributes a plain object. A line is at most 16 KiB: what does
 * not fit is left out from the first field that overflows and the line says
 * "truncated":true. For debugging, as the SDKs' console exporters: not a stable format.
 * Exporter thread (or the exiting thread); 16 KiB of stack, no allocation. */
#ifndef SS_CONSOLE_H
#define SS_CONSOLE_H

#include <stddef.h>

#include "runtime/attr.h"

void ss__console_spans(const ss__resource *res, const ss__span *spans, size_t n);
void ss__console_logs(const ss__resource *res, const ss__logrec *logs, size_t n);

#endif
