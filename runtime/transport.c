/* transport.c - OTLP/HTTP POST over a Unix or TCP stream socket; see transport.h. */
#include "runtime/transport.h"
#include "runtime/ownfd.h"
#include "runtime/sys.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <limits.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/config.h"
#include "runtime/deadline.h"
#include "runtime/outbuf.h"
#include "runtime/hostport.h"
#include "runtime/kv.h"
#include "runtime/log.h"
#include "runtime/resource.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u

static int ss__endpoint_parse_1(const char *s, const char *default_path, ss__endpoint *e);

static int copy_str(char *dst, size_t cap, const char *s, size_t n) {
  if (n >= cap) return -1;
  memcpy(dst, s, n);
  dst[n] = '\0';
  return 0;
}

static int parse_http(const char *s, const char *default_path, ss__endpoint *e) {
  const char *auth = s + 7, *slash = strchr(auth, '/');
  size_t alen = slash ? (size_t)(slash - auth) : strlen(auth);
  ss__hostport hp;
  if (alen == 0 || memchr(auth, '@', alen) || ss__hostport_split(auth, alen, &hp) != 0)
    return -EINVAL;
  if (copy_str(e->authority, sizeof e->authority, auth, alen) ||
      copy_str(e->host, sizeof e->host, hp.host, hp.host_len))
    return -EINVAL;
  if (hp.port) copy_str(e->port, sizeof e->port, hp.port, hp.port_len);
  else strcpy(e->port, "80");
  const char *path = slash ? slash : default_path; /* a URL's path is used as given */
  return copy_str(e->http_path, sizeof e->http_path, path, strlen(path)) ? -EINVAL : 0;
}

static void derive_logs_path(ss__endpoint *e) {
  size_t n = strlen(e->http_path), suffix = strlen("/v1/traces");
  ss__out o = {e->logs_path, 0, sizeof e->logs_path};
  if (n >= suffix && strcmp(e->http_path + n - suffix, "/v1/traces") == 0) {
    ss__out_put(&o, e->http_path, n - suffix); /* no snprintf at start (runtime/outbuf.h) */
    ss__out_puts(&o, "/v1/logs");
    ss__out_end(&o);
  } else
    strcpy(e->logs_path, "/v1/logs");
}

int ss__endpoint_parse(const char *s, const char *default_path, ss__endpoint *e) {
  int rc = ss__endpoint_parse_1(s, default_path, e);
  if (rc == 0) derive_logs_path(e);
  return rc;
}

static int ss__endpoint_parse_1(const char *s, const char *default_path, ss__endpoint *e) {
  ss__endpoint tmp;
  memset(&tmp, 0, sizeof tmp);
  if (s == NULL) return -EINVAL;
  if (strncmp(s, "unix:", 5) == 0) {
    const char *p = s + 5;
    if (strncmp(p, "//", 2) == 0) p += 2; /* unix:///path */
    if (*p == '\0' || copy_str(tmp.path, sizeof tmp.path, p, strlen(p))) return -EINVAL;
    tmp.is_unix = 1;
    strcpy(tmp.authority, "localhost");
    if (copy_str(tmp.http_path, sizeof tmp.http_path, default_path, strlen(default_path)))
      return -EINVAL;
  } else if (strncmp(s, "http://", 7) == 0) {
    if (parse_http(s, default_path, &tmp) != 0) return -EINVAL;
  } else {
    return -EINVAL;
  }
  *e = tmp;
  return 0;
}

/* An OTEL_EXPORTER_OTLP_HEADERS entry as a request header line; entries whose key is not
 * a header name or whose value could end the header (CR, LF, NUL) are refused. */
static int add_header(void *arg, const char *k, size_t kl, const char *v, size_t vl) {
  char **o = arg;
  if (strpbrk(k, " \t:\r\n") || strlen(k) != kl || memchr(v, '\r', vl) || memchr(v, '\n', vl) ||
      memchr(v, '\0', vl))
    return -1;
  memcpy(*o, k, kl);
  memcpy(*o + kl, ": ", 2);
  memcpy(*o + kl + 2, v, vl);
  memcpy(*o + kl + 2 + vl, "\r\n", 2);
  *o += kl + vl + 4;
  return 0;
}

/* "k1=v1,k2=v2" (runtime/kv.h) → "k1: v1\r\nk2: v2\r\n". Malformed entries are skipped. */
static char *build_headers(const char *spec) {
  size_t n = strlen(spec);
  char *copy = malloc(n + 1), *out = malloc(n * 2 + 8), *o = out;
  if (copy == NULL || out == NULL) {
    free(copy);
    free(out);
    return NULL;
  }
  memcpy(copy, spec, n + 1);
  int bad = ss__kv_parse(copy, add_header, &o);
  *o = '\0';
  free(copy);
  if (bad > 0)
    SS_LOG(SS_LOG_WARN, "OTEL_EXPORTER_OTLP_HEADERS has %d malformed entr%s; skipping %s", bad,
           bad == 1 ? "y" : "ies", bad == 1 ? "it" : "them");
  return out;
}

/* Everything but the answer buffer, which is read only up to rlen: zeroing its 4 KiB in
 * the constructor would cost every process a page fault. */
static void clear(ss__transport *t) {
  memset(t, 0, offsetof(ss__transport, rbuf));
}
_Static_assert(offsetof(ss__transport, rbuf) + sizeof(((ss__transport *)0)->rbuf) ==
                   sizeof(ss__transport),
               "rbuf is ss__transport's last member: clear() leaves only it as it was");

