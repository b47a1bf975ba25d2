/* grpc.c - OTLP/gRPC: HTTP/2 connections (libnghttp2), gRPC framing, the pipeline.
 *
 * Each accepted connection gets an nghttp2 server session. We read into a stack buffer
 * and hand the bytes to nghttp2_session_mem_recv; its callbacks build up each stream
 * (call): headers checked as they come, DATA appended to the call's body, and a call
 * complete (END_STREAM) is queued on its connection. Calls are served after mem_recv
 * returns (nghttp2 does not allow sending from its callbacks, and a logs call is answered
 * before its slow part), in arrival order: unframe, pipeline, answer. Output from
 * nghttp2_session_mem_send is gathered (about 64 KiB at most) and sent in one go;
 * nothing more is asked of nghttp2 until that is sent, and EPOLLOUT waits for room.
 *
 * A call refused from its headers (unknown method, not gRPC) is answered at once and
 * whatever body it still sends is discarded. Streams are ours (struct call), tied to
 * the nghttp2 stream by its user data and on a list of the connection's, which is how
 * they are freed when a connection goes (nghttp2_session_del frees its streams without
 * callbacks).
 *
 * libnghttp2 is opened when gRPC is configured (tools/spanshimd/lazy.h): a collector that
 * serves only OTLP/HTTP (`spanshim run`'s) does not load it. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "tools/spanshimd/grpc.h"
#include "tools/spanshimd/lazy.h"

#define NGHTTP2_FNS(X) \
  X(nghttp2_option_del) X(nghttp2_option_new) X(nghttp2_session_callbacks_del) \
  X(nghttp2_session_callbacks_new) \
  X(nghttp2_session_callbacks_set_on_begin_headers_callback) \
  X(nghttp2_session_callbacks_set_on_data_chunk_recv_callback) \
  X(nghttp2_session_callbacks_set_on_frame_recv_callback) \
  X(nghttp2_session_callbacks_set_on_header_callback) \
  X(nghttp2_session_callbacks_set_on_stream_close_callback) X(nghttp2_session_del) \
  X(nghttp2_session_get_stream_user_data) X(nghttp2_session_mem_recv) \
  X(nghttp2_session_mem_send) X(nghttp2_session_server_new2) \
  X(nghttp2_session_set_local_window_size) X(nghttp2_session_set_stream_user_data) \
  X(nghttp2_session_terminate_session) X(nghttp2_session_want_read) \
  X(nghttp2_session_want_write) X(nghttp2_submit_response) X(nghttp2_submit_rst_stream) \
  X(nghttp2_submit_settings) X(nghttp2_submit_trailer)
SS_LAZY_TABLE(h2, NGHTTP2_FNS)
#define nghttp2_option_del SS_LAZY(h2, nghttp2_option_del)
#define nghttp2_option_new SS_LAZY(h2, nghttp2_option_new)
#define nghttp2_session_callbacks_del SS_LAZY(h2, nghttp2_session_callbacks_del)
#define nghttp2_session_callbacks_new SS_LAZY(h2, nghttp2_session_callbacks_new)
#define nghttp2_session_callbacks_set_on_begin_headers_callback SS_LAZY(h2, nghttp2_session_callbacks_set_on_begin_headers_callback)
#define nghttp2_session_callbacks_set_on_data_chunk_recv_callback SS_LAZY(h2, nghttp2_session_callbacks_set_on_data_chunk_recv_callback)
#define nghttp2_session_callbacks_set_on_frame_recv_callback SS_LAZY(h2, nghttp2_session_callbacks_set_on_frame_recv_callback)
#define nghttp2_session_callbacks_set_on_header_callback SS_LAZY(h2, nghttp2_session_callbacks_set_on_header_callback)
#define nghttp2_session_callbacks_set_on_stream_close_callback SS_LAZY(h2, nghttp2_session_callbacks_set_on_stream_close_callback)
#define nghttp2_session_del SS_LAZY(h2, nghttp2_session_del)
#define nghttp2_session_get_stream_user_data SS_LAZY(h2, nghttp2_session_get_stream_user_data)
#define nghttp2_session_mem_recv SS_LAZY(h2, nghttp2_session_mem_recv)
#define nghttp2_session_mem_send SS_LAZY(h2, nghttp2_session_mem_send)
#define nghttp2_session_server_new2 SS_LAZY(h2, nghttp2_session_server_new2)
#define nghttp2_session_set_local_window_size SS_LAZY(h2, nghttp2_session_set_local_window_size)
#define nghttp2_session_set_stream_user_data SS_LAZY(h2, nghttp2_session_set_stream_user_data)
#define nghttp2_session_terminate_session SS_LAZY(h2, nghttp2_session_terminate_session)
#define nghttp2_session_want_read SS_LAZY(h2, nghttp2_session_want_read)
#define nghttp2_session_want_write SS_LAZY(h2, nghttp2_session_want_write)
#define nghttp2_submit_response SS_LAZY(h2, nghttp2_submit_response)
#define nghttp2_submit_rst_stream SS_LAZY(h2, nghttp2_submit_rst_stream)
#define nghttp2_submit_settings SS_LAZY(h2, nghttp2_submit_settings)
#define nghttp2_submit_trailer SS_LAZY(h2, nghttp2_submit_trailer)
static const char *const h2_sonames[] = {"libnghttp2.so.14", "libnghttp2.so", NULL};

enum { G_NONE, G_TRACES, G_LOGS, G_METRICS };

typedef struct gconn gconn;

typedef struct call {
  int32_t id;
  gconn *c;
  int route;                     /* G_* from :path */
  int post;                      /* :method POST */
  int ctype;                     /* 1 application/grpc[+proto], 0 absent, -1 other */
  int coding;                    /* SS_CE_* from grpc-encoding */
  int auths, auth_ok;            /* authorization headers, and the last one's verdict */
  size_t head_bytes;             /* header list so far (RFC 9113 6.5.2's size) */
  uint8_t *body;                 /* the DATA received, framed: body[0..len) */
  size_t len, cap;               /* cap counts in the connection's `held` */
  size_t want;                   /* 5 + the message length, once the prefix is here */
  int answered;                  /* further DATA is discarded */
  size_t discarded;
  int queued;                    /* on the connection's ready list */
  uint64_t deadline;             /* monotonic ms: the whole request by then */
  ss__buf resp;                  /* the response message, framed, being sent */
  size_t resp_off;
  struct call *rnext;            /* ready list */
  struct call *prev, *next;      /* the connection's calls */
} call;

