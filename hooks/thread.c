/* thread.c - a new thread starts under its creator's current span.
 *
 * pthread_create, when the creating thread has a span on its context stack, starts the
 * new thread through a trampoline that pushes that context first, so work the thread does
 * for the creator (libcurl's resolver thread running getaddrinfo) is a child of it, not
 * an orphan trace. The trampoline record is the only allocation; when it cannot be made
 * the thread is created as it would be without the shim. Threads created with no span
 * current (the common case) pass straight through. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "hooks/hook.h"

typedef struct tramp {
  void *(*fn)(void *);
  void *arg;
  ss__ctx ctx;
} tramp;

static void *trampoline(void *p) {
  tramp t = *(tramp *)p;
  free(p);
  ss__ctx_reset(&t.ctx);
  void *r = t.fn(t.arg);
  ss__ctx_reset(NULL);
  return r;
}

static int missing_pthread_create(pthread_t *th, const pthread_attr_t *attr,
                                  void *(*fn)(void *), void *arg) {
  (void)th, (void)attr, (void)fn, (void)arg;
  return ENOSYS;
}
SS_REAL_OR(pthread_create, missing_pthread_create)
SS_EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *),
                             void *arg) {
  if (ss__ctx_depth() <= 0 || !ss__active(SS_HOOK_ALL))
    return real_pthread_create()(th, attr, fn, arg);
  tramp *t;
  SS_SAVE_ERRNO(t = malloc(sizeof *t));
  if (t == NULL || !ss__ctx_current(&t->ctx)) {
    SS_SAVE_ERRNO(free(t));
    return real_pthread_create()(th, attr, fn, arg);
  }
  t->fn = fn;
  t->arg = arg;
  int rc = real_pthread_create()(th, attr, trampoline, t);
  if (rc != 0) SS_SAVE_ERRNO(free(t));
  return rc;
}
