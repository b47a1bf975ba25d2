/* exporter.c - drains the span ring into OTLP requests; see exporter.h.
 *
 * Encoding: each ring record is decoded in place (a view, no copy), sanitized, given its
 * exception parts, and written as protobuf straight into the request buffer (otlp.h);
 * its ring space is released at once, before the request is even sent, so the app
 * refills the ring while the exporter sends. Every buffer lives as long as the thread
 * that uses it and only grows: no malloc or free per batch.
 *
 * Accounting, exact: received + dropped = produced.
 *   C  records committed to the ring (ring.committed)
 *   D  spans lost before the ring (ss__dropped_total: ring full, tables, no collector)
 *   H  spans in traces requests the collector has whole (`handed`): counted the moment
 *      the request's last byte is written, whatever the answer's fate (a request cut by
 *      a deadline after that is the collector's to count, never ours too), and taken back
 *      when the collector answers that it refused the request
 *   U  spans taken from the ring and given up (`undelivered`)
 * Dropped is D + U while the process runs; D + (C - H) once an exiting thread has
 * claimed the accounting (everything not handed over, in the ring or in the exporter's
 * hands). Drops reach the collector as a log record (event `spanshim.spans.dropped`,
 * attribute spanshim.spans.dropped = the spans this record reports, .total = the
 * process's count so far), sent after the traces request that follows the drop; it is
 * counted as reported the moment it is written whole, like spans. One sender reports at a
 * time (a report counts what is not yet in a report written whole; reports_here): while
 * an exit delivers, only its final count does.
 *
 * Exception log records are counted the same way. A record is produced for each failed
 * call's span that was recorded (its ring record carries a stack) when log records go to
 * OTLP (SPANSHIM_EXCEPTION_SIGNAL with `log`, OTEL_LOGS_EXPORTER with `otlp`):
 *   LD  records whose span was lost at the ring (ss__tracer_g.exc_dropped: full, or no
 *       collector when it ended)
 *   LT  records taken from the ring (`ltaken`: encoded, or discarded)
 *   LH  records in logs requests the collector has whole (`lhanded`), taken back on a
 *       refusal
 *   LU  records taken and given up (`lundelivered`: not encodable, request failed or
 *       refused, discarded)
 * Dropped is LD + LU, and LD + (LT - LH) once an exit claimed the accounting; they are
 * reported as `spanshim.logs.dropped` records (.total likewise) beside the span count. A
 * failed call whose span was not recorded at all (not sampled, a hook's table full, no
 * collector when it began) makes no record: only its span counts.
 *
 * Who may write: `sender` is 0 (free), 1 (the sender is inside a write or a count
 * change) or 2 (claimed for good by an exit flush that gave up on the sender). A write
 * starts only by moving 0 → 1, so once an exit has claimed, no byte more goes out from
 * the exporter thread and H and `reported` are frozen for the final count. */
#include "runtime/exporter.h"
#include "runtime/sys.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/console.h"
#include "runtime/deadline.h"
#include "runtime/exceptions.h"
#include "runtime/log.h"
#include "runtime/otlp.h"
#include "runtime/ownfd.h"
#include "runtime/resource.h"
#include "runtime/sanitize.h"
#include "runtime/span.h"
#include "runtime/span_rec.h"
#include "runtime/stack.h"
#include "runtime/symbolize.h"

#define TICK_IDLE_MS 10
#define TICK_BUSY_MS 1
#define MAX_ATTRS_PER_SPAN 64
#define BYTES_PER_QUEUED_SPAN 256
/* Exception records go out after at most this many, so a failing program's first ones
 * are delivered early rather than after all its spans. */
#define MAX_LOGS_PER_REQUEST 64
/* What an exit flush keeps of its budget for the last drop report. */
#define EXIT_REPORT_RESERVE_MS 20
/* The least time a first request, or a final count, gets when the process could not run
 * for most of its budget. */
#define MIN_REQUEST_MS 20
/* Requests an exit writes before it must have the answer to the oldest. */
#define MAX_INFLIGHT 16
/* An exit's budget counts the time its flush runs or waits for the collector, not the
 * time the kernel keeps it waiting for a CPU on a loaded machine: that (its wall time
 * less its CPU time and its waits) is added to the deadlines, up to this many times the
 * budget. */
#define EXIT_STALL_FACTOR 9
/* How long an exit waits for spanshimd's answers on its Unix socket once its requests are
 * written: a request written whole counts as delivered; an answer only tells of a
 * refusal, which spanshimd counts itself when it is slower than this. The process does
 * not wait for a busy collector to be scheduled (a fork child's exit, on a loaded
 * machine). Over TCP an exit reads every answer, within its budget (answers_due). */
#define EXIT_ANSWER_MS 5
/* A fork child starts no exporter thread for the spans it makes in its first
 * FORK_QUIET_MS (unless a quarter batch waits): most fork children (a shell's subshell, a
 * forking server's job, a pool worker's short task) end soon after their first spans, and
 * their end delivers from the ending thread itself, which costs far less than starting a
 * thread: its stack and TLS, the clone, its fd-table copy, its first look at the ring, and
 * the child's every later copy-on-write fault made dearer by a second thread (a TLB
 * shootdown each). The first span committed after that starts it, and so does the child's
 * next wait for I/O while it holds spans (ss__exporter_before_wait): a child that waits
 * (a server's worker between requests, a pool worker between tasks) is not about to end,
 * and its spans must not wait for its end. */
#define FORK_QUIET_MS 100


/* Aligned 64: first in .bss with the config and the tracer (see ss__cfg in shim/shim.c);
 * what its init writes (everything before rbuf) then shares their page. */
ss__transport ss__transport_g __attribute__((aligned(64)));

static const ss__config *cfg;
static _Atomic int started;           /* exporter thread started in this process */
static _Atomic int exiting;           /* no thread starts any more (see exporter.h) */
/* A fork child's spans start no thread before this (monotonic ms; 0: no such wait). */
static _Atomic uint64_t quiet_until_ms;
static uint64_t fork_ms; /* the monotonic clock just before the last fork (in the parent) */
_Atomic int ss__exporter_holding; /* spans held by quiet_until_ms (see exporter.h) */

/* glibc's count of the process's threads (nptl's __nptl_nthreads, GLIBC_PRIVATE): when a
 * thread ends (pthread_exit, or a return from its start routine; the main thread's
 * pthread_exit too) and the count falls to 0, that thread calls exit(0): atexit handlers
 * and stdio flush run, and the process ends with status 0. The exporter thread is not one
 * of the app's threads, so it is taken off the count once started: otherwise the app's
 * last thread would end leaving the count at 1, and the process would wait forever for a
 * thread that never ends (with every signal blocked, deaf to SIGTERM). A fork child
 * starts with the count at 1 (glibc) and takes its own exporter thread off again. NULL
 * without glibc's symbol: then nothing is taken off (see README, limits). */
static unsigned int *nptl_nthreads;

/* Accounting: see the top of the file. */
static _Atomic uint64_t handed;       /* H */
static _Atomic uint64_t undelivered;  /* U */
static _Atomic uint64_t reported;     /* drops the collector has in a record written whole */
static _Atomic int sender;              /* 0 free, 1 in a write, 2 claimed by an exit */
static _Atomic uint64_t epoch;        /* claims so far: a request begun before one is void */
static _Atomic uint64_t taken;        /* records taken from the ring, ever */
static uint64_t claim_committed;      /* ring.committed when the last claim counted */
static _Atomic uint64_t claim_ms;     /* when it did (0: never) */
static _Atomic uint64_t lhanded;      /* LH */
static _Atomic uint64_t lundelivered; /* LU */
static _Atomic uint64_t ltaken;       /* LT */
static _Atomic uint64_t lreported;    /* record drops the collector has in a report */
static _Atomic int exit_waiting;      /* an exit flush waits for the drain lock */

/* Locks, in nesting order:
 *   drain_lock  the exporter thread's encoder (below); held by the exporter thread while
 *               it drains (a request included), and by a flush that found it free
 *   exit_lock   the exit encoder: one exiting thread at a time
 *   ring_lock   the ring's consumer side: held only while records are taken (never
 *               across a request), so an exit flush takes the records itself while the
 *               exporter thread waits for a slow collector
 *   the transport's lock, innermost.
 * wake_lock guards the exporter's sleep only and nests with nothing. */
static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t exit_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t ring_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;

/* Signal handlers' drain requests: a handler takes ticket ++urgent_asked and waits for
 * urgent_done to reach it; the exporter reads urgent_asked before a drain and stores it in
 * urgent_done after, so the drain that answers a ticket began after the ticket (and the
 * spans its handler committed) were there. */
static _Atomic uint64_t urgent_asked, urgent_done;
/* The budget (ms) the last handler asked for: a dying thread's drain is an exit's
 * delivery (deliver_exit: pipelined, bounded, the final count of spans and records sent
 * last). */
static _Atomic uint32_t urgent_budget_ms;
static _Atomic long exporter_tid; /* the exporter thread (0: none yet) */
static _Atomic int draining; /* records may be out of the ring but not yet sent */

typedef struct gate_arg {
  uint64_t spans, drops; /* what the request hands over when written whole */
  uint64_t logs, ldrops; /* exception records, and record drops reported */
  uint64_t epoch;        /* claims when the request began */
  int written;           /* it was */
  int owner;             /* the caller already holds sender (an exit that claimed it) */
} gate_arg;

/* What one sender owns, kept for the life of the process (of the fork child): the
 * exporter thread's (under drain_lock) and an exiting thread's (under exit_lock). */
typedef struct encoder {
  ss__transport *t;        /* where its requests go */
  ss__resource resource;
  pid_t resource_pid;
  ss__otlp_head head;      /* resource and scope, encoded once per process */
  ss__otlp_req treq, lreq; /* the traces and the logs request being written */
  uint64_t n_exc;          /* exception records in lreq (it also holds drop reports) */
  ss__span span;           /* the record being encoded, decoded in place */
  ss__attr attrs[MAX_ATTRS_PER_SPAN];
  char *scratch;           /* sanitized values of the record being encoded */
  size_t scratch_cap;
  ss__exc_batch exc;       /* exception parts of the batch */
  uint64_t epoch;          /* claims when its requests began */
  /* The traces request being posted, finished: an exit that claims the accounting from a
   * stuck exporter thread sends it itself (encoder.g says whether it went out whole). */
  gate_arg g;
  const uint8_t *body;
  size_t body_len;
  _Atomic int body_ready;
  /* The same for the logs request that follows it (exception records, drop reports). */
  gate_arg lg;
  const uint8_t *lbody;
  size_t lbody_len;
  _Atomic int lbody_ready;
  /* An exit's encoder writes its requests back to back without waiting for answers
   * (pipelined): a collector that is slow to answer, or a loaded machine where it waits
   * for the CPU, costs the exit nothing as long as the kernel holds the bytes. The gates
   * of the requests written and not yet answered, oldest first, are kept for their
   * answers: a refusal takes its spans back (collect_answers). */
  int pipelined;
  int n_inflight;
  gate_arg inflight[MAX_INFLIGHT];
  /* An exit's clock: its deadlines move by the time its thread has waited for a CPU
   * since the flush began (`stalled`, ms; worked out when a deadline is reached): wall
   * time since `start` less thread CPU time since `cpu0` and time in waits (`waited`). */
  uint64_t start, cpu0, waited, stalled, stall_cap;
  /* Async-signal-safe (a dying thread's, in a signal handler): fixed buffers, the
   * resource built into static memory, no symbolizing, no console, no resolver. */
  int sigsafe;
} encoder;

