/* pipeline.c - what spanshimd does with one OTLP export request, once it is framed:
 *
 *   decode    protobuf or OTLP JSON → messages, once, into the decoder's arena (decode.c,
 *             otlp_json_in.c); this is also where a request is validated: well-formed
 *             wire data, nesting depth, and the memory it may decode to
 *   validate  spans (log records) with malformed ids are taken out one by one and
 *             reported in partial_success; the rest of the request goes on
 *   enrich    SQL summaries of PostgreSQL spans (sqlsum.c), FILE:LINE for stack frames
 *             (dwarf.c); span metrics count every span here, before sampling
 *   sample    tail sampling (sampler.c) hands back the spans to send on, decoded
 *   sinks     the JSON lines file, the upstream queue (or what ss__pipeline_add_sink set)
 *
 * Nothing is decoded twice and nothing is serialized more than once: a sink that wants
 * bytes gets the body as received when the pipeline changed nothing, else the outgoing
 * request packed once for all sinks.
 *
 * Most requests need none of the middle steps (no malformed ids, no SQL or stacks to
 * enrich, no sampling or span metrics configured): those are not decoded at all. Their
 * JSON line is written straight from the wire bytes (ss__wire_traces_json, which also
 * checks them and says whether a middle step is needed) and the body goes upstream as
 * it came. SQL enrichment is done on the wire too: as the line is written when no sink
 * wants bytes (ss__wire_traces_json_sql: one pass), else on the protobuf bytes that go to
 * the sinks (ss__sqlsum_wire). Anything else, or
 * anything that reader declines, takes the decoded path. Receiver thread only; the HTTP loop (receiver.c)
 * hands bodies in and answers with the status returned. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tools/common/otlp_json.h"
#include "tools/spanshimd/spanshimd.h"

ss__rejected ss__pipeline_rejected;

static ss__sink sinks[SS_MAX_SINKS];
static size_t n_sinks;
static ss__buf packed = SS_BUF_INIT;  /* the outgoing request, when it differs from the body */
static ss__buf wire_json = SS_BUF_INIT;  /* a request's JSON line written from the wire */

#define PACKED_KEEP (8u << 20)
#define SLICE_ABOVE (1u << 20)    /* requests larger than this go through in slices of */
#define SLICE_MAX (512u << 10)    /* ... this size at most */

int ss__pipeline_add_sink(const ss__sink *s) {
  if (n_sinks == SS_MAX_SINKS) return -1;
  sinks[n_sinks++] = *s;
  return 0;
}

void ss__pipeline_clear_sinks(void) { n_sinks = 0; }

static int file_traces(void *ctx, const ss__traces_req *q, const uint8_t *b, size_t n,
                       uint64_t items) {
  (void)ctx, (void)b, (void)n, (void)items;
  return ss__sink_traces(q);
}

static int file_logs(void *ctx, const ss__logs_req *q, const uint8_t *b, size_t n,
                     uint64_t items) {
  (void)ctx, (void)b, (void)n, (void)items;
  return ss__sink_logs(q);
}

static int file_traces_wire(void *ctx, const char *json, size_t jn, const uint8_t *b,
                            size_t n, uint64_t items) {
  (void)ctx, (void)items;
  return ss__sink_traces_line(json, jn, b, n);
}

/* A full upstream queue drops and counts (upstream.c); the client still gets 200. */
static int upstream_traces(void *ctx, const ss__traces_req *q, const uint8_t *b, size_t n,
                           uint64_t items) {
  (void)ctx, (void)q;
  ss__upstream_enqueue(0, b, n, items);
  return 0;
}

static int upstream_traces_wire(void *ctx, const char *json, size_t jn, const uint8_t *b,
                                size_t n, uint64_t items) {
  (void)ctx, (void)json, (void)jn;
  ss__upstream_enqueue(0, b, n, items);
  return 0;
}

static int upstream_logs(void *ctx, const ss__logs_req *q, const uint8_t *b, size_t n,
                         uint64_t items) {
  (void)ctx, (void)q;
  ss__upstream_enqueue(1, b, n, items);
  return 0;
}

