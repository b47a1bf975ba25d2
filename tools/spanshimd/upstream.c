/* upstream.c - forwarding to an OTLP/HTTP endpoint (an OpenTelemetry Collector, Jaeger,
 * Tempo) on a thread of its own, so the receiver never waits for the network.
 *
 * The receiver hands over serialized Export*ServiceRequest bodies (ss__upstream_enqueue
 * copies them); the worker thread POSTs them with libcurl (TLS, keep-alive), gzip when
 * asked. Bodies of the same kind that wait together are sent as one request: protobuf
 * concatenation of two messages merges their repeated fields, so the bytes are simply
 * joined. Per the OTLP/HTTP spec only 429, 502, 503, 504 and transport failures are
 * retried, with exponential backoff and jitter, honouring Retry-After; any other status
 * drops the batch (counted, logged); a 2xx with partial_success is logged and its
 * rejected count kept. The queue is bounded in bytes: when full, the new body is dropped
 * and counted, never waited for.
 *
 * Locking: one mutex (q_lock) guards the queue and the stop flag; it is a leaf lock and is
 * never held across network I/O or compression. Counters are relaxed atomics, read by
 * the receiver thread for /stats and /metrics. */
#define CURL_DISABLE_TYPECHECK 1 /* plain prototypes: the calls go through pointers */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "runtime/clock.h"
#include "runtime/deadline.h"
#include "runtime/kv.h"
#include "tools/spanshimd/spanshimd.h"
#include "tools/spanshimd/lazy.h"

/* libcurl is opened when forwarding starts (tools/spanshimd/lazy.h), never linked. */
#define CURL_FNS(X)                                                                      \
  X(curl_global_init) X(curl_global_cleanup) X(curl_easy_init) X(curl_easy_cleanup)      \
  X(curl_easy_setopt) X(curl_easy_perform) X(curl_easy_getinfo) X(curl_easy_strerror)    \
  X(curl_slist_append) X(curl_slist_free_all)
SS_LAZY_TABLE(curl, CURL_FNS)
#define curl_global_init SS_LAZY(curl, curl_global_init)
#define curl_global_cleanup SS_LAZY(curl, curl_global_cleanup)
#define curl_easy_init SS_LAZY(curl, curl_easy_init)
#define curl_easy_cleanup SS_LAZY(curl, curl_easy_cleanup)
#undef curl_easy_setopt /* curl.h's argument-count checks */
#undef curl_easy_getinfo
#define curl_easy_setopt SS_LAZY(curl, curl_easy_setopt)
#define curl_easy_perform SS_LAZY(curl, curl_easy_perform)
#define curl_easy_getinfo SS_LAZY(curl, curl_easy_getinfo)
#define curl_easy_strerror SS_LAZY(curl, curl_easy_strerror)
#define curl_slist_append SS_LAZY(curl, curl_slist_append)
#define curl_slist_free_all SS_LAZY(curl, curl_slist_free_all)
static const char *const curl_sonames[] = {"libcurl.so.4", "libcurl-gnutls.so.4", NULL};

typedef struct item {
  struct item *next;
  int logs;          /* SS_SIG_*: which endpoint */
  size_t len;
  size_t cap;        /* bytes data[] has room for */
  uint64_t n;        /* spans or log records inside */
  uint64_t enq_ms;   /* monotonic, for the delivery latency */
  uint8_t data[];
} item;

static ss__upstream_cfg cfg;
static int started, configured;  /* configured stays set after stop, for the exit line */
static pthread_t worker;
static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cond = PTHREAD_COND_INITIALIZER;
static item *q_head, *q_tail;
static size_t q_bytes;
static int stopping;
/* Buffers of delivered bodies kept for the next ones (a body of 512 spans is 100-300 KiB:
 * malloc'd and freed each time, glibc maps and unmaps them, and every byte copied in
 * faults its page first). Guarded by q_lock. */
static item *spare;
static size_t n_spare, spare_bytes;
static uint8_t *joined;          /* the worker's buffer for batches of several bodies */
static size_t joined_cap;
static uint64_t stop_deadline_ms;  /* after stop: give up at this monotonic time */

ss__upstream_stats ss__up_stats_g;

