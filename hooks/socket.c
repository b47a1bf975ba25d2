/* socket.c - connect and accept spans; see DESIGN.md §4.
 *
 * `connect` (CLIENT): network.transport, network.type, network.peer.address/port, and
 * server.address when a recent getaddrinfo under the same span (else on the same thread)
 * resolved that address (hooks/dns.c). A non-blocking
 * connect that answers EINPROGRESS is parked in a fixed table and ends when its outcome
 * is known: getsockopt(SO_ERROR), the first read/write/send/recv on the fd, a second
 * connect, or close (outcome unknown: the span ends unset), or the process's end or exec
 * (ss__socket_ending, the same).
 * `accept` (SERVER): peer and local addresses; EAGAIN/EINTR (no connection) is no span.
 *
 * The socket type (stream/datagram) comes from a byte per fd recorded by the socket()
 * hook, so the connect path makes no extra system call; fds the shim did not see created
 * fall back to getsockopt(SO_TYPE). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "hooks/hooks.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/netaddr.h"
#include "hooks/hook.h"
#include "runtime/sys.h"

SS_REAL(socket)
SS_REAL(connect)
SS_REAL(accept)
SS_REAL(accept4)
SS_REAL(getsockopt)
SS_REAL(getsockname)
SS_REAL(getpeername)
SS_REAL(read)
SS_REAL(write)
SS_REAL(send)
SS_REAL(sendto)
SS_REAL(sendmsg)
SS_REAL(recv)
SS_REAL(recvfrom)
SS_REAL(recvmsg)
SS_REAL(readv)
SS_REAL(writev)
SS_REAL(sendfile)
SS_REAL(sendfile64)

/* ---- socket types ---- */
#define FD_TYPES 65536
static _Atomic uint8_t fd_type[FD_TYPES]; /* SOCK_* + 1; 0 unknown */

static inline int sock_type(int fd) {
  if (fd >= 0 && fd < FD_TYPES) {
    int t = atomic_load_explicit(&fd_type[fd], memory_order_relaxed);
    if (t) return t - 1;
  }
  int t = 0;
  socklen_t l = sizeof t;
  if (real_getsockopt()(fd, SOL_SOCKET, SO_TYPE, &t, &l) != 0) return 0;
  return t;
}

static void remember_type(int fd, int type) {
  if (fd >= 0 && fd < FD_TYPES)
    atomic_store_explicit(&fd_type[fd], (uint8_t)((type & 0xf) + 1), memory_order_relaxed);
}

int ss__socket(int domain, int type, int protocol) {
  int fd = real_socket()(domain, type, protocol);
  if (fd >= 0) remember_type(fd, type);
  return fd;
}
SS_EXPORT int socket(int domain, int type, int protocol) __attribute__((alias("ss__socket")));

/* ---- addresses ---- */
int ss__peer_format(const struct sockaddr *sa, socklen_t len, ss__peer *p) {
  p->family = 0;
  p->port = -1;
  p->addr[0] = '\0';
  p->addr_len = 0;
  p->raw = NULL;
  if (sa == NULL || len < sizeof(sa_family_t)) return -1;
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const void *)sa;
    p->addr_len = ss__ip4_format((const uint8_t *)&in->sin_addr, p->addr);
    p->port = ntohs(in->sin_port);
    p->raw = &in->sin_addr;
  } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const void *)sa;
    p->addr_len = ss__ip6_format((const uint8_t *)&in6->sin6_addr, p->addr);
    p->port = ntohs(in6->sin6_port);
    p->raw = &in6->sin6_addr;
  } else if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *un = (const void *)sa;
    size_t n = len > offsetof(struct sockaddr_un, sun_path)
                   ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n > sizeof un->sun_path) n = sizeof un->sun_path;
    if (n > 0 && un->sun_path[0] == '\0') { /* abstract: shown as @name */
      p->addr[0] = '@';
      memcpy(p->addr + 1, un->sun_path + 1, n - 1);
      p->addr[n] = '\0';
    } else {
      n = strnlen(un->sun_path, n);
      memcpy(p->addr, un->sun_path, n);
      p->addr[n] = '\0';
    }
    p->addr_len = strlen(p->addr);
  } else {
    return -1;
  }
  p->family = sa->sa_family;
  return 0;
}

