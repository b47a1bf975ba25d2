/* tls.c - the plaintext of TLS connections, for HTTP spans (hooks/http.c), through OpenSSL
 * (SSL_read, SSL_read_ex, SSL_write, SSL_write_ex, handshakes) and GnuTLS
 * (gnutls_record_recv, gnutls_record_send, gnutls_handshake).
 *
 * The library is never a dependency of the shim: its functions are declared here with
 * opaque types and found lazily with SS_REAL_LIB, in the global scope or, when it was
 * loaded RTLD_LOCAL (Python's _ssl module), in any loaded object whose file name starts
 * with the library's name. A hook that cannot find the real function fails the call as
 * the library would for an unusable session (-1; GNUTLS_E_INTERNAL_ERROR); it cannot
 * happen for a call the app could make.
 *
 * A connection is known by its socket fd (SSL_get_fd, gnutls_transport_get_int); sessions
 * over memory BIOs or custom transports (asyncio's SSLObject, -1 there) are not traced.
 * The socket's own bytes are TLS records, which the socket hooks find are not HTTP, so
 * nothing is parsed twice. A traceparent is spliced into a request (one library write
 * per piece: the request line, the header line, the rest) on a blocking socket, or on a
 * non-blocking one where OpenSSL accepts a retry from a moved buffer (see can_splice);
 * elsewhere the span is made and the skip counted. Hooks keep errno and never
 * touch the library's error queue. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "hooks/hook.h"
#include "hooks/hooks.h"
#include "runtime/clock.h"
#include "runtime/http1.h"
#include "runtime/sys.h"

/* ---- the library APIs, as far as the hooks need them ---- */
typedef struct ssl_st SSL;
int SSL_read(SSL *s, void *buf, int num);
int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *readbytes);
int SSL_write(SSL *s, const void *buf, int num);
int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written);
int SSL_do_handshake(SSL *s);
int SSL_connect(SSL *s);
int SSL_accept(SSL *s);
int SSL_get_fd(const SSL *s);
long SSL_ctrl(SSL *s, int cmd, long larg, void *parg);
#define SSL_CTRL_MODE 33
#define SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x2L

typedef struct gnutls_session_int *gnutls_session_t;
ssize_t gnutls_record_recv(gnutls_session_t s, void *data, size_t n);
ssize_t gnutls_record_send(gnutls_session_t s, const void *data, size_t n);
int gnutls_handshake(gnutls_session_t s);
int gnutls_transport_get_int(gnutls_session_t s);
#define GNUTLS_E_INTERNAL_ERROR (-59)

#define SSL_LIB "libssl"
#define GNUTLS_LIB "libgnutls"
SS_REAL_LIB(SSL_LIB, SSL_read)
SS_REAL_LIB(SSL_LIB, SSL_read_ex)
SS_REAL_LIB(SSL_LIB, SSL_write)
SS_REAL_LIB(SSL_LIB, SSL_write_ex)
SS_REAL_LIB(SSL_LIB, SSL_do_handshake)
SS_REAL_LIB(SSL_LIB, SSL_connect)
SS_REAL_LIB(SSL_LIB, SSL_accept)
SS_REAL_LIB(SSL_LIB, SSL_get_fd)
SS_REAL_LIB(SSL_LIB, SSL_ctrl)
SS_REAL_LIB(GNUTLS_LIB, gnutls_record_recv)
SS_REAL_LIB(GNUTLS_LIB, gnutls_record_send)
SS_REAL_LIB(GNUTLS_LIB, gnutls_handshake)
SS_REAL_LIB(GNUTLS_LIB, gnutls_transport_get_int)

static inline int tls_on(void) {
  return ss__active(SS_HOOK_HTTP) && ss__active(SS_HOOK_TLS);
}

static int ssl_fd(SSL *s) {
  __typeof__(&SSL_get_fd) f = real_SSL_get_fd();
  return f && s ? f(s) : -1;
}

