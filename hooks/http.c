/* http.c - HTTP/1.x SERVER and CLIENT spans from the bytes an app reads and writes on its
 * stream sockets (DESIGN.md §4, "Request context").
 *
 * Which fds: a stream socket returned by accept/accept4 is a server candidate, one the app
 * connected is a client candidate; nothing else is ever looked at, so a read or write on a
 * file, a pipe or a socket already found not to be HTTP costs one byte-table lookup. The
 * first bytes decide: a server candidate whose first inbound bytes are not an HTTP/1.x
 * request line, or a client candidate whose first outbound bytes are not one, is marked
 * "not HTTP" for the rest of its life (PostgreSQL, Redis, TLS records pass untouched).
 *
 * A connection that is HTTP gets a slot from a fixed table (no malloc): two incremental
 * parsers (runtime/http1.h), one per direction, and a small queue of parked spans for
 * pipelined requests. SERVER: a span starts when a request's first byte is read, is named
 * after its method when its head is complete, takes the request's inbound traceparent as
 * parent, gets its status from the response the app writes, and ends when that response
 * is complete (or the connection closes). CLIENT: when the app writes a request head on a
 * connected socket outside a libcurl transfer, a span starts and, when the whole head is in
 * that write and carries no traceparent, `traceparent` (and `tracestate`) is spliced in
 * after the request line; the app's bytes reach the peer unchanged and in order and the
 * return value counts only the app's bytes. The span ends when the response read back is
 * complete.
 *
 * Request context: while a thread serves one request (from its head until its response
 * is complete) that request's SERVER span is the thread's current context, so the spans
 * it makes meanwhile (SQL, outbound HTTP, connect) are its children and threads it starts
 * inherit it (until the response is complete: their copy of the context expires). A
 * thread seen with requests of two connections in flight at once is an event loop: it
 * never holds a request context for long again. Its context is then the request whose
 * bytes it read last (a request's head or body, or the response to an outbound request
 * made for it), until it next waits for events (epoll_wait, poll, select and their
 * variants) or that request ends: what one callback does for the request it was woken
 * for is that request's (nginx reads a request and writes it to an upstream connection
 * in one callback). A connection connected under such a context carries its first
 * request for that request, whenever that is written (a non-blocking connect completes
 * in a later callback); later requests on it (a kept-alive upstream connection) belong
 * to the context they are written in. Outside a callback nothing is guessed.
 * Pipelined requests (several read at once) are served in order: the oldest one not yet
 * answered is the request their bytes are for, and each next one is the context from the
 * answer to the one before (an event loop's callback context, or a thread's own).
 *
 * A proxy forwards its caller's traceparent: a request written with the traceparent of
 * the very request being served (same trace-id and parent-id as it came in) gets the
 * CLIENT span as its parent instead, the parent-id rewritten in place (same length:
 * the app's framing and byte counts are unchanged), so the hop nests as a hop. A
 * traceparent the app made itself (an SDK) is kept and is the CLIENT span's parent.
 *
 * Concurrency: a slot is used by one thread at a time (an atomic flag); a thread that
 * finds it busy (two threads on one socket, a signal handler's I/O) lets those bytes
 * pass unseen, after which the parser may find the stream no longer follows and give the
 * connection up. A close that finds the slot busy leaves the ending of its spans to the
 * holder. Losses are counted (ss__dropped). */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "hooks/hooks.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/hostport.h"
#include "runtime/http1.h"
#include "hooks/hook.h"
#include "runtime/sys.h"

SS_REAL(sendmsg)
SS_REAL(getpeername)

#define FD_MAX SS_HTTP_FD_MAX
/* Roles; hooks.h's inline ss__http_watched relies on 1..3 being the watched ones. */
enum { R_NONE = 0, R_SERVER = 1, R_CLIENT = 2, R_TRACKED = 3, R_NOT_HTTP = 4 };
/* Per fd, for plaintext on the socket itself [0] and through a TLS library [1]. */
_Atomic uint8_t ss__http_roles[2][SS_HTTP_FD_MAX];
#define fd_role ss__http_roles
static uint16_t fd_slot[2][FD_MAX]; /* slot index while R_TRACKED */

#define SLOTS 128
#define PIPE 8
#define REC_BYTES 2048
#define INJ_MAX 640 /* "traceparent: ...\r\n" + "tracestate: <512>\r\n" */

typedef struct msg {
  uint64_t rec[REC_BYTES / 8]; /* the parked span */
  uint8_t live;                /* rec holds a parked span */
  uint8_t status_set;          /* http.response.status_code added */
  uint8_t error;               /* the status makes it an error */
  uint8_t ctx_pushed;          /* the reading thread made it its context */
  void *ctx_owner;             /* that thread (THIS_THREAD) */
  ss__ctx ctx;                 /* the span's own context (sampled or not), for injection */
  _Atomic uint32_t gen;        /* bumped when the span ends: copies of ctx expire */
  uint16_t ts_len;             /* SERVER: the request's tracestate, passed on by requests */
  char tracestate[512];        /* the thread makes while serving it */
  uint8_t in_tp;               /* SERVER: the request came with a traceparent, whose */
  uint8_t in_parent[8];        /* parent-id is this (a proxy forwarding it: see below) */
  const struct msg *req;       /* CLIENT: the request it was made for (req_gen while that */
  uint32_t req_gen;            /* request is in flight), or NULL */
} msg;

typedef struct conn {
  _Atomic int busy; /* 1 while a thread works on this slot */
  _Atomic int closed_meanwhile; /* the fd was closed while busy: the holder ends it */
  int fd;           /* -1: free */
  uint8_t server;   /* SERVER side (accepted) or CLIENT side */
  uint8_t tls;      /* plaintext seen through a TLS library: https */
  uint8_t in_idle;  /* the inbound parser is between messages */
  uint8_t out_idle; /* the outbound parser is between messages */
  uint8_t wrote_req;   /* client: a request head was written on it */
  uint8_t out_started; /* client: the current outbound request's span was started (1), or
                          could not be (2: the queue was full) */
  ss__h1 in, out;   /* what the app reads / what it writes */
  msg q[PIPE];      /* spans in flight, oldest first */
  uint8_t q_head, q_n;
  uint64_t in_start_ns; /* when the current inbound message's first byte was read */
  uint32_t hs_us;       /* TLS handshake time, for the connection's first span (0: none) */
  uint32_t heads;       /* request or response heads seen */
  uint8_t looked_http;  /* its first bytes were a method and a space */
  uint8_t resync;       /* server: waiting for a request line after the parser gave up */
  uint8_t rs_match;     /* bytes of "\r\n\r\n" matched meanwhile */
  uint8_t rs_mid;       /* the next bytes to look at are those the parser gave up on */
  char inj[INJ_MAX];    /* header lines still to splice into the outbound stream */
  ss__splice sp;        /* what of inj is still to go, and where (sp.buf == inj) */
  int family, peer_port;
  char peer[SS_ADDRSTR];
} conn;

static conn conns[SLOTS];
static _Atomic uint32_t hs_us[FD_MAX]; /* the last TLS handshake's duration on the fd, µs */
/* Which slots are in use, apart from the slots themselves: finding a free one, exiting and
 * forking touch these 128 bytes, not a page of every slot. */
static _Atomic uint8_t slot_used[SLOTS];
/* Set once a slot was ever taken or an accept span held (hooks.h): a process that never
 * spoke HTTP reads not even slot_used when it exits or forks (a page it never touched
 * costs a fault to read). */
_Atomic int ss__http_used;
static _Atomic uint64_t injections_skipped;
/* Set once any fd got a role or a handshake time (before the store): until then a close
 * has no entry of fd_role or hs_us to clear, and reads none (in a fork child that never
 * spoke HTTP, three pages nobody touched: a fault each, even to read). */
