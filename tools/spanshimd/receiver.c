/* receiver.c - the event loop: accepts connections, frames HTTP/1.1 requests, routes
 * them and writes the responses.
 *
 * A body comes with a Content-Length or chunked; a chunked body is decoded in place in
 * the input buffer as it arrives (http.c), so either way serve() sees it whole and
 * contiguous, and --max-body bounds the de-chunked size (a chunk that would pass it is
 * refused from its size line). A gzip or deflate body is then inflated into a buffer of
 * its own (inflate.c), bounded by --max-body again: past it, 413 and no more inflating.
 *
 * One thread, level-triggered epoll, non-blocking sockets. Each connection owns an input
 * buffer (at most a request head plus the largest allowed body) and an output buffer;
 * when a client pipelines faster than it reads responses, reading from it pauses until
 * the output drains. A connection that must be closed after an error response shuts its
 * write side first and discards input for a moment (lingering close), so the client reads
 * the response instead of a reset. What an OTLP body then goes through is pipeline.c's
 * business: this file frames requests and answers with the status the pipeline gives. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "tools/common/otlp_json.h"
#include "tools/spanshimd/grpc.h"
#include "tools/spanshimd/spanshimd.h"

#define READ_MIN 16384            /* free space wanted before a read */
#define OUT_HIGH (1u << 20)       /* pause reading above this much unsent output */
#define LINGER_MS 2000
#define LINGER_MAX_BYTES (64u << 20)
#define LINGER_MAX_CONNS 256      /* beyond, a TCP connection finished is closed at once */
#define SHRINK_ABOVE (1u << 20)   /* idle input buffers larger than this are freed */

enum { R_NONE, R_TRACES, R_LOGS, R_STATS, R_METRICS, R_OTLP_METRICS };

/* The OTLP export paths: POST, a protobuf or JSON body, errors as google.rpc.Status. */
static int is_otlp(int route) {
  return route == R_TRACES || route == R_LOGS || route == R_OTLP_METRICS;
}

/* A peer's share, for the per-peer limits: its connections, and the bytes of their input
 * buffers beyond READ_MIN each, uncharged (its SS_FREE_BUFFER allowance) and charged (to
 * the budget). One per uid on the Unix socket, one for TCP: few, so a list. */
typedef struct peer_acct {
  ss__peer who;
  size_t conns, free_used, charged;
  struct peer_acct *next;
} peer_acct;

typedef struct conn {
  int fd;
  int metrics_port;               /* accepted on the --metrics listener */
  int is_tcp;                     /* accepted on a TCP listener (--listen, --metrics) */
  int needs_token;                /* accepted on --listen with a --listen-token */
  ss__peer who;
  ss__proc_id id;                 /* the Unix peer process (tree.c); pid 0: not known */
  int remember;                   /* admitted by its credentials: its first OTLP request
                                     makes it part of the traced tree */
  int pending;                    /* a Unix peer admitted by nothing yet: its first request
                                     must carry the tree's token (tree.c) */
  int give_token;                 /* its OTLP answers carry the tree's token */
  const char *why;                /* pending: why it was not admitted at accept */
  peer_acct *pa;                  /* its peer's share */
  uint64_t active_ms;             /* last time bytes moved either way (idle timeout) */
  uint64_t req_start_ms;          /* first byte of the request being read (header timeout) */
  uint64_t body_start_ms;         /* its head complete (body timeout) */
  size_t charged;                 /* bytes of `in` counted in `buffered` (charge_for) */
  int mem_wait;                   /* reading paused until --max-buffered has room */
  int eof;                        /* the peer shut its write side */
  int closing;                    /* close once the output is flushed */
  int lingering;                  /* write side shut; discarding input until EOF */
  int out_gone;                   /* the peer takes no more answers (EPIPE): they are
                                     dropped, and what it wrote before is still served */
  uint64_t linger_until;          /* monotonic ms */
  size_t lingered;                /* bytes discarded while lingering */
  uint32_t events;                /* current epoll interest */
  char *in;
  size_t in_off, in_len, in_cap;  /* unparsed input is in[in_off, in_len) */
  size_t scan;                    /* ss__http_parse's search position */
  /* The request being framed (values only: `in` may move while its body arrives). */
  int have_head;
  int route, status, reason_bad_http, is_head, keep_alive, expect_continue;
  int continue_due;               /* a 100 Continue is owed if the body is not all here */
  int chunked, encoding;          /* framing and SS_CE_* Content-Encoding */
  int fmt;                        /* SS_FMT_*: the body's Content-Type, also the answer's */
  const char *msg;                /* message for a non-zero status; NULL: its usual one */
  ss__chunked ch;                 /* the chunked body's decoder state */
  size_t wire_max;                /* bound on the body as framed (before inflating) */
  size_t head_len, body_len;      /* body_len: the body as framed (de-chunked) */
  size_t raw_len;                 /* bytes of the body on the wire, once complete */
  int from_shim;                  /* the request is libspanshim's (User-Agent) */
  int64_t counted;                /* items of the refused request counted here, or -1 */
  uint64_t discard_left;          /* a body too big to keep: bytes still to read past */
  ss__item_count *ic;             /* ... counting its items (a shim's), or NULL */
  int refusing;                   /* every request from now on gets refuse_status, its body
                                     read past and a shim's items counted (finish) */
  int refuse_status;
  uint64_t refuse_until;          /* refused at accept: its requests are taken (refused and
                                     counted) until then, then it is finished (0: not one) */
  int outside;                    /* refused at accept: not in the table (n_conns,
                                     connections_open) */
  int spare;                      /* taken on the spare fd (EMFILE): the spare is taken
                                     back when it is destroyed; over TCP its first request
                                     is waited for and answered, with a close */
  int finishing;                  /* finish: the peer can send no more; what it sent is
                                     read to the end whatever the memory budget says */
  ss__buf out;
  size_t out_off;
  struct conn *prev, *next;
} conn;

static const ss__opts *opts;
static int ep = -1;
static int unix_lfd = -1, tcp_lfd = -1, metrics_lfd = -1, sig_fd = -1;
static int reserve_fd = -1;      /* spare fd, to take a connection on at EMFILE */
#define ACCEPT_PAUSE_MS 100
static uint64_t accept_paused_until; /* out of fds, no spare: listeners off until then */
static conn *conns;
static peer_acct *peers;
static size_t n_conns, n_lingering;
static size_t n_pending;         /* connections with `pending` set */
#define MAX_PENDING 64           /* beyond, a peer admitted by nothing is refused at once */
static size_t n_refused_open;    /* connections with refuse_until set: */
#define MAX_REFUSED_OPEN 64      /* beyond, one refused at accept is finished at once */
#define REFUSED_OPEN_MS 1000
static char tag_unix, tag_tcp, tag_metrics, tag_sig, tag_grpc;  /* epoll data for the non-connection fds */
static ss__buf scratch = SS_BUF_INIT;
static size_t buffered;          /* sum of conns' `charged` */
static size_t n_mem_wait;        /* connections with mem_wait set */
static uint64_t next_sweep_ms;   /* timeouts are checked at most this often: */
#define SWEEP_MS 250
static uint8_t *inflated;        /* the body of the request being served, inflated */
static size_t inflated_cap;

