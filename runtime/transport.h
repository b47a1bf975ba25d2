/* transport.h - OTLP/HTTP client: HTTP/1.1 POST with keep-alive over a Unix stream socket
 * or TCP, used by the exporter thread only.
 *
 * The socket lives at a high fd number with FD_CLOEXEC so the app's own fds never collide
 * with it; the shim's close/dup2/dup3/close_range/closefrom guards ask ss__transport_owns
 * and ss__transport_move. `lock` serializes the exporter's use of the fd with those
 * guards; it is held only around one request (bounded by the deadline) and never nests
 * with another lock. Sends use MSG_NOSIGNAL: a dead collector never raises SIGPIPE in the
 * app. */
#ifndef SS_TRANSPORT_H
#define SS_TRANSPORT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <sys/types.h>

typedef struct ss__endpoint {
  int is_unix;
  char path[108];        /* unix: socket path */
  char host[256];        /* tcp: numeric host or name (resolved at connect) */
  char port[8];
  char http_path[256];   /* request target, e.g. /v1/traces */
  char logs_path[256];   /* the same for logs: .../v1/traces becomes .../v1/logs */
  char authority[300];   /* Host header */
} ss__endpoint;

/* Parses "unix:/path[?path=/v1/x]" or "http://host[:port][/path]". When the URL has no
 * path, `default_path` is used. Returns 0 or -EINVAL (https is refused: the shim speaks
 * plain HTTP to a local collector). */
int ss__endpoint_parse(const char *s, const char *default_path, ss__endpoint *e);

/* ---- whom the shim sends to over a Unix socket (issue 14 item 5) ----
 * Spans carry URLs, command lines and stacks, so they go only to a collector the process
 * can trust. "Us" is the effective uid. A socket path is trusted when its directory
 * (lstat: a symlink is refused) is a directory
 *  - owned by us or root — or by anyone when the path was named in the configuration
 *    rather than being the default one (the user chose it; that owner is then trusted
 *    as the listener too), and
 *  - writable by its owner alone; a group/other-writable directory only when it is
 *    sticky (/tmp) and the socket in it (lstat) is owned by a trusted uid;
 * and the process listening on it (SO_PEERCRED: its credentials at listen()) runs as us,
 * root, or that named directory's owner. The default path holds our uid
 * (/tmp/spanshim-$UID) or lives under $XDG_RUNTIME_DIR, so anyone else's directory there
 * is an impostor's. Both checks are plain functions so that a caller with its own rule
 * can reuse them. They
 * return 0, or -EACCES with a one-line reason in why[0..n) (NUL-terminated) for the
 * diagnostics; no allocation, thread-safe, async-signal-safe. */
#define SS_UID_NONE ((uid_t)-1)
/* Checks sock_path's directory (and, in a sticky shared directory, the socket itself).
 * named: the path came from the configuration. *dir_owner gets the directory's owner
 * (trusted as the listener when named) or SS_UID_NONE. */
int ss__unix_dir_trusted(const char *sock_path, int named, uid_t *dir_owner, char *why,
                         size_t n);
/* Checks the listener on connected socket fd: us, root or also_ok (SS_UID_NONE: none). */
int ss__unix_peer_trusted(int fd, uid_t also_ok, char *why, size_t n);

typedef struct ss__transport {
  ss__endpoint ep;
  int named;                   /* unix: the path is not the default socket's */
  uint64_t refused;            /* connections refused by the checks above */
  uid_t listener_uid;          /* unix: the listener's uid as of the last connection made
                                  (SO_PEERCRED), else SS_UID_NONE */
  char refused_why[200];       /* the last reason logged (logged again when it changes) */
  char *extra_headers;         /* "K: V\r\n..." built from OTEL_EXPORTER_OTLP_HEADERS */
  char *logs_headers;          /* the same from OTEL_EXPORTER_OTLP_LOGS_HEADERS, or NULL:
                                  sent instead on requests to ep.logs_path */
  _Atomic int fd;              /* -1 when not connected */
  _Atomic int cut;             /* the fd guards shut the connection down under a request
                                  in flight (the app closed or dup2'd over it): its
                                  failure is ours, not a stale keep-alive connection */
  int no_resolver;             /* a TCP endpoint's name is not looked up (getaddrinfo): the
                                  last address it connected to, a numeric host or localhost
                                  only (a dying thread's, in a signal handler) */
  int own_table;               /* used only by a thread with an fd table of its own
                                  (runtime/ownfd.h): fd is a number in that table */
  pthread_mutex_t lock;        /* leaf lock: see above */
  uint64_t retry_at_ms;        /* monotonic; no connect attempt before it */
  int dial_err;                /* errno of the failed attempt that set retry_at_ms */
  uint32_t backoff_ms;
  /* Requests written with ss__transport_send and not answered yet (HTTP/1.1 pipelining:
   * an exiting process writes every request before it reads any answer), and the bytes
   * of answers read ahead. Under `lock`. */
  int unanswered;
  /* A write failed with requests unanswered on the connection: it is kept only for their
   * answers (read by ss__transport_answer, then it is dropped); nothing more is written. */
  int broken;
  size_t rlen;
  char rbuf[4096]; /* last: init leaves it as it is (only rlen bytes are read) */
} ss__transport;