#define ADD(field, v) atomic_fetch_add_explicit(&ss__up_stats_g.field, (v), memory_order_relaxed)
#define SUB(field, v) atomic_fetch_sub_explicit(&ss__up_stats_g.field, (v), memory_order_relaxed)

#define BATCH_MAX (4u << 20)      /* join queued bodies up to this many bytes */
#define SPARE_MAX 16              /* buffers kept for reuse, at most */
#define SPARE_BYTES (8u << 20)    /* ... and bytes */
#define ROUND (64u << 10)         /* buffers are sized in these steps, to fit the next body */
#define RESP_MAX 65536
#define RETRY_AFTER_MAX_MS 300000

/* The endpoint of signal sig (SS_SIG_*); "" when it is not forwarded. */
static const char *url_of(int sig) {
  return sig == SS_SIG_METRICS ? cfg.metrics_url : sig == SS_SIG_LOGS ? cfg.logs_url
                                                                      : cfg.traces_url;
}

/* ---- queue ---- */

int ss__upstream_enqueue(int logs, const void *body, size_t len, uint64_t n) {
  if (!started || !url_of(logs)[0]) return 0;
  item *it = NULL, **pp;
  pthread_mutex_lock(&q_lock);
  int full = stopping || q_bytes + len > cfg.queue_bytes;
  for (pp = &spare; !full && *pp && (*pp)->cap < len; pp = &(*pp)->next) {
  }
  if (!full && *pp) {  /* a spare buffer that fits */
    it = *pp;
    *pp = it->next;
    n_spare--;
    spare_bytes -= it->cap;
  }
  pthread_mutex_unlock(&q_lock);
  if (!full && it == NULL) {
    size_t cap = (len + ROUND - 1) / ROUND * ROUND;
    if ((it = malloc(sizeof *it + cap)) != NULL) it->cap = cap;
  }
  if (it == NULL) {
    ADD(dropped_requests, 1);
    ADD(dropped_items, n);
    return -ENOSPC;
  }
  it->next = NULL;
  it->logs = logs;
  it->len = len;
  it->n = n;
  it->enq_ms = ss__mono_ms();
  memcpy(it->data, body, len);
  pthread_mutex_lock(&q_lock);
  if (q_tail) q_tail->next = it;
  else q_head = it;
  q_tail = it;
  q_bytes += len;
  pthread_cond_signal(&q_cond);
  pthread_mutex_unlock(&q_lock);
  ADD(queued_bytes, len);
  ADD(queued_items, n);
  return 0;
}

/* Takes the head and every following body of the same kind, up to BATCH_MAX bytes, off
 * the queue; returns the list (NULL when stopping with nothing left). */
static item *take_batch(void) {
  pthread_mutex_lock(&q_lock);
  while (q_head == NULL && !stopping) pthread_cond_wait(&q_cond, &q_lock);
  item *first = q_head, *last = q_head;
  size_t total = first ? first->len : 0;
  while (last && last->next && last->next->logs == first->logs &&
         total + last->next->len <= BATCH_MAX) {
    last = last->next;
    total += last->len;
  }
  if (first) {
    q_head = last->next;
    if (q_head == NULL) q_tail = NULL;
    last->next = NULL;
  }
  pthread_mutex_unlock(&q_lock);
  return first;
}

/* Sleeps up to ms, waking early when stop() arrives; returns 1 if the deadline for giving
 * up has passed. */
static int pause_ms(uint64_t ms) {
  pthread_mutex_lock(&q_lock);
  int was_stopping = stopping;
  if (stopping) {  /* never sleep past the deadline for giving up */
    uint64_t left = ss__ms_until(stop_deadline_ms, ss__mono_ms());
    if (ms > left) ms = left;
  }
  struct timespec ts = ss__timespec_after_ms(CLOCK_REALTIME, ms);  /* q_cond's clock */
  while (stopping == was_stopping &&
         pthread_cond_timedwait(&q_cond, &q_lock, &ts) != ETIMEDOUT) {
  }
  int give_up = stopping && ss__mono_ms() >= stop_deadline_ms;
  pthread_mutex_unlock(&q_lock);
  return give_up;
}

static int past_deadline(void) {
  pthread_mutex_lock(&q_lock);
  int r = stopping && ss__mono_ms() >= stop_deadline_ms;
  pthread_mutex_unlock(&q_lock);
  return r;
}