/* Either encoder was ever used in this process (a fork child then forgets them); kept
 * apart from them so a child reads no page of theirs. */
static _Atomic int encoders_used;
/* Both all zero until first used (encoder_ready): a static initializer pointing at
 * ss__transport_g would be a relocation the loader writes into ex's page in every
 * process, traced or not (a page fault). */
static encoder ex; /* the exporter thread's */
static encoder xe; /* an exiting thread's (own connection) */
static ss__transport exit_transport = {.fd = -1};
/* A thread ending the process (a signal about to kill it, _exit) makes its connection in
 * a copy of the app's fd table of its own (ss__own_go_private_copy): this one, which the
 * fd guards never ask about (its number is not one of the app's table). */
static ss__transport ending_transport = {.fd = -1};

/* A dying thread's encoder, for a signal that kills the process before it started an
 * exporter thread (a process that segfaults, or is sent SIGTERM, before its first span):
 * nothing of it allocates or takes a lock the interrupted code may hold, so it can run
 * in the signal handler (deliver_dying). Its buffers, in .bss, cost no memory until used.
 * Records that do not fit one request go in the next. */
#define SIG_TRACES_BYTES (128 * 1024)
#define SIG_LOGS_BYTES (8 * 1024)
#define SIG_RESOURCE_BYTES (16 * 1024)
#define SIG_RESOURCE_ATTRS 64
static encoder se;
static uint8_t sig_treq[SIG_TRACES_BYTES], sig_lreq[SIG_LOGS_BYTES];
static uint8_t sig_resource[SIG_RESOURCE_BYTES], sig_scope[512];
static char sig_scratch[64 * 1024]; /* a record of up to 30 KiB (scratch_room) */
static ss__attr sig_res_attrs[SIG_RESOURCE_ATTRS];
static char sig_res_storage[SIG_RESOURCE_BYTES / 2];

/* The exporter thread's fd table (runtime/ownfd.h), set as it starts, under drain_lock:
 * TABLE_OWN, its own (the usual case): its connection, the files it reads and the
 * unwinder's dlopen never take a number the app could get; it sends on own_transport, made
 * and used there only (ex.t), and the app's threads never touch that one. TABLE_APP: it
 * shares the app's (an old kernel, a seccomp filter), and its fds are born high and
 * guarded. ss__transport_g is also what an exiting app thread sends on. */
enum { TABLE_UNKNOWN, TABLE_OWN, TABLE_APP };
static _Atomic int exporter_table;
static ss__transport own_transport = {.fd = -1};
/* How long an app thread's first failure waits for the exporter thread to load the
 * unwinder (once per process; it normally takes a thread start and a dlopen). */
#define UNWINDER_WAIT_MS 2000
/* 1 once an app thread asked the exporter thread to load the unwinder, 2 once it did. */
static _Atomic int unwinder_wanted;

int ss__exporter_owns_fd(int fd) {
  return ss__transport_owns(&ss__transport_g, fd) || ss__transport_owns(&exit_transport, fd);
}

int ss__exporter_fd(void) {
  return atomic_load(&ss__transport_g.fd);
}

void ss__exporter_move_fd(void) {
  ss__transport_move(&ss__transport_g);
}

uint64_t ss__exporter_dropped(void) {
  return ss__dropped_total() + atomic_load(&undelivered);
}

/* Exception log records go to a collector (see the top of the file). */
static int logs_wanted(void) {
  return cfg && (cfg->exception_signal & SS_EXC_LOG) && (cfg->logs_exporter & SS_EXPORT_OTLP);
}

uint64_t ss__exporter_logs_dropped(void) {
  if (!logs_wanted()) return 0;
  return atomic_load_explicit(&ss__tracer_g.exc_dropped, memory_order_relaxed) +
         atomic_load(&lundelivered);
}

/* ---- an exit's clock ---- */