static _Atomic int fds_marked;

static inline void mark_fds(void) {
  if (!atomic_load_explicit(&fds_marked, memory_order_relaxed)) atomic_store(&fds_marked, 1);
}

/* The thread's request context: the slot and message whose SERVER span it pushed. */
static __thread conn *cur_conn __attribute__((tls_model("initial-exec")));
static __thread int cur_msg __attribute__((tls_model("initial-exec")));
static __thread int cur_token __attribute__((tls_model("initial-exec")));
static __thread uint8_t event_loop __attribute__((tls_model("initial-exec")));
#define THIS_THREAD ((void *)&cur_conn) /* a per-thread address, to name the pusher */
/* An event loop's callback context (see the top): pushed at loop_token with span id
 * loop_sid; loop_token -1 when none. */
static __thread int loop_token __attribute__((tls_model("initial-exec"))) = -1;
static __thread uint8_t loop_sid[8] __attribute__((tls_model("initial-exec")));

/* ---- fd roles ---- */
static void owner_set(int fd, const struct msg *r, uint32_t gen);
static const struct msg *request_of(const ss__ctx *cur, uint32_t *gen);
static int loop_ours(void);

void ss__http_fd_role(int fd, int server) {
  if ((unsigned)fd >= FD_MAX || !ss__active(SS_HOOK_HTTP)) return;
  mark_fds();
  atomic_store_explicit(&fd_role[0][fd], server ? R_SERVER : R_CLIENT, memory_order_relaxed);
  /* Connected in an event loop's callback (the connect span is on top of the context;
   * the callback's lies under it): the connection's first request is that request's.
   * So too while the thread serves one request as its context: it may turn out to be an
   * event loop (nginx's worker reading a second request) before a non-blocking connect
   * completes and the request is written, in a callback of another context. */
  uint32_t gen;
  const struct msg *r;
  if (server) return;
  if (loop_token >= 0 && loop_ours() &&
      (r = request_of(&ss__self.ctx[loop_token], &gen)) != NULL) {
    owner_set(fd, r, gen);
  } else if (cur_conn != NULL) {
    r = &cur_conn->q[cur_msg];
    if (r->ctx_pushed && r->ctx_owner == THIS_THREAD) owner_set(fd, r, r->ctx.gen);
  }
}

static inline int role_of(int t, int fd) {
  return (unsigned)fd < FD_MAX ? atomic_load_explicit(&fd_role[t][fd], memory_order_relaxed) : 0;
}

/* ---- accept spans held until the connection shows what it carries ----
 * A connection that turns out to carry HTTP gets SERVER spans per request; its accept
 * span would only be a one-span trace of its own, so it is dropped (deliberately, not
 * counted as a loss). Any other connection's accept span is committed when that is
 * known (first bytes, or close). Holding is best effort: with every slot busy the span
 * is committed at once. */
#define HOLDS 64
typedef struct hold {
  _Atomic int key; /* 0 free, fd + 1 held, -1 busy */
  uint64_t end_ns;
  uint64_t rec[1024 / 8];
} hold;
static hold holds[HOLDS];
static _Atomic int holds_n;

int ss__http_hold_accept(int fd, ss__sb *b, uint64_t end_ns) {
  if ((unsigned)fd >= FD_MAX || !b->recording) return 0;
  for (int i = 0; i < HOLDS; i++) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&holds[i].key, &expected, -1)) continue;
    if (ss__span_park(b, holds[i].rec, sizeof holds[i].rec) == 0) {
      atomic_store(&holds[i].key, 0);
      return 0;
    }
    holds[i].end_ns = end_ns;
    if (!atomic_load_explicit(&ss__http_used, memory_order_relaxed)) atomic_store(&ss__http_used, 1);
    atomic_fetch_add(&holds_n, 1);
    atomic_store_explicit(&holds[i].key, fd + 1, memory_order_release);
    return 1;
  }
  return 0;
}

/* The held accept span of fd: committed (keep) or forgotten. */
static void hold_settle(int fd, int keep) {
  if (atomic_load_explicit(&holds_n, memory_order_relaxed) == 0) return;
  for (int i = 0; i < HOLDS; i++) {
    int expected = fd + 1;
    if (!atomic_compare_exchange_strong(&holds[i].key, &expected, -1)) continue;
    if (keep) ss__rec_finish(holds[i].rec, holds[i].end_ns, 0);
    atomic_fetch_sub(&holds_n, 1);
    atomic_store(&holds[i].key, 0);
  }
}

static inline void set_role(int t, int fd, int role) {
  if (role != R_NONE) mark_fds();
  atomic_store_explicit(&fd_role[t][fd], (uint8_t)role, memory_order_release);
  if (role == R_NOT_HTTP) hold_settle(fd, 1);
}


/* ---- slots ---- */
/* The slot no longer stands for any fd (its holder still gives it back). */
static void slot_release(conn *c) {
  c->fd = -1;
  atomic_store_explicit(&slot_used[c - conns], 0, memory_order_release);
}

