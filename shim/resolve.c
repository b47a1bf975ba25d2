/* resolve.c - finding the real function behind a hook.
 *
 * libc's functions are always found with RTLD_NEXT. Library functions (libpq, libcurl)
 * resolve to what the caller would have bound to without the shim (hooks/hook.h): the
 * global scope's next definition, else the one in the caller's own lookup scope. That
 * second case is a library loaded RTLD_LOCAL as the dependency of a dlopen'd module
 * (Python wheels ship libpq-<hash>.so.5.x and libcurl-<hash>.so.4.x that way): its
 * symbols are not global, RTLD_NEXT finds nothing, and the module's call reached our
 * hook only because the preloaded shim comes first in the global scope. The caller
 * object is found from the call's return address (dl_iterate_phdr over its PT_LOAD
 * segments), and the symbol looked up in its scope with dlopen(RTLD_NOLOAD) + dlsym: the
 * library is never loaded by us, never made a dependency of the shim, and never matched
 * by file name. */
#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>

#include "runtime/log.h"
#include "runtime/stack.h"
#include "shim/shim.h"

__thread void *ss__lib_anchor __attribute__((tls_model("initial-exec")));
_Atomic uintptr_t ss__self_lo, ss__self_hi;

/* An object's address range (its PT_LOAD segments) and name, found by an address in it. */
typedef struct where {
  uintptr_t addr, lo, hi;
  const char *name;
  int found;
} where;

static int find_obj(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  where *w = arg;
  uintptr_t lo, hi;
  ss__module_range(info, &lo, &hi);
  if (w->addr < lo || w->addr >= hi) return 0;
  w->lo = lo;
  w->hi = hi;
  w->name = info->dlpi_name;
  w->found = 1;
  return 1;
}

static void note_self(void) {
  if (atomic_load(&ss__self_hi) != 0) return;
  where w = {.addr = (uintptr_t)&ss__libfn_resolve};
  dl_iterate_phdr(find_obj, &w);
  if (!w.found) return;
  atomic_store(&ss__self_lo, w.lo);
  atomic_store(&ss__self_hi, w.hi);
}

static int in_self(const void *p) {
  uintptr_t a = (uintptr_t)p;
  return a >= atomic_load(&ss__self_lo) && a < atomic_load(&ss__self_hi);
}

/* sym as the object `name` (its lookup scope: itself and its dependencies) sees it;
 * never the shim's. The main program ("") has the global scope, covered by RTLD_NEXT. */
static void *sym_in(const char *name, const char *sym) {
  if (name == NULL || *name == '\0') return NULL;
  void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
  if (h == NULL) return NULL;
  void *p = dlsym(h, sym);
  dlclose(h); /* drops only the reference RTLD_NOLOAD took */
  return p != NULL && !in_self(p) ? p : NULL;
}

typedef struct anydef {
  const char *sym;
  void *found;
} anydef;

static int visit_any(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  anydef *s = arg;
  s->found = sym_in(info->dlpi_name, s->sym);
  return s->found != NULL;
}

/* sym in the scope of the object holding `addr` (0: none), else of any loaded object.
 * Under the loader lock. Sets *lo, *hi to the object's range when it was found there. */
static void *resolve_locked(const char *sym, uintptr_t addr, uintptr_t *lo, uintptr_t *hi) {
  note_self();
  where w = {.addr = addr};
  if (addr != 0) dl_iterate_phdr(find_obj, &w);
  void *p = NULL;
  if (w.found && !in_self((void *)w.lo)) p = sym_in(w.name, sym);
  if (p != NULL) {
    *lo = w.lo;
    *hi = w.hi;
    return p;
  }
  anydef s = {sym, NULL};
  dl_iterate_phdr(visit_any, &s);
  return s.found;
}

void *ss__libfn_resolve(ss__libfn *f, const char *sym, uintptr_t caller) {
  void *p = dlsym(RTLD_NEXT, sym);
  if (p != NULL) {
    atomic_store_explicit(&f->global, p, memory_order_release);
    return p;
  }
  int saved = errno;
  uintptr_t lo = 0, hi = 0;
  ss__loader_lock();
  p = resolve_locked(sym, caller, &lo, &hi);
  if (p != NULL && hi != 0) {
    for (int i = 0; i < SS_LIBFN_CALLERS; i++) {
      uintptr_t free_hi = 0;
      if (atomic_load(&f->by[i].hi) == hi && atomic_load(&f->by[i].lo) == lo) break;
      if (atomic_load(&f->by[i].hi) != free_hi) continue;
      /* fn and lo first, hi last: a reader matching the range finds fn set. */
      atomic_store_explicit(&f->by[i].fn, p, memory_order_release);
      atomic_store_explicit(&f->by[i].lo, lo, memory_order_release);
      atomic_store_explicit(&f->by[i].hi, hi, memory_order_release);
      break;
    }
  }
  ss__loader_unlock();
  errno = saved;
  return p;
}

void *ss__dlsym_lib(const char *lib, const char *sym) {
  (void)lib;
  void *p = dlsym(RTLD_NEXT, sym);
  if (p != NULL) return p;
  int saved = errno;
  uintptr_t lo, hi;
  ss__loader_lock();
  p = resolve_locked(sym, (uintptr_t)ss__lib_anchor, &lo, &hi);
  ss__loader_unlock();
  errno = saved;
  return p;
}

long ss__missing_errno(void) {
  errno = ENOSYS;
  return -1;
}