/* ss__peer_format with its common case, IPv4, inline (a sampled connect's). */
static inline __attribute__((always_inline)) int peer_format(const struct sockaddr *sa,
                                                             socklen_t len, ss__peer *p) {
  if (sa != NULL && len >= sizeof(struct sockaddr_in) && sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)sa;
    p->family = AF_INET;
    p->port = ntohs(in->sin_port);
    p->raw = &in->sin_addr;
    p->addr_len = ss__ip4_format((const uint8_t *)&in->sin_addr, p->addr);
    return 0;
  }
  return ss__peer_format(sa, len, p);
}

/* 0 when ss__peer_format would format sa (a family the shim traces), else -1; reads only
 * the family. */
static int peer_family_ok(const struct sockaddr *sa, socklen_t len) {
  if (sa == NULL || len < sizeof(sa_family_t)) return -1;
  switch (sa->sa_family) {
    case AF_INET: return len >= sizeof(struct sockaddr_in) ? 0 : -1;
    case AF_INET6: return len >= sizeof(struct sockaddr_in6) ? 0 : -1;
    case AF_UNIX: return 0;
    default: return -1;
  }
}

/* NULL when the socket type is unknown (e.g. the fd is not a socket). */
static const char *transport_name(int family, int type) {
  if (family == AF_UNIX) return "unix";
  if (type == SOCK_STREAM) return "tcp";
  if (type == SOCK_DGRAM) return "udp";
  return NULL;
}

static inline __attribute__((always_inline)) void add_peer_attrs(ss__sb *b, const char *side,
                                                                 const ss__peer *p, int type) {
  int local = side[8] == 'l'; /* "network.local." vs "network.peer." */
  if (p->addr[0] == '\0') return; /* an unnamed Unix socket: nothing to say */
  if (!local) {
    const char *t = transport_name(p->family, type);
    ss__span_str(b, "network.transport", t, t ? strlen(t) : 0); /* a constant: folded */
    if (p->family != AF_UNIX)
      ss__span_str(b, "network.type", p->family == AF_INET6 ? "ipv6" : "ipv4", 4);
  }
  ss__span_str(b, local ? "network.local.address" : "network.peer.address", p->addr,
               p->addr_len);
  if (p->port >= 0) ss__span_int(b, local ? "network.local.port" : "network.peer.port", p->port);
}

static void set_errno_error(ss__sb *b, int err) {
  const char *name = strerrorname_np(err);
  ss__span_error(b, name ? name : "_OTHER", strerrordesc_np(err));
}

/* ---- parked non-blocking connects ---- */
#define PENDING_SLOTS 64
#define PENDING_BYTES 1024

typedef struct pending {
  _Atomic int key; /* 0 free, fd + 1 parked, -1 being written or finished */
  uint64_t rec[PENDING_BYTES / 8];
} pending;

static pending parked[PENDING_SLOTS];
static _Atomic int parked_n;

/* parked_n counts slots in use or being taken: it goes up before a slot is taken and down
 * after it is freed, so 0 means every key is 0 (a fork child and the I/O hooks then touch
 * none of the table). */
static int park(int fd, const ss__sb *b) {
  if (fd < 0) return -1;
  atomic_fetch_add(&parked_n, 1);
  for (int i = 0; i < PENDING_SLOTS; i++) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&parked[i].key, &expected, -1)) continue;
    if (ss__span_park(b, parked[i].rec, sizeof parked[i].rec) == 0) {
      atomic_store(&parked[i].key, 0);
      break;
    }
    atomic_store_explicit(&parked[i].key, fd + 1, memory_order_release);
    return 0;
  }
  atomic_fetch_sub(&parked_n, 1);
  return -1;
}

