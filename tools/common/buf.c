/* buf.c - growable byte buffer; see buf.h. */
#include "tools/common/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int ss__buf_grow(ss__buf *b, size_t extra) {
  if (b->oom) return -ENOMEM;
  if (b->cap - b->len >= extra) return 0;
  if (extra > ((size_t)-1 >> 2) - b->len) goto fail;
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;  /* doubling keeps appends amortized O(1) */
  char *d = realloc(b->data, cap);
  if (d == NULL) goto fail;
  b->data = d;
  b->cap = cap;
  return 0;
fail:
  b->oom = 1;
  return -ENOMEM;
}

int ss__buf_error(const ss__buf *b) {
  return b->oom ? -ENOMEM : 0;
}

void ss__buf_reset(ss__buf *b) {
  b->len = 0;
  b->oom = 0;
}

void ss__buf_free(ss__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
  b->oom = 0;
}

void ss__buf_printf(ss__buf *b, const char *fmt, ...) {
  va_list ap;
  char small[256];
  va_start(ap, fmt);
  int n = vsnprintf(small, sizeof small, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof small) {
    ss__buf_append(b, small, (size_t)n);
    return;
  }
  char *d = ss__buf_room(b, (size_t)n + 1);
  if (d == NULL) return;
  va_start(ap, fmt);
  vsnprintf(d, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}
