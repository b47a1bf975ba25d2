/* N sequential GETs of URL on one reused easy handle (one keep-alive connection), as a
 * client library in a service would make them. Prints pid=, n=, ok=, secs=, rps=.
 * Usage: curl_loop URL N */
/* LIBS: -lcurl */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[2]), ok = 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_URL, argv[1]);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < n; i++) {
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK &&
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code == 200)
      ok++;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
  curl_easy_cleanup(h);
  curl_global_cleanup();
  printf("pid=%d\nn=%d\nok=%d\nsecs=%.6f\nrps=%.1f\n", (int)getpid(), n, ok, secs, n / secs);
  return ok == n ? 0 : 1;
}
