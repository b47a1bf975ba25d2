/* pq_api.c - exercises the libpq APIs psql does not: pq_api MODE CONNINFO
 *
 *   params     PQexecParams with a secret parameter value
 *   prepared   PQprepare, PQexecPrepared x2, PQdescribePrepared, PQsendPrepare +
 *              PQsendQueryPrepared
 *   async      PQsendQuery on one thread, PQgetResult on another, ROUNDS times
 *   pipeline   pipeline mode: insert, a failing insert (23505), an aborted select, sync;
 *              then a second batch of 2 good statements
 *   copy       COPY FROM STDIN (3 rows) and COPY TO STDOUT
 *   reset      a query, PQreset, a query
 *   poll       PQconnectStart + PQconnectPoll loop, then a query
 *   badsend    PQsendQuery twice without collecting (the second send fails)
 *   startexit  PQconnectStart, no poll; a fork child that exits; exit without PQfinish
 *   startfinish  PQconnectStart then PQfinish, no poll; PQconnectStart then PQreset (the
 *              abandoned connect, then a whole one), a query, PQfinish
 * Prints key=value lines; exit status 0 when every step behaved as libpq documents. */
/* LIBS: -lpq */
#include <poll.h>
#include <postgresql/libpq-fe.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define ROUNDS 5

static int fails;

static void check(int ok, const char *what) {
  if (!ok) {
    printf("FAIL %s\n", what);
    fails++;
  }
}

static PGresult *ok(PGresult *r, ExecStatusType want, const char *what) {
  check(r && PQresultStatus(r) == want, what);
  return r;
}

static void setup(PGconn *c) {
  PQclear(ok(PQexec(c, "DROP TABLE IF EXISTS items"), PGRES_COMMAND_OK, "drop"));
  PQclear(ok(PQexec(c, "CREATE TABLE items (id int PRIMARY KEY, name text)"), PGRES_COMMAND_OK,
             "create"));
}

static void drain(PGconn *c) {
  PGresult *r;
  while ((r = PQgetResult(c)) != NULL) PQclear(r);
}

static void mode_params(PGconn *c) {
  setup(c);
  const char *vals[2] = {"7", "s3cr3t-param"};
  PQclear(ok(PQexecParams(c, "INSERT INTO items (id, name) VALUES ($1, $2)", 2, NULL, vals, NULL,
                          NULL, 0),
             PGRES_COMMAND_OK, "insert params"));
  PGresult *r = ok(PQexecParams(c, "SELECT name FROM items WHERE id = $1", 1, NULL, vals, NULL,
                                NULL, 0),
                   PGRES_TUPLES_OK, "select params");
  printf("rows=%d\n", PQntuples(r));
  PQclear(r);
}

static void mode_prepared(PGconn *c) {
  setup(c);
  PQclear(ok(PQprepare(c, "ins", "INSERT INTO items (id, name) VALUES ($1, $2)", 2, NULL),
             PGRES_COMMAND_OK, "prepare"));
  const char *v1[2] = {"1", "s3cr3t-param"}, *v2[2] = {"2", "two"};
  PQclear(ok(PQexecPrepared(c, "ins", 2, v1, NULL, NULL, 0), PGRES_COMMAND_OK, "exec 1"));
  PQclear(ok(PQexecPrepared(c, "ins", 2, v2, NULL, NULL, 0), PGRES_COMMAND_OK, "exec 2"));
  PQclear(ok(PQdescribePrepared(c, "ins"), PGRES_COMMAND_OK, "describe"));
  check(PQsendPrepare(c, "sel", "SELECT name FROM items WHERE id > $1", 1, NULL), "sendprepare");
  drain(c);
  const char *v3[1] = {"0"};
  check(PQsendQueryPrepared(c, "sel", 1, v3, NULL, NULL, 0), "sendqueryprepared");
  PGresult *r;
  int rows = 0;
  while ((r = PQgetResult(c)) != NULL) {
    rows += PQntuples(r);
    PQclear(r);
  }
  printf("rows=%d\n", rows);
}