static conn *slot_new(int t, int fd, int server) {
  for (int i = 0; i < SLOTS; i++) {
    conn *c = &conns[i];
    int expected = 0;
    if (atomic_load_explicit(&slot_used[i], memory_order_acquire) ||
        !atomic_compare_exchange_strong(&c->busy, &expected, 1))
      continue;
    if (atomic_load(&slot_used[i])) { /* taken meanwhile */
      atomic_store(&c->busy, 0);
      continue;
    }
    if (!atomic_load_explicit(&ss__http_used, memory_order_relaxed)) atomic_store(&ss__http_used, 1);
    atomic_store(&slot_used[i], 1);
    c->fd = fd;
    c->server = (uint8_t)server;
    c->tls = (uint8_t)t;
    c->hs_us = t ? atomic_load_explicit(&hs_us[fd], memory_order_relaxed) : 0;
    c->in_idle = c->out_idle = 1;
    c->out_started = c->wrote_req = 0;
    c->heads = 0;
    c->looked_http = c->resync = c->rs_match = c->rs_mid = 0;
    atomic_store(&c->closed_meanwhile, 0);
    ss__h1_init(&c->in, server ? SS_H1_REQUEST : SS_H1_RESPONSE);
    ss__h1_init(&c->out, server ? SS_H1_RESPONSE : SS_H1_REQUEST);
    c->q_head = c->q_n = 0;
    c->sp = (ss__splice){.buf = c->inj};
    c->family = 0;
    c->peer_port = -1;
    c->peer[0] = '\0';
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ss__peer p;
    if (real_getpeername()(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        ss__peer_format((struct sockaddr *)&ss, sl, &p) == 0) {
      c->family = p.family;
      c->peer_port = p.port;
      memcpy(c->peer, p.addr, sizeof c->peer);
    }
    fd_slot[t][fd] = (uint16_t)i;
    set_role(t, fd, R_TRACKED);
    return c; /* busy: the caller releases */
  }
  ss__dropped(SS_DROP_TABLE_FULL);
  set_role(t, fd, R_NOT_HTTP);
  return NULL;
}

/* The fd's slot, taken for this thread; NULL when busy elsewhere (tracing abandoned). */
static conn *slot_take(int t, int fd) {
  conn *c = &conns[fd_slot[t][fd]];
  int expected = 0;
  if (!atomic_compare_exchange_strong_explicit(&c->busy, &expected, 1, memory_order_acquire,
                                               memory_order_relaxed))
    return NULL;
  if (c->fd != fd || c->tls != t) {
    atomic_store_explicit(&c->busy, 0, memory_order_release);
    return NULL;
  }
  return c;
}

static void end_all(conn *c);

/* Gives the slot back; a close that found it busy (another thread mid-feed, or a signal
 * handler interrupting this one) left the ending of its spans to us. */
static void slot_give(conn *c) {
  if (atomic_exchange_explicit(&c->closed_meanwhile, 0, memory_order_acq_rel)) {
    end_all(c);
    slot_release(c);
  }
  atomic_store_explicit(&c->busy, 0, memory_order_release);
}

/* ---- the queue of spans in flight ---- */
static msg *q_at(conn *c, int i) {
  return &c->q[(c->q_head + i) % PIPE];
}

static msg *q_oldest(conn *c) {
  return c->q_n ? q_at(c, 0) : NULL;
}

static msg *q_newest(conn *c) {
  return c->q_n ? q_at(c, c->q_n - 1) : NULL;
}

/* Drops this thread's request context if it is m's (a context pushed by another thread
 * is left to that thread, which drops it at its next request). */
static void ctx_release(conn *c, msg *m) {
  if (m->ctx_pushed && m->ctx_owner == THIS_THREAD && cur_conn == c && &c->q[cur_msg] == m) {
    ss__ctx_pop(cur_token);
    cur_conn = NULL;
  }
  m->ctx_pushed = 0;
}

static void q_finish_oldest(conn *c) {
  msg *m = q_oldest(c);
  if (m == NULL) return;
  ctx_release(c, m);
  atomic_fetch_add_explicit(&m->gen, 1, memory_order_release); /* inherited copies expire */
  if (m->live) ss__rec_finish(m->rec, ss__now_ns(), m->error ? SS_STATUS_ERROR | SS_STATUS_NO_STACK : 0);
  m->live = 0;
  c->q_head = (uint8_t)((c->q_head + 1) % PIPE);
  c->q_n--;
}

static void end_all(conn *c) {
  while (c->q_n) q_finish_oldest(c);
}

/* ---- an event loop's callback context, and connections connected in one (see the top) ---- */
static int req_live(const msg *r, uint32_t gen) {
  return r != NULL && atomic_load_explicit(&r->gen, memory_order_acquire) == gen;
}

/* The request in flight the current context stands for (its SERVER span's context, pushed
 * here or inherited), with its generation; NULL when it stands for none. */
static const msg *request_of(const ss__ctx *cur, uint32_t *gen) {
  if (!cur->valid || cur->live == NULL ||
      atomic_load_explicit(cur->live, memory_order_acquire) != cur->gen)
    return NULL;
  const char *p = (const char *)cur->live, *base = (const char *)conns;
  if (p < base || p >= (const char *)(conns + SLOTS)) return NULL;
  const conn *c = &conns[(size_t)(p - base) / sizeof(conn)];
  size_t off = (size_t)(p - (const char *)c) - offsetof(conn, q);
  if (!c->server || off % sizeof(msg) != offsetof(msg, gen)) return NULL;
  *gen = cur->gen;
  return &c->q[off / sizeof(msg)];
}

static const msg *serving(uint32_t *gen) {
  ss__ctx cur;
  return ss__ctx_current(&cur) ? request_of(&cur, gen) : NULL;
}

/* 1 while the callback context is this thread's stack entry at loop_token. */
static int loop_ours(void) {
  return loop_token >= 0 && loop_token < SS_CTX_DEPTH && ss__ctx_depth() > loop_token &&
         memcmp(ss__self.ctx[loop_token].span_id, loop_sid, 8) == 0;
}

/* Request r (in flight) becomes this event loop's callback context; not while the
 * current one lies under contexts pushed since (a call the callback is inside of). */
static void loop_set(const msg *r) {
  if (!loop_ours()) {
    loop_token = ss__ctx_push(&r->ctx);
  } else if (ss__ctx_depth() != loop_token + 1 || !ss__ctx_replace(loop_token, &r->ctx)) {
    return;
  }
  memcpy(loop_sid, r->ctx.span_id, 8);
}

/* The thread is about to wait for events: the callback is over. A wait inside a call
 * made under the callback's context (libcurl's poll) leaves it. */
__attribute__((noinline, cold)) static void loop_wait(void) {
  if (loop_ours()) {
    if (ss__ctx_depth() != loop_token + 1) return;
    ss__ctx_pop(loop_token);
  }
  loop_token = -1;
}

#define OWNERS 64
typedef struct owner {
  _Atomic int key; /* 0 free, fd + 1 set, -1 busy */
  const msg *req;
  uint32_t gen;
} owner;
static owner owners[OWNERS];
static _Atomic int owners_n;

/* fd was connected in a callback for request r: its first request is r's. Best effort:
 * with every entry holding a request still in flight, nothing is kept. */
static void owner_set(int fd, const msg *r, uint32_t gen) {
  for (int i = 0; i < OWNERS; i++) {
    int k = atomic_load(&owners[i].key);
    if (k < 0 || (k > 0 && req_live(owners[i].req, owners[i].gen))) continue;
    if (!atomic_compare_exchange_strong(&owners[i].key, &k, -1)) continue;
    if (k == 0) atomic_fetch_add(&owners_n, 1);
    owners[i].req = r;
    owners[i].gen = gen;
    atomic_store_explicit(&owners[i].key, fd + 1, memory_order_release);
    return;
  }
}

/* The request fd's connect was made for, if still in flight (and forgets it). */
static const msg *owner_take(int fd, uint32_t *gen) {
  const msg *r = NULL;
  for (int i = 0; i < OWNERS && atomic_load_explicit(&owners_n, memory_order_relaxed) > 0; i++) {
    int k = fd + 1;
    if (!atomic_compare_exchange_strong(&owners[i].key, &k, -1)) continue;
    if (req_live(owners[i].req, owners[i].gen)) {
      r = owners[i].req;
      *gen = owners[i].gen;
    }
    atomic_fetch_sub(&owners_n, 1);
    atomic_store(&owners[i].key, 0);
  }
  return r;
}

/* Parks b as the newest message; 0, or -1 when the queue or the record is full. */
static int q_push(conn *c, ss__sb *b) {
  if (c->q_n == PIPE) {
    ss__span_pop(b);
    if (b->recording) ss__dropped(SS_DROP_QUEUE);
    return -1;
  }
  msg *m = &c->q[(c->q_head + c->q_n) % PIPE];
  ss__span_pop(b);
  m->live = b->recording && ss__span_park(b, m->rec, sizeof m->rec - 512) > 0;
  if (b->recording && !m->live) ss__dropped(SS_DROP_TOO_BIG);
  m->status_set = m->error = m->ctx_pushed = m->in_tp = 0;
  m->ctx_owner = NULL;
  m->req = NULL;
  if (c->hs_us && m->live) {
    ss__rec_add_int(m->rec, sizeof m->rec, "spanshim.tls.handshake_us", c->hs_us);
    c->hs_us = 0;
  }
  ss__span_ctx(b, &m->ctx);
  m->ts_len = 0;
  m->ctx.live = &m->gen;
  m->ctx.gen = atomic_load(&m->gen);
  c->q_n++;
  return 0;
}

static void rec_str(msg *m, const char *key, const char *s, size_t n) {
  if (m->live && n > 0) ss__rec_add_str(m->rec, sizeof m->rec, key, s, n);
}

static void rec_int(msg *m, const char *key, int64_t v) {
  if (m->live) ss__rec_add_int(m->rec, sizeof m->rec, key, v);
}

/* ---- semconv helpers ---- */
static const char *const methods[] = {"GET",     "HEAD",  "POST",    "PUT",  "DELETE",
                                      "CONNECT", "OPTIONS", "TRACE", "PATCH"};

/* The span name and http.request.method for a method token: a static string; NULL for a
 * method semconv does not know (then name "HTTP", method "_OTHER"). */
static const char *known_method(const char *tok, size_t n) {
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (strlen(methods[i]) == n && memcmp(methods[i], tok, n) == 0) return methods[i];
  return NULL;
}

static void add_method(ss__sb *b, const char *tok, size_t n) {
  const char *m = known_method(tok, n);
  ss__span_str(b, "http.request.method", m ? m : "_OTHER", (size_t)-1);
  if (m == NULL) ss__span_str(b, "http.request.method_original", tok, n);
}

/* server.address and server.port from the Host header (runtime/hostport.h's rule), the
 * scheme's port when it names none; 0, or -1 when there is no usable Host. */
static int host_of(const conn *c, const ss__h1_head *h, ss__hostport *hp, int *port) {
  if (h->host[0] == '\0' || ss__hostport_split(h->host, strlen(h->host), hp) != 0) return -1;
  long p = ss__hostport_port(hp);
  *port = p >= 0 && p <= 65535 ? (int)p : (c->tls ? 443 : 80);
  return 0;
}

static void add_peer(ss__sb *b, const conn *c) {
  if (c->peer[0] == '\0') return;
  ss__span_str(b, "network.peer.address", c->peer, (size_t)-1);
  if (c->peer_port >= 0) ss__span_int(b, "network.peer.port", c->peer_port);
}

static void add_common(ss__sb *b, const conn *c, const ss__h1_head *h) {
  ss__hostport hp;
  int port;
  if (host_of(c, h, &hp, &port) == 0) {
    ss__span_str(b, "server.address", hp.host, hp.host_len);
    ss__span_int(b, "server.port", port);
  }
  ss__span_str(b, "network.protocol.version", h->version_minor ? "1.1" : "1.0", 3);
  if (h->user_agent[0]) ss__span_str(b, "user_agent.original", h->user_agent, (size_t)-1);
}

/* http.response.status_code; from `errors_from` on, the span is an error whose
 * error.type is the status code (semconv: 5xx for SERVER spans, 4xx too for CLIENT). */
static void set_status(msg *m, int status, int errors_from) {
  m->status_set = 1;
  rec_int(m, "http.response.status_code", status);
  if (status >= errors_from) {
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), 0};
    rec_str(m, "error.type", code, 3);
    m->error = 1;
  }
}