static int file_metrics(void *ctx, const ss__metrics_req *q, const uint8_t *b, size_t n,
                        uint64_t items) {
  (void)ctx, (void)b, (void)n, (void)items;
  return ss__sink_metrics(q);
}

static int upstream_metrics(void *ctx, const ss__metrics_req *q, const uint8_t *b, size_t n,
                            uint64_t items) {
  (void)ctx, (void)q;
  ss__upstream_enqueue(SS_SIG_METRICS, b, n, items);
  return 0;
}

int ss__pipeline_default_sinks(int file) {
  static const ss__sink file_sink = {file_traces, file_logs, 0, NULL, file_metrics,
                                     file_traces_wire, 1};
  static const ss__sink upstream_sink = {upstream_traces, upstream_logs, 1, NULL,
                                         upstream_metrics, upstream_traces_wire, 0};
  ss__pipeline_clear_sinks();
  if (file && ss__pipeline_add_sink(&file_sink) != 0) return -1;
  if (ss__upstream_enabled() && ss__pipeline_add_sink(&upstream_sink) != 0) return -1;
  return 0;
}

static size_t count_spans(const ss__traces_req *q) {
  size_t n = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++)
    for (size_t j = 0; j < q->resource_spans[i]->n_scope_spans; j++)
      n += q->resource_spans[i]->scope_spans[j]->n_spans;
  return n;
}

static size_t count_logs(const ss__logs_req *q) {
  size_t n = 0;
  for (size_t i = 0; i < q->n_resource_logs; i++)
    for (size_t j = 0; j < q->resource_logs[i]->n_scope_logs; j++)
      n += q->resource_logs[i]->scope_logs[j]->n_log_records;
  return n;
}

/* The bytes for sinks that want them: the body as received when `same`, else m packed
 * (once). 0, or -1 when memory ran out. */
static int wire(const ProtobufCMessage *m, int same, const uint8_t **body, size_t *len) {
  int wanted = 0;
  for (size_t i = 0; i < n_sinks; i++) wanted |= sinks[i].wants_bytes;
  if (!wanted || same) return 0;
  if (packed.cap > PACKED_KEEP) ss__buf_free(&packed);  /* one huge request must not pin it */
  ss__buf_reset(&packed);
  size_t sz = protobuf_c_message_get_packed_size(m);
  char *d = ss__buf_room(&packed, sz);
  if (d == NULL) return -1;
  packed.len = protobuf_c_message_pack(m, (uint8_t *)d);
  *body = (const uint8_t *)packed.data;
  *len = packed.len;
  return 0;
}

/* Hands the request to every sink in order; the first failure earns 503 and ends it. */
static int to_sinks(int logs, const void *q, const uint8_t *body, size_t len, uint64_t n) {
  for (size_t i = 0; i < n_sinks; i++) {
    const ss__sink *s = &sinks[i];
    const uint8_t *b = s->wants_bytes ? body : NULL;
    size_t bl = s->wants_bytes ? len : 0;
    int rc = logs ? s->logs(s->ctx, q, b, bl, n) : s->traces(s->ctx, q, b, bl, n);
    if (rc != 0) return 503;
  }
  return 200;
}

/* ---- validation (OTLP: a span's ids are 16 and 8 bytes, not all zero) ---- */

static int all_zero(const ProtobufCBinaryData *b) {
  for (size_t i = 0; i < b->len; i++)
    if (b->data[i]) return 0;
  return 1;
}

static int not_hex(const ProtobufCBinaryData *b) {
  return b->data == ss__otlp_not_hex_id;
}

/* Why span s is refused, or NULL when its ids are well-formed. */
static const char *bad_span(const Opentelemetry__Proto__Trace__V1__Span *s) {
  if (not_hex(&s->trace_id)) return "trace_id is not a hex string";
  if (s->trace_id.len != 16 || all_zero(&s->trace_id))
    return "trace_id is not 16 bytes or is all zero";
  if (not_hex(&s->span_id)) return "span_id is not a hex string";
  if (s->span_id.len != 8 || all_zero(&s->span_id))
    return "span_id is not 8 bytes or is all zero";
  if (not_hex(&s->parent_span_id)) return "parent_span_id is not a hex string";
  if (s->parent_span_id.len != 0 && s->parent_span_id.len != 8)
    return "parent_span_id is neither empty nor 8 bytes";
  return NULL;
}