/* ---- connections ---- */

static void wake_mem_waiters(void);

/* Bytes of a buffer of cap bytes beyond the READ_MIN every connection has. */
static size_t above_min(size_t cap) { return cap > READ_MIN ? cap - READ_MIN : 0; }

static void conn_destroy(conn *c) {
  int gave_back = c->in_cap > READ_MIN;  /* budget, or its peer's allowance */
  peer_acct *pa = c->pa;
  pa->free_used -= above_min(c->in_cap) - c->charged;
  pa->charged -= c->charged;
  if (--pa->conns == 0) {
    peer_acct **pp = &peers;
    while (*pp != pa) pp = &(*pp)->next;
    *pp = pa->next;
    free(pa);
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->spare && reserve_fd < 0) reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->in);
  if (c->ic) ss__item_count_end(c->ic); /* cut short: nothing counted */
  free(c->ic);
  buffered -= c->charged;
  n_mem_wait -= (size_t)c->mem_wait;
  ss__buf_free(&c->out);
  n_lingering -= (size_t)c->lingering;
  n_pending -= (size_t)c->pending;
  n_refused_open -= c->refuse_until != 0;
  if (!c->outside) {
    n_conns--;
    ss__stats_g.connections_open--;
  }
  free(c);
  if (gave_back) wake_mem_waiters();
}

static void set_events(conn *c) {
  uint32_t want = 0;
  size_t pending = c->out.len - c->out_off;
  if (c->lingering || (!c->closing && !c->eof && !c->mem_wait && pending < OUT_HIGH))
    want |= EPOLLIN;
  if (pending) want |= EPOLLOUT;
  if (want == c->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = want;
}

static conn *conn_add(int fd) {
  conn *c = calloc(1, sizeof *c);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  if (c == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    free(c);
    close(fd);
    return NULL;
  }
  c->fd = fd;
  c->events = EPOLLIN;
  c->active_ms = ss__mono_ms();
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  n_conns++;
  ss__stats_g.connections++;
  ss__stats_g.connections_open++;
  return c;
}

/* ---- responses ---- */

static const char *reason_phrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 415: return "Unsupported Media Type";
  case 431: return "Request Header Fields Too Large";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

/* Sends what is pending now, as far as the socket takes it without waiting; never
 * changes the connection's life (flush does that, from the event loop). */
static void send_now(conn *c) {
  while (c->out_off < c->out.len && !c->out_gone) {
    ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    c->out_off += (size_t)n;
  }
}

static void respond(conn *c, int status, const char *ctype, const void *body, size_t len,
                    const char *extra) {
  int close_after = c->closing || !c->keep_alive || c->spare;
  const char *token = status == 200 && c->give_token && is_otlp(c->route) ? ss__tree_token() : NULL;
  ss__buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s%s%s\r\n",
                 status, reason_phrase(status), ctype, len, extra ? extra : "",
                 token ? "Spanshim-Tree: " : "", token ? token : "", token ? "\r\n" : "",
                 close_after ? "Connection: close\r\n" : "");
  if (!c->is_head) ss__buf_append(&c->out, body, len);
  if (close_after) c->closing = 1;
}

/* google.rpc.Status {int32 code = 1; string message = 2;}, the body OTLP/HTTP asks for
 * with errors; hand-encoded since it is two fields. */
static void rpc_status(ss__buf *b, int grpc_code, const char *msg) {
  size_t n = strlen(msg);
  if (n > 127) n = 127;
  ss__buf_putc(b, 0x08);
  ss__buf_putc(b, (char)grpc_code);
  ss__buf_putc(b, 0x12);
  ss__buf_putc(b, (char)n);
  ss__buf_append(b, msg, n);
}

static void count_reject(int status, int bad_protobuf) {
  ss__stats *s = &ss__stats_g;
  switch (status) {
  case 400: bad_protobuf ? s->rej_bad_protobuf++ : s->rej_bad_http++; break;
  case 501: s->rej_bad_http++; break;
  case 404: s->rej_not_found++; break;
  case 405: s->rej_method++; break;
  case 411: s->rej_length_required++; break;
  case 413: s->rej_too_large++; break;
  case 415: s->rej_content_type++; break;
  case 431: s->rej_header_too_large++; break;
  case 503: s->rej_unavailable++; break;
  case 401: s->rej_unauthorized++; break;
  }
}

/* The gRPC status code an HTTP error maps to (the OTLP/HTTP spec's table). */
static int grpc_code(int status) {
  switch (status) {
  case 503: return 14;  /* UNAVAILABLE */
  case 413: return 8;   /* RESOURCE_EXHAUSTED */
  case 404: return 5;   /* NOT_FOUND */
  case 401: return 16;  /* UNAUTHENTICATED */
  case 403: return 7;   /* PERMISSION_DENIED */
  default: return 3;    /* INVALID_ARGUMENT */
  }
}

/* An error response: a google.rpc.Status on the OTLP paths, plain text elsewhere. */
static void respond_error(conn *c, int status, const char *msg, int bad_protobuf) {
  const char *extra = NULL;
  char both[192];
  count_reject(status, bad_protobuf);
  if (status == 405)
    extra = c->route == R_STATS || c->route == R_METRICS ? "Allow: GET, HEAD\r\n"
                                                         : "Allow: POST\r\n";
  if (status == 503) extra = "Retry-After: 5\r\n";
  if (status == 401) extra = "WWW-Authenticate: Bearer realm=\"spanshimd\"\r\n";
  if (status == 415 && c->encoding == SS_CE_UNSUPPORTED) extra = "Accept-Encoding: gzip, deflate\r\n";
  if (c->counted >= 0) { /* the sender need not count them: see count_refused */
    snprintf(both, sizeof both, "%sSpanshim-Refused-Counted: %" PRId64 "\r\n",
             extra ? extra : "", c->counted);
    extra = both;
    c->counted = -1;
  }
  ss__buf_reset(&scratch);
  if (is_otlp(c->route) && c->fmt == SS_FMT_JSON) {
    ss__buf_printf(&scratch, "{\"code\":%d,\"message\":", grpc_code(status));
    ss__jw_str(&scratch, msg, strlen(msg));
    ss__buf_putc(&scratch, '}');
    respond(c, status, "application/json", scratch.data, scratch.len, extra);
  } else if (is_otlp(c->route)) {
    rpc_status(&scratch, grpc_code(status), msg);
    respond(c, status, "application/x-protobuf", scratch.data, scratch.len, extra);
  } else {
    ss__buf_printf(&scratch, "%s\n", msg);
    respond(c, status, "text/plain; charset=utf-8", scratch.data, scratch.len, extra);
  }
}

