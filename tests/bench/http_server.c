/* http_server: a tiny HTTP/1.x keep-alive server for the benchmarks (bench_http.py runs
 * it with and without the shim). One thread, blocking sockets, one connection at a time:
 * accept, then read requests and answer each with one write of a Content-Length response
 * ("hello\n") until the client closes; then the next connection. Listens on 127.0.0.1,
 * an ephemeral port, printed first as "port=P". `http_server C` stops after C connections;
 * without C, on SIGTERM or SIGINT (which a traced process may take on its exporter thread,
 * leaving accept blocked: give C when it matters). On stopping it prints: pid=P requests=R conns=C cpu_ns=T cpu_ns_per_req=X, where T is this thread's
 * own CPU time (CLOCK_THREAD_CPUTIME_ID) since it started listening: accept, read,
 * parse, write and whatever the shim's hooks add to them on the app thread. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) {
  (void)sig;
  stop = 1;
}

static const char resp_11[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";
static const char resp_10[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: "
                              "keep-alive\r\nContent-Length: 6\r\n\r\nhello\n";

/* Serves one connection; returns the requests answered. Requests have no body. */
static long serve(int fd) {
  char buf[16384];
  size_t have = 0;
  long served = 0;
  while (!stop) {
    ssize_t n = read(fd, buf + have, sizeof buf - have);
    if (n <= 0) break; /* EOF, error, or EINTR from SIGTERM */
    have += (size_t)n;
    size_t off = 0;
    for (;;) {
      char *end = memmem(buf + off, have - off, "\r\n\r\n", 4);
      if (end == NULL) break;
      size_t len = (size_t)(end + 4 - (buf + off));
      /* HTTP/1.0 (ab) wants its keep-alive confirmed. */
      char *eol = memchr(buf + off, '\r', len);
      int v10 = eol && eol - (buf + off) >= 8 && !memcmp(eol - 8, "HTTP/1.0", 8);
      const char *r = v10 ? resp_10 : resp_11;
      size_t rl = v10 ? sizeof resp_10 - 1 : sizeof resp_11 - 1;
      if (write(fd, r, rl) != (ssize_t)rl) return served;
      served++;
      off += len;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
    if (have == sizeof buf) break; /* a head larger than the buffer: give up */
  }
  return served;
}

int main(int argc, char **argv) {
  long max_conns = argc > 1 ? atol(argv[1]) : 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; /* no SA_RESTART: a blocked accept or read returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t l = sizeof a;
  int one = 1;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 64) ||
      getsockname(ls, (struct sockaddr *)&a, &l)) {
    perror("listen");
    return 1;
  }
  printf("port=%d\n", ntohs(a.sin_port));
  fflush(stdout);
  struct timespec c0, c1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  long reqs = 0, conns = 0;
  while (!stop) {
    int fd = accept(ls, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      perror("accept");
      return 1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns++;
    reqs += serve(fd);
    close(fd);
    if (max_conns > 0 && conns >= max_conns) break;
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  double cpu = (c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec);
  printf("pid=%d requests=%ld conns=%ld cpu_ns=%.0f cpu_ns_per_req=%.1f\n", (int)getpid(), reqs,
         conns, cpu, reqs ? cpu / reqs : 0.0);
  return 0;
}
