/* pq_dlopen.c - libpq reached through a plugin loaded with dlopen(RTLD_LOCAL), as Python
 * and PHP extensions load it.
 *
 * Built twice from this file: normally as the program `pq_dlopen EXT.so CONNINFO` (no
 * DT_NEEDED on libpq), and by the test with -DPQ_EXT -shared -lpq as the plugin, whose
 * pq_ext_run connects, runs one query and returns its row count. */
/* LIBS: -ldl */
#ifdef PQ_EXT
#include <postgresql/libpq-fe.h>

int pq_ext_run(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  int rows = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult *r = PQexec(c, "SELECT generate_series(1, 4)");
    rows = PQntuples(r);
    PQclear(r);
  }
  PQfinish(c);
  return rows;
}
#else
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    printf("dlopen_error=%s\n", dlerror());
    return 3;
  }
  int (*run)(const char *) = (int (*)(const char *))dlsym(h, "pq_ext_run");
  int rows = run ? run(argv[2]) : -2;
  printf("rows=%d\n", rows);
  return rows == 4 ? 0 : 1;
}
#endif