/* A log record's ids are optional; present, they must have the right length. */
static const char *bad_log(const Opentelemetry__Proto__Logs__V1__LogRecord *r) {
  if (not_hex(&r->trace_id)) return "trace_id is not a hex string";
  if (r->trace_id.len != 0 && r->trace_id.len != 16)
    return "trace_id is neither empty nor 16 bytes";
  if (not_hex(&r->span_id)) return "span_id is not a hex string";
  if (r->span_id.len != 0 && r->span_id.len != 8)
    return "span_id is neither empty nor 8 bytes";
  return NULL;
}

/* Counts of the request being decoded, added to the stats once it is taken. */
static uint64_t pending_received, pending_rejected;

static const char *first_why;  /* the first rejection's reason in this request */

static void note_rejected(const char *why) {
  if (ss__pipeline_rejected.n++ == 0) first_why = why;
}

/* Removes malformed spans from q in place (the arrays are the decoder's); returns how
 * many went. */
static size_t validate_traces(ss__traces_req *q) {
  size_t gone = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++) {
    Opentelemetry__Proto__Trace__V1__ResourceSpans *rs = q->resource_spans[i];
    for (size_t j = 0; j < rs->n_scope_spans; j++) {
      Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = rs->scope_spans[j];
      size_t k = 0;
      for (size_t m = 0; m < ss->n_spans; m++) {
        const char *why = bad_span(ss->spans[m]);
        if (why) note_rejected(why);
        else ss->spans[k++] = ss->spans[m];
      }
      gone += ss->n_spans - k;
      ss->n_spans = k;
    }
  }
  return gone;
}

static size_t validate_logs(ss__logs_req *q) {
  size_t gone = 0;
  for (size_t i = 0; i < q->n_resource_logs; i++) {
    Opentelemetry__Proto__Logs__V1__ResourceLogs *rl = q->resource_logs[i];
    for (size_t j = 0; j < rl->n_scope_logs; j++) {
      Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = rl->scope_logs[j];
      size_t k = 0;
      for (size_t m = 0; m < sl->n_log_records; m++) {
        const char *why = bad_log(sl->log_records[m]);
        if (why) note_rejected(why);
        else sl->log_records[k++] = sl->log_records[m];
      }
      gone += sl->n_log_records - k;
      sl->n_log_records = k;
    }
  }
  return gone;
}

/* partial_success.error_message: "3 spans rejected: <the first one's reason>". */
static void finish_message(const char *what) {
  ss__rejected *r = &ss__pipeline_rejected;
  if (r->n == 0) return;
  snprintf(r->msg, sizeof r->msg, "%llu %s%s rejected: %s%s", (unsigned long long)r->n, what,
           r->n == 1 ? "" : "s", first_why, r->n == 1 ? "" : " (the first; others may differ)");
}

ss__traces_req *ss__pipeline_traces_decode(int fmt, const uint8_t *body, size_t len,
                                           int *status) {
  int too_big;
  ss__traces_req *q;
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.traces_requests++;
  if (fmt == SS_FMT_JSON)
    q = ss__decode_traces_json(body, len, &too_big, ss__pipeline_rejected.msg,
                               sizeof ss__pipeline_rejected.msg);
  else
    q = ss__decode_traces(body, len, &too_big);
  *status = q ? 200 : too_big ? 413 : 400;
  if (q == NULL) return NULL;
  pending_received = count_spans(q);
  pending_rejected = validate_traces(q);
  finish_message("span");
  return q;
}

static int slice_decodes(const uint8_t *p, size_t n, void *arg) {
  int too_big;
  (void)arg;
  return ss__decode_traces(p, n, &too_big) ? 0 : too_big ? 413 : 400;
}

/* One decoded slice (its bytes p[0..n) when protobuf) through the pipeline; its
 * rejections add to the request's. */
