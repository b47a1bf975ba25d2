/* trace_model.h - spans read back from OTLP JSON lines, for viewing.
 *
 * Each line of a spanshimd output file is one OTLP JSON TracesData object
 * ({"resourceSpans":[...]}), LogsData object ({"resourceLogs":[...]}) or, from other
 * writers, MetricsData ({"resourceMetrics":[...]}, counted and skipped). Field names may be
 * lowerCamelCase (the OTLP JSON encoding) or the proto's snake_case. ss__tm_add_line
 * flattens the spans of one document into the model, each span pointing at its resource
 * (identical resources are shared, so a process that sent many batches has one); from
 * logs it keeps the exception records (exception.type/message/stacktrace with a trace and
 * span id) and counts the rest. ss__tm_link_exceptions then gives spans whose exception
 * went only to the logs their stack. The model copies what it keeps, so the line and its
 * parse tree can go right away. Tolerant where the data is merely
 * incomplete (a missing status, end time or attribute gives a default); strict where
 * the line is not TracesData/LogsData JSON at all (an error with the byte offset).
 *
 * Ownership: the model owns every span, resource and string in it; ss__tm_free releases
 * all. Not thread-safe; one model per thread. */
#ifndef SS_TRACE_MODEL_H
#define SS_TRACE_MODEL_H

#include <stddef.h>
#include <stdint.h>

enum ss__tm_type { SS_TM_STR = 1, SS_TM_INT, SS_TM_BOOL, SS_TM_DOUBLE, SS_TM_OTHER };

typedef struct ss__tm_attr {
  char *key;
  int type;        /* enum ss__tm_type; arrays and kvlists are SS_TM_OTHER */
  int64_t i;       /* INT (and BOOL as 0/1) */
  char *text;      /* the value as text; arrays of strings are joined shell-style */
} ss__tm_attr;

typedef struct ss__tm_resource {
  ss__tm_attr *attrs;
  size_t n_attrs;
  size_t idx;      /* its index in ss__tm.res */
  uint64_t hash;   /* private: of the attributes, to share identical resources */
} ss__tm_resource;

typedef struct ss__tm_event {
  char *name;
  uint64_t time_ns;
  ss__tm_attr *attrs;
  size_t n_attrs;
} ss__tm_event;

/* An exception log record (or span event): which span it belongs to and what it says. */
typedef struct ss__tm_exception {
  char trace_id[33], span_id[17];  /* "" when the record names none */
  char *type, *message, *stack;    /* each NULL when absent */
} ss__tm_exception;

typedef struct ss__tm_span {
  char trace_id[33];     /* lower-case hex as found; "" never (such spans are skipped) */
  char span_id[17];
  char parent_id[17];    /* "" for a root span */
  char *name;
  int kind;              /* OTLP SpanKind number (0 unspecified) */
  int status;            /* OTLP StatusCode number: 0 unset, 1 ok, 2 error */
  char *status_message;  /* NULL when none */
  uint64_t start_ns, end_ns;  /* end_ns 0: unknown */
  ss__tm_attr *attrs;
  size_t n_attrs;
  ss__tm_event *events;  /* in input order */
  size_t n_events;
  char *stack;           /* exception.stacktrace of its exception event or log record */
  char *exc_type;        /* exception.type of the same, or NULL */
  char *exc_message;     /* exception.message of the same, or NULL */
  const ss__tm_resource *res; /* never NULL */
  size_t line;           /* 1-based line of the input it came from */
} ss__tm_span;

typedef struct ss__tm {
  ss__tm_span *spans;    /* in input order */
  size_t n_spans, cap_spans;
  ss__tm_resource **res;
  size_t n_res, cap_res;
  size_t max_spans;      /* 0: no cap; spans beyond it are counted in n_dropped */
  size_t n_dropped;      /* spans not kept because of max_spans */
  size_t n_invalid;      /* spans without usable ids, skipped */
  size_t n_log_records;  /* log records seen in resourceLogs lines, the shim's drop
                          * reports (spanshim.*.dropped events) not included */
  size_t n_shim_spans_dropped; /* spans the shim's drop reports say it dropped */
  size_t n_shim_logs_dropped;  /* exception log records they say it dropped */
  ss__tm_exception *exc; /* exception log records with a span id, in input order */
  size_t n_exc, cap_exc;
  size_t n_metrics_lines;/* resourceMetrics documents skipped */
  size_t *res_tab;       /* private: hash table of res indexes + 1 (0: empty) */
  size_t res_tab_cap;
  size_t n_lines;        /* lines given to ss__tm_add_line (blank ones included) */
} ss__tm;

void ss__tm_init(ss__tm *m);
void ss__tm_free(ss__tm *m);

/* Adds the spans of one document (one line of a JSON lines file, or one pretty-printed
 * object; `lineno` is where it starts, for the spans' `line`). Returns 0 for traces, 1 for
 * logs, metrics or blank input, -EINVAL for anything else (message in err) or -ENOMEM.
 * On error the model is unchanged. */
int ss__tm_add_line(ss__tm *m, const char *line, size_t len, size_t lineno, char *err,
                    size_t errn);

/* After the last document: spans without a stack of their own take the one of the
 * exception log record naming their trace and span id (type and message too). 0 or
 * -ENOMEM (spans linked so far keep what they got). */
int ss__tm_link_exceptions(ss__tm *m);

/* Keeps the spans whose keep[i] is non-zero (i indexing m->spans), in order, and frees
 * the others; resources stay. n_dropped is not changed. */
void ss__tm_keep(ss__tm *m, const unsigned char *keep);

/* The span's end, never before its start (an unknown end is its start). */
uint64_t ss__tm_end(const ss__tm_span *s);

/* Attribute `key` of a span or resource (NULL when absent). */
const ss__tm_attr *ss__tm_attr_find(const ss__tm_attr *a, size_t n, const char *key);
const ss__tm_attr *ss__tm_span_attr(const ss__tm_span *s, const char *key);
const ss__tm_attr *ss__tm_res_attr(const ss__tm_resource *r, const char *key);

#endif