static uint64_t thread_cpu_ms(void) {
  struct timespec ts;
  if (ss__clock(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void clock_start(encoder *e, uint32_t budget_ms) {
  e->start = ss__mono_ms();
  e->cpu0 = thread_cpu_ms();
  e->waited = e->stalled = 0;
  e->stall_cap = (uint64_t)budget_ms * EXIT_STALL_FACTOR;
}

/* Brackets a wait (for the collector, a lock): its time is the budget's. */
static uint64_t wait_begin(void) {
  return ss__mono_ms();
}

static void wait_end(encoder *e, uint64_t began) {
  if (e->pipelined) e->waited += ss__mono_ms() - began;
}

/* Deadline d (on e's clock) as a monotonic time now: for an exit's encoder, d plus the
 * time it has been kept off the CPU so far. */
static uint64_t due_at(encoder *e, uint64_t d) {
  if (!e->pipelined) return d;
  uint64_t now = ss__mono_ms();
  if (now >= d + e->stalled) {
    uint64_t used = (thread_cpu_ms() - e->cpu0) + e->waited, wall = now - e->start;
    uint64_t off = wall > used ? wall - used : 0;
    e->stalled = off < e->stall_cap ? off : e->stall_cap;
  }
  return d + e->stalled;
}

static int passed(encoder *e, uint64_t d) {
  return ss__mono_ms() >= due_at(e, d);
}

/* The deadline for a request that must be tried even though the budget is spent:
 * at least MIN_REQUEST_MS from now. */
static uint64_t slice_after(encoder *e, uint64_t deadline_ms) {
  uint64_t now = ss__mono_ms() - (e->pipelined ? e->stalled : 0);
  return deadline_ms > now + MIN_REQUEST_MS ? deadline_ms : now + MIN_REQUEST_MS;
}

/* ---- the gate (see transport.h and the top of this file) ---- */


static int gate_enter(void *p) {
  gate_arg *g = p;
  if (g->owner) return 0;
  for (;;) { /* another sender inside one write or count change: a moment */
    int free_ = 0;
    if (atomic_compare_exchange_strong(&sender, &free_, 1)) break;
    if (free_ == 2) return -1;
    sched_yield();
  }
  if (atomic_load(&epoch) == g->epoch) return 0;
  atomic_store(&sender, 0); /* begun before a claim, which counted it: never sent */
  return -1;
}

static void gate_leave(void *p, int all_written) {
  gate_arg *g = p;
  if (all_written == 1 && !g->written) {
    atomic_fetch_add(&handed, g->spans);
    atomic_fetch_add(&reported, g->drops);
    atomic_fetch_add(&lhanded, g->logs);
    atomic_fetch_add(&lreported, g->ldrops);
    g->written = 1;
  } else if (all_written == -1 && g->written) {
    atomic_fetch_sub(&handed, g->spans);
    atomic_fetch_sub(&reported, g->drops);
    atomic_fetch_sub(&lhanded, g->logs);
    atomic_fetch_sub(&lreported, g->ldrops);
    g->written = 0;
  }
  if (!g->owner) atomic_store(&sender, 0);
}

/* Changes counters as one step against a claim; 0, or -1 when an exit has claimed. */
static int count_back(gate_arg *g) {
  if (gate_enter(g) != 0) return -1;
  gate_leave(g, -1);
  return 0;
}

static int post(encoder *e, const char *path, const uint8_t *body, size_t len,
                uint64_t deadline_ms, gate_arg *ga) {
  ss__post_gate g = {gate_enter, gate_leave, ga};
  return ss__transport_post_gated(e->t, path, body, len, deadline_ms, &g);
}

/* Whether a request written whole was not taken all the same: over TCP, its connection
 * ended (the collector's close, or a reset: rc -ECONNRESET) before any byte of its
 * answer. A TCP peer cannot be stopped from sending, so a collector that ends a
 * connection (spanshimd refusing it, any HTTP server closing an idle keep-alive one)
 * never reads what arrives after its last read; what it did read it answers first. Over
 * a Unix socket spanshimd stops the sender before it ends a connection (SHUT_RD: a write
 * after that fails here) and reads the rest: what was written whole is its. */
static int not_taken(const encoder *e, int rc) {
  return rc == -ECONNRESET && !e->t->ep.is_unix;
}

/* A refusal whose answer says the collector counted what the request held (spanshimd:
 * spans_refused, logs_refused): the request stays handed over, as if taken, so that it is
 * counted once. 1 for such an answer, else 0. */
static int counted_there(int rc, uint64_t n, const char *what) {
  if (rc <= 0 || !(rc & SS_HTTP_COUNTED)) return 0;
  SS_LOG(SS_LOG_WARN, "collector answered HTTP %d and counts the %" PRIu64 " %s it refused",
         rc & ~SS_HTTP_COUNTED, n, what);
  return 1;
}

/* A request the collector answered with a refusal (status: its HTTP status), or did not
 * serve (status 0: it closed the connection after answering an earlier pipelined request
 * with Connection: close, before reading this one; -1: the connection ended before its
 * answer, not_taken): what it handed over is ours again, dropped. 0, or -1 when an exit
 * has claimed the accounting. */
static int refused(gate_arg *g, int status) {
  if (counted_there(status, g->logs ? g->logs : g->spans,
                    g->logs ? "exception log records" : "spans"))
    return 0;
  if (g->written && count_back(g) != 0) return -1;
  atomic_fetch_add(&undelivered, g->spans);
  atomic_fetch_add(&lundelivered, g->logs);
  const char *what = g->logs ? "exception log records" : "spans";
  uint64_t n = g->logs ? g->logs : g->spans;
  if (status > 0)
    SS_LOG(SS_LOG_WARN, "collector answered HTTP %d; %" PRIu64 " %s dropped", status, n, what);
  else if (status < 0)
    SS_LOG(SS_LOG_WARN, "the collector ended the connection before answering; %" PRIu64
           " %s dropped", n, what);
  else
    SS_LOG(SS_LOG_WARN, "collector closed the connection after refusing an earlier request, "
           "before serving this one; %" PRIu64 " %s dropped", n, what);
  return 0;
}

/* Says (warn) that n requests written whole to a collector not known to count what it
 * refuses, holding spans and logs records, were not answered before the exit: not known to
 * be delivered (they stay counted as handed over). `whose`: "" for the exit's own, or
 * " by the exporter thread". At debug only for spanshimd, whose they are. */
static int reports_not_known; /* a drop report went out in a request said not known */

static void say_not_known(const char *whose, uint64_t spans, uint64_t logs, uint64_t drops,
                          int n) {
  if (n == 0) return;
  if (drops && !ss__transport_counts_refusals()) reports_not_known = 1;
  if (ss__transport_counts_refusals())
    SS_LOG(SS_LOG_DEBUG, "exit: %d request%s written whole%s, not answered in time (delivered)",
           n, n == 1 ? "" : "s", whose);
  else
    SS_LOG(SS_LOG_WARN, "exit: %" PRIu64 " spans and %" PRIu64 " exception log records in %d "
           "request%s written to the collector%s, not answered within the budget: not known "
           "to be delivered", spans, logs, n, n == 1 ? "" : "s", whose);
}

/* An exit that stops waiting for the answers to the requests it wrote whole: spanshimd
 * reads every request written before its peer closed and counts what it refuses, so they
 * are its; any other collector may drop what it had not read yet when the connection
 * ends (Python's http.server stops at the first answer it cannot write), so what they
 * held is not known to be delivered and the shim's diagnostics say how much (warn). */
static void give_up_answers(encoder *e) {
  uint64_t spans = 0, logs = 0, drops = 0;
  for (int i = 0; i < e->n_inflight; i++) {
    spans += e->inflight[i].spans;
    logs += e->inflight[i].logs;
    drops += e->inflight[i].drops + e->inflight[i].ldrops;
  }
  say_not_known("", spans, logs, drops, e->n_inflight);
  ss__transport_abandon(e->t);
  e->n_inflight = 0;
}

/* Reads the answers to a pipelined encoder's requests, oldest first, until at most `keep`
 * are unanswered or the deadline passes (then the rest are the collector's: written whole,
 * they count as delivered). 0, or -ECANCELED when an exit claimed the accounting. */
static int collect_answers(encoder *e, uint64_t deadline_ms, int keep) {
  while (e->n_inflight > keep) {
    int rest_refused;
    uint64_t w = wait_begin();
    int rc = ss__transport_answer(e->t, due_at(e, deadline_ms), &rest_refused);
    wait_end(e, w);
    if (rc == -ETIMEDOUT) {
      if (!passed(e, deadline_ms)) continue; /* it waited for a CPU meanwhile */
      return 0;
    }
    if (rc < 0 && not_taken(e, rc)) { /* ended over TCP: not read, none of them */
      int bad = 0;
      for (int i = 0; i < e->n_inflight; i++)
        if (refused(&e->inflight[i], -1) != 0) bad = 1;
      e->n_inflight = 0;
      return bad ? -ECANCELED : 0;
    }
    if (rc < 0) { /* the connection broke: the collector has what it read */
      e->n_inflight = 0;
      return 0;
    }
    int bad = !(rc >= 200 && rc < 300) && refused(&e->inflight[0], rc) != 0;
    e->n_inflight--;
    memmove(e->inflight, e->inflight + 1, (size_t)e->n_inflight * sizeof e->inflight[0]);
    if (bad) return -ECANCELED;
    if (rest_refused) { /* the collector closes: the requests after this one are not served */
      for (int i = 0; i < e->n_inflight; i++)
        if (refused(&e->inflight[i], 0) != 0) bad = 1;
      e->n_inflight = 0;
      if (bad) return -ECANCELED;
    }
  }
  return 0;
}

/* Sends a finished request through gate g: waits for its answer, or, pipelined, only
 * writes it and keeps g for the answer. Returns the HTTP status, 0 for a pipelined
 * request written whole, or -errno; g->written says whether the collector has it. */
static int submit(encoder *e, const char *path, const uint8_t *body, size_t len,
                  uint64_t deadline_ms, gate_arg *g) {
  if (!e->pipelined) return post(e, path, body, len, deadline_ms, g);
  if (e->n_inflight == MAX_INFLIGHT) {
    int c = collect_answers(e, deadline_ms, MAX_INFLIGHT - 1);
    if (c != 0) return c;
    if (e->n_inflight == MAX_INFLIGHT) return -ETIMEDOUT;
  }
  gate_arg *slot = &e->inflight[e->n_inflight];
  *slot = *g;
  ss__post_gate pg = {gate_enter, gate_leave, slot};
  uint64_t w = wait_begin();
  int rc = ss__transport_send(e->t, path, body, len, due_at(e, deadline_ms), &pg);
  wait_end(e, w);
  *g = *slot;
  if (rc == 0) {
    e->n_inflight++;
  } else if (e->n_inflight > 0) {
    /* The connection failed under this request: the answers to the ones written before
     * it are read now, from that connection (over TCP the rest then count as not taken),
     * before another connection's answers could be taken for theirs. */
    int c = collect_answers(e, deadline_ms, 0);
    if (c != 0) return c;
    if (e->n_inflight > 0) give_up_answers(e); /* not answered in time */
  }
  return rc;
}

/* An exit's encoder: pipelined from now until end_pipeline, which reads the answers due
 * until the deadline and gives up on the rest. */
static int end_pipeline(encoder *e, uint64_t deadline_ms) {
  int rc = collect_answers(e, deadline_ms, 0);
  if (e->n_inflight > 0) give_up_answers(e);
  e->pipelined = 0;
  return rc;
}

/* ---- the process's resource ---- */

static int ensure_head(encoder *e) {
  if (!atomic_load_explicit(&encoders_used, memory_order_relaxed)) atomic_store(&encoders_used, 1);
  pid_t pid = ss__sys_getpid();
  if (e->resource.attrs != NULL && e->resource_pid == pid) return 0;
  int rc;
  if (e->sigsafe) {
    rc = ss__resource_build_in(&e->resource, cfg, sig_res_attrs, SIG_RESOURCE_ATTRS,
                               sig_res_storage, sizeof sig_res_storage);
  } else {
    ss__resource_free(&e->resource);
    rc = ss__resource_build(&e->resource, cfg);
  }
  if (rc != 0) return rc;
  ss__scope scope = {.name = "spanshim", .version = SPANSHIM_VERSION};
  rc = ss__otlp_head_build(&e->head, &e->resource, &scope, SS_SCHEMA_URL);
  if (rc == 0) e->resource_pid = pid;
  return rc;
}

/* ---- the unwinder ---- */

/* On the exporter thread (in its own fd table): the unwinder, loaded once an app thread's
 * first failure asked for it (load_unwinder_there). A process that never fails a call
 * never maps it (~128 KB resident) nor pays the dlopen. */
static void load_unwinder_if_wanted(void) {
  if (atomic_load_explicit(&unwinder_wanted, memory_order_relaxed) != 1 ||
      atomic_load(&exiting) || syscall(SYS_gettid) != atomic_load(&exporter_tid))
    return;
  ss__stack_load();
  atomic_store(&unwinder_wanted, 2);
}

/* ---- taking records ---- */

static int scratch_room(encoder *e, size_t rec_len) {
  size_t need = rec_len * 2 + 4096;
  if (e->scratch_cap >= need) return 0;
  if (e->sigsafe) return -1;
  char *p = realloc(e->scratch, need);
  if (p == NULL) return -1;
  e->scratch = p;
  e->scratch_cap = need;
  return 0;
}

/* A signal-safe encoder's record: its exception parts made without allocating or
 * symbolizing (frames named by module and offset: ss__exc_span_sigsafe), the span first,
 * then its exception record when the span fit (a span that did not goes in the next
 * request, and makes its record then). */
static int encode_sigsafe(encoder *e) {
  ss__logrec log;
  int made = ss__exc_span_sigsafe(&e->span, e->attrs, MAX_ATTRS_PER_SPAN,
                                  cfg->exception_signal, cfg->stack_depth, &log);
  int rc = ss__otlp_add_span(&e->treq, &e->span);
  if (rc != 0) return rc == -ENOBUFS ? rc : -1;
  if (made == 1 && (cfg->logs_exporter & SS_EXPORT_OTLP) && ss__otlp_add_log(&e->lreq, &log) == 0)
    e->n_exc++; /* else fill counts it */
  return 0;
}

/* Encodes one ring record into treq (its exception record into lreq). 0, or -1 when it
 * could not be (malformed, out of memory): the caller counts it; -ENOBUFS when a fixed
 * buffer has no room left for it (it goes in the next request). */
static int encode_record(encoder *e, const void *rec, size_t len) {
  if (ss__rec_decode(rec, len, &e->span, e->attrs, MAX_ATTRS_PER_SPAN) != 0) return -1;
  if (scratch_room(e, len) != 0) return -1; /* never export unsanitized values */
  char *scratch = e->scratch;
  size_t left = e->scratch_cap;
  ss__sanitize_span(&e->span, e->attrs, &scratch, &left);
  if (e->sigsafe) return encode_sigsafe(e);
  size_t logs_before = e->exc.n_logs;
  /* It takes the loader lock to symbolize (what keeps two encoders, the exporter thread's
   * and an exit's, out of the symbol cache together), once per batch and call site. */
  ss__exc_span(&e->exc, &e->span, e->attrs, MAX_ATTRS_PER_SPAN, cfg->exception_signal);
  for (size_t i = logs_before; i < e->exc.n_logs; i++) {
    if (cfg->logs_exporter & SS_EXPORT_CONSOLE) ss__console_logs(&e->resource, &e->exc.logs[i], 1);
    if ((cfg->logs_exporter & SS_EXPORT_OTLP) && ss__otlp_add_log(&e->lreq, &e->exc.logs[i]) == 0)
      e->n_exc++; /* else fill counts it */
  }
  if (cfg->traces_exporter & SS_EXPORT_CONSOLE) ss__console_spans(&e->resource, &e->span, 1);
  return ss__otlp_add_span(&e->treq, &e->span) == 0 ? 0 : -1;
}

/* The exporter thread stops at once (between two records) for an exit flush, which
 * takes the records itself. */
static int exit_waits(const encoder *e) {
  return !e->pipelined && (atomic_load_explicit(&exit_waiting, memory_order_relaxed) ||
                           atomic_load_explicit(&urgent_asked, memory_order_relaxed) !=
                               atomic_load_explicit(&urgent_done, memory_order_relaxed));
}

/* Moves up to max records from the ring into treq; returns how many it encoded. Stops
 * early when MAX_LOGS_PER_REQUEST exception records are waiting. */
static size_t fill(encoder *e, size_t max, uint64_t deadline_ms) {
  size_t n = 0, len;
  void *rec;
  struct timespec until =
      ss__timespec_after_ms(CLOCK_REALTIME, ss__ms_until(due_at(e, deadline_ms), ss__mono_ms()));
  /* Not a wait of the budget's: the exporter thread holds it for one record at most
   * when an exit waits, unless it cannot get a CPU. */
  if (pthread_mutex_timedlock(&ring_lock, &until) != 0) return 0;
  int logs = logs_wanted();
  while (n < max && e->lreq.n < MAX_LOGS_PER_REQUEST && !exit_waits(e) &&
         (rec = ss__ring_peek(&ss__tracer_g.ring, &len)) != NULL) {
    int exc = logs && ss__rec_has_stack(rec, len);
    uint64_t exc_before = e->n_exc;
    int rc = encode_record(e, rec, len);
    if (rc == -ENOBUFS && n > 0) break; /* a fixed buffer is full: the next request */
    if (exc) atomic_fetch_add(&ltaken, 1);
    if (rc == 0) {
      n++;
    } else {
      atomic_fetch_add(&undelivered, 1);
      SS_LOG(SS_LOG_DEBUG, "a span record could not be encoded; dropped");
    }
    if (exc && e->n_exc == exc_before) {
      atomic_fetch_add(&lundelivered, 1);
      SS_LOG(SS_LOG_DEBUG, "an exception log record could not be encoded; dropped");
    }
    ss__ring_release(&ss__tracer_g.ring);
    atomic_fetch_add_explicit(&taken, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&ring_lock);
  return n;
}

/* Takes up to max records without encoding them and counts them as dropped (no
 * collector to send them to, or an exit that ran out of time). Returns how many. */
static size_t discard(size_t max) {
  size_t n = 0, exc = 0, len;
  int logs = logs_wanted();
  void *rec;
  pthread_mutex_lock(&ring_lock);
  while (n < max && (rec = ss__ring_peek(&ss__tracer_g.ring, &len)) != NULL) {
    if (logs) exc += (size_t)ss__rec_has_stack(rec, len);
    ss__ring_release(&ss__tracer_g.ring);
    n++;
  }
  if (exc) { /* under ring_lock: a claim reading LT sees them with the ring empty */
    atomic_fetch_add(&ltaken, exc);
    atomic_fetch_add(&lundelivered, exc);
  }
  pthread_mutex_unlock(&ring_lock);
  if (n) {
    atomic_fetch_add(&undelivered, n);
    atomic_fetch_add_explicit(&taken, n, memory_order_relaxed);
  }
  return n;
}

/* A claim counted everything then committed as dropped, but the process went on (an exec
 * that failed): the records it counted that are still in the ring are dropped without
 * counting them again, and the exporter sends again. Exporter thread, drain lock held. */
static void resume_after_claim(void) {
  size_t len;
  void *rec;
  int logs = logs_wanted();
  pthread_mutex_lock(&ring_lock);
  while (atomic_load(&taken) < claim_committed &&
         (rec = ss__ring_peek(&ss__tracer_g.ring, &len)) != NULL) {
    if (logs && ss__rec_has_stack(rec, len)) { /* its span was counted, its record now */
      atomic_fetch_add(&ltaken, 1);
      atomic_fetch_add(&lundelivered, 1);
    }
    ss__ring_release(&ss__tracer_g.ring);
    atomic_fetch_add(&taken, 1);
  }
  pthread_mutex_unlock(&ring_lock);
  atomic_store(&claim_ms, 0);
  atomic_store(&sender, 0);
  SS_LOG(SS_LOG_INFO, "the process went on after an exit flush gave up; exporting again");
}

/* ---- sending ---- */

static uint64_t span_drops_unreported(void) {
  uint64_t d = ss__exporter_dropped(), r = atomic_load(&reported);
  return d > r ? d - r : 0;
}

static uint64_t log_drops_unreported(void) {
  uint64_t d = ss__exporter_logs_dropped(), r = atomic_load(&lreported);
  return d > r ? d - r : 0;
}

/* Drops of either kind not yet in a report the collector has. */
static uint64_t drops_unreported(void) {
  return span_drops_unreported() + log_drops_unreported();
}

/* A drop report: one log record with event name `what` (spanshim.spans.dropped or
 * spanshim.logs.dropped), attribute `what` = delta and `what`.total = total. 0, or
 * -ENOMEM (not in the request). */
static int add_drop_record(ss__otlp_req *q, const char *what, uint64_t delta, uint64_t total) {
  char body[128], key[64];
  snprintf(body, sizeof body, "%" PRIu64 " %s dropped (%" PRIu64 " in this process so far)",
           delta, strcmp(what, "spanshim.spans.dropped") == 0 ? "spans" : "exception log records",
           total);
  snprintf(key, sizeof key, "%s.total", what);
  ss__attr a[2] = {
      {.key = what, .type = SS_ATTR_INT, .v.i = (int64_t)delta},
      {.key = key, .type = SS_ATTR_INT, .v.i = (int64_t)total},
  };
  ss__logrec l = {.time_ns = ss__now_ns(), .event_name = what,
                  .severity = 13 /* WARN */, .body = body, .attrs = a, .n_attrs = 2};
  return ss__otlp_add_log(q, &l);
}

/* Adds the drop reports due (spans: *sdelta, records: *ldelta; each 0 when none is due or
 * it could not be added) to q. */
static void add_drop_records(ss__otlp_req *q, uint64_t *sdelta, uint64_t *ldelta) {
  *sdelta = span_drops_unreported();
  *ldelta = log_drops_unreported();
  if (*sdelta && add_drop_record(q, "spanshim.spans.dropped", *sdelta,
                                 atomic_load(&reported) + *sdelta) != 0)
    *sdelta = 0;
  if (*ldelta && add_drop_record(q, "spanshim.logs.dropped", *ldelta,
                                 atomic_load(&lreported) + *ldelta) != 0)
    *ldelta = 0;
}

/* Posts treq (n spans). 0 when the collector has it, -ECANCELED when an exit claimed the
 * accounting, else -EIO (the spans are counted). */
static int send_traces(encoder *e, size_t n, uint64_t deadline_ms) {
  if (!(cfg->traces_exporter & SS_EXPORT_OTLP)) { /* console only: written out already */
    atomic_fetch_add(&handed, n);
    return 0;
  }
  e->g = (gate_arg){.spans = n, .epoch = e->epoch};
  gate_arg *gp = &e->g;
  int rc = ss__otlp_finish(&e->treq, &e->head, &e->body, &e->body_len);
  if (rc == 0) {
    atomic_store(&e->body_ready, 1);
    rc = submit(e, e->t->ep.http_path, e->body, e->body_len, deadline_ms, gp);
  }
  if (rc == -ECANCELED) return rc; /* the claiming exit has the body */
  atomic_store(&e->body_ready, 0);
  gate_arg g = *gp;
  if (rc == 0 || (rc >= 200 && rc < 300)) return 0;
  if (g.written && rc < 0 && !not_taken(e, rc))
    return 0; /* no answer in time: the collector has it whole */
  if (g.written && counted_there(rc, n, "spans")) return 0;
  if (g.written && count_back(&g) != 0) return -ECANCELED; /* refused: ours again */
  atomic_fetch_add(&undelivered, n);
  if (rc > 0)
    SS_LOG(SS_LOG_WARN, "collector answered HTTP %d; %zu spans dropped", rc, n);
  else
    SS_LOG(rc == -EAGAIN ? SS_LOG_DEBUG : SS_LOG_INFO, "export failed (%s); %zu spans dropped",
           strerror(-rc), n);
  return -EIO;
}

/* Whether e's requests may carry drop reports. A report counts what is dropped and not
 * yet in a report written whole, so two senders at once would both count the drops in
 * flight: while an exit delivers, only its final count reports (an exit's own encoder
 * while the exporter thread is busy sends records only; the exporter thread, stopping
 * for the exit, none). */
static int se_beside_exporter; /* se delivers while the exporter thread is stuck (no drain_lock) */
/* Who delivers for a dying thread's signal: 0 nobody yet, 1 the exporter thread, 2 the
 * dying thread itself, which gave up waiting for it (ss__exporter_flush_signal). */
static _Atomic int urgent_owner;
static int reports_here(const encoder *e) {
  return e != &xe && !(e == &se && se_beside_exporter) && !exit_waits(e);
}

/* Finishes lreq (e->n_exc exception records, plus the drop reports due when `reports`)
 * into e->lbody: from then on (e->lbody_ready) an exit that claims the accounting from
 * this thread sends it itself. 1 when there is a request, 0 when there is nothing to
 * send, -ENOMEM. */
static int finish_logs(encoder *e, int reports) {
  uint64_t sdelta = 0, ldelta = 0;
  if (reports) add_drop_records(&e->lreq, &sdelta, &ldelta);
  if (e->lreq.n == 0) return 0;
  e->lg = (gate_arg){.drops = sdelta, .logs = e->n_exc, .ldrops = ldelta, .epoch = e->epoch};
  if (ss__otlp_finish(&e->lreq, &e->head, &e->lbody, &e->lbody_len) != 0) return -ENOMEM;
  atomic_store(&e->lbody_ready, 1);
  return 1;
}

/* Posts what finish_logs made (`ready`: what it returned). 0 when the collector has it
 * (or there was nothing), -ECANCELED when an exit claimed the accounting, else -EIO (the
 * records are counted dropped, the reports stay due). An exit's encoder writes it within
 * at least MIN_REQUEST_MS even when the budget is spent: the records follow their spans
 * in the same pipelined flush, and a cut one is counted. */
static int post_logs(encoder *e, int ready, uint64_t deadline_ms) {
  if (ready == 0) return 0;
  int rc = -ENOMEM;
  if (ready > 0) {
    uint64_t own = ss__mono_ms() + cfg->logs_timeout_ms; /* OTEL_EXPORTER_OTLP_LOGS_TIMEOUT */
    if (!e->pipelined && own < deadline_ms) deadline_ms = own; /* an exit has its budget */
    if (e->pipelined) deadline_ms = slice_after(e, deadline_ms);
    rc = submit(e, e->t->ep.logs_path, e->lbody, e->lbody_len, deadline_ms, &e->lg);
  }
  if (rc == -ECANCELED) return rc; /* the claiming exit has the body */
  atomic_store(&e->lbody_ready, 0);
  gate_arg g = e->lg;
  if (rc == 0 || (rc >= 200 && rc < 300) || (g.written && rc < 0 && !not_taken(e, rc)))
    return 0;
  if (g.written && counted_there(rc, e->n_exc, "exception log records")) return 0;
  if (g.written && count_back(&g) != 0) return -ECANCELED; /* refused: ours again */
  atomic_fetch_add(&lundelivered, e->n_exc);
  if (rc > 0)
    SS_LOG(SS_LOG_WARN, "collector answered HTTP %d to a logs request; %" PRIu64
           " exception log records dropped", rc, e->n_exc);
  else
    SS_LOG(rc == -EAGAIN ? SS_LOG_DEBUG : SS_LOG_INFO, "logs export failed (%s); %" PRIu64
           " exception log records dropped", strerror(-rc), e->n_exc);
  return -EIO;
}

static int send_logs(encoder *e, uint64_t deadline_ms) {
  return post_logs(e, finish_logs(e, 1), deadline_ms);
}

/* The exporter thread's encoder measures each key and name of the shim's once. */
static ss__otlp_consts ex_consts;

static void begin_requests(encoder *e) {
  e->epoch = atomic_load(&epoch);
  ss__otlp_begin(&e->treq, &e->head, 0);
  /* Not for an exit without an exporter thread (a short process, a fork child): filling
   * the cache costs more than it saves there, and its page is a fault. */
  e->treq.consts = e == &ex && atomic_load(&started) ? &ex_consts : NULL;
  ss__otlp_begin(&e->lreq, &e->head, 1);
  e->n_exc = 0;
}


/* Records committed and not yet taken. */
static uint64_t waiting(void) {
  uint64_t c = atomic_load(&ss__tracer_g.ring.committed), t = atomic_load(&taken);
  return c > t ? c - t : 0;
}

/* Drains the ring in requests until it is empty (`all`) or holds less than a quarter
 * batch (a few spans trickling in wait for the next look rather than each making a
 * request of their own), or the deadline passes. Caller holds drain_lock. Returns 0 when
 * everything taken was delivered, -ETIMEDOUT, -EIO, or -ECANCELED when an exit claimed the
 * accounting (then nothing more is sent). Unless `all`, stops between requests when an
 * exit flush waits for the lock. */
static int drain(encoder *e, uint64_t deadline_ms, int all) {
  int result = 0, first = 1, first_request = 1;
  if (ensure_head(e) != 0) {
    SS_LOG(SS_LOG_WARN, "out of memory for the resource; spans are not sent");
    return -ENOMEM;
  }
  for (;;) {
    if (e == &ex) load_unwinder_if_wanted(); /* between requests: a failing app thread waits */
    if (exit_waits(e)) return result;
    int have = ss__ring_used(&ss__tracer_g.ring) > 0, reports = reports_here(e);
    if (!all && !first && waiting() < cfg->max_export_batch / 4 + 1) break;
    first = 0;
    if (!have && (!reports || drops_unreported() == 0)) break;
    /* A deadline passed while this thread could not run (a loaded machine) still leaves
     * it one request: the budget bounds waiting, and this thread has not waited yet. */
    if (!first_request && passed(e, deadline_ms)) {
      SS_LOG(SS_LOG_DEBUG, "export deadline passed with %" PRIu64 " spans waiting", waiting());
      return -ETIMEDOUT;
    }
    if (first_request) deadline_ms = slice_after(e, deadline_ms);
    first_request = 0;
    /* Nothing is encoded that cannot be sent: with no collector, the records are only
     * counted, and new spans are not even recorded (span.h: ss__tracer_g.no_sink). Not
     * when the console exporter also wants them: it writes them whatever OTLP can do. */
    int ready = 1;
    if (cfg->traces_exporter == SS_EXPORT_OTLP) {
      uint64_t w = wait_begin();
      ready = ss__transport_ready(e->t, due_at(e, deadline_ms)) == 0;
      wait_end(e, w);
    }
    if (!ready) {
      atomic_store_explicit(&ss__tracer_g.no_sink, 1, memory_order_relaxed);
      size_t n = discard(SIZE_MAX);
      if (n) SS_LOG(SS_LOG_DEBUG, "no collector: %zu spans dropped", n);
      return -EIO;
    }
    atomic_store_explicit(&ss__tracer_g.no_sink, 0, memory_order_relaxed);
    begin_requests(e);
    if (e == &ex) atomic_store(&draining, 1);
    size_t n = fill(e, cfg->max_export_batch, deadline_ms);
    /* Both requests are finished before the first goes out: an exit that gives up on
     * this thread while it waits for the traces answer sends the records too. */
    int lready = finish_logs(e, reports);
    int rc = 0;
    if (n > 0) rc = send_traces(e, n, deadline_ms);
    if (rc != -ECANCELED) {
      int lrc = post_logs(e, lready, deadline_ms);
      if (rc == 0) rc = lrc;
    }
    ss__exc_reset(&e->exc);
    if (e == &ex) atomic_store(&draining, 0);
    if (rc == -ECANCELED) return rc;
    if (rc != 0) result = rc;
    if (rc != 0 && n == 0) break; /* only a drop report, and it failed: later */
  }
  return result;
}

static void encoder_forget(encoder *e, ss__transport *t);

/* ex as it starts: the app threads' connection. Under drain_lock. Not read first when
 * no encoder was used yet (it holds no buffer then): in a process that never ran its
 * exporter thread (most ending fork children, every short exec'd program delivering its
 * process span) ex's page was never touched, and a read would map the zero page only for
 * encoder_forget's write to copy it: two page faults instead of one. */
static void encoder_ready(void) {
  if (!atomic_load_explicit(&encoders_used, memory_order_relaxed) || ex.t == NULL)
    encoder_forget(&ex, &ss__transport_g);
}

/* On the exporter thread, first: a table of its own when the kernel allows. */
static void take_own_table(void) {
  pthread_setname_np(pthread_self(), "spanshim-export"); /* prctl: no fd, on ourselves */
  int own = cfg->own_fd_table && ss__own_go_private() == 0;
  /* The KeyValue and list caches of the exporter thread's encoder (otlp.h), allocated once here,
   * for the life of the process (a fork child keeps its copy). Without it, no cache. */
  ss__otlp_kv *kv = ex_consts.kv == NULL ? calloc(SS_OTLP_KVS, SS_OTLP_KV_BYTES) : NULL;
  ss__otlp_list *lists = ex_consts.lists == NULL ? calloc(SS_OTLP_LISTS, SS_OTLP_LIST_BYTES) : NULL;
  pthread_mutex_lock(&drain_lock);
  if (kv != NULL) ex_consts.kv = kv;
  if (lists != NULL) ex_consts.lists = lists;
  encoder_ready();
  if (own) {
    ss__transport_init_like(&own_transport, &ss__transport_g, 1);
    ex.t = &own_transport;
    atomic_store(&encoders_used, 1); /* a fork child puts ex.t back */
  }
  atomic_store(&exporter_table, own ? TABLE_OWN : TABLE_APP);
  pthread_mutex_unlock(&drain_lock);
  if (!own)
    SS_LOG(SS_LOG_DEBUG, "the exporter thread shares the app's fd table (%s): its fds are "
           "born high", cfg->own_fd_table ? "no close_range(CLOSE_RANGE_UNSHARE) or "
           "pidfd_getfd here" : "SPANSHIM_EXPORTER_FD_TABLE=shared");
}

static int deliver_exit(encoder *e, int own, uint32_t timeout_ms);

static void *exporter_main(void *arg) {
  (void)arg;
  ss__self.internal++;
  atomic_store(&exporter_tid, syscall(SYS_gettid));
  take_own_table();
  uint64_t last = ss__mono_ms();
  /* The first look soon: the thread starts at the first span, and a process that goes on
   * making spans at full speed would otherwise fill the ring before the first look (all
   * of its pages resident for the rest of the process's life). */
  int busy = 1;
  for (;;) {
    /* Busy (the last drain found a full batch): look again soon, so a fast producer
     * never fills the ring between two looks. Idle: a few looks a second. An exit
     * handed to us (hand_off) asks under wake_lock and wakes us. */
    pthread_mutex_lock(&wake_lock);
    uint64_t asked = atomic_load(&urgent_asked);
    if (asked == atomic_load(&urgent_done)) {
      struct timespec ts =
          ss__timespec_after_ms(CLOCK_REALTIME, busy ? TICK_BUSY_MS : TICK_IDLE_MS);
      pthread_cond_timedwait(&wake_cond, &wake_lock, &ts);
    }
    pthread_mutex_unlock(&wake_lock);
    /* The unwinder, loaded here (in this thread's fd table) when an app thread's first
     * failure asks for it: a process that never fails a call never maps it (~128 KB
     * resident) nor pays the dlopen. */
    load_unwinder_if_wanted();
    uint64_t now = ss__mono_ms();
    asked = atomic_load(&urgent_asked);
    uint64_t pending = waiting();
    int due = asked != atomic_load(&urgent_done) || pending >= cfg->max_export_batch / 4 ||
              ss__ring_used(&ss__tracer_g.ring) > ss__tracer_g.ring.cap / 8 ||
              (now - last >= cfg->schedule_delay_ms && (pending > 0 || drops_unreported()));
    uint64_t claimed_at = atomic_load(&claim_ms);
    if (claimed_at || atomic_load(&sender) == 2) {
      /* An exit gave up on us (it may still be sending our finished requests, from our
       * buffers); the process should be gone by now. */
      if (!claimed_at || now - claimed_at < 1000 + (uint64_t)cfg->exit_flush_ms) continue;
      if (pthread_mutex_trylock(&drain_lock) != 0) continue;
      resume_after_claim();
      pthread_mutex_unlock(&drain_lock);
    }
    if (!due) {
      busy = 0;
      continue;
    }
    if (pthread_mutex_trylock(&drain_lock) != 0) continue; /* an exit flush drains */
    busy = pending >= cfg->max_export_batch / 4;
    int urgent = asked != atomic_load(&urgent_done);
    int all = urgent || now - last >= cfg->schedule_delay_ms;
    if (urgent) { /* a thread dies of a signal: the process ends as soon as we are done */
      int none = 0;
      if (atomic_compare_exchange_strong(&urgent_owner, &none, 1)) {
        deliver_exit(&ex, 1, atomic_load(&urgent_budget_ms));
        atomic_store(&urgent_owner, 0);
      }
    } else {
      drain(&ex, ss__mono_ms() + cfg->export_timeout_ms, all);
    }
    atomic_store(&urgent_done, asked);
    pthread_mutex_unlock(&drain_lock);
    last = ss__mono_ms();
  }
  return NULL;
}

void ss__exporter_exiting(void) {
  atomic_store(&exiting, 1);
}

/* Starts the exporter thread unless it has been. */
static void start_thread(void) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&started, &expected, 1)) return;
  sigset_t all, old;
  pthread_t th;
  pthread_attr_t at;
  sigfillset(&all);
  /* Signals stay blocked for as long as this thread is marked internal: a handler that
   * ran meanwhile would have its spans pass through untraced and uncounted. The new
   * thread inherits the full mask. */
  pthread_sigmask(SIG_SETMASK, &all, &old);
  ss__self.internal++;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 * 1024);
  int rc = ss__sys_pthread_create(&th, &at, exporter_main, NULL);
  pthread_attr_destroy(&at);
  /* (The thread names itself: naming another thread opens a /proc file here.) */
  /* Off glibc's count while signals are still blocked: no handler sees it high. */
  if (rc == 0 && nptl_nthreads) __atomic_fetch_sub(nptl_nthreads, 1, __ATOMIC_SEQ_CST);
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    SS_LOG(SS_LOG_ERROR, "cannot start the exporter thread: %s", strerror(rc));
    atomic_store(&started, 0);
  }
}

