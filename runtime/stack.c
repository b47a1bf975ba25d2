/* stack.c - failure stacks through the system's unwinder (libgcc_s), loaded locally; see
 * stack.h. */
#include "runtime/stack.h"
#include "runtime/ownfd.h"
#include "runtime/sys.h"

#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unwind.h>

typedef _Unwind_Reason_Code (*backtrace_fn)(_Unwind_Trace_Fn, void *);
typedef uintptr_t (*getip_fn)(struct _Unwind_Context *);

/* Aligned 128: first in .bss, on the page every fork child writes anyway (see ss__cfg in
 * shim/shim.c); the fork holds it, so each child writes it. */
static pthread_mutex_t loader __attribute__((aligned(128))) = PTHREAD_MUTEX_INITIALIZER;

void ss__loader_lock(void) { pthread_mutex_lock(&loader); }
void ss__loader_unlock(void) { pthread_mutex_unlock(&loader); }
void ss__loader_atfork_prepare(void) { pthread_mutex_lock(&loader); }
void ss__loader_atfork_parent(void) { pthread_mutex_unlock(&loader); }
SS_FORK_TEXT void ss__loader_atfork_child(void) { ss__mutex_reinit(&loader); }

static _Atomic(backtrace_fn) backtrace_p;
static _Atomic(getip_fn) getip_p; /* set before backtrace_p is published */
static _Atomic int load_state; /* 0 not tried, 2 loaded, 3 unavailable */

typedef struct {
  uint64_t *out;
  int n, max;
} walk;

static _Unwind_Reason_Code one_frame(struct _Unwind_Context *ctx, void *arg) {
  walk *w = arg;
  if (w->n >= w->max) return _URC_END_OF_STACK;
  uintptr_t ip = atomic_load_explicit(&getip_p, memory_order_relaxed)(ctx);
  if (ip == 0) return _URC_END_OF_STACK; /* the outermost frame */
  w->out[w->n++] = ip;
  return _URC_NO_REASON;
}

static int (*load_elsewhere)(void);

void ss__stack_set_loader(int (*fn)(void)) {
  load_elsewhere = fn;
}

static int find_libgcc(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  const char *n = info->dlpi_name, *slash = n ? strrchr(n, '/') : NULL;
  if (slash == NULL || strcmp(slash + 1, "libgcc_s.so.1") != 0) return 0;
  snprintf(arg, PATH_MAX, "%s", n);
  return 1;
}

/* dlopen of the unwinder, once; `nofd`: only if it is loaded already. (RTLD_NOLOAD alone
 * does not do: for a name it has not loaded, the loader opens the cache and the file to
 * compare it with what it has. The name of a loaded object, as the loader keeps it,
 * matches without a look at the disk.) Two threads may both get here: each store is of the
 * same value. */
static void load_here(int nofd) {
  if (atomic_load(&load_state) != 0) return;
  void *h;
  if (nofd) {
    char path[PATH_MAX];
    if (dl_iterate_phdr(find_libgcc, path) == 0) return;
    h = dlopen(path, RTLD_LAZY | RTLD_LOCAL | RTLD_NOLOAD);
    if (h == NULL) return;
  } else {
    ss__own_library_begin(); /* the loader's fds: see ownfd.h */
    h = dlopen("libgcc_s.so.1", RTLD_LAZY | RTLD_LOCAL);
    ss__own_library_end();
  }
  backtrace_fn f = h ? (backtrace_fn)dlsym(h, "_Unwind_Backtrace") : NULL;
  getip_fn g = h ? (getip_fn)dlsym(h, "_Unwind_GetIP") : NULL;
  atomic_store(&getip_p, g);
  if (g == NULL) f = NULL;
  if (f != NULL) { /* the unwinder's own one-time set-up, here rather than in a hook */
    uint64_t frames[4];
    walk w = {frames, 0, 4};
    f(one_frame, &w);
  }
  atomic_store(&backtrace_p, f);
  atomic_store_explicit(&load_state, f ? 2 : 3, memory_order_release);
}

int ss__stack_load(void) {
  int st = atomic_load_explicit(&load_state, memory_order_acquire);
  if (st >= 2) return st == 2 ? 0 : -1;
  /* Decided under the loader lock, which a fork waits for: a child never inherits a
   * load in progress. Threads failing at the same time wait here for the one loading. */
  int saved = errno; /* dlopen may set it; the app's call set it last */
  int here = ss__own_is_private() || load_elsewhere == NULL;
  if (ss__own_is_private()) {
    /* The exporter thread, in its table of its own: dlopen here without the shim's loader
     * lock. An app thread inside dlopen (a constructor) holds the dynamic loader's lock and
     * may wait for ours (shim/resolve.c, a bundled libpq's first call): holding ours while
     * dlopen waits for theirs would deadlock both. */
    load_here(0);
    errno = saved;
    return atomic_load(&load_state) == 2 ? 0 : -1;
  }
  ss__loader_lock();
  load_here(!here);
  ss__loader_unlock();
  /* Not loaded yet and this thread shares the app's fd table: the loader's open would
   * take a number the app could get, so the thread with a table of its own loads it. */
  if (!here && atomic_load(&load_state) == 0) {
    int rc = load_elsewhere();
    if (rc == -ENOSYS) {
      ss__loader_lock();
      load_here(0);
      ss__loader_unlock();
    }
  }
  errno = saved;
  return atomic_load(&load_state) == 2 ? 0 : -1;
}

int ss__stack_decided(void) {
  return atomic_load_explicit(&load_state, memory_order_acquire) >= 2;
}

int ss__stack_ready(void) {
  return atomic_load_explicit(&load_state, memory_order_acquire) == 2;
}

/* Where this thread faulted (+ 1), noted by its fault handler; 0: none. */
static __thread uint64_t fault_pc __attribute__((tls_model("initial-exec")));

void ss__stack_note_fault(const void *uctx) {
  const ucontext_t *uc = uctx;
  if (uc == NULL) return;
#if defined(__x86_64__)
  fault_pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP] + 1;
#elif defined(__aarch64__)
  fault_pc = (uint64_t)uc->uc_mcontext.pc + 1;
#else
  (void)uc;
#endif
}

int ss__stack_capture(uint64_t *out, int max) {
  backtrace_fn f = atomic_load_explicit(&backtrace_p, memory_order_acquire);
  if (max <= 0) return 0;
  if (f == NULL) { /* no unwinder: where a fault was, if this thread had one */
    if (fault_pc == 0) return 0;
    out[0] = fault_pc;
    return 1;
  }
  walk w = {out, 0, max};
  int saved = errno;
  f(one_frame, &w);
  errno = saved;
  return w.n;
}

void ss__module_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi) {
  *lo = UINTPTR_MAX;
  *hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (a < *lo) *lo = a;
    if (a + ph->p_memsz > *hi) *hi = a + ph->p_memsz;
  }
}