static int slice_deliver(ss__traces_req *q, const uint8_t *p, size_t n, uint64_t now_ms) {
  pending_received = count_spans(q);
  pending_rejected = validate_traces(q);
  finish_message("span");
  int st = ss__pipeline_traces_finish(q, p, n, now_ms);
  return st == 200 ? 0 : st;
}

static int slice_through(const uint8_t *p, size_t n, void *now_ms) {
  int too_big;
  ss__traces_req *q = ss__decode_traces(p, n, &too_big);
  if (q == NULL) return too_big ? 413 : 400;  /* decoded once already: cannot happen */
  return slice_deliver(q, p, n, *(uint64_t *)now_ms);
}

static int json_slice_decodes(void *q, void *arg) {
  (void)q, (void)arg;
  return 0;
}

static int json_slice_through(void *q, void *now_ms) {
  return slice_deliver(q, NULL, 0, *(uint64_t *)now_ms);
}

/* A big protobuf request goes through in slices (decode.c: ss__slice_request), so memory
 * stays a small multiple of a slice rather than of the request: one valid 16 MiB request
 * peaks at about 30 MiB instead of 185. Every slice is decoded first, so nothing reaches
 * a sink unless all of it can (a sink failing midway leaves the slices before it there;
 * each slice is a JSON line of its own). */
static int traces_sliced(const uint8_t *body, size_t len, uint64_t now_ms) {
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.traces_requests++;
  int rc = ss__slice_request(body, len, SLICE_MAX, slice_decodes, NULL);
  if (rc == 0) rc = ss__slice_request(body, len, SLICE_MAX, slice_through, &now_ms);
  return rc == 0 ? 200 : rc < 0 ? 400 : rc;
}

/* The same for a big OTLP JSON request: decoded in slices of its text (an error's message
 * in ss__pipeline_rejected.msg), then again, slice by slice, through the pipeline. */
static int traces_sliced_json(const uint8_t *body, size_t len, uint64_t now_ms) {
  char err[sizeof ss__pipeline_rejected.msg];
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.traces_requests++;
  int rc = ss__decode_json_slices(0, body, len, SLICE_MAX, json_slice_decodes, NULL,
                                  ss__pipeline_rejected.msg, sizeof ss__pipeline_rejected.msg);
  if (rc == 0)
    rc = ss__decode_json_slices(0, body, len, SLICE_MAX, json_slice_through, &now_ms, err,
                                sizeof err);
  return rc == 0 ? 200 : rc;
}

static ss__buf enriched = SS_BUF_INIT;  /* a request with its SQL spans enriched */
static int sql_seen;                     /* the last request had SQL spans */

/* The JSON line of the request at b[0..n) into wire_json; 0, or not when that reader
 * declined it or a middle step needs the decoded request. */
static int wire_line(const uint8_t *b, size_t n, int json, ss__wire_info *info) {
  if (wire_json.cap > PACKED_KEEP) ss__buf_free(&wire_json);  /* as `packed` */
  ss__buf_reset(&wire_json);
  int rc = json ? ss__wire_traces_json(b, n, &wire_json, info)
                : ss__wire_traces_check(b, n, info);
  if (rc != 0) return -1;
  return info->bad_ids || info->stacks ? -1 : 0;
}

/* The JSON line of the request at b[0..n) with SQL enrichment applied as it is written
 * (ss__wire_traces_json_sql), for sinks that want no bytes: 0, or not as wire_line. */
static int wire_line_sql(const uint8_t *b, size_t n, ss__wire_info *info) {
  if (wire_json.cap > PACKED_KEEP) ss__buf_free(&wire_json);
  ss__buf_reset(&wire_json);
  if (ss__wire_traces_json_sql(b, n, &wire_json, info, ss__sqlsum_plan) != 0) return -1;
  return info->bad_ids || info->stacks ? -1 : 0;
}

/* A protobuf request that needs nothing but its sinks and SQL enrichment, straight from
 * its bytes (see the file's header): the status it earns, or 0 when it must take the
 * decoded path (then nothing was counted). When no sink wants bytes, SQL spans are
 * enriched as the line is written (one pass); else on the wire (ss__sqlsum_wire) before
 * the line is written, at once when the last request had some, else once this one is
 * seen to have them, and those bytes go to the sinks. */