/* A young fork child's spans wait for its end (FORK_QUIET_MS) unless a quarter batch, or
 * an eighth of the ring, is waiting. Async-signal-safe (a clock read). */
static int held_for_the_end(void) {
  uint64_t until = atomic_load_explicit(&quiet_until_ms, memory_order_relaxed);
  if (until == 0) return 0;
  if (ss__mono_ms() < until && waiting() < cfg->max_export_batch / 4 &&
      ss__ring_used(&ss__tracer_g.ring) <= ss__tracer_g.ring.cap / 8) {
    if (!atomic_load_explicit(&ss__exporter_holding, memory_order_relaxed))
      atomic_store(&ss__exporter_holding, 1);
    return 1;
  }
  atomic_store(&quiet_until_ms, 0);
  atomic_store(&ss__exporter_holding, 0);
  return 0;
}

void ss__exporter_release(void) {
  if (ss__internal() || !atomic_exchange(&ss__exporter_holding, 0)) return;
  atomic_store(&quiet_until_ms, 0);
  int err = errno;
  ss__exporter_kick();
  errno = err;
}

void ss__exporter_kick(void) {
  if (atomic_load_explicit(&started, memory_order_relaxed) || atomic_load(&exiting) ||
      held_for_the_end())
    return;
  start_thread();
}

