/* config.h - configuration from the environment (OTEL_* and SPANSHIM_*).
 *
 * Read once, at init, never on a hot path. Every malformed or unknown value produces one
 * diagnostic line (level warn) and the documented default; loading never fails. The
 * strings in ss__config are owned by it (in its text[] while that has room, else on the
 * heap; ss__config_free gives them back) and live for the process. A loaded ss__config
 * is not to be copied: its strings may point into its own text[]. */
#ifndef SS_CONFIG_H
#define SS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/ids.h"

/* Hook families, for SPANSHIM_HOOKS. */
enum {
  SS_HOOK_SOCKET = 1 << 0,
  SS_HOOK_DNS = 1 << 1,
  SS_HOOK_LIBPQ = 1 << 2,
  SS_HOOK_LIBCURL = 1 << 3,
  SS_HOOK_PROCESS = 1 << 4,
  SS_HOOK_HTTP = 1 << 5, /* HTTP/1.x spans from socket reads and writes */
  SS_HOOK_TLS = 1 << 6,  /* the same through OpenSSL and GnuTLS */
  SS_HOOK_ALL = (1 << 7) - 1,
};

enum ss__sampler {
  SS_SAMPLER_ALWAYS_ON,
  SS_SAMPLER_ALWAYS_OFF,
  SS_SAMPLER_RATIO,
  SS_SAMPLER_PB_ALWAYS_ON,   /* parentbased_always_on (default) */
  SS_SAMPLER_PB_ALWAYS_OFF,
  SS_SAMPLER_PB_RATIO,
};

typedef struct ss__config {
  int disabled;                  /* OTEL_SDK_DISABLED=true: no spans, no export; context
                                    received is still passed on (as the no-op API does) */
  char *service_name;            /* OTEL_SERVICE_NAME, or NULL */
  char *resource_attributes;     /* OTEL_RESOURCE_ATTRIBUTES, raw, or NULL */
  int sampler;                   /* enum ss__sampler */
  double sampler_ratio;          /* OTEL_TRACES_SAMPLER_ARG, default 1.0 */
  char *endpoint;                /* "unix:/path" or "http://host:port/path" (traces URL;
                                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT used as given) */
  uid_t default_socket_uid;      /* the endpoint is the default socket, worked out for this
                                    effective uid; (uid_t)-1 when one was configured */
  char *headers;                 /* OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, raw, or NULL */
  uint32_t export_timeout_ms;    /* OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT, default 10000 */
  uint32_t schedule_delay_ms;    /* OTEL_BSP_SCHEDULE_DELAY, default 5000 */
  uint32_t max_export_batch;     /* OTEL_BSP_MAX_EXPORT_BATCH_SIZE, default 512 */
  uint32_t max_queue;            /* OTEL_BSP_MAX_QUEUE_SIZE, default 2048 (spans) */
  uint32_t attr_value_limit;     /* OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, default 4096 */
  uint32_t hooks;                /* SPANSHIM_HOOKS, default SS_HOOK_ALL */
  int log_level;                 /* SPANSHIM_LOG_LEVEL, else OTEL_LOG_LEVEL, default off */
  char *log_file;                /* SPANSHIM_LOG_FILE, or NULL (stderr) */
  uint32_t exit_flush_ms;        /* SPANSHIM_EXIT_FLUSH_MS, default 100 */
  ss__ctx parent;                /* TRACEPARENT, if valid */
  char *tracestate;              /* TRACESTATE, or NULL */
  char *baggage;                 /* BAGGAGE, or NULL (passed on to children as is) */
  uint32_t propagators;          /* OTEL_PROPAGATORS, default tracecontext,baggage */
  int process_span;              /* SPANSHIM_PROCESS_SPAN, default 0 (1 under spanshim run) */
  int stack_depth;               /* SPANSHIM_STACK_DEPTH, default 32, 0..128 */
  int own_fd_table;              /* SPANSHIM_EXPORTER_FD_TABLE: 1 own (default), 0 shared */
  uint32_t exception_signal;     /* SS_EXC_*: SPANSHIM_EXCEPTION_SIGNAL and
                                    OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN, default both */
  uint32_t traces_exporter;      /* SS_EXPORT_*: OTEL_TRACES_EXPORTER, default OTLP */
  uint32_t logs_exporter;        /* SS_EXPORT_*: OTEL_LOGS_EXPORTER, default OTLP */
  char *logs_endpoint;           /* OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (as given), or
                                    OTEL_EXPORTER_OTLP_ENDPOINT + /v1/logs, or NULL (the
                                    traces endpoint with /v1/logs for /v1/traces) */
  char *logs_headers;            /* OTEL_EXPORTER_OTLP_LOGS_HEADERS, raw, or NULL (headers) */
  uint32_t logs_timeout_ms;      /* OTEL_EXPORTER_OTLP_(LOGS_)TIMEOUT, default 10000 */
  char *redact_query_keys;       /* SPANSHIM_REDACT_QUERY_KEYS, raw, or NULL: extra query
                                    keys for url.full/url.query redaction (handed to
                                    ss__url_redact_keys_set by ss__config_load) */
  int command_args;              /* SPANSHIM_COMMAND_ARGS: SS_ARGS_*, default redacted */
  int db_error_messages;         /* SPANSHIM_DB_ERROR_MESSAGES: SS_DBMSG_*, default masked */
  size_t text_used;              /* private: bytes of text[] in use */
  char text[448];                /* private: the strings above, while they fit (no malloc at
                                    start for the usual endpoint and context strings) */
} ss__config;

