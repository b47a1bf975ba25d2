/* config.c - configuration from the environment (see config.h).
 *
 * Rules shared by every variable: an empty value is the same as an unset one (as the OTel
 * SDK spec requires); enum values are case-insensitive; numbers are plain decimal digits
 * with nothing else but surrounding blanks. A bad value yields exactly one diagnostic line
 * naming the variable, the value (sanitized, at most 64 chars) and what is used instead. */
#include "runtime/config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "runtime/log.h"
#include "runtime/outbuf.h"
#include "runtime/sanitize.h"
#include "runtime/sys.h"
#include "runtime/transport.h"

#define EXIT_FLUSH_MAX_MS 60000
#define SUN_PATH_MAX 108

typedef struct loader {
  ss__getenv_fn get;
  int diags;
  ss__config *c; /* whose text[] keeps the strings; NULL: each is malloc'd */
} loader;

/* Room for n bytes of one of the config's strings: in its text[] while that has room
 * (no malloc at a process's start for the usual one or two strings: the first malloc
 * of a process that makes none itself costs its heap's first page), else malloc'd. */
static char *keep_alloc(loader *l, size_t n) {
  ss__config *c = l->c;
  if (c != NULL && n <= sizeof c->text - c->text_used) {
    char *s = c->text + c->text_used;
    c->text_used += n;
    return s;
  }
  return malloc(n);
}

static char *keep_str(loader *l, const char *v) {
  size_t n = strlen(v) + 1;
  char *s = keep_alloc(l, n);
  if (s != NULL) memcpy(s, v, n);
  return s;
}

/* Gives back s, the string keep_* returned last. */
static void unkeep(loader *l, char *s) {
  ss__config *c = l->c;
  if (c != NULL && s >= c->text && s < c->text + sizeof c->text)
    c->text_used = (size_t)(s - c->text);
  else
    free(s);
}

/* Frees a string of c's (NULL, in its text[] or malloc'd). */
static void config_str_free(ss__config *c, char *s) {
  if (c == NULL || s < c->text || s >= c->text + sizeof c->text) free(s);
}

/* The value of name, or NULL when unset or empty. */
static const char *env(loader *l, const char *name) {
  const char *v = l->get(name);
  return v != NULL && v[0] != '\0' ? v : NULL;
}