int ss__exporter_last_thread_ended(void) {
  return nptl_nthreads && __atomic_load_n(nptl_nthreads, __ATOMIC_SEQ_CST) == 0;
}

/* An empty ring is not enough: the exporter may hold the last batch, unsent. */
static int nothing_to_do(void) {
  return ss__ring_used(&ss__tracer_g.ring) == 0 && !atomic_load(&draining) &&
         drops_unreported() == 0;
}

/* The last drop report of an exit: whatever is still in the ring is given up and
 * counted, and the count goes out on e's connection. */
static int final_report(encoder *e, uint64_t deadline_ms) {
  discard(SIZE_MAX);
  if (drops_unreported() == 0) return 0;
  begin_requests(e);
  return send_logs(e, slice_after(e, deadline_ms));
}

/* The last drop report of an exit whose exporter thread still holds a batch it has not
 * handed over (stuck in a slow request): claims the accounting, so that thread sends
 * nothing more, and reports everything not handed over. The claim waits out a write in
 * progress, bounded by the deadline. */
static int final_report_claimed(encoder *e, uint64_t deadline_ms) {
  int free_ = 0;
  while (!atomic_compare_exchange_strong(&sender, &free_, 2)) {
    if (free_ == 2) return -ECANCELED; /* another exit has it */
    free_ = 0;
    if (passed(e, deadline_ms)) return -ETIMEDOUT;
    struct timespec tick = {0, 200000};
    nanosleep(&tick, NULL);
  }
  atomic_fetch_add(&epoch, 1);
  /* The exporter thread's requests that went out whole and wait for their answers stay
   * handed over; not answered yet, they are not known to be delivered to a collector
   * other than spanshimd (which reads and counts what was written before its peer went). */
  {
    int n = 0;
    uint64_t spans = 0, logs = 0, drops = 0;
    if (atomic_load(&ex.body_ready) && ex.g.written) n++, spans += ex.g.spans;
    if (atomic_load(&ex.lbody_ready) && ex.lg.written)
      n++, logs += ex.lg.logs, drops += ex.lg.drops + ex.lg.ldrops;
    say_not_known(" by the exporter thread", spans, logs, drops, n);
  }
  /* The exporter thread's finished requests that did not go out whole: sent from here
   * (what they hand over, drop reports included, counts when written whole). */
  if (atomic_load(&ex.body_ready) && !ex.g.written) {
    gate_arg g = {.spans = ex.g.spans, .owner = 1};
    int prc = submit(e, e->t->ep.http_path, ex.body, ex.body_len,
                     slice_after(e, deadline_ms), &g);
    if (!g.written && prc >= 0) SS_LOG(SS_LOG_DEBUG, "exit: the exporter's request failed (%d)", prc);
  }
  if (atomic_load(&ex.lbody_ready) && !ex.lg.written) {
    gate_arg g = {.drops = ex.lg.drops, .logs = ex.lg.logs, .ldrops = ex.lg.ldrops, .owner = 1};
    int prc = submit(e, e->t->ep.logs_path, ex.lbody, ex.lbody_len,
                     slice_after(e, deadline_ms), &g);
    if (!g.written && prc >= 0)
      SS_LOG(SS_LOG_DEBUG, "exit: the exporter's logs request failed (%d)", prc);
  }
  discard(SIZE_MAX);
  uint64_t c = atomic_load(&ss__tracer_g.ring.committed), h = atomic_load(&handed);
  uint64_t lt = atomic_load(&ltaken), lh = atomic_load(&lhanded);
  /* From here on everything not handed over is dropped, also for later reports. */
  atomic_store(&undelivered, c > h ? c - h : 0);
  atomic_store(&lundelivered, lt > lh ? lt - lh : 0);
  claim_committed = c;
  atomic_store(&claim_ms, ss__mono_ms());
  if (drops_unreported() == 0) return 0;
  const uint8_t *body;
  size_t len;
  uint64_t sdelta, ldelta;
  ss__otlp_begin(&e->lreq, &e->head, 1);
  add_drop_records(&e->lreq, &sdelta, &ldelta);
  int rc = ss__otlp_finish(&e->lreq, &e->head, &body, &len);
  if (rc == 0) {
    gate_arg g = {.drops = sdelta, .ldrops = ldelta, .owner = 1};
    rc = submit(e, e->t->ep.logs_path, body, len, slice_after(e, deadline_ms), &g);
    if (rc == 0 || (rc >= 200 && rc < 300) || (g.written && rc < 0)) rc = 0;
  }
  return rc;
}