/* ---- SERVER ---- */
/* Request m of c becomes this thread's request context (see the top). */
static void ctx_take(conn *c, msg *m) {
  cur_token = ss__ctx_push(&m->ctx);
  m->ctx_pushed = 1;
  m->ctx_owner = THIS_THREAD;
  cur_conn = c;
  cur_msg = (int)(m - c->q);
}

static void server_head(conn *c) {
  const ss__h1_head *h = &c->in.head;
  size_t mlen = strlen(h->method);
  const char *name = known_method(h->method, mlen);
  /* This thread's previous request context: still in flight here means an event loop. */
  /* Pipelined requests on one connection are not interleaving: the first keeps the
   * context until its response is done, then the next one (feed_out). */
  if (cur_conn != NULL && cur_conn != c) {
    msg *other = &cur_conn->q[cur_msg];
    if (other->ctx_pushed && other->ctx_owner == THIS_THREAD) {
      event_loop = 1;
      other->ctx_pushed = 0;
    }
    ss__ctx_pop(cur_token);
    cur_conn = NULL;
  }
  /* The parent: the request's traceparent, else the process root, else none — never
   * whatever this thread is doing (another request's context). */
  ss__ctx parent = {0};
  int token_adopted = h->has_traceparent && (ss__cfg.propagators & SS_PROP_TRACECONTEXT) &&
                      ss__traceparent_parse(h->traceparent, strlen(h->traceparent), &parent) == 0;
  if (!token_adopted) ss__ctx_root(&parent);
  else if (h->tracestate[0]) { /* the SERVER span is in the caller's tracestate */
    parent.ts = h->tracestate;
    parent.ts_len = (uint16_t)strlen(h->tracestate);
  }
  int token = ss__ctx_push(&parent);
  ss__sb b;
  ss__span_start_at(&b, name ? name : "HTTP", SS_KIND_SERVER, NULL);
  ss__ctx_pop(token);
  if (c->heads++ == 0) hold_settle(c->fd, 0); /* HTTP: its requests stand for the accept */
  ss__span_set_start(&b, c->in_start_ns);
  add_method(&b, h->method, mlen);
  const char *q = memchr(h->target, '?', strlen(h->target));
  size_t tlen = strlen(h->target);
  if (h->target[0] == '/' || h->target[0] == '*') {
    ss__span_str(&b, "url.path", h->target, q ? (size_t)(q - h->target) : tlen);
    if (q) ss__span_str(&b, "url.query", q + 1, tlen - (size_t)(q - h->target) - 1);
  } else {
    ss__span_str(&b, "url.full", h->target, tlen);
  }
  ss__span_str(&b, "url.scheme", c->tls ? "https" : "http", (size_t)-1);
  add_common(&b, c, h);
  if (c->peer[0] && c->family != AF_UNIX) ss__span_str(&b, "client.address", c->peer, (size_t)-1);
  add_peer(&b, c);
  ss__h1_expect_response_to(&c->out, h->method);
  if (q_push(c, &b) != 0) return;
  if (token_adopted) {
    msg *m = q_newest(c);
    m->in_tp = 1;
    memcpy(m->in_parent, parent.span_id, 8);
  }
  if (token_adopted && h->tracestate[0]) { /* W3C: passed on unchanged with our parent id */
    msg *m = q_newest(c);
    size_t n = strlen(h->tracestate);
    memcpy(m->tracestate, h->tracestate, n);
    m->ts_len = (uint16_t)n;
    m->ctx.ts = m->tracestate; /* children of the request carry it too */
    m->ctx.ts_len = m->ts_len;
  }
  /* The request context: one request per thread at a time, never guessed. */
  if (!event_loop && c->q_n == 1) ctx_take(c, q_newest(c));
}

static void server_response_head(conn *c) {
  const ss__h1_head *h = &c->out.head;
  msg *m = q_oldest(c);
  if (m == NULL || (h->status < 200 && h->status != 101) || m->status_set) return; /* 1xx */
  set_status(m, h->status, 500);
}

/* ---- CLIENT ---- */
static void client_attrs(conn *c, msg *m, const ss__h1_head *h) {
  char url[1024];
  size_t n = 0, tl = strlen(h->target);
  const char *scheme = c->tls ? "https://" : "http://";
  if (h->target[0] == '/') {
    const char *host = h->host;
    char hp[SS_ADDRSTR + 16];
    if (host[0] == '\0' && c->peer[0] && c->family != AF_UNIX) {
      size_t pl = strlen(c->peer), o = 0;
      int v6 = c->family == AF_INET6;
      if (v6) hp[o++] = '[';
      memcpy(hp + o, c->peer, pl);
      o += pl;
      if (v6) hp[o++] = ']';
      if (c->peer_port >= 0) {
        char d[8];
        int k = 0;
        for (int v = c->peer_port; k == 0 || v > 0; v /= 10) d[k++] = (char)('0' + v % 10);
        hp[o++] = ':';
        while (k > 0) hp[o++] = d[--k];
      }
      hp[o] = '\0';
      host = hp;
    }
    size_t sl = strlen(scheme), hl = strlen(host);
    if (sl + hl + tl < sizeof url) {
      memcpy(url, scheme, sl);
      memcpy(url + sl, host, hl);
      memcpy(url + sl + hl, h->target, tl);
      n = sl + hl + tl;
    }
  } else if (tl < sizeof url) {
    memcpy(url, h->target, tl);
    n = tl;
  }
  rec_str(m, "url.full", url, n);
  ss__hostport hp;
  int port;
  if (host_of(c, h, &hp, &port) == 0) {
    rec_str(m, "server.address", hp.host, hp.host_len);
    rec_int(m, "server.port", port);
  } else if (c->peer[0]) {
    rec_str(m, "server.address", c->peer, strlen(c->peer));
    if (c->peer_port >= 0) rec_int(m, "server.port", c->peer_port);
  }
  rec_str(m, "network.protocol.version", h->version_minor ? "1.1" : "1.0", 3);
  if (c->peer[0]) {
    rec_str(m, "network.peer.address", c->peer, strlen(c->peer));
    if (c->peer_port >= 0) rec_int(m, "network.peer.port", c->peer_port);
  }
  if (h->user_agent[0]) rec_str(m, "user_agent.original", h->user_agent, strlen(h->user_agent));
}