/* ---- one HTTP exchange ---- */

typedef struct resp {
  char body[RESP_MAX];
  size_t len;
  long retry_after_ms;  /* -1: none */
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *u) {
  resp *r = u;
  size_t k = sz * n, room = sizeof r->body - r->len;
  memcpy(r->body + r->len, p, k < room ? k : room);
  r->len += k < room ? k : room;
  return k;
}

/* Retry-After: delay-seconds or an HTTP-date. */
static long parse_retry_after(const char *v, size_t n) {
  char s[64];
  if (n >= sizeof s) return -1;
  memcpy(s, v, n);
  s[n] = 0;
  char *end;
  long secs = strtol(s, &end, 10);
  if (end != s && *end == 0 && secs >= 0) return secs * 1000;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm) == NULL) return -1;
  time_t when = timegm(&tm), now = time(NULL);
  return when > now ? (long)(when - now) * 1000 : 0;
}

static size_t on_header(char *p, size_t sz, size_t n, void *u) {
  resp *r = u;
  size_t k = sz * n;
  static const char name[] = "retry-after:";
  if (k > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0) {
    const char *v = p + sizeof name - 1;
    size_t vn = k - (sizeof name - 1);
    while (vn && (*v == ' ' || *v == '\t')) v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n' || v[vn - 1] == ' ')) vn--;
    r->retry_after_ms = parse_retry_after(v, vn);
  }
  return k;
}

static int on_progress(void *u, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d) {
  (void)u, (void)a, (void)b, (void)c, (void)d;
  return past_deadline();  /* non-zero aborts the transfer */
}

/* gzip of p[0..n) into *out (malloc'd); 0 or -1. */
static int gzip(const uint8_t *p, size_t n, uint8_t **out, size_t *out_len) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return -1;
  size_t cap = deflateBound(&z, n);
  uint8_t *buf = malloc(cap);
  if (buf == NULL) {
    deflateEnd(&z);
    return -1;
  }
  z.next_in = (Bytef *)p;
  z.avail_in = (uInt)n;
  z.next_out = buf;
  z.avail_out = (uInt)cap;
  int rc = deflate(&z, Z_FINISH);
  *out_len = z.total_out;
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(buf);
    return -1;
  }
  *out = buf;
  return 0;
}

/* Reads google.rpc.Status.message (field 2) or, for a 2xx, the partial_success message
 * (field 1 → field 2) and rejected count (field 1 → field 1), from a protobuf body. A
 * tiny wire walk: these bodies come from a remote server and are merely logged. */
static int pb_field(const uint8_t *p, size_t n, unsigned want, const uint8_t **v,
                    size_t *vn, uint64_t *num) {
  size_t i = 0;
  while (i < n) {
    uint64_t tag = 0, x = 0;
    for (int sh = 0; i < n && sh < 64; sh += 7) {
      tag |= (uint64_t)(p[i] & 0x7f) << sh;
      if (!(p[i++] & 0x80)) break;
    }
    unsigned wt = tag & 7, fn = (unsigned)(tag >> 3);
    if (wt == 0 || wt == 2) {
      for (int sh = 0; i < n && sh < 64; sh += 7) {
        x |= (uint64_t)(p[i] & 0x7f) << sh;
        if (!(p[i++] & 0x80)) break;
      }
      if (wt == 2) {
        if (x > n - i) return 0;
        if (fn == want) {
          *v = p + i;
          *vn = (size_t)x;
          return 2;
        }
        i += (size_t)x;
      } else if (fn == want) {
        *num = x;
        return 1;
      }
    } else if (wt == 1) {
      i += 8;
    } else if (wt == 5) {
      i += 4;
    } else {
      return 0;
    }
  }
  return 0;
}

static void log_partial(const resp *r, int logs) {
  const uint8_t *ps, *msg = NULL, *unused_p;
  size_t psn, msgn = 0, unused_n;
  uint64_t rejected = 0, unused;
  if (pb_field((const uint8_t *)r->body, r->len, 1, &ps, &psn, &unused) != 2) return;
  pb_field(ps, psn, 1, &unused_p, &unused_n, &rejected);
  pb_field(ps, psn, 2, &msg, &msgn, &unused);
  if (rejected == 0 && msgn == 0) return;
  ADD(rejected_items, rejected);
  fprintf(stderr, "spanshimd: upstream accepted part of a batch: %llu %s rejected%s%.*s\n",
          (unsigned long long)rejected,
          logs == SS_SIG_METRICS ? "data points" : logs ? "log records" : "spans",
          msgn ? ": " : "",
          (int)(msgn > 200 ? 200 : msgn), msg ? (const char *)msg : "");
}