/* An exit's own connection, used while the exporter thread has the usual one. */
static ss__transport *exit_conn(void) {
  static pid_t for_pid;
  if (for_pid != ss__sys_getpid()) {
    ss__transport_init_like(&exit_transport, &ss__transport_g, 0);
    for_pid = ss__sys_getpid();
  }
  return &exit_transport;
}

/* For stack.c: the unwinder loaded by the exporter thread in its own table, for an app
 * thread's first failure (ss__stack_set_loader says what the answers mean). */
static int load_unwinder_there(void) {
  if (cfg == NULL || atomic_load(&exiting)) return -ENOSYS;
  int none = 0;
  atomic_compare_exchange_strong(&unwinder_wanted, &none, 1);
  start_thread(); /* now, even in a young fork child: this thread waits for it */
  pthread_cond_signal(&wake_cond); /* it loads at its next look: make that now */
  uint64_t until = ss__mono_ms() + UNWINDER_WAIT_MS;
  struct timespec tick = {0, 500000};
  for (;;) {
    int table = atomic_load(&exporter_table);
    if (table == TABLE_APP || !atomic_load(&started)) return -ENOSYS;
    if (table == TABLE_OWN && ss__stack_decided()) return 0;
    if (ss__mono_ms() >= until) return -EAGAIN;
    nanosleep(&tick, NULL);
  }
}

/* What an exit could not deliver, in the shim's diagnostics: a warning when the collector
 * could not be told, else at the info level; with debug, what was delivered too. */
static void exit_diagnostics(void) {
  /* A report in a request said not known to be delivered told nobody for sure. */
  uint64_t lost = ss__exporter_dropped(), told = reports_not_known ? 0 : atomic_load(&reported);
  uint64_t llost = ss__exporter_logs_dropped();
  uint64_t ltold = reports_not_known ? 0 : atomic_load(&lreported);
  if (lost > 0)
    SS_LOG(told >= lost ? SS_LOG_INFO : SS_LOG_WARN,
           "exit: %" PRIu64 " spans could not be delivered; the collector %s", lost,
           told >= lost ? "was told" : "could not be told (this line is the only record)");
  if (llost > 0)
    SS_LOG(ltold >= llost ? SS_LOG_INFO : SS_LOG_WARN,
           "exit: %" PRIu64 " exception log records could not be delivered; the collector %s",
           llost, ltold >= llost ? "was told" : "could not be told (this line is the only record)");
  SS_LOG(SS_LOG_DEBUG, "exit: %" PRIu64 " spans and %" PRIu64 " exception log records handed "
         "to the collector, %" PRIu64 " and %" PRIu64 " dropped", atomic_load(&handed),
         atomic_load(&lhanded), lost, llost);
}

/* When an exit reads its answers until:
 * - the deadline over TCP, where the collector may be any OTLP/HTTP server, which reads
 *   the requests written back to back one at a time and stops at the first answer it
 *   cannot write (Python's http.server: the rest were never read), and when the collector
 *   may admit us only as part of the traced tree (we changed user; transport.h): a
 *   request written whole is not taken until it is answered there;
 * - now, on a Unix socket to a collector known to count what it refuses (spanshimd,
 *   which also serves every request written before the peer closed): the answers that
 *   have come are read, none is waited for (a refusal told later is counted there; a
 *   fork child does not wait for a busy collector to be scheduled);
 * - else EXIT_ANSWER_MS from now. */
static uint64_t answers_due(encoder *e, uint64_t deadline_ms) {
  if (!e->t->ep.is_unix || !ss__transport_admits_us(e->t)) return deadline_ms;
  uint64_t by = ss__mono_ms() - e->stalled;
  if (!ss__transport_counts_refusals()) by += EXIT_ANSWER_MS;
  return by < deadline_ms ? by : deadline_ms;
}

/* An exit's delivery on encoder e (exit_lock held; drain_lock too when `own`; or the
 * exporter thread answering a dying thread's signal): its requests written back to back
 * (each batch's exception records right after its spans), the answers read afterwards,
 * the last fifth of the budget (at most EXIT_REPORT_RESERVE_MS) kept for the final count
 * of spans and records. */
static int deliver_exit(encoder *e, int own, uint32_t timeout_ms) {
  uint64_t now = ss__mono_ms(), deadline = now + timeout_ms;
  uint64_t reserve = timeout_ms / 4 < EXIT_REPORT_RESERVE_MS ? timeout_ms / 4 : EXIT_REPORT_RESERVE_MS;
  uint64_t soft = deadline - reserve;
  if (!atomic_load_explicit(&encoders_used, memory_order_relaxed)) atomic_store(&encoders_used, 1);
  e->pipelined = 1;
  clock_start(e, timeout_ms);
  int rc = drain(e, soft, 1);
  /* The answers so far, before the count is final: a refusal adds to it. */
  int arc = rc == -ECANCELED ? 0 : collect_answers(e, answers_due(e, soft), 0);
  if (rc == 0) rc = arc;
  if (!own && atomic_load(&draining)) {
    int frc = final_report_claimed(e, deadline);
    if (rc == 0) rc = frc ? frc : -ETIMEDOUT;
  } else if (rc != 0 || ss__ring_used(&ss__tracer_g.ring) > 0 || drops_unreported() > 0) {
    int frc = final_report(e, deadline);
    if (rc == 0) rc = frc;
  }
  arc = end_pipeline(e, answers_due(e, deadline));
  if (rc == 0) rc = arc;
  return rc;
}

