/* pipeline.c - what spanshimd does with one OTLP export request, once it is framed:
 *
 *   decode    protobuf → messages, once, into the decoder's arena (decode.c); this is
 *             also where a request is validated: well-formed wire data, nesting depth,
 *             and the memory it may decode to
 *   enrich    SQL summaries of PostgreSQL spans (sqlsum.c), FILE:LINE for stack frames
 *             (dwarf.c); span metrics count every span here, before sampling
 *   sample    tail sampling (sampler.c) hands back the spans to send on, decoded
 *   sinks     the JSON lines file, the upstream queue (or what ss__pipeline_add_sink set)
 *
 * Nothing is decoded twice and nothing is serialized more than once: a sink that wants
 * bytes gets the body as received when the pipeline changed nothing, else the outgoing
 * request packed once for all sinks. Receiver thread only; the HTTP loop (receiver.c)
 * hands bodies in and answers with the status returned. */
#include <errno.h>

#include "tools/spanshimd/spanshimd.h"

static ss__sink sinks[SS_MAX_SINKS];
static size_t n_sinks;
static ss__buf packed = SS_BUF_INIT;  /* the outgoing request, when it differs from the body */

#define PACKED_KEEP (8u << 20)

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

/* A full upstream queue drops and counts (upstream.c); the client still gets 200. */
static int upstream_traces(void *ctx, const ss__traces_req *q, const uint8_t *b, size_t n,
                           uint64_t items) {
  (void)ctx, (void)q;
  ss__upstream_enqueue(0, b, n, items);
  return 0;
}

static int upstream_logs(void *ctx, const ss__logs_req *q, const uint8_t *b, size_t n,
                         uint64_t items) {
  (void)ctx, (void)q;
  ss__upstream_enqueue(1, b, n, items);
  return 0;
}

int ss__pipeline_default_sinks(int file) {
  static const ss__sink file_sink = {file_traces, file_logs, 0, NULL};
  static const ss__sink upstream_sink = {upstream_traces, upstream_logs, 1, NULL};
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

int ss__pipeline_traces(const uint8_t *body, size_t len, uint64_t now_ms) {
  int too_big;
  ss__stats_g.traces_requests++;
  ss__traces_req *q = ss__decode_traces(body, len, &too_big);
  if (q == NULL) return too_big ? 413 : 400;
  ss__stats_g.spans_received += count_spans(q);
  return ss__pipeline_traces_finish(q, body, len, now_ms);
}

int ss__pipeline_traces_finish(ss__traces_req *q, const uint8_t *body, size_t len,
                               uint64_t now_ms) {
  size_t n = count_spans(q);
  int changed = ss__sqlsum_enrich(q);
  changed |= ss__dwarf_annotate_traces(q) > 0;
  ss__metrics_record(q);  /* every span, before sampling: true rates */
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

ss__logs_req *ss__pipeline_logs_decode(const uint8_t *body, size_t len, int *status) {
  int too_big;
  ss__stats_g.logs_requests++;
  ss__logs_req *q = ss__decode_logs(body, len, &too_big);
  *status = q ? 200 : too_big ? 413 : 400;
  if (q) ss__stats_g.logs_received += count_logs(q);
  return q;
}

int ss__pipeline_logs_finish(ss__logs_req *q, const uint8_t *body, size_t len) {
  size_t n = count_logs(q);
  int changed = ss__dwarf_annotate_logs(q) > 0;
  if (wire(&q->base, !changed, &body, &len) != 0) return 503;
  return to_sinks(1, q, body, len, n);
}

int ss__pipeline_logs(const uint8_t *body, size_t len) {
  int st;
  ss__logs_req *q = ss__pipeline_logs_decode(body, len, &st);
  return q ? ss__pipeline_logs_finish(q, body, len) : st;
}

void ss__pipeline_free(void) {
  ss__buf_free(&packed);
  n_sinks = 0;
}
