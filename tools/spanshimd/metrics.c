/* metrics.c - span metrics (RED: rate, errors, duration) and the Prometheus text format.
 *
 * Every span received (before sampling, so the rates are true rates) counts into a series
 * keyed by its resource's service.name, its span name, its kind (a service's answers and
 * its calls to others apart) and its peer (server.address, else network.peer.address,
 * else ""; always "" for server and consumer spans: there both name the caller, or what
 * the caller wrote in its Host header, and a label any client chooses would let clients
 * make series at will and push real ones into the overflow): spans, error spans (status ERROR) and a duration
 * histogram. The number of series is bounded (SS_METRICS_MAX_SERIES); spans that would
 * need a new series beyond it count into one series labelled span_name="_overflow" and
 * the overflow is itself counted. The exposition adds the collector's own counters
 * (received, rejected by reason, written, upstream exported/dropped/retries/queue,
 * sampling). Receiver thread only; upstream counters are read with relaxed loads. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "tools/spanshimd/spanshimd.h"

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;

static const double bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
#define NB (sizeof bounds / sizeof *bounds)

typedef struct series {
  char *key;                      /* service \0 name \0 kind \0 peer \0; NULL: empty slot */
  size_t key_len;
  uint64_t spans, errors;
  uint64_t buckets[NB + 1];       /* non-cumulative; the last is +Inf */
  double sum;
} series;

static series *table;
static size_t cap, used, max_series = SS_METRICS_MAX_SERIES;
static uint64_t overflow;
static int on;

int ss__metrics_init(size_t max) {
  if (max) max_series = max;
  cap = 1;
  while (cap < 2 * max_series + 2) cap <<= 1;
  table = calloc(cap, sizeof *table);
  on = table != NULL;
  return on ? 0 : -1;
}

int ss__metrics_enabled(void) { return on; }

static series *find(const char *key, size_t n, int overflowing) {
  size_t i = ss__hash_bytes(key, n) & (cap - 1);
  for (;; i = (i + 1) & (cap - 1)) {
    series *s = &table[i];
    if (s->key == NULL) {
      if (used >= max_series && !overflowing) return NULL;
      if ((s->key = malloc(n)) == NULL) return NULL;
      memcpy(s->key, key, n);
      s->key_len = n;
      used++;
      return s;
    }
    if (s->key_len == n && memcmp(s->key, key, n) == 0) return s;
  }
}

static const char *str_attr(Opentelemetry__Proto__Common__V1__KeyValue **kv, size_t n,
                            const char *key) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(kv[i]->key, key) == 0 && kv[i]->value &&
        kv[i]->value->value_case ==
            OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
      return kv[i]->value->string_value;
  return NULL;
}

static void record(const char *service, const pb_span *sp) {
  char key[768];
  static const char *const kinds[] = {"unspecified", "internal", "server", "client",
                                       "producer", "consumer"};
  const char *kind = sp->kind >= 0 && sp->kind <= 5 ? kinds[sp->kind] : "unspecified";
  const char *peer = NULL;
  if (sp->kind != OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_SERVER &&
      sp->kind != OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CONSUMER) {
    peer = str_attr(sp->attributes, sp->n_attributes, "server.address");
    if (peer == NULL) peer = str_attr(sp->attributes, sp->n_attributes, "network.peer.address");
  }
  int n = snprintf(key, sizeof key, "%.200s%c%.300s%c%s%c%.200s", service, 0,
                   sp->name ? sp->name : "", 0, kind, 0, peer ? peer : "");
  if (n < 0) return;
  series *s = find(key, (size_t)n + 1, 0);
  if (s == NULL) {
    overflow++;
    static const char ov[] = "\0_overflow\0\0";
    s = find(ov, sizeof ov, 1);  /* sizeof counts the final NUL */
    if (s == NULL) return;
  }
  s->spans++;
  if (sp->status &&
      sp->status->code == OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR)
    s->errors++;
  double d = sp->end_time_unix_nano > sp->start_time_unix_nano
                 ? (double)(sp->end_time_unix_nano - sp->start_time_unix_nano) / 1e9
                 : 0;
  size_t b = 0;
  while (b < NB && d > bounds[b]) b++;
  s->buckets[b]++;
  s->sum += d;
}

