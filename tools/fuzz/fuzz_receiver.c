/* fuzz_receiver.c - libFuzzer harness for what spanshimd does with hostile bytes: the
 * HTTP/1.1 request-head parser and the chunked body decoder (fed in pieces, as reads
 * arrive), gzip/deflate inflating under a size bound, and the protobuf decoding of trace
 * and log requests, followed by what a decoded request goes through (SQL enrichment with
 * libpg_query, tail sampling, OTLP JSON encoding of what passes); trace requests also
 * through the wire-level JSON writer, whose line must equal the tree writer's.
 *
 * The first input byte picks the target (HTTP head, traces, logs, chunked body, gzip,
 * deflate, OTLP JSON traces, OTLP JSON logs, a gRPC message body, what a gRPC client
 * sends: fuzz_grpc.c, metrics); for HTTP and chunked the second is the size of the
 * pieces, for a gRPC message the grpc-encoding, for metrics its low bit the format
 * (protobuf, JSON). Built and run by
 * `make fuzz` (clang); `make check` runs it briefly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/span.h"
#include "tools/common/otlp_json.h"
#include "tools/spanshimd/grpc.h"
#include "tools/spanshimd/spanshimd.h"

ss__stats ss__stats_g;  /* sink.c's, which the harness does not link */
void ss__fuzz_grpc_h2(const uint8_t *d, size_t n);  /* fuzz_grpc.c */
/* span.c's thread state: runtime/ids.c (the traceidratio rule the sampler shares with
 * the shim) refers to it for id generation, which the harness never calls. */
__thread ss__thread ss__self __attribute__((tls_model("initial-exec")));

static void fuzz_http(const uint8_t *d, size_t n) {
  if (n < 1) return;
  size_t piece = (size_t)d[0] % 64 + 1;
  d++, n--;
  size_t scan = 0;
  for (size_t len = piece < n ? piece : n;; len = len + piece < n ? len + piece : n) {
    ss__http_req r;
    int rc = ss__http_parse((const char *)d, len, &scan, &r);
    if (rc == 1) {  /* everything it points at is inside the buffer */
      if (r.method + r.method_len > (const char *)d + len || r.head_len > len ||
          r.path + r.path_len > (const char *)d + len ||
          (r.ctype && r.ctype + r.ctype_len > (const char *)d + len))
        __builtin_trap();
      break;
    }
    if (rc != 0 || len == n) break;
  }
}

/* A chunked body as it arrives, into a buffer exactly as long as what has arrived (so
 * ASan sees any read past it), against a small bound so 413 happens too. The decoded
 * bytes must stay within what was consumed, and consumption within what arrived. */
static void fuzz_chunked(const uint8_t *d, size_t n) {
  if (n < 1) return;
  size_t piece = (size_t)d[0] % 64 + 1;
  d++, n--;
  char *buf = malloc(n ? n : 1);
  if (buf == NULL) return;
  ss__chunked c;
  memset(&c, 0, sizeof c);
  size_t have = 0;
  for (;;) {
    size_t len = have + piece < n ? have + piece : n;
    memcpy(buf + have, d + have, len - have);  /* new bytes only: decoded ones stay */
    have = len;
    char *exact = malloc(len ? len : 1);
    if (exact == NULL) break;
    memcpy(exact, buf, len);
    int rc = ss__chunked_decode(&c, exact, len, 4096);
    memcpy(buf, exact, len);
    free(exact);
    if (c.out > c.pos || c.pos > len || c.out > 4096) __builtin_trap();
    if (rc != 0 && rc != 1 && rc != 400 && rc != 413 && rc != 431) __builtin_trap();
    if (rc != 0 || len == n) break;
  }
  free(buf);
}

static void fuzz_inflate(int coding, const uint8_t *d, size_t n) {
  static uint8_t *out;
  static size_t cap;
  size_t len;
  int rc = ss__inflate(coding, d, n, 1u << 20, &out, &cap, &len);
  if ((rc == 200 && len > (1u << 20)) || cap > (1u << 20) + 1) __builtin_trap();
}

/* A unary gRPC request body under a grpc-encoding: OK must point at a message within
 * the bound, inside the input or the inflate buffer; anything else is a status we send. */
static void fuzz_grpc(const uint8_t *d, size_t n) {
  static uint8_t *out;
  static size_t cap;
  if (n < 1) return;
  int coding = d[0] % 3 == 0 ? SS_CE_IDENTITY : d[0] % 3 == 1 ? SS_CE_GZIP : SS_CE_DEFLATE;
  d++, n--;
  const uint8_t *msg;
  size_t len;
  const char *why = NULL;
  int rc = ss__grpc_unframe(d, n, coding, 1u << 16, &out, &cap, &msg, &len, &why);
  if (rc == SS_GRPC_OK) {
    if (len > (1u << 16)) __builtin_trap();
    if (!(msg == d + 5 && len == n - 5) && !(msg == out && len <= cap)) __builtin_trap();
  } else if ((rc != SS_GRPC_INTERNAL && rc != SS_GRPC_RESOURCE_EXHAUSTED) || why == NULL) {
    __builtin_trap();
  } else {
    char enc[128];
    ss__grpc_pct_encode(why, enc, sizeof enc);
  }
}

/* The sampler keeps its state across inputs (as across requests), in a small buffer and
 * window so that eviction, expiry and release all happen; time advances per input. */
static void sampler_start(void) {
  static int started;
  if (started++) return;
  ss__sampler_cfg c = {.ratio = 0.5, .slow_ns = 1000000, .wait_ms = 50,
                       .max_bytes = 256u << 10, .cache_traces = 1024};
  if (ss__sampler_init(&c) != 0) __builtin_trap();
}