static int traces_from_wire(const uint8_t *body, size_t len) {
  ss__wire_info info;
  const uint8_t *b = body;
  size_t n = len;
  int rc, done_sql = 0, json = 0, bytes = 0;
  if (ss__sampler_enabled() || ss__metrics_enabled()) return 0;
  for (size_t i = 0; i < n_sinks; i++) {
    if (sinks[i].traces_wire == NULL) return 0;
    json |= sinks[i].wants_json;
    bytes |= sinks[i].wants_bytes;
  }
  ss__stats saved = ss__stats_g;  /* enrichment counts; undone if this path gives up */
  if (json && !bytes) {
    if (wire_line_sql(body, len, &info) != 0) goto decoded;
    /* A line to be split is split from the bytes decoded: they must be enriched. */
    if (!info.sql || ss__sink_line_fits(wire_json.len)) goto deliver;
    ss__stats_g = saved;
  }
  if (enriched.cap > PACKED_KEEP) ss__buf_free(&enriched);
  if (sql_seen) {
    if ((rc = ss__sqlsum_wire(body, len, &enriched)) < 0) goto decoded;
    if (rc == 1) b = (const uint8_t *)enriched.data, n = enriched.len;
    done_sql = 1;
  }
  if (wire_line(b, n, json, &info) != 0) goto decoded;
  sql_seen = info.sql;
  if (info.sql && !done_sql) {
    if ((rc = ss__sqlsum_wire(body, len, &enriched)) < 0) goto decoded;
    if (rc == 1) {
      b = (const uint8_t *)enriched.data, n = enriched.len;
      if (wire_line(b, n, json, &info) != 0) goto decoded;
    }
  }
deliver:
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.traces_requests++;
  for (size_t i = 0; i < n_sinks; i++) {
    const ss__sink *s = &sinks[i];
    if (s->traces_wire(s->ctx, json ? wire_json.data : NULL, json ? wire_json.len : 0, b, n,
                       info.spans) != 0)
      return 503;  /* not counted: the client sends it again */
  }
  ss__stats_g.spans_received += info.spans;
  return 200;
decoded:
  ss__stats_g = saved;
  return 0;
}

int ss__pipeline_traces_fmt(int fmt, const uint8_t *body, size_t len, uint64_t now_ms) {
  int st;
  if (fmt == SS_FMT_PROTO && len > SLICE_ABOVE) return traces_sliced(body, len, now_ms);
  if (fmt == SS_FMT_JSON && len > SLICE_ABOVE) return traces_sliced_json(body, len, now_ms);
  if (fmt == SS_FMT_PROTO && (st = traces_from_wire(body, len)) != 0) return st;
  ss__traces_req *q = ss__pipeline_traces_decode(fmt, body, len, &st);
  if (q == NULL) return st;
  return ss__pipeline_traces_finish(q, fmt == SS_FMT_PROTO ? body : NULL, len, now_ms);
}

int ss__pipeline_traces(const uint8_t *body, size_t len, uint64_t now_ms) {
  return ss__pipeline_traces_fmt(SS_FMT_PROTO, body, len, now_ms);
}

static int traces_finish(ss__traces_req *q, const uint8_t *body, size_t len, uint64_t now_ms);

/* The spans of a request are counted (received, rejected, span metrics) once it is taken:
 * a request answered 503 is sent again by the client, and counted then. */
int ss__pipeline_traces_finish(ss__traces_req *q, const uint8_t *body, size_t len,
                               uint64_t now_ms) {
  int st = traces_finish(q, body, len, now_ms);
  if (st != 503) {
    ss__metrics_record(q);  /* every span, before sampling: true rates */
    ss__stats_g.spans_received += pending_received;
    ss__stats_g.spans_rejected += pending_rejected;
  }
  pending_received = pending_rejected = 0;
  return st;
}