struct gconn {
  int fd;
  nghttp2_session *h2;
  uint32_t events;
  uint64_t deadline;             /* preface, or idle once no call is open */
  uint64_t refuse_until;         /* refused: ended then (refused_end) */
  int got_bytes;
  int got_settings;              /* the client's preface and SETTINGS are here */
  int needs_token;               /* TCP with --listen-token: calls need the bearer token */
  int is_unix;                   /* on the Unix socket */
  ss__peer who;
  ss__proc_id id;                /* the Unix peer process (tree.c); pid 0: not known */
  int remember;                  /* admitted by its credentials: its first call makes it
                                    part of the traced tree */
  size_t held;                   /* bytes of its calls' bodies */
  size_t charged;                /* ... beyond FREE_HELD, counted in the shared budget */
  size_t n_calls;
  call *calls;
  call *ready, **ready_tail;     /* complete calls, in arrival order */
  uint8_t *pend;                 /* output gathered from nghttp2, not sent yet */
  size_t pend_len, pend_off, pend_cap;
  int goaway_sent;
  int refuse_code;               /* refused at accept: every call gets this status, and
                                    the connection is outside the table (0: served) */
  const char *refuse_msg;
  gconn *prev, *next;
};

static const ss__opts *opts;
static int gep = -1;             /* our epoll: listeners and connections */
static int tcp_lfd = -1, unix_lfd = -1;
static char tag_tcp, tag_unix;
static gconn *conns;
static size_t n_conns;           /* in the table: not counting refused ones */
static size_t n_refused_open;    /* connections with refuse_code, kept for a moment: */
#define GRPC_REFUSED_OPEN 64     /* beyond, one refused is ended at once */
#define REFUSED_OPEN_MS 1000
static uint64_t next_deadline = UINT64_MAX;  /* the soonest of every deadline below */
static uint64_t accept_paused_until;  /* EMFILE: listeners off until then (0: on) */
static uint8_t *inflated;        /* the message being served, inflated */
static size_t inflated_cap;
static nghttp2_session_callbacks *cbs;
static nghttp2_option *h2opt;

/* ---- bookkeeping ---- */

static void set_deadline(uint64_t *d, uint64_t when) {
  *d = when;
  if (when < next_deadline) next_deadline = when;
}

/* A connection without calls is closed after --idle-timeout; with --no-tree a Unix-socket
 * peer is kept, as it may be a worker that connected before dropping privileges and could
 * not connect again (as receiver.c keeps its HTTP peers). */
static void idle_from_now(gconn *c) {
  if (c->is_unix && opts->no_tree) c->deadline = UINT64_MAX;
  else set_deadline(&c->deadline, ss__mono_ms() + opts->idle_timeout_ms);
}

/* Bytes of call bodies a connection's calls together hold without drawing on
 * --max-buffered (so a peer's 256 connections hold at most 16 MiB that way); beyond it,
 * bodies draw on the budget shared with the HTTP listeners, one peer at most half of it. */
#define FREE_HELD (64u << 10)
#define PEER_CALLS 1024           /* open calls of one peer, over all its connections */

/* Moves c->held by `delta` (signed) and charges the budget for what passes FREE_HELD:
 * 0, or -1 (nothing changed) when the growth does not fit the budget or the peer's half
 * of it. */
static int conn_hold(gconn *c, ptrdiff_t delta) {
  size_t h = (size_t)((ptrdiff_t)c->held + delta);
  size_t want = h > FREE_HELD ? h - FREE_HELD : 0;
  if (want > c->charged) {
    size_t peer_charged = 0;
    for (gconn *o = conns; o; o = o->next)
      if (memcmp(&o->who, &c->who, sizeof c->who) == 0) peer_charged += o->charged;
    if (peer_charged + (want - c->charged) > opts->max_buffered_peer) return -1;
  }
  if (ss__buffer_charge(&c->charged, want) != 0) return -1;
  c->held = h;
  return 0;
}