/* err: 0 connected, > 0 failed with that errno, < 0 outcome unknown (closed first). */
static void finish_parked(int fd, int err) {
  if (fd < 0) return; /* keys are fd + 1: -1 would match a free slot */
  int saved = errno;
  for (int i = 0; i < PENDING_SLOTS; i++) {
    int expected = fd + 1;
    if (!atomic_compare_exchange_strong(&parked[i].key, &expected, -1)) continue;
    int status = SS_STATUS_UNSET;
    if (err > 0) {
      const char *name = strerrorname_np(err);
      const char *desc = strerrordesc_np(err);
      ss__rec_add_str(parked[i].rec, sizeof parked[i].rec, "error.type",
                      name ? name : "_OTHER", strlen(name ? name : "_OTHER"));
      if (desc) ss__rec_add_str(parked[i].rec, sizeof parked[i].rec, NULL, desc, strlen(desc));
      status = SS_STATUS_ERROR;
    }
    ss__rec_finish(parked[i].rec, ss__now_ns(), status);
    atomic_store(&parked[i].key, 0);
    atomic_fetch_sub(&parked_n, 1);
  }
  errno = saved;
}

static inline int any_parked(void) {
  return atomic_load_explicit(&parked_n, memory_order_relaxed) > 0;
}

/* An I/O call on fd returned rc/err: decide the parked connect's outcome if it tells. */
static void io_outcome(int fd, ssize_t rc, int err) {
  if (rc >= 0)
    finish_parked(fd, 0);
  else if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR && err != ENOTCONN)
    finish_parked(fd, err);
}

/* ---- reads and writes: a parked connect's outcome, and HTTP (hooks/http.c) ----
 * Each hook: the real call, then what it tells. A read or write on an fd that is neither
 * a parked connect nor a watched socket costs two loads. */
__attribute__((noinline, cold)) static void parked_io(int fd, ssize_t rc) {
  int err = errno;
  io_outcome(fd, rc, err);
  errno = err;
}

static inline void after_io(int fd, ssize_t rc) {
  if (__builtin_expect(any_parked(), 0)) parked_io(fd, rc);
}

/* Everything but the real call is out of line, so the common case (a file, a pipe, a
 * socket that is not HTTP) stays a load or two on top of the call. */
__attribute__((noinline, cold)) static void read_seen(int fd, void *buf, ssize_t rc, int peek) {
  after_io(fd, rc);
  if (ss__http_watched(fd) && !peek) {
    struct iovec v = {buf, (size_t)(rc > 0 ? rc : 0)};
    ss__http_read(fd, &v, 1, rc);
  }
}

/* Before a read: a young fork child holding spans (exporter.h) that reads an accepted
 * HTTP connection with no request in flight waits for its client's next request (a
 * forking server's worker on a kept-alive connection): what it holds goes out now. One
 * relaxed load when nothing is held. */
static inline void before_read(int fd) {
  if (__builtin_expect(atomic_load_explicit(&ss__exporter_holding, memory_order_relaxed), 0))
    ss__http_before_read(fd);
}

/* A read into one buffer; peeks are not consumed, so they are not seen. */
#define READ_HOOK(name, params, args, fd, buf, peek)                          \
  SS_EXPORT ssize_t name params {                                             \
    before_read(fd);                                                          \
    ssize_t rc = real_##name() args;                                          \
    if (__builtin_expect(any_parked() || ss__http_watched(fd), 0))            \
      read_seen(fd, buf, rc, peek);                                           \
    return rc;                                                                \
  }

READ_HOOK(read, (int fd, void *buf, size_t n), (fd, buf, n), fd, buf, 0)
READ_HOOK(recv, (int fd, void *buf, size_t n, int fl), (fd, buf, n, fl), fd, buf, fl & MSG_PEEK)
READ_HOOK(recvfrom, (int fd, void *buf, size_t n, int fl, struct sockaddr *a, socklen_t *l),
          (fd, buf, n, fl, a, l), fd, buf, fl & MSG_PEEK)

