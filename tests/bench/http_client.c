/* http_client PORT N: N sequential keep-alive GETs on one TCP connection to 127.0.0.1:PORT
 * (bench_http.py runs it untraced against the traced and untraced servers). Each request
 * is one write; the response is read until its head and Content-Length body are in.
 * Prints: n=N ok=K rps=R ns_per_req=X cpu_ns_per_req=Y (Y: this client's own CPU). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char req[] = "GET /bench/hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "User-Agent: spanshim-bench\r\nAccept: */*\r\n\r\n";

/* Reads one response; 1 when complete with status 200, 0 otherwise. */
static int one_response(int fd, char *buf, size_t cap) {
  size_t have = 0;
  long body = -1;
  size_t head = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, cap - have);
    if (n <= 0) return 0;
    have += (size_t)n;
    if (body < 0) {
      char *end = memmem(buf, have, "\r\n\r\n", 4);
      if (end == NULL) {
        if (have == cap) return 0;
        continue;
      }
      head = (size_t)(end + 4 - buf);
      body = 0;
      for (char *p = buf; p < end;) {
        char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (eol == NULL) break;
        if (eol - p > 15 && !strncasecmp(p, "Content-Length:", 15)) body = atol(p + 15);
        p = eol + 2;
      }
    }
    if (have >= head + (size_t)body) {
      if (have > head + (size_t)body) return 0; /* the server answered more than asked */
      return have > 12 && !memcmp(buf + 9, "200", 3);
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: http_client PORT N\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long n = atol(argv[2]);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
    perror("connect");
    return 1;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char buf[8192];
  long ok = 0;
  struct timespec t0, t1, c0, c1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  for (long i = 0; i < n; i++) {
    if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) break;
    if (!one_response(fd, buf, sizeof buf)) break;
    ok++;
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  close(fd);
  double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
  double cpu = (c1.tv_sec - c0.tv_sec) * 1e9 + (c1.tv_nsec - c0.tv_nsec);
  printf("n=%ld ok=%ld rps=%.1f ns_per_req=%.1f cpu_ns_per_req=%.1f\n", n, ok,
         ok ? ok / (ns / 1e9) : 0.0, ok ? ns / ok : 0.0, ok ? cpu / ok : 0.0);
  return ok == n ? 0 : 1;
}