static void body_free(call *s) {
  conn_hold(s->c, -(ptrdiff_t)s->cap);  /* giving back cannot fail */
  free(s->body);
  s->body = NULL;
  s->len = s->cap = 0;
}

static void call_free(call *s) {
  gconn *c = s->c;
  if (s->queued) {  /* unlink from the ready list */
    call **pp = &c->ready;
    while (*pp && *pp != s) pp = &(*pp)->rnext;
    if (*pp) *pp = s->rnext;
    c->ready_tail = &c->ready;
    for (call *r = c->ready; r; r = r->rnext) c->ready_tail = &r->rnext;
  }
  if (s->prev) s->prev->next = s->next;
  else c->calls = s->next;
  if (s->next) s->next->prev = s->prev;
  body_free(s);
  ss__buf_free(&s->resp);
  free(s);
  if (--c->n_calls == 0) idle_from_now(c);
}

static void conn_destroy(gconn *c) {
  epoll_ctl(gep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  while (c->calls) call_free(c->calls);
  nghttp2_session_del(c->h2);
  free(c->pend);
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  if (c->refuse_code) {
    n_refused_open--;
  } else {
    n_conns--;
    ss__stats_g.connections_open--;
  }
  free(c);
}

static void count_status(int code) {
  ss__stats *st = &ss__stats_g;
  switch (code) {
  case SS_GRPC_OK: break;
  case SS_GRPC_INVALID_ARGUMENT: st->rej_bad_protobuf++; break;
  case SS_GRPC_RESOURCE_EXHAUSTED: st->rej_too_large++; break;
  case SS_GRPC_UNAVAILABLE: st->rej_unavailable++; break;
  case SS_GRPC_UNIMPLEMENTED: st->rej_not_found++; break;
  case SS_GRPC_UNAUTHENTICATED: st->rej_unauthorized++; break;
  case SS_GRPC_PERMISSION_DENIED: break;  /* counted at accept: peers_refused */
  default: st->rej_bad_http++; break;
  }
}

/* ---- answers ---- */

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* An error, as Trailers-Only (one HEADERS frame ending the stream); http_status is 200
 * unless the request was not gRPC at all. Further DATA of the call is discarded. */
static void answer_error(call *s, int http_status, int code, const char *msg) {
  char st[8], cs[8], m[512];
  snprintf(st, sizeof st, "%d", http_status);
  snprintf(cs, sizeof cs, "%d", code);
  ss__grpc_pct_encode(msg, m, sizeof m);
  nghttp2_nv nva[] = {NV(":status", st), NV("content-type", "application/grpc"),
                      NV("grpc-status", cs), NV("grpc-message", m),
                      NV("grpc-accept-encoding", "identity,deflate,gzip")};
  if (http_status == 415) ss__stats_g.rej_content_type++;
  else count_status(code);
  s->answered = 1;
  body_free(s);
  nghttp2_submit_response(s->c->h2, s->id, nva, sizeof nva / sizeof *nva, NULL);
}

static ssize_t resp_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *src, void *user) {
  (void)user;
  call *s = src->ptr;
  size_t n = s->resp.len - s->resp_off;
  if (n > length) n = length;
  memcpy(buf, s->resp.data + s->resp_off, n);
  s->resp_off += n;
  if (s->resp_off == s->resp.len) {
    nghttp2_nv trailers[] = {NV("grpc-status", "0")};
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    if (nghttp2_submit_trailer(h2, id, trailers, 1) != 0) return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return (ssize_t)n;
}

/* Success: the Export{Trace,Logs}ServiceResponse (partial_success when the pipeline
 * took spans or records out: ss__pipeline_rejected), framed. */
static int answer_ok(call *s) {
  ss__buf *r = &s->resp;
  ss__buf_reset(r);
  SS_BUF_LIT(r, "\0\0\0\0\0");  /* flag, length: filled in below */
  if (s->route != G_METRICS)  /* metrics: always an empty response */
    ss__export_response(r, s->route == G_LOGS, SS_FMT_PROTO);
  if (ss__buf_error(r)) return -1;
  uint32_t n = (uint32_t)(r->len - 5);
  r->data[1] = (char)(n >> 24), r->data[2] = (char)(n >> 16);
  r->data[3] = (char)(n >> 8), r->data[4] = (char)n;
  s->resp_off = 0;
  s->answered = 1;
  nghttp2_nv nva[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                      NV("grpc-accept-encoding", "identity,deflate,gzip")};
  nghttp2_data_provider dp = {.source.ptr = s, .read_callback = resp_read};
  return nghttp2_submit_response(s->c->h2, s->id, nva, sizeof nva / sizeof *nva, &dp) == 0
             ? 0 : -1;
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user) {
  gconn *c = user;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  size_t peer_calls = 0;
  for (gconn *o = conns; o; o = o->next)
    if (memcmp(&o->who, &c->who, sizeof c->who) == 0) peer_calls += o->n_calls;
  if (c->n_calls >= SS_GRPC_MAX_STREAMS || peer_calls >= PEER_CALLS) {
    if (c->n_calls < SS_GRPC_MAX_STREAMS) ss__stats_g.peer_limited++;
    nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  call *s = calloc(1, sizeof *s);
  if (s == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  s->id = f->hd.stream_id;
  s->c = c;
  s->next = c->calls;
  if (c->calls) c->calls->prev = s;
  c->calls = s;
  c->n_calls++;
  c->deadline = UINT64_MAX;
  set_deadline(&s->deadline, ss__mono_ms() + opts->body_timeout_ms);
  nghttp2_session_set_stream_user_data(h2, s->id, s);
  ss__stats_g.requests++;
  ss__stats_g.grpc_requests++;
  if (c->remember) { /* a sender: the traced tree (tree.c) */
    ss__tree_remember(&c->id);
    c->remember = 0;
  }
  return 0;
}

static int route_of(const uint8_t *p, size_t n) {
  static const struct { const char *path; int route; } routes[] = {
      {"/opentelemetry.proto.collector.trace.v1.TraceService/Export", G_TRACES},
      {"/opentelemetry.proto.collector.logs.v1.LogsService/Export", G_LOGS},
      {"/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", G_METRICS},
  };
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++)
    if (strlen(routes[i].path) == n && memcmp(routes[i].path, p, n) == 0) return routes[i].route;
  return G_NONE;
}

static int hdr_is(const uint8_t *p, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
  (void)flags, (void)user;
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  call *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  if (s == NULL) return 0;
  if (f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  /* trailers: nothing we need */
  s->head_bytes += namelen + valuelen + 32;
  if (s->head_bytes > SS_MAX_HEAD) {
    ss__stats_g.rej_header_too_large++;
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  /* RST_STREAM */
  }
  if (hdr_is(name, namelen, ":path")) s->route = route_of(value, valuelen);
  else if (hdr_is(name, namelen, ":method")) s->post = hdr_is(value, valuelen, "POST");
  else if (hdr_is(name, namelen, "content-type"))
    s->ctype = hdr_is(value, valuelen, "application/grpc") ||
                       hdr_is(value, valuelen, "application/grpc+proto")
                   ? 1 : -1;
  else if (hdr_is(name, namelen, "authorization")) {
    s->auths++;
    s->auth_ok = ss__bearer_ok(opts, (const char *)value, valuelen);
  } else if (hdr_is(name, namelen, "grpc-encoding"))
    s->coding = hdr_is(value, valuelen, "identity") ? SS_CE_IDENTITY
                : hdr_is(value, valuelen, "gzip")   ? SS_CE_GZIP
                : hdr_is(value, valuelen, "deflate") ? SS_CE_DEFLATE
                                                     : SS_CE_UNSUPPORTED;
  return 0;
}

/* The request's headers are all here: refuse now what its body cannot change. */
static void check_headers(call *s) {
  if (s->c->refuse_code)
    answer_error(s, 200, s->c->refuse_code, s->c->refuse_msg);
  else if (s->c->needs_token && !(s->auths == 1 && s->auth_ok))
    answer_error(s, 200, SS_GRPC_UNAUTHENTICATED,
                 "a valid authorization: Bearer token is required on this port");
  else if (s->ctype != 1)
    answer_error(s, 415, SS_GRPC_INTERNAL, "content-type must be application/grpc");
  else if (!s->post)
    answer_error(s, 405, SS_GRPC_INTERNAL, "gRPC calls are POST");
  else if (s->route == G_NONE)
    answer_error(s, 200, SS_GRPC_UNIMPLEMENTED,
                 "unknown method: spanshimd serves TraceService/Export, LogsService/Export "
                 "and MetricsService/Export");
  else if (s->coding == SS_CE_UNSUPPORTED)
    answer_error(s, 200, SS_GRPC_UNIMPLEMENTED,
                 "unsupported grpc-encoding: use gzip, deflate or identity");
}

static void enqueue_ready(gconn *c, call *s) {
  if (s->queued || s->answered) return;
  s->queued = 1;
  s->rnext = NULL;
  *c->ready_tail = s;
  c->ready_tail = &s->rnext;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user) {
  gconn *c = user;
  if (f->hd.type == NGHTTP2_SETTINGS && !c->got_settings) {
    c->got_settings = 1;  /* the preface is done: from now on, idle rules */
    if (c->n_calls == 0) idle_from_now(c);
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  call *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
  if (s == NULL) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && !s->answered)
    check_headers(s);
  if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) && !s->answered) enqueue_ready(c, s);
  return 0;
}

/* The bound on a call's framed body: the message prefix, and a compressed message may
 * be a little larger than --max-body when its content does not compress. */
static size_t wire_max(const call *s) {
  size_t m = opts->max_body + 5;
  if (s->coding == SS_CE_GZIP || s->coding == SS_CE_DEFLATE)
    m += opts->max_body / 1024 + 1024;
  return m;
}

/* Makes the body able to hold `need` bytes, growing it with the bytes that come
 * (doubling, never past `want`, the framed message's size), within the budget. */
static int body_reserve(call *s, size_t need, size_t want) {
  if (need <= s->cap) return 0;
  size_t cap = s->cap ? s->cap : 4096;
  while (cap < need) cap *= 2;
  if (cap > want) cap = want;
  if (conn_hold(s->c, (ptrdiff_t)(cap - s->cap)) != 0) return SS_GRPC_UNAVAILABLE;
  uint8_t *p = realloc(s->body, cap);
  if (p == NULL) {
    conn_hold(s->c, -(ptrdiff_t)(cap - s->cap));
    return SS_GRPC_RESOURCE_EXHAUSTED;
  }
  s->body = p;
  s->cap = cap;
  return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *d,
                         size_t n, void *user) {
  (void)flags, (void)user;
  call *s = nghttp2_session_get_stream_user_data(h2, id);
  if (s == NULL) return 0;
  if (s->answered) {
    s->discarded += n;
    if (s->discarded > wire_max(s))  /* it will not stop: stop it */
      nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    return 0;
  }
  while (n > 0) {
    /* The prefix first (5 bytes), then exactly the message it announces. */
    size_t want = s->len < 5 ? 5 : s->want;
    if (s->len == want) {
      answer_error(s, 200, SS_GRPC_INTERNAL, "more than one request message in a unary call");
      return 0;
    }
    size_t k = want - s->len < n ? want - s->len : n;
    int rc = body_reserve(s, s->len + k, want);
    if (rc != 0) {
      answer_error(s, 200, rc, rc == SS_GRPC_UNAVAILABLE
                                   ? "spanshimd holds too many request bytes; retry later"
                                   : "out of memory");
      return 0;
    }
    memcpy(s->body + s->len, d, k);
    s->len += k, d += k, n -= k;
    if (s->len == 5 && s->want == 0) {
      s->want = 5 + (size_t)ss__grpc_be32(s->body + 1);
      if (s->want > wire_max(s)) {
        answer_error(s, 200, SS_GRPC_RESOURCE_EXHAUSTED, "request message larger than --max-body");
        return 0;
      }
    }
  }
  return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t err, void *user) {
  (void)err, (void)user;
  call *s = nghttp2_session_get_stream_user_data(h2, id);
  if (s) call_free(s);
  return 0;
}

/* ---- serving ---- */

/* What is left of a logs call once it is answered: its decoded request and the message
 * it came from (in `keep`, taken from the call, or in `inflated`). */
typedef struct after {
  ss__logs_req *q;
  uint8_t *keep;                 /* no longer counted: freed before anything is read */
  const uint8_t *msg;
  size_t len;
} after;

static void answer_status(call *s, int st) {
  if (st == 200 && answer_ok(s) == 0) return;
  if (st == 400)
    answer_error(s, 200, SS_GRPC_INVALID_ARGUMENT,
                 ss__pipeline_rejected.msg[0] ? ss__pipeline_rejected.msg
                                              : "not a valid OTLP protobuf request");
  else if (st == 413)
    answer_error(s, 200, SS_GRPC_RESOURCE_EXHAUSTED, "request decodes to more memory than allowed");
  else if (st == 200)
    answer_error(s, 200, SS_GRPC_RESOURCE_EXHAUSTED, "out of memory");
  else
    answer_error(s, 200, SS_GRPC_UNAVAILABLE, "cannot write the output file");
}

/* Serves one complete call. Logs are answered before their slow part (as receiver.c
 * does): returns 1 with *a filled when that part is still to do, else 0. */
static int serve(call *s, after *a) {
  const uint8_t *msg;
  size_t len;
  const char *why;
  int code = ss__grpc_unframe(s->body, s->len, s->coding, opts->max_body, &inflated,
                              &inflated_cap, &msg, &len, &why);
  if (code != SS_GRPC_OK) {
    answer_error(s, 200, code, why);
    return 0;
  }
  int st;
  if (s->route == G_LOGS) {
    ss__logs_req *q = ss__pipeline_logs_decode(msg, len, &st);
    if (q && answer_ok(s) == 0) {
      /* The message must outlive the call, which may be freed once answered. */
      a->q = q;
      a->msg = msg;
      a->len = len;
      if (msg == s->body + 5) {
        a->keep = s->body;
        s->body = NULL;
        conn_hold(s->c, -(ptrdiff_t)s->cap);
        s->len = s->cap = 0;
      }
      return 1;
    }
    if (q) st = 200;  /* answering failed: out of memory */
  } else if (s->route == G_METRICS) {  /* as POST /v1/metrics: its file, the upstream */
    st = ss__pipeline_metrics(SS_FMT_PROTO, msg, len);
  } else {
    st = ss__pipeline_traces(msg, len, ss__mono_ms());
  }
  answer_status(s, st);
  return 0;
}

static void set_events(gconn *c) {
  uint32_t want = 0;
  if (nghttp2_session_want_read(c->h2)) want |= EPOLLIN;
  if (c->pend_off < c->pend_len) want |= EPOLLOUT;
  if (want == c->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(gep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = want;
}

/* Appends what nghttp2 has to send to the pending output, up to about FLUSH_BYTES, so
 * that frames go out together (one send, no small writes for Nagle to hold back). 0, or
 * -1 (nghttp2 failed, or out of memory). */
#define FLUSH_BYTES 65536
static int gather(gconn *c) {
  if (c->pend_off == c->pend_len) c->pend_off = c->pend_len = 0;
  while (c->pend_len < FLUSH_BYTES) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(c->h2, &d);
    if (n < 0) return -1;
    if (n == 0) break;
    if (c->pend_len + (size_t)n > c->pend_cap) {
      size_t cap = c->pend_len + (size_t)n > FLUSH_BYTES ? c->pend_len + (size_t)n : FLUSH_BYTES;
      uint8_t *p = realloc(c->pend, cap);
      if (p == NULL) return -1;
      c->pend = p;
      c->pend_cap = cap;
    }
    memcpy(c->pend + c->pend_len, d, (size_t)n);
    c->pend_len += (size_t)n;
  }
  return 0;
}

/* Sends what nghttp2 has for the peer, as far as the socket takes it. Returns -1 when
 * the connection was destroyed (an error, or the session has nothing more to do). */
static int conn_flush(gconn *c) {
  for (;;) {
    if (c->pend_off == c->pend_len && (gather(c) != 0)) goto dead;
    if (c->pend_off == c->pend_len) break;
    ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n < 0) goto dead;
    c->pend_off += (size_t)n;
  }
  if (c->pend_off == c->pend_len && !nghttp2_session_want_read(c->h2) &&
      !nghttp2_session_want_write(c->h2))
    goto dead;
  set_events(c);
  return 0;
dead:
  conn_destroy(c);
  return -1;
}

/* Serves the calls that became complete, in order. -1 if the connection went. */
static int serve_ready(gconn *c) {
  while (c->ready) {
    call *s = c->ready;
    c->ready = s->rnext;
    if (c->ready == NULL) c->ready_tail = &c->ready;
    s->queued = 0;
    after a = {0};
    if (serve(s, &a)) {
      /* s may be freed by the flush: only `a` is used after it. */
      int gone = conn_flush(c);
      ss__pipeline_logs_finish(a.q, a.msg, a.len);
      free(a.keep);
      if (gone) return -1;
    }
    if (inflated_cap > (1u << 20)) {  /* one big message must not pin its memory */
      free(inflated);
      inflated = NULL;
      inflated_cap = 0;
    }
  }
  return 0;
}

/* ---- connections ---- */

static void on_readable(gconn *c) {
  uint8_t buf[65536];
  for (int i = 0; i < 8; i++) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {  /* the peer is gone (or half-closed, which HTTP/2 has no use for) */
      if (conn_flush(c) == 0) conn_destroy(c);
      return;
    }
    if (!c->got_bytes) {  /* the preface must be complete in --header-timeout */
      c->got_bytes = 1;
      set_deadline(&c->deadline, ss__mono_ms() + opts->header_timeout_ms);
    }
    if (nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0) {  /* bad preface, flood */
      conn_destroy(c);
      return;
    }
    if (serve_ready(c) != 0) return;
    if ((size_t)n < sizeof buf) break;
  }
  conn_flush(c);
}

