/* exporter.c - drains the span ring into OTLP requests; see exporter.h. */
#include "runtime/exporter.h"
#include "runtime/sys.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/deadline.h"
#include "runtime/log.h"
#include "runtime/span_rec.h"
#include "runtime/otlp.h"
#include "runtime/resource.h"
#include "runtime/console.h"
#include "runtime/exceptions.h"
#include "runtime/sanitize.h"
#include "runtime/stack.h"
#include "runtime/symbolize.h"
#include "runtime/span.h"

#define TICK_MS 10
#define MAX_ATTRS_PER_SPAN 64
#define BYTES_PER_QUEUED_SPAN 256

ss__transport ss__transport_g;

static const ss__config *cfg;
static _Atomic int started;           /* exporter thread started in this process */
static _Atomic int exiting;           /* no thread starts any more (see exporter.h) */
static _Atomic uint64_t undelivered;  /* spans taken from the ring but not delivered */
static uint64_t reported_dropped;     /* last dropped count sent (drain lock) */

/* drain_lock: the ring's consumer side, the batch buffers and the resource. Taken by the
 * exporter thread and by a flush; the transport lock nests inside it. wake_lock guards
 * the flush handshake only and is never held while draining. */
static pthread_mutex_t drain_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static uint64_t flush_requested, flush_done; /* wake_lock */
static int flush_result;                     /* wake_lock */

/* Signal handlers' drain requests: a handler takes ticket ++urgent_asked and waits for
 * urgent_done to reach it; the exporter reads urgent_asked before a drain and stores it in
 * urgent_done after, so the drain that answers a ticket began after the ticket (and the
 * spans its handler committed) were there. */
static _Atomic uint64_t urgent_asked, urgent_done;
static _Atomic long exporter_tid; /* the exporter thread (0: none yet) */
static _Atomic int draining; /* a batch may be out of the ring but not yet delivered */

static ss__resource resource;
static pid_t resource_pid;

/* A batch: copies of ring records and their decoded views. */
static unsigned char *batch_buf;
static size_t batch_cap;
static ss__span *spans;
static ss__attr *attrs;
static size_t spans_cap;