int ss__transport_init(ss__transport *t, const ss__endpoint *ep, const char *otlp_headers) {
  char dflt[sizeof ep->path];
  clear(t);
  t->ep = *ep;
  t->listener_uid = SS_UID_NONE;
  t->named = ep->is_unix && (ss__default_socket_path(dflt, sizeof dflt, secure_getenv) != 0 ||
                             strcmp(dflt, ep->path) != 0);
  atomic_store(&t->fd, -1);
  pthread_mutex_init(&t->lock, NULL);
  if (otlp_headers && *otlp_headers) {
    t->extra_headers = build_headers(otlp_headers);
    if (t->extra_headers == NULL) return -ENOMEM;
  }
  return 0;
}

void ss__transport_init_like(ss__transport *t, const ss__transport *like, int own_table) {
  clear(t);
  t->ep = like->ep;
  t->listener_uid = SS_UID_NONE;
  t->named = like->named;
  t->extra_headers = like->extra_headers;
  t->logs_headers = like->logs_headers;
  t->own_table = own_table;
  atomic_store(&t->fd, -1);
  pthread_mutex_init(&t->lock, NULL);
}

int ss__transport_set_logs_headers(ss__transport *t, const char *otlp_headers) {
  if (otlp_headers == NULL || *otlp_headers == '\0') return 0;
  t->logs_headers = build_headers(otlp_headers);
  return t->logs_headers != NULL ? 0 : -ENOMEM;
}

void ss__transport_prepare_fd_table(void) {
  ss__own_prepare();
}

static int wait_fd(int fd, short ev, uint64_t deadline_ms) {
  for (;;) {
    uint64_t left = ss__ms_until(deadline_ms, ss__mono_ms());
    if (left == 0) return -ETIMEDOUT;
    struct pollfd p = {.fd = fd, .events = ev};
    int r = ss__sys_poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r > 0) return 0;
    if (r == 0) return -ETIMEDOUT;
    if (errno != EINTR) return -errno;
  }
}

static int connect_one(int family, const struct sockaddr *sa, socklen_t len,
                       uint64_t deadline_ms) {
  /* Born out of the app's way and guarded from birth (runtime/ownfd.h): the app's
   * closefrom cannot close it while we dial, nor can its socketpair take the number. */
  int fd = ss__own_socket(family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  /* Room for a whole exit's requests in the kernel (clamped to net.core.wmem_max): an
   * exiting process writes them and is done, however late the collector reads. */
  int sndbuf = 1 << 20;
  (void)ss__sys_setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  if (ss__sys_connect(fd, sa, len) != 0) {
    int err = errno;
    if (err != EINPROGRESS && err != EAGAIN) goto fail_err;
    if ((err = -wait_fd(fd, POLLOUT, deadline_ms)) != 0) goto fail_err;
    socklen_t el = sizeof err;
    if (ss__sys_getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
    if (err != 0) goto fail_err;
    goto ok;
  fail_err:
    ss__own_close(fd);
    return -err;
  }
ok:
  return fd;
}

/* ---- trust (see transport.h) ---- */

static int untrusted(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int untrusted(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, n, fmt, ap);
  va_end(ap);
  return -EACCES;
}

static int uid_trusted(uid_t u, uid_t also_ok) {
  return u == ss__sys_geteuid() || u == 0 || (also_ok != SS_UID_NONE && u == also_ok);
}

int ss__unix_dir_trusted(const char *sock_path, int named, uid_t *dir_owner, char *why,
                         size_t n) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *slash = NULL;
  struct stat st;
  for (const char *c = sock_path; *c; c++) /* not strrchr: a page of libc's code less at exit */
    if (*c == '/') slash = c;
  size_t dl = slash == NULL ? 0 : slash == sock_path ? 1 : (size_t)(slash - sock_path);

  *dir_owner = SS_UID_NONE;
  if (dl == 0 || dl >= sizeof dir) return untrusted(why, n, "%s is not an absolute path", sock_path);
  memcpy(dir, sock_path, dl);
  dir[dl] = '\0';
  if (ss__sys_lstat(dir, &st) != 0)
    return untrusted(why, n, "directory %s: %s", dir, strerror(errno));
  if (S_ISLNK(st.st_mode))
    return untrusted(why, n, "directory %s is a symlink (owned by uid %u)", dir,
                     (unsigned)st.st_uid);
  if (!S_ISDIR(st.st_mode)) return untrusted(why, n, "%s is not a directory", dir);
  if (!named && !uid_trusted(st.st_uid, SS_UID_NONE))
    return untrusted(why, n, "directory %s is owned by uid %u, not by us (uid %u) or root",
                     dir, (unsigned)st.st_uid, (unsigned)ss__sys_geteuid());
  uid_t also = named ? st.st_uid : SS_UID_NONE;
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    struct stat ss;
    if (!(st.st_mode & S_ISVTX))
      return untrusted(why, n, "directory %s is writable by others (mode %04o): anyone "
                       "could replace the socket", dir, (unsigned)(st.st_mode & 07777));
    if (ss__sys_lstat(sock_path, &ss) != 0)
      return untrusted(why, n, "%s: %s", sock_path, strerror(errno));
    if (!S_ISSOCK(ss.st_mode) || !uid_trusted(ss.st_uid, also))
      return untrusted(why, n, "%s in the shared directory %s is %s owned by uid %u",
                       sock_path, dir, S_ISSOCK(ss.st_mode) ? "a socket" : "not a socket",
                       (unsigned)ss.st_uid);
  }
  *dir_owner = also;
  return 0;
}