/* A connection on fd (taken: closed on failure) in the table; NULL on failure. */
static gconn *conn_new(int fd, int is_unix, const ss__peer *who, const ss__proc_id *id,
                       int remember) {
  gconn *c = calloc(1, sizeof *c);
  if (c == NULL || nghttp2_session_server_new2(&c->h2, cbs, c, h2opt) != 0) {
    free(c);
    close(fd);
    return NULL;
  }
  c->fd = fd;
  c->needs_token = !is_unix && opts->listen_token_len > 0;
  c->is_unix = is_unix;
  c->who = *who;
  c->id = *id;
  c->remember = remember;
  c->ready_tail = &c->ready;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (epoll_ctl(gep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    nghttp2_session_del(c->h2);
    free(c);
    close(fd);
    return NULL;
  }
  c->events = EPOLLIN;
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  n_conns++;
  ss__stats_g.connections++;
  ss__stats_g.connections_open++;
  idle_from_now(c);  /* a connection that says nothing is idle */
  /* Windows large enough that a big export is not a ping-pong of WINDOW_UPDATEs. */
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, SS_GRPC_MAX_STREAMS},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, SS_MAX_HEAD},
  };
  if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof *iv) != 0 ||
      nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 4u << 20) != 0) {
    conn_destroy(c);
    return NULL;
  }
  return conn_flush(c) == 0 ? c : NULL;
}

