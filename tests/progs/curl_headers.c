/* One application header list (X-App: 1, and `traceparent: TP` when given) used by two
 * easy handles, a duplicate of the first, and the first again after curl_easy_reset;
 * checks the list is untouched (same nodes, same strings) after every transfer. Prints
 * pid=, codes=, list_unchanged=.
 * Usage: curl_headers URL [TP] */
/* LIBS: -lcurl */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

static struct curl_slist *list;
static struct curl_slist *nodes[4];
static char *datas[4], copies[4][128];
static int count;

static int unchanged(void) {
  int i = 0;
  for (struct curl_slist *l = list; l; l = l->next, i++)
    if (i >= count || l != nodes[i] || l->data != datas[i] || strcmp(l->data, copies[i]))
      return 0;
  return i == count;
}

static long get(CURL *h) {
  long code = 0;
  curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  return code;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  char tp[160];
  curl_global_init(CURL_GLOBAL_DEFAULT);
  list = curl_slist_append(NULL, "X-App: 1");
  if (argc > 2) {
    snprintf(tp, sizeof tp, "traceparent: %s", argv[2]);
    list = curl_slist_append(list, tp);
  }
  for (struct curl_slist *l = list; l; l = l->next, count++) {
    nodes[count] = l;
    datas[count] = l->data;
    snprintf(copies[count], sizeof copies[count], "%s", l->data);
  }
  CURL *a = curl_easy_init(), *b = curl_easy_init();
  CURL *hs[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    curl_easy_setopt(hs[i], CURLOPT_URL, argv[1]);
    curl_easy_setopt(hs[i], CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(hs[i], CURLOPT_WRITEFUNCTION, discard);
  }
  int same = 1;
  long c1 = get(a);
  same &= unchanged();
  long c2 = get(b);
  same &= unchanged();
  CURL *d = curl_easy_duphandle(a);
  long c3 = get(d);
  same &= unchanged();
  curl_easy_reset(a); /* no header list any more: only ours goes out */
  curl_easy_setopt(a, CURLOPT_URL, argv[1]);
  curl_easy_setopt(a, CURLOPT_WRITEFUNCTION, discard);
  long c4 = get(a);
  same &= unchanged();
  curl_easy_cleanup(d);
  curl_easy_cleanup(a);
  curl_easy_cleanup(b);
  curl_slist_free_all(list);
  curl_global_cleanup();
  printf("pid=%d\ncodes=%ld,%ld,%ld,%ld\nlist_unchanged=%d\n", (int)getpid(), c1, c2, c3, c4,
         same);
  return 0;
}