/* ---- async: send here, collect on another thread ---- */
static PGconn *ac;
static sem_t sent, done;
static int async_rows;

static void *collector(void *arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    sem_wait(&sent);
    PGresult *r;
    while ((r = PQgetResult(ac)) != NULL) {
      async_rows += PQntuples(r);
      PQclear(r);
    }
    sem_post(&done);
  }
  return NULL;
}

static void mode_async(PGconn *c) {
  ac = c;
  sem_init(&sent, 0, 0);
  sem_init(&done, 0, 0);
  pthread_t t;
  pthread_create(&t, NULL, collector, NULL);
  for (int i = 0; i < ROUNDS; i++) {
    check(PQsendQuery(c, "SELECT generate_series(1, 3)"), "send");
    sem_post(&sent);
    sem_wait(&done);
  }
  pthread_join(t, NULL);
  printf("rows=%d\n", async_rows);
}

static void mode_pipeline(PGconn *c) {
  setup(c);
  PQclear(ok(PQexec(c, "INSERT INTO items VALUES (1, 'one')"), PGRES_COMMAND_OK, "seed"));
  check(PQenterPipelineMode(c), "enter");
  check(PQsendQueryParams(c, "INSERT INTO items VALUES (2, 'two')", 0, NULL, NULL, NULL, NULL, 0),
        "q1");
  check(PQsendQueryParams(c, "INSERT INTO items VALUES (1, 'dup')", 0, NULL, NULL, NULL, NULL, 0),
        "q2");
  check(PQsendQueryParams(c, "SELECT * FROM items", 0, NULL, NULL, NULL, NULL, 0), "q3");
  check(PQpipelineSync(c), "sync");
  const char *want[] = {"COMMAND_OK", "FATAL_ERROR", "PIPELINE_ABORTED", "SYNC"};
  ExecStatusType st[] = {PGRES_COMMAND_OK, PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED,
                         PGRES_PIPELINE_SYNC};
  for (int i = 0; i < 4; i++) {
    PGresult *r = PQgetResult(c);
    check(r && PQresultStatus(r) == st[i], want[i]);
    PQclear(r);
    if (i < 3) check(PQgetResult(c) == NULL, "null after result");
  }
  check(PQsendQueryParams(c, "INSERT INTO items VALUES (3, 'three')", 0, NULL, NULL, NULL, NULL,
                          0),
        "q4");
  check(PQsendQueryParams(c, "SELECT count(*) FROM items", 0, NULL, NULL, NULL, NULL, 0), "q5");
  check(PQpipelineSync(c), "sync 2");
  for (int i = 0; i < 2; i++) {
    PGresult *r = PQgetResult(c);
    check(r && (PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK),
          "batch 2");
    PQclear(r);
    check(PQgetResult(c) == NULL, "null 2");
  }
  PGresult *r = PQgetResult(c);
  check(r && PQresultStatus(r) == PGRES_PIPELINE_SYNC, "sync result 2");
  PQclear(r);
  check(PQexitPipelineMode(c), "exit");
}

static void mode_copy(PGconn *c) {
  setup(c);
  PGresult *r = ok(PQexec(c, "COPY items (id, name) FROM STDIN"), PGRES_COPY_IN, "copy in");
  PQclear(r);
  const char *rows[] = {"1\tone\n", "2\ttwo\n", "3\tthree\n"};
  int bytes = 0;
  for (int i = 0; i < 3; i++) {
    check(PQputCopyData(c, rows[i], (int)strlen(rows[i])) == 1, "put");
    bytes += (int)strlen(rows[i]);
  }
  check(PQputCopyEnd(c, NULL) == 1, "end");
  PQclear(ok(PQgetResult(c), PGRES_COMMAND_OK, "copy in done"));
  check(PQgetResult(c) == NULL, "copy in null");
  printf("bytes_in=%d\n", bytes);
  check(PQsendQuery(c, "COPY items TO STDOUT"), "copy out send");
  r = ok(PQgetResult(c), PGRES_COPY_OUT, "copy out");
  PQclear(r);
  char *buf;
  int n, out = 0;
  while ((n = PQgetCopyData(c, &buf, 0)) > 0) {
    out += n;
    PQfreemem(buf);
  }
  PQclear(ok(PQgetResult(c), PGRES_COMMAND_OK, "copy out done"));
  check(PQgetResult(c) == NULL, "copy out null");
  printf("bytes_out=%d\n", out);
}