/* process.command_args: credentials redacted, as given, or not recorded. */
enum { SS_ARGS_REDACTED, SS_ARGS_FULL, SS_ARGS_NONE };
/* Database servers' error messages: values masked (and text written by the database's own
 * code - RAISE, procedural languages - replaced by the SQLSTATE's condition name), or as the server wrote
 * them (credentials still redacted). */
enum { SS_DBMSG_MASKED, SS_DBMSG_FULL };

enum { SS_EXC_LOG = 1 << 0, SS_EXC_EVENT = 1 << 1 };

/* OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER (comma-separated): otlp, console (one JSON
 * line per span or record in the shim's diagnostics: SPANSHIM_LOG_FILE or stderr), none. */
enum { SS_EXPORT_OTLP = 1 << 0, SS_EXPORT_CONSOLE = 1 << 1 };

enum { SS_PROP_TRACECONTEXT = 1 << 0, SS_PROP_BAGGAGE = 1 << 1 };

typedef char *(*ss__getenv_fn)(const char *name);

/* The log level named by v (off/none, error/fatal, warn, info, debug/trace; any case), or
 * -1. For SPANSHIM_LOG_LEVEL and OTEL_LOG_LEVEL, read before the rest of the configuration. */
int ss__config_log_level(const char *v);

/* Fills *c from the environment through `get` (getenv in the shim; a table in tests).
 * Diagnostics go through ss__log at SS_LOG_WARN; call ss__log_setup first if they should
 * be seen. Returns the number of diagnostics issued. */
int ss__config_load(ss__config *c, ss__getenv_fn get);
void ss__config_free(ss__config *c);

/* Whether the shim can use v as the value of the endpoint variable `name`
 * (SPANSHIM_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT),
 * judged exactly as ss__config_load judges it: 0, or -1 with why[] (at most n bytes, NUL
 * ended) saying what is wrong, the shim then using the default socket instead. For tools
 * that must say what the shim will do (spanshim run). Thread-safe; allocates. */
int ss__config_endpoint_check(const char *name, const char *v, char *why, size_t n);

/* The default collector socket: $XDG_RUNTIME_DIR/spanshim/collector.sock, else
 * /tmp/spanshim-$UID/collector.sock, $UID being the effective uid (a setuid program's
 * default is its owner's socket, never its caller's). Writes at most n bytes; returns 0
 * or -1 if too long. */
int ss__default_socket_path(char *out, size_t n, ss__getenv_fn get);

#endif