/* Whether a new connection from `who` would take more than its share of the table: as
 * over HTTP (ss__peer_cap), and at most a quarter of it. */
static int peer_over(const ss__peer *who) {
  size_t per = opts->max_conns_per_peer < SS_GRPC_MAX_CONNS / 4 ? opts->max_conns_per_peer
                                                                : SS_GRPC_MAX_CONNS / 4;
  size_t n = 0, cap = ss__peer_cap(n_conns, SS_GRPC_MAX_CONNS, per);
  for (gconn *c = conns; c && n < cap; c = c->next)
    if (!c->refuse_code && memcmp(&c->who, who, sizeof *who) == 0) n++;
  return n >= cap;
}

/* A refused connection's moment is over: the peer is stopped from sending (on a Unix
 * socket its next write fails there), what it sent is read (at most 4 MiB: over TCP it
 * can go on sending) and its calls answered with the refusal, then GOAWAY and the
 * close. c is gone. */
static void refused_end(gconn *c) {
  uint8_t buf[65536];
  shutdown(c->fd, SHUT_RD);
  for (int i = 0; i < 64; i++) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0) break;
  }
  nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
  c->goaway_sent = 1;
  if (conn_flush(c) == 0) conn_destroy(c);
}

/* Connection c, just made, is refused (counted already): outside the table, every call
 * on it answered `code` with msg (a static string) until REFUSED_OPEN_MS from now
 * (GRPC_REFUSED_OPEN at once; beyond, at once), then ended (refused_end). The peer
 * learns of the refusal as a gRPC status rather than a connection closed on what it
 * sent. */