/* A write of one buffer: HTTP may send it itself, splicing a traceparent in. `plain`
 * says a splice may be done (no destination address given). */
#define WRITE_HOOK(name, params, args, fd, buf, n, fl, plain)                   \
  __attribute__((noinline, cold)) static ssize_t name##_seen params {           \
    ssize_t rc;                                                                 \
    struct iovec v_ = {(void *)(buf), (n)};                                     \
    if (!((plain) && ss__http_send(fd, &v_, 1, (fl), &rc))) {                   \
      rc = real_##name() args;                                                  \
      after_io(fd, rc);                                                         \
      ss__http_sent(fd, &v_, 1, rc);                                            \
    } else {                                                                    \
      after_io(fd, rc);                                                         \
    }                                                                           \
    return rc;                                                                  \
  }                                                                             \
  SS_EXPORT ssize_t name params {                                               \
    ssize_t rc;                                                                 \
    if (__builtin_expect(ss__curl_wl != NULL, 0) && (plain) &&                  \
        ss__libcurl_send(fd, buf, n, fl, __builtin_return_address(0), &rc)) {   \
      after_io(fd, rc);                                                         \
      return rc;                                                                \
    }                                                                           \
    if (__builtin_expect(ss__http_watched(fd), 0)) return name##_seen args;     \
    rc = real_##name() args;                                                    \
    after_io(fd, rc);                                                           \
    return rc;                                                                  \
  }

WRITE_HOOK(write, (int fd, const void *buf, size_t n), (fd, buf, n), fd, buf, n, 0, 1)
WRITE_HOOK(send, (int fd, const void *buf, size_t n, int fl), (fd, buf, n, fl), fd, buf, n, fl, 1)
WRITE_HOOK(sendto,
           (int fd, const void *buf, size_t n, int fl, const struct sockaddr *a, socklen_t l),
           (fd, buf, n, fl, a, l), fd, buf, n, fl, a == NULL)

SS_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt) {
  before_read(fd);
  ssize_t rc = real_readv()(fd, iov, cnt);
  after_io(fd, rc);
  if (__builtin_expect(ss__http_watched(fd), 0) && cnt > 0)
    ss__http_read(fd, iov, (size_t)cnt, rc);
  return rc;
}

SS_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl) {
  before_read(fd);
  ssize_t rc = real_recvmsg()(fd, m, fl);
  after_io(fd, rc);
  if (__builtin_expect(ss__http_watched(fd), 0) && !(fl & MSG_PEEK) && m && m->msg_iovlen > 0)
    ss__http_read(fd, m->msg_iov, m->msg_iovlen, rc);
  return rc;
}

SS_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  ssize_t rc;
  if (__builtin_expect(ss__http_watched(fd), 0) && cnt > 0) {
    if (!ss__http_send(fd, iov, (size_t)cnt, 0, &rc)) {
      rc = real_writev()(fd, iov, cnt);
      ss__http_sent(fd, iov, (size_t)cnt, rc);
    }
    after_io(fd, rc);
    return rc;
  }
  rc = real_writev()(fd, iov, cnt);
  after_io(fd, rc);
  return rc;
}

SS_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl) {
  ssize_t rc;
  if (__builtin_expect(ss__http_watched(fd), 0) && m && m->msg_iovlen > 0) {
    /* Ancillary data or an address: observed only, never re-sent by us. */
    int plain = m->msg_name == NULL && m->msg_controllen == 0;
    if (!(plain && ss__http_send(fd, m->msg_iov, m->msg_iovlen, fl, &rc))) {
      rc = real_sendmsg()(fd, m, fl);
      ss__http_sent(fd, m->msg_iov, m->msg_iovlen, rc);
    }
    after_io(fd, rc);
    return rc;
  }
  rc = real_sendmsg()(fd, m, fl);
  after_io(fd, rc);
  return rc;
}

