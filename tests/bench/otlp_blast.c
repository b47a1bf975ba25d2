/* otlp_blast.c - load generator for spanshimd benchmarks: CONNS threads, each with its own
 * keep-alive Unix connection, POST pre-encoded ExportTraceServiceRequest bodies (read
 * from BODIES: repeated [u32 little-endian span count][u32 length][bytes]) for SECONDS,
 * keeping DEPTH requests in flight, optionally paced to RATE spans/s in total. Prints
 * "spans=N requests=N errors=N seconds=S". */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct body { char *req; size_t len; uint32_t spans; } body;
static body *bodies;
static size_t n_bodies;
static const char *sock_path;
static double seconds, rate;
static int depth, conns;
static uint64_t total_spans, total_reqs, total_errs;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int send_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Reads one response; 1 for a 200, 0 for another status, -1 on EOF/error. */
static int read_resp(int fd, char *buf, size_t *have) {
  for (;;) {
    char *end = *have ? memmem(buf, *have, "\r\n\r\n", 4) : NULL;
    if (end) {
      size_t head = (size_t)(end - buf) + 4, clen = 0;
      char *cl = memmem(buf, head, "Content-Length: ", 16);
      if (cl) clen = strtoul(cl + 16, NULL, 10);
      if (*have >= head + clen) {
        int ok = memcmp(buf, "HTTP/1.1 200", 12) == 0;
        memmove(buf, buf + head + clen, *have - head - clen);
        *have -= head + clen;
        return ok;
      }
    }
    ssize_t r = read(fd, buf + *have, 65536 - *have);
    if (r <= 0) return -1;
    *have += (size_t)r;
  }
}

static void *worker(void *arg) {
  size_t idx = (size_t)(uintptr_t)arg % n_bodies;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { perror("connect"); return NULL; }
  char *buf = malloc(65536);
  size_t have = 0;
  uint64_t spans = 0, reqs = 0, errs = 0, inflight_spans[64];
  int inflight = 0, head = 0;
  double t0 = now(), my_rate = rate / conns;
  while (now() - t0 < seconds) {
    while (inflight < depth) {
      if (my_rate > 0 && spans >= (now() - t0) * my_rate) break;
      body *b = &bodies[idx++ % n_bodies];
      if (send_all(fd, b->req, b->len) != 0) goto out;
      inflight_spans[(head + inflight++) % 64] = b->spans;
    }
    if (inflight == 0) { usleep(200); continue; }
    int ok = read_resp(fd, buf, &have);
    if (ok < 0) goto out;
    if (ok) spans += inflight_spans[head % 64], reqs++;
    else errs++;
    head++, inflight--;
  }
  while (inflight > 0) {
    int ok = read_resp(fd, buf, &have);
    if (ok < 0) break;
    if (ok) spans += inflight_spans[head % 64], reqs++;
    else errs++;
    head++, inflight--;
  }
out:
  close(fd);
  free(buf);
  pthread_mutex_lock(&mu);
  total_spans += spans, total_reqs += reqs, total_errs += errs;
  pthread_mutex_unlock(&mu);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: otlp_blast SOCKET BODIES CONNS SECONDS DEPTH [RATE]\n");
    return 2;
  }
  sock_path = argv[1];
  conns = atoi(argv[3]);
  seconds = atof(argv[4]);
  depth = atoi(argv[5]);
  if (depth > 64) depth = 64;
  rate = argc > 6 ? atof(argv[6]) : 0;
  FILE *f = fopen(argv[2], "rb");
  if (!f) { perror(argv[2]); return 1; }
  uint32_t hdr[2];
  while (fread(hdr, 4, 2, f) == 2) {
    char *p = malloc(hdr[1]);
    if (fread(p, 1, hdr[1], f) != hdr[1]) break;
    bodies = realloc(bodies, (n_bodies + 1) * sizeof *bodies);
    body *b = &bodies[n_bodies++];
    b->spans = hdr[0];
    b->req = malloc(hdr[1] + 256);
    int h = snprintf(b->req, 256, "POST /v1/traces HTTP/1.1\r\nHost: b\r\nContent-Type: "
                     "application/x-protobuf\r\nContent-Length: %u\r\n\r\n", hdr[1]);
    memcpy(b->req + h, p, hdr[1]);
    b->len = (size_t)h + hdr[1];
    free(p);
  }
  fclose(f);
  pthread_t th[256];
  double t0 = now();
  for (int i = 0; i < conns && i < 256; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(i * 7));
  for (int i = 0; i < conns && i < 256; i++) pthread_join(th[i], NULL);
  printf("spans=%llu requests=%llu errors=%llu seconds=%.3f\n", (unsigned long long)total_spans,
         (unsigned long long)total_reqs, (unsigned long long)total_errs, now() - t0);
  return 0;
}