/* One line: NAME="value" <why>; using <what>. */
static void diag(loader *l, const char *name, const char *val, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void diag(loader *l, const char *name, const char *val, const char *fmt, ...) {
  char shown[64 + 4], rest[256];
  size_t i;
  va_list ap;

  for (i = 0; val[i] != '\0' && i < 64; i++)
    shown[i] = (unsigned char)val[i] < 0x20 || val[i] == 0x7f ? '?' : val[i];
  if (val[i] != '\0')
    memcpy(shown + i, "...", 3), i += 3;
  shown[i] = '\0';
  va_start(ap, fmt);
  vsnprintf(rest, sizeof(rest), fmt, ap);
  va_end(ap);
  l->diags++;
  SS_LOG(SS_LOG_WARN, "%s=\"%s\" %s", name, shown, rest);
}

static char *dup_env(loader *l, const char *name) {
  const char *v = env(l, name);
  return v != NULL ? keep_str(l, v) : NULL;
}

/* The first of two variables that is set (the signal-specific one first). */
static const char *env2(loader *l, const char *first, const char *second, const char **name) {
  const char *v = env(l, first);

  *name = first;
  if (v == NULL) {
    v = env(l, second);
    *name = second;
  }
  return v;
}

static int is_blank(char c) {
  return c == ' ' || c == '\t';
}

/* The next item of a comma-separated list at *p, blanks around it dropped: its start and
 * *len (0 for an empty item), *p moved past it; NULL at the end of the list. */
static const char *list_item(const char **p, size_t *len) {
  const char *q = *p;
  size_t n = strcspn(q, ",");
  if (*q == '\0') return NULL;
  *p = q[n] == ',' ? q + n + 1 : q + n;
  while (n > 0 && is_blank(*q)) q++, n--;
  while (n > 0 && is_blank(q[n - 1])) n--;
  *len = n;
  return q;
}

/* Strict unsigned decimal: 0 and *out, -1 for junk or signs, -2 above UINT32_MAX. */
static int parse_u32(const char *s, uint32_t *out) {
  uint64_t v = 0;
  int digits = 0;

  while (is_blank(*s))
    s++;
  for (; *s >= '0' && *s <= '9'; s++, digits++) {
    v = v * 10 + (uint64_t)(*s - '0');
    if (v > UINT32_MAX) {
      while (*s >= '0' && *s <= '9')
        s++;
      while (is_blank(*s))
        s++;
      return *s == '\0' ? -2 : -1;
    }
  }
  while (is_blank(*s))
    s++;
  if (digits == 0 || *s != '\0')
    return -1;
  *out = (uint32_t)v;
  return 0;
}

/* Reads a number in [min, max]; on any problem one diagnostic and dflt. `what` says what
 * the number is, for the diagnostic ("a number of milliseconds"). */
static uint32_t num(loader *l, const char *name, const char *v, uint32_t dflt, uint32_t min,
                    uint32_t max, const char *what) {
  uint32_t n;
  int rc;

  if (v == NULL)
    return dflt;
  rc = parse_u32(v, &n);
  if (rc == -1)
    diag(l, name, v, "is not %s; using %u", what, dflt);
  else if ((rc == -2 || n > max) && max < UINT32_MAX)
    diag(l, name, v, "is out of range (%u..%u); using %u", min, max, dflt);
  else if (rc == -2 || n < min || n > max)
    diag(l, name, v, "is out of range (%u or more, below 2^32); using %u", min, dflt);
  else
    return n;
  return dflt;
}

static void load_disabled(loader *l, ss__config *c) {
  const char *v = env(l, "OTEL_SDK_DISABLED");

  if (v == NULL || strcasecmp(v, "false") == 0)
    return;
  if (strcasecmp(v, "true") == 0)
    c->disabled = 1;
  else
    diag(l, "OTEL_SDK_DISABLED", v, "is not true or false; using false");
}

static const struct {
  const char *name;
  int sampler;
} samplers[] = {
    {"always_on", SS_SAMPLER_ALWAYS_ON},
    {"always_off", SS_SAMPLER_ALWAYS_OFF},
    {"traceidratio", SS_SAMPLER_RATIO},
    {"parentbased_always_on", SS_SAMPLER_PB_ALWAYS_ON},
    {"parentbased_always_off", SS_SAMPLER_PB_ALWAYS_OFF},
    {"parentbased_traceidratio", SS_SAMPLER_PB_RATIO},
};

static void load_sampler(loader *l, ss__config *c) {
  const char *v = env(l, "OTEL_TRACES_SAMPLER"), *arg;
  char *end;
  double d;
  size_t i;

  c->sampler = SS_SAMPLER_PB_ALWAYS_ON;
  c->sampler_ratio = 1.0;
  if (v != NULL) {
    for (i = 0; i < sizeof(samplers) / sizeof(samplers[0]); i++)
      if (strcasecmp(v, samplers[i].name) == 0)
        break;
    if (i < sizeof(samplers) / sizeof(samplers[0]))
      c->sampler = samplers[i].sampler;
    else
      diag(l, "OTEL_TRACES_SAMPLER", v, "is not a supported sampler; using "
           "parentbased_always_on");
  }
  /* The argument means something only to the ratio samplers; others ignore it. */
  arg = env(l, "OTEL_TRACES_SAMPLER_ARG");
  if (arg == NULL || (c->sampler != SS_SAMPLER_RATIO && c->sampler != SS_SAMPLER_PB_RATIO))
    return;
  d = strtod(arg, &end);
  while (is_blank(*end))
    end++;
  if (end == arg || *end != '\0' || !isfinite(d) || d < 0.0 || d > 1.0)
    diag(l, "OTEL_TRACES_SAMPLER_ARG", arg, "is not a ratio between 0 and 1; using 1.0");
  else
    c->sampler_ratio = d;
}

/* What is wrong with an endpoint value as such (NULL: nothing), before it is made a URL. */
static const char *endpoint_problem(const char *v) {
  const char *q;

  if (strncmp(v, "unix:", 5) != 0 && strncasecmp(v, "https://", 8) == 0)
    return "https is not supported by the shim; use a local spanshimd or collector";
  if (strncmp(v, "unix:/", 6) == 0) {
    q = strchr(v + 5, '?');
    if ((q != NULL ? (size_t)(q - (v + 5)) : strlen(v + 5)) < SUN_PATH_MAX)
      return NULL;
    return "is too long for a unix socket path";
  }
  if (strncmp(v, "http://", 7) == 0 && v[7] != '\0' && v[7] != '/')
    return NULL;
  return "is not a unix:/path or http://host[:port][/path] URL";
}

/* Returns 1 when the endpoint is one the shim can use, else issues one diagnostic. */
static int endpoint_ok(loader *l, const char *name, const char *v) {
  const char *why = endpoint_problem(v);
  if (why != NULL) diag(l, name, v, "%s; using the default socket", why);
  return why == NULL;
}

/* OTEL_EXPORTER_OTLP_ENDPOINT is a base URL: the signal path is appended to it. */
static char *append_path(loader *l, const char *base, const char *path) {
  size_t n = strlen(base), p = strlen(path);
  char *s;

  while (n > 0 && base[n - 1] == '/')
    n--;
  s = keep_alloc(l, n + p + 1);
  if (s != NULL) {
    memcpy(s, base, n);
    memcpy(s + n, path, p + 1);
  }
  return s;
}

/* A signal-specific endpoint is used as given (SDK spec): an http URL without a path is
 * the root, "/", not the default signal path. */
static char *as_given(loader *l, const char *v) {
  size_t a = strncmp(v, "http://", 7) == 0 ? 7 + strcspn(v + 7, "/?#") : 0;
  if (a == 0 || v[a] == '/') return keep_str(l, v);
  char *s = keep_alloc(l, strlen(v) + 2); /* "/" goes before a query or fragment, not after it */
  if (s != NULL) sprintf(s, "%.*s/%s", (int)a, v, v + a);
  return s;
}

static char *default_endpoint(loader *l) {
  char path[SUN_PATH_MAX], *s;

  if (ss__default_socket_path(path, sizeof(path), l->get) != 0)
    snprintf(path, sizeof(path), "/tmp/spanshim-%u/collector.sock", (unsigned)ss__sys_geteuid());
  s = keep_alloc(l, strlen(path) + sizeof("unix:"));
  if (s != NULL) {
    memcpy(s, "unix:", 5);
    strcpy(s + 5, path);
  }
  return s;
}

/* SPANSHIM_ENDPOINT: an http URL whose path is empty or "/" means the default, /v1/traces. */
static char *own_url(loader *l, const char *v) {
  const char *slash = strncmp(v, "http://", 7) == 0 ? strchr(v + 7, '/') : NULL;
  if (slash != NULL && slash[1] == '\0') return append_path(l, v, "/v1/traces");
  return keep_str(l, v);
}

static const char *const endpoint_names[] = {
    "SPANSHIM_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"};


/* The traces URL the endpoint variable endpoint_names[i] = v names (malloc'd), or NULL
 * with *why set when the shim cannot use it. */
static char *endpoint_url(loader *l, int i, const char *v, const char **why) {
  char *url;
  ss__endpoint ep; /* what the exporter will make of it: a bad URL means the default */

  if ((*why = endpoint_problem(v)) != NULL) return NULL;
  url = i == 2 ? append_path(l, v, "/v1/traces") : i == 1 ? as_given(l, v) : own_url(l, v);
  if (url != NULL && ss__endpoint_parse(url, "/v1/traces", &ep) != 0) {
    unkeep(l, url);
    *why = "is not a URL the shim can use (host, port or path)";
    return NULL;
  }
  return url;
}

int ss__config_endpoint_check(const char *name, const char *v, char *why, size_t n) {
  const char *w = NULL;
  char *url = NULL;
  loader l = {.get = getenv, .c = NULL};

  for (int i = 0; i < 3; i++)
    if (strcmp(name, endpoint_names[i]) == 0) url = endpoint_url(&l, i, v, &w);
  if (url == NULL && w == NULL) w = "cannot be read (no memory, or not an endpoint variable)";
  free(url);
  if (w != NULL) snprintf(why, n, "%s", w);
  return w == NULL ? 0 : -1;
}

static void load_endpoint(loader *l, ss__config *c) {
  const char *v = NULL, *why;
  int i;

  const char *logs = env(l, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
  int base_ok = 0;

  for (i = 0; i < 3 && v == NULL; i++)
    v = env(l, endpoint_names[i]);
  i--;
  if (v != NULL) {
    c->endpoint = endpoint_url(l, i, v, &why);
    base_ok = i == 2 && c->endpoint != NULL;
    if (c->endpoint == NULL && why != NULL)
      diag(l, endpoint_names[i], v, "%s; using the default socket", why);
  }
  c->default_socket_uid = (uid_t)-1;
  if (c->endpoint == NULL) {
    c->endpoint = default_endpoint(l);
    c->default_socket_uid = ss__sys_geteuid();
  }
  /* Logs: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT as given, else the base URL's /v1/logs, else
   * (NULL) beside the traces path. */
  if (logs != NULL && endpoint_ok(l, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", logs))
    c->logs_endpoint = as_given(l, logs);
  else if (logs == NULL && base_ok)
    c->logs_endpoint = append_path(l, v, "/v1/logs");
}

/* OTEL_TRACES_EXPORTER / OTEL_LOGS_EXPORTER: a comma-separated list of otlp, console,
 * none (SDK environment-variable spec). Unknown names are reported and left out; a list
 * of nothing but unknown names means the default, otlp. */
static uint32_t exporter_kinds(loader *l, const char *name) {
  const char *v = env(l, name);
  uint32_t got = 0;
  int bad = 0, none = 0;
  size_t m;

  if (v == NULL) return SS_EXPORT_OTLP;
  for (const char *p = v, *q; (q = list_item(&p, &m)) != NULL;) {
    if (m == 4 && strncasecmp(q, "otlp", 4) == 0)
      got |= SS_EXPORT_OTLP;
    else if (m == 7 && strncasecmp(q, "console", 7) == 0)
      got |= SS_EXPORT_CONSOLE;
    else if (m == 4 && strncasecmp(q, "none", 4) == 0)
      none = 1;
    else if (m > 0)
      bad = 1;
  }
  if (none) return 0;
  if (bad)
    diag(l, name, v, "names exporters the shim does not have (it has otlp, console, none); "
         "using %s", got == 0 ? "otlp" : "the ones it knows");
  return got == 0 ? SS_EXPORT_OTLP : got;
}

static void load_exporter(loader *l, ss__config *c) {
  const char *name, *v;

  v = env2(l, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL", &name);
  if (v != NULL && strcmp(v, "http/protobuf") != 0)
    diag(l, name, v, "is not supported by the shim; using http/protobuf");
  v = env2(l, "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION",
           &name);
  if (v != NULL && strcasecmp(v, "none") != 0)
    diag(l, name, v, "is not supported by the shim (it sends uncompressed to a local "
         "collector); using none");
  c->headers = dup_env(l, "OTEL_EXPORTER_OTLP_TRACES_HEADERS");
  if (c->headers == NULL)
    c->headers = dup_env(l, "OTEL_EXPORTER_OTLP_HEADERS");
  v = env2(l, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT", &name);
  c->export_timeout_ms = num(l, name, v, 10000, 1, UINT32_MAX, "a number of milliseconds");
  /* Logs: their own variables, else the generic ones (already diagnosed above when bad:
   * one line per bad value). */
  c->logs_headers = dup_env(l, "OTEL_EXPORTER_OTLP_LOGS_HEADERS");
  v = env(l, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT");
  if (v != NULL) {
    c->logs_timeout_ms = num(l, "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", v, 10000, 1, UINT32_MAX,
                             "a number of milliseconds");
  } else {
    uint32_t t;
    v = env(l, "OTEL_EXPORTER_OTLP_TIMEOUT");
    c->logs_timeout_ms = v != NULL && parse_u32(v, &t) == 0 && t >= 1 ? t : 10000;
  }
  v = env(l, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL");
  if (v != NULL && strcmp(v, "http/protobuf") != 0)
    diag(l, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", v, "is not supported by the shim; using "
         "http/protobuf");
  c->traces_exporter = exporter_kinds(l, "OTEL_TRACES_EXPORTER");
  c->logs_exporter = exporter_kinds(l, "OTEL_LOGS_EXPORTER");
}

static void load_bsp(loader *l, ss__config *c) {
  const char *v;

  v = env(l, "OTEL_BSP_SCHEDULE_DELAY");
  c->schedule_delay_ms = num(l, "OTEL_BSP_SCHEDULE_DELAY", v, 5000, 0, UINT32_MAX,
                             "a number of milliseconds");
  v = env(l, "OTEL_BSP_MAX_QUEUE_SIZE");
  c->max_queue = num(l, "OTEL_BSP_MAX_QUEUE_SIZE", v, 2048, 1, UINT32_MAX,
                     "a positive integer");
  v = env(l, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE");
  c->max_export_batch = num(l, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", v, 512, 1, UINT32_MAX,
                            "a positive integer");
  if (c->max_export_batch > c->max_queue) {
    char shown[16];
    snprintf(shown, sizeof(shown), "%u", c->max_export_batch);
    diag(l, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", v != NULL ? v : shown,
         "is larger than OTEL_BSP_MAX_QUEUE_SIZE; using %u", c->max_queue);
    c->max_export_batch = c->max_queue;
  }
}

static void load_limits(loader *l, ss__config *c) {
  const char *name, *v;

  v = env2(l, "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
           &name);
  c->attr_value_limit = num(l, name, v, 4096, 1, UINT32_MAX, "a positive integer");
  v = env(l, "SPANSHIM_EXIT_FLUSH_MS");
  c->exit_flush_ms = num(l, "SPANSHIM_EXIT_FLUSH_MS", v, 100, 0, EXIT_FLUSH_MAX_MS,
                         "a number of milliseconds");
}

static const struct {
  const char *name;
  uint32_t bit;
} hook_names[] = {
    {"socket", SS_HOOK_SOCKET}, {"dns", SS_HOOK_DNS},         {"libpq", SS_HOOK_LIBPQ},
    {"libcurl", SS_HOOK_LIBCURL}, {"process", SS_HOOK_PROCESS}, {"http", SS_HOOK_HTTP},
    {"tls", SS_HOOK_TLS},         {"all", SS_HOOK_ALL},
};

/* One comma-separated item: its bits, 0 for "none", -1 when unknown. */
static int64_t hook_item(const char *s, size_t n) {
  if (n == 4 && strncasecmp(s, "none", 4) == 0)
    return 0;
  for (size_t i = 0; i < sizeof(hook_names) / sizeof(hook_names[0]); i++)
    if (strlen(hook_names[i].name) == n && strncasecmp(s, hook_names[i].name, n) == 0)
      return hook_names[i].bit;
  return -1;
}

static void hooks_string(uint32_t hooks, char *out, size_t n) {
  size_t used = 0;

  out[0] = '\0';
  if (hooks == SS_HOOK_ALL || hooks == 0) {
    snprintf(out, n, "%s", hooks ? "all" : "none");
    return;
  }
  for (size_t i = 0; i + 1 < sizeof(hook_names) / sizeof(hook_names[0]); i++)
    if (hooks & hook_names[i].bit)
      used += (size_t)snprintf(out + used, n - used, "%s%s", used ? "," : "",
                               hook_names[i].name);
}

static void load_hooks(loader *l, ss__config *c) {
  const char *v = env(l, "SPANSHIM_HOOKS"), *p, *e;
  int known = 0, unknown = 0;
  uint32_t hooks = 0;
  char shown[64];

  c->hooks = SS_HOOK_ALL;
  if (v == NULL)
    return;
  for (p = v; *p != '\0'; p = *e ? e + 1 : e) {
    e = p + strcspn(p, ",");
    const char *a = p, *b = e;
    while (a < b && is_blank(*a))
      a++;
    while (b > a && is_blank(b[-1]))
      b--;
    if (a == b)
      continue;
    int64_t bits = hook_item(a, (size_t)(b - a));
    if (bits < 0) {
      unknown++;
    } else {
      known++;
      hooks |= (uint32_t)bits;
    }
  }
  /* A list of nothing but typos would switch tracing off; keep the default instead. */
  if (known > 0)
    c->hooks = hooks;
  if (unknown > 0) {
    hooks_string(c->hooks, shown, sizeof(shown));
    diag(l, "SPANSHIM_HOOKS", v, "names unknown hook families (known: socket, dns, libpq, "
         "libcurl, process, http, tls, all, none); using %s", shown);
  }
}

int ss__config_log_level(const char *v) {
  static const struct {
    const char *name;
    int level;
  } levels[] = {{"off", SS_LOG_OFF},   {"none", SS_LOG_OFF},   {"error", SS_LOG_ERROR},
                {"fatal", SS_LOG_ERROR}, {"warn", SS_LOG_WARN},  {"warning", SS_LOG_WARN},
                {"info", SS_LOG_INFO}, {"debug", SS_LOG_DEBUG}, {"trace", SS_LOG_DEBUG}};

  if (v == NULL) return -1;
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
    if (strcasecmp(v, levels[i].name) == 0) return levels[i].level;
  return -1;
}

/* SPANSHIM_LOG_LEVEL, else OTEL_LOG_LEVEL (SDK spec: the SDK's own logger). The default
 * stays off, not the spec's info: the shim lives in other people's programs, whose
 * stderr is theirs. */
static void load_log(loader *l, ss__config *c) {
  const char *name, *v = env2(l, "SPANSHIM_LOG_LEVEL", "OTEL_LOG_LEVEL", &name);
  int level = ss__config_log_level(v);

  c->log_level = SS_LOG_OFF;
  c->log_file = dup_env(l, "SPANSHIM_LOG_FILE");
  if (v == NULL)
    return;
  if (level >= 0)
    c->log_level = level;
  else
    diag(l, name, v, "is not off, error, warn, info or debug; using off");
}

static void load_context(loader *l, ss__config *c) {
  const char *tp = env(l, "TRACEPARENT"), *ts = env(l, "TRACESTATE");

  if (tp != NULL && ss__traceparent_parse(tp, strlen(tp), &c->parent) != 0)
    diag(l, "TRACEPARENT", tp, "is not a valid W3C traceparent; ignoring it");
  /* tracestate without a valid traceparent means nothing (W3C Trace Context). */
  if (ts == NULL || !c->parent.valid)
    return;
  c->tracestate = keep_str(l, ts);
  if (c->tracestate != NULL) {
    size_t n = strlen(ts), kept = ss__tracestate_trim(c->tracestate, n, 0);
    if (kept == 0) {
      unkeep(l, c->tracestate);
      c->tracestate = NULL;
    }
    if (kept < n)
      diag(l, "TRACESTATE", ts, "is longer than %d characters; using %zu of them (W3C "
           "trimming: members over 128 characters first, then from the end)", SS_TRACESTATE_MAX,
           kept);
  }
}

#define BAGGAGE_MAX 8192

static void load_propagation(loader *l, ss__config *c) {
  const char *v = env(l, "OTEL_PROPAGATORS"), *b = env(l, "BAGGAGE");

  c->propagators = SS_PROP_TRACECONTEXT | SS_PROP_BAGGAGE;
  if (v != NULL) {
    uint32_t got = 0;
    int bad = 0;
    size_t m;
    for (const char *p = v, *q; (q = list_item(&p, &m)) != NULL;) {
      if (m == 12 && strncasecmp(q, "tracecontext", 12) == 0)
        got |= SS_PROP_TRACECONTEXT;
      else if (m == 7 && strncasecmp(q, "baggage", 7) == 0)
        got |= SS_PROP_BAGGAGE;
      else if (m == 4 && strncasecmp(q, "none", 4) == 0)
        got |= 1u << 31;
      else if (m > 0)
        bad = 1;
    }
    if (bad)
      diag(l, "OTEL_PROPAGATORS", v, "names propagators the shim does not have (it has "
           "tracecontext, baggage, none); using the ones it knows");
    /* Unknown names are ignored (SDK configuration spec): what is left may be nothing
     * (OTEL_PROPAGATORS=b3 alone propagates no W3C context). */
    c->propagators = (got & (1u << 31)) ? 0 : got;
  }
  if (b != NULL) {
    if (strlen(b) > BAGGAGE_MAX)
      diag(l, "BAGGAGE", b, "is longer than %d characters; ignoring it", BAGGAGE_MAX);
    else
      c->baggage = keep_str(l, b);
  }
}

static void load_process(loader *l, ss__config *c) {
  const char *v = env(l, "SPANSHIM_PROCESS_SPAN");

  if (v != NULL && strcmp(v, "1") == 0) { /* first: strcasecmp is a page of libc more */
    c->process_span = 1;
    return;
  }
  if (v == NULL || strcmp(v, "0") == 0 || strcasecmp(v, "false") == 0)
    return;
  if (strcasecmp(v, "true") == 0)
    c->process_span = 1;
  else
    diag(l, "SPANSHIM_PROCESS_SPAN", v, "is not 1/true or 0/false; using 0");
}

/* Where the exporter thread's fds live (runtime/ownfd.h): "own" (a table of its own,
 * when the kernel allows) or "shared" (the app's, with fds born high and guarded). */
static void load_fd_table(loader *l, ss__config *c) {
  const char *v = env(l, "SPANSHIM_EXPORTER_FD_TABLE");
  c->own_fd_table = 1;
  if (v == NULL || strcmp(v, "own") == 0) return;
  if (strcmp(v, "shared") == 0) c->own_fd_table = 0;
  else diag(l, "SPANSHIM_EXPORTER_FD_TABLE", v, "is not own or shared; using own");
}

#define STACK_DEPTH_MAX 128

/* How failures are reported. OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN (semantic conventions):
 * "logs" = log records only, "logs/dup" = log records and span events. The shim's own
 * SPANSHIM_EXCEPTION_SIGNAL (log, event, both) wins when both are set. */
static void load_exceptions(loader *l, ss__config *c) {
  const char *opt = env(l, "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN");
  const char *own = env(l, "SPANSHIM_EXCEPTION_SIGNAL");
  const char *d = env(l, "SPANSHIM_STACK_DEPTH");

  c->stack_depth = 32;
  if (d != NULL) c->stack_depth = (int)num(l, "SPANSHIM_STACK_DEPTH", d, 32, 0, STACK_DEPTH_MAX,
                                        "a number of frames");
  c->exception_signal = SS_EXC_LOG | SS_EXC_EVENT;
  if (opt != NULL) {
    if (strcasecmp(opt, "logs") == 0)
      c->exception_signal = SS_EXC_LOG;
    else if (strcasecmp(opt, "logs/dup") != 0)
      diag(l, "OTEL_SEMCONV_EXCEPTION_SIGNAL_OPT_IN", opt, "is not logs or logs/dup; using "
           "logs/dup");
  }
  if (own == NULL) return;
  if (strcasecmp(own, "log") == 0)
    c->exception_signal = SS_EXC_LOG;
  else if (strcasecmp(own, "event") == 0)
    c->exception_signal = SS_EXC_EVENT;
  else if (strcasecmp(own, "both") == 0)
    c->exception_signal = SS_EXC_LOG | SS_EXC_EVENT;
  else
    diag(l, "SPANSHIM_EXCEPTION_SIGNAL", own, "is not log, event or both; using both");
}

/* Extra query keys to redact in url.full and url.query, on top of the built-in rule
 * (runtime/url.c). The list goes to the redaction at once: the exporter thread, which
 * uses it, starts after configuration is loaded. Unset clears any earlier list. */
static void load_redaction(loader *l, ss__config *c) {
  const char *v = env(l, "SPANSHIM_REDACT_QUERY_KEYS");
  int dropped;

  c->redact_query_keys = v != NULL ? keep_str(l, v) : NULL;
  dropped = ss__url_redact_keys_set(v);
  if (dropped > 0)
    diag(l, "SPANSHIM_REDACT_QUERY_KEYS", v, "has %d name%s that cannot be a query key "
         "(blanks, control characters, '=', '&', ';', '#') or do not fit in 1 KiB; "
         "using the others", dropped, dropped == 1 ? "" : "s");
}

/* What may leave of command lines and database error messages (sanitize.h). */
static void load_secrets(loader *l, ss__config *c) {
  const char *v = env(l, "SPANSHIM_COMMAND_ARGS");
  if (v == NULL || strcasecmp(v, "redacted") == 0)
    c->command_args = SS_ARGS_REDACTED;
  else if (strcasecmp(v, "full") == 0)
    c->command_args = SS_ARGS_FULL;
  else if (strcasecmp(v, "none") == 0)
    c->command_args = SS_ARGS_NONE;
  else
    diag(l, "SPANSHIM_COMMAND_ARGS", v, "is not redacted, full or none; using redacted");
  v = env(l, "SPANSHIM_DB_ERROR_MESSAGES");
  c->db_error_messages = SS_DBMSG_MASKED;
  if (v != NULL && strcasecmp(v, "full") == 0)
    c->db_error_messages = SS_DBMSG_FULL;
  else if (v != NULL && strcasecmp(v, "masked") != 0)
    diag(l, "SPANSHIM_DB_ERROR_MESSAGES", v, "is not masked or full; using masked");
  ss__message_scrub_mode(c->db_error_messages == SS_DBMSG_FULL);
}

int ss__config_load(ss__config *c, ss__getenv_fn get) {
  loader l = {.get = get != NULL ? get : getenv, .diags = 0, .c = c};

  memset(c, 0, sizeof(*c));
  load_disabled(&l, c);
  c->service_name = dup_env(&l, "OTEL_SERVICE_NAME");
  c->resource_attributes = dup_env(&l, "OTEL_RESOURCE_ATTRIBUTES");
  load_sampler(&l, c);
  load_endpoint(&l, c);
  load_exporter(&l, c);
  load_bsp(&l, c);
  load_limits(&l, c);
  load_hooks(&l, c);
  load_log(&l, c);
  load_context(&l, c);
  load_propagation(&l, c);
  load_process(&l, c);
  load_fd_table(&l, c);
  load_exceptions(&l, c);
  if (c->logs_exporter == 0) c->exception_signal &= ~(uint32_t)SS_EXC_LOG;
  if (c->disabled) { /* nothing is recorded: no process span, no fatal-signal handlers */
    c->process_span = 0;
    c->exception_signal = 0;
  }
  load_redaction(&l, c);
  load_secrets(&l, c);
  return l.diags;
}

void ss__config_free(ss__config *c) {
  config_str_free(c, c->service_name);
  config_str_free(c, c->resource_attributes);
  config_str_free(c, c->endpoint);
  config_str_free(c, c->headers);
  config_str_free(c, c->log_file);
  config_str_free(c, c->tracestate);
  config_str_free(c, c->baggage);
  config_str_free(c, c->redact_query_keys);
  config_str_free(c, c->logs_endpoint);
  config_str_free(c, c->logs_headers);
  memset(c, 0, sizeof(*c));
}

int ss__default_socket_path(char *out, size_t n, ss__getenv_fn get) {
  const char *xdg = (get != NULL ? get : getenv)("XDG_RUNTIME_DIR");
  ss__out o = {out, 0, n};
  size_t x;

  if (xdg != NULL && xdg[0] == '/') {
    for (x = strlen(xdg); x > 0 && xdg[x - 1] == '/'; x--)
      ;
    ss__out_put(&o, xdg, x);
    ss__out_puts(&o, "/spanshim/collector.sock");
  } else {
    ss__out_puts(&o, "/tmp/spanshim-");
    ss__out_uint(&o, (unsigned)ss__sys_geteuid());
    ss__out_puts(&o, "/collector.sock");
  }
  return ss__out_end(&o);
}
