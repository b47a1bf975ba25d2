/* fuzz_grpc.c - the gRPC receiver (grpc.c) as a peer sees it, for fuzz_receiver.c: the
 * input is written, as a client would, to a real connection on a Unix socket that
 * grpc.c serves (libnghttp2's HTTP/2 server session, then our stream callbacks, gRPC
 * framing and answers), and the events are pumped until the server has read it all and
 * closed. The pipeline behind it is reduced to decoding (the harness has no sinks). */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tools/spanshimd/grpc.h"
#include "tools/spanshimd/spanshimd.h"

void ss__fuzz_grpc_h2(const uint8_t *d, size_t n);

/* ---- what grpc.c calls outside the files the harness links ---- */

ss__rejected ss__pipeline_rejected;

int ss__pipeline_traces(const uint8_t *body, size_t len, uint64_t now_ms) {
  int too_big;
  (void)now_ms;
  return ss__decode_traces(body, len, &too_big) ? 200 : too_big ? 413 : 400;
}

ss__logs_req *ss__pipeline_logs_decode(const uint8_t *body, size_t len, int *status) {
  int too_big;
  ss__logs_req *q = ss__decode_logs(body, len, &too_big);
  *status = q ? 200 : too_big ? 413 : 400;
  return q;
}

int ss__pipeline_metrics(int fmt, const uint8_t *body, size_t len) {
  int too_big;
  char err[128];
  return ss__decode_metrics(fmt, body, len, &too_big, err, sizeof err) ? 200
         : too_big                                                     ? 413
                                                                       : 400;
}

int ss__pipeline_logs_finish(ss__logs_req *q, const uint8_t *body, size_t len) {
  (void)q, (void)body, (void)len;
  return 200;
}

void ss__export_response(ss__buf *b, int logs, int fmt) { (void)b, (void)logs, (void)fmt; }

/* tree.c's: every peer admitted by its credentials. */
int ss__peer_admit(const ss__opts *o, int fd, ss__proc_id *id, const char **why) {
  (void)o, (void)fd;
  memset(id, 0, sizeof *id);
  if (why) *why = NULL;
  return 1;
}

void ss__tree_remember(const ss__proc_id *id) { (void)id; }

void ss__say_refused(int fd, const char *why) { (void)fd, (void)why; }

/* (listen.c's; the stop is not fuzzed) */
void ss__listen_take_queues(int unix_lfd, int tcp_lfd, uint64_t *paused_until,
                            uint64_t until_ms, int (*take)(int lfd, int is_unix),
                            void (*settle)(void)) {
  (void)unix_lfd, (void)tcp_lfd, (void)until_ms, (void)take, (void)settle;
  *paused_until = 0;
}

/* listen.c's and receiver.c's per-peer accounting: one peer, the harness's input alone
 * bounds what it holds. */
void ss__peer_of(int fd, int is_unix, ss__peer *who) {
  (void)fd, (void)is_unix;
  memset(who, 0, sizeof *who);
}

size_t ss__peer_cap(size_t n_conns, size_t max_conns, size_t per_peer) {
  (void)n_conns;
  return per_peer ? per_peer : max_conns;
}

int ss__buffer_charge(size_t *charged, size_t want) {
  *charged = want;
  return 0;
}

/* ---- the harness ---- */

/* An abstract Unix socket (no file to clean up), listened on by grpc.c. */
static struct sockaddr_un sa = {.sun_family = AF_UNIX};
static socklen_t sa_len;

static void start(void) {
  static ss__opts o;
  static int started;
  if (started++) return;
  o.max_body = 1u << 16;
  o.max_buffered = o.max_buffered_peer = 1u << 20;  /* as main.c would make them */
  int k = snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "spanshim-fuzz-grpc-%d",
                   (int)getpid());
  sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)k);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sa_len) != 0 || listen(lfd, 16) != 0 ||
      ss__grpc_start(&o, -1, lfd) != 0)
    __builtin_trap();
}

/* Writes the input as a client, then its end; pumps the server until it has closed the
 * connection (every answer read), which must happen: the input is finite. */
void ss__fuzz_grpc_h2(const uint8_t *d, size_t n) {
  start();
  int cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sa_len) != 0) __builtin_trap();
  int sz = 1 << 20;
  setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  if (write(cfd, d, n) != (ssize_t)n) __builtin_trap();  /* fits: max_len is 64 KiB */
  shutdown(cfd, SHUT_WR);
  fcntl(cfd, F_SETFL, O_NONBLOCK);
  char buf[65536];
  int closed = 0;
  for (int i = 0; i < 1000 && !closed; i++) {
    ss__grpc_events();
    for (;;) {
      ssize_t r = read(cfd, buf, sizeof buf);
      if (r > 0) continue;
      if (r == 0) closed = 1;
      break;
    }
  }
  if (!closed) __builtin_trap();  /* the server kept a finished peer's connection */
  close(cfd);
}