void ss__metrics_record(const ss__traces_req *q) {
  if (!on) return;
  for (size_t i = 0; i < q->n_resource_spans; i++) {
    const Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = q->resource_spans[i];
    const char *svc = rs->resource ? str_attr(rs->resource->attributes,
                                              rs->resource->n_attributes, "service.name")
                                   : NULL;
    if (svc == NULL) svc = "unknown_service";
    for (size_t j = 0; j < rs->n_scope_spans; j++)
      for (size_t k = 0; k < rs->scope_spans[j]->n_spans; k++)
        record(svc, rs->scope_spans[j]->spans[k]);
  }
}

/* A label value with \ " and newline escaped, as the text format wants. */
static void label(ss__buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') SS_BUF_LIT(b, "\\\\");
    else if (*s == '"') SS_BUF_LIT(b, "\\\"");
    else if (*s == '\n') SS_BUF_LIT(b, "\\n");
    else ss__buf_putc(b, *s);
  }
}

static void labels(ss__buf *b, const series *s) {
  const char *svc = s->key, *name = svc + strlen(svc) + 1, *kind = name + strlen(name) + 1,
             *peer = kind + strlen(kind) + 1;
  SS_BUF_LIT(b, "service=\"");
  label(b, svc);
  SS_BUF_LIT(b, "\",span_name=\"");
  label(b, name);
  SS_BUF_LIT(b, "\",span_kind=\"");
  label(b, kind);
  SS_BUF_LIT(b, "\",peer=\"");
  label(b, peer);
  ss__buf_putc(b, '"');
}