static void refused_begin(gconn *c, int code, const char *msg) {
  c->refuse_code = code;
  c->refuse_msg = msg;
  c->remember = 0;
  n_conns--;
  ss__stats_g.connections--;
  ss__stats_g.connections_open--;
  if (++n_refused_open > GRPC_REFUSED_OPEN) {
    refused_end(c);
    return;
  }
  set_deadline(&c->refuse_until, ss__mono_ms() + REFUSED_OPEN_MS);
}

/* Accepts up to 64 waiting connections: 1 when there may be more, else 0. */
static int on_accept(int lfd, int is_unix) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE) {
        /* Level-triggered, the pending connection would wake us in a loop: stop
         * listening for a moment (tick takes it back). Nothing is refused: the
         * connections wait in the listener's queue, to be taken then. */
        epoll_ctl(gep, EPOLL_CTL_DEL, lfd, NULL);
        accept_paused_until = ss__mono_ms() + 100;
        set_deadline(&accept_paused_until, accept_paused_until);
      }
      return 0;
    }
    ss__proc_id id = {0};
    const char *why = NULL;
    int admitted = is_unix ? ss__peer_admit(opts, fd, &id, &why) : -1, refuse = 0;
    if (admitted == 0) {
      ss__say_refused(fd, why);
      ss__stats_g.peers_refused++;
      refuse = SS_GRPC_PERMISSION_DENIED;
    }
    ss__peer who;
    ss__peer_of(fd, is_unix, &who);
    if (!refuse && (n_conns >= SS_GRPC_MAX_CONNS || peer_over(&who))) {
      if (n_conns >= SS_GRPC_MAX_CONNS) ss__stats_g.connections_refused++;
      else ss__stats_g.peer_limited++;
      refuse = SS_GRPC_UNAVAILABLE;
    }
    gconn *c = conn_new(fd, is_unix, &who, &id, !refuse && admitted == 1 && id.pid > 0);
    if (c && refuse) refused_begin(c, refuse, admitted == 0 ? "not of the traced tree" :
                                   "spanshimd has no room for this connection; retry later");
  }
  return 1;
}