/* A response body sent from a file: framing only. */
#define SENDFILE_HOOK(name, off_type)                                            \
  SS_EXPORT ssize_t name(int out, int in, off_type *off, size_t count) {         \
    ssize_t rc = real_##name()(out, in, off, count);                             \
    after_io(out, rc);                                                           \
    if (__builtin_expect(ss__http_watched(out), 0)) ss__http_sendfile(out, rc);  \
    return rc;                                                                   \
  }
SENDFILE_HOOK(sendfile, off_t)
SENDFILE_HOOK(sendfile64, off64_t)

SS_EXPORT int getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  int rc = real_getsockopt()(fd, level, name, val, len);
  if (__builtin_expect(any_parked(), 0) && rc == 0 && level == SOL_SOCKET &&
      name == SO_ERROR && val && len && *len >= sizeof(int)) {
    int err = errno, soerr;
    memcpy(&soerr, val, sizeof soerr);
    if (soerr != 0) {
      finish_parked(fd, soerr);
    } else {
      /* SO_ERROR is also 0 while the handshake is still running: confirm. */
      struct sockaddr_storage ss;
      socklen_t sl = sizeof ss;
      if (real_getpeername()(fd, (struct sockaddr *)&ss, &sl) == 0) finish_parked(fd, 0);
    }
    errno = err;
  }
  return rc;
}

static void forget_listener(int fd);
static _Atomic int listeners_n;

void ss__socket_fd_closed(int fd) {
  /* Stored only when set: writing even a zero into a page nobody wrote allocates it (a
   * fork child's close would pay a page of this table for nothing). */
  if (fd >= 0 && fd < FD_TYPES && atomic_load_explicit(&fd_type[fd], memory_order_relaxed))
    atomic_store_explicit(&fd_type[fd], 0, memory_order_relaxed);
  ss__http_closed(fd);
  if (__builtin_expect(any_parked(), 0)) finish_parked(fd, -1);
  if (atomic_load_explicit(&listeners_n, memory_order_relaxed) > 0) forget_listener(fd);
}

void ss__socket_fds_closed(unsigned lo, unsigned hi) {
  ss__http_closed_range(lo, hi);
  if (!any_parked()) return;
  for (int i = 0; i < PENDING_SLOTS; i++) {
    int key = atomic_load(&parked[i].key);
    if (key > 0 && (unsigned)(key - 1) >= lo && (unsigned)(key - 1) <= hi)
      finish_parked(key - 1, -1);
  }
}

void ss__socket_ending(void) {
  ss__pq_ending();
  if (!any_parked()) return;
  for (int i = 0; i < PENDING_SLOTS; i++) {
    int key = atomic_load(&parked[i].key);
    if (key > 0) finish_parked(key - 1, -1);
  }
}

void ss__socket_atfork_prepare(void) {
  /* Resolved once in the forking parent, not in every child (a dlsym there faults in
   * pages of the loader's and libc's, ~8 faults of ~40 us each on a VM). */
  (void)real_socket();
  (void)real_connect();
  (void)real_read();
  (void)real_write();
  (void)real_send();
  (void)real_recv();
  (void)real_sendto();
  (void)real_recvfrom();
  ss__fdguard_atfork_prepare();
}

SS_FORK_TEXT void ss__socket_atfork_child(void) {
  /* The parent finishes its parked connects; the child forgets them. With none parked
   * the 64 KiB table is not touched at all (even reading a page the parent never used
   * faults it in); else only keys in use are written. */
  if (atomic_load(&parked_n) != 0) {
    for (int i = 0; i < PENDING_SLOTS; i++)
      if (atomic_load_explicit(&parked[i].key, memory_order_relaxed) != 0)
        atomic_store(&parked[i].key, 0);
    atomic_store(&parked_n, 0);
  }
  ss__dns_atfork_child();
  ss__http_atfork_child();
  ss__pq_atfork_child();
}

