/* stack.c - failure stacks through a locally loaded libunwind; see stack.h. */
#include "runtime/stack.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

typedef int (*backtrace_fn)(void **buffer, int size);

static pthread_mutex_t loader = PTHREAD_MUTEX_INITIALIZER;

void ss__loader_lock(void) { pthread_mutex_lock(&loader); }
void ss__loader_unlock(void) { pthread_mutex_unlock(&loader); }
void ss__loader_atfork_prepare(void) { pthread_mutex_lock(&loader); }
void ss__loader_atfork_parent(void) { pthread_mutex_unlock(&loader); }
void ss__loader_atfork_child(void) { pthread_mutex_init(&loader, NULL); }

static _Atomic(backtrace_fn) unw_backtrace_p;
static _Atomic int load_state; /* 0 not tried, 2 loaded, 3 unavailable */

int ss__stack_load(void) {
  int st = atomic_load_explicit(&load_state, memory_order_acquire);
  if (st >= 2) return st == 2 ? 0 : -1;
  /* Decided under the loader lock, which a fork waits for: a child never inherits a
   * load in progress. Threads failing at the same time wait here for the one loading. */
  int saved = errno; /* dlopen may set it; the app's call set it last */
  ss__loader_lock();
  if (atomic_load(&load_state) == 0) {
    void *h = dlopen("libunwind.so.8", RTLD_LAZY | RTLD_LOCAL);
    backtrace_fn f = h ? (backtrace_fn)dlsym(h, "unw_backtrace") : NULL;
    atomic_store(&unw_backtrace_p, f);
    atomic_store_explicit(&load_state, f ? 2 : 3, memory_order_release);
  }
  ss__loader_unlock();
  errno = saved;
  return atomic_load(&load_state) == 2 ? 0 : -1;
}

int ss__stack_ready(void) {
  return atomic_load_explicit(&load_state, memory_order_acquire) == 2;
}

int ss__stack_capture(uint64_t *out, int max) {
  backtrace_fn f = atomic_load_explicit(&unw_backtrace_p, memory_order_acquire);
  if (f == NULL || max <= 0) return 0;
  void *buf[max];
  int saved = errno; /* libunwind probes addresses with write/msync, which can fail */
  int n = f(buf, max);
  errno = saved;
  for (int i = 0; i < n; i++) out[i] = (uint64_t)(uintptr_t)buf[i];
  return n < 0 ? 0 : n;
}
