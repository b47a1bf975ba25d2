/* listen.c - the listening sockets.
 *
 * The Unix socket is the trust boundary: it lives in a 0700 directory we own (so no other
 * user can even reach it, or swap it for a symlink), and is itself 0600; SO_PEERCRED then
 * checks every peer (receiver.c). The TCP port, when asked for, is loopback only. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/hostport.h"
#include "tools/spanshimd/spanshimd.h"

/* The sockets we bound (the HTTP one, the gRPC one), to unlink at exit only if they are
 * still ours. */
static struct { ino_t ino; dev_t dev; } bound[4];
static size_t n_bound;

/* mkdir -p with 0700 for the components we create. */
static int make_dirs(const char *dir) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return -ENAMETOOLONG;
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -errno;
    *p = '/';
  }
  if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -errno;
  return 0;
}

/* The socket's directory must be a real directory, ours, and writable by nobody else:
 * otherwise another user could replace the socket and receive every program's spans
 * (or, having made /tmp/spanshim-$UID first, receive them already). Missing, it is
 * created 0700; a symlink, another user's directory or one that group or others may
 * write to is refused, saying what to do (a traced program refuses them too). */
static int check_dir(const char *dir) {
  struct stat st;
  int rc = make_dirs(dir);
  if (rc != 0) {
    fprintf(stderr, "spanshimd: cannot create %s: %s\n", dir, strerror(-rc));
    return -1;
  }
  if (lstat(dir, &st) != 0) {
    fprintf(stderr, "spanshimd: %s: %s\n", dir, strerror(errno));
    return -1;
  }
  if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
    fprintf(stderr, "spanshimd: refusing %s: it is %s owned by uid %u, not a directory of "
            "ours (uid %u); another user may have made it to receive our spans. Remove it "
            "(as root if need be) and start again, or use --socket PATH in a directory of "
            "your own\n", dir,
            S_ISLNK(st.st_mode) ? "a symlink" : S_ISDIR(st.st_mode) ? "a directory"
                                                                  : "not a directory",
            (unsigned)st.st_uid, (unsigned)geteuid());
    return -1;
  }
  if (st.st_mode & (S_IWGRP | S_IWOTH)) {
    fprintf(stderr, "spanshimd: refusing %s: writable by group or others (mode %04o), so "
            "anyone could replace the socket; chmod 700 it, or use --socket PATH in a "
            "directory of your own\n", dir, (unsigned)(st.st_mode & 07777));
    return -1;
  }
  return 0;
}

/* 1 if something answers on the socket, 0 if it is stale, -1 on other errors. */
static int socket_alive(const struct sockaddr_un *sa) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
  int err = errno;
  close(fd);
  if (rc == 0) return 1;
  return err == ECONNREFUSED || err == ENOENT ? 0 : -1;
}

static int remove_stale(const char *path, const struct sockaddr_un *sa) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
  if (!S_ISSOCK(st.st_mode)) {
    fprintf(stderr, "spanshimd: refusing to replace %s: it exists and is not a socket\n",
            path);
    return -1;
  }
  int alive = socket_alive(sa);
  if (alive == 1) {
    fprintf(stderr, "spanshimd: another collector is already listening on %s\n", path);
    return -1;
  }
  if (alive < 0 || (unlink(path) != 0 && errno != ENOENT)) {
    fprintf(stderr, "spanshimd: cannot remove stale socket %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

/* systemd's socket activation protocol (sd_listen_fds(3)): when LISTEN_PID is ours, fds
 * 3 .. 3 + LISTEN_FDS - 1 were passed listening. The one that is a listening Unix stream
 * socket bound to `path` is that socket, already in place: `spanshim run` binds its private
 * collector's socket itself so the command can start (and connect) while we start.
 * Returns the fd (non-blocking, close-on-exec), or -1. */
static int inherited(const char *path) {
  const char *pid = getenv("LISTEN_PID"), *n = getenv("LISTEN_FDS");
  if (pid == NULL || n == NULL || atol(pid) != (long)getpid()) return -1;
  int count = atoi(n);
  for (int fd = 3; count > 0 && fd < 3 + count; fd++) {
    struct sockaddr_un sa;
    socklen_t sl = sizeof sa;
    int on = 0, type = 0;
    socklen_t ol = sizeof on, tl = sizeof type;
    memset(&sa, 0, sizeof sa);
    if (getsockname(fd, (struct sockaddr *)&sa, &sl) != 0 || sa.sun_family != AF_UNIX ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) != 0 || !on ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
        strncmp(sa.sun_path, path, sizeof sa.sun_path) != 0)
      continue;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) != 0)
      return -1;
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    return fd;
  }
  return -1;
}