int ss__exporter_owns_fd(int fd) {
  return ss__transport_owns(&ss__transport_g, fd);
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

static int ensure_capacity(size_t bytes, size_t n) {
  if (bytes > batch_cap) {
    size_t c = batch_cap ? batch_cap : 65536;
    while (c < bytes) c *= 2;
    unsigned char *p = realloc(batch_buf, c);
    if (p == NULL) return -ENOMEM;
    batch_buf = p;
    batch_cap = c;
  }
  if (n > spans_cap) {
    ss__span *s = realloc(spans, n * sizeof *s);
    if (s == NULL) return -ENOMEM;
    spans = s;
    ss__attr *a = realloc(attrs, n * MAX_ATTRS_PER_SPAN * sizeof *a);
    if (a == NULL) return -ENOMEM;
    attrs = a;
    spans_cap = n;
  }
  return 0;
}

/* Moves up to max records out of the ring into batch_buf; returns how many. */
static size_t take_batch(size_t max, size_t *bytes_out) {
  size_t n = 0, bytes = 0, len;
  void *rec;
  while (n < max && (rec = ss__ring_peek(&ss__tracer_g.ring, &len)) != NULL) {
    if (ensure_capacity(bytes + len, n + 1) != 0) break;
    memcpy(batch_buf + bytes, rec, len);
    ss__ring_release(&ss__tracer_g.ring);
    bytes += (len + 7) & ~(size_t)7;
    n++;
  }
  *bytes_out = bytes;
  return n;
}

static ss__exc_batch exc; /* exception logs and strings of the batch (drain lock) */

/* Scratch for sanitized attribute values; grows with the batch. */
static char *scratch_buf;
static size_t scratch_cap;

static size_t decode_batch(size_t n, size_t bytes) {
  size_t off = 0, good = 0;
  if (scratch_cap < bytes * 2 + 4096) {
    char *p = realloc(scratch_buf, bytes * 2 + 4096);
    if (p) {
      scratch_buf = p;
      scratch_cap = bytes * 2 + 4096;
    }
  }
  char *scratch = scratch_buf;
  size_t left = scratch_buf ? scratch_cap : 0;
  for (size_t i = 0; i < n; i++) {
    const ss__rec *r = (const ss__rec *)(batch_buf + off);
    ss__attr *a = attrs + good * MAX_ATTRS_PER_SPAN;
    if (ss__rec_decode(r, r->size, &spans[good], a, MAX_ATTRS_PER_SPAN) == 0) {
      ss__sanitize_span(&spans[good], a, &scratch, &left);
      ss__loader_lock(); /* symbolizing asks the dynamic loader */
      ss__exc_span(&exc, &spans[good], a, MAX_ATTRS_PER_SPAN, cfg->exception_signal);
      ss__loader_unlock();
      good++;
    }
    off += (r->size + 7) & ~(size_t)7;
  }
  return good;
}

static int post_spans(const ss__scope *scope, size_t n, uint64_t deadline_ms,
                      uint64_t dropped);

static int ensure_resource(void) {
  pid_t pid = getpid();
  if (resource.attrs != NULL && resource_pid == pid) return 0;
  ss__resource_free(&resource);
  int rc = ss__resource_build(&resource, cfg);
  if (rc == 0) resource_pid = pid;
  return rc;
}

/* The batch's exception records, after its spans (best effort: not counted as spans). */
static void send_logs(const ss__scope *scope, uint64_t deadline_ms) {
  uint8_t *body = NULL;
  size_t len = 0;
  if (exc.n_logs == 0) return;
  if (cfg->logs_exporter & SS_EXPORT_CONSOLE) ss__console_logs(&resource, exc.logs, exc.n_logs);
  if (!(cfg->logs_exporter & SS_EXPORT_OTLP)) return;
  uint64_t own = ss__mono_ms() + cfg->logs_timeout_ms; /* OTEL_EXPORTER_OTLP_LOGS_TIMEOUT */
  if (own < deadline_ms) deadline_ms = own;
  if (ss__otlp_encode_logs(&resource, scope, exc.logs, exc.n_logs, &body, &len) == 0) {
    int rc = ss__transport_post_to(&ss__transport_g, ss__transport_g.ep.logs_path, body, len,
                                   deadline_ms);
    if (rc < 200 || rc >= 300)
      SS_LOG(SS_LOG_INFO, "exception records not delivered (%d)", rc);
  }
  free(body);
}

/* Encodes and posts n decoded spans (n may be 0 to report drops). 0 when delivered. */
static int send_spans(size_t n, uint64_t deadline_ms) {
  uint64_t dropped = ss__exporter_dropped();
  ss__attr scope_attr = {.key = "spanshim.spans.dropped", .type = SS_ATTR_INT};
  scope_attr.v.i = (int64_t)dropped;
  ss__scope scope = {.name = "spanshim", .version = SPANSHIM_VERSION,
                     .attrs = &scope_attr, .n_attrs = 1};
  int delivered = post_spans(&scope, n, deadline_ms, dropped);
  if (delivered == 0) send_logs(&scope, deadline_ms);
  ss__exc_reset(&exc);
  return delivered;
}

static int post_spans(const ss__scope *scope, size_t n, uint64_t deadline_ms,
                      uint64_t dropped) {
  uint8_t *body = NULL;
  size_t len = 0;
  int rc = ensure_resource();
  if (rc == 0 && n > 0 && (cfg->traces_exporter & SS_EXPORT_CONSOLE))
    ss__console_spans(&resource, spans, n);
  if (rc == 0 && !(cfg->traces_exporter & SS_EXPORT_OTLP)) { /* console only */
    reported_dropped = dropped;
    return 0;
  }
  if (rc == 0) rc = ss__otlp_encode_traces(&resource, scope, spans, n, &body, &len);
  if (rc == 0) rc = ss__transport_post(&ss__transport_g, body, len, deadline_ms);
  free(body);
  if (rc >= 200 && rc < 300) {
    reported_dropped = dropped;
    return 0;
  }
  if (rc > 0)
    SS_LOG(SS_LOG_WARN, "collector answered HTTP %d; %zu spans dropped", rc, n);
  else if (rc != -EAGAIN)
    SS_LOG(SS_LOG_INFO, "export failed (%s); %zu spans dropped", strerror(-rc), n);
  return -EIO;
}

/* Drains the ring in batches until it is empty or the deadline passes. Caller holds
 * drain_lock. Returns 0 if everything taken was delivered. */
static int drain(uint64_t deadline_ms) {
  int result = 0;
  for (;;) {
    size_t bytes, n = take_batch(cfg->max_export_batch, &bytes);
    if (n == 0 && ss__exporter_dropped() == reported_dropped) break;
    size_t good = decode_batch(n, bytes);
    if (n > 0 && ss__mono_ms() >= deadline_ms) {
      atomic_fetch_add(&undelivered, n);
      result = -ETIMEDOUT;
      break;
    }
    if (send_spans(good, deadline_ms) != 0) {
      atomic_fetch_add(&undelivered, n);
      result = -EIO;
      if (n == 0) break;
    } else if (good < n) {
      atomic_fetch_add(&undelivered, n - good);
    }
    if (n == 0) break;
  }
  return result;
}

static void *exporter_main(void *arg) {
  (void)arg;
  ss__self.internal++;
  atomic_store(&exporter_tid, syscall(SYS_gettid));
  if (cfg->stack_depth > 0) ss__stack_load(); /* so the app's first failure need not */
  uint64_t last = ss__mono_ms(), seen = 0;
  for (;;) {
    pthread_mutex_lock(&wake_lock);
    uint64_t want = flush_requested;
    if (want == flush_done) {
      struct timespec ts = ss__timespec_after_ms(CLOCK_REALTIME, TICK_MS);
      pthread_cond_timedwait(&wake_cond, &wake_lock, &ts);
      want = flush_requested;
    }
    pthread_mutex_unlock(&wake_lock);

    uint64_t now = ss__mono_ms();
    uint64_t pending = atomic_load(&ss__tracer_g.ring.committed) - seen;
    uint64_t asked = atomic_load(&urgent_asked);
    int due = want != flush_done || asked != atomic_load(&urgent_done) ||
              pending >= cfg->max_export_batch ||
              ss__ring_used(&ss__tracer_g.ring) > ss__tracer_g.ring.cap / 2 ||
              (now - last >= cfg->schedule_delay_ms &&
               (pending > 0 || ss__exporter_dropped() != reported_dropped));
    if (!due) continue;
    pthread_mutex_lock(&drain_lock);
    atomic_store(&draining, 1);
    seen = atomic_load(&ss__tracer_g.ring.committed);
    asked = atomic_load(&urgent_asked);
    int rc = drain(ss__mono_ms() + cfg->export_timeout_ms);
    atomic_store(&draining, 0);
    atomic_store(&urgent_done, asked);
    pthread_mutex_unlock(&drain_lock);
    last = ss__mono_ms();
    if (want != flush_done) {
      pthread_mutex_lock(&wake_lock);
      flush_done = want;
      flush_result = rc;
      pthread_cond_broadcast(&done_cond);
      pthread_mutex_unlock(&wake_lock);
    }
  }
  return NULL;
}

void ss__exporter_exiting(void) {
  atomic_store(&exiting, 1);
}

void ss__exporter_kick(void) {
  if (atomic_load_explicit(&started, memory_order_relaxed) || atomic_load(&exiting)) return;
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
  if (rc == 0) pthread_setname_np(th, "spanshim-export");
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    SS_LOG(SS_LOG_ERROR, "cannot start the exporter thread: %s", strerror(rc));
    atomic_store(&started, 0);
  }
}

