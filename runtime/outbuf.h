/* outbuf.h - the bounded output the sanitizers write into (runtime/args.c, url.c, sql.c):
 * bytes past cap are dropped, so a rewritten value is cut short, never overflows. Pure
 * inline functions over caller memory: no allocation, any thread, signal-safe. */
#ifndef SS_OUTBUF_H
#define SS_OUTBUF_H

#include <stddef.h>
#include <string.h>

typedef struct ss__out {
  char *p;    /* the caller's buffer */
  size_t n;   /* bytes written */
  size_t cap; /* its size */
} ss__out;

static inline void ss__out_put(ss__out *o, const char *s, size_t n) {
  if (n > o->cap - o->n) n = o->cap - o->n;
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static inline void ss__out_putc(ss__out *o, char c) {
  if (o->n < o->cap) o->p[o->n++] = c;
}

static inline void ss__out_puts(ss__out *o, const char *s) {
  ss__out_put(o, s, strlen(s));
}

/* v in decimal. */
static inline void ss__out_uint(ss__out *o, unsigned long long v) {
  char b[20];
  size_t i = sizeof b;
  do b[--i] = (char)('0' + v % 10); while ((v /= 10) != 0);
  ss__out_put(o, b + i, sizeof b - i);
}

/* NUL-terminates what was written: 0, or -1 (and "") when it did not all fit. Start-up
 * code formats with these rather than snprintf: printf's code is four pages of libc
 * that a process which never formats anything else would fault in for it. */
static inline int ss__out_end(ss__out *o) {
  if (o->cap == 0) return -1;
  if (o->n >= o->cap) {
    o->p[0] = '\0';
    return -1;
  }
  o->p[o->n] = '\0';
  return 0;
}

#endif