/* Differential: whenever the wire reader (otlp_wire_json.c) takes the bytes, SQL
 * enrichment done on them (ss__sqlsum_wire) or while writing (ss__wire_traces_json_sql)
 * included, protobuf-c takes them too and the tree path (ss__sqlsum_enrich,
 * ss__json_traces) gives the same line. */
static void wire_vs_tree(const uint8_t *d, size_t n, ss__traces_req *q, int too_big) {
  static ss__buf w = SS_BUF_INIT, t = SS_BUF_INIT, e = SS_BUF_INIT, s = SS_BUF_INIT;
  ss__wire_info info, si, ci;
  ss__buf_reset(&w);
  ss__buf_reset(&t);
  ss__buf_reset(&s);
  int rs = ss__wire_traces_json_sql(d, n, &s, &si, ss__sqlsum_plan);
  if (ss__wire_traces_check(d, n, &ci) != rs || (rs == 0 && memcmp(&ci, &si, sizeof ci) != 0))
    __builtin_trap();  /* enriching while writing takes what the plain reader takes */
  int sql = ss__sqlsum_wire(d, n, &e);
  int tree = q && (ss__sqlsum_enrich(q), ss__json_traces(q, &t) == 0);
  if (rs == 0 && q == NULL && !too_big) __builtin_trap();
  if (rs == 0 && tree && (t.len != s.len || memcmp(t.data, s.data, s.len) != 0))
    __builtin_trap();
  if (sql == 1) d = (const uint8_t *)e.data, n = e.len;
  if (sql < 0) return;
  int rc = ss__wire_traces_json(d, n, &w, &info);
  if (ss__wire_traces_check(d, n, &ci) != rc || (rc == 0 && memcmp(&ci, &info, sizeof ci) != 0))
    __builtin_trap();  /* checking alone must answer as writing does */
  if (rc != 0) return;
  if (q == NULL) {
    if (!too_big) __builtin_trap();  /* taken here, refused by protobuf-c */
    return;
  }
  if (!tree) return;
  if (t.len != w.len || memcmp(t.data, w.data, w.len) != 0) __builtin_trap();
}

static void fuzz_traces(const uint8_t *d, size_t n) {
  static uint64_t now = 1;
  int too_big;
  ss__traces_req *q = ss__decode_traces(d, n, &too_big);
  wire_vs_tree(d, n, q, too_big);  /* enriches q */
  if (q == NULL) return;
  sampler_start();
  ss__sampler_tick(now += 7);
  const ss__traces_req *out = ss__sampler_process(q, now);
  if (out == NULL) return;
  ss__buf b = SS_BUF_INIT;
  ss__json_traces(out, &b);
  if (!b.oom && (b.len == 0 || b.data[b.len - 1] != '\n')) __builtin_trap();
  ss__buf_free(&b);
}

static void fuzz_logs(const uint8_t *d, size_t n) {
  int too_big;
  ss__logs_req *q = ss__decode_logs(d, n, &too_big);
  if (q == NULL) return;
  ss__buf b = SS_BUF_INIT;
  ss__json_logs(q, &b);
  ss__buf_free(&b);
}

/* OTLP JSON bodies (otlp_json_in.c through decode.c's bounded arena), then what the
 * pipeline does with a decoded request: JSON lines out again, which must end a line. */
static void fuzz_json(int logs, const uint8_t *d, size_t n) {
  int too_big;
  char err[256];
  ss__buf b = SS_BUF_INIT;
  if (logs) {
    ss__logs_req *q = ss__decode_logs_json(d, n, &too_big, err, sizeof err);
    if (q == NULL) {
      if (err[0] == '\0') __builtin_trap();  /* a failure always says why */
      return;
    }
    ss__json_logs(q, &b);
  } else {
    ss__traces_req *q = ss__decode_traces_json(d, n, &too_big, err, sizeof err);
    if (q == NULL) {
      if (err[0] == '\0') __builtin_trap();
      return;
    }
    ss__json_traces(q, &b);
  }
  if (!b.oom && (b.len == 0 || b.data[b.len - 1] != '\n')) __builtin_trap();
  ss__buf_free(&b);
}

static void fuzz_metrics(const uint8_t *d, size_t n) {
  int too_big;
  char err[256];
  if (n < 1) return;
  ss__metrics_req *q = ss__decode_metrics(d[0] & 1, d + 1, n - 1, &too_big, err, sizeof err);
  if (q == NULL) return;
  ss__buf b = SS_BUF_INIT;
  ss__json_metrics(q, &b);
  if (!b.oom && (b.len == 0 || b.data[b.len - 1] != '\n')) __builtin_trap();
  ss__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  switch (data[0] % 11) {
  case 0: fuzz_http(data + 1, size - 1); break;
  case 1: fuzz_traces(data + 1, size - 1); break;
  case 2: fuzz_logs(data + 1, size - 1); break;
  case 3: fuzz_chunked(data + 1, size - 1); break;
  case 4: fuzz_inflate(SS_CE_GZIP, data + 1, size - 1); break;
  case 5: fuzz_inflate(SS_CE_DEFLATE, data + 1, size - 1); break;
  case 6: fuzz_json(0, data + 1, size - 1); break;
  case 7: fuzz_json(1, data + 1, size - 1); break;
  case 8: fuzz_grpc(data + 1, size - 1); break;
  case 9: ss__fuzz_grpc_h2(data + 1, size - 1); break;
  default: fuzz_metrics(data + 1, size - 1); break;
  }
  return 0;
}