static int gnutls_fd(gnutls_session_t s) {
  __typeof__(&gnutls_transport_get_int) f = real_gnutls_transport_get_int();
  return f && s ? f(s) : -1;
}

/* Splicing is safe where a library write completes or fails outright (a blocking
 * socket), or, for OpenSSL, where a write that stopped on WANT_WRITE may be retried from
 * another buffer (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, as CPython's ssl sets it, also on
 * sockets with a timeout): the piece that failed is the next one offered again, and the
 * app sees the request line written (a short write, which such apps retry). Asked only
 * when a write starts a request (one fcntl per request). */
static int can_splice(int fd, const void *buf, size_t n, SSL *ssl) {
  if (ss__h1_looks_like_request(buf, n) != 1) return 0;
  int saved = errno;
  int fl = ss__sys_fcntl(fd, F_GETFL, 0);
  errno = saved;
  if (fl >= 0 && !(fl & O_NONBLOCK)) return 1;
  __typeof__(&SSL_ctrl) ctrl = real_SSL_ctrl();
  return ssl && ctrl && (ctrl(ssl, SSL_CTRL_MODE, 0, NULL) & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

/* ---- handshakes: their duration goes on the connection's first span ---- */
#define HS_FDS 65536
static uint64_t hs_start[HS_FDS]; /* first handshake call on the fd; 0 none */

#define HANDSHAKE_HOOK(name, type, getfd, done)                              \
  SS_EXPORT int name(type s) {                                               \
    __typeof__(&name) real = real_##name();                                  \
    if (real == NULL) return -1;                                             \
    if (!tls_on()) return real(s);                                           \
    int fd = getfd(s);                                                       \
    uint64_t t0 = ss__now_ns();                                              \
    int rc = real(s);                                                        \
    if (fd >= 0 && fd < HS_FDS) {                                            \
      SS_SAVE_ERRNO({                                                        \
        if (hs_start[fd] == 0) hs_start[fd] = t0;                            \
        if (done) {                                                          \
          ss__http_tls_handshake(fd, ss__now_ns() - hs_start[fd]);           \
          hs_start[fd] = 0;                                                  \
        }                                                                    \
      });                                                                    \
    }                                                                        \
    return rc;                                                               \
  }

HANDSHAKE_HOOK(SSL_do_handshake, SSL *, ssl_fd, rc == 1)
HANDSHAKE_HOOK(SSL_connect, SSL *, ssl_fd, rc == 1)
HANDSHAKE_HOOK(SSL_accept, SSL *, ssl_fd, rc == 1)
HANDSHAKE_HOOK(gnutls_handshake, gnutls_session_t, gnutls_fd, rc == 0)

/* ---- OpenSSL ---- */
SS_EXPORT int SSL_read(SSL *s, void *buf, int num) {
  __typeof__(&SSL_read) real = real_SSL_read();
  if (real == NULL) return -1;
  int rc = real(s, buf, num);
  if (rc > 0 && tls_on()) ss__http_tls_read(ssl_fd(s), buf, rc);
  return rc;
}

SS_EXPORT int SSL_read_ex(SSL *s, void *buf, size_t num, size_t *readbytes) {
  __typeof__(&SSL_read_ex) real = real_SSL_read_ex();
  if (real == NULL) return 0;
  int rc = real(s, buf, num, readbytes);
  if (rc == 1 && readbytes && *readbytes > 0 && tls_on())
    ss__http_tls_read(ssl_fd(s), buf, (ssize_t)*readbytes);
  return rc;
}

/* Writes each piece with one SSL_write_ex (SSL_write when that is all there is). */
static ssize_t ssl_writer(const ss__http_writer *w, const struct iovec *v, int n) {
  __typeof__(&SSL_write_ex) wx = real_SSL_write_ex();
  __typeof__(&SSL_write) wr = real_SSL_write();
  size_t done = 0;
  for (int i = 0; i < n; i++) {
    size_t put = 0;
    int ok;
    if (wx) {
      ok = wx(w->obj, v[i].iov_base, v[i].iov_len, &put) == 1;
    } else {
      int r = wr(w->obj, v[i].iov_base, (int)v[i].iov_len);
      ok = r > 0;
      put = ok ? (size_t)r : 0;
    }
    if (!ok) return done ? (ssize_t)done : -1;
    done += put;
    if (put < v[i].iov_len) break; /* partial-write mode */
  }
  return (ssize_t)done;
}

/* Through http.c, which may splice a traceparent in; 1 when the write was made there. */
static int ssl_send(SSL *s, const void *buf, size_t n, int *fd, ssize_t *rc) {
  *fd = ssl_fd(s);
  if (*fd < 0 || !tls_on()) return 0;
  ss__http_writer w = {.fn = ssl_writer, .fd = *fd, .can_inject = can_splice(*fd, buf, n, s),
                       .obj = s};
  return ss__http_tls_send(&w, buf, n, rc);
}

SS_EXPORT int SSL_write(SSL *s, const void *buf, int num) {
  __typeof__(&SSL_write) real = real_SSL_write();
  if (real == NULL) return -1;
  int fd = -1;
  ssize_t rc;
  if (num > 0 && ssl_send(s, buf, (size_t)num, &fd, &rc)) return rc > 0 ? (int)rc : -1;
  int r = real(s, buf, num);
  if (r > 0 && fd >= 0) ss__http_tls_sent(fd, buf, r);
  return r;
}

SS_EXPORT int SSL_write_ex(SSL *s, const void *buf, size_t num, size_t *written) {
  __typeof__(&SSL_write_ex) real = real_SSL_write_ex();
  if (real == NULL) return 0;
  int fd = -1;
  ssize_t rc;
  if (num > 0 && ssl_send(s, buf, num, &fd, &rc)) {
    if (rc <= 0) return 0;
    if (written) *written = (size_t)rc;
    return 1;
  }
  int r = real(s, buf, num, written);
  if (r == 1 && written && *written > 0 && fd >= 0) ss__http_tls_sent(fd, buf, (ssize_t)*written);
  return r;
}

/* ---- GnuTLS ---- */
SS_EXPORT ssize_t gnutls_record_recv(gnutls_session_t s, void *data, size_t n) {
  __typeof__(&gnutls_record_recv) real = real_gnutls_record_recv();
  if (real == NULL) return GNUTLS_E_INTERNAL_ERROR;
  ssize_t rc = real(s, data, n);
  if (rc > 0 && tls_on()) ss__http_tls_read(gnutls_fd(s), data, rc);
  return rc;
}

static ssize_t gnutls_writer(const ss__http_writer *w, const struct iovec *v, int n) {
  __typeof__(&gnutls_record_send) send = w->real;
  size_t done = 0;
  for (int i = 0; i < n; i++) {
    ssize_t r = send(w->obj, v[i].iov_base, v[i].iov_len);
    if (r <= 0) return done ? (ssize_t)done : r;
    done += (size_t)r;
    if ((size_t)r < v[i].iov_len) break;
  }
  return (ssize_t)done;
}

SS_EXPORT ssize_t gnutls_record_send(gnutls_session_t s, const void *data, size_t n) {
  __typeof__(&gnutls_record_send) real = real_gnutls_record_send();
  if (real == NULL) return GNUTLS_E_INTERNAL_ERROR;
  int fd = -1;
  if (n > 0 && tls_on() && (fd = gnutls_fd(s)) >= 0) {
    ss__http_writer w = {.fn = gnutls_writer, .fd = fd, .can_inject = can_splice(fd, data, n, NULL),
                         .obj = s, .real = (void *)real};
    ssize_t rc;
    if (ss__http_tls_send(&w, data, n, &rc)) return rc;
  }
  ssize_t r = real(s, data, n);
  if (r > 0 && fd >= 0) ss__http_tls_sent(fd, data, r);
  return r;
}
