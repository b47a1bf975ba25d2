/* buf.h - a growable byte buffer for the tools (JSON output, HTTP responses).
 *
 * Appends never fail loudly: an allocation failure sets `oom`, later appends become
 * no-ops, and the caller checks once at the end (ss__buf_error), which keeps encoders free
 * of per-call error plumbing. Not thread-safe; the buffer owns `data` (malloc'd) and
 * ss__buf_free releases it. `data` is not NUL-terminated unless the caller appends one. */
#ifndef SS_BUF_H
#define SS_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct ss__buf {
  char *data;  /* read-only for users */
  size_t len;  /* bytes used; callers may lower it (truncate) */
  size_t cap;  /* private */
  int oom;     /* set once an allocation failed */
} ss__buf;

#define SS_BUF_INIT {NULL, 0, 0, 0}

/* Makes room for `extra` more bytes; 0, or -ENOMEM (and sets oom). */
int ss__buf_grow(ss__buf *b, size_t extra);
/* 0, or -ENOMEM if any append since the last ss__buf_reset failed. */
int ss__buf_error(const ss__buf *b);
/* Empties the buffer (keeps its memory) and clears oom. */
void ss__buf_reset(ss__buf *b);
void ss__buf_free(ss__buf *b);
/* printf-style append. */
void ss__buf_printf(ss__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns a pointer to n writable bytes at the end, or NULL (oom); the caller then
 * advances b->len by what it wrote. */
static inline char *ss__buf_room(ss__buf *b, size_t n) {
  if (b->cap - b->len < n && ss__buf_grow(b, n) != 0) return NULL;
  return b->data + b->len;
}

static inline void ss__buf_append(ss__buf *b, const void *p, size_t n) {
  if (n == 0) return;  /* p may be NULL then (an empty buffer's data): memcpy forbids it */
  char *d = ss__buf_room(b, n);
  if (d == NULL) return;
  memcpy(d, p, n);
  b->len += n;
}

static inline void ss__buf_putc(ss__buf *b, char c) {
  char *d = ss__buf_room(b, 1);
  if (d == NULL) return;
  *d = c;
  b->len++;
}

/* Appends a string literal without strlen. */
#define SS_BUF_LIT(b, lit) ss__buf_append((b), (lit), sizeof(lit) - 1)

static inline void ss__buf_puts(ss__buf *b, const char *s) {
  ss__buf_append(b, s, strlen(s));
}

#endif