static const char *status_message(int status) {
  switch (status) {
  case 400: return "malformed HTTP request";
  case 404: return "not found: spanshimd serves POST /v1/traces, /v1/logs, /v1/metrics, GET /stats";
  case 405: return "method not allowed";
  case 411: return "Content-Length or Transfer-Encoding: chunked required";
  case 413: return "request body too large";
  case 415: return "unsupported content type: use application/x-protobuf or application/json";
  case 431: return "request head too large";
  case 501: return "transfer coding not implemented: use chunked alone";
  case 401: return "a valid Authorization: Bearer token is required on this port";
  case 403: return "not of the traced tree";
  case 503: return "the collector is stopping, or has no room for this connection";
  default: return reason_phrase(status);
  }
}

/* ---- requests ---- */

static int route_of(const conn *c, const char *p, size_t n) {
  if (c->metrics_port) return n == 8 && memcmp(p, "/metrics", 8) == 0 ? R_METRICS : R_NONE;
  if (n == 10 && memcmp(p, "/v1/traces", 10) == 0) return R_TRACES;
  if (n == 8 && memcmp(p, "/v1/logs", 8) == 0) return R_LOGS;
  if (n == 11 && memcmp(p, "/v1/metrics", 11) == 0) return R_OTLP_METRICS;
  if (n == 6 && memcmp(p, "/stats", 6) == 0) return R_STATS;
  return R_NONE;
}