/* Grows this process's fd table to hold the socket's high fd number now, while the
 * process is (normally) single-threaded: growing it later, with the exporter thread
 * running, makes the kernel wait for an RCU grace period (about 10 ms). Call at init. */
void ss__transport_prepare_fd_table(void);

/* Sets up (no connection yet). headers may be NULL. 0 or -errno. */
int ss__transport_init(ss__transport *t, const ss__endpoint *ep, const char *otlp_headers);
/* Sets t up as a second transport to like's endpoint, with like's headers (shared, not
 * copied: like outlives t), not connected. own_table: t is used only by a thread with an
 * fd table of its own. */
void ss__transport_init_like(ss__transport *t, const ss__transport *like, int own_table);
/* Headers for the logs path only (OTEL_EXPORTER_OTLP_LOGS_HEADERS, "k=v,..."). 0 or
 * -ENOMEM. */
int ss__transport_set_logs_headers(ss__transport *t, const char *otlp_headers);
/* Who may write, and what a request written whole hands over. The exporter's exact
 * accounting (exporter.c) needs to know, without a race against an exiting thread that
 * gives up on it, whether the collector has the whole request: `enter` is called before
 * each write and may refuse it (the post then fails with -ECANCELED and the connection is
 * dropped, so the collector discards the partial request); `leave` is called after each
 * write that `enter` allowed, with all_written = 1 after the one that completed the request,
 * and with all_written = -1 (inside its own enter) when a request written whole met a
 * stale keep-alive connection (closed by the peer before it read anything) and is to be
 * sent again on a new one. */
typedef struct ss__post_gate {
  int (*enter)(void *arg);                 /* 0: go on; else refuse */
  void (*leave)(void *arg, int all_written);
  void *arg;
} ss__post_gate;

/* Added to a refusal's HTTP status when the answer says the collector counted what the
 * request held (spanshimd's Spanshim-Refused-Counted header: spans_refused in its
 * /stats), so the sender does not count it as dropped too. */
#define SS_HTTP_COUNTED 0x10000

/* POSTs body as application/x-protobuf to the endpoint, connecting (or reconnecting once
 * on a stale keep-alive connection) as needed, within the monotonic deadline. Returns the
 * HTTP status (with SS_HTTP_COUNTED), or -errno (-EAGAIN while backing off after a failed
 * connect; -ECONNRESET when the connection ended before any byte of the answer, by the
 * peer's close or a reset; -ESHUTDOWN instead when the fd guards cut it here after the
 * request was written whole). */
int ss__transport_post(ss__transport *t, const void *body, size_t len, uint64_t deadline_ms);
/* The same to another request target on the same endpoint (the logs path). */
int ss__transport_post_to(ss__transport *t, const char *path, const void *body, size_t len,
                          uint64_t deadline_ms);
/* Before a privilege drop: makes sure the collector knows this process, so that it
 * admits the process's connections after the drop as part of the traced tree (spanshimd
 * remembers a process that sent an OTLP request while its uid was admitted, and admits
 * it and its descendants whatever their uid later; tools/spanshimd/tree.c). Sends an
 * empty traces request on a connection of its own, like's endpoint and headers, and
 * waits for the answer until the monotonic deadline; the connection is closed before it
 * returns. 0 once the collector answered 2xx, else -errno or the HTTP status. Any thread;
 * the fd is born out of the app's way (runtime/ownfd.h). */
