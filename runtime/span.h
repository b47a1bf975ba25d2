/* span.h - the app-thread side of tracing: starting and ending spans.
 *
 * A hook keeps an ss__sb (span builder) on its stack. ss__span_start takes ids, the parent
 * from this thread's context stack (else the process's TRACEPARENT) and the start time,
 * and pushes the span as the current context; attributes point at the hook's memory until
 * ss__span_end, which pops the context, stamps the end time and copies the span as one
 * variable-length record into the span ring (strings capped at the attribute value
 * limit). Nothing here allocates, locks or makes a system call other than the vDSO clock,
 * so it is usable on any app thread and in signal handlers.
 *
 * A span whose outcome is known later (a non-blocking connect) is serialized with
 * ss__span_park into memory the hook owns and finished later with ss__rec_finish, on any
 * thread. */
#ifndef SS_SPAN_H
#define SS_SPAN_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/attr.h"
#include "runtime/ids.h"
#include "runtime/ring.h"

#define SS_SPAN_MAX_ATTRS 24
#define SS_CTX_DEPTH 32
#define SS_STACK_MAX 136 /* SPANSHIM_STACK_DEPTH's ceiling (128) plus the shim's own frames */
/* Or'ed into a status for ss__rec_finish: an error that is not a failed call (an exit
 * status), so no stack is captured. */
#define SS_STATUS_NO_STACK 0x80
/* Or'ed in by a caller running in a signal handler: capture only if the unwinder is already
 * loaded (loading it is not async-signal-safe). */
#define SS_STATUS_IN_SIGNAL 0x40

/* ---- per-thread state ---- */
typedef struct ss__thread {
  int internal;                 /* > 0: the shim's own work; hooks pass through */
  int depth;                    /* entries used in ctx */
  ss__ctx ctx[SS_CTX_DEPTH];
  uint64_t rng[4]; /* the id generator's state (ids.c) */
  uint32_t rng_gen;
} ss__thread;

extern __thread ss__thread ss__self __attribute__((tls_model("initial-exec")));

/* The shim's own work on this thread (init, fork handling, the exporter): while inside,
 * every hook passes straight through. Nests. */
static inline void ss__internal_begin(void) { ss__self.internal++; }
static inline void ss__internal_end(void) { ss__self.internal--; }
static inline int ss__internal(void) { return ss__self.internal != 0; }

/* ---- process-wide tracing state, set once at init ---- */
typedef struct ss__tracer {
  ss__ring ring;
  uint32_t attr_value_limit;
  int sampler;                  /* enum ss__sampler */
  uint8_t export_traces;        /* OTEL_TRACES_EXPORTER names an exporter: sampled spans
                                   are recorded (else only their context is passed on) */
  uint8_t propagate_only;       /* OTEL_SDK_DISABLED: spans take their parent's context
                                   as theirs (the no-op API's rule), none is recorded */
  uint64_t ratio_bound;         /* sample when trace id's low 8 bytes (BE) < bound */
  ss__ctx root_parent;          /* from TRACEPARENT; valid == 0 when none */
  void (*on_commit)(void);      /* called after each committed record (exporter kick) */
  int stack_depth;              /* frames to capture on failure; 0: none */
  _Atomic uint64_t drops[5];    /* spans lost before the ring, by enum ss__drop_reason */
  /* Of the spans lost at the ring (full, or no collector when they ended), those of failed
   * calls: each would have made an exception log record (exporter.c counts them dropped). */
  _Atomic uint64_t exc_dropped;
  /* 1 while the exporter has no collector to send to: sampled spans are counted as
   * dropped when they end instead of being recorded (nothing is encoded that cannot be
   * sent). Set and cleared by the exporter; read relaxed on the app thread. */
  _Atomic int no_sink;
} ss__tracer;

extern ss__tracer ss__tracer_g;

/* ---- span builder ---- */
typedef struct ss__sb {
  ss__span s;
  ss__attr attrs[SS_SPAN_MAX_ATTRS];
  uint8_t recording;            /* sampled: will be exported */
  uint8_t pushed;               /* on this thread's context stack */
  uint8_t exc;                  /* a failed call: export an exception record */
  uint8_t lazy;                 /* SS_LAZY_*: s's ids not drawn yet (not recording) */
  int token;                    /* its context's index (ss__ctx_push) while pushed */
  uint16_t ts_len;              /* the parent context's tracestate, carried by the span */
  const char *ts;
  uint32_t rec_size; /* the record's header and attributes, as serialized (the
                        status message, tracestate and stack are added at the end) */
  uint16_t n_stack;
  uint64_t stack[SS_STACK_MAX]; /* filled by ss__span_error */
} ss__sb;