int ss__listen_unix(const char *path, int shared) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) {
    fprintf(stderr, "spanshimd: socket path too long: %s\n", path);
    return -1;
  }
  strcpy(sa.sun_path, path);
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = 0;
  else if (slash) *slash = 0;
  else strcpy(dir, ".");
  if (check_dir(dir) != 0) return -1;
  int given = inherited(path);
  if (given >= 0 && shared && (chmod(path, 0666) != 0 || chmod(dir, 0711) != 0))
    fprintf(stderr, "spanshimd: note: cannot make the socket passed to us 0666 in a 0711 "
            "directory (%s: %s): users it does not let in cannot send\n", path,
            strerror(errno));
  if (given >= 0) {
    struct stat st;
    if (lstat(path, &st) == 0 && n_bound < sizeof bound / sizeof *bound) {
      bound[n_bound].ino = st.st_ino;
      bound[n_bound++].dev = st.st_dev;
    }
    return given;
  }
  if (remove_stale(path, &sa) != 0) return -1;
  /* Bound and listening under a temporary name, then renamed into place: whoever sees
   * the path can connect at once (no ECONNREFUSED between bind and listen). */
  struct sockaddr_un tmp = {.sun_family = AF_UNIX};
  if (snprintf(tmp.sun_path, sizeof tmp.sun_path, "%s/.%d.tmp", dir, (int)getpid()) >=
      (int)sizeof tmp.sun_path)
    tmp = sa;
  unlink(tmp.sun_path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  mode_t old = umask(0177);  /* the socket is born 0600: no window with a wider mode */
  int rc = bind(fd, (struct sockaddr *)&tmp, sizeof tmp);
  umask(old);
  if (rc != 0 || chmod(tmp.sun_path, shared ? 0666 : 0600) != 0 || listen(fd, SS_LISTEN_BACKLOG) != 0)
    goto fail;
  /* --allow-uid/--allow-group: others must reach the socket; SO_PEERCRED decides. */
  if (shared && chmod(dir, 0711) != 0) goto fail;
  if (strcmp(tmp.sun_path, path) != 0 && rename(tmp.sun_path, path) != 0) {
    unlink(tmp.sun_path);
    goto fail;
  }
  struct stat st;
  if (lstat(path, &st) == 0 && n_bound < sizeof bound / sizeof *bound) {
    bound[n_bound].ino = st.st_ino;
    bound[n_bound++].dev = st.st_dev;
  }
  return fd;
fail:
  fprintf(stderr, "spanshimd: cannot listen on %s: %s\n", path, strerror(errno));
  if (fd >= 0) close(fd);
  return -1;
}

void ss__unlisten_unix(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return;
  for (size_t i = 0; i < n_bound; i++)
    if (st.st_ino == bound[i].ino && st.st_dev == bound[i].dev) {
      unlink(path);
      return;
    }
}

int ss__peer_allowed(const ss__opts *o, int fd) {
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0) return 0;
  if (cr.uid == geteuid() || cr.uid == 0) return 1;
  for (size_t i = 0; i < o->n_allow_uids; i++)
    if (cr.uid == o->allow_uids[i]) return 1;
  if (o->n_allow_gids == 0) return 0;
  gid_t groups[256];
  socklen_t glen = sizeof groups;
  size_t ng = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) ng = glen / sizeof *groups;
  for (size_t i = 0; i < o->n_allow_gids; i++) {
    if (cr.gid == o->allow_gids[i]) return 1;
    for (size_t k = 0; k < ng; k++)
      if (groups[k] == o->allow_gids[i]) return 1;
  }
  return 0;
}

void ss__peer_of(int fd, int is_unix, ss__peer *who) {
  struct sockaddr_storage ss;
  struct ucred cr;
  socklen_t sl = sizeof ss, cl = sizeof cr;
  memset(who, 0, sizeof *who);
  if (is_unix) {
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0) who->kind = 1, who->uid = cr.uid;
    return;
  }
  /* TCP is loopback only (ss__listen_tcp), where a client picks its source address
   * (127.0.0.2, 127.0.0.3, ...): every TCP client is one peer. */
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) who->kind = 2;
}

size_t ss__peer_cap(size_t n_conns, size_t max_conns, size_t per_peer) {
  if (n_conns + max_conns / 8 >= max_conns && per_peer > SS_RESERVE_FEW) return SS_RESERVE_FEW;
  return per_peer;
}

static int is_loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6)
    return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
  return 0;
}

int ss__listen_tcp(const char *hostport, char *bound, size_t n) {
  char host[256], port[8];
  ss__hostport hp;
  if (ss__hostport_split(hostport, strlen(hostport), &hp) != 0 || hp.port == NULL ||
      hp.host_len >= sizeof host) {
    fprintf(stderr, "spanshimd: --listen wants HOST:PORT, got %s\n", hostport);
    return -1;
  }
  snprintf(host, sizeof host, "%.*s", (int)hp.host_len, hp.host);
  snprintf(port, sizeof port, "%.*s", (int)hp.port_len, hp.port);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
  int rc = getaddrinfo(host, port, &hints, &ai);
  if (rc != 0) {
    fprintf(stderr, "spanshimd: --listen %s: %s\n", hostport, gai_strerror(rc));
    return -1;
  }
  if (!is_loopback(ai->ai_addr)) {
    fprintf(stderr, "spanshimd: --listen %s: only loopback addresses are allowed\n",
            hostport);
    freeaddrinfo(ai);
    return -1;
  }
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SS_LISTEN_BACKLOG) != 0) {
    fprintf(stderr, "spanshimd: cannot listen on %s: %s\n", hostport, strerror(errno));
    if (fd >= 0) close(fd);
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char h[INET6_ADDRSTRLEN] = "?", p[8] = "?";
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof h, p, sizeof p,
                NI_NUMERICHOST | NI_NUMERICSERV);
  snprintf(bound, n, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", h, p);
  return fd;
}

void ss__listen_take_queues(int unix_lfd, int tcp_lfd, uint64_t *paused_until,
                            uint64_t until_ms, int (*take)(int lfd, int is_unix),
                            void (*settle)(void)) {
  for (;;) {
    *paused_until = 0;
    for (int k = 0; k < SS_STOP_ACCEPTS / 64; k++)
      if (unix_lfd < 0 || !take(unix_lfd, 1)) break;
    for (int k = 0; k < SS_STOP_ACCEPTS / 64; k++)
      if (tcp_lfd < 0 || !take(tcp_lfd, 0)) break;
    if (*paused_until == 0 || ss__mono_ms() >= until_ms) break;
    settle();
  }
  *paused_until = 0;
}