static int method_is(const ss__http_req *r, const char *m) {
  return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

/* --listen-token: exactly one Authorization header, with the token. */
static int token_ok(const ss__http_req *r) {
  return r->authorizations == 1 &&
         ss__bearer_ok(opts, r->authorization, r->authorization_len);
}

/* ---- refused requests: what they held is counted ----
 * libspanshim never sends a refused request again: it counts the spans of a refusal it
 * reads as dropped. An exiting process reads answers only for a moment, so a refusal
 * that comes later would be counted by nobody. spanshimd therefore counts the spans and
 * log records of every libspanshim request it refuses (spans_refused, logs_refused) and
 * says so in the answer (Spanshim-Refused-Counted: N), which tells the shim not to count
 * them too. Other senders (SDKs retry what is refusable, or count it themselves) are
 * answered as before. */

/* A body over --max-body is read past (without keeping it) up to this size, so the
 * requests behind it on the connection are still served; a bigger one closes it. */
static uint64_t discard_max(void) {
  uint64_t four = 4 * (uint64_t)opts->max_body;
  return four > LINGER_MAX_BYTES ? four : LINGER_MAX_BYTES;
}

/* Whether c's request, refused, is counted here: libspanshim's traces or logs. */
static int counts_refusals(const conn *c) {
  return c->from_shim && (c->route == R_TRACES || c->route == R_LOGS) &&
         c->fmt == SS_FMT_PROTO && c->encoding == SS_CE_IDENTITY;
}

/* Counts the items of c's refused request, whose body is body[0..len) (as sent: the
 * answer then says how many). A body that is not such a request counts nothing. */
static void count_refused(conn *c, const uint8_t *body, size_t len) {
  ss__item_count ic;
  if (!counts_refusals(c)) return;
  ss__item_count_begin(&ic, c->route == R_LOGS, len);
  ss__item_count_feed(&ic, body, len);
  if (ss__item_count_end(&ic) == 0) {
    ss__item_count_stats(&ic);
    c->counted = (int64_t)ic.items;
  }
}

/* A body too big to keep, of len bytes: its head is let go, the body read past as it
 * comes (discard_step), its items counted when it is a shim's, then refused (c->status). */
static void discard_begin(conn *c, uint64_t len) {
  c->in_off += c->head_len;
  c->head_len = 0;
  c->discard_left = len;
  if (counts_refusals(c) && (c->ic = malloc(sizeof *c->ic)) != NULL)
    ss__item_count_begin(c->ic, c->route == R_LOGS, len);
}

/* Reads past what has come of a discarded body: 1 once all of it is gone, else 0. */
static int discard_step(conn *c) {
  size_t avail = c->in_len - c->in_off;
  size_t take = avail < c->discard_left ? avail : (size_t)c->discard_left;
  if (c->ic) ss__item_count_feed(c->ic, (const uint8_t *)c->in + c->in_off, take);
  c->in_off += take;
  c->discard_left -= take;
  if (c->discard_left > 0) return 0;
  if (c->ic) {
    if (ss__item_count_end(c->ic) == 0) {
      ss__item_count_stats(c->ic);
      c->counted = (int64_t)c->ic->items;
    }
    free(c->ic);
    c->ic = NULL;
  }
  return 1;
}

static void refuse_from_here(conn *c, int status);

/* A pending Unix peer's first request: admitted when it carries the tree's token (tree.c),
 * remembered then if it was seen running at accept; else it and every request after it
 * on the connection are refused (403; see refuse_from_here). 0 when admitted, -1 when
 * refused. */
static int admit_pending(conn *c, const ss__http_req *r) {
  c->pending = 0;
  n_pending--;
  if (!ss__tree_token_ok(r->tree_token, r->tree_token_len)) {
    char why[160];
    snprintf(why, sizeof why, "%s; and %s", c->why ? c->why : "not admitted",
             r->tree_token ? "not the traced tree's token" : "no traced tree's token");
    ss__say_refused(c->fd, why);
    ss__stats_g.peers_refused++;
    refuse_from_here(c, 403);
    return -1;
  }
  ss__stats_g.tree_token_admitted++;
  if (c->id.pid > 0) ss__tree_remember(&c->id);
  return 0;
}

/* Decides the outcome of a request from its head alone where possible. Returns 1 when
 * the connection must be answered and closed now (the body cannot be framed or is too
 * big to skip), else 0 with c->status 0 (serve) or the error to send after the body. */
static int frame_request(conn *c, const ss__http_req *r) {
  ss__stats_g.requests++;
  c->route = route_of(c, r->path, r->path_len);
  c->is_head = method_is(r, "HEAD");
  c->keep_alive = r->minor ? r->connection != SS_CONN_CLOSE : r->connection == SS_CONN_KEEP_ALIVE;
  c->expect_continue = r->expect_continue;
  c->head_len = r->head_len;
  c->body_len = r->content_length > 0 ? (size_t)r->content_length : 0;
  c->raw_len = 0;
  c->from_shim = r->from_shim;
  c->counted = -1;
  c->chunked = r->chunked;
  c->encoding = r->content_encoding;
  c->fmt = r->ctype && ss__http_ieq(r->ctype, r->ctype_len, "application/json") ? SS_FMT_JSON
                                                                              : SS_FMT_PROTO;
  memset(&c->ch, 0, sizeof c->ch);
  c->msg = NULL;
  c->status = 0;
  c->body_start_ms = ss__mono_ms();
  if (c->pending) admit_pending(c, r); /* refused: refusing from here on */
  if (c->needs_token && !token_ok(r)) {  /* nothing of a stranger's body is kept */
    c->closing = 1;
    respond_error(c, 401, status_message(401), 0);
    return 1;
  }
  /* --max-body bounds the decoded body; compressed, it may be a little larger than
   * that on the wire when its content does not compress (stored deflate blocks). */
  c->wire_max = opts->max_body;
  if (c->encoding == SS_CE_GZIP || c->encoding == SS_CE_DEFLATE)
    c->wire_max += opts->max_body / 1024 + 1024;
  int otlp = is_otlp(c->route);
  if (c->route == R_NONE) c->status = 404;
  else if (otlp && !method_is(r, "POST")) c->status = 405;
  else if ((c->route == R_STATS || c->route == R_METRICS) && !method_is(r, "GET") && !c->is_head)
    c->status = 405;
  else if (otlp && !r->chunked && r->content_length < 0) c->status = 411;
  else if (otlp && r->content_length > (int64_t)c->wire_max) c->status = 413;
  else if (otlp && c->fmt != SS_FMT_JSON &&
           !(r->ctype && ss__http_ieq(r->ctype, r->ctype_len, "application/x-protobuf")))
    c->status = 415;
  else if (otlp && c->encoding == SS_CE_UNSUPPORTED) {
    c->status = 415;
    c->msg = "unsupported content encoding: use gzip, deflate or identity";
  }
  if (c->refusing && c->status == 0) c->status = c->refuse_status;
  if (c->refusing && !r->chunked && r->content_length >= 0 && !c->expect_continue) {
    discard_begin(c, (uint64_t)r->content_length); /* read past, counted, refused */
    return 0;
  }
  if (r->content_length > (int64_t)c->wire_max) {
    if (c->status == 0) c->status = 413;
    /* A shim's body is read past whatever its size: its items are counted. */
    if (!c->expect_continue &&
        ((uint64_t)r->content_length <= discard_max() || counts_refusals(c))) {
      discard_begin(c, (uint64_t)r->content_length); /* read past, counted, refused */
      return 0;
    }
    c->closing = 1; /* too big to read past */
    respond_error(c, c->status, status_message(c->status), 0);
    return 1;
  }
  return 0;
}

/* Serves a request whose body (as framed: de-chunked, not yet inflated) is
 * body[0..len). */
static void serve(conn *c, const uint8_t *body, size_t len) {
  if (c->status) {
    count_refused(c, body, len);
    respond_error(c, c->status, c->msg ? c->msg : status_message(c->status), 0);
    return;
  }
  if (c->remember && is_otlp(c->route)) { /* a sender: the traced tree (tree.c) */
    ss__tree_remember(&c->id);
    c->remember = 0;
  }
  if (is_otlp(c->route) && c->encoding != SS_CE_IDENTITY) {
    size_t n;
    int st = ss__inflate(c->encoding, body, len, opts->max_body, &inflated, &inflated_cap, &n);
    if (st != 200) {
      respond_error(c, st,
                    st == 413   ? "request body too large once decompressed"
                    : st == 400 ? "body is not valid data in its Content-Encoding"
                                : "out of memory",
                    st == 400);
      return;
    }
    body = inflated;
    len = n;
  }
  if (c->route == R_STATS) {
    ss__stats_g.stats_requests++;
    ss__buf_reset(&scratch);
    ss__stats_json(&scratch);
    respond(c, 200, "application/json", scratch.data, scratch.len, NULL);
    return;
  }
  if (c->route == R_METRICS) {
    ss__buf_reset(&scratch);
    ss__metrics_text(&scratch);
    respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", scratch.data, scratch.len, NULL);
    return;
  }
  int st, logs = c->route == R_LOGS;
  const char *ctype = c->fmt == SS_FMT_JSON ? "application/json" : "application/x-protobuf";
  if (len == 0 && c->fmt == SS_FMT_PROTO && c->route != R_OTLP_METRICS) {
    /* An empty request (libspanshim's hello before a privilege drop): nothing to write
     * or forward. */
    ss__buf_reset(&scratch);
    ss__export_response(&scratch, logs, c->fmt);
    respond(c, 200, ctype, scratch.data, scratch.len, NULL);
    return;
  }
  const uint8_t *proto = c->fmt == SS_FMT_PROTO ? body : NULL;  /* bytes sinks may reuse */
  if (c->route == R_OTLP_METRICS) {
    /* Taken so SDKs that export metrics too see success; to their file or upstream. */
    st = ss__pipeline_metrics(c->fmt, body, len);
    if (st == 200) {  /* an empty ExportMetricsServiceResponse */
      respond(c, 200, ctype, c->fmt == SS_FMT_JSON ? "{}" : "", c->fmt == SS_FMT_JSON ? 2 : 0,
              NULL);
      return;
    }
  } else if (logs) { /* answered first: symbolization comes after (see spanshimd.h) */
    ss__logs_req *q = ss__pipeline_logs_decode_fmt(c->fmt, body, len, &st);
    if (q) {
      ss__buf_reset(&scratch);
      ss__export_response(&scratch, 1, c->fmt);
      respond(c, 200, ctype, scratch.data, scratch.len, NULL);
      send_now(c);
      ss__pipeline_logs_finish(q, proto, len);
      return;
    }
  } else {
    /* Traces are answered after their pipeline: the answer carries a sink's failure, and
     * a sender waiting for it sends nothing else meanwhile, so a big batch after it is
     * not stalled behind our symbolizing (we read nothing while we work). */
    st = ss__pipeline_traces_fmt(c->fmt, body, len, ss__mono_ms());  /* big: in slices */
  }
  if (st != 200 && c->encoding == SS_CE_IDENTITY) count_refused(c, body, len);
  if (st == 200) {  /* full success, or partial_success for spans with malformed ids */
    ss__buf_reset(&scratch);
    ss__export_response(&scratch, logs, c->fmt);
    respond(c, 200, ctype, scratch.data, scratch.len, NULL);
  } else if (st == 400 && c->fmt == SS_FMT_JSON) {
    char m[300];
    snprintf(m, sizeof m, "body is not a valid OTLP JSON request: %s", ss__pipeline_rejected.msg);
    respond_error(c, 400, m, 1);
  } else if (st == 400) {
    respond_error(c, 400, "body is not a valid OTLP protobuf request", 1);
  } else if (st == 413) {
    respond_error(c, 413, "request decodes to more memory than allowed", 0);
  } else {
    respond_error(c, 503, "cannot write the output file", 0);
  }
}

/* Connections paused for memory may try again (some was given back). */
static void wake_mem_waiters(void) {
  if (n_mem_wait == 0) return;
  for (conn *c = conns; c; c = c->next)
    if (c->mem_wait) {
      c->mem_wait = 0;
      n_mem_wait--;
      set_events(c);
    }
}

int ss__buffer_charge(size_t *charged, size_t want) {
  if (want > *charged && buffered + (want - *charged) > opts->max_buffered) return -1;
  buffered = buffered - *charged + want;
  int gave_back = want < *charged;
  *charged = want;
  if (gave_back) wake_mem_waiters();
  return 0;
}

/* What c's input buffer of cap bytes costs the budget: its bytes beyond READ_MIN that do
 * not fit what is left of its peer's SS_FREE_BUFFER (the uncharged bytes of the peer's
 * other connections use it up), so one peer's thousand connections get one allowance,
 * not a thousand. *peer_charged: what the peer's other connections are charged. */
static size_t charge_for(const conn *c, size_t cap, size_t *peer_charged) {
  /* charged <= above_min(in_cap), always */
  size_t others_free = c->pa->free_used - (above_min(c->in_cap) - c->charged);
  *peer_charged = c->pa->charged - c->charged;
  size_t above = above_min(cap);
  size_t room = SS_FREE_BUFFER > others_free ? SS_FREE_BUFFER - others_free : 0;
  return above > room ? above - room : 0;
}

/* Sets c's input buffer to `cap` bytes (NULL at 0), keeping `buffered` true. */
static int in_resize(conn *c, size_t cap) {
  size_t pc, charge = charge_for(c, cap, &pc);
  int gave_back = charge < c->charged || cap < c->in_cap;
  char *p = NULL;
  if (cap == 0) free(c->in);
  else if ((p = realloc(c->in, cap)) == NULL) return -1;
  c->in = p;
  c->pa->free_used += (above_min(cap) - charge) - (above_min(c->in_cap) - c->charged);
  c->pa->charged += charge - c->charged;
  c->in_cap = cap;
  buffered = buffered - c->charged + charge;  /* checked by in_reserve when it grows */
  c->charged = charge;
  if (gave_back) wake_mem_waiters();
  return 0;
}

/* Makes the input buffer able to hold `need` bytes from in_off, growing it with the bytes
 * that come (doubling, never past a known body's end nor the largest request): 0, -1
 * (out of memory), or -2 when all connections together would hold more than
 * --max-buffered: the connection then stops reading until memory comes back. */
static int in_reserve(conn *c, size_t need) {
  if (c->in_cap - c->in_off >= need) return 0;
  if (c->in_off > 0) {
    memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
    c->in_len -= c->in_off;
    c->in_off = 0;
    if (c->in_cap >= need) return 0;
  }
  size_t cap = c->in_cap ? c->in_cap : READ_MIN;
  while (cap < need) cap *= 2;
  if (c->have_head && !c->chunked && c->head_len + c->body_len >= need &&
      c->head_len + c->body_len < cap)
    cap = c->head_len + c->body_len;
  size_t limit = SS_MAX_HEAD + opts->max_body + READ_MIN;
  if (cap > limit) cap = need > limit ? need : limit;
  size_t pc, charge = charge_for(c, cap, &pc);
  if (charge > c->charged && !c->finishing &&
      (buffered + (charge - c->charged) > opts->max_buffered ||
                              pc + charge > opts->max_buffered_peer)) {
    if (!c->mem_wait) {
      c->mem_wait = 1;
      n_mem_wait++;
      ss__stats_g.buffer_waits++;
    }
    return -2;
  }
  return in_resize(c, cap);
}

/* Whether the current request's body is all here: 1 (c->body_len and c->raw_len set),
 * 0 (not yet), or the status a chunked body that cannot be framed earns (400, 413, 431). */
static int body_ready(conn *c) {
  size_t avail = c->in_len - c->in_off;
  if (!c->chunked) {
    if (avail < c->head_len + c->body_len) return 0;
    c->raw_len = c->body_len;
    return 1;
  }
  int rc = ss__chunked_decode(&c->ch, c->in + c->in_off + c->head_len, avail - c->head_len,
                              c->wire_max);
  if (rc == 1) {
    c->body_len = c->ch.out;
    c->raw_len = c->ch.pos;
  }
  return rc;
}

/* After serving (or failing) a request: a big inflated body's memory goes back. */
static void inflated_trim(void) {
  if (inflated_cap > SHRINK_ABOVE) {
    free(inflated);
    inflated = NULL;
    inflated_cap = 0;
  }
}

/* The request is answered; its `used` bytes of input are let go. */
static void request_done(conn *c, size_t used) {
  c->in_off += used;
  c->have_head = 0;
  c->scan = 0;
  c->req_start_ms = ss__mono_ms();  /* a pipelined request's clock starts now */
}

/* Frames and serves every complete request in the input buffer. */
static void process(conn *c) {
  while (!c->closing && (c->finishing || c->out.len - c->out_off < OUT_HIGH)) {
    if (!c->have_head) {
      size_t avail = c->in_len - c->in_off;
      ss__http_req r;
      int rc = ss__http_parse(c->in + c->in_off, avail, &c->scan, &r);
      if (rc == 0) {
        if (c->eof && avail) ss__stats_g.rej_bad_http++;  /* truncated request */
        return;
      }
      if (rc != 1) {
        ss__stats_g.requests++;
        c->route = R_NONE;  /* nothing of the previous request may shape this answer */
        c->is_head = 0;
        c->encoding = SS_CE_IDENTITY;
        c->closing = 1;
        respond_error(c, rc, status_message(rc), 0);
        return;
      }
      c->have_head = 1;
      if (frame_request(c, &r)) return;
      c->continue_due = c->expect_continue;
    }
    if (c->discard_left > 0 || c->ic != NULL) {
      if (!discard_step(c)) return;
      respond_error(c, c->status, c->msg ? c->msg : status_message(c->status), 0);
      request_done(c, 0);
      continue;
    }
    int rc = body_ready(c);
    if (rc > 1) {  /* a chunked body we cannot frame: where the next request starts is lost */
      c->closing = 1;
      respond_error(c, rc, rc == 400 ? "malformed chunked body" : status_message(rc), 0);
      return;
    }
    if (rc == 0) {
      if (c->continue_due) {
        c->continue_due = 0;
        if (c->status) {  /* refuse before the client sends the body */
          c->closing = 1;
          respond_error(c, c->status, c->msg ? c->msg : status_message(c->status), 0);
          return;
        }
        SS_BUF_LIT(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
      }
      return;
    }
    serve(c, (const uint8_t *)c->in + c->in_off + c->head_len, c->body_len);
    inflated_trim();
    request_done(c, c->head_len + c->raw_len);
  }
}

/* ---- I/O ---- */

static void linger_start(conn *c) {
  shutdown(c->fd, SHUT_WR);
  c->lingering = 1;
  n_lingering++;
  c->linger_until = ss__mono_ms() + LINGER_MS;
}

/* Sends pending output. Returns -1 if the connection was destroyed. */
static int flush(conn *c) {
  while (c->out_off < c->out.len) {
    if (c->out_gone) {
      c->out_off = c->out.len;
      break;
    }
    ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (errno == EPIPE || errno == ECONNRESET) {
        /* The client has closed, but the requests it wrote before are still to be read
         * and served: a sender counts a request written whole as delivered (an exiting
         * traced process writes its last requests without waiting for answers). */
        c->out_gone = 1;
        continue;
      }
      conn_destroy(c);
      return -1;
    }
    c->out_off += (size_t)n;
    c->active_ms = ss__mono_ms();
  }
  if (c->out_off == c->out.len) {
    ss__buf_reset(&c->out);
    c->out_off = 0;
    if (c->closing && !c->lingering) {
      if (c->eof) {
        conn_destroy(c);
        return -1;
      }
      linger_start(c);
    } else if (c->eof && !c->closing) {
      conn_destroy(c);  /* the client is gone and everything it asked is answered */
      return -1;
    }
  }
  set_events(c);
  return 0;
}

static void on_linger_readable(conn *c) {
  char junk[65536];
  ssize_t n = read(c->fd, junk, sizeof junk);
  if (n > 0) c->lingered += (size_t)n;
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) ||
      c->lingered > LINGER_MAX_BYTES)
    conn_destroy(c);
}