int ss__transport_hello(const ss__transport *like, uint64_t deadline_ms);
/* The same through a gate (NULL: none). */
int ss__transport_post_gated(ss__transport *t, const char *path, const void *body, size_t len,
                             uint64_t deadline_ms, const ss__post_gate *g);
/* Pipelining, for a process that is about to end: writes the request (connecting, or
 * first replacing a connection the peer has closed) and returns without waiting for
 * the answer: 0 once the request is written whole (the gate said so), else -errno (the
 * connection is then dropped, or, when requests written before are unanswered, kept for
 * their answers alone: read them with ss__transport_answer). Several requests may be written before any answer is
 * read; ss__transport_post* must not be used while any is unanswered. */
int ss__transport_send(ss__transport *t, const char *path, const void *body, size_t len,
                       uint64_t deadline_ms, const ss__post_gate *g);
/* Reads the answer to the oldest unanswered request, waiting until the deadline at most:
 * its HTTP status (with SS_HTTP_COUNTED), or -errno (-ETIMEDOUT: not yet; the request
 * stays unanswered; -ECONNRESET / -ESHUTDOWN as for ss__transport_post), or -ENOENT when
 * none is unanswered. *rest_refused is set when the collector closes the
 * connection after this answer: the requests written after it will not be served (the
 * connection is dropped and nothing is unanswered any more). */
int ss__transport_answer(ss__transport *t, uint64_t deadline_ms, int *rest_refused);
/* Gives up on the answers still due: reads what has arrived without waiting and drops
 * the connection when any is still unanswered. */
void ss__transport_abandon(ss__transport *t);
/* Connects now unless connected or backing off after a failed attempt. 0 when connected,
 * else -errno (then nothing can be sent before the backoff ends): the dial's error, or
 * while backing off -EAGAIN, or -EMFILE/-ENFILE when the failed attempt found no fd to
 * make (the calling thread's fd table is full: another thread's may not be). */
int ss__transport_ready(ss__transport *t, uint64_t deadline_ms);
void ss__transport_close(ss__transport *t);
/* 1 when the collector admits us for sure (TCP; our effective uid is root or the
 * listener's; or we hold the traced tree's token, which admits us also once we have
 * ended); 0 when it may admit us only as part of the traced tree by our pid (we changed
 * user: tools/spanshimd/tree.c), which it decides when it accepts the connection, looking
 * at us while we run: a request written whole is taken only once it is answered (a
 * process that ends first is refused). Any thread. */
int ss__transport_admits_us(const ss__transport *t);
/* 1 when the collector is known to count the spans and records of a request of ours it
 * refuses (spanshimd: an answer said so, or carried the traced tree's token, here or in
 * the process this one was forked from; or the process listening on the Unix socket runs
 * a program named spanshimd, or `spanshim run` handing its socket to its private
 * spanshimd): a request written whole is then accounted for whether or
 * not its answer is read. Any thread, signal-safe. */
int ss__transport_counts_refusals(void);
/* Whether this process holds the traced tree's token (spanshimd's Spanshim-Tree answer
 * header; sent on every request to a Unix socket from then on). Any thread, signal-safe. */
int ss__transport_has_tree_token(void);
/* For the fd guards: 1 if fd is the transport's socket. Lock-free. */
int ss__transport_owns(ss__transport *t, int fd);
/* Moves the socket to another high fd number (when the app dup2s over ours); on failure
 * the connection is dropped and will be remade. */
void ss__transport_move(ss__transport *t);
/* The app closed fd, our socket (it saw it listed in /proc/self/fd): the connection is
 * dropped so that the number is free when this returns, as the app's close would have
 * freed it; the exporter reconnects when it next sends. A request in flight is cut
 * first (shutdown: it fails at once) and its sender waited for, up to
 * SS_RELEASE_WAIT_MS (then the sender drops the connection as the request fails). A
 * request written whole before the cut is not sent again (the collector has it; only its
 * answer is lost): it counts as delivered. */
#define SS_RELEASE_WAIT_MS 1000
void ss__transport_release(ss__transport *t, int fd);
/* In a fork child: the inherited connection belongs to the parent. Closes our copy and
 * reinitializes the lock. */
void ss__transport_reset_in_child(ss__transport *t);

#endif