/* ss__unix_peer_trusted, the listener's credentials in *cr. */
static int peer_trusted(int fd, uid_t also_ok, char *why, size_t n, struct ucred *cr) {
  socklen_t len = sizeof *cr;
  if (ss__sys_getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) != 0)
    return untrusted(why, n, "cannot tell who listens (SO_PEERCRED: %s)", strerror(errno));
  if (!uid_trusted(cr->uid, also_ok))
    return untrusted(why, n, "the listener runs as uid %u (pid %d), not as us (uid %u) or "
                     "root", (unsigned)cr->uid, (int)cr->pid, (unsigned)ss__sys_geteuid());
  return 0;
}

int ss__unix_peer_trusted(int fd, uid_t also_ok, char *why, size_t n) {
  struct ucred cr;
  return peer_trusted(fd, also_ok, why, n, &cr);
}

/* ---- whether the collector counts what it refuses ----
 * spanshimd counts the spans and records of every request of ours it refuses
 * (Spanshim-Refused-Counted), so an exit need not wait for its answers to keep the count
 * exact. Known from an answer that says so or carries the traced tree's token (only
 * spanshimd sends either), or, before any answer, from the listener on a Unix socket:
 * the process that listens (SO_PEERCRED) runs a program named spanshimd (or is `spanshim
 * run`, whose private spanshimd takes over its listening socket), which is also
 * how spanshimd knows itself when it is started with the shim preloaded (shim/shim.c).
 * Process-wide, in plain memory: fork children inherit it. */
static _Atomic int refusals_counted;
static _Atomic pid_t listener_looked_at; /* the listener pid last looked at (0: none) */

static void note_refusals_counted(void) {
  if (!atomic_load_explicit(&refusals_counted, memory_order_relaxed))
    atomic_store(&refusals_counted, 1);
}

/* Looks at the listener's name once per listener pid: "spanshimd\n" in /proc/PID/comm,
 * or "spanshim\n": `spanshim run` binds and listens on its private socket itself (so that
 * the command need not wait for the collector to start) and hands it to the spanshimd it
 * starts; no other spanshim command listens. */