static void on_readable(conn *c) {
  if (c->lingering) {
    on_linger_readable(c);
    return;
  }
  int was_idle = c->in_off == c->in_len && !c->have_head;
  for (int i = 0; i < 8 && !c->eof; i++) {
    if (c->in_off == c->in_len) c->in_off = c->in_len = 0;
    if (c->in_cap - c->in_len < READ_MIN &&
        in_reserve(c, c->in_len - c->in_off + READ_MIN) != 0)
      break;
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n > 0) {
      c->active_ms = ss__mono_ms();
      if (was_idle) c->req_start_ms = c->active_ms, was_idle = 0;
      c->in_len += (size_t)n;
      if ((size_t)n < READ_MIN || c->discard_left) break;  /* drained, or read past */
    } else if (n == 0) {
      c->eof = 1;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN) {
      break;
    } else {
      conn_destroy(c);
      return;
    }
  }
  process(c);
  if (c->in_off == c->in_len && !c->have_head) {
    c->in_off = c->in_len = 0;
    if (c->in_cap > SHRINK_ABOVE) in_resize(c, 0);  /* a big body came and went */
  }
  if (c->eof && !c->closing && c->out.len == c->out_off) {
    conn_destroy(c);
    return;
  }
  flush(c);
}

static void on_writable(conn *c) {
  if (flush(c) != 0) return;
  /* Output drained below the mark: serve what was pipelined meanwhile. */
  if (!c->closing && c->in_len > c->in_off) {
    process(c);
    flush(c);
  }
}