/* Starts a CLIENT span for a request whose method token is tok[0..n); parks it. */
static msg *client_start(conn *c, const char *tok, size_t n) {
  const char *name = known_method(tok, n);
  ss__sb b;
  ss__span_start_at(&b, name ? name : "HTTP", SS_KIND_CLIENT, NULL);
  add_method(&b, tok, n);
  if (q_push(c, &b) != 0) return NULL;
  return q_newest(c);
}

static void client_response_head(conn *c) {
  const ss__h1_head *h = &c->in.head;
  msg *m = q_oldest(c);
  if (m == NULL || (h->status < 200 && h->status != 101) || m->status_set) return;
  set_status(m, h->status, 400);
}

/* ---- feeding ---- */
/* The stream stopped being HTTP/1.x we can follow (not HTTP after all, a head over the
 * bound, a tunnel): its spans end, the fd is left alone from now on, and a message that
 * was under way on a connection already seen to carry HTTP is counted as lost. The
 * caller holds the slot and gives it back. */
static void abandon(conn *c, int mid_message) {
  if (c->fd < 0) return;
  end_all(c);
  int http = c->heads > 0 || c->looked_http;
  /* A server's request in progress has no span yet: lost, counted. A client's has one,
   * which ends now (with what is known of it). */
  if (mid_message && http && c->server) ss__dropped(SS_DROP_TOO_BIG);
  if (http && c->server) { /* wait for the next request line (below) */
    c->resync = 1;
    c->rs_mid = 1;
    return;
  }
  set_role(c->tls, c->fd, R_NOT_HTTP);
  slot_release(c);
}

/* A server connection whose parser gave up (a head over the bound) starts again, both
 * directions afresh, at a request line that begins a read or follows the blank line that
 * ends the head it gave up on. Returns how many bytes of p[0..n) to skip first, or n
 * while still waiting. */
static size_t resync(conn *c, const char *p, size_t n) {
  static const char end[] = "\r\n\r\n";
  size_t i = 0;
  int at_start = !c->rs_mid; /* p begins a read (not bytes the parser just gave up on) */
  c->rs_mid = 0;
  if (at_start && c->rs_match == 0 && ss__h1_looks_like_request(p, n) == 1) goto found;
  for (; i < n; i++) {
    c->rs_match = p[i] == end[c->rs_match] ? c->rs_match + 1 : (p[i] == '\r' ? 1 : 0);
    if (c->rs_match == 4) {
      c->rs_match = 0;
      if (ss__h1_looks_like_request(p + i + 1, n - i - 1) == 1) {
        i++;
        goto found;
      }
    }
  }
  return n;
found:
  ss__h1_init(&c->in, SS_H1_REQUEST);
  ss__h1_init(&c->out, SS_H1_RESPONSE);
  c->in_idle = c->out_idle = 1;
  c->resync = 0;
  c->rs_match = 0;
  return i;
}

/* The stream stops being HTTP (101 Switching Protocols, a tunnel after CONNECT): from
 * here on it is left alone, never parsed nor spliced into. The caller gives the slot back. */
static void stop(conn *c) {
  if (c->fd < 0) return;
  end_all(c);
  set_role(c->tls, c->fd, R_NOT_HTTP);
  slot_release(c);
}

/* Runs the app's inbound bytes through the slot's parser. */
static void feed_in(conn *c, const char *p, size_t n) {
  while (n > 0 && c->fd >= 0) {
    if (c->resync) {
      size_t skip = resync(c, p, n);
      p += skip;
      n -= skip;
      if (n == 0) return;
    }
    if (c->in_idle) {
      c->in_idle = 0;
      c->in_start_ns = ss__now_ns();
    }
    int ev;
    size_t used = ss__h1_feed(&c->in, p, n, &ev);
    if (ev & SS_H1_BAD) { /* the parser took all n: look for a new start from p again */
      abandon(c, !c->in_idle);
      continue;
    }
    p += used;
    n -= used;
    if (ev & SS_H1_HEAD) {
      if (c->server) server_head(c);
      else client_response_head(c);
    }
    if (ev & SS_H1_END) {
      c->in_idle = 1;
      if (!c->server && (c->in.head.status >= 200 || c->in.head.status == 101))
        q_finish_oldest(c);
      if (!c->server && c->in.head.tunnel) stop(c);
    }
  }
}

/* Runs the app's outbound bytes (those the kernel took) through the slot's parser. */
static void feed_out(conn *c, const char *p, size_t n) {
  while (n > 0 && !c->resync && c->fd >= 0) {
    int ev;
    size_t used = ss__h1_feed(&c->out, p, n, &ev);
    c->out_idle = 0;
    p += used;
    n -= used;
    if (ev & SS_H1_BAD) {
      abandon(c, !c->out_idle);
      return;
    }
    if (ev & SS_H1_HEAD) {
      if (c->server) {
        server_response_head(c);
      } else {
        const ss__h1_head *h = &c->out.head;
        msg *m = c->out_started == 1 ? q_newest(c)
                 : c->out_started == 2 ? NULL
                                       : client_start(c, h->method, strlen(h->method));
        c->out_started = m ? 1 : 2;
        if (m) client_attrs(c, m, h);
        ss__h1_expect_response_to(&c->in, h->method);
      }
    }
    if (ev & SS_H1_END) {
      c->out_idle = 1;
      c->out_started = 0;
      if (c->server && c->out.head.status >= 200) {
        const msg *done = q_oldest(c);
        int served = done && done->ctx_pushed && done->ctx_owner == THIS_THREAD;
        q_finish_oldest(c);
        /* A server goes on to the connection's next request, read already
         * (pipelined): what it does next is for that request (nginx takes it up before
         * it waits for events again; a thread per connection at once, when it is the
         * thread that served this one: not a pool's worker handed requests others read). */
        msg *next = q_oldest(c);
        if (next && (next->live || next->ctx.valid)) {
          if (event_loop) loop_set(next);
          else if (served && cur_conn == NULL) ctx_take(c, next);
        }
      }
      if (c->server && c->out.head.tunnel) stop(c);
    }
  }
}

static void feed_iov(conn *c, int out, const struct iovec *iov, size_t cnt, size_t total) {
  for (size_t i = 0; i < cnt && total > 0 && c->fd >= 0; i++) {
    size_t n = iov[i].iov_len < total ? iov[i].iov_len : total;
    if (n && iov[i].iov_base) (out ? feed_out : feed_in)(c, iov[i].iov_base, n);
    total -= n;
  }
}

/* Body bytes the app sent from a file (sendfile): framing only, the content is not seen. */
static void skip_out(conn *c, size_t n) {
  static const char zeros[4096];
  while (n > 0 && c->fd >= 0) {
    size_t k = n < sizeof zeros ? n : sizeof zeros;
    feed_out(c, zeros, k);
    n -= k;
  }
}