static void look_at_listener(pid_t pid) {
  if (pid <= 0 || atomic_load(&refusals_counted) || atomic_load(&listener_looked_at) == pid)
    return;
  atomic_store(&listener_looked_at, pid);
  char path[32] = "/proc/", name[32];
  size_t at = 6, k = 0;
  char digits[12];
  for (unsigned v = (unsigned)pid; v; v /= 10) digits[k++] = (char)('0' + v % 10);
  while (k) path[at++] = digits[--k];
  memcpy(path + at, "/comm", 6);
  int fd = ss__own_open_brief(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = ss__sys_read(fd, name, sizeof name);
  ss__own_close_brief(fd);
  if ((n == 10 && memcmp(name, "spanshimd\n", 10) == 0) ||
      (n == 9 && memcmp(name, "spanshim\n", 9) == 0))
    note_refusals_counted();
}

int ss__transport_counts_refusals(void) {
  return atomic_load(&refusals_counted);
}

/* A collector we will not send to: counted, and said why (again when the reason
 * changes; the same reason on every retry would flood the log). */
static int refuse(ss__transport *t, const char *why) {
  t->refused++;
  if (strcmp(why, t->refused_why) != 0) {
    snprintf(t->refused_why, sizeof t->refused_why, "%s", why);
    SS_LOG(SS_LOG_ERROR, "not sending spans to unix:%s: %s; spans will be dropped "
           "(refusal %llu)", t->ep.path, why, (unsigned long long)t->refused);
  } else {
    SS_LOG(SS_LOG_DEBUG, "not sending spans to unix:%s: %s (refusal %llu)", t->ep.path, why,
           (unsigned long long)t->refused);
  }
  return -EACCES;
}

/* The connection's fd was closed (or replaced) behind the shim's back, err being what a
 * call on it said: a raw close_range/close/dup2 system call the fd guards cannot see
 * (fdguard.c). One warning per 10 s with the count so far; the connection is remade and
 * what it lost is counted as dropped by the caller. Returns err when it was that, else 0. */
static int closed_behind_back(int fd, int err) {
  static _Atomic uint64_t next_ms;
  static _Atomic unsigned times;
  if (err != EBADF && err != ENOTSOCK) return 0;
  unsigned n = atomic_fetch_add(&times, 1) + 1;
  uint64_t now = ss__mono_ms(), at = atomic_load(&next_ms);
  if (now >= at && atomic_compare_exchange_strong(&next_ms, &at, now + 10000))
    SS_LOG(SS_LOG_WARN, "the connection to the collector (fd %d) was closed behind the "
           "shim's back (%s; %u times so far): a raw close_range, close or dup2 system "
           "call? It is remade; spans it lost are counted as dropped", fd, strerror(err), n);
  return err;
}

static int dial_unix(ss__transport *t, uint64_t deadline_ms) {
  struct sockaddr_un un = {.sun_family = AF_UNIX};
  char why[200];
  uid_t owner;
  if (ss__unix_dir_trusted(t->ep.path, t->named, &owner, why, sizeof why) != 0)
    return refuse(t, why);
  memcpy(un.sun_path, t->ep.path, strlen(t->ep.path) + 1);
  int fd = connect_one(AF_UNIX, (struct sockaddr *)&un, sizeof un, deadline_ms);
  struct ucred cr = {.pid = 0, .uid = SS_UID_NONE};
  if (fd >= 0 && peer_trusted(fd, owner, why, sizeof why, &cr) != 0) {
    int err = ss__sys_fcntl(fd, F_GETFD, 0) < 0 ? errno : 0;
    if (closed_behind_back(fd, err)) { /* gone already: not the listener's fault */
      ss__own_forget(fd);
      return -err;
    }
    ss__sys_close(fd);
    return refuse(t, why);
  }
  if (fd >= 0) {
    t->listener_uid = cr.uid;
    look_at_listener(cr.pid);
  }
  return fd;
}

/* The address the endpoint's name last connected to, for the next dial from any thread:
 * the resolver opens files and sockets, and on an app thread (an exit's delivery) those
 * would be born in the app's fd table (runtime/ownfd.h); the exporter thread resolves in
 * its own. Taken with trylock only (a fork child may inherit it held): contended, the
 * name is resolved as if nothing were kept. */
static struct {
  pthread_mutex_t lock;
  char host[256], port[8];
  struct sockaddr_storage sa;
  socklen_t len;
} last_addr = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int last_addr_get(const ss__endpoint *ep, struct sockaddr_storage *sa, socklen_t *len) {
  int ok = 0;
  if (pthread_mutex_trylock(&last_addr.lock) != 0) return 0;
  if (last_addr.len > 0 && strcmp(last_addr.host, ep->host) == 0 &&
      strcmp(last_addr.port, ep->port) == 0) {
    *sa = last_addr.sa;
    *len = last_addr.len;
    ok = 1;
  }
  pthread_mutex_unlock(&last_addr.lock);
  return ok;
}

static void last_addr_set(const ss__endpoint *ep, const struct sockaddr *sa, socklen_t len) {
  if (len > sizeof last_addr.sa || pthread_mutex_trylock(&last_addr.lock) != 0) return;
  snprintf(last_addr.host, sizeof last_addr.host, "%s", ep->host);
  snprintf(last_addr.port, sizeof last_addr.port, "%s", ep->port);
  memcpy(&last_addr.sa, sa, len);
  last_addr.len = len;
  pthread_mutex_unlock(&last_addr.lock);
}

/* A TCP endpoint's address without the resolver (t->no_resolver: a dying thread in a
 * signal handler, where getaddrinfo's allocation and locks may be the interrupted code's):
 * a numeric host, or localhost as loopback (RFC 6761), IPv4 first. */
static int dial_unresolved(const ss__endpoint *ep, uint64_t deadline_ms) {
  char *end;
  unsigned long port = strtoul(ep->port, &end, 10);
  if (*end != '\0' || port == 0 || port > 65535) return -EHOSTUNREACH;
  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
  int loopback = strcasecmp(ep->host, "localhost") == 0, fd = -EHOSTUNREACH;
  if (loopback) v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (loopback || inet_pton(AF_INET, ep->host, &v4.sin_addr) == 1)
    fd = connect_one(AF_INET, (struct sockaddr *)&v4, sizeof v4, deadline_ms);
  if (fd >= 0 || !(loopback || inet_pton(AF_INET6, ep->host, &v6.sin6_addr) == 1)) return fd;
  if (loopback) v6.sin6_addr = in6addr_loopback;
  return connect_one(AF_INET6, (struct sockaddr *)&v6, sizeof v6, deadline_ms);
}

static int dial(ss__transport *t, uint64_t deadline_ms) {
  const ss__endpoint *ep = &t->ep;
  if (ep->is_unix) return dial_unix(t, deadline_ms);
  struct sockaddr_storage sa;
  socklen_t sl;
  if (last_addr_get(ep, &sa, &sl)) {
    int fd = connect_one(sa.ss_family, (struct sockaddr *)&sa, sl, deadline_ms);
    if (fd >= 0) return fd;
  }
  if (t->no_resolver) return dial_unresolved(ep, deadline_ms);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
  int rc = ss__sys_getaddrinfo(ep->host, ep->port, &hints, &res);
  if (rc != 0) return -EHOSTUNREACH;
  int fd = -ECONNREFUSED;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ms);
    if (fd >= 0) {
      last_addr_set(ep, ai->ai_addr, ai->ai_addrlen);
      break;
    }
  }
  ss__sys_freeaddrinfo(res);
  return fd;
}

static int send_all(int fd, struct iovec *iov, int n, uint64_t deadline_ms,
                    const ss__post_gate *g) {
  struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
  while (m.msg_iovlen > 0) {
    if (g && g->enter(g->arg) != 0) return -ECANCELED;
    ssize_t w = ss__sys_sendmsg(fd, &m, MSG_NOSIGNAL);
    int err = errno;
    if (w > 0) {
      while (m.msg_iovlen > 0 && (size_t)w >= m.msg_iov->iov_len) {
        w -= (ssize_t)m.msg_iov->iov_len;
        m.msg_iov++;
        m.msg_iovlen--;
      }
      if (m.msg_iovlen > 0) {
        m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + w;
        m.msg_iov->iov_len -= (size_t)w;
      }
    }
    /* Zero-length pieces left at the end are no more bytes to write. */
    while (m.msg_iovlen > 0 && m.msg_iov->iov_len == 0) {
      m.msg_iov++;
      m.msg_iovlen--;
    }
    if (g) g->leave(g->arg, m.msg_iovlen == 0);
    if (w >= 0) continue;
    if (err == EINTR) continue;
    if (err == EAGAIN) {
      int rc = wait_fd(fd, POLLOUT, deadline_ms);
      if (rc) return rc;
      continue;
    }
    return -err;
  }
  return 0;
}