/* Starts a span named `name` (a static string) of the given SS_KIND_*. Always pushes a
 * context (so children and propagation work), records only when sampled. Returns
 * b->recording. `caller` is the return address into the code that called the hooked
 * function (code.function.name); it is kept only for a thread's outermost span, since a
 * nested span's parent already names the application code. */
int ss__span_start_at(ss__sb *b, const char *name, int kind, void *caller);

/* The same, taking the caller from the enclosing function's return address: call it
 * directly from the exported hook function. */
#define ss__span_start(b, name, kind) \
  ss__span_start_at((b), (name), (kind), __builtin_return_address(0))
/* OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT as configured (bytes; 0: none). */
uint32_t ss__span_value_limit(void);
/* Attributes; no-ops when not recording or full. len == (size_t)-1 means strlen. Strings
 * longer than the attribute value limit are cut (never inside a UTF-8 sequence). */
void ss__span_str_slow(ss__sb *b, const char *key, const char *s, size_t len);
#define SS__REC_ATTR_HEAD 16 /* a record attribute's header (span_rec.h's ss__rec_attr) */
/* ss__span_str's common case inline (recording, room, a known length within the limit):
 * four stores and the record size; the rest out of line. */
static inline __attribute__((always_inline)) void ss__span_str(ss__sb *b, const char *key,
                                                               const char *s, size_t len) {
  uint32_t lim = ss__tracer_g.attr_value_limit;
  if (__builtin_expect(!b->recording || s == NULL || len == (size_t)-1 ||
                           b->s.n_attrs >= SS_SPAN_MAX_ATTRS || (lim != 0 && len > lim),
                       0)) {
    ss__span_str_slow(b, key, s, len);
    return;
  }
  ss__attr *a = &b->attrs[b->s.n_attrs++];
  a->key = key;
  a->type = SS_ATTR_STR;
  a->len = (uint32_t)len;
  a->v.s = s;
  b->rec_size += (uint32_t)(SS__REC_ATTR_HEAD + ((len + 7) & ~(size_t)7));
}
static inline __attribute__((always_inline)) void ss__span_int(ss__sb *b, const char *key,
                                                               int64_t v) {
  if (__builtin_expect(!b->recording || b->s.n_attrs >= SS_SPAN_MAX_ATTRS, 0)) return;
  ss__attr *a = &b->attrs[b->s.n_attrs++];
  a->key = key;
  a->type = SS_ATTR_INT;
  a->len = 0;
  a->v.i = v;
  b->rec_size += SS__REC_ATTR_HEAD + 8;
}
void ss__span_bool(ss__sb *b, const char *key, int v);
void ss__span_strarr(ss__sb *b, const char *key, const char *items, size_t len);
/* Status ERROR, error.type = type, status message = message (either may be NULL); when
 * recording, also captures the stack (SPANSHIM_STACK_DEPTH frames) for the exception
 * record. */
void ss__span_error(ss__sb *b, const char *type, const char *message);
/* Status ERROR and error.type = type, without a stack or exception record: an outcome
 * the protocol reported (an HTTP client's 4xx or 5xx answer), not a call that failed —
 * semconv: instrumentations SHOULD NOT record artificial exceptions for such statuses. */
void ss__span_fail(ss__sb *b, const char *type);
/* A builder that is never started nor committed: a scratch place for attributes and a
 * status (then ss__rec_finish_from). */
void ss__span_scratch(ss__sb *b);
/* The span's own context (trace id, span id, flags), sampled or not: what children and
 * injected headers carry. A span that is not recorded draws its ids here (or took the ones
 * a child drew), so b is written too. */
void ss__span_ctx(ss__sb *b, ss__ctx *out);
/* Renames the span (name: a static string) once what it is became known. */
void ss__span_rename(ss__sb *b, const char *name);
/* Sets the status message only (len bytes of msg, which must outlive the span's end);
 * the status stays as it is. */
void ss__span_message(ss__sb *b, const char *msg, size_t len);
/* Copies the attributes (but key `skip`), status message and status of b into a parked
 * record (as ss__rec_add_*) and finishes it at end_ns (ss__rec_finish); b is not
 * committed itself. For an outcome learned with a throwaway builder. */
void ss__rec_finish_from(void *rec, size_t cap, const ss__sb *b, const char *skip,
                         uint64_t end_ns);
/* Moves the span's start back to ns (CLOCK_REALTIME ns, as ss__now_ns): a span whose
 * first byte was seen before its kind was known (an HTTP request). */
void ss__span_set_start(ss__sb *b, uint64_t ns);
/* Pops the context, stamps the end time, commits. */
void ss__span_end(ss__sb *b);
/* Pops the context without ending the span (its outcome comes later). */
void ss__span_pop(ss__sb *b);