/* An empty ring is not enough: the exporter may hold the last batch, unsent. */
static int nothing_to_do(void) {
  return ss__ring_used(&ss__tracer_g.ring) == 0 && !atomic_load(&draining) &&
         ss__exporter_dropped() == reported_dropped;
}

int ss__exporter_flush(uint32_t timeout_ms) {
  if (cfg == NULL || nothing_to_do()) return 0;
  uint64_t deadline = ss__mono_ms() + timeout_ms;
  int rc = -ETIMEDOUT;
  /* A signal handler that delivers before the process dies (hooks/signals.c) waits for
   * the exporter thread, which needs wake_lock: this thread must not be interrupted
   * holding it. Signals other than faults wait (at most timeout_ms) until the flush is
   * over; the app's own mask is put back exactly as it was. */
  sigset_t async, old;
  sigfillset(&async);
  sigdelset(&async, SIGSEGV);
  sigdelset(&async, SIGBUS);
  sigdelset(&async, SIGFPE);
  sigdelset(&async, SIGILL);
  sigdelset(&async, SIGTRAP);
  sigdelset(&async, SIGSYS);
  pthread_sigmask(SIG_BLOCK, &async, &old);
  ss__self.internal++;
  if (atomic_load(&started)) {
    struct timespec ts = ss__timespec_after_ms(CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&wake_lock);
    uint64_t ticket = ++flush_requested;
    pthread_cond_signal(&wake_cond);
    while (flush_done < ticket)
      if (pthread_cond_timedwait(&done_cond, &wake_lock, &ts) == ETIMEDOUT) break;
    if (flush_done >= ticket) rc = flush_result;
    pthread_mutex_unlock(&wake_lock);
  } else if (pthread_mutex_trylock(&drain_lock) == 0) {
    rc = drain(deadline);
    pthread_mutex_unlock(&drain_lock);
  }
  ss__self.internal--;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0 && ss__exporter_dropped() > 0)
    SS_LOG(SS_LOG_WARN, "exit: %llu spans could not be delivered",
           (unsigned long long)ss__exporter_dropped());
  return rc;
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
  uint64_t ticket = atomic_fetch_add(&urgent_asked, 1) + 1;
  struct timespec tick = {0, 1000000};
  for (uint32_t waited = 0; waited < timeout_ms && atomic_load(&urgent_done) < ticket; waited++)
    nanosleep(&tick, NULL);
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
  cfg = c;
  exc.max_frames = c->stack_depth;
  return 0;
}

