/* lazy.c - see lazy.h. */
#include "tools/spanshimd/lazy.h"

#include <dlfcn.h>
#include <stdio.h>

int ss__lazy_load(const char *what, const char *const *sonames, const char *const *names,
                  void **fns) {
  if (fns[0]) return 0;
  void *h = NULL;
  for (int i = 0; sonames[i] && !h; i++) h = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    fprintf(stderr, "spanshimd: cannot load %s (%s): %s\n", what, sonames[0], dlerror());
    return -1;
  }
  int n = 0;
  while (names[n]) n++;
  for (int i = n - 1; i >= 0; i--) { /* fns[0] last: it says the table is complete */
    fns[i] = dlsym(h, names[i]);
    if (fns[i] == NULL) {
      fprintf(stderr, "spanshimd: %s has no %s\n", what, names[i]);
      fns[0] = NULL;
      return -1;
    }
  }
  return 0;
}
