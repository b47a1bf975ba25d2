/* http_server: a small HTTP/1.x server on 127.0.0.1 (ephemeral port) for the HTTP suites.
 * Usage: http_server thread|fork
 *   thread: one thread per connection (the main thread accepts);
 *   fork:   one child process per connection (the child serves it and exits with exit(0)).
 * Prints pid= and port= lines (flushed) once listening. SIGTERM makes the main process wait
 * for its children (fork mode) and exit(0), so every process flushes its spans.
 *
 * Requests: keep-alive by default for HTTP/1.1, close for HTTP/1.0 (unless
 * "Connection: keep-alive"), pipelined requests served in order from one buffer. Bodies by
 * Content-Length; "Expect: 100-continue" gets "HTTP/1.1 100 Continue" before the body is
 * read. Paths: /status/N answers N; /chunked answers a chunked body (HTTP/1.1 only);
 * /connect/PORT connects to 127.0.0.1:PORT (and closes) first, 502 if that fails;
 * anything else 200 with "METHOD PATH body=N\n" (N = request body bytes read).
 * A request head it cannot parse gets "400 Bad Request" and the connection is closed; a
 * head over 64 KiB is answered 431 and closed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#define BUF (64 * 1024)

static volatile sig_atomic_t stop;

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The value of header name in head (NUL-terminated, lines end in \r\n), copied to out. */
static int header(const char *head, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  const char *p = strstr(head, "\r\n");
  while (p && p[2] != '\r') {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ' || *v == '\t') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= cap) n = cap - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return 1;
    }
    p = strstr(p, "\r\n");
  }
  return 0;
}

/* Serves one connection until it closes or asks to close. */
static void serve(int fd) {
  static __thread char buf[BUF + 1];
  size_t have = 0;
  for (;;) {
    char *end;
    buf[have] = '\0';
    while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
      if (have >= BUF) {
        const char *r = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n";
        write_all(fd, r, strlen(r));
        return;
      }
      ssize_t n = read(fd, buf + have, BUF - have);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      have += (size_t)n;
      buf[have] = '\0';
    }
    size_t head_len = (size_t)(end - buf) + 4;
    char head[BUF + 1];
    memcpy(head, buf, head_len);
    head[head_len] = '\0';
    char method[32], path[1024], version[16];
    if (sscanf(head, "%31s %1023s HTTP/%15[0-9.]", method, path, version) != 3) {
      const char *r = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      write_all(fd, r, strlen(r));
      return;
    }
    int v10 = strcmp(version, "1.0") == 0;
    char val[256];
    int keep = !v10;
    if (header(head, "Connection", val, sizeof val)) {
      if (strcasecmp(val, "close") == 0) keep = 0;
      if (strcasecmp(val, "keep-alive") == 0) keep = 1;
    }
    long clen = header(head, "Content-Length", val, sizeof val) ? atol(val) : 0;
    if (clen > 0 && header(head, "Expect", val, sizeof val) &&
        strcasecmp(val, "100-continue") == 0) {
      const char *c = "HTTP/1.1 100 Continue\r\n\r\n";
      if (write_all(fd, c, strlen(c))) return;
    }
    /* Consume the body: what is buffered first, then reads. */
    memmove(buf, buf + head_len, have - head_len);
    have -= head_len;
    long body = 0;
    while (body < clen) {
      if (have == 0) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        have = (size_t)n;
      }
      size_t take = (size_t)(clen - body) < have ? (size_t)(clen - body) : have;
      memmove(buf, buf + take, have - take);
      have -= take;
      body += (long)take;
    }
    char out[4096];
    int status = 200, n;
    if (strncmp(path, "/status/", 8) == 0) status = atoi(path + 8);
    if (strncmp(path, "/connect/", 9) == 0) { /* a dependency call made while serving */
      int s = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in to;
      memset(&to, 0, sizeof to);
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      to.sin_port = htons((uint16_t)atoi(path + 9));
      if (connect(s, (struct sockaddr *)&to, sizeof to) != 0) status = 502;
      close(s);
    }
    if (strcmp(path, "/chunked") == 0 && !v10) {
      n = snprintf(out, sizeof out,
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n"
                   "6\r\nchunk1\r\n", keep ? "" : "Connection: close\r\n");
      if (write_all(fd, out, (size_t)n)) return;
      if (write_all(fd, "7\r\n-chunk2\r\n", 12)) return;
      if (write_all(fd, "1\r\n\n\r\n0\r\n\r\n", 11)) return;
    } else {
      char bodytxt[1200];
      int bl = snprintf(bodytxt, sizeof bodytxt, "%s %s body=%ld\n", method, path, body);
      n = snprintf(out, sizeof out, "HTTP/%s %d X\r\nContent-Length: %d\r\n%s\r\n", version,
                   status, bl, keep ? (v10 ? "Connection: keep-alive\r\n" : "")
                                    : "Connection: close\r\n");
      if (write_all(fd, out, (size_t)n)) return;
      if (strcmp(method, "HEAD") != 0 && write_all(fd, bodytxt, (size_t)bl)) return;
    }
    if (!keep) return;
  }
}

static void *conn_thread(void *arg) {
  int fd = (int)(long)arg;
  serve(fd);
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  int forking = argc > 1 && strcmp(argv[1], "fork") == 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64)) {
    perror("bind/listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(ls, (struct sockaddr *)&a, &al);
  printf("pid=%d\nport=%d\n", (int)getpid(), ntohs(a.sin_port));
  fflush(stdout);
  while (!stop) {
    struct pollfd p = {ls, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) {
      while (forking && waitpid(-1, NULL, WNOHANG) > 0) {
      }
      continue;
    }
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) continue;
    if (forking) {
      pid_t pid = fork();
      if (pid == 0) {
        close(ls);
        serve(fd);
        close(fd);
        exit(0);
      }
      close(fd);
    } else {
      pthread_t t;
      pthread_attr_t at;
      pthread_attr_init(&at);
      pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
      pthread_create(&t, &at, conn_thread, (void *)(long)fd);
      pthread_attr_destroy(&at);
    }
  }
  while (forking && wait(NULL) > 0) {
  }
  return 0;
}