static int traces_finish(ss__traces_req *q, const uint8_t *body, size_t len, uint64_t now_ms) {
  size_t n = count_spans(q);
  int rejected = ss__pipeline_rejected.n > 0;
  if (rejected && n == 0) return 200;  /* nothing valid: nothing to write or forward */
  int changed = ss__sqlsum_enrich(q);
  changed |= ss__dwarf_annotate_traces(q) > 0;
  changed |= rejected || body == NULL;
  const ss__traces_req *out = q;
  if (ss__sampler_enabled()) {
    if ((out = ss__sampler_process(q, now_ms)) == NULL) return 503;
    if (out != q) {
      if ((n = count_spans(out)) == 0) return 200;  /* all held or dropped: nothing yet */
      changed = 1;
    }
  }
  if (wire(&out->base, !changed, &body, &len) != 0) return 503;
  return to_sinks(0, out, body, len, n);
}

/* What libspanshim's drop reports in a logs request say. */
typedef struct shim_report {
  uint64_t spans;    /* spans dropped (spanshim.spans.dropped records) */
  uint64_t logs;     /* exception log records dropped (spanshim.logs.dropped records) */
  uint64_t reports;  /* drop report records (not counted in logs_received) */
} shim_report;

/* The value of attribute `key` of r when it is a positive integer, else 0. */
static uint64_t positive_int_attr(const Opentelemetry__Proto__Logs__V1__LogRecord *r,
                                  const char *key) {
  for (size_t a = 0; a < r->n_attributes; a++) {
    const Opentelemetry__Proto__Common__V1__KeyValue *kv = r->attributes[a];
    if (kv->key && strcmp(kv->key, key) == 0 && kv->value &&
        kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE &&
        kv->value->int_value > 0)
      return (uint64_t)kv->value->int_value;
  }
  return 0;
}

int ss__shim_drop_report(const Opentelemetry__Proto__Logs__V1__LogRecord *r, uint64_t *spans,
                         uint64_t *logs) {
  static const char *const kinds[2] = {"spanshim.spans.dropped", "spanshim.logs.dropped"};
  if (r->event_name == NULL) return 0;
  for (int kind = 0; kind < 2; kind++)
    if (strcmp(r->event_name, kinds[kind]) == 0) {
      *(kind ? logs : spans) += positive_int_attr(r, kinds[kind]);
      return 1;
    }
  return 0;
}

/* Sums the drop reports of libspanshim in a logs request (ss__shim_drop_report). */
static shim_report shim_drops(const ss__logs_req *q) {
  shim_report n = {0};
  for (size_t i = 0; i < q->n_resource_logs; i++)
    for (size_t j = 0; j < q->resource_logs[i]->n_scope_logs; j++) {
      const Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = q->resource_logs[i]->scope_logs[j];
      for (size_t k = 0; k < sl->n_log_records; k++)
        n.reports += (uint64_t)ss__shim_drop_report(sl->log_records[k], &n.spans, &n.logs);
    }
  return n;
}

/* Adds a logs request's counts to the stats: its log records less the shim's drop
 * reports (so logs_received + shim_logs_dropped = exception log records produced, as
 * spans_received + shim_spans_dropped = spans produced), and what the reports say. */
static void count_logs_request(uint64_t records, uint64_t rejected, shim_report r) {
  ss__stats_g.logs_received += records > r.reports ? records - r.reports : 0;
  ss__stats_g.logs_rejected += rejected;
  ss__stats_g.shim_spans_dropped += r.spans;
  ss__stats_g.shim_logs_dropped += r.logs;
  ss__stats_g.shim_drop_reports += r.reports;
}

/* ---- big logs requests: in slices, answered between the two passes ---- */

/* Stands for a big request decoded in slices: ss__pipeline_logs_finish delivers it from
 * its body (kept here) slice by slice. */
static ss__logs_req logs_sliced;
static struct {
  int fmt;
  const uint8_t *body;
  size_t len;
  uint64_t received, rejected;  /* pass 1's counts */
  shim_report shim;
} big_logs;

static int logs_slice_counts(ss__logs_req *q) {
  big_logs.received += count_logs(q);
  big_logs.rejected += validate_logs(q);
  shim_report r = shim_drops(q);
  big_logs.shim.spans += r.spans;
  big_logs.shim.logs += r.logs;
  big_logs.shim.reports += r.reports;
  return 0;
}