static ssize_t recv_some(int fd, char *buf, size_t n, uint64_t deadline_ms) {
  for (;;) {
    ssize_t r = ss__sys_recv(fd, buf, n, 0);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return -errno;
    int rc = wait_fd(fd, POLLIN, deadline_ms);
    if (rc) return rc;
  }
}

/* Header lines are matched by hand, ASCII case-insensitively: strstr, strcasestr,
 * strncasecmp and strtol are code (and locale tables) that an exiting fork child would
 * fault in, page by page, for the one answer it reads. */
static int ascii_ieq(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
    if ((unsigned)(x - 'A') < 26u) x |= 0x20;
    if ((unsigned)(y - 'A') < 26u) y |= 0x20;
    if (x != y) return 0;
  }
  return 1;
}

/* The value of header `name` in hdrs (a NUL-terminated block: the status line, then
 * header lines ending in CRLF): its first byte after the colon and blanks, *len bytes up
 * to the line's end; NULL when no line has that name. */
static const char *header_find(const char *hdrs, const char *name, size_t *len) {
  size_t nl = strlen(name);
  const char *p = hdrs;
  while (*p && *p != '\n') p++; /* past the status line */
  while (*p) {
    const char *line = ++p, *eol = line;
    while (*eol && *eol != '\n') eol++;
    p = eol;
    if ((size_t)(eol - line) <= nl || line[nl] != ':' || !ascii_ieq(line, name, nl)) continue;
    const char *v = line + nl + 1, *e = eol;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    if (e > v && e[-1] == '\r') e--;
    *len = (size_t)(e - v);
    return v;
  }
  return NULL;
}

/* A header's decimal value (0 when it has no digits, as strtol), or -1 when absent. */
static long header_value(const char *hdrs, const char *name) {
  size_t len;
  const char *v = header_find(hdrs, name, &len);
  if (v == NULL) return -1;
  long n = 0;
  for (size_t i = 0; i < len && v[i] >= '0' && v[i] <= '9' && n < LONG_MAX / 10 - 9; i++)
    n = n * 10 + (v[i] - '0');
  return n;
}

static int has_header_token(const char *hdrs, const char *name, const char *token) {
  size_t len, tl = strlen(token);
  const char *v = header_find(hdrs, name, &len);
  for (size_t i = 0; v && i + tl <= len; i++)
    if (ascii_ieq(v + i, token, tl)) return 1;
  return 0;
}

/* ---- the traced tree's token (tools/spanshimd/tree.c) ----
 * spanshimd hands it in its 2xx answers (Spanshim-Tree: 32 hex digits); it is sent on every
 * request to a Unix socket from then on, so a process that changed user is admitted even
 * when the collector gets to its connection only after it has ended. Process-wide, in
 * plain memory: fork children inherit it, an exec forgets it, and after a drop from root
 * no other process of the new user can read it (the process is not dumpable). Two words
 * stored and loaded apart: a process that sees the token change (a restarted collector)
 * at that very moment may send one torn token, which is refused like a stale one. */
#define TREE_TOKEN_HEX 32
static _Atomic uint64_t tree_token[2];
static size_t put_str(char *dst, size_t at, size_t cap, const char *s);
static _Atomic int tree_token_set;

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Keeps the token of a Spanshim-Tree header in the answer's headers, if one is there. */
static void keep_tree_token(const char *hdrs) {
  size_t len;
  const char *p = header_find(hdrs, "Spanshim-Tree", &len);
  if (p == NULL || len != TREE_TOKEN_HEX) return;
  uint64_t w[2] = {0, 0};
  for (int i = 0; i < TREE_TOKEN_HEX; i++) {
    int d = hex_digit(p[i]);
    if (d < 0) return;
    w[i / 16] = w[i / 16] << 4 | (uint64_t)d;
  }
  if (atomic_load(&tree_token_set) && atomic_load(&tree_token[0]) == w[0] &&
      atomic_load(&tree_token[1]) == w[1])
    return; /* a page a fork child does not write is not copied */
  atomic_store(&tree_token[0], w[0]);
  atomic_store(&tree_token[1], w[1]);
  atomic_store(&tree_token_set, 1);
  note_refusals_counted();
}

/* Appends "Spanshim-Tree: TOKEN\r\n" to hdr[0..at) when a token is kept: the new length,
 * or cap when it does not fit. */
static size_t put_tree_token(char *hdr, size_t at, size_t cap) {
  if (!atomic_load(&tree_token_set)) return at;
  char line[sizeof "Spanshim-Tree: \r\n" + TREE_TOKEN_HEX];
  size_t n = sizeof "Spanshim-Tree: " - 1;
  memcpy(line, "Spanshim-Tree: ", n);
  for (int i = 0; i < TREE_TOKEN_HEX; i++) {
    uint64_t w = atomic_load(&tree_token[i / 16]);
    line[n++] = "0123456789abcdef"[(w >> (4 * (15 - i % 16))) & 15];
  }
  memcpy(line + n, "\r\n", 3);
  return put_str(hdr, at, cap, line);
}

int ss__transport_has_tree_token(void) {
  return atomic_load(&tree_token_set);
}

/* The status of "HTTP/1.x NNN ..." (up to 3 digits), or -1. By hand: sscanf's code is
 * pages an exiting fork child would fault in for this one line. */