void ss__exporter_atfork_child(void) {
  /* The exporter thread may have been in the middle of using its buffers when the
   * parent forked; it does not exist here. Forget them without freeing (a half-done
   * free or realloc would make that a double free): a one-time leak in the child. */
  batch_buf = NULL;
  batch_cap = 0;
  spans = NULL;
  attrs = NULL;
  spans_cap = 0;
  scratch_buf = NULL;
  scratch_cap = 0;
  memset(&resource, 0, sizeof resource);
  resource_pid = 0;
  memset(&exc, 0, sizeof exc);
  exc.max_frames = cfg ? cfg->stack_depth : 0;
  ss__symbolize_forget();
  pthread_mutex_init(&drain_lock, NULL);
  pthread_mutex_init(&wake_lock, NULL);
  pthread_cond_init(&wake_cond, NULL);
  pthread_cond_init(&done_cond, NULL);
  flush_requested = flush_done = 0;
  atomic_store(&urgent_asked, 0);
  atomic_store(&urgent_done, 0);
  atomic_store(&exporter_tid, 0);
  atomic_store(&started, 0);
  atomic_store(&exiting, 0);
  atomic_store(&undelivered, 0);
  reported_dropped = 0;
  ss__ring_reset_in_child(&ss__tracer_g.ring);
  for (int i = 0; i < 4; i++) atomic_store(&ss__tracer_g.drops[i], 0);
  ss__transport_reset_in_child(&ss__transport_g);
}