static int logs_slice_finish(ss__logs_req *q, const uint8_t *p, size_t n) {
  validate_logs(q);  /* counted in the first pass */
  int st = ss__pipeline_logs_finish(q, p, n);
  return st == 200 ? 0 : st;
}

static int logs_counts_pb(const uint8_t *p, size_t n, void *arg) {
  int too_big;
  (void)arg;
  ss__logs_req *q = ss__decode_logs(p, n, &too_big);
  return q ? logs_slice_counts(q) : too_big ? 413 : 400;
}

static int logs_finish_pb(const uint8_t *p, size_t n, void *arg) {
  int too_big;
  (void)arg;
  ss__logs_req *q = ss__decode_logs(p, n, &too_big);
  return q ? logs_slice_finish(q, p, n) : too_big ? 413 : 400;
}

static int logs_counts_json(void *q, void *arg) {
  (void)arg;
  return logs_slice_counts(q);
}

static int logs_finish_json(void *q, void *arg) {
  (void)arg;
  return logs_slice_finish(q, NULL, 0);
}

/* The first pass over a big request: every slice decoded, validated and counted (the
 * counts go to the stats only when all of it decodes). The status. */
static int logs_sliced_check(int fmt, const uint8_t *body, size_t len) {
  memset(&big_logs, 0, sizeof big_logs);
  int rc = fmt == SS_FMT_JSON
               ? ss__decode_json_slices(1, body, len, SLICE_MAX, logs_counts_json, NULL,
                                        ss__pipeline_rejected.msg,
                                        sizeof ss__pipeline_rejected.msg)
               : ss__slice_request(body, len, SLICE_MAX, logs_counts_pb, NULL);
  if (rc != 0) return rc < 0 ? 400 : rc;
  big_logs.fmt = fmt;
  big_logs.body = body;
  big_logs.len = len;
  count_logs_request(big_logs.received, big_logs.rejected, big_logs.shim);
  finish_message("log record");
  return 200;
}

/* The second pass: slice by slice through to the sinks; the answer is given already, so
 * the request's partial_success is kept as it was. */
static int logs_sliced_finish(void) {
  ss__rejected keep = ss__pipeline_rejected;
  char err[sizeof keep.msg];
  int rc = big_logs.fmt == SS_FMT_JSON
               ? ss__decode_json_slices(1, big_logs.body, big_logs.len, SLICE_MAX,
                                        logs_finish_json, NULL, err, sizeof err)
               : ss__slice_request(big_logs.body, big_logs.len, SLICE_MAX, logs_finish_pb,
                                   NULL);
  ss__pipeline_rejected = keep;
  return rc == 0 ? 200 : rc < 0 ? 400 : rc;
}

ss__logs_req *ss__pipeline_logs_decode_fmt(int fmt, const uint8_t *body, size_t len,
                                           int *status) {
  int too_big;
  ss__logs_req *q;
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.logs_requests++;
  if (len > SLICE_ABOVE) {
    *status = logs_sliced_check(fmt, body, len);
    return *status == 200 ? &logs_sliced : NULL;
  }
  if (fmt == SS_FMT_JSON)
    q = ss__decode_logs_json(body, len, &too_big, ss__pipeline_rejected.msg,
                             sizeof ss__pipeline_rejected.msg);
  else
    q = ss__decode_logs(body, len, &too_big);
  *status = q ? 200 : too_big ? 413 : 400;
  if (q == NULL) return NULL;
  uint64_t records = count_logs(q), rejected = validate_logs(q);
  count_logs_request(records, rejected, shim_drops(q));
  finish_message("log record");
  return q;
}

ss__logs_req *ss__pipeline_logs_decode(const uint8_t *body, size_t len, int *status) {
  return ss__pipeline_logs_decode_fmt(SS_FMT_PROTO, body, len, status);
}

int ss__pipeline_logs_finish(ss__logs_req *q, const uint8_t *body, size_t len) {
  if (q == &logs_sliced) return logs_sliced_finish();
  size_t n = count_logs(q);
  int rejected = ss__pipeline_rejected.n > 0;
  if (rejected && n == 0) return 200;
  int changed = ss__dwarf_annotate_logs(q) > 0 || rejected || body == NULL;
  if (wire(&q->base, !changed, &body, &len) != 0) return 503;
  return to_sinks(1, q, body, len, n);
}

