/* attr.h - span attributes and the decoded span.
 *
 * An ss__attr points at memory it does not own: the caller keeps keys and values alive for
 * as long as the attribute is used. ss__span is the decoded, pointer-based form of a span
 * that the OTLP encoder consumes; it is built on the exporter thread from ring records and
 * by the tools. Nothing here allocates; nothing here is thread-shared. */
#ifndef SS_ATTR_H
#define SS_ATTR_H

#include <stddef.h>
#include <stdint.h>

enum ss__attr_type {
  SS_ATTR_STR = 1,
  SS_ATTR_INT = 2,
  SS_ATTR_BOOL = 3,
  SS_ATTR_DOUBLE = 4,
  /* Array of strings: `len` bytes of NUL-terminated items back to back. */
  SS_ATTR_STRARR = 5,
  /* Raw return addresses (uint64_t each, len bytes), innermost first: a failure's stack.
   * Never exported as is: the exporter symbolizes it into an exception event/log. */
  SS_ATTR_STACK = 6,
};

typedef struct ss__attr {
  const char *key;
  uint8_t type;   /* enum ss__attr_type */
  uint32_t len;   /* STR, STRARR: bytes of value (STR needs no NUL) */
  union {
    const char *s;
    int64_t i;
    double d;
  } v;
} ss__attr;

/* OTLP SpanKind and StatusCode values, so they go on the wire as they are. */
enum { SS_KIND_INTERNAL = 1, SS_KIND_SERVER = 2, SS_KIND_CLIENT = 3, SS_KIND_PRODUCER = 4,
       SS_KIND_CONSUMER = 5 };
enum { SS_STATUS_UNSET = 0, SS_STATUS_OK = 1, SS_STATUS_ERROR = 2 };

/* A span event (OTLP Span.Event); also the shape of an exception log record's content. */
typedef struct ss__event {
  const char *name;
  uint64_t time_ns;
  const ss__attr *attrs;
  size_t n_attrs;
} ss__event;

typedef struct ss__span {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_id[8];        /* all zero: a root span */
  uint8_t flags;               /* W3C trace flags; bit 0 = sampled */
  uint8_t kind;                /* SS_KIND_* */
  uint8_t status;              /* SS_STATUS_* */
  uint8_t no_stack;            /* 1: known to carry no SS_ATTR_STACK attribute (its ring
                                  record said so); 0: it may (looked for) */
  const char *name;
  const char *status_message;  /* may be NULL */
  uint32_t status_message_len;
  uint64_t start_ns, end_ns;   /* Unix epoch nanoseconds */
  const ss__attr *attrs;
  size_t n_attrs;
  const ss__event *events;     /* may be NULL */
  size_t n_events;
  uint64_t caller;             /* return address into the code that made the call, or 0 */
  const char *trace_state;     /* W3C tracestate of the span's context, or NULL */
  uint32_t trace_state_len;
} ss__span;

/* An OTLP log record about a span (the exception record of a failed call). */
typedef struct ss__log {
  uint64_t time_ns;
  const char *event_name;      /* "exception" */
  int severity;                /* OTLP SeverityNumber (17 = ERROR) */
  const char *body;            /* may be NULL */
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t flags;
  const ss__attr *attrs;
  size_t n_attrs;
} ss__logrec;

/* The instrumentation scope of a batch; its attributes carry the shim's own counters
 * (spanshim.spans.dropped). */
typedef struct ss__scope {
  const char *name;
  const char *version;
  const ss__attr *attrs;
  size_t n_attrs;
} ss__scope;

/* The resource of a process: attributes plus the storage they point into (owned). */
typedef struct ss__resource {
  ss__attr *attrs;
  size_t n_attrs;
  char *storage;
} ss__resource;

#endif
