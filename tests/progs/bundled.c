/* bundled.c - libpq and libcurl as Python wheels ship them: private copies with hashed
 * names (libpq-<hash>.so.5.x, libcurl-<hash>.so.4.x), loaded RTLD_LOCAL as dependencies
 * of a dlopen'd extension module (issue 13 item 1).
 *
 * Built twice from this file: normally as the program `bundled EXT.so CONNINFO URL` (no
 * DT_NEEDED on either library), and by the test with -DBUNDLED_EXT -shared, linked against
 * the renamed copies, as the extension, whose ext_run connects to PostgreSQL, runs one
 * query, and fetches URL with libcurl. Prints rows=, curl=, http=, body= (and error=,
 * libcurl's message, when the transfer failed). With -DBUNDLED_CTOR also from the module's
 * constructor (BUNDLED_CONNINFO, BUNDLED_URL), printed first. */
/* LIBS: -ldl */
#ifdef BUNDLED_EXT
#include <curl/curl.h>
#include <postgresql/libpq-fe.h>
#include <stdio.h>
#include <string.h>

static size_t collect(char *p, size_t size, size_t n, void *arg) {
  size_t *total = arg;
  (void)p;
  *total += size * n;
  return size * n;
}

void ext_run(const char *conninfo, const char *url, char *out, size_t cap) {
  PGconn *c = PQconnectdb(conninfo);
  int rows = -1;
  if (c != NULL && PQstatus(c) == CONNECTION_OK) {
    PGresult *r = PQexec(c, "SELECT generate_series(1, 4)");
    rows = PQntuples(r);
    PQclear(r);
  }
  PQfinish(c);
  CURL *h = curl_easy_init();
  size_t body = 0;
  long code = 0;
  CURLcode rc = CURLE_FAILED_INIT;
  char why[CURL_ERROR_SIZE] = "";
  if (h != NULL) {
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(h);
  }
  int n = snprintf(out, cap, "pq=%s rows=%d curl=%d http=%ld body=%zu", c ? "conn" : "null",
                   rows, (int)rc, code, body);
  /* A failed transfer says why (libcurl's message), so a one-off failure can be read. */
  if (rc != CURLE_OK && n > 0 && (size_t)n < cap)
    snprintf(out + n, cap - (size_t)n, " error=%s", why[0] ? why : curl_easy_strerror(rc));
}
#ifdef BUNDLED_CTOR
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* -DBUNDLED_CTOR: the same work from the module's constructor, inside dlopen (the dynamic
 * loader's lock held), after the process's first failing call (a refused connect). */
char ext_ctor_out[512] = "ctor did not run";

__attribute__((constructor)) static void at_load(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(s, (struct sockaddr *)&a, sizeof a);
  close(s);
  char *ci = getenv("BUNDLED_CONNINFO"), *url = getenv("BUNDLED_URL");
  int n = snprintf(ext_ctor_out, sizeof ext_ctor_out, "ctor_connect=%d ", rc);
  if (ci && url) ext_run(ci, url, ext_ctor_out + n, sizeof ext_ctor_out - (size_t)n);
}
#endif
#else
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 4) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    printf("dlopen_error=%s\n", dlerror());
    return 3;
  }
  void (*run)(const char *, const char *, char *, size_t) =
      (void (*)(const char *, const char *, char *, size_t))dlsym(h, "ext_run");
  char out[512] = "no ext_run";
  const char *ctor = dlsym(h, "ext_ctor_out");
  if (ctor) printf("%s\n", ctor);
  if (run) run(argv[2], argv[3], out, sizeof out);
  printf("%s\n", out);
  return 0;
}
#endif