static void log_failure(long status, const resp *r, const char *url) {
  const uint8_t *msg = NULL;
  size_t msgn = 0;
  uint64_t dummy;
  pb_field((const uint8_t *)r->body, r->len, 2, &msg, &msgn, &dummy);
  fprintf(stderr, "spanshimd: upstream %s answered %ld; batch dropped (not retryable)%s%.*s\n",
          url, status, msgn ? ": " : "", (int)(msgn > 200 ? 200 : msgn),
          msg ? (const char *)msg : "");
}

enum { SENT_OK, SENT_RETRY, SENT_DROP };

/* One POST; returns SENT_*; *retry_after_ms gets the server's wish (-1 none). */
static int post(CURL *h, int logs, const uint8_t *body, size_t len, long *retry_after_ms) {
  static resp r;
  const char *url = url_of(logs);
  r.len = 0;
  r.retry_after_ms = -1;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &r);
  CURLcode rc = curl_easy_perform(h);
  *retry_after_ms = -1;
  if (rc != CURLE_OK) {
    ADD(transport_errors, 1);
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
      fprintf(stderr, "spanshimd: upstream %s: %s; batch dropped\n", url,
              curl_easy_strerror(rc));
      return SENT_DROP;
    }
    return SENT_RETRY;
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) {
    log_partial(&r, logs);
    return SENT_OK;
  }
  ADD(http_errors, 1);
  if (status == 429 || status == 502 || status == 503 || status == 504) {
    *retry_after_ms = r.retry_after_ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS
                                                            : r.retry_after_ms;
    return SENT_RETRY;
  }
  log_failure(status, &r, url);
  return SENT_DROP;
}

static uint64_t jitter_rand(void) {
  static uint64_t s = 0;
  if (s == 0) s = ss__mono_ms() * 0x9e3779b97f4a7c15ull | 1;
  s ^= s << 13, s ^= s >> 7, s ^= s << 17;
  return s;
}

/* Keeps the delivered bodies' buffers for reuse, as many as the bounds allow; frees the
 * others. */
static void recycle(item *batch) {
  item *gone = NULL;
  pthread_mutex_lock(&q_lock);
  for (item *it = batch, *next; it; it = next) {
    next = it->next;
    if (!stopping && n_spare < SPARE_MAX && spare_bytes + it->cap <= SPARE_BYTES) {
      it->next = spare, spare = it;
      n_spare++;
      spare_bytes += it->cap;
    } else {
      it->next = gone, gone = it;
    }
  }
  pthread_mutex_unlock(&q_lock);
  for (item *next; gone; gone = next) next = gone->next, free(gone);
}

static void settle(item *batch, int outcome) {
  uint64_t n = 0, bytes = 0, now = ss__mono_ms();
  for (item *it = batch; it; it = it->next) {
    n += it->n;
    bytes += it->len;
    if (outcome == SENT_OK) {
      uint64_t lat = now - it->enq_ms;
      ADD(latency_ms_sum, lat);
      ADD(latency_samples, 1);
      if (lat > atomic_load_explicit(&ss__up_stats_g.latency_ms_max, memory_order_relaxed))
        atomic_store_explicit(&ss__up_stats_g.latency_ms_max, lat, memory_order_relaxed);
    }
  }
  recycle(batch);
  pthread_mutex_lock(&q_lock);
  q_bytes -= bytes;
  pthread_mutex_unlock(&q_lock);
  SUB(queued_bytes, bytes);
  SUB(queued_items, n);
  if (outcome == SENT_OK) {
    ADD(exported_requests, 1);
    ADD(exported_items, n);
  } else {
    ADD(failed_items, n);
  }
}

