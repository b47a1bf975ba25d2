/* otlp.h - OTLP protobuf encoding of spans and log records, written by hand straight
 * into a buffer the caller owns and reuses.
 *
 * The exporter encodes every batch into the same buffers for the life of its thread:
 * no message tree, no per-field copies, no malloc per request once the buffers have
 * grown to the batch size (they never shrink). The wire format is
 * ExportTraceServiceRequest / ExportLogsServiceRequest (opentelemetry-proto v1) with one
 * ResourceSpans/ResourceLogs holding one ScopeSpans/ScopeLogs, fields in field-number
 * order, proto3 defaults left out, exactly what protobuf-c packs for the same message
 * (tests/unit/test_otlp.c decodes it with protobuf-c). Strings are made valid UTF-8 on
 * the way (each invalid byte becomes U+FFFD) and end at an embedded NUL.
 *
 * Not thread-safe per object: one writer per ss__otlp_req / ss__otlp_head. Used by the
 * shim's exporter (exporter thread or an exiting thread holding the drain lock), never on
 * an app thread, and by the tools and unit tests. */
#ifndef SS_OTLP_H
#define SS_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/attr.h"

/* A growable byte buffer. Grows by doubling, never shrinks; `failed` is set when a
 * growth failed (the content is then incomplete and must not be sent). A `fixed` buffer
 * is the caller's memory (p, cap set by the caller; never grown or freed): what does not
 * fit is left out (-ENOBUFS), the rest stands. That makes encoding into it allocation-free
 * and async-signal-safe (a dying thread's last request: runtime/exporter.c). */
typedef struct ss__pb {
  uint8_t *p;
  size_t len, cap;
  int failed;
  int fixed;
} ss__pb;

/* Empties b, keeping its memory. */
void ss__pb_reset(ss__pb *b);
/* Frees b's memory; b is then empty. */
void ss__pb_free(ss__pb *b);
/* Makes room for n more bytes; 0, or -ENOMEM (b->failed set), or -ENOBUFS for a fixed
 * buffer without room (b unchanged). */
int ss__pb_reserve(ss__pb *b, size_t n);

/* What is the same in every request of a process: the Resource and the
 * InstrumentationScope, encoded once (ss__otlp_head_build), and the schema URL. */
typedef struct ss__otlp_head {
  ss__pb resource;         /* Resource message (its fields) */
  ss__pb scope;            /* InstrumentationScope message (its fields) */
  const char *schema_url;  /* ResourceSpans/ScopeSpans.schema_url (and the Logs ones); may be NULL */
  size_t room;             /* bytes a request keeps in front of its items for the envelope */
} ss__otlp_head;

/* Encodes res and scope (either may be NULL) into h, reusing its buffers; schema_url
 * (static, may be NULL) is kept by pointer. 0 or -ENOMEM. */
int ss__otlp_head_build(ss__otlp_head *h, const ss__resource *res, const ss__scope *scope,
                        const char *schema_url);
void ss__otlp_head_free(ss__otlp_head *h);

/* The measures (length; valid UTF-8 without NUL) of strings whose bytes never change at
 * their address for the life of the process: the shim's own constants, which is what
 * every attribute key, span name and event name of a ring record is (span_rec.h). A
 * direct-mapped table by address, filled as they are met; a string that needs fixing is
 * never kept. Zero-initialized is empty. One writer at a time, like the request. */
#define SS_OTLP_CONSTS 64
/* With them, optionally, whole KeyValues by their key's address and value: a span's
 * attributes repeat (a connect's transport, type, peer address and port, the caller's
 * function), and a hit is one compare and one copy instead of measuring, checking and
 * writing key and value. SS_OTLP_KVS direct-mapped slots of SS_OTLP_KV_BYTES (an entry
 * is taken in on its value's second sighting in a row at its slot, so a one-off value
 * costs only the compare); values of integers, booleans, doubles and strings of up to
 * 24 bytes. */
#define SS_OTLP_KVS 256
#define SS_OTLP_KV_BYTES 128
typedef struct ss__otlp_kv ss__otlp_kv; /* private to otlp.c */
/* And whole attribute lists of spans (up to 8 KeyValues of the kinds above, 480 bytes
 * written): a span whose list is one seen before (a connect's to the same peer from the
 * same code) is one compare per attribute and one copy, its size known without a bound.
 * SS_OTLP_LISTS direct-mapped slots of SS_OTLP_LIST_BYTES, taken in on the second
 * sighting like the KeyValues. */
#define SS_OTLP_LISTS 16
#define SS_OTLP_LIST_BYTES 832
typedef struct ss__otlp_list ss__otlp_list; /* private to otlp.c */
typedef struct ss__otlp_consts {
  const char *p[SS_OTLP_CONSTS];
  uint32_t len[SS_OTLP_CONSTS];
  /* SS_OTLP_KVS * SS_OTLP_KV_BYTES bytes, zeroed, owned by whoever set it (the exporter
   * allocates it once for its life), or NULL: no KeyValue cache. */
  ss__otlp_kv *kv;
  /* SS_OTLP_LISTS * SS_OTLP_LIST_BYTES bytes, zeroed, owned as kv; or NULL: no list
   * cache (it is used only with kv). */
  ss__otlp_list *lists;
  ss__otlp_list *list_last; /* the slot of the last list looked up (otlp.c) */
} ss__otlp_consts;

/* One request being written: items go straight into `pb`, after `room` bytes kept for
 * the envelope, which ss__otlp_finish writes in front of them once their size is known. */
typedef struct ss__otlp_req {
  ss__pb pb;
  size_t items_at;  /* where the first item starts */
  size_t n;         /* items written */
  int logs;         /* 1: a logs request */
  /* Set by the caller (kept by ss__otlp_begin), or NULL: the spans added promise that
   * their attribute keys, names and event names (and their events' keys) are such
   * constants, so they are measured once per address instead of in every span. */
  ss__otlp_consts *consts;
} ss__otlp_req;

/* Starts a traces (logs = 0) or logs (logs = 1) request in q, reusing its buffer, for
 * head h. Never fails (a failure to grow shows up at ss__otlp_finish). */
void ss__otlp_begin(ss__otlp_req *q, const ss__otlp_head *h, int logs);
/* Appends one span (traces request) or log record (logs request). 0, or -ENOMEM, or
 * -ENOBUFS (a fixed buffer without room for it): the item is then not in the request
 * (what was written before it stays, and can be finished and sent). */
int ss__otlp_add_span(ss__otlp_req *q, const ss__span *s);
int ss__otlp_add_log(ss__otlp_req *q, const ss__logrec *l);
/* Writes the envelope and returns the request's bytes in *body (pointing into q->pb,
 * valid until the next ss__otlp_begin on q). 0, or -ENOMEM. */
int ss__otlp_finish(ss__otlp_req *q, const ss__otlp_head *h, const uint8_t **body,
                    size_t *len);

/* One-shot forms for the tools and tests: the whole request in a malloc'd buffer that
 * the caller frees. 0 or -ENOMEM. */
int ss__otlp_encode_traces(const ss__resource *res, const ss__scope *scope,
                           const ss__span *spans, size_t n, uint8_t **out, size_t *out_len);
int ss__otlp_encode_logs(const ss__resource *res, const ss__scope *scope,
                         const ss__logrec *logs, size_t n, uint8_t **out, size_t *out_len);

#endif