/* ---- the hooks' entry points ---- */
/* The fd's slot, made on its first I/O when what is seen starts an HTTP/1.x request in the
 * direction its role expects; NULL when the fd is not (or no longer) traced. Plaintext
 * through TLS (t == 1) has no role yet: the first direction decides (a server reads the
 * first request, a client writes it). */
static conn *conn_for(int t, int fd, int role, int outbound, const char *first, size_t n) {
  if (role == R_TRACKED) return slot_take(t, fd);
  if (!ss__active(SS_HOOK_HTTP) || (t && !ss__active(SS_HOOK_TLS))) return NULL;
  if (t && role == R_NONE) role = outbound ? R_CLIENT : R_SERVER;
  if ((role == R_SERVER) == outbound) { /* a server speaking first, a client reading first */
    set_role(t, fd, R_NOT_HTTP);
    return NULL;
  }
  if (role == R_CLIENT && ss__libcurl_busy()) { /* libcurl makes its own spans */
    set_role(t, fd, R_NOT_HTTP);
    return NULL;
  }
  int looks = ss__h1_looks_like_request(first, n);
  if (looks == 0) {
    if (!t && n > 0 && first[0] == 0x16 && ss__active(SS_HOOK_TLS)) {
      /* A TLS handshake: its plaintext (t == 1) settles the held accept span. */
      mark_fds();
      atomic_store_explicit(&fd_role[0][fd], R_NOT_HTTP, memory_order_release);
      return NULL;
    }
    set_role(t, fd, R_NOT_HTTP);
    return NULL;
  }
  conn *c = slot_new(t, fd, role == R_SERVER);
  if (c) c->looked_http = looks == 1;
  return c;
}

/* An event loop read c's bytes: the request they are for is its callback's context (a
 * request's head or body; the response to a request made for one). */
static void loop_read(conn *c) {
  const msg *m = q_oldest(c);
  if (c->server) {
    if (m->live || m->ctx.valid) loop_set(m);
  } else if (req_live(m->req, m->req_gen)) {
    loop_set(m->req);
  }
}

/* rc bytes moved in direction `out` through iov. */
static void observe(int t, int fd, int out, const struct iovec *iov, size_t cnt, ssize_t rc) {
  int role = role_of(t, fd);
  if (rc <= 0 || role == R_NOT_HTTP || (role == R_NONE && !t) || cnt == 0) return;
  int saved = errno;
  size_t n0 = iov[0].iov_len < (size_t)rc ? iov[0].iov_len : (size_t)rc;
  conn *c = conn_for(t, fd, role, out, iov[0].iov_base, n0);
  if (c) {
    feed_iov(c, out, iov, cnt, (size_t)rc);
    if (event_loop && !out && c->fd >= 0 && c->q_n) loop_read(c);
    slot_give(c);
  }
  errno = saved;
}

__attribute__((noinline, cold)) void ss__http_before_read(int fd) {
  int role = role_of(0, fd);
  if (role == R_TRACKED) { /* a racy look: it only decides when the exporter starts */
    const conn *c = &conns[fd_slot[0][fd]];
    if (!(c->fd == fd && c->server && c->q_n == 0)) return;
  } else if (role != R_SERVER) {
    return;
  }
  ss__exporter_release();
}

void ss__http_read(int fd, const struct iovec *iov, size_t cnt, ssize_t rc) {
  observe(0, fd, 0, iov, cnt, rc);
}

void ss__http_sent(int fd, const struct iovec *iov, size_t cnt, ssize_t rc) {
  observe(0, fd, 1, iov, cnt, rc);
}

void ss__http_tls_read(int fd, const void *buf, ssize_t rc) {
  struct iovec v = {(void *)buf, rc > 0 ? (size_t)rc : 0};
  if ((unsigned)fd < FD_MAX) observe(1, fd, 0, &v, 1, rc);
}

void ss__http_tls_sent(int fd, const void *buf, ssize_t rc) {
  struct iovec v = {(void *)buf, rc > 0 ? (size_t)rc : 0};
  if ((unsigned)fd < FD_MAX) observe(1, fd, 1, &v, 1, rc);
}

void ss__http_tls_handshake(int fd, uint64_t ns) {
  if ((unsigned)fd < FD_MAX) {
    mark_fds();
    atomic_store_explicit(&hs_us[fd], (uint32_t)(ns / 1000 ? ns / 1000 : 1), memory_order_relaxed);
  }
}

void ss__http_sendfile(int fd, ssize_t rc) {
  if (rc <= 0 || role_of(0, fd) != R_TRACKED) return;
  int saved = errno;
  conn *c = slot_take(0, fd);
  if (c) {
    skip_out(c, (size_t)rc);
    slot_give(c);
  }
  errno = saved;
}

/* Requests in flight on c with no response status yet fail with error.type `why`. */
static void fail_unanswered(conn *c, const char *why) {
  for (int i = 0; i < c->q_n; i++) {
    msg *m = q_at(c, i);
    if (m->status_set || m->error) continue;
    rec_str(m, "error.type", why, strlen(why));
    m->error = 1;
  }
}

/* c's connection closes (by the app, or by its exit): a response framed by close is
 * complete now; a request sent and never answered is a failed CLIENT span (the app saw
 * the connection close), a request the app never answered a failed SERVER span (as its
 * client sees it); anything else ends as it is. */
static void end_closed(conn *c) {
  if (!c->server && ss__h1_close(&c->in) && c->q_n) q_finish_oldest(c);
  if (c->server && ss__h1_close(&c->out) && c->q_n) q_finish_oldest(c);
  fail_unanswered(c, "connection_closed");
  end_all(c);
}

static void closed(int t, int fd) {
  int role = role_of(t, fd);
  if (t == 0) hold_settle(fd, 1);
  uint32_t gen;
  if (t == 0 && atomic_load_explicit(&owners_n, memory_order_relaxed) > 0) owner_take(fd, &gen);
  if (role == R_NONE) return;
  set_role(t, fd, R_NONE);
  if (role != R_TRACKED) return;
  conn *c = &conns[fd_slot[t][fd]];
  int expected = 0;
  if (!atomic_compare_exchange_strong(&c->busy, &expected, 1)) {
    /* Never wait: the holder may be this very thread (a handler closing the fd). */
    atomic_store(&c->closed_meanwhile, 1);
    return;
  }
  if (c->fd == fd && c->tls == t) {
    end_closed(c);
    slot_release(c);
  }
  slot_give(c);
}

void ss__http_closed(int fd) {
  if ((unsigned)fd >= FD_MAX || (!atomic_load_explicit(&fds_marked, memory_order_relaxed) &&
                                 atomic_load_explicit(&holds_n, memory_order_relaxed) == 0))
    return;
  int saved = errno;
  closed(0, fd);
  closed(1, fd);
  /* Only when set: a store of zero into a page nobody wrote allocates it. */
  if (atomic_load_explicit(&hs_us[fd], memory_order_relaxed))
    atomic_store_explicit(&hs_us[fd], 0, memory_order_relaxed);
  errno = saved;
}

void ss__http_closed_range(unsigned lo, unsigned hi) {
  if (lo >= FD_MAX || (!atomic_load_explicit(&fds_marked, memory_order_relaxed) &&
                       atomic_load_explicit(&holds_n, memory_order_relaxed) == 0))
    return;
  if (hi >= FD_MAX) hi = FD_MAX - 1;
  for (unsigned fd = lo; fd <= hi; fd++)
    if (atomic_load_explicit(&fd_role[0][fd], memory_order_relaxed) ||
        atomic_load_explicit(&fd_role[1][fd], memory_order_relaxed))
      ss__http_closed((int)fd);
}