int ss__pipeline_logs(const uint8_t *body, size_t len) {
  int st;
  ss__logs_req *q = ss__pipeline_logs_decode(body, len, &st);
  return q ? ss__pipeline_logs_finish(q, body, len) : st;
}

/* ---- metrics: checked and passed on ---- */

static size_t count_points(const ss__metrics_req *q) {
  size_t n = 0;
  for (size_t i = 0; i < q->n_resource_metrics; i++) {
    const Opentelemetry__Proto__Metrics__V1__ResourceMetrics *rm = q->resource_metrics[i];
    for (size_t j = 0; j < rm->n_scope_metrics; j++)
      for (size_t k = 0; k < rm->scope_metrics[j]->n_metrics; k++) {
        const Opentelemetry__Proto__Metrics__V1__Metric *m = rm->scope_metrics[j]->metrics[k];
        switch (m->data_case) {
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE: n += m->gauge->n_data_points; break;
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM: n += m->sum->n_data_points; break;
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM:
          n += m->histogram->n_data_points;
          break;
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_EXPONENTIAL_HISTOGRAM:
          n += m->exponential_histogram->n_data_points;
          break;
        case OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUMMARY:
          n += m->summary->n_data_points;
          break;
        default: break;
        }
      }
  }
  return n;
}

int ss__pipeline_metrics(int fmt, const uint8_t *body, size_t len) {
  int too_big;
  memset(&ss__pipeline_rejected, 0, sizeof ss__pipeline_rejected);
  ss__stats_g.metrics_requests++;
  ss__metrics_req *q = ss__decode_metrics(fmt, body, len, &too_big, ss__pipeline_rejected.msg,
                                          sizeof ss__pipeline_rejected.msg);
  if (q == NULL) return too_big ? 413 : 400;
  size_t n = count_points(q);
  if (wire(&q->base, fmt == SS_FMT_PROTO, &body, &len) != 0) return 503;
  for (size_t i = 0; i < n_sinks; i++) {
    const ss__sink *s = &sinks[i];
    if (s->metrics == NULL) continue;
    if (s->metrics(s->ctx, q, s->wants_bytes ? body : NULL, s->wants_bytes ? len : 0, n) != 0)
      return 503;  /* not counted: the client sends it again */
  }
  ss__stats_g.data_points_received += n;
  return 200;
}

void ss__export_response(ss__buf *b, int logs, int fmt) {
  const ss__rejected *r = &ss__pipeline_rejected;
  if (fmt == SS_FMT_JSON) {
    if (r->n == 0) {
      SS_BUF_LIT(b, "{}");
      return;
    }
    SS_BUF_LIT(b, "{\"partialSuccess\":{");
    if (logs) SS_BUF_LIT(b, "\"rejectedLogRecords\":\"");
    else SS_BUF_LIT(b, "\"rejectedSpans\":\"");
    ss__jw_u64(b, r->n);
    SS_BUF_LIT(b, "\",\"errorMessage\":");
    ss__jw_str(b, r->msg, strlen(r->msg));
    SS_BUF_LIT(b, "}}");
    return;
  }
  if (r->n == 0) return;  /* an empty message: full success */
  Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess tp =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
  Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse tr =
      OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
  Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess lp =
      OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;
  Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse lr =
      OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
  ProtobufCMessage *m;
  if (logs) {
    lp.rejected_log_records = (int64_t)r->n;
    lp.error_message = (char *)r->msg;
    lr.partial_success = &lp;
    m = &lr.base;
  } else {
    tp.rejected_spans = (int64_t)r->n;
    tp.error_message = (char *)r->msg;
    tr.partial_success = &tp;
    m = &tr.base;
  }
  char *d = ss__buf_room(b, protobuf_c_message_get_packed_size(m));
  if (d) b->len += protobuf_c_message_pack(m, (uint8_t *)d);
}

void ss__pipeline_free(void) {
  ss__buf_free(&packed);
  ss__buf_free(&wire_json);
  ss__buf_free(&enriched);
  ss__wire_cache_free();
  n_sinks = 0;
}