/* ---- connect ---- */
/* A connected (or connecting) stream socket may carry HTTP requests. type: the socket's,
 * or -1 when not looked up yet. */
static void client_role(int fd, int rc, int err, int type) {
  if ((rc == 0 || err == EINPROGRESS) && (type < 0 ? sock_type(fd) : type) == SOCK_STREAM)
    ss__http_fd_role(fd, 0);
}

/* 1 when fd has a parked connect. */
static int is_parked(int fd) {
  for (int i = 0; i < PENDING_SLOTS; i++)
    if (atomic_load_explicit(&parked[i].key, memory_order_acquire) == fd + 1) return 1;
  return 0;
}

/* Whether the kernel read the whole address: a bad fd is refused before it looks at it,
 * so is a length over sizeof(struct sockaddr_storage), and EFAULT says it could not. */
static int addr_was_read(int rc, int err, socklen_t len) {
  return rc == 0 || (err != EFAULT && err != EBADF && err != ENOTSOCK &&
                     !(err == EINVAL && len > sizeof(struct sockaddr_storage)));
}

SS_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  if (!ss__active(SS_HOOK_SOCKET)) {
    int rc = real_connect()(fd, addr, len), err = errno;
    if (ss__active(SS_HOOK_HTTP)) client_role(fd, rc, err, -1);
    errno = err;
    return rc;
  }
  if (__builtin_expect(any_parked(), 0) && is_parked(fd)) { /* a second connect on it */
    int rc = real_connect()(fd, addr, len), err = errno;
    if (rc == 0 || err == EISCONN)
      finish_parked(fd, 0);
    else if (err != EALREADY && err != EINPROGRESS && err != EINTR)
      finish_parked(fd, err);
    errno = err;
    return rc;
  }
  ss__sb b;
  char server[128];
  ss__span_start(&b, "connect", SS_KIND_CLIENT);
  int rc = real_connect()(fd, addr, len);
  int err = errno;
  /* The app's address is read only once the kernel has: a bad pointer is the app's
   * EFAULT, never a crash of ours. A family the shim does not trace makes no span. */
  ss__peer peer;
  int known = addr_was_read(rc, err, len);
  /* A span that is not recorded needs only to know the family is one we trace. */
  if ((known && (b.recording ? peer_format(addr, len, &peer) : peer_family_ok(addr, len)) != 0) ||
      (rc != 0 && err == EFAULT)) {
    ss__span_pop(&b);
    if (ss__cfg.hooks & SS_HOOK_HTTP) client_role(fd, rc, err, -1);
    errno = err;
    return rc;
  }
  int type = -1;
  if (b.recording && known) {
    type = sock_type(fd);
    add_peer_attrs(&b, "network.peer.", &peer, type);
    if (peer.family != AF_UNIX &&
        ss__dns_lookup(peer.family, peer.raw, ss__dns_key_of(&b), server, sizeof server) == 0)
      ss__span_str(&b, "server.address", server, (size_t)-1);
  }
  if (ss__cfg.hooks & SS_HOOK_HTTP) client_role(fd, rc, err, type);
  if (rc != 0 && err == EINPROGRESS) {
    ss__span_pop(&b);
    if (b.recording && park(fd, &b) != 0) ss__span_end(&b); /* no room: end it now */
  } else {
    if (rc != 0) set_errno_error(&b, err);
    ss__span_end(&b);
  }
  errno = err;
  return rc;
}

/* ---- accept ---- */
#define LISTENERS 32

typedef struct listener {
  _Atomic int key; /* 0 free, fd + 1 cached, -1 busy */
  ss__peer local;
} listener;

static listener listeners[LISTENERS];

