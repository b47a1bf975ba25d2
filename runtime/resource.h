/* resource.h - the OTel resource of this process.
 *
 * service.name (OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, else
 * unknown_service:<exe>), OTEL_RESOURCE_ATTRIBUTES (percent-decoded), process.pid,
 * process.executable.name, host.name, telemetry.sdk.{name,language,version}. Built off
 * the app thread (allocates); rebuilt in a fork child for the new pid. */
#ifndef SS_RESOURCE_H
#define SS_RESOURCE_H

#include "runtime/attr.h"
#include "runtime/config.h"

#define SPANSHIM_VERSION "0.1.0"
/* The semantic-conventions version the shim's attributes follow (OTLP schema_url of every
 * ResourceSpans/ScopeSpans and ResourceLogs/ScopeLogs it sends). */
#define SS_SCHEMA_URL "https://opentelemetry.io/schemas/1.40.0"

/* Returns 0, or -ENOMEM with *r zeroed. Malformed OTEL_RESOURCE_ATTRIBUTES entries are
 * skipped with one diagnostic. */
int ss__resource_build(ss__resource *r, const ss__config *c);
/* The same into the caller's memory (r then owns nothing: never ss__resource_free it):
 * attrs has room for max_attrs entries, storage for cap bytes. No allocation; reads two
 * /proc files (runtime/ownfd.h births) and formats with snprintf: async-signal-safe as
 * far as snprintf and sscanf are (the shim's diagnostics make the same assumption). 0, or
 * -ENOBUFS when the memory is too small (OTEL_RESOURCE_ATTRIBUTES that long). */
int ss__resource_build_in(ss__resource *r, const ss__config *c, ss__attr *attrs,
                          size_t max_attrs, char *storage, size_t cap);
void ss__resource_free(ss__resource *r);
/* pthread_atfork prepare handler: the fork's time, read in the parent (a child reads no
 * clock for it: libc's clock_gettime and the vDSO are pages of code a child that makes no
 * span would fault in for that alone). */
void ss__resource_atfork_prepare(void);
/* pthread_atfork child handler: the child's process.creation.time is the fork's (async-
 * signal-safe). */
void ss__resource_forked(void);

#endif