static int status_code(const char *h) {
  if (strncmp(h, "HTTP/1.", 7) != 0 || h[7] < '0' || h[7] > '9') return -1;
  h += 7;
  while (*h >= '0' && *h <= '9') h++;
  while (*h == ' ' || *h == '\t') h++;
  int st = 0, n = 0;
  for (; n < 3 && *h >= '0' && *h <= '9'; n++, h++) st = st * 10 + (*h - '0');
  return n ? st : -1;
}

/* Reads one response into t->rbuf (answers written after it stay there for the next
 * call); returns the status (and *close_after), or -errno. -ECONNRESET when the peer closed
 * before sending anything (a stale keep-alive connection). -ETIMEDOUT leaves what was read
 * of the answer in t->rbuf. */
static int read_response(ss__transport *t, int fd, uint64_t deadline_ms, int *close_after) {
  char *buf = t->rbuf, *end;
  while ((end = memmem(buf, t->rlen, "\r\n\r\n", 4)) == NULL) {
    if (t->rlen >= sizeof t->rbuf) return -EPROTO;
    ssize_t r = recv_some(fd, buf + t->rlen, sizeof t->rbuf - t->rlen, deadline_ms);
    if (r < 0) return (int)r;
    if (r == 0) return t->rlen == 0 ? -ECONNRESET : -EPROTO;
    t->rlen += (size_t)r;
  }
  char hdrs[sizeof t->rbuf + 1];
  size_t hl = (size_t)(end + 2 - buf);
  memcpy(hdrs, buf, hl);
  hdrs[hl] = '\0';
  int status = status_code(hdrs);
  if (status < 0) return -EPROTO;
  if (status >= 300 && header_value(hdrs, "Spanshim-Refused-Counted") >= 0)
    status |= SS_HTTP_COUNTED;
  if (status & SS_HTTP_COUNTED) note_refusals_counted();
  if (status >= 200 && status < 300 && t->ep.is_unix) keep_tree_token(hdrs);
  long clen = header_value(hdrs, "Content-Length");
  *close_after = has_header_token(hdrs, "Connection", "close") || clen < 0;
  size_t used = hl + 2, body_have = t->rlen - used;
  long left = 0;
  if (clen > 0 && (size_t)clen <= body_have) used += (size_t)clen;
  else if (clen > 0) used = t->rlen, left = clen - (long)body_have;
  memmove(buf, buf + used, t->rlen - used);
  t->rlen -= used;
  char skip[512];
  while (left > 0) { /* a big body: read past it (the answer can no longer time out) */
    ssize_t r = recv_some(fd, skip, sizeof skip < (size_t)left ? sizeof skip : (size_t)left,
                          deadline_ms);
    if (r <= 0) return -EPROTO;
    left -= r;
  }
  return status;
}

/* Drops the connection; its fd is closed unless it was closed behind our back (`gone`:
 * the number may be the app's by now, so it is only forgotten). */
static void drop_conn_gone(ss__transport *t, int gone) {
  int fd = atomic_exchange(&t->fd, -1);
  if (fd >= 0 && gone) ss__own_forget(fd);
  else if (fd >= 0) ss__own_close(fd);
  t->unanswered = 0;
  t->broken = 0;
  t->rlen = 0;
}

static void drop_conn(ss__transport *t) {
  drop_conn_gone(t, 0);
}

static int ensure_conn(ss__transport *t, uint64_t deadline_ms) {
  int fd = atomic_load(&t->fd);
  if (fd >= 0) return fd;
  uint64_t now = ss__mono_ms();
  if (now < t->retry_at_ms) return -EAGAIN;
  uint64_t refused = t->refused;
  fd = dial(t, deadline_ms);
  if (fd < 0) {
    t->dial_err = -fd;
    t->backoff_ms = t->backoff_ms ? t->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (t->backoff_ms > BACKOFF_MAX_MS) t->backoff_ms = BACKOFF_MAX_MS;
    t->retry_at_ms = now + t->backoff_ms;
    if (t->refused == refused) /* a refusal has said why already */
      SS_LOG(SS_LOG_INFO, "cannot reach the collector at %s%s: %s; retrying in %u ms",
           t->ep.is_unix ? "unix:" : t->ep.authority, t->ep.is_unix ? t->ep.path : "",
           strerror(-fd), t->backoff_ms);
    return fd;
  }
  t->backoff_ms = 0;
  atomic_store(&t->fd, fd);
  return fd;
}

static size_t put_str(char *dst, size_t at, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (at >= cap || n >= cap - at) return cap; /* does not fit: the caller sees at == cap */
  memcpy(dst + at, s, n);
  return at + n;
}

/* "POST path HTTP/1.1\r\nHost: ...\r\n...Content-Length: len\r\n" into hdr; its length, or
 * -1 when it does not fit. By hand: printf's code is pages an exiting fork child would
 * fault in for this one line. */
static int request_head(char *hdr, size_t cap, const char *path, const char *authority,
                        size_t len) {
  char num[24];
  size_t k = sizeof num;
  num[--k] = '\0';
  do num[--k] = (char)('0' + len % 10); while ((len /= 10) != 0);
  size_t at = put_str(hdr, 0, cap, "POST ");
  at = put_str(hdr, at, cap, path);
  at = put_str(hdr, at, cap, " HTTP/1.1\r\nHost: ");
  at = put_str(hdr, at, cap, authority);
  at = put_str(hdr, at, cap, "\r\nUser-Agent: spanshim/" SPANSHIM_VERSION
               "\r\nContent-Type: application/x-protobuf\r\nContent-Length: ");
  at = put_str(hdr, at, cap, num + k);
  at = put_str(hdr, at, cap, "\r\n");
  if (at >= cap) return -1;
  hdr[at] = '\0';
  return (int)at;
}