/* ---- closing without losing what was sent ----
 * A connection is never closed on requests it has sent that nobody read: the sender
 * (libspanshim) counts a request written whole as the collector's, so one closed unread
 * would be lost and counted nowhere. Before such a close the peer is stopped from sending
 * more (shutdown SHUT_RD: on a Unix socket its next write fails with EPIPE, so each of its
 * requests is here whole or failed at its sender, who counts it then), and what it sent
 * is read to the end: refused with a status (a shim's spans and log records counted in
 * spans_refused and logs_refused, the answers saying so: Spanshim-Refused-Counted) or,
 * for a connection that merely timed out, served. Over TCP the peer can still send after
 * SHUT_RD: what it sent before the last read is answered as above, then the write side is
 * shut after the answers (the peer reads them, then the end) and what still comes is
 * read past until the peer closes (lingering, LINGER_MS at most) rather than closed on,
 * which would reset the connection: a request that met the end before its answer began
 * is not ours, and the shim counts it (over TCP, not as the collector's). */

/* From now on c's requests are all refused with `status`, their bodies read past; the
 * peer can send nothing more. */
static void refuse_from_here(conn *c, int status) {
  if (!c->is_tcp) shutdown(c->fd, SHUT_RD); /* TCP: stops nothing, and reads end at once */
  c->refusing = 1;
  c->refuse_status = status;
}

/* Ends c now: what its peer sent is read to the end and refused with refuse_status (a
 * request framed already included), or served when refuse_status is 0; the answers go
 * out as far as the socket takes them without waiting; c is destroyed, or over TCP left
 * to shut its write side once they are out and linger (see above; finished again, it is
 * destroyed). */
static void finish(conn *c, int refuse_status) {
  if (c->lingering || (c->finishing && c->closing)) {
    /* answered with a close already (or finished before: TCP), what follows is not read */
    send_now(c);
    conn_destroy(c);
    return;
  }
  /* Over TCP a SHUT_RD stops no sender, and a read after it gives 0 as soon as nothing is
   * waiting: the peer's end could not be told from a request still on its way. */
  if (!c->is_tcp) shutdown(c->fd, SHUT_RD);
  c->finishing = 1;
  if (c->mem_wait) {
    c->mem_wait = 0;
    n_mem_wait--;
  }
  if (refuse_status && !c->refusing) {
    refuse_from_here(c, refuse_status);
    if (c->have_head && c->status == 0 && c->ic == NULL && c->discard_left == 0) {
      c->status = refuse_status;  /* the request being read: refused too */
      if (!c->chunked) discard_begin(c, c->body_len);
    }
  }
  process(c);
  int ended = 0;  /* the peer's end (or an error), not merely nothing more yet (TCP) */
  size_t took = 0; /* TCP: a sender that keeps sending is read this far here, then lingered on */
  while (!c->closing && !c->eof && took <= LINGER_MAX_BYTES) {
    if (c->in_off == c->in_len && !c->have_head) c->in_off = c->in_len = 0;
    if (in_reserve(c, c->in_len - c->in_off + READ_MIN) != 0) break;
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) c->in_len += (size_t)n, took += c->is_tcp ? (size_t)n : 0;
    else c->eof = 1, ended = n == 0 || errno != EAGAIN;  /* the end (SHUT_RD), or an error */
    process(c);
  }
  send_now(c);
  if (!c->is_tcp || ended || n_lingering >= LINGER_MAX_CONNS) {
    conn_destroy(c);
    return;
  }
  /* TCP: the rest of the answers go out, then the write side is shut (flush), and what
   * comes after is read past until the peer's end. */
  n_refused_open -= c->refuse_until != 0;
  c->refuse_until = 0;
  c->eof = 0;
  c->closing = 1;
  if (c->lingering == 0 && c->out_off == c->out.len) linger_start(c);
  set_events(c);
}

/* ---- accepting ---- */

static int watch(int fd, void *tag);

/* Takes the listeners off the loop for ACCEPT_PAUSE_MS (listeners_resume puts them
 * back); what connects meanwhile waits in their queues. */
static void listeners_pause(void) {
  if (accept_paused_until) return;
  accept_paused_until = ss__mono_ms() + ACCEPT_PAUSE_MS;
  int lfds[3] = {unix_lfd, tcp_lfd, metrics_lfd};
  for (int i = 0; i < 3; i++)
    if (lfds[i] >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, lfds[i], NULL);
}

static void listeners_resume(uint64_t now) {
  if (accept_paused_until == 0 || now < accept_paused_until) return;
  accept_paused_until = 0;
  watch(unix_lfd, &tag_unix);
  watch(tcp_lfd, &tag_tcp);
  watch(metrics_lfd, &tag_metrics);
}

/* Out of fds (EMFILE, ENFILE), the connection waiting at a listener is still taken:
 * the spare fd is given up for it, and the spare taken back once it is finished (see
 * on_accept). -1 with no spare (it could not be taken back: another fd has its number);
 * the listeners are then off for ACCEPT_PAUSE_MS (level-triggered, the waiting
 * connection would wake us in a loop), the connections left waiting in their queues,
 * not closed. */
