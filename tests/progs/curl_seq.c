/* Transfers one after another on one easy handle (its connections kept alive between
 * them), as a service's client library makes them. Each argument is one transfer:
 *   get:URL           GET
 *   post:FILE:URL     POST of FILE's bytes (CURLOPT_POSTFIELDS, Content-Length)
 *   put:FILE:URL      PUT of FILE read through a read callback (CURLOPT_UPLOAD)
 * and a leading `L` (Lget:, Lpost:) follows redirects. Prints pid= and codes= (the
 * status of each transfer, or -CURLcode when it failed). CURL_SEQ_CAINFO: the CA file
 * for https (CURLOPT_CAINFO).
 * Usage: curl_seq TRANSFER... */
/* LIBS: -lcurl */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t discard(char *p, size_t sz, size_t n, void *u) {
  (void)p;
  (void)u;
  return sz * n;
}

static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)*len + 1);
  if (b && fread(b, 1, (size_t)*len, f) != (size_t)*len) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

int main(int argc, char **argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL *h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  if (getenv("CURL_SEQ_CAINFO")) curl_easy_setopt(h, CURLOPT_CAINFO, getenv("CURL_SEQ_CAINFO"));
  printf("pid=%d\ncodes=", (int)getpid());
  for (int i = 1; i < argc; i++) {
    char *a = argv[i], *file = NULL, *url, *body = NULL;
    int follow = a[0] == 'L';
    if (follow) a++;
    url = strchr(a, ':') + 1;
    if (strncmp(a, "post:", 5) == 0 || strncmp(a, "put:", 4) == 0) {
      file = url;
      url = strchr(file, ':');
      *url++ = '\0';
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, (long)follow);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    FILE *in = NULL;
    if (strncmp(a, "post:", 5) == 0) {
      long len = 0;
      body = slurp(file, &len);
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, len);
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    } else if (strncmp(a, "put:", 4) == 0) {
      in = fopen(file, "rb");
      fseek(in, 0, SEEK_END);
      long len = ftell(in);
      fseek(in, 0, SEEK_SET);
      curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(h, CURLOPT_READDATA, in);
      curl_easy_setopt(h, CURLOPT_INFILESIZE, len);
    }
    long code = 0;
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    printf("%s%ld", i > 1 ? "," : "", rc == CURLE_OK ? code : -(long)rc);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 0L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    if (in) fclose(in);
    free(body);
  }
  printf("\n");
  curl_easy_cleanup(h);
  curl_global_cleanup();
  return 0;
}
