/* hooks.h - what the hook files share: socket address formatting and the DNS cache that
 * lets a connect span name the host a preceding getaddrinfo resolved.
 *
 * The DNS cache is a fixed, direct-mapped array of (address → name) pairs (a newer
 * name for an address, or a colliding address, replaces the old one), written by
 * getaddrinfo hooks on any thread and read by connect hooks on any thread, each slot
 * under its own sequence lock: no allocation, no lock, no system call. */
#ifndef SS_HOOKS_H
#define SS_HOOKS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "runtime/span.h"

#define SS_ADDRSTR 108 /* fits an IPv6 address or a Unix socket path */

typedef struct ss__peer {
  int family;               /* AF_INET, AF_INET6, AF_UNIX; 0 when not traceable */
  int port;                 /* -1 when none */
  char addr[SS_ADDRSTR];    /* numeric address, or the Unix socket path */
  size_t addr_len;          /* strlen(addr) */
  const void *raw;          /* the 4 or 16 address bytes inside the sockaddr */
} ss__peer;

/* socket(2) as the app's call would go: remembers the new fd's socket type. Internal
 * callers (libcurl's default open-socket callback) use this name, never `socket`. */
int ss__socket(int domain, int type, int protocol);
/* The process ends (exit, _exit, a signal's death) or its image is replaced (exec): its
 * parked non-blocking connects (still in progress) end now, outcome unknown as at a close
 * (span status unset), so they are delivered with the rest rather than lost uncounted;
 * libpq's polled connects (PQconnectStart, PQresetStart) too (ss__pq_ending).
 * Async-signal-safe. */
void ss__socket_ending(void);
/* hooks/libpq_state.c: libpq's parked connect spans end, outcome unknown (no call into
 * libpq). Async-signal-safe. */
void ss__pq_ending(void);
/* In a fork child: the parent's parked connect spans are the parent's to end. */
void ss__pq_atfork_child(void);

/* hooks/libcurl.c: 1 while this thread is inside a libcurl transfer call (its socket
 * I/O belongs to the transfer's span). */
int ss__libcurl_busy(void);
/* hooks/libcurl.c: non-NULL while this thread runs an easy transfer whose traceparent
 * goes into the request heads libcurl writes (not through its header list); then every
 * single-buffer socket write first offers itself to ss__libcurl_send: 1 when it was made
 * there (*rc is the app's result, errno set), 0 when the caller makes it as usual.
 * caller: the write's return address (only libcurl's own writes are spliced into). */
extern __thread void *ss__curl_wl __attribute__((tls_model("initial-exec")));
int ss__libcurl_send(int fd, const void *buf, size_t n, int flags, const void *caller,
                     ssize_t *rc);

/* hooks/http.c: HTTP/1.x spans from socket I/O. Roles are set by accept (server) and
 * connect (client) on stream sockets; the I/O hooks report what moved. All of these
 * keep errno; none blocks; cheap when the fd is not a traced socket. */
void ss__http_fd_role(int fd, int server);
/* Holds a finished accept span (b popped, not ended) until fd shows whether it carries
 * HTTP; 1 when held (the caller must not end it), 0 when the caller ends it now. */
int ss__http_hold_accept(int fd, ss__sb *b, uint64_t end_ns);
/* Per fd, what hooks/http.c knows of it (its roles; private to it). */
#define SS_HTTP_FD_MAX 65536
extern _Atomic uint8_t ss__http_roles[2][SS_HTTP_FD_MAX];
/* 1 when the fd's I/O must be reported: a server or client candidate, or traced (roles 1
 * to 3). One load: this is what every read and write of a file or pipe costs. */
static inline int ss__http_watched(int fd) {
  return (unsigned)fd < SS_HTTP_FD_MAX &&
         (uint8_t)(atomic_load_explicit(&ss__http_roles[0][fd], memory_order_relaxed) - 1) < 3;
}
void ss__http_read(int fd, const struct iovec *iov, size_t cnt, ssize_t rc);
/* Before a read on fd, while a young fork child holds spans (ss__exporter_holding): lets
 * them go when fd is an accepted HTTP connection with no request in flight (a server's
 * worker waiting for the next request). errno kept; cold. */
void ss__http_before_read(int fd);
void ss__http_sent(int fd, const struct iovec *iov, size_t cnt, ssize_t rc);
void ss__http_sendfile(int fd, ssize_t rc);
/* Before a write: 1 when it was made here, with a traceparent spliced in (*rc is the
 * app's result, errno set); 0 when the caller makes it and reports with ss__http_sent. */
int ss__http_send(int fd, const struct iovec *iov, size_t cnt, int flags, ssize_t *rc);