static int accept_on_spare(int lfd) {
  if (reserve_fd < 0) reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd < 0) {
    listeners_pause();
    return -1;
  }
  close(reserve_fd);
  reserve_fd = -1;
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return fd;
  reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd < 0 && (errno == EMFILE || errno == ENFILE)) listeners_pause();
  return -1;
}

static peer_acct *peer_find(const ss__peer *who) {
  for (peer_acct *p = peers; p; p = p->next)
    if (memcmp(&p->who, who, sizeof *who) == 0) return p;
  return NULL;
}

/* Whether a new connection of peer pa (NULL: none yet) would take more than its share
 * (ss__peer_cap). */
static int peer_over(const peer_acct *pa) {
  return pa && pa->conns >= ss__peer_cap(n_conns, opts->max_conns, opts->max_conns_per_peer);
}

/* Accepts up to 64 waiting connections: 1 when there may be more, else 0. A connection
 * that may not stay (a peer neither allowed nor able to show the tree's token, the table
 * full, a peer over its share) is not closed unread: what it sent is refused and counted
 * (finish). */
static int on_accept(int lfd, int is_unix, int is_metrics) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), on_spare = 0;
    if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
      if ((fd = accept_on_spare(lfd)) < 0) return 0;
      on_spare = 1;
      /* At once: what the peer writes from now on fails there. Over TCP nothing stops a
       * sender, and its request may still be on its way: it is waited for (below). */
      if (is_unix) shutdown(fd, SHUT_RD);
    }
    if (fd < 0) return 0;  /* EAGAIN, or a connection that died in the backlog */
    ss__peer who;
    ss__proc_id id = {0};
    const char *why = NULL;
    ss__peer_of(fd, is_unix, &who);
    /* On the spare fd: refused (its admission would read /proc, with no fd to do it). */
    int admitted = is_unix && !on_spare ? ss__peer_admit(opts, fd, &id, &why) : -1;
    int refuse = on_spare ? 503 : 0;
    if (on_spare) ss__stats_g.connections_refused++;
    if (admitted == 0 && (ss__tree_token() == NULL || n_pending >= MAX_PENDING)) {
      ss__say_refused(fd, ss__tree_token() ? "too many connections waiting to show the "
                                             "traced tree's token"
                                           : why);
      ss__stats_g.peers_refused++;
      refuse = 403;
    }
    peer_acct *pa = peer_find(&who);
    if (!refuse && (n_conns >= opts->max_conns || peer_over(pa))) {
      if (n_conns >= opts->max_conns) ss__stats_g.connections_refused++;
      else ss__stats_g.peer_limited++;
      refuse = 503;
    }
    if (pa == NULL && (pa = calloc(1, sizeof *pa)) != NULL) {
      pa->who = who;
      pa->next = peers;
      peers = pa;
    }
    conn *c = pa ? conn_add(fd) : NULL;
    if (c == NULL) {  /* out of memory (conn_add closes fd itself) */
      if (pa == NULL) {
        close(fd);
      } else if (pa->conns == 0) {  /* made just now, at the head */
        peers = pa->next;
        free(pa);
      }
      if (on_spare) reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      continue;
    }
    c->metrics_port = is_metrics;
    c->is_tcp = !is_unix;
    c->needs_token = !is_unix && !is_metrics && opts->listen_token_len > 0;
    c->who = who;
    c->id = id;
    c->remember = admitted == 1 && id.pid > 0;
    c->pending = admitted == 0 && !refuse;  /* its first request must carry the token */
    c->why = why;
    n_pending += (size_t)c->pending;
    c->give_token = is_unix && !is_metrics && !refuse;
    c->pa = pa;
    c->spare = on_spare;
    pa->conns++;
    if (refuse) {  /* counted as refused, above; not in the table */
      c->outside = 1;
      n_conns--;
      ss__stats_g.connections--;
      ss__stats_g.connections_open--;
      if (refuse == 403 || (on_spare && is_unix) ||
          (!on_spare && n_refused_open >= MAX_REFUSED_OPEN)) {
        finish(c, refuse);  /* the spare is taken back as c goes (conn_destroy) */
      } else {  /* its requests, coming now, are answered with the refusal and counted (over
                 * TCP the spare's too: it holds the spare until its answer is out) */
        c->refusing = 1;
        c->refuse_status = refuse;
        c->refuse_until = ss__mono_ms() + REFUSED_OPEN_MS;
        n_refused_open++;
      }
    }
  }
  return 1;
}

/* ---- loop ---- */

static void expire_lingering(void) {
  if (n_lingering == 0) return;
  uint64_t now = ss__mono_ms();
  for (conn *c = conns, *next; c; c = next) {
    next = c->next;
    if (c->lingering && now >= c->linger_until) conn_destroy(c);
  }
}

/* Whether c has overstayed: a request head not complete --header-timeout after its first
 * byte (slowloris), a body not complete --body-timeout after its head, or nothing
 * happening for --idle-timeout. */
static int timed_out(const conn *c, uint64_t now) {
  if (c->lingering) return 0;
  if (c->pending) return now - c->active_ms > opts->header_timeout_ms; /* idle or not */
  if (c->have_head) return now - c->body_start_ms > opts->body_timeout_ms;
  if (c->in_len > c->in_off) return now - c->req_start_ms > opts->header_timeout_ms;
  /* With --no-tree an idle Unix-socket peer is kept: it may be a worker that connected
   * before dropping privileges, which could not connect again. */
  if (c->who.kind == 1 && opts->no_tree) return 0;
  return now - c->active_ms > opts->idle_timeout_ms;
}

/* Every SWEEP_MS: closes the connections that timed out (counted), serving what they
 * sent before the close (finish). */
static void sweep(void) {
  uint64_t now = ss__mono_ms();
  if (now < next_sweep_ms) return;
  next_sweep_ms = now + SWEEP_MS;
  for (conn *c = conns, *next; c; c = next) {
    next = c->next;
    if (c->refuse_until && now >= c->refuse_until) {
      finish(c, c->refuse_status);
    } else if (timed_out(c, now)) {
      ss__stats_g.timeouts++;
      finish(c, 0);  /* what came meanwhile, unread yet, is served */
    }
  }
}

static void dispatch(struct epoll_event *e, int *stop) {
  void *p = e->data.ptr;
  if (p == &tag_unix || p == &tag_tcp || p == &tag_metrics) {
    (void)on_accept(p == &tag_unix ? unix_lfd : p == &tag_tcp ? tcp_lfd : metrics_lfd,
                    p == &tag_unix, p == &tag_metrics);
    return;
  }
  if (p == &tag_grpc) {  /* the gRPC module's own epoll: its sockets are ready */
    ss__grpc_events();
    return;
  }
  if (p == &tag_sig) {
    struct signalfd_siginfo si;
    if (read(sig_fd, &si, sizeof si) > 0) {
      if (si.ssi_signo == SIGHUP) ss__sink_reopen();  /* logrotate moved the file */
      else *stop = 1;
    }
    return;
  }
  conn *c = p;
  if (e->events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    on_readable(c);  /* a hang-up shows up as EOF or an error on read */
    return;
  }
  if (e->events & EPOLLOUT) on_writable(c);
}