/* Sends one batch until it is delivered, refused, or given up on. */
static void deliver(CURL *h, item *batch) {
  size_t total = 0;
  for (item *it = batch; it; it = it->next) total += it->len;
  uint8_t *body = batch->data;
  if (batch->next) {
    if (joined_cap < total) {  /* kept for the next batches: at most BATCH_MAX */
      size_t cap = (total + ROUND - 1) / ROUND * ROUND;
      free(joined);
      joined_cap = (joined = malloc(cap)) ? cap : 0;
    }
    if (joined == NULL) {
      settle(batch, SENT_DROP);
      return;
    }
    size_t off = 0;
    for (item *it = batch; it; it = it->next) memcpy(joined + off, it->data, it->len), off += it->len;
    body = joined;
  }
  uint8_t *z = NULL;
  size_t zlen = total;
  if (cfg.gzip && gzip(body, total, &z, &zlen) == 0) body = z;
  uint64_t backoff = cfg.retry_initial_ms, started_ms = ss__mono_ms();
  int outcome;
  for (;;) {
    long ra;
    outcome = post(h, batch->logs, body, zlen, &ra);
    if (outcome != SENT_RETRY) break;
    if (ss__mono_ms() - started_ms >= cfg.retry_max_elapsed_ms) {
      fprintf(stderr, "spanshimd: upstream still failing after %llu ms; batch dropped\n",
              (unsigned long long)cfg.retry_max_elapsed_ms);
      outcome = SENT_DROP;
      break;
    }
    ADD(retries, 1);
    uint64_t wait = ra >= 0 ? (uint64_t)ra : backoff / 2 + jitter_rand() % (backoff / 2 + 1);
    if (backoff < cfg.retry_max_ms) backoff = backoff * 2 > cfg.retry_max_ms ? cfg.retry_max_ms : backoff * 2;
    if (pause_ms(wait)) {
      outcome = SENT_DROP;
      break;
    }
  }
  settle(batch, outcome);
  free(z);
}

static void *run(void *arg) {
  (void)arg;
  CURL *h = curl_easy_init();
  struct curl_slist *hdrs = NULL;
  hdrs = curl_slist_append(hdrs, "Content-Type: application/x-protobuf");
  hdrs = curl_slist_append(hdrs, "Expect:");
  if (cfg.gzip) hdrs = curl_slist_append(hdrs, "Content-Encoding: gzip");
  for (size_t i = 0; i < cfg.n_headers; i++) hdrs = curl_slist_append(hdrs, cfg.headers[i]);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)cfg.timeout_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg.timeout_ms);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "spanshimd/0.1 (OTLP/HTTP)");
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (cfg.ca_file[0]) curl_easy_setopt(h, CURLOPT_CAINFO, cfg.ca_file);
  item *batch;
  while ((batch = take_batch()) != NULL) {
    if (past_deadline()) settle(batch, SENT_DROP);
    else deliver(h, batch);
  }
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(h);
  return NULL;
}

/* ---- configuration ---- */

/* One decoded header entry: refused when it could not be sent as a header line (a
 * key with blanks or ':', CR/LF or NUL anywhere) or the table is full. */
static int add_header(void *arg, const char *k, size_t kn, const char *v, size_t vn) {
  ss__upstream_cfg *c = arg;
  if (strlen(k) != kn || strlen(v) != vn || strpbrk(k, " \t:\r\n") || strpbrk(v, "\r\n") ||
      c->n_headers >= SS_UP_MAX_HEADERS)
    return -1;
  size_t n = kn + vn + 3;
  char *h = malloc(n);
  if (h == NULL) return -1;
  snprintf(h, n, "%s: %s", k, v);
  c->headers[c->n_headers++] = h;
  return 0;
}

/* The list rule (commas, first '=', blanks trimmed, percent-decoding) is runtime/kv.h's,
 * shared with the shim's OTEL_EXPORTER_OTLP_HEADERS and OTEL_RESOURCE_ATTRIBUTES. */
int ss__upstream_add_headers(ss__upstream_cfg *c, const char *list) {
  char *copy = strdup(list);
  if (copy == NULL) return -1;
  int bad = ss__kv_parse(copy, add_header, c);
  free(copy);
  return bad ? -1 : 0;
}

/* Base URL + "/v1/traces", without doubling the slash. */
static int join_url(char *out, size_t n, const char *base, const char *path) {
  size_t bl = strlen(base);
  while (bl && base[bl - 1] == '/') bl--;
  return snprintf(out, n, "%.*s%s", (int)bl, base, path) >= (int)n ? -1 : 0;
}

