/* exporter.h - the exporter: drains the span ring, encodes OTLP and posts it.
 *
 * One exporter thread per process, started on first use (the first committed span), with
 * all signals blocked and marked internal so nothing it does is traced, working in an fd
 * table of its own where the kernel allows (runtime/ownfd.h): no fd it makes can take a
 * number the app could get. It also loads the unwinder for an app thread's first failure
 * and delivers an exit's last spans when it is idle (ss__exporter_flush). It looks at the
 * ring every 10 ms (every 1 ms while spans come fast, and 1 ms after it starts) and exports
 * when a quarter batch
 * (OTEL_BSP_MAX_EXPORT_BATCH_SIZE / 4) is waiting, the ring is an eighth full, or
 * OTEL_BSP_SCHEDULE_DELAY has passed. Spans that cannot be delivered (ring full, no
 * collector, refused, given up at exit) are counted exactly and reported to the collector
 * as `spanshim.spans.dropped` log records, exception log records likewise as
 * `spanshim.logs.dropped` (exporter.c says how the counts stay exact).
 *
 * Locks: `drain` (the ring's consumer side) is taken by the exporter thread and by
 * ss__exporter_flush; the transport lock nests inside it. Neither is ever taken on an app
 * thread's hot path. */
#ifndef SS_EXPORTER_H
#define SS_EXPORTER_H

#include <stdatomic.h>
#include <stdint.h>

#include "runtime/config.h"
#include "runtime/transport.h"

/* Sets up the tracer (ring, sampler) and exporter state from the config. No thread yet.
 * 0 or -errno (tracing then stays off). */
int ss__exporter_init(const ss__config *c);
/* Called after each commit, on the app thread: starts the exporter thread once per
 * process. Cheap when already running (one atomic load). */
void ss__exporter_kick(void);
/* Nonzero while a young fork child holds committed spans for its end instead of starting
 * the exporter thread (exporter.c, FORK_QUIET_MS). */
extern _Atomic int ss__exporter_holding;
/* Starts the exporter thread for spans held that way; errno kept. Cold. */
void ss__exporter_release(void);
/* Called by the hooks of calls that wait for what comes next (accept, accept4, and
 * poll, ppoll, select, pselect, epoll_wait, epoll_pwait, epoll_pwait2 with a timeout other
 * than zero) before the real call, on the app thread: a fork child that waits so (a
 * server's worker between requests) is not about to end, so what it holds goes out now,
 * not at its end. (Not read or recv in general: a child reads the answers to its own calls;
 * only a read of an accepted HTTP connection with no request in flight, ss__http_before_read.) One relaxed load
 * when nothing is held. Signal-safe as ss__exporter_kick is. */
static inline void ss__exporter_before_wait(void) {
  if (__builtin_expect(atomic_load_explicit(&ss__exporter_holding, memory_order_relaxed), 0))
    ss__exporter_release();
}
/* Exports everything committed so far from the calling thread (the exporter thread
 * stops between two records), its requests written back to back and their answers read
 * afterwards, giving up at timeout_ms: what is left is counted as dropped and the count
 * sent in the time kept for it. timeout_ms counts the flush's running and its waits for
 * the collector; time the thread waits for a CPU is added, up to 9 times timeout_ms.
 * Used at exit and exec. When the calling thread can make no fd (the app holds every fd
 * its hard RLIMIT_NOFILE allows), the exporter thread delivers instead from its own fd
 * table (started for it if need be), on the same budget, and the calling thread waits
 * for it. Returns 0 when everything was delivered, -ETIMEDOUT, -EIO or -ECANCELED
 * otherwise. */
int ss__exporter_flush(uint32_t timeout_ms);
/* The same for a thread that is ending the process for good (_exit, _Exit: nothing of
 * the app runs on it after): its connection is made in a copy of the app's fd table of
 * its own (runtime/ownfd.h: ss__own_go_private_copy), where it cannot take a number an
 * app thread could get (a copy of a full table is full: the exporter thread delivers
 * then, as above). */
int ss__exporter_flush_ending(uint32_t timeout_ms);
/* From a signal handler that is about to let a signal kill the process, when no
 * exporter thread was started (a process that made no span before the signal: only its
 * process span is queued): the dying thread delivers what is queued itself, within
 * timeout_ms, from a copy of the app's fd table of its own, with an encoder that neither
 * allocates nor takes a lock the interrupted code may hold (fixed buffers, no
 * symbolizing: the spans go without raw stacks; a TCP endpoint's name is not looked up:
 * a numeric host or localhost). What it cannot deliver is counted, and said in the
 * diagnostics when the collector cannot be told. Call ss__exporter_exiting first (a
 * commit must not start a thread). Async-signal-safe (as far as snprintf is, like the
 * diagnostics). */
void ss__exporter_flush_dying(uint32_t timeout_ms);
/* The same from a signal handler (a dying thread): asks the exporter thread for a
 * delivery that starts after the call (an exit's: pipelined, within timeout_ms of its
 * running plus the time it waits for a CPU, up to 9 times timeout_ms; the final count of
 * spans and exception records sent last) and waits for it with nanosleep, without locks,
 * at most 10 times timeout_ms (+10 ms) of sleeps. Does nothing when called on the
 * exporter thread or when it is not running. Async-signal-safe. */
void ss__exporter_flush_signal(uint32_t timeout_ms);
/* The process is exiting: from now on spans do not start an exporter thread; the exit
 * flush delivers them from the exiting thread itself (cheaper than a thread start for
 * a short process whose only span is its process span). */
void ss__exporter_exiting(void);
/* 1 when the process is exiting because its last thread ended (pthread_exit, or a return
 * from a thread's start routine: glibc then calls exit(0) on that thread), 0 otherwise
 * (exit(), a return from main, or not known). Any thread, async-signal-safe. */
int ss__exporter_last_thread_ended(void);
/* 1 when this process's exporter thread has been started. */
int ss__exporter_running(void);
/* pthread_atfork child handler: no exporter thread, fresh ring, fresh connection, new
 * resource (pid) on next export. */
void ss__exporter_atfork_child(void);
/* pthread_atfork prepare handler: the clock the child's quiet time counts from, read in
 * the parent (a child that makes no span then reads no clock: libc's clock_gettime and the
 * vDSO are pages of code it would fault in for that alone). */
void ss__exporter_atfork_prepare(void);
/* Spans produced but not delivered, so far in this process. */
uint64_t ss__exporter_dropped(void);
/* Exception log records produced but not delivered, so far in this process (0 when they
 * do not go to a collector). */
uint64_t ss__exporter_logs_dropped(void);
/* The fd guards' questions about the collector connection (see transport.h): is fd the
 * exporter's socket, which number is it (-1 none), and move it elsewhere (before the app
 * dup2s onto its number). Any thread; ss__exporter_move_fd may wait up to ~100 ms. */
int ss__exporter_owns_fd(int fd);
int ss__exporter_fd(void);
void ss__exporter_move_fd(void);

extern ss__transport ss__transport_g;

#endif
