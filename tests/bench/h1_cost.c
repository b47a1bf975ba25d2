/* h1_cost [N]: the cost of runtime/http1.c's parser per keep-alive request+response pair,
 * as the HTTP hooks pay it on the app's thread: a server-side pair of parsers (requests in,
 * responses out) fed N times with each of three pairs (after 100 untimed warm-up rounds):
 *   bench   the request and response of tests/bench/http_client.c / http_server.c (~160
 *           bytes of heads: the pair of the HTTP benchmark)
 *   nginx   curl 7.88's GET and nginx 1.22's 200 with a 6-byte body
 *   python  curl 7.88's GET and Python 3.11 http.server's HTTP/1.0 200
 * Each request is fed as one read, the response as one write, with the loop a hook runs
 * (feed until all is consumed; on a request head, ss__h1_expect_response_to with its
 * method). Prints ns per pair; under callgrind, instructions per pair:
 *   valgrind --tool=callgrind --toggle-collect='timed_*' --callgrind-out-file=/tmp/h1.out \
 *     build/tests/bench/h1_cost 10000
 *   callgrind_annotate --inclusive=yes /tmp/h1.out | grep timed_   (Ir / 10000 per pair)
 * The parser is compiled into this program (-O2 -g, as the library by default); the bench
 * rule does not know that, so remove the binary after editing runtime/http1.c. Building with
 * -DSS_H1_NO_SSE2 (or also -DSS_H1_NO_SWAR) measures the parser's portable scans. */
/* LIBS: runtime/tracestate.c */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../runtime/http1.c"


static const char bench_req[] = "GET /bench/hello?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                "User-Agent: spanshim-bench\r\nAccept: */*\r\n\r\n";
static const char bench_resp[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n";

static const char curl_req[] = "GET /orders/42?x=1 HTTP/1.1\r\n"
                               "Host: 127.0.0.1:18091\r\n"
                               "User-Agent: curl/7.88.1\r\n"
                               "Accept: */*\r\n"
                               "\r\n";
static const char ng_resp[] = "HTTP/1.1 200 OK\r\n"
                              "Server: nginx/1.22.1\r\n"
                              "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                              "Content-Type: text/plain\r\n"
                              "Content-Length: 6\r\n"
                              "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                              "Connection: keep-alive\r\n"
                              "ETag: \"6b0d8b0c-6\"\r\n"
                              "Accept-Ranges: bytes\r\n"
                              "\r\n"
                              "hello\n";
static const char py_resp[] = "HTTP/1.0 200 OK\r\n"
                              "Server: SimpleHTTP/0.6 Python/3.11.7\r\n"
                              "Date: Mon, 30 Nov 2026 14:41:19 GMT\r\n"
                              "Content-type: text/plain\r\n"
                              "Content-Length: 6\r\n"
                              "Last-Modified: Mon, 30 Nov 2026 14:41:16 GMT\r\n"
                              "\r\n"
                              "hello\n";

static ss__h1 in, out;
static unsigned long events;

/* One read or write as the hook feeds it. */
static void feed(ss__h1 *p, ss__h1 *other, const char *buf, size_t n) {
  while (n) {
    int ev;
    size_t used = ss__h1_feed(p, buf, n, &ev);
    if (ev & SS_H1_BAD) {
      fprintf(stderr, "h1_cost: BAD\n");
      exit(1);
    }
    if (ev) events++;
    if ((ev & SS_H1_HEAD) && other) ss__h1_expect_response_to(other, p->head.method);
    buf += used;
    n -= used;
  }
}

static void __attribute__((noinline)) one_pair(const char *req, size_t rn, const char *resp,
                                               size_t sn) {
  feed(&in, &out, req, rn);
  feed(&out, NULL, resp, sn);
}

#define PAIRS(name, req, resp)                                                               \
  static void __attribute__((noinline)) pairs_##name(long n) {                               \
    for (long i = 0; i < n; i++) one_pair(req, sizeof req - 1, resp, sizeof resp - 1);      \
  }                                                                                          \
  static void __attribute__((noinline)) timed_##name(long n) { pairs_##name(n); }
PAIRS(bench, bench_req, bench_resp)
PAIRS(nginx, curl_req, ng_resp)
PAIRS(python, curl_req, py_resp)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void measure(const char *name, void (*warm)(long), void (*fn)(long), long n) {
  double t0;
  ss__h1_init(&in, SS_H1_REQUEST);
  ss__h1_init(&out, SS_H1_RESPONSE);
  warm(100);
  t0 = now();
  fn(n);
  printf("%-7s n=%ld ns_per_pair=%.1f\n", name, n, (now() - t0) / (n ? n : 1));
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 10000;
  measure("bench", pairs_bench, timed_bench, n);
  measure("nginx", pairs_nginx, timed_nginx, n);
  measure("python", pairs_python, timed_python, n);
  if (events != 3 * 3 * (unsigned long)(n + 100)) { /* HEAD|END, HEAD, END per pair */
    fprintf(stderr, "h1_cost: %lu events, expected %lu\n", events, 9 * (unsigned long)(n + 100));
    return 1;
  }
  return 0;
}
