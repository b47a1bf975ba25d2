/* N concurrent transfers through the multi interface on one thread (curl_multi_perform +
 * curl_multi_poll), each GET BASE/i. Prints done=, ok= (2xx answers) and pid=.
 * Usage: curl_multi_many BASE_URL N */
/* LIBS: -lcurl */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[2]), done = 0, ok = 0, running = 0, left;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  CURL **h = calloc((size_t)n, sizeof *h);
  for (int i = 0; i < n; i++) {
    char url[512];
    snprintf(url, sizeof url, "%s/%d", argv[1], i);
    h[i] = curl_easy_init();
    curl_easy_setopt(h[i], CURLOPT_URL, url);
    curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
    curl_multi_add_handle(m, h[i]);
  }
  do {
    if (curl_multi_perform(m, &running) != CURLM_OK) break;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      long code = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      done++;
      if (msg->data.result == CURLE_OK && code / 100 == 2) ok++;
    }
    if (running) curl_multi_poll(m, NULL, 0, 1000, NULL);
  } while (running);
  for (int i = 0; i < n; i++) {
    curl_multi_remove_handle(m, h[i]);
    curl_easy_cleanup(h[i]);
  }
  curl_multi_cleanup(m);
  free(h);
  curl_global_cleanup();
  printf("pid=%d\ndone=%d\nok=%d\n", (int)getpid(), done, ok);
  return done == n ? 0 : 1;
}
