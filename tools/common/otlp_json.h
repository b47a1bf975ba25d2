/* otlp_json.h - OTLP JSON encoding (the OTLP/JSON file format) of decoded OTLP requests.
 *
 * Follows the OTLP specification's JSON rules, which differ from plain proto3 JSON in
 * two places: trace and span ids are lowercase hex (not base64) and enums are integers.
 * Otherwise proto3 JSON: lowerCamelCase names, 64-bit integers (intValue, timestamps) as
 * decimal strings, bytes (bytesValue) as base64, fields at their default value omitted
 * (a set oneof member and a present sub-message are kept), non-finite doubles as "NaN",
 * "Infinity", "-Infinity". Strings are escaped so the output is always valid JSON: control
 * characters as \u00XX (or \n, \t, ...), and each byte of invalid UTF-8 as U+FFFD.
 *
 * Pure functions: they append to a caller-owned ss__buf and keep no state, so they are
 * safe on any thread with distinct buffers. Nesting of AnyValue deeper than
 * SS_JSON_MAX_DEPTH is written as an empty value rather than recursing further. */
#ifndef SS_OTLP_JSON_H
#define SS_OTLP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "tools/common/buf.h"

#define SS_JSON_MAX_DEPTH 64

/* Appends one line, a TracesData object `{"resourceSpans":[...]}` and '\n'. The key is
 * always present (an empty request gives `{"resourceSpans":[]}`) so every line says what
 * it holds. 0, or -ENOMEM (out->len is then restored to its value on entry). */
int ss__json_traces(const Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest *req,
                    ss__buf *out);
/* Same for logs: `{"resourceLogs":[...]}` and '\n'. */
int ss__json_logs(const Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest *req,
                  ss__buf *out);

/* Same for metrics: `{"resourceMetrics":[...]}` and '\n', written field by field from the
 * protobuf-c descriptors (every field of the schema, the same rules: exemplars' ids in
 * hex, other bytes base64, unset proto3 fields left out, set oneof and optional ones kept). */
int ss__json_metrics(const Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest *req,
                     ss__buf *out);

/* For descriptor-driven code (this writer, spanshimd's JSON reader): whether f is one of
 * OTLP's hex-encoded id fields (bytes trace_id, span_id, parent_span_id), and the bytes
 * one value of type t takes in a protobuf-c message or repeated array. */
int ss__otlp_is_id_field(const ProtobufCFieldDescriptor *f);
/* What a JSON reader stores as the bytes of an id field whose text is not hex (data
 * points here, len 1), so that validation refuses that span or record alone and can say
 * why (no other id's bytes live here). */
extern const uint8_t ss__otlp_not_hex_id[1];
size_t ss__pb_value_size(ProtobufCType t);

/* Building blocks, for other JSON the tools write (e.g. spanshimd's /stats). */
/* A quoted, escaped JSON string of s[0..len). */
void ss__jw_str(ss__buf *b, const char *s, size_t len);
/* A quoted lowercase hex string of n bytes. */
void ss__jw_hex(ss__buf *b, const uint8_t *p, size_t n);
/* An unquoted decimal number. */
void ss__jw_u64(ss__buf *b, uint64_t v);
/* `"lit":` (lit[0..len), not escaped), after a comma unless it is the object's first
 * member: *n counts the members written. Inline, so a literal's length is a constant. */
static inline __attribute__((always_inline)) void ss__jw_key(ss__buf *b, int *n,
                                                             const char *lit, size_t len) {
  char *o = ss__buf_room(b, len + 4);
  if (o == NULL) return;
  size_t k = 0;
  if ((*n)++) o[k++] = ',';
  o[k++] = '"';
  memcpy(o + k, lit, len);
  k += len;
  o[k++] = '"';
  o[k++] = ':';
  b->len += k;
}
void ss__jw_i64(ss__buf *b, int64_t v);
/* A double: the shortest of %.15g/%.16g/%.17g that reads back exactly; NaN and the
 * infinities as the proto3 JSON strings. */