static void head(ss__buf *b, const char *name, const char *type, const char *help) {
  ss__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One counter family: the uint64_t at `field` of every series. */
static void series_counter(ss__buf *b, const char *name, const char *help, size_t field) {
  head(b, name, "counter", help);
  for (size_t i = 0; i < cap; i++)
    if (table[i].key) {
      uint64_t v;
      memcpy(&v, (const char *)&table[i] + field, sizeof v);
      ss__buf_printf(b, "%s{", name);
      labels(b, &table[i]);
      ss__buf_printf(b, "} %llu\n", (unsigned long long)v);
    }
}

static void span_metrics(ss__buf *b) {
  series_counter(b, "spanshim_spans_total", "Spans received, by service, span name and peer.",
                 offsetof(series, spans));
  series_counter(b, "spanshim_span_errors_total", "Spans with status ERROR.",
                 offsetof(series, errors));
  head(b, "spanshim_span_duration_seconds", "histogram", "Span durations.");
  for (size_t i = 0; i < cap; i++) {
    const series *s = &table[i];
    if (!s->key) continue;
    uint64_t cum = 0;
    for (size_t k = 0; k <= NB; k++) {
      cum += s->buckets[k];
      SS_BUF_LIT(b, "spanshim_span_duration_seconds_bucket{");
      labels(b, s);
      if (k < NB) ss__buf_printf(b, ",le=\"%g\"} %llu\n", bounds[k], (unsigned long long)cum);
      else ss__buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    SS_BUF_LIT(b, "spanshim_span_duration_seconds_sum{");
    labels(b, s);
    ss__buf_printf(b, "} %.9g\n", s->sum);
    SS_BUF_LIT(b, "spanshim_span_duration_seconds_count{");
    labels(b, s);
    ss__buf_printf(b, "} %llu\n", (unsigned long long)s->spans);
  }
  head(b, "spanshimd_metrics_series_overflow_total", "counter",
       "Spans counted under span_name=\"_overflow\" because the series limit was reached.");
  ss__buf_printf(b, "spanshimd_metrics_series_overflow_total %llu\n",
                 (unsigned long long)overflow);
}

static void counter(ss__buf *b, const char *name, const char *help, uint64_t v) {
  head(b, name, "counter", help);
  ss__buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(ss__buf *b, const char *name, const char *help, uint64_t v) {
  head(b, name, "gauge", help);
  ss__buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

#define UP(f) ((unsigned long long)atomic_load_explicit(&ss__up_stats_g.f, memory_order_relaxed))

static void own_metrics(ss__buf *b) {
  const ss__stats *s = &ss__stats_g;
  counter(b, "spanshimd_requests_total", "HTTP requests parsed.", s->requests);
  counter(b, "spanshimd_spans_received_total", "Spans received.", s->spans_received);
  counter(b, "spanshimd_logs_received_total",
          "Log records received (libspanshim's drop reports not included).", s->logs_received);
  counter(b, "spanshimd_shim_spans_dropped_total",
          "Spans traced processes produced and reported dropped.", s->shim_spans_dropped);
  counter(b, "spanshimd_shim_logs_dropped_total",
          "Exception log records traced processes produced and reported dropped.",
          s->shim_logs_dropped);
  counter(b, "spanshimd_spans_refused_total",
          "Spans in libspanshim's requests refused here (counted here, not by the sender).",
          s->spans_refused);
  counter(b, "spanshimd_logs_refused_total",
          "Exception log records in libspanshim's requests refused here.", s->logs_refused);
  head(b, "spanshimd_requests_rejected_total", "counter", "Requests refused, by reason.");
  const struct { const char *reason; uint64_t v; } rej[] = {
      {"bad_http", s->rej_bad_http}, {"header_too_large", s->rej_header_too_large},
      {"not_found", s->rej_not_found}, {"method", s->rej_method},
      {"length_required", s->rej_length_required}, {"too_large", s->rej_too_large},
      {"content_type", s->rej_content_type}, {"bad_protobuf", s->rej_bad_protobuf},
      {"unavailable", s->rej_unavailable}, {"unauthorized", s->rej_unauthorized}};
  for (size_t i = 0; i < sizeof rej / sizeof *rej; i++)
    ss__buf_printf(b, "spanshimd_requests_rejected_total{reason=\"%s\"} %llu\n", rej[i].reason,
                   (unsigned long long)rej[i].v);
  counter(b, "spanshimd_lines_written_total", "JSON lines written to the output file.",
          s->lines_written);
  counter(b, "spanshimd_write_errors_total", "Failed writes to the output file.",
          s->write_errors);
  gauge(b, "spanshimd_connections_open", "Client connections open.", s->connections_open);
  counter(b, "spanshimd_peers_refused_total", "Connections refused by peer credentials.",
          s->peers_refused);
  if (ss__upstream_enabled()) {
    counter(b, "spanshimd_upstream_exported_total", "Spans and log records the upstream took.",
            UP(exported_items));
    counter(b, "spanshimd_upstream_dropped_total", "Spans and log records dropped: queue full.",
            UP(dropped_items));
    counter(b, "spanshimd_upstream_failed_total",
            "Spans and log records refused by the upstream or given up on.", UP(failed_items));
    counter(b, "spanshimd_upstream_retries_total", "Upstream requests retried.", UP(retries));
    gauge(b, "spanshimd_upstream_queue_bytes", "Bytes waiting for the upstream.",
          UP(queued_bytes));
    gauge(b, "spanshimd_upstream_queue_items", "Spans and log records waiting for the upstream.",
          UP(queued_items));
  }
  if (ss__sampler_enabled()) {
    counter(b, "spanshimd_sampling_kept_spans_total", "Spans kept by tail sampling.",
            ss__samp_stats_g.kept_spans);
    counter(b, "spanshimd_sampling_dropped_spans_total", "Spans dropped by tail sampling.",
            ss__samp_stats_g.dropped_spans);
    gauge(b, "spanshimd_sampling_held_spans", "Spans waiting for a sampling decision.",
          ss__samp_stats_g.held_spans);
  }
}

void ss__metrics_text(ss__buf *b) {
  if (on) span_metrics(b);
  own_metrics(b);
}

void ss__metrics_free(void) {
  for (size_t i = 0; i < cap; i++) free(table[i].key);
  free(table);
  table = NULL;
  on = 0;
}
