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

#endif