/* The listening socket's local address, cached per fd (one getsockname per listener). */
static int local_addr(int lfd, ss__peer *out) {
  if (lfd < 0) return -1;
  for (int i = 0; i < LISTENERS; i++) {
    int expected = lfd + 1;
    if (atomic_compare_exchange_strong(&listeners[i].key, &expected, -1)) {
      *out = listeners[i].local;
      atomic_store(&listeners[i].key, lfd + 1);
      return 0;
    }
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (real_getsockname()(lfd, (struct sockaddr *)&ss, &sl) != 0 ||
      ss__peer_format((struct sockaddr *)&ss, sl, out) != 0)
    return -1;
  out->raw = NULL;
  for (int i = 0; i < LISTENERS; i++) {
    int expected = 0;
    if (atomic_compare_exchange_strong(&listeners[i].key, &expected, -1)) {
      listeners[i].local = *out;
      atomic_fetch_add(&listeners_n, 1);
      atomic_store(&listeners[i].key, lfd + 1);
      break;
    }
  }
  return 0;
}

static void forget_listener(int fd) {
  if (fd < 0) return;
  for (int i = 0; i < LISTENERS; i++) {
    int expected = fd + 1;
    if (atomic_compare_exchange_strong(&listeners[i].key, &expected, -1)) {
      atomic_fetch_sub(&listeners_n, 1);
      atomic_store(&listeners[i].key, 0);
    }
  }
}

/* The accepted socket has its listener's type, and a stream may carry HTTP requests. */
static int accepted(int lfd, int fd) {
  int type = sock_type(lfd);
  remember_type(fd, type);
  if (type == SOCK_STREAM) ss__http_fd_role(fd, 1);
  return type;
}

static int accept_common(int lfd, struct sockaddr *addr, socklen_t *alen, int flags, int is4) {
  ss__sb b;
  ss__span_start(&b, "accept", SS_KIND_SERVER);
  int fd = is4 ? real_accept4()(lfd, addr, alen, flags) : real_accept()(lfd, addr, alen);
  int err = errno;
  if (fd < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)) {
    ss__span_pop(&b); /* no connection, no span */
    errno = err;
    return fd;
  }
  int type = fd >= 0 ? accepted(lfd, fd) : 0;
  if (b.recording) {
    ss__peer peer, local;
    if (fd < 0) type = sock_type(lfd);
    /* The peer from the kernel into our own buffer: the app's address arguments are never
     * read (they may be bad pointers, or a buffer the address was cut to fit). */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd >= 0 && real_getpeername()(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        ss__peer_format((struct sockaddr *)&ss, sl, &peer) == 0)
      add_peer_attrs(&b, "network.peer.", &peer, type);
    if (local_addr(lfd, &local) == 0) add_peer_attrs(&b, "network.local.", &local, type);
    if (fd < 0) set_errno_error(&b, err);
    ss__span_pop(&b);
    /* A connection that may carry HTTP: its fate decides (hooks/http.c). */
    if (!(fd >= 0 && ss__http_watched(fd) && ss__http_hold_accept(fd, &b, ss__now_ns())))
      ss__span_end(&b);
  } else {
    ss__span_pop(&b);
  }
  errno = err;
  return fd;
}

/* Socket spans off: still note what HTTP needs of the new socket. */
static int accept_untraced(int lfd, int fd) {
  if (fd >= 0 && ss__active(SS_HOOK_HTTP)) {
    int err = errno;
    accepted(lfd, fd);
    errno = err;
  }
  return fd;
}

SS_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len) {
  ss__exporter_before_wait();
  if (!ss__active(SS_HOOK_SOCKET)) return accept_untraced(fd, real_accept()(fd, addr, len));
  return accept_common(fd, addr, len, 0, 0);
}

SS_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  ss__exporter_before_wait();
  if (!ss__active(SS_HOOK_SOCKET))
    return accept_untraced(fd, real_accept4()(fd, addr, len, flags));
  return accept_common(fd, addr, len, flags, 1);
}

