/* stack_pq DSN: query_orders() runs a query on a table that does not exist (42P01), so
 * the failing libpq call's exception stack leads into this program's code. Built -g. */
/* LIBS: -lpq */
#include <postgresql/libpq-fe.h>
#include <stdio.h>

static int __attribute__((noinline)) query_orders(PGconn *c) {
  PGresult *r = PQexec(c, "SELECT * FROM no_such_orders WHERE id = 42");
  int failed = PQresultStatus(r) != PGRES_TUPLES_OK;
  PQclear(r);
  return failed;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  PGconn *c = PQconnectdb(argv[1]);
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "connect: %s", PQerrorMessage(c));
    return 1;
  }
  printf("failed=%d\n", query_orders(c));
  PQfinish(c);
  return 0;
}