/* For a thread that is ending the process (its fd table is never the app's again): a copy
 * of the app's table of its own, and a connection there (runtime/ownfd.h), so that no fd
 * it makes can take a number an app thread could get at that instant (after a privilege
 * drop too: the collector admits it as part of the traced tree). NULL when the thread
 * cannot have a table of its own (SPANSHIM_EXPORTER_FD_TABLE=shared, a seccomp filter): it
 * then sends on the app threads' connections, born high and guarded. `in_signal`: no resolver.
 * Async-signal-safe. */
static ss__transport *ending_conn(int in_signal) {
  if (!cfg->own_fd_table || ss__own_go_private_copy() != 0) return NULL;
  atomic_store(&encoders_used, 1); /* a fork child forgets it */
  ss__transport_init_like(&ending_transport, &ss__transport_g, 1);
  ending_transport.no_resolver = in_signal;
  return &ending_transport;
}

/* Lets go of ending_transport: the connection it made is closed. */
static void ending_conn_done(void) {
  ss__transport_close(&ending_transport);
}

/* Signals other than faults wait (bounded by the flush) while a thread delivers for the
 * process: a signal handler that delivers too (hooks/signals.c) must not find this thread
 * holding the exporter's locks. The app's own mask is put back exactly as it was. */
static void block_async(sigset_t *old) {
  sigset_t async;
  /* Set by hand, not by sigfillset/sigdelset: a page of libc's code a fork child's exit
   * would fault in for them alone. glibc's sigset_t is an array of unsigned long. */
  static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS};
  unsigned long *w = (unsigned long *)(void *)&async;
  const unsigned bits = 8 * sizeof *w;
  memset(&async, 0xff, sizeof async);
  for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++)
    w[(unsigned)(faults[i] - 1) / bits] &= ~(1ul << ((unsigned)(faults[i] - 1) % bits));
  pthread_sigmask(SIG_BLOCK, &async, old);
}

/* One exit's delivery, on the thread that exits or on a helper in a copy of its fd table
 * (ss__own_run_in_copy). `private_ok`: the thread may take (or has) a table of its own. */
typedef struct exit_job {
  int own, private_ok;
  int probe;  /* first see whether the connection can be made at all (no_fd_here) */
  int no_fd;  /* it could not, for want of an fd: nothing was done */
  uint32_t timeout_ms;
  int rc, ran;
} exit_job;

/* 1 when the exit's connection t cannot be made for want of an fd (the app holds every fd
 * its hard RLIMIT_NOFILE allows: the calling thread's table, or its copy, is full) where
 * an exporter thread with a table of its own (started for it if need be) could make it.
 * Makes t's connection when it can. */
static int no_fd_here(ss__transport *t, uint64_t deadline_ms) {
  if (!(cfg->traces_exporter & SS_EXPORT_OTLP) || !cfg->own_fd_table ||
      atomic_load(&exporter_table) == TABLE_APP)
    return 0;
  int rc = ss__transport_ready(t, deadline_ms);
  return rc == -EMFILE || rc == -ENFILE;
}

static int exit_job_run(void *arg) {
  exit_job *j = arg;
  j->ran = 1;
  ss__self.internal++; /* on a helper thread too: nothing of ours is traced */
  if (j->own) encoder_ready(); /* own: under drain_lock */
  encoder *e = j->own ? &ex : &xe;
  ss__transport *ex_t = ex.t, *conn = j->private_ok ? ending_conn(0) : NULL;
  if (!j->own) {
    xe.t = conn ? conn : exit_conn();
    xe.exc.max_frames = cfg->stack_depth;
  } else if (conn) {
    ex.t = conn;
  } else if (ex.t == &own_transport) {
    /* Its connection is in the exporter thread's table: this thread sends on the app
     * threads' (made here if need be). Waking the exporter thread and waiting for it to be
     * scheduled would cost the budget on a loaded machine. */
    ex.t = &ss__transport_g;
  }
  j->no_fd = j->probe && no_fd_here(e->t, ss__mono_ms() + j->timeout_ms);
  if (!j->no_fd) {
    SS_LOG(SS_LOG_DEBUG, "exit flush: %s, %" PRIu64 " spans waiting%s",
           j->own ? "the exporter thread is idle" : "the exporter thread is busy", waiting(),
           conn ? ", from an fd table of its own" : "");
    j->rc = deliver_exit(e, j->own, j->timeout_ms);
  }
  if (e->t == &exit_transport) ss__transport_close(&exit_transport);
  if (conn) ending_conn_done();
  if (j->own) ex.t = ex_t;
  ss__self.internal--;
  return j->rc;
}

/* Other app threads may share this thread's fd table (glibc's count of the app's threads;
 * the exporter thread is off it): an fd born in it could shift a number one of them gets.
 * Unknown without glibc's count: yes. */
static int app_threads_share(void) {
  return nptl_nthreads == NULL || __atomic_load_n(nptl_nthreads, __ATOMIC_SEQ_CST) > 1;
}

/* The exporter thread delivers an exit that can make no fd (no_fd_here) from its own
 * table, as a dying thread's signal asks it to (deliver_exit, bounded as an exit's
 * delivery is); started now if it was not (the exit's process span may be the first
 * span). The exiting thread (exit_lock held, not drain_lock) waits for it as long at
 * most, then claims the accounting as an exit does from a stuck exporter thread.
 * Returns 0 when nothing was dropped, -EIO or -ETIMEDOUT, or -ENOSYS when the thread
 * could not take over (it shares the app's table, or did not start): then nothing was
 * done. */
static int hand_off(uint32_t timeout_ms) {
  uint64_t cap = (uint64_t)timeout_ms * (EXIT_STALL_FACTOR + 1) + TICK_IDLE_MS;
  uint64_t until = ss__mono_ms() + cap;
  struct timespec tick = {0, 200000};
  start_thread();
  while (atomic_load(&exporter_table) == TABLE_UNKNOWN && atomic_load(&started) &&
         ss__mono_ms() < until)
    nanosleep(&tick, NULL);
  if (atomic_load(&exporter_table) != TABLE_OWN) return -ENOSYS;
  SS_LOG(SS_LOG_DEBUG, "exit flush: no fd can be made here; the exporter thread delivers "
         "%" PRIu64 " spans from its own fd table", waiting());
  pthread_mutex_lock(&wake_lock);
  atomic_store(&urgent_budget_ms, timeout_ms);
  uint64_t ticket = atomic_fetch_add(&urgent_asked, 1) + 1;
  pthread_cond_signal(&wake_cond);
  pthread_mutex_unlock(&wake_lock);
  until = ss__mono_ms() + cap;
  while (atomic_load(&urgent_done) < ticket && ss__mono_ms() < until) nanosleep(&tick, NULL);
  if (atomic_load(&urgent_done) >= ticket) return ss__exporter_dropped() > 0 ? -EIO : 0;
  /* It could not finish (no CPU for it, or a collector that holds its writes): what it
   * has not handed over is counted, and said here (this thread has no connection). */
  SS_LOG(SS_LOG_DEBUG, "exit: the exporter thread did not finish the delivery in time");
  if (ensure_head(&xe) == 0) {
    xe.t = exit_conn();
    final_report_claimed(&xe, ss__mono_ms() + MIN_REQUEST_MS);
  }
  return -ETIMEDOUT;
}

static int flush(uint32_t timeout_ms, int ending) {
  if (cfg == NULL || nothing_to_do()) return 0;
  sigset_t old;
  block_async(&old);
  ss__self.internal++;
  if (pthread_mutex_trylock(&exit_lock) != 0) { /* another thread is exiting: it delivers */
    ss__self.internal--;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -EBUSY;
  }
  /* Deliver from this thread: an exporter thread that has not started yet, or cannot get
   * the CPU, or waits for a slow collector, must not spend the budget. Idle, its encoder
   * and connection are ours; busy, it stops at its next request boundary and this thread
   * takes the records on a connection of its own. */
  atomic_store(&exit_waiting, 1);
  exit_job j = {.own = pthread_mutex_trylock(&drain_lock) == 0, .timeout_ms = timeout_ms,
               .probe = 1};
  /* Its fds out of the app's table: a thread that ends the process takes a table of its
   * own; one that goes on running app code after (exit's destructors and stdio flush, a
   * failed exec's caller) while other app threads run delivers from a helper thread with
   * a copy of the table, and waits for it. A single-threaded app has no thread whose fd
   * numbers ours could shift: it delivers in its own table (no copy of it to make: a fork
   * child's usual end). */
  if (ending) {
    j.private_ok = app_threads_share();
  } else if (cfg->own_fd_table && app_threads_share()) {
    j.private_ok = 1;
    if (ss__own_run_in_copy(exit_job_run, &j) < 0 && !j.ran) {
      j.private_ok = 0; /* no helper (a seccomp filter): here, in the app's table */
      SS_LOG(SS_LOG_DEBUG, "exit flush: no helper thread; delivering from the app's fd table");
    }
  }
  if (!j.ran) exit_job_run(&j);
  if (j.own) pthread_mutex_unlock(&drain_lock);
  if (j.no_fd) {
    /* No fd here, nor in a copy of this table: the exporter thread's table has room. */
    j.rc = hand_off(timeout_ms);
    if (j.rc == -ENOSYS) { /* it cannot: delivered (or rather counted) from here */
      j = (exit_job){.own = pthread_mutex_trylock(&drain_lock) == 0, .timeout_ms = timeout_ms,
                     .private_ok = ending};
      exit_job_run(&j);
      if (j.own) pthread_mutex_unlock(&drain_lock);
    }
  }
  atomic_store(&exit_waiting, 0);
  pthread_mutex_unlock(&exit_lock);
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  exit_diagnostics();
  return j.rc;
}

int ss__exporter_flush(uint32_t timeout_ms) {
  return flush(timeout_ms, 0);
}

int ss__exporter_flush_ending(uint32_t timeout_ms) {
  return flush(timeout_ms, 1);
}

/* se's fixed buffers, once per process (a fork child's encoders start zeroed). */
static void sigsafe_setup(void) {
  if (se.sigsafe) return;
  atomic_store(&encoders_used, 1); /* a fork child forgets it */
  se.sigsafe = 1;
  se.treq.pb = (ss__pb){.p = sig_treq, .cap = sizeof sig_treq, .fixed = 1};
  se.lreq.pb = (ss__pb){.p = sig_lreq, .cap = sizeof sig_lreq, .fixed = 1};
  se.head.resource = (ss__pb){.p = sig_resource, .cap = sizeof sig_resource, .fixed = 1};
  se.head.scope = (ss__pb){.p = sig_scope, .cap = sizeof sig_scope, .fixed = 1};
  se.scratch = sig_scratch;
  se.scratch_cap = sizeof sig_scratch;
}