static int watch(int fd, void *tag) {
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
  return fd < 0 ? 0 : epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

/* At SIGTERM, out of fds: connections with nothing read, nothing to answer and nothing
 * waiting in their sockets are let go (an idle keep-alive connection closed, as HTTP
 * allows), so that those still waiting in the listeners' queues can be taken. */
static void drain_idle(void) {
  for (conn *c = conns, *next; c; c = next) {
    next = c->next;
    char b;
    /* (one on the spare, waiting for a request, is let go too: the spare is wanted) */
    if (c->have_head || c->in_len != c->in_off || c->out_off != c->out.len || c->lingering ||
        c->closing || (c->refusing && !c->spare) || c->discard_left || c->pending)
      continue;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN) conn_destroy(c); /* nothing on its way that has come */
  }
}

static int take_at_stop(int lfd, int is_unix) { return on_accept(lfd, is_unix, 0); }

/* At stop, out of fds: idle connections (ours and gRPC's: the same fd table) let go,
 * events served for up to 10 ms, an answered connection closed (its fd is wanted). */
static void settle_at_stop(void) {
  struct epoll_event evs[64];
  int stop = 0;
  drain_idle();
  ss__grpc_let_idle_go();
  int n = epoll_wait(ep, evs, 64, 10);
  for (int i = 0; i < n; i++) {
    if (evs[i].data.ptr == &tag_sig || evs[i].data.ptr == &tag_grpc ||
        evs[i].data.ptr == &tag_unix || evs[i].data.ptr == &tag_tcp ||
        evs[i].data.ptr == &tag_metrics)
      continue;
    conn *c = evs[i].data.ptr;
    if (c->lingering) conn_destroy(c);
    else dispatch(&evs[i], &stop);
  }
}

/* Whether a connection holds part of a request (its head, or the head and part of the
 * body) and waits for the rest from its peer. */
static int arriving(const conn *c) {
  return !c->lingering && !c->closing && !c->eof && (c->have_head || c->in_len != c->in_off);
}

static int requests_arriving(void) {
  for (conn *c = conns; c; c = c->next)
    if (arriving(c)) return 1;
  return 0;
}

/* After SIGTERM: no new connections, but requests already sitting in socket buffers
 * (a traced program's final flush) are still served, for at most a moment. */
static void drain(void) {
  struct epoll_event evs[64];
  int stop = 0;
  /* Connections already made are served: a shim counts what it wrote as delivered (and
   * under `spanshim run` the command may have started, connected and finished before we
   * took our first connection). The Unix socket takes no more (a connect now fails with
   * ECONNREFUSED, which its sender counts), so none is left unaccepted in its queue. */
  if (unix_lfd >= 0) shutdown(unix_lfd, SHUT_RD);
  /* Out of fds (the listeners paused), connections still wait in the queues: shutting a
   * TCP listener would reset them unread. Fds are freed for them (idle connections let
   * go, the ones being answered served) and the queues taken again, for a moment. */
  ss__listen_take_queues(unix_lfd, tcp_lfd, &accept_paused_until, ss__mono_ms() + 1000,
                         take_at_stop, settle_at_stop);
  if (tcp_lfd >= 0) shutdown(tcp_lfd, SHUT_RD);  /* a TCP listener stops listening */
  if (unix_lfd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, unix_lfd, NULL);
  if (tcp_lfd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, tcp_lfd, NULL);
  if (metrics_lfd >= 0) epoll_ctl(ep, EPOLL_CTL_DEL, metrics_lfd, NULL);
  /* A request partly read waits for the rest within the moment (the gRPC module's and the
   * signals' events served meanwhile); otherwise the moment ends when nothing is ready. */
  uint64_t until = ss__mono_ms() + 500;
  for (uint64_t now; (now = ss__mono_ms()) < until;) {
    int n = epoll_wait(ep, evs, 64, requests_arriving() ? (int)(until - now) : 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    int busy = 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == &tag_sig || evs[i].data.ptr == &tag_grpc) {
        dispatch(&evs[i], &stop);
        continue;
      }
      conn *c = evs[i].data.ptr;
      if (c->lingering) {  /* nothing left to serve there */
        conn_destroy(c);
        continue;
      }
      busy = 1;
      dispatch(&evs[i], &stop);
    }
    if (!busy && !requests_arriving()) break;
  }
  /* Past the moment (or all served): what is left is refused, a shim's items counted; a
   * request still arriving is cut, counted as a timeout. */
  for (conn *c = conns; c; c = c->next)
    if (arriving(c)) ss__stats_g.timeouts++;
  while (conns) finish(conns, 503);
}

int ss__receiver_run(const ss__opts *o, int unix_fd, int tcp_fd, int metrics_fd, int sigfd) {
  struct epoll_event evs[128];
  int stop = 0;
  opts = o;
  unix_lfd = unix_fd;
  tcp_lfd = tcp_fd;
  metrics_lfd = metrics_fd;
  sig_fd = sigfd;
  reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (ss__pipeline_default_sinks(o->file) != 0) return -1;
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || watch(unix_fd, &tag_unix) || watch(tcp_fd, &tag_tcp) ||
      watch(metrics_fd, &tag_metrics) || watch(sigfd, &tag_sig) ||
      watch(ss__grpc_fd(), &tag_grpc)) {
    perror("spanshimd: epoll");
    return -1;
  }
  while (!stop) {
    int timeout = n_lingering ? 100 : n_conns || n_refused_open ? SWEEP_MS : -1;
    if (ss__sampler_enabled()) {
      int64_t next = ss__sampler_tick(ss__mono_ms());
      if (next >= 0 && (timeout < 0 || next < timeout)) timeout = (int)(next + 1);
    }
    int64_t g = ss__grpc_tick(ss__mono_ms());
    if (g >= 0 && (timeout < 0 || g < timeout)) timeout = (int)(g + 1);
    if (accept_paused_until) {
      uint64_t now = ss__mono_ms();
      int left = accept_paused_until > now ? (int)(accept_paused_until - now) + 1 : 0;
      if (timeout < 0 || left < timeout) timeout = left;
    }
    int n = epoll_wait(ep, evs, 128, timeout);
    if (n < 0 && errno != EINTR) {
      perror("spanshimd: epoll_wait");
      break;
    }
    for (int i = 0; i < n; i++) dispatch(&evs[i], &stop);
    listeners_resume(ss__mono_ms());
    expire_lingering();
    sweep();
  }
  drain();
  ss__grpc_stop(500);  /* while the pipeline still has its sinks */
  while (conns) conn_destroy(conns);
  close(ep);
  if (reserve_fd >= 0) close(reserve_fd);
  ss__buf_free(&scratch);
  free(inflated);
  inflated = NULL;
  inflated_cap = 0;
  ss__pipeline_free();
  return 0;
}
