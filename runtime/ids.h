/* ids.h - W3C trace and span ids, trace context and the traceparent header.
 *
 * Ids come from a per-thread SplittableRandom-style generator (a counter stepped by the
 * thread's own gamma, through splitmix64's finalizer; see ids.c) seeded from a
 * process-wide seed (getrandom at init, again in a fork child) mixed with a per-thread
 * counter: generating an id makes no system call, takes no lock and never yields an
 * all-zero id, so it is safe on the app thread and in signal handlers (a handler's draws
 * take other counter values). Not for cryptography. */
#ifndef SS_IDS_H
#define SS_IDS_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct ss__ctx {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t flags;  /* W3C trace flags; bit 0 = sampled, bit 1 = random trace id (Level 2) */
  uint8_t valid;  /* 0: no context */
  uint8_t lazy;   /* SS_LAZY_* ids not drawn yet (a span that is not recorded: its ids are
                     drawn when something reads this context, see ss__ctx_current) */
  uint32_t gen;   /* with live: the context holds while *live == gen */
  const _Atomic uint32_t *live; /* NULL: never expires (see ss__ctx_current) */
  const char *ts; /* W3C tracestate of this context (ts_len bytes), or NULL; the storage
                     outlives every span in it (configuration, a request's slot) */
  uint16_t ts_len;
} ss__ctx;

#define SS_LAZY_SPAN 1  /* span_id not drawn yet */
#define SS_LAZY_TRACE 2 /* trace_id not drawn yet either (a root) */

#define SS_TRACEPARENT_LEN 55 /* "00-" 32 "-" 16 "-" 2 */

/* Reseeds the process-wide seed; every thread picks the new seed up on its next id.
 * Called by the first id a process makes, and by the first one a fork child makes (from
 * any thread, a signal handler's too: getrandom and atomics; errno is kept). */
void ss__ids_reseed(void);
/* pthread_atfork child handler: the child reseeds at its first id (ss__ids_reseed then),
 * so it never repeats its parent's ids and one that makes none reads no randomness.
 * Async-signal-safe. */
void ss__ids_atfork_child(void);
void ss__trace_id_new(uint8_t id[16]);
void ss__span_id_new(uint8_t id[8]);
/* A new span id into span[8] and, unless trace is NULL, a new trace id into trace[16]
 * first: the same ids as ss__trace_id_new then ss__span_id_new would draw, for one check
 * of the thread's seed generation. Async-signal-safe (a handler's draws only advance the
 * thread's sequence); never an all-zero id. */
void ss__ids_new(uint8_t trace[16], uint8_t span[8]);

/* 1 when every byte is zero (an invalid W3C id). */
int ss__id_is_zero(const uint8_t *id, size_t n);

/* Lower-case hex of n bytes into out (2n chars, no NUL added). */
void ss__hex_encode(const uint8_t *in, size_t n, char *out);
/* Parses exactly 2n lower- or upper-case hex chars; 0 or -1. */
int ss__hex_decode(const char *in, size_t n, uint8_t *out);

/* Parses a W3C traceparent value ("00-<trace>-<span>-<flags>", surrounding blanks
 * allowed, future versions accepted per the spec's rules). Returns 0 and fills *out, or
 * -1 for anything invalid (all-zero ids, version ff, bad lengths or hex); *out unchanged. */
int ss__traceparent_parse(const char *s, size_t len, ss__ctx *out);
/* Writes the 55-char value and a NUL into out[56]. */
void ss__traceparent_format(const ss__ctx *c, char out[SS_TRACEPARENT_LEN + 1]);

#define SS_TRACESTATE_MAX 512       /* W3C: at most 512 characters are propagated */
#define SS_TRACESTATE_MEMBER_MAX 128 /* W3C: longer members go first when trimming */
/* Trims a tracestate value (s, len bytes, modified in place and NUL-terminated) to what
 * W3C Trace Context propagates: when it is over 512 characters (or `cut` says its end was
 * lost, the last member being incomplete), members over 128 characters are removed first,
 * then members from the end, until it fits. Members keep their order and are joined by
 * ","; blanks around members are dropped. Returns the new length. Async-signal-safe, no
 * allocation. */
size_t ss__tracestate_trim(char *s, size_t len, int cut);

/* The traceidratio rule, shared by the shim's sampler and spanshimd's: a trace is in the
 * ratio when its id's last 8 bytes, read big-endian (the part the W3C random flag makes
 * random), are below ratio * 2^64. So every process and collector keeps the same traces
 * for the same ratio. */
/* The bound for a ratio: UINT64_MAX (keep all) for ratio >= 1, 0 (keep none) for
 * ratio <= 0 or NaN. */
uint64_t ss__ratio_bound(double ratio);
/* 1 when trace_id is in the ratio whose bound is given; bound UINT64_MAX keeps all. */
int ss__ratio_keep(uint64_t bound, const uint8_t trace_id[16]);

#endif