static int watch(int fd, void *tag) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
  return fd < 0 ? 0 : epoll_ctl(gep, EPOLL_CTL_ADD, fd, &ev);
}

void ss__grpc_events(void) {
  struct epoll_event evs[64];
  if (gep < 0) return;
  int n = epoll_wait(gep, evs, 64, 0);
  for (int i = 0; i < n; i++) {
    void *p = evs[i].data.ptr;
    if (p == &tag_tcp || p == &tag_unix) {
      (void)on_accept(p == &tag_tcp ? tcp_lfd : unix_lfd, p == &tag_unix);
      continue;
    }
    gconn *c = p;
    if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
    else if (evs[i].events & EPOLLOUT) conn_flush(c);
  }
}

/* A call past its deadline: answered DEADLINE_EXCEEDED if it was not, then given a
 * second to go; after that the stream is reset. */
static void expire_call(call *s, uint64_t now) {
  if (!s->answered) {
    ss__stats_g.timeouts++;
    answer_error(s, 200, SS_GRPC_DEADLINE_EXCEEDED, "request not complete in time");
    set_deadline(&s->deadline, now + 1000);
  } else {
    nghttp2_submit_rst_stream(s->c->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    s->deadline = UINT64_MAX;
  }
}

/* The connection's own deadline: no first bytes in time (closed), or idle (GOAWAY, and
 * closed a second later if it is still there). Returns -1 when it was destroyed. */
static int expire_conn(gconn *c, uint64_t now) {
  if (!c->goaway_sent) ss__stats_g.timeouts++;
  if (!c->got_settings || c->goaway_sent) {
    conn_destroy(c);
    return -1;
  }
  nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
  c->goaway_sent = 1;
  set_deadline(&c->deadline, now + 1000);
  return 0;
}

int64_t ss__grpc_tick(uint64_t now) {
  if (gep < 0) return -1;
  if (now < next_deadline) return next_deadline == UINT64_MAX ? -1 : (int64_t)(next_deadline - now);
  next_deadline = UINT64_MAX;
  if (accept_paused_until && now >= accept_paused_until) {
    accept_paused_until = 0;
    watch(tcp_lfd, &tag_tcp);
    watch(unix_lfd, &tag_unix);
  } else if (accept_paused_until) {
    set_deadline(&accept_paused_until, accept_paused_until);
  }
  for (gconn *c = conns, *next; c; c = next) {
    next = c->next;
    int changed = 0;
    if (c->refuse_code && now >= c->refuse_until) {
      refused_end(c);
      continue;
    }
    if (c->refuse_code && c->refuse_until < next_deadline) next_deadline = c->refuse_until;
    for (call *s = c->calls, *sn; s; s = sn) {
      sn = s->next;
      if (now >= s->deadline) {
        expire_call(s, now);
        changed = 1;
      }
      if (s->deadline < next_deadline) next_deadline = s->deadline;
    }
    if (c->n_calls == 0 && now >= c->deadline && !c->refuse_code) {
      if (expire_conn(c, now) != 0) continue;
      changed = 1;
    }
    if (c->n_calls == 0 && c->deadline < next_deadline) next_deadline = c->deadline;
    if (changed && (conn_flush(c) != 0 || serve_ready(c) != 0)) continue;
  }
  return next_deadline == UINT64_MAX ? -1 : (int64_t)(next_deadline - now);
}

int ss__grpc_fd(void) { return gep; }

int ss__grpc_start(const ss__opts *o, int tcp_fd, int unix_fd) {
  if (tcp_fd < 0 && unix_fd < 0) return 0;
  opts = o;
  tcp_lfd = tcp_fd;
  unix_lfd = unix_fd;
  if (SS_LAZY_LOAD(h2, "libnghttp2", h2_sonames) != 0) return -1;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&h2opt) != 0) {
    fprintf(stderr, "spanshimd: out of memory for gRPC\n");
    return -1;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  gep = epoll_create1(EPOLL_CLOEXEC);
  if (gep < 0 || watch(tcp_fd, &tag_tcp) != 0 || watch(unix_fd, &tag_unix) != 0) {
    perror("spanshimd: gRPC epoll");
    return -1;
  }
  return 0;
}