/* Writes one request on fd: 0 once written whole, else -errno. */
static int write_request(ss__transport *t, int fd, const char *path, const void *body,
                         size_t len, uint64_t deadline_ms, const ss__post_gate *g) {
  char hdr[1024];
  int hl = request_head(hdr, sizeof hdr, path, t->ep.authority, len);
  if (hl >= 0 && t->ep.is_unix) {
    size_t at = put_tree_token(hdr, (size_t)hl, sizeof hdr);
    hl = at < sizeof hdr ? (int)at : -1;
  }
  if (hl < 0) return -EINVAL;
  const char *extra = t->extra_headers;
  if (t->logs_headers != NULL && strcmp(path, t->ep.logs_path) == 0) extra = t->logs_headers;
  struct iovec iov[4] = {
      {hdr, (size_t)hl},
      {extra ? (char *)extra : (char *)"", extra ? strlen(extra) : 0},
      {(char *)"\r\n", 2},
      {(void *)body, len},
  };
  return send_all(fd, iov, 4, deadline_ms, g);
}

/* A socket on a number the app could use is not kept between requests. */
static void drop_if_app_range(ss__transport *t, int fd) {
  if (!t->own_table && ss__own_in_app_range(fd)) drop_conn(t);
}

/* Answers still due on the connection (an exit flush that gave up on them, then an exec
 * that failed): the connection is dropped, and made again for the next request. */
static void settle(ss__transport *t) {
  if (t->unanswered > 0) drop_conn(t);
}

/* *whole: the request was written whole (the collector has it). */
static int post_once(ss__transport *t, const char *path, const void *body, size_t len,
                     uint64_t deadline_ms, int *reused, int *whole, const ss__post_gate *g) {
  settle(t); /* answers of pipelined requests due: not ours */
  int fd = atomic_load(&t->fd);
  *reused = fd >= 0;
  *whole = 0;
  fd = ensure_conn(t, deadline_ms);
  if (fd < 0) return fd;
  int rc = write_request(t, fd, path, body, len, deadline_ms, g);
  int close_after = 1;
  *whole = rc == 0;
  if (rc == 0) rc = read_response(t, fd, deadline_ms, &close_after);
  if (rc < 0 || close_after) drop_conn_gone(t, rc < 0 && closed_behind_back(fd, -rc));
  else drop_if_app_range(t, fd);
  return rc;
}

/* A connection the peer has closed (or sent something unasked on): 1. */
static int peer_gone(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  return ss__sys_poll(&p, 1, 0) != 0;
}