/* Serializes the span (end time 0) into dst; returns bytes used, or 0 if it does not fit
 * in cap (then nothing is parked). */
size_t ss__span_park(const ss__sb *b, void *dst, size_t cap);
/* Appends a string attribute to a parked record; 0, or -1 if it does not fit in cap. */
int ss__rec_add_str(void *rec, size_t cap, const char *key, const char *s, size_t len);
/* Appends an integer attribute to a parked record; 0, or -1 if it does not fit. */
int ss__rec_add_int(void *rec, size_t cap, const char *key, int64_t v);
/* Sets the end time and status of a parked record and commits a copy to the ring. An
 * ERROR status captures the finishing thread's stack into the record too, unless
 * SS_STATUS_NO_STACK is or'ed in. */
void ss__rec_finish(void *rec, uint64_t end_ns, int status);

/* 1 when a ring record of len bytes carries a failed call's stack (it makes an exception
 * log record when exported), else 0 (also for a malformed record). Reads only the
 * attribute headers. */
int ss__rec_has_stack(const void *rec, size_t len);
/* Decodes a ring record into a span; attrs[] gets up to max entries pointing into rec.
 * Returns 0 or -1 for a malformed record. */
int ss__rec_decode(const void *rec, size_t len, ss__span *out, ss__attr *attrs, size_t max);

/* ---- this thread's context: the one API hooks use ----
 * The context stack is per thread: touching it from another thread is a bug. Every
 * function here is async-signal-safe (a handler's pushes are popped before it returns). */

/* Current context of this thread (top of stack, else the process root parent). 1 when
 * there is one (copied to *out), else 0. A pushed context with valid == 0 is a barrier:
 * spans started while it is on top are roots of new traces; so is a context with `live`
 * set once *live no longer equals its `gen` (its owner ended it: a request's context
 * that a pool thread inherited stops applying when the response is complete). */
int ss__ctx_current(ss__ctx *out);
/* Spans open on this thread's stack (0: none; may exceed SS_CTX_DEPTH). */
int ss__ctx_depth(void);
/* Makes c the thread's current context until ss__ctx_pop(token) with the returned token.
 * Past SS_CTX_DEPTH the push is counted but not stored, so pops stay balanced. */
int ss__ctx_push(const ss__ctx *c);
/* Drops every context pushed since the push that returned token (none if already gone). */
void ss__ctx_pop(int token);
/* Replaces the context pushed at token if it is still the top; 1 if replaced, else 0. */
int ss__ctx_replace(int token, const ss__ctx *c);
/* Starts this thread's stack afresh as [c] (a new thread inheriting its creator's span);
 * c == NULL empties it. */
void ss__ctx_reset(const ss__ctx *c);
/* The context a parked record stands for (its trace, span id and flags). */
void ss__rec_ctx(const void *rec, ss__ctx *out);
/* Sets the process's root parent: every span started with an empty stack is its child
 * (the process span; TRACEPARENT). Call before other threads make spans. */
void ss__ctx_set_root(const ss__ctx *c);
/* The process root parent (valid == 0 when none); 1 when there is one. */
int ss__ctx_root(ss__ctx *out);

/* ---- losses before the ring ----
 * A hook that cannot keep a sampled span (its fixed table is full, a record does not fit)
 * says so here; the counts join the ring's own in spanshim.spans.dropped. Lock-free,
 * async-signal-safe. */
enum ss__drop_reason {
  SS_DROP_TABLE_FULL = 0, /* a hook's fixed table of in-flight spans was full */
  SS_DROP_TOO_BIG = 1,    /* the span did not fit the space parked for it */
  SS_DROP_QUEUE = 2,      /* a pipeline/queue of the traced library overflowed */
  SS_DROP_OTHER = 3,
  SS_DROP_NO_COLLECTOR = 4, /* ended while no collector could be reached */
};
#define SS_DROP_REASONS 5
void ss__dropped(enum ss__drop_reason why);
/* Count lost for that reason since start (or fork); SS_DROP_RING_FULL (-1) gives the ring's. */
#define SS_DROP_RING_FULL (-1)
uint64_t ss__dropped_count(int why);
/* Every span lost before the exporter: the ring's drops plus each reason above. */
uint64_t ss__dropped_total(void);
/* A number that moves whenever a span is queued or lost (ring reservations plus every
 * drop): equal readings mean no span was made in between. Lock-free. */
uint64_t ss__tracer_activity(void);

/* Tracer setup: ring of `ring_bytes`, sampler from config. 0 or -errno. */
struct ss__config;
int ss__tracer_init(const struct ss__config *c, size_t ring_bytes, void (*on_commit)(void));

#endif