/* How spliced bytes are written: fn writes v[0..n) in order and returns the bytes taken
 * (>0), or what the underlying call returned on failure (<= 0, errno/library error state
 * as it left them). */
typedef struct ss__http_writer {
  ssize_t (*fn)(const struct ss__http_writer *w, const struct iovec *v, int n);
  int fd, flags;
  int can_inject; /* 0: never splice on this stream (count the skip) */
  void *obj;      /* TLS: the SSL* or gnutls session */
  void *real;     /* TLS: the library's write function */
} ss__http_writer;

/* Header lines spliced into an outbound stream: buf[off..len) still to go, after `after`
 * more of the app's bytes, in place of the `drop` app bytes that follow those (0: an
 * insertion; else a replacement of as many bytes, as a forwarded traceparent's parent-id).
 * The caller owns buf and the struct, one writer at a time. */
typedef struct ss__splice {
  char *buf;
  uint32_t len, off, after, drop;
} ss__splice;

/* Writes the app's bytes app[0..cnt) (at most 16 buffers) through w with sp's lines
 * spliced in where sp says; returns the app bytes taken, as the app's own call would
 * (our bytes never counted; the bytes they replace count as taken once all of ours went;
 * a call that moved only ours writes again), or w's failure
 * (<= 0, errno as w left it) when none were. sp keeps what is still to go. */
ssize_t ss__splice_send(ss__splice *sp, const ss__http_writer *w, const struct iovec *app,
                        size_t cnt);

/* ss__splice_send on a socket: sendmsg(fd, ..., flags), as send(2) with those flags. */
ssize_t ss__splice_sock(ss__splice *sp, int fd, const struct iovec *iov, size_t cnt,
                        int flags);
/* One traceparent that should have gone out and could not (counted with http.c's). */
void ss__http_count_skipped(void);

/* Plaintext through a TLS library on fd (hooks/tls.c): what the app read or wrote
 * (rc as the library returned it), the handshake's duration, and a write that may be
 * sent here with a traceparent spliced in (as ss__http_send). */
void ss__http_tls_read(int fd, const void *buf, ssize_t rc);
void ss__http_tls_sent(int fd, const void *buf, ssize_t rc);
void ss__http_tls_handshake(int fd, uint64_t ns);
int ss__http_tls_send(const ss__http_writer *w, const void *buf, size_t n, ssize_t *rc);
void ss__http_closed(int fd);
void ss__http_closed_range(unsigned lo, unsigned hi);
void ss__http_atfork_child(void);
/* Set once http.c took a connection slot or held an accept span: before that an exit
 * has nothing of http.c's to settle (and runs none of its code, a page to fault in). */
extern _Atomic int ss__http_used;
void ss__http_exiting_slow(void);
/* The process dies of a signal (why: its name, "SIGTERM"): HTTP requests in flight end
 * now, those without a response as errors (error.type = why). Async-signal-safe; a
 * connection another thread is inside of is left as it is. */
void ss__http_dying(const char *why);
/* The process is exiting: held accept spans are committed and HTTP spans still in
 * flight end now, so they are delivered with the rest: as the exit's close of their
 * connections leaves them (a request not answered yet failed, error.type =
 * connection_closed; a response framed by close complete; others unset). */
static inline void ss__http_exiting(void) {
  if (atomic_load(&ss__http_used)) ss__http_exiting_slow();
}
uint64_t ss__http_injections_skipped_slow(void);
static inline uint64_t ss__http_injections_skipped(void) {
  return atomic_load(&ss__http_used) ? ss__http_injections_skipped_slow() : 0;
}

/* Formats sa; returns 0, or -1 for families the shim does not trace. */
int ss__peer_format(const struct sockaddr *sa, socklen_t len, ss__peer *p);

/* Where a lookup or a connect is made, for lending names (hooks/dns.c): the current
 * span's id, or this thread when no span is current. Call before starting one's own span.
 * No syscall, no lock. */
uint64_t ss__dns_key(void);
/* What ss__dns_key() gave just before b was started (b started, not yet ended): where
 * only a recorded span needs the key, it is worked out after the sampler's decision. */
uint64_t ss__dns_key_of(const ss__sb *b);
/* Records that `name` resolved to this address (4 or 16 bytes by family), at `key`. */
void ss__dns_remember(int family, const void *addr, const char *name, uint64_t key);
/* Copies the name a recent lookup at the same `key` resolved to this address into out;
 * 0, or -1 when there is none (a connect to a bare IP borrows no other lookup's name). */
int ss__dns_lookup(int family, const void *addr, uint64_t key, char *out, size_t cap);
void ss__dns_atfork_child(void);

#endif