int ss__transport_send(ss__transport *t, const char *path, const void *body, size_t len,
                       uint64_t deadline_ms, const ss__post_gate *g) {
  pthread_mutex_lock(&t->lock);
  int fd = atomic_load(&t->fd);
  if (fd >= 0 && (t->broken || (t->unanswered == 0 && peer_gone(fd)))) drop_conn(t);
  if (atomic_load(&t->fd) < 0) atomic_store(&t->cut, 0); /* a cut was of an older one */
  fd = ensure_conn(t, deadline_ms);
  int rc = fd < 0 ? fd : write_request(t, fd, path, body, len, deadline_ms, g);
  if (rc == 0) {
    t->unanswered++;
  } else if (fd >= 0) {
    int gone = closed_behind_back(fd, -rc);
    /* The answers to the requests written before this one may be here already (a
     * collector that served them, then ended the connection): kept to be read, not
     * dropped with the connection, or they would be taken for the next one's. */
    if (t->unanswered > 0 && !gone) t->broken = 1;
    else drop_conn_gone(t, gone);
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

int ss__transport_answer(ss__transport *t, uint64_t deadline_ms, int *rest_refused) {
  *rest_refused = 0;
  pthread_mutex_lock(&t->lock);
  int fd = atomic_load(&t->fd), rc = -ENOENT, close_after = 1;
  if (t->unanswered > 0 && fd >= 0) {
    rc = read_response(t, fd, deadline_ms, &close_after);
    if (rc == -ECONNRESET && atomic_load(&t->cut)) rc = -ESHUTDOWN; /* our cut */
    if (rc != -ETIMEDOUT) t->unanswered--;
    if (rc < 0 && rc != -ETIMEDOUT) {
      drop_conn_gone(t, closed_behind_back(fd, -rc));
    } else if (rc > 0 && close_after) {
      *rest_refused = t->unanswered > 0;
      drop_conn(t);
    } else if (t->unanswered == 0) {
      if (t->broken) drop_conn(t);
      else drop_if_app_range(t, fd);
    }
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

void ss__transport_abandon(ss__transport *t) {
  pthread_mutex_lock(&t->lock);
  int fd = atomic_load(&t->fd);
  if (t->unanswered > 0 && fd >= 0) {
    /* Read what has come (over TCP, closing with unread bytes would reset the connection
     * and could cost the collector requests it has not read yet). */
    char skip[512];
    for (int i = 0; i < 64 && ss__sys_recv(fd, skip, sizeof skip, MSG_DONTWAIT) > 0; i++)
      ;
    drop_conn(t);
  }
  pthread_mutex_unlock(&t->lock);
}

int ss__transport_post_gated(ss__transport *t, const char *path, const void *body, size_t len,
                             uint64_t deadline_ms, const ss__post_gate *g) {
  pthread_mutex_lock(&t->lock);
  atomic_store(&t->cut, 0);
  int reused, whole;
  int rc = post_once(t, path, body, len, deadline_ms, &reused, &whole, g);
  /* A stale keep-alive connection: the peer closed it before reading anything, so the
   * request is sent again on a new one (the gate takes back a copy it saw written whole).
   * Not when the fd guards cut it after the request was written whole: the collector has
   * that one (its answer was lost, not the request), and a second copy would deliver
   * its spans twice. */
  int ours_whole = atomic_exchange(&t->cut, 0) && whole;
  if (reused && !ours_whole && (rc == -ECONNRESET || rc == -EPIPE)) {
    if (g == NULL) {
      rc = post_once(t, path, body, len, deadline_ms, &reused, &whole, g);
    } else if (g->enter(g->arg) == 0) {
      g->leave(g->arg, -1);
      rc = post_once(t, path, body, len, deadline_ms, &reused, &whole, g);
    } else {
      rc = -ECANCELED;
    }
  }
  if (ours_whole && rc == -ECONNRESET) rc = -ESHUTDOWN; /* our cut, not the collector's end */
  pthread_mutex_unlock(&t->lock);
  return rc;
}

int ss__transport_post_to(ss__transport *t, const char *path, const void *body, size_t len,
                          uint64_t deadline_ms) {
  return ss__transport_post_gated(t, path, body, len, deadline_ms, NULL);
}

int ss__transport_ready(ss__transport *t, uint64_t deadline_ms) {
  if (atomic_load(&t->fd) >= 0) return 0;
  pthread_mutex_lock(&t->lock);
  int fd = ensure_conn(t, deadline_ms);
  if (fd == -EAGAIN && (t->dial_err == EMFILE || t->dial_err == ENFILE)) fd = -t->dial_err;
  pthread_mutex_unlock(&t->lock);
  return fd >= 0 ? 0 : fd;
}

int ss__transport_post(ss__transport *t, const void *body, size_t len, uint64_t deadline_ms) {
  return ss__transport_post_to(t, t->ep.http_path, body, len, deadline_ms);
}

int ss__transport_hello(const ss__transport *like, uint64_t deadline_ms) {
  ss__transport t;
  ss__transport_init_like(&t, like, 0);
  int rc = ss__transport_post(&t, "", 0, deadline_ms);
  ss__transport_close(&t);
  pthread_mutex_destroy(&t.lock);
  return rc >= 200 && rc < 300 ? 0 : rc;
}

void ss__transport_close(ss__transport *t) {
  pthread_mutex_lock(&t->lock);
  drop_conn(t);
  pthread_mutex_unlock(&t->lock);
}

int ss__transport_admits_us(const ss__transport *t) {
  uid_t me = ss__sys_geteuid();
  return !t->ep.is_unix || me == 0 || me == t->listener_uid ||
         atomic_load(&tree_token_set);
}

int ss__transport_owns(ss__transport *t, int fd) {
  return fd >= 0 && atomic_load_explicit(&t->fd, memory_order_acquire) == fd;
}

void ss__transport_move(ss__transport *t) {
  struct timespec ts = ss__timespec_after_ms(CLOCK_REALTIME, 100);
  if (pthread_mutex_timedlock(&t->lock, &ts) != 0) {
    /* A request is in flight on a slow collector: cut it short so the lock comes back. */
    int fd = atomic_load(&t->fd);
    if (fd >= 0) {
      atomic_store(&t->cut, 1);
      ss__sys_shutdown(fd, SHUT_RDWR);
    }
    pthread_mutex_lock(&t->lock);
  }
  int fd = atomic_load(&t->fd);
  if (fd >= 0) {
    /* The old number is left for the app's dup2 to close (atomically, in the kernel). */
    int hi = ss__own_move(fd);
    atomic_store(&t->fd, hi < 0 ? -1 : hi);
  }
  pthread_mutex_unlock(&t->lock);
}

void ss__transport_release(ss__transport *t, int fd) {
  if (pthread_mutex_trylock(&t->lock) != 0) {
    if (atomic_load(&t->fd) != fd) return;
    atomic_store(&t->cut, 1);        /* before the shutdown the request in flight sees */
    ss__sys_shutdown(fd, SHUT_RDWR); /* the request in flight fails and lets go */
    /* Its sender needs only a CPU to let go (every wait on a shut-down socket ends at
     * once): the number must be free when the app's close returns, or its next look at
     * /proc/self/fd finds it again. */
    struct timespec until = ss__timespec_after_ms(CLOCK_REALTIME, SS_RELEASE_WAIT_MS);
    if (pthread_mutex_timedlock(&t->lock, &until) != 0) return;
  }
  if (atomic_load(&t->fd) == fd) drop_conn(t);
  pthread_mutex_unlock(&t->lock);
}

SS_FORK_TEXT void ss__transport_reset_in_child(ss__transport *t) {
  /* Only what differs is written: a page a fork child does not write is not copied. */
  if (atomic_load(&t->fd) >= 0) {
    int fd = atomic_exchange(&t->fd, -1);
    if (fd >= 0) ss__own_close(fd);
  }
  ss__mutex_reinit(&t->lock);
  if (t->unanswered) t->unanswered = 0;
  if (t->broken) t->broken = 0;
  if (t->rlen) t->rlen = 0;
  if (t->retry_at_ms) t->retry_at_ms = 0;
  if (t->backoff_ms) t->backoff_ms = 0;
}
