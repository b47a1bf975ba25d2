/* resolve.c - finding the real function behind a hook.
 *
 * libc's functions are always found with RTLD_NEXT. Libraries such as libpq and libcurl
 * may instead have been dlopen'd with RTLD_LOCAL (Python and PHP extensions do that):
 * their symbols are then not in the global scope, RTLD_NEXT finds nothing, and the app's
 * call reached our hook only because the preloaded shim comes first. For those, the
 * loaded objects are searched (dl_iterate_phdr) for one whose file name contains the
 * library's name, and the symbol is taken from it with dlopen(RTLD_NOLOAD) + dlsym: the
 * library is never loaded by us, and never made a dependency of the shim. */
#include <errno.h>
#include <link.h>
#include <string.h>

#include "runtime/stack.h"
#include "shim/shim.h"

typedef struct search {
  const char *lib; /* e.g. "libpq.so" */
  const char *sym;
  void *found;
} search;

static void *self_base(void) {
  Dl_info info;
  return dladdr((void *)&ss__dlsym_lib, &info) ? info.dli_fbase : NULL;
}

static int visit(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  search *s = arg;
  const char *name = info->dlpi_name;
  if (name == NULL || *name == '\0' || strstr(name, s->lib) == NULL) return 0;
  void *h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
  if (h == NULL) return 0;
  void *p = dlsym(h, s->sym);
  dlclose(h); /* drops only the reference RTLD_NOLOAD took */
  /* Never return our own hook: the object found must not be the shim. */
  if (p != NULL) {
    Dl_info di;
    if (dladdr(p, &di) && di.dli_fbase == self_base()) p = NULL;
  }
  s->found = p;
  return p != NULL;
}

void *ss__dlsym_lib(const char *lib, const char *sym) {
  void *p = dlsym(RTLD_NEXT, sym);
  if (p != NULL) return p;
  search s = {lib, sym, NULL};
  ss__loader_lock();
  dl_iterate_phdr(visit, &s);
  ss__loader_unlock();
  return s.found;
}

long ss__missing_errno(void) {
  errno = ENOSYS;
  return -1;
}