void ss__http_dying(const char *why) {
  if (!atomic_load(&ss__http_used)) return;
  for (int i = 0; i < SLOTS; i++) {
    conn *c = &conns[i];
    int expected = 0;
    if (!atomic_load(&slot_used[i]) || !atomic_compare_exchange_strong(&c->busy, &expected, 1))
      continue;
    if (c->fd >= 0) {
      fail_unanswered(c, why);
      end_all(c);
    }
    slot_give(c);
  }
}

void ss__http_exiting_slow(void) {
  /* holds_n first: a process that held nothing reads none of the 64 KiB of holds (a
   * page it never touched costs a fault even to read, in every fork child). */
  for (int i = 0; i < HOLDS && atomic_load(&holds_n) > 0; i++) {
    int key = atomic_load(&holds[i].key);
    if (key > 0) hold_settle(key - 1, 1);
  }
  for (int i = 0; i < SLOTS && atomic_load(&ss__http_used); i++) {
    conn *c = &conns[i];
    int expected = 0;
    if (!atomic_load(&slot_used[i]) || !atomic_compare_exchange_strong(&c->busy, &expected, 1))
      continue;
    if (c->fd >= 0) end_closed(c); /* the exit closes it */
    slot_give(c);
  }
}

SS_FORK_TEXT void ss__http_atfork_child(void) {
  /* The parent ends the spans of connections it had; the child forgets them and never
   * traces those fds (their state is the parent's). */
  for (int i = 0; i < SLOTS && atomic_load(&ss__http_used); i++) {
    if (!atomic_load(&slot_used[i])) continue;
    conn *c = &conns[i];
    if (c->fd >= 0) set_role(c->tls, c->fd, R_NOT_HTTP);
    c->q_n = 0;
    slot_release(c);
    atomic_store(&c->busy, 0);
  }
  for (int i = 0; i < HOLDS && atomic_load(&holds_n) > 0; i++) /* the parent's */
    if (atomic_load(&holds[i].key) != 0) atomic_store(&holds[i].key, 0);
  /* Written only when set: a page the child does not write is not copied. */
  if (atomic_load(&holds_n) != 0) atomic_store(&holds_n, 0);
  if (cur_conn != NULL) cur_conn = NULL;
  for (int i = 0; i < OWNERS && atomic_load(&owners_n) > 0; i++) /* the parent's */
    if (atomic_load(&owners[i].key) != 0) atomic_store(&owners[i].key, 0);
  if (atomic_load(&owners_n) != 0) atomic_store(&owners_n, 0);
}

/* ---- traceparent injection into client requests ---- */
static size_t put(char *dst, size_t at, size_t cap, const char *s, size_t n) {
  if (at + n <= cap) memcpy(dst + at, s, n);
  return at + n;
}

/* Prepares c->inj for the request m starts, after line_end app bytes. */
static void inject_prepare(conn *c, msg *m, size_t line_end) {
  char tp[SS_TRACEPARENT_LEN + 1];
  ss__traceparent_format(&m->ctx, tp);
  size_t n = put(c->inj, 0, INJ_MAX, "traceparent: ", 13);
  n = put(c->inj, n, INJ_MAX, tp, SS_TRACEPARENT_LEN);
  n = put(c->inj, n, INJ_MAX, "\r\n", 2);
  /* The tracestate of the request this thread serves, when the span is in its trace. */
  const msg *r = cur_conn ? &cur_conn->q[cur_msg] : NULL;
  if (r && r->ts_len && memcmp(r->ctx.trace_id, m->ctx.trace_id, 16) == 0 &&
      n + 14 + r->ts_len <= INJ_MAX) {
    n = put(c->inj, n, INJ_MAX, "tracestate: ", 12);
    n = put(c->inj, n, INJ_MAX, r->tracestate, r->ts_len);
    n = put(c->inj, n, INJ_MAX, "\r\n", 2);
  }
  c->sp = (ss__splice){.buf = c->inj, .len = (uint32_t)n, .after = (uint32_t)line_end};
}