void ss__jw_double(ss__buf *b, double d);
/* A quoted base64 string (RFC 4648, padded) of n bytes. */
void ss__jw_base64(ss__buf *b, const uint8_t *p, size_t n);

/* ---- straight from the wire (otlp_wire_json.c) ---- */

/* What ss__wire_traces_json saw, for spanshimd to decide whether it may use that JSON
 * (or must unpack the request to validate or enrich it). */
typedef struct ss__wire_info {
  uint64_t spans;
  uint64_t bad_ids;   /* spans with a trace or span id of the wrong size or all zero, or
                         a parent span id neither empty nor 8 bytes */
  int sql;            /* some span has a db.query.text attribute */
  int stacks;         /* some span event has a spanshim.stack.modules attribute */
} ss__wire_info;

/* A string in someone else's memory; p NULL: absent. */
typedef struct ss__strv {
  const char *p;
  size_t n;
} ss__strv;
/* What SQL enrichment reads of a span: the first db.query.text, db.system.name,
 * db.system and db.operation.name attributes that have string values, and its name. */
typedef struct ss__sql_in {
  ss__strv text, sys_name, sys, api_op, name;
} ss__sql_in;
/* ... and what it changes: attributes to set (replacing the first of that key, else
 * appended, in this order), one to remove, the span's new name (p NULL: kept). Values
 * point into the statement cache: valid until the next ss__sqlsum_plan call. */
typedef struct ss__sql_edit {
  int changed;
  struct { const char *key; size_t key_len; ss__strv val; } set[4];
  size_t n_set;
  const char *remove;
  ss__strv name;
} ss__sql_edit;
/* Decides the edit of one span whose db.query.text attribute was found; returns
 * e->changed (0: the span is written as it is). spanshimd's ss__sqlsum_plan. */
typedef int (*ss__sql_planner)(const ss__sql_in *in, ss__sql_edit *e);

/* Appends the line ss__json_traces would write for the ExportTraceServiceRequest whose
 * protobuf bytes are p[0..len) (as unpacked by protobuf-c), read in place: nothing is
 * allocated besides out's growth and the calling thread's attribute caches (584 KiB of
 * single attributes and 512 KiB of spans' whole attribute lists, each at its first use;
 * they keep the JSON of attributes seen again, and the last SQL edit of a list, keyed by
 * their exact wire bytes, so the output never depends on them). Returns 0 (*info filled), 1 when the bytes
 * are not in the canonical encoding this reader takes, or not valid (the caller unpacks
 * them with protobuf-c instead, which decides), or -ENOMEM; out->len is unchanged unless
 * 0 is returned. Safe on any thread (the caches are per thread). */
int ss__wire_traces_json(const uint8_t *p, size_t len, ss__buf *out, ss__wire_info *info);
/* The same walk without writing: 0 (*info filled) exactly when ss__wire_traces_json
 * would return 0 with the same *info, else 1. For when nobody wants the JSON. */
int ss__wire_traces_check(const uint8_t *p, size_t len, ss__wire_info *info);
/* ss__wire_traces_json with SQL enrichment applied as the line is written: for each span
 * with a db.query.text attribute, `plan` is given what it reads (ss__sql_in) and its
 * edit (ss__sql_edit) is written in: set attributes replace the first of their key in
 * place or come last, in order, the removed one is left out, the name replaced. The
 * line is then what ss__json_traces writes for the same request unpacked and enriched
 * by ss__sqlsum_enrich with the same plans; replaced and removed attributes are still
 * checked, so the same bytes are taken or declined as without `plan`. plan is called
 * before a later part of the request may decline it (its counts are the caller's to
 * undo then). plan NULL: ss__wire_traces_json. */
int ss__wire_traces_json_sql(const uint8_t *p, size_t len, ss__buf *out, ss__wire_info *info,
                             ss__sql_planner plan);
/* Frees the calling thread's attribute caches (the next call allocates them again). */
void ss__wire_cache_free(void);

#endif