int ss__upstream_config(ss__upstream_cfg *c, const char *flag_endpoint,
                        const char *(*env)(const char *)) {
  const char *base = flag_endpoint ? flag_endpoint : env("OTEL_EXPORTER_OTLP_ENDPOINT");
  const char *tr = flag_endpoint ? NULL : env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const char *lg = flag_endpoint ? NULL : env("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
  if (base && !*base) base = NULL;
  if (tr && !*tr) tr = NULL;
  if (lg && !*lg) lg = NULL;
  if (!base && !tr && !lg) return 0;
  if (tr) snprintf(c->traces_url, sizeof c->traces_url, "%s", tr);
  else if (base && join_url(c->traces_url, sizeof c->traces_url, base, "/v1/traces") != 0)
    return -1;
  if (lg) snprintf(c->logs_url, sizeof c->logs_url, "%s", lg);
  else if (base && join_url(c->logs_url, sizeof c->logs_url, base, "/v1/logs") != 0)
    return -1;
  /* Metrics go where the others go; their own variable alone (set for an app's SDK)
   * does not make spanshimd forward anything. */
  const char *mt = flag_endpoint ? NULL : env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
  if (mt && *mt) snprintf(c->metrics_url, sizeof c->metrics_url, "%s", mt);
  else if (base && join_url(c->metrics_url, sizeof c->metrics_url, base, "/v1/metrics") != 0)
    return -1;
  for (const char *u = c->traces_url[0] ? c->traces_url : c->logs_url; u; u = NULL)
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
      fprintf(stderr, "spanshimd: upstream endpoint must be http:// or https://: %s\n", u);
      return -1;
    }
  const char *h = env("OTEL_EXPORTER_OTLP_HEADERS");
  if (h && ss__upstream_add_headers(c, h) != 0)
    fprintf(stderr, "spanshimd: OTEL_EXPORTER_OTLP_HEADERS: ignoring malformed entries "
            "(want key=value,...)\n");
  const char *t = env("OTEL_EXPORTER_OTLP_TIMEOUT");
  if (t && *t) {
    char *end;
    long ms = strtol(t, &end, 10);
    if (*end || ms <= 0) fprintf(stderr, "spanshimd: bad OTEL_EXPORTER_OTLP_TIMEOUT %s\n", t);
    else c->timeout_ms = (uint64_t)ms;
  }
  const char *ca = env("OTEL_EXPORTER_OTLP_CERTIFICATE");
  if (ca && *ca) snprintf(c->ca_file, sizeof c->ca_file, "%s", ca);
  const char *z = env("OTEL_EXPORTER_OTLP_COMPRESSION");
  if (z && c->gzip < 0) {
    if (strcmp(z, "gzip") == 0) c->gzip = 1;
    else if (strcmp(z, "none") == 0 || !*z) c->gzip = 0;
    else fprintf(stderr, "spanshimd: OTEL_EXPORTER_OTLP_COMPRESSION %s: want gzip or none\n", z);
  }
  return 1;
}

int ss__upstream_start(const ss__upstream_cfg *c) {
  cfg = *c;
  if (cfg.gzip < 0) cfg.gzip = 0;
  if (SS_LAZY_LOAD(curl, "libcurl", curl_sonames) != 0) return -1;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return -1;
  if (pthread_create(&worker, NULL, run, NULL) != 0) return -1;
  started = configured = 1;
  return 0;
}

void ss__upstream_stop(uint64_t grace_ms) {
  if (!started) return;
  pthread_mutex_lock(&q_lock);
  stopping = 1;
  stop_deadline_ms = ss__mono_ms() + grace_ms;
  pthread_cond_broadcast(&q_cond);
  pthread_mutex_unlock(&q_lock);
  pthread_join(worker, NULL);
  started = 0;
  for (item *next; spare; spare = next) next = spare->next, free(spare);
  n_spare = spare_bytes = 0;
  free(joined);
  joined = NULL, joined_cap = 0;
  curl_global_cleanup();
  for (size_t i = 0; i < cfg.n_headers; i++) free(cfg.headers[i]);
}

int ss__upstream_enabled(void) { return configured; }