static void mode_reset(PGconn *c) {
  PQclear(ok(PQexec(c, "SELECT 1"), PGRES_TUPLES_OK, "before"));
  PQreset(c);
  check(PQstatus(c) == CONNECTION_OK, "reset ok");
  PQclear(ok(PQexec(c, "SELECT 2"), PGRES_TUPLES_OK, "after"));
}

static PGconn *poll_connect(const char *conninfo) {
  PGconn *c = PQconnectStart(conninfo);
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (c && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
    struct pollfd p = {PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    poll(&p, 1, 5000);
    st = PQconnectPoll(c);
  }
  printf("poll_status=%s\n", st == PGRES_POLLING_OK ? "ok" : "failed");
  return c;
}

static void mode_badsend(PGconn *c) {
  check(PQsendQuery(c, "SELECT 1"), "first send");
  check(!PQsendQuery(c, "SELECT 2"), "second send refused");
  drain(c);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pq_api MODE CONNINFO\n");
    return 2;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "startexit") == 0) { /* the connect is still in progress at the end */
    PGconn *s = PQconnectStart(argv[2]);
    check(s != NULL && PQstatus(s) != CONNECTION_BAD, "started");
    fflush(stdout);
    pid_t p = fork();
    if (p == 0) exit(0); /* the parent's connect is not the child's to end */
    int st = -1;
    check(p > 0 && waitpid(p, &st, 0) == p && st == 0, "child");
    printf("fails=%d\n", fails);
    exit(fails ? 1 : 0);
  }
  if (strcmp(mode, "startfinish") == 0) { /* connects abandoned while in progress */
    PGconn *a = PQconnectStart(argv[2]);
    check(a != NULL && PQstatus(a) != CONNECTION_BAD, "started");
    PQfinish(a);
    PGconn *b = PQconnectStart(argv[2]);
    check(b != NULL && PQstatus(b) != CONNECTION_BAD, "started again");
    PQreset(b);
    check(PQstatus(b) == CONNECTION_OK, "reset");
    PQclear(ok(PQexec(b, "SELECT 1"), PGRES_TUPLES_OK, "q"));
    PQfinish(b);
    printf("fails=%d\n", fails);
    return fails ? 1 : 0;
  }
  PGconn *c = strcmp(mode, "poll") == 0 ? poll_connect(argv[2]) : PQconnectdb(argv[2]);
  if (PQstatus(c) != CONNECTION_OK) {
    printf("connect_error=%s", PQerrorMessage(c));
    PQfinish(c);
    return 3;
  }
  if (strcmp(mode, "params") == 0) mode_params(c);
  else if (strcmp(mode, "prepared") == 0) mode_prepared(c);
  else if (strcmp(mode, "async") == 0) mode_async(c);
  else if (strcmp(mode, "pipeline") == 0) mode_pipeline(c);
  else if (strcmp(mode, "copy") == 0) mode_copy(c);
  else if (strcmp(mode, "reset") == 0) mode_reset(c);
  else if (strcmp(mode, "poll") == 0) PQclear(ok(PQexec(c, "SELECT 1"), PGRES_TUPLES_OK, "q"));
  else if (strcmp(mode, "badsend") == 0) mode_badsend(c);
  else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  PQfinish(c);
  printf("fails=%d\n", fails);
  return fails ? 1 : 0;
}