void ss__exporter_flush_dying(uint32_t timeout_ms) {
  if (cfg == NULL || nothing_to_do()) return;
  if (atomic_load(&started)) { /* one was started meanwhile: it delivers */
    ss__exporter_flush_signal(timeout_ms);
    return;
  }
  sigset_t old;
  block_async(&old);
  ss__self.internal++;
  /* exit_lock: an exit flush delivers already (or this thread faulted inside one).
   * drain_lock: an exporter thread started meanwhile waits for it. Either way, with
   * both held nobody else takes the ring (ring_lock is free). */
  int locked = pthread_mutex_trylock(&exit_lock) == 0;
  if (locked && pthread_mutex_trylock(&drain_lock) != 0) {
    pthread_mutex_unlock(&exit_lock);
    locked = 0;
  }
  if (locked) {
    sigsafe_setup();
    ss__transport *conn = ending_conn(1);
    if (conn != NULL) {
      se.t = conn;
      deliver_exit(&se, 1, timeout_ms);
      ending_conn_done();
    } else {
      size_t n = discard(SIZE_MAX);
      SS_LOG(SS_LOG_WARN, "a signal ends the process: %zu spans not delivered (no fd table "
             "of its own for the dying thread's connection)", n);
    }
    pthread_mutex_unlock(&drain_lock);
    pthread_mutex_unlock(&exit_lock);
  }
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (locked) exit_diagnostics();
}

int ss__exporter_running(void) {
  return atomic_load(&started);
}

void ss__exporter_flush_signal(uint32_t timeout_ms) {
  if (cfg == NULL || !atomic_load(&started) || nothing_to_do()) return;
  /* Never wait for ourselves. Any other thread may wait, also one that was inside the
   * shim (an exit flush waiting for the exporter, say): the wait is bounded and takes
   * no lock. */
  if (syscall(SYS_gettid) == atomic_load(&exporter_tid)) return;
  atomic_store(&urgent_budget_ms, timeout_ms);
  uint64_t ticket = atomic_fetch_add(&urgent_asked, 1) + 1;
  /* The exporter thread's delivery bounds itself as an exit's does (the budget plus the
   * time it waits for a CPU, up to EXIT_STALL_FACTOR times) and sends the final count last:
   * it is waited for, in 1 ms sleeps (time this thread waits for a CPU is not counted), up
   * to as long, plus what it may take to begin (a drain in progress stops at its next
   * record or request; the thread looks every 10 ms). */
  uint64_t cap = (uint64_t)timeout_ms * (EXIT_STALL_FACTOR + 1) + TICK_IDLE_MS;
  struct timespec tick = {0, 1000000};
  for (uint64_t waited = 0; atomic_load(&urgent_done) < ticket && waited < cap; waited++)
    nanosleep(&tick, NULL);
  if (atomic_load(&urgent_done) >= ticket) return;
  /* It did not come to the delivery in time: it is inside a request the collector does
   * not answer (a stalled collector holds an ordinary export for up to
   * OTEL_EXPORTER_OTLP_TIMEOUT), or it gets no CPU. As an exit does with a stuck exporter
   * thread (hand_off, final_report_claimed), this thread claims the accounting and
   * reports everything not handed over, signal-safely on a connection of its own. */
  sigset_t old;
  block_async(&old);
  ss__self.internal++;
  if (pthread_mutex_trylock(&exit_lock) == 0) {
    SS_LOG(SS_LOG_DEBUG, "a signal ends the process: the exporter thread did not deliver in "
           "time; this thread delivers %" PRIu64 " spans waiting", waiting());
    sigsafe_setup();
    ss__transport *conn = ending_conn(1);
    if (conn != NULL) {
      se.t = conn;
      int none = 0;
      if (atomic_compare_exchange_strong(&urgent_owner, &none, 2)) {
        /* An exit's delivery beside a busy exporter thread (exit_job_run's, not own):
         * records only, then the final count, which claims what that thread holds; the
         * exporter thread stops at its next request boundary and reports nothing. */
        atomic_store(&exit_waiting, 1);
        se_beside_exporter = 1;
        deliver_exit(&se, 0, timeout_ms);
        se_beside_exporter = 0;
        atomic_store(&exit_waiting, 0);
      } else if (ensure_head(&se) == 0) {
        /* It began the delivery at last: only the count, claimed from it. */
        final_report_claimed(&se, ss__mono_ms() + MIN_REQUEST_MS);
      }
      ending_conn_done();
    }
    pthread_mutex_unlock(&exit_lock);
    ss__self.internal--;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    exit_diagnostics();
    return;
  }
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: its path, when it is the traces collector (same
 * socket, or same host and port); the shim keeps one connection, so logs for another
 * collector go to the traces one, with a warning. */
static void logs_endpoint(const ss__config *c, ss__endpoint *ep) {
  ss__endpoint le;
  if (c->logs_endpoint == NULL) return;
  if (ss__endpoint_parse(c->logs_endpoint, "/v1/logs", &le) != 0) {
    SS_LOG(SS_LOG_WARN, "logs endpoint \"%s\" is not usable; sending logs to %s", c->logs_endpoint,
           ep->logs_path);
    return;
  }
  if (le.is_unix == ep->is_unix && strcmp(le.path, ep->path) == 0 &&
      strcmp(le.host, ep->host) == 0 && strcmp(le.port, ep->port) == 0) {
    strcpy(ep->logs_path, le.http_path);
    return;
  }
  SS_LOG(SS_LOG_WARN, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT \"%s\" is not the traces collector; the "
         "shim sends logs over its one connection, to %s there", c->logs_endpoint, ep->logs_path);
}

int ss__exporter_init(const ss__config *c) {
  ss__endpoint ep;
  int rc = ss__endpoint_parse(c->endpoint, "/v1/traces", &ep);
  if (rc != 0) {
    SS_LOG(SS_LOG_ERROR, "endpoint \"%s\" is not usable; tracing is off", c->endpoint);
    return rc;
  }
  size_t ring = (size_t)c->max_queue * BYTES_PER_QUEUED_SPAN;
  if (ring < 16384) ring = 16384;
  if ((rc = ss__tracer_init(c, ring, ss__exporter_kick)) != 0) return rc;
  logs_endpoint(c, &ep);
  if ((rc = ss__transport_init(&ss__transport_g, &ep, c->headers)) != 0) return rc;
  if (c->logs_headers != NULL &&
      (rc = ss__transport_set_logs_headers(&ss__transport_g, c->logs_headers)) != 0)
    return rc;
  nptl_nthreads = dlvsym(RTLD_DEFAULT, "__nptl_nthreads", "GLIBC_PRIVATE");
  cfg = c;
  ss__stack_set_loader(load_unwinder_there);
  return 0;
}

SS_FORK_TEXT static void encoder_forget(encoder *e, ss__transport *t) {
  memset(e, 0, sizeof *e);
  e->t = t;
  e->exc.max_frames = cfg ? cfg->stack_depth : 0;
}

/* A fork child's reset of a counter or flag: written only when it is not already 0, so a
 * page the child would not otherwise write is not copied (a fault each, and ~40 us on a
 * VM) -- the usual case for the parent's unused state. */
static void zero_u64(_Atomic uint64_t *p) {
  if (atomic_load_explicit(p, memory_order_relaxed) != 0) atomic_store(p, 0);
}

static void zero_int(_Atomic int *p) {
  if (atomic_load_explicit(p, memory_order_relaxed) != 0) atomic_store(p, 0);
}

void ss__exporter_atfork_prepare(void) {
  fork_ms = ss__mono_ms();
}

SS_FORK_TEXT void ss__exporter_atfork_child(void) {
  /* The exporter thread may have been in the middle of using its buffers when the
   * parent forked; it does not exist here. Forget them without freeing (a half-done
   * free or realloc would make that a double free): a one-time leak in the child, and
   * the child allocates its own on first use. What the parent never used is left
   * untouched (see zero_u64). */
  if (atomic_load(&encoders_used)) { /* else nothing to forget, no page of theirs copied */
    encoder_forget(&ex, &ss__transport_g);
    encoder_forget(&xe, &exit_transport);
    encoder_forget(&se, NULL);
    memset(&ending_transport, 0, sizeof ending_transport);
    atomic_store(&ending_transport.fd, -1);
    atomic_store(&encoders_used, 0);
  }
  /* The exporter thread's own table is not ours: its numbers mean our app's fds here. */
  if (atomic_load(&exporter_table) != TABLE_UNKNOWN) {
    memset(&own_transport, 0, sizeof own_transport);
    atomic_store(&own_transport.fd, -1);
    atomic_store(&exporter_table, TABLE_UNKNOWN);
  }
  if (atomic_load(&exit_transport.fd) >= 0) {
    int efd = atomic_exchange(&exit_transport.fd, -1);
    if (efd >= 0) ss__sys_close(efd);
  }
  /* The symbol cache is kept: it changes only under the loader lock, which the fork
   * waited for, and the child runs the same objects (no module or symbol table to read
   * again in every child). */
  ss__resource_forked();
  ss__mutex_reinit(&drain_lock);
  ss__mutex_reinit(&exit_lock);
  ss__mutex_reinit(&ring_lock);
  ss__mutex_reinit(&wake_lock);
  static const pthread_cond_t cond0 = PTHREAD_COND_INITIALIZER;
  if (memcmp(&wake_cond, &cond0, sizeof cond0) != 0) pthread_cond_init(&wake_cond, NULL);
  zero_u64(&urgent_asked);
  zero_u64(&urgent_done);
  if (atomic_load(&exporter_tid) != 0) atomic_store(&exporter_tid, 0);
  zero_int(&started);
  zero_int(&exiting);
  atomic_store(&quiet_until_ms, fork_ms + FORK_QUIET_MS);
  zero_int(&ss__exporter_holding);
  zero_int(&draining);
  zero_int(&exit_waiting);
  zero_int(&urgent_owner);
  zero_int(&sender);
  zero_int(&unwinder_wanted); /* the stack module's own state says if it is loaded */
  zero_u64(&epoch);
  zero_u64(&taken);
  zero_u64(&claim_ms);
  if (claim_committed != 0) claim_committed = 0;
  zero_u64(&handed);
  zero_u64(&undelivered);
  zero_u64(&reported);
  zero_u64(&lhanded);
  zero_u64(&lundelivered);
  zero_u64(&ltaken);
  zero_u64(&lreported);
  zero_u64(&ss__tracer_g.exc_dropped);
  ss__ring_reset_in_child(&ss__tracer_g.ring);
  for (int i = 0; i < SS_DROP_REASONS; i++) zero_u64(&ss__tracer_g.drops[i]);
  zero_int(&ss__tracer_g.no_sink);
  ss__transport_reset_in_child(&ss__transport_g);
}
