/* Transfers driven by curl_multi_socket_action from the program's own poll(2) loop (the
 * event-loop style of libuv/libevent users): CURLMOPT_SOCKETFUNCTION keeps the fd set,
 * CURLMOPT_TIMERFUNCTION the timeout. GETs BASE/i for i < N; when HANG_URL is given, one
 * more transfer to it (a server that never answers) is removed before it completes.
 * Prints pid=, done=, ok=.
 * Usage: curl_sockaction BASE_URL N [HANG_URL] */
/* LIBS: -lcurl */
#include <curl/curl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXFD 256
static struct pollfd fds[MAXFD];
static int nfds;
static long timeout_ms = -1;

static int on_socket(CURL *e, curl_socket_t s, int what, void *u, void *sp) {
  (void)e;
  (void)u;
  (void)sp;
  int i;
  for (i = 0; i < nfds && fds[i].fd != s; i++) {}
  if (what == CURL_POLL_REMOVE) {
    if (i < nfds) fds[i] = fds[--nfds];
    return 0;
  }
  if (i == nfds) {
    if (nfds == MAXFD) return -1;
    nfds++;
  }
  fds[i].fd = s;
  fds[i].events = (short)(((what & CURL_POLL_IN) ? POLLIN : 0) |
                          ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  return 0;
}

static int on_timer(CURLM *m, long ms, void *u) {
  (void)m;
  (void)u;
  timeout_ms = ms;
  return 0;
}

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[2]), abandon = argc > 3, done = 0, ok = 0, running = 1, left;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM *m = curl_multi_init();
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
  CURL **h = calloc((size_t)n + 1, sizeof *h);
  for (int i = 0; i < n; i++) {
    char url[512];
    snprintf(url, sizeof url, "%s/%d", argv[1], i);
    h[i] = curl_easy_init();
    curl_easy_setopt(h[i], CURLOPT_URL, url);
    curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, discard);
    curl_multi_add_handle(m, h[i]);
  }
  if (abandon) {
    h[n] = curl_easy_init();
    curl_easy_setopt(h[n], CURLOPT_URL, argv[3]);
    curl_multi_add_handle(m, h[n]);
  }
  curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
  while (done < n) {
    int rc = poll(fds, (nfds_t)nfds, timeout_ms < 0 ? 200 : (int)timeout_ms);
    if (rc <= 0) {
      curl_multi_socket_action(m, CURL_SOCKET_TIMEOUT, 0, &running);
    } else {
      struct pollfd ready[MAXFD];
      int k = nfds;
      memcpy(ready, fds, sizeof ready[0] * (size_t)k);
      for (int i = 0; i < k; i++) {
        if (!ready[i].revents) continue;
        int ev = ((ready[i].revents & POLLIN) ? CURL_CSELECT_IN : 0) |
                 ((ready[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((ready[i].revents & (POLLERR | POLLHUP)) ? CURL_CSELECT_ERR : 0);
        curl_multi_socket_action(m, ready[i].fd, ev, &running);
      }
    }
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE || (abandon && msg->easy_handle == h[n])) continue;
      long code = 0;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      done++;
      if (msg->data.result == CURLE_OK && code / 100 == 2) ok++;
    }
  }
  for (int i = 0; i < n + abandon; i++) {
    curl_multi_remove_handle(m, h[i]);
    curl_easy_cleanup(h[i]);
  }
  curl_multi_cleanup(m);
  free(h);
  curl_global_cleanup();
  printf("pid=%d\ndone=%d\nok=%d\n", (int)getpid(), done, ok);
  return 0;
}