/* At stop, out of fds: a connection with no call open, nothing to send and nothing
 * waiting in its socket is sent GOAWAY and closed, as it would be at the end of the stop,
 * so that a connection still in a listener's queue can be taken. */
void ss__grpc_let_idle_go(void) {
  if (gep < 0) return;
  for (gconn *c = conns, *next; c; c = next) {
    next = c->next;
    char b;
    if (c->n_calls || c->refuse_until || c->pend_off != c->pend_len ||
        nghttp2_session_want_write(c->h2))
      continue;
    if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && errno == EAGAIN) {
      nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
      if (conn_flush(c) == 0) conn_destroy(c);
    }
  }
}

/* Calls not answered yet (their requests still arriving), over every connection. */
static size_t calls_arriving(void) {
  size_t n = 0;
  for (gconn *c = conns; c; c = c->next)
    for (call *s = c->calls; s; s = s->next)
      n += !s->answered && !c->refuse_code;
  return n;
}

/* At stop, out of fds: idle connections let go, events served for up to 10 ms. */
static void settle_at_stop(void) {
  ss__grpc_let_idle_go();
  struct epoll_event ev;
  if (epoll_wait(gep, &ev, 1, 10) > 0) ss__grpc_events();
}

void ss__grpc_stop(uint64_t grace_ms) {
  if (gep < 0) return;
  /* Connections already made are taken and served, like the HTTP listeners' (a peer
   * counts what it wrote as sent): the Unix socket first takes no more (a connect now
   * fails with ECONNREFUSED, which its sender sees), then both queues are emptied;
   * closing a listener would reset what waits in its queue, unread. */
  if (unix_lfd >= 0) shutdown(unix_lfd, SHUT_RD);
  /* Out of fds (on_accept paused), connections still wait there: fds are freed for them
   * (connections without a call let go, the others served) and the queues taken again,
   * for at most the grace. */
  ss__listen_take_queues(unix_lfd, tcp_lfd, &accept_paused_until, ss__mono_ms() + grace_ms,
                         on_accept, settle_at_stop);
  if (tcp_lfd >= 0) close(tcp_lfd);
  if (unix_lfd >= 0) close(unix_lfd);
  tcp_lfd = unix_lfd = -1;
  /* What the peers have sent already is served, and a call still arriving waits for the
   * rest, for at most the grace; then GOAWAY and close (a call cut counted as a timeout). */
  uint64_t until = ss__mono_ms() + grace_ms;
  for (uint64_t now; conns && (now = ss__mono_ms()) < until;) {
    struct epoll_event ev;
    int n = epoll_wait(gep, &ev, 1, calls_arriving() ? (int)(until - now) : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ss__grpc_events();
  }
  ss__stats_g.timeouts += calls_arriving();
  for (gconn *c = conns, *next; c; c = next) {
    next = c->next;
    if (c->refuse_code) {  /* what it sent is read and answered with the refusal */
      refused_end(c);
      continue;
    }
    nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
    if (conn_flush(c) == 0) conn_destroy(c);
  }
  close(gep);
  gep = -1;
  nghttp2_session_callbacks_del(cbs);
  nghttp2_option_del(h2opt);
  cbs = NULL;
  h2opt = NULL;
  free(inflated);
  inflated = NULL;
  inflated_cap = 0;
}