ssize_t ss__splice_send(ss__splice *sp, const ss__http_writer *w, const struct iovec *app,
                        size_t cnt) {
  size_t total = 0;
  for (size_t i = 0; i < cnt; i++) total += app[i].iov_len;
  size_t done = 0; /* app bytes sent by this call */
  for (;;) {
    struct iovec v[18];
    size_t nv = 0, skip = done, before = sp->after, drop = 0;
    int spliced = sp->off >= sp->len;
    for (size_t i = 0; i < cnt && nv < 16; i++) {
      const char *b = app[i].iov_base;
      size_t len = app[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      b += skip;
      len -= skip;
      skip = 0;
      if (!spliced && before < len) {
        if (before) v[nv++] = (struct iovec){(void *)b, before};
        v[nv++] = (struct iovec){sp->buf + sp->off, sp->len - sp->off};
        b += before;
        len -= before;
        spliced = 1;
        drop = sp->drop; /* the app bytes ours stand for, never sent */
      } else if (!spliced) {
        before -= len;
      }
      size_t d = drop < len ? drop : len;
      b += d;
      len -= d;
      drop -= d;
      if (len) v[nv++] = (struct iovec){(void *)b, len};
    }
    if (!spliced && before == 0) /* the splice point is at the very end */
      v[nv++] = (struct iovec){sp->buf + sp->off, sp->len - sp->off};
    ssize_t wr = w->fn(w, v, (int)nv);
    if (wr <= 0) return done ? (ssize_t)done : wr;
    size_t k = (size_t)wr, app_now;
    if (sp->off >= sp->len) {
      app_now = k;
    } else if (k <= sp->after) {
      app_now = k;
      sp->after -= (uint32_t)k;
    } else {
      app_now = sp->after;
      k -= sp->after;
      sp->after = 0;
      size_t rest = sp->len - sp->off;
      if (k < rest) {
        sp->off += (uint32_t)k;
      } else { /* ours are all out: the app bytes they replace are taken too */
        sp->off = sp->len;
        app_now += sp->drop + (k - rest);
        sp->drop = 0;
      }
    }
    done += app_now;
    if (done > 0 || total == 0) return (ssize_t)done;
    /* Only our header bytes went: the app has not seen progress yet; go on. */
  }
}

/* The value of the first traceparent field (any case) among the header lines h[0..n),
 * parsed; 0, or -1 when absent or invalid. *at: where in h its parent-id is, when the
 * value is exactly a version-00 traceparent (optional whitespace around it), else 0. */
static int app_traceparent(const char *h, size_t n, ss__ctx *out, size_t *at) {
  static const char name[] = "traceparent:";
  size_t i = 0;
  *at = 0;
  while (i < n) {
    size_t e = i;
    while (e < n && h[e] != '\n') e++;
    if (e - i > sizeof name - 1 && strncasecmp(h + i, name, sizeof name - 1) == 0) {
      size_t v = i + sizeof name - 1, ve = e;
      if (ve > v && h[ve - 1] == '\r') ve--;
      int rc = ss__traceparent_parse(h + v, ve - v, out);
      size_t a = v, z = ve;
      while (a < z && (h[a] == ' ' || h[a] == '\t')) a++;
      while (z > a && (h[z - 1] == ' ' || h[z - 1] == '\t')) z--;
      if (rc == 0 && z - a == SS_TRACEPARENT_LEN && h[a] == '0' && h[a + 1] == '0')
        *at = a + 36; /* "00-" trace-id "-" */
      return rc;
    }
    i = e + 1;
  }
  return -1;
}

static const char hexd[] = "0123456789abcdef";

/* Starts the CLIENT span for a request head that begins in this write, and prepares its
 * traceparent when the head is whole here and carries none. `can_inject`: the caller can
 * send spliced bytes on this stream. */
static void client_write_begins(conn *c, const struct iovec *iov, int can_inject) {
  if (c->sp.off < c->sp.len || !c->out_idle || c->out_started) return;
  size_t le = 0, he = 0;
  int has_tp = 0;
  const char *b0 = iov[0].iov_base;
  if (ss__h1_scan_request(b0, iov[0].iov_len, &le, &he, &has_tp) != 0) return;
  const char *sp = memchr(b0, ' ', le);
  /* The request this one is made for: the one the connection was connected for (its
   * first request), else the current context's. */
  uint32_t gen = 0;
  const msg *req = NULL;
  int token = -1;
  if (!c->wrote_req && atomic_load_explicit(&owners_n, memory_order_relaxed) > 0 &&
      (req = owner_take(c->fd, &gen)) != NULL)
    token = ss__ctx_push(&req->ctx);
  else
    req = serving(&gen);
  c->wrote_req = 1;
  /* The app's own traceparent is the span's parent (as for libcurl), unless it is the
   * served request's own, forwarded: then it is rewritten to name this span. */
  ss__ctx app;
  size_t at = 0;
  int forwarded = 0;
  if (has_tp && he > 0 && app_traceparent(b0 + le, he - le, &app, &at) == 0) {
    forwarded = req && req->in_tp && at && can_inject && (ss__cfg.propagators & SS_PROP_TRACECONTEXT) &&
                memcmp(app.trace_id, req->ctx.trace_id, 16) == 0 &&
                memcmp(app.span_id, req->in_parent, 8) == 0;
    if (!forwarded) {
      if (token >= 0) ss__ctx_pop(token);
      token = ss__ctx_push(&app);
      req = NULL;
    }
  }
  msg *m = client_start(c, b0, sp ? (size_t)(sp - b0) : le);
  if (token >= 0) ss__ctx_pop(token);
  c->out_started = m ? 1 : 2;
  if (m && req) {
    m->req = req;
    m->req_gen = gen;
  }
  if (m && forwarded && m->ctx.valid) { /* the parent-id, in place: 16 bytes for 16 */
    for (int i = 0; i < 8; i++) {
      c->inj[2 * i] = hexd[m->ctx.span_id[i] >> 4];
      c->inj[2 * i + 1] = hexd[m->ctx.span_id[i] & 15];
    }
    c->sp = (ss__splice){.buf = c->inj, .len = 16, .after = (uint32_t)(le + at), .drop = 16};
    return;
  }
  /* No context to pass on (OTEL_SDK_DISABLED without a caller's): nothing injected. */
  if (m == NULL || has_tp || !m->ctx.valid || !(ss__cfg.propagators & SS_PROP_TRACECONTEXT))
    return;
  if (he > 0 && can_inject) inject_prepare(c, m, le);
  else atomic_fetch_add(&injections_skipped, 1);
}

static int send_with_injection(int t, int fd, const struct iovec *iov, size_t cnt,
                               const ss__http_writer *w, ssize_t *rc) {
  int role = role_of(t, fd);
  if (!(role == R_CLIENT || role == R_TRACKED || (t && role == R_NONE))) return 0;
  if (cnt == 0 || cnt > 16 || (unsigned)fd >= FD_MAX) return 0;
  conn *c = conn_for(t, fd, role, 1, iov[0].iov_base, iov[0].iov_len);
  if (c == NULL) return 0;
  if (c->server) {
    slot_give(c);
    return 0;
  }
  int saved = errno;
  client_write_begins(c, iov, w->can_inject);
  if (c->sp.off >= c->sp.len) {
    slot_give(c);
    errno = saved;
    return 0;
  }
  errno = saved;
  ssize_t n = ss__splice_send(&c->sp, w, iov, cnt);
  int err = errno;
  if (n > 0) feed_iov(c, 1, iov, cnt, (size_t)n);
  slot_give(c);
  *rc = n;
  errno = err;
  return 1;
}

static ssize_t sock_writer(const ss__http_writer *w, const struct iovec *v, int n) {
  struct msghdr mh = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)n};
  return real_sendmsg()(w->fd, &mh, w->flags);
}

ssize_t ss__splice_sock(ss__splice *sp, int fd, const struct iovec *iov, size_t cnt,
                        int flags) {
  ss__http_writer w = {.fn = sock_writer, .fd = fd, .flags = flags, .can_inject = 1};
  return ss__splice_send(sp, &w, iov, cnt);
}

void ss__http_count_skipped(void) {
  atomic_fetch_add(&injections_skipped, 1);
  if (!atomic_load_explicit(&ss__http_used, memory_order_relaxed)) atomic_store(&ss__http_used, 1);
}

int ss__http_send(int fd, const struct iovec *iov, size_t cnt, int flags, ssize_t *rc) {
  ss__http_writer w = {.fn = sock_writer, .fd = fd, .flags = flags, .can_inject = 1};
  return ss__http_watched(fd) && send_with_injection(0, fd, iov, cnt, &w, rc);
}

int ss__http_tls_send(const ss__http_writer *w, const void *buf, size_t n, ssize_t *rc) {
  struct iovec v = {(void *)buf, n};
  return send_with_injection(1, w->fd, &v, 1, w, rc);
}

uint64_t ss__http_injections_skipped_slow(void) {
  return atomic_load(&injections_skipped);
}

/* ---- waiting for events: an event loop's callback is over (see the top) ----
 * Each passes straight through; on a thread with a callback context it first drops it,
 * and a wait that may block (a timeout other than zero) first lets a young fork child's
 * held spans go (ss__exporter_before_wait: a server's worker between requests). */
#define WAIT_HOOK(ret, name, params, args, blocks)                            \
  SS_REAL(name)                                                               \
  SS_EXPORT ret name params {                                                 \
    if (__builtin_expect(loop_token >= 0, 0)) SS_SAVE_ERRNO(loop_wait());     \
    if (blocks) ss__exporter_before_wait();                                   \
    return real_##name() args;                                                \
  }

#define TS_BLOCKS(t) ((t) == NULL || (t)->tv_sec != 0 || (t)->tv_nsec != 0)
#define TV_BLOCKS(t) ((t) == NULL || (t)->tv_sec != 0 || (t)->tv_usec != 0)
WAIT_HOOK(int, epoll_wait, (int fd, struct epoll_event *ev, int n, int ms), (fd, ev, n, ms),
          ms != 0)
WAIT_HOOK(int, epoll_pwait, (int fd, struct epoll_event *ev, int n, int ms, const sigset_t *m),
          (fd, ev, n, ms, m), ms != 0)
WAIT_HOOK(int, epoll_pwait2,
          (int fd, struct epoll_event *ev, int n, const struct timespec *t, const sigset_t *m),
          (fd, ev, n, t, m), TS_BLOCKS(t))
WAIT_HOOK(int, poll, (struct pollfd *p, nfds_t n, int ms), (p, n, ms), ms != 0)
WAIT_HOOK(int, ppoll, (struct pollfd *p, nfds_t n, const struct timespec *t, const sigset_t *m),
          (p, n, t, m), TS_BLOCKS(t))
WAIT_HOOK(int, select, (int n, fd_set *r, fd_set *w, fd_set *e, struct timeval *t),
          (n, r, w, e, t), TV_BLOCKS(t))
WAIT_HOOK(int, pselect,
          (int n, fd_set *r, fd_set *w, fd_set *e, const struct timespec *t, const sigset_t *m),
          (n, r, w, e, t, m), TS_BLOCKS(t))
