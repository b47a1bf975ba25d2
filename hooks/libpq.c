/* libpq.c - PostgreSQL client spans; see DESIGN.md §4 and README "Spans".
 *
 * `connect postgresql` (CLIENT) for PQconnectdb/Params, PQsetdbLogin, PQreset and the
 * polled forms (PQconnectStart/Params + PQconnectPoll, PQresetStart + PQresetPoll: the
 * span ends when polling reaches OK or FAILED, and the socket spans made while polling
 * are its children). Attributes: db.system.name, db.namespace, server.address (host or
 * socket dir), server.port (when not 5432), network.peer.address/port; on failure
 * error.type = the SQLSTATE the server's message maps to (28P01, 3D000, ...; English
 * messages), else 08001. Conninfo strings, keyword arrays and passwords are never read.
 *
 * One query span (CLIENT) per operation: PQexec, PQexecParams, PQprepare, PQexecPrepared,
 * PQdescribePrepared/Portal synchronously; PQsendQuery, PQsendQueryParams, PQsendPrepare,
 * PQsendQueryPrepared, PQsendDescribePrepared/Portal from the send to the PQgetResult that
 * returns NULL, on whatever thread collects it; in pipeline mode one span per queued
 * statement, ended by its own results (PGRES_PIPELINE_ABORTED ones are errors), with
 * db.operation.batch.size = statements between two PQpipelineSync calls. A COPY's span
 * lasts until its final result and records spanshim.db.copy.bytes moved through
 * PQputCopyData/PQgetCopyData. The span is named ss__sql_span_name here; the exporter
 * scrubs db.query.text and derives the name, db.operation.name and db.collection.name
 * (runtime/sanitize.c). Parameter values are never read.
 *
 * State per connection lives in a fixed table of CONNS slots keyed by PGconn* (claimed
 * with a CAS, released by PQfinish): prepared statements (name → SQL, STMTS per
 * connection, SQL truncated to STMT_SQL bytes, oldest replaced first) and the FIFO of
 * statements sent but not yet answered, whose spans are parked in the slot's ARENA. A
 * connection uses its slot from one thread at a time (libpq requires it; the app's own
 * synchronization orders a send on one thread before the results on another), so the
 * slot itself needs no lock. Limits: a 65th concurrent connection, a statement queue
 * longer than QUEUE, or an arena that cannot hold the span leave that statement untraced
 * and counted in spanshim.spans.dropped; its results still keep the queue in order.
 *
 * libpq calls its own exported functions through the PLT (PQexec → PQsendQuery,
 * PQgetResult; PQconnectdb → PQconnectStart, PQconnectPoll): a per-thread depth makes
 * those inner calls pass straight through. */
#include <errno.h>
#include <postgresql/libpq-fe.h>
#include <stdatomic.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/sql.h"
#include "shim/shim.h"

#define CONNS 64
#define STMTS 16
#define STMT_NAME 64
#define STMT_SQL 1024
#define QUEUE 128
#define ARENA 16384
#define EXTRA 512 /* room kept after a parked span for what its results add */
#define MSG_MAX 256
#define CONNECT_REC 1024

#define LIB "libpq.so"
SS_REAL_LIB(LIB, PQconnectdb)
SS_REAL_LIB(LIB, PQconnectdbParams)
SS_REAL_LIB(LIB, PQsetdbLogin)
SS_REAL_LIB(LIB, PQconnectStart)
SS_REAL_LIB(LIB, PQconnectStartParams)
SS_REAL_LIB(LIB, PQconnectPoll)
SS_REAL_LIB(LIB, PQreset)
SS_REAL_LIB(LIB, PQresetStart)
SS_REAL_LIB(LIB, PQresetPoll)
SS_REAL_LIB(LIB, PQfinish)
SS_REAL_LIB(LIB, PQexec)
SS_REAL_LIB(LIB, PQexecParams)
SS_REAL_LIB(LIB, PQprepare)
SS_REAL_LIB(LIB, PQexecPrepared)
SS_REAL_LIB(LIB, PQdescribePrepared)
SS_REAL_LIB(LIB, PQdescribePortal)
SS_REAL_LIB(LIB, PQsendQuery)
SS_REAL_LIB(LIB, PQsendQueryParams)
SS_REAL_LIB(LIB, PQsendPrepare)
SS_REAL_LIB(LIB, PQsendQueryPrepared)
SS_REAL_LIB(LIB, PQsendDescribePrepared)
SS_REAL_LIB(LIB, PQsendDescribePortal)
SS_REAL_LIB(LIB, PQgetResult)
SS_REAL_LIB(LIB, PQpipelineSync)
SS_REAL_LIB(LIB, PQputCopyData)
SS_REAL_LIB(LIB, PQgetCopyData)
/* Accessors, called, never hooked. */
SS_REAL_LIB(LIB, PQstatus)
SS_REAL_LIB(LIB, PQerrorMessage)
SS_REAL_LIB(LIB, PQdb)
SS_REAL_LIB(LIB, PQhost)
SS_REAL_LIB(LIB, PQport)
SS_REAL_LIB(LIB, PQhostaddr)
SS_REAL_LIB(LIB, PQpipelineStatus)
SS_REAL_LIB(LIB, PQresultStatus)
SS_REAL_LIB(LIB, PQresultErrorField)
SS_REAL_LIB(LIB, PQresultErrorMessage)
SS_REAL_LIB(LIB, PQntuples)

static __thread int in_pq __attribute__((tls_model("initial-exec")));

/* All accessors found (once; PQhostaddr and PQpipelineStatus are optional). */
static _Atomic int acc_state; /* 0 unknown, 1 ready, 2 missing */

static int accessors_ready(void) {
  int st = atomic_load_explicit(&acc_state, memory_order_acquire);
  if (__builtin_expect(st == 0, 0)) {
    st = (real_PQstatus() && real_PQerrorMessage() && real_PQdb() && real_PQhost() &&
          real_PQport() && real_PQresultStatus() && real_PQresultErrorField() &&
          real_PQresultErrorMessage() && real_PQntuples())
             ? 1 : 2;
    atomic_store_explicit(&acc_state, st, memory_order_release);
  }
  return st == 1;
}

static inline int tracing(void) {
  return in_pq == 0 && ss__active(SS_HOOK_LIBPQ) && accessors_ready();
}

/* ---- per-connection state ---- */

typedef struct stmt {
  uint8_t used;
  char name[STMT_NAME];
  uint16_t len;
  char sql[STMT_SQL];
} stmt;

typedef struct pend {
  uint32_t off, cap; /* the parked span in the arena; cap 0: an untraced statement */
  uint32_t seg;      /* pipeline segment it was queued in */
} pend;

typedef struct conn {
  _Atomic(PGconn *) key;
  uint8_t connecting;      /* connect_rec holds a polled connect's span */
  unsigned stmt_next;      /* next stmts[] entry to replace */
  unsigned q_head, q_n;    /* FIFO of statements awaiting results */
  uint32_t overflow;       /* untraced statements queued behind a full FIFO */
  uint32_t seg, seg_n;     /* pipeline segment number and statements queued in it */
  uint32_t arena_used;
  /* The head statement's results so far. */
  uint8_t got, failed, copy, has_rows;
  int64_t rows, bytes;
  uint64_t connect_rec[CONNECT_REC / 8];
  pend q[QUEUE];
  stmt stmts[STMTS];
  uint64_t arena[ARENA / 8];
} conn;

static conn conns[CONNS];
static _Atomic int conns_used;

static unsigned slot_hash(const PGconn *c) {
  uint64_t x = (uint64_t)(uintptr_t)c;
  x ^= x >> 17;
  x *= 0x9E3779B97F4A7C15ull;
  return (unsigned)(x >> 40) % CONNS;
}

static conn *conn_find(const PGconn *c) {
  if (c == NULL || atomic_load_explicit(&conns_used, memory_order_relaxed) == 0) return NULL;
  unsigned h = slot_hash(c);
  for (unsigned i = 0; i < CONNS; i++) {
    conn *k = &conns[(h + i) % CONNS];
    if (atomic_load_explicit(&k->key, memory_order_acquire) == c) return k;
  }
  return NULL;
}

static void head_reset(conn *k) {
  k->got = k->failed = k->copy = k->has_rows = 0;
  k->rows = k->bytes = 0;
}

/* The connection's slot, claimed if it has none. NULL when the table is full. */
static conn *conn_get(PGconn *c) {
  conn *k = conn_find(c);
  if (k || c == NULL) return k;
  unsigned h = slot_hash(c);
  for (unsigned i = 0; i < CONNS; i++) {
    k = &conns[(h + i) % CONNS];
    PGconn *expected = NULL;
    if (!atomic_compare_exchange_strong(&k->key, &expected, c)) continue;
    k->connecting = 0;
    k->stmt_next = 0;
    for (int s = 0; s < STMTS; s++) k->stmts[s].used = 0;
    k->q_head = k->q_n = k->overflow = 0;
    k->seg = k->seg_n = 0;
    k->arena_used = 0;
    head_reset(k);
    atomic_fetch_add(&conns_used, 1);
    return k;
  }
  return NULL;
}

static void conn_release(conn *k) {
  atomic_store_explicit(&k->key, NULL, memory_order_release);
  atomic_fetch_sub(&conns_used, 1);
}

/* ---- prepared statements ---- */

static void stmt_put(conn *k, const char *name, const char *sql) {
  if (name == NULL || sql == NULL) return;
  size_t nl = strnlen(name, STMT_NAME);
  if (nl >= STMT_NAME) return; /* too long to remember: its executions carry no text */
  stmt *s = NULL;
  for (int i = 0; i < STMTS && !s; i++)
    if (k->stmts[i].used && strcmp(k->stmts[i].name, name) == 0) s = &k->stmts[i];
  if (s == NULL) s = &k->stmts[k->stmt_next++ % STMTS];
  memcpy(s->name, name, nl + 1);
  size_t n = strnlen(sql, STMT_SQL);
  if (n == STMT_SQL) /* truncated: never inside a UTF-8 sequence */
    while (n > 0 && ((unsigned char)sql[n] & 0xC0) == 0x80) n--;
  memcpy(s->sql, sql, n);
  s->len = (uint16_t)n;
  s->used = 1;
}

static const stmt *stmt_get(const conn *k, const char *name) {
  if (k == NULL || name == NULL) return NULL;
  for (int i = 0; i < STMTS; i++)
    if (k->stmts[i].used && strcmp(k->stmts[i].name, name) == 0) return &k->stmts[i];
  return NULL;
}

/* ---- common attributes ---- */

static int port_of(const char *p) {
  int v = 0;
  if (p == NULL || *p == '\0') return 5432;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > 65535) return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

static void conn_attrs(ss__sb *b, const PGconn *c) {
  ss__span_str(b, "db.system.name", "postgresql", 10);
  if (c == NULL) return;
  const char *db = real_PQdb()(c), *host = real_PQhost()(c);
  if (db && *db) ss__span_str(b, "db.namespace", db, (size_t)-1);
  if (host && *host) ss__span_str(b, "server.address", host, (size_t)-1);
  int port = port_of(real_PQport()(c));
  if (port > 0 && port != 5432) ss__span_int(b, "server.port", port);
}

static size_t text_len(const char *s) {
  uint32_t lim = ss__span_value_limit();
  return strnlen(s, lim ? (size_t)lim + 1 : (size_t)1 << 30);
}

/* Starts a query span; op is the operation an API implies (PREPARE), or NULL to have the
 * exporter read it from the text. */
static void query_start_at(void *caller, ss__sb *b, const PGconn *c, const char *sql,
                           size_t len, const char *op) {
  ss__span_start_at(b, ss__sql_span_name, SS_KIND_CLIENT, caller);
  if (!b->recording) return;
  conn_attrs(b, c);
  if (sql) ss__span_str(b, "db.query.text", sql, len);
  ss__span_str(b, "db.operation.name", op ? op : "", op ? strlen(op) : 0);
  ss__span_str(b, "db.collection.name", "", 0);
}

/* Called from the exported hook itself, so the return address is the app's. */
#define query_start(...) query_start_at(__builtin_return_address(0), __VA_ARGS__)

static size_t msg_len(const char *m, size_t cap) {
  size_t n = strnlen(m, cap);
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
  return n;
}

static void set_message(ss__sb *b, const char *m) {
  if (m == NULL) return;
  b->s.status_message = m;
  b->s.status_message_len = (uint32_t)msg_len(m, MSG_MAX * 4);
}

/* ---- results ---- */

typedef struct outcome {
  uint8_t failed, copy, has_rows, aborted;
  int64_t rows;
  const char *sqlstate; /* from the server; NULL when none */
  const char *type;     /* error.type */
  const char *msg;
} outcome;

static void inspect(const PGconn *c, const PGresult *r, outcome *o) {
  memset(o, 0, sizeof *o);
  if (r == NULL) {
    o->failed = 1;
    o->type = real_PQstatus()(c) == CONNECTION_BAD ? "08006" : "_OTHER";
    o->msg = real_PQerrorMessage()(c);
    return;
  }
  switch (real_PQresultStatus()(r)) {
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
      o->has_rows = 1;
      o->rows = real_PQntuples()(r);
      break;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
      o->copy = 1;
      break;
    case PGRES_PIPELINE_ABORTED:
      o->failed = o->aborted = 1;
      o->type = "PGRES_PIPELINE_ABORTED";
      o->msg = "not executed: an earlier statement in the pipeline failed";
      break;
    case PGRES_BAD_RESPONSE:
    case PGRES_NONFATAL_ERROR:
    case PGRES_FATAL_ERROR: {
      const char *st = real_PQresultErrorField()(r, PG_DIAG_SQLSTATE);
      o->sqlstate = (st && *st) ? st : NULL;
      /* SQLSTATE classes 00 (success) and 01 (warning) are not errors. */
      o->failed = !(o->sqlstate && o->sqlstate[0] == '0' &&
                    (o->sqlstate[1] == '0' || o->sqlstate[1] == '1'));
      o->type = o->sqlstate ? o->sqlstate
                            : (real_PQstatus()(c) == CONNECTION_BAD ? "08006" : "_OTHER");
      o->msg = real_PQresultErrorField()(r, PG_DIAG_MESSAGE_PRIMARY);
      if (o->msg == NULL) o->msg = real_PQresultErrorMessage()(r);
      break;
    }
    default:
      break;
  }
}

/* Applies an outcome to a span still being built. */
static void sb_outcome(ss__sb *b, const outcome *o) {
  if (o->has_rows) ss__span_int(b, "db.response.returned_rows", o->rows);
  if (o->sqlstate) ss__span_str(b, "db.response.status_code", o->sqlstate, (size_t)-1);
  if (o->failed) {
    ss__span_error(b, o->type, NULL);
    set_message(b, o->msg);
  }
}

/* ---- the FIFO of statements awaiting results ---- */

static void *pend_rec(conn *k, const pend *p) {
  return p->cap ? (char *)k->arena + p->off : NULL;
}

/* Queues the span being built in b (popped from the context stack by the caller).
 * Statements that cannot be parked are queued untraced and counted. */
static void enqueue(conn *k, const ss__sb *b) {
  uint32_t seg = k->seg;
  k->seg_n++;
  if (k->overflow > 0 || k->q_n == QUEUE) {
    k->overflow++;
    if (b->recording) ss__dropped(SS_DROP_QUEUE);
    return;
  }
  pend *p = &k->q[(k->q_head + k->q_n) % QUEUE];
  p->off = k->arena_used;
  p->cap = 0;
  p->seg = seg;
  if (b->recording) {
    size_t room = ARENA - k->arena_used;
    size_t n = room > EXTRA ? ss__span_park(b, (char *)k->arena + k->arena_used, room - EXTRA) : 0;
    if (n > 0) {
      p->cap = (uint32_t)(n + EXTRA);
      k->arena_used += (p->cap + 7u) & ~7u;
    } else {
      ss__dropped(SS_DROP_TOO_BIG);
    }
  }
  if (k->q_n == 0) head_reset(k);
  k->q_n++;
}

/* Ends the head statement's span (status from its results) and dequeues it. */
static void complete_head(conn *k) {
  if (k->q_n == 0) {
    if (k->overflow > 0) k->overflow--;
    head_reset(k);
    return;
  }
  pend *p = &k->q[k->q_head];
  void *rec = pend_rec(k, p);
  if (rec) {
    if (k->has_rows) ss__rec_add_int(rec, p->cap, "db.response.returned_rows", k->rows);
    if (k->bytes) ss__rec_add_int(rec, p->cap, "spanshim.db.copy.bytes", k->bytes);
    ss__rec_finish(rec, ss__now_ns(), k->failed ? SS_STATUS_ERROR : SS_STATUS_UNSET);
  }
  k->q_head = (k->q_head + 1) % QUEUE;
  if (--k->q_n == 0) k->arena_used = 0;
  head_reset(k);
}

/* Ends every queued span now, outcome unknown (PQfinish, PQreset, or a PQexec that
 * discards results the app never collected). */
static void abandon_all(conn *k) {
  while (k->q_n > 0) {
    k->got = 1;
    complete_head(k);
  }
  k->overflow = 0;
  k->seg_n = 0;
  head_reset(k);
}

/* One result (or the NULL that ends a statement) of the head statement. */
static void on_result(conn *k, const PGconn *c, const PGresult *r) {
  if (r == NULL) {
    if (k->got) complete_head(k);
    return;
  }
  if (real_PQresultStatus()(r) == PGRES_PIPELINE_SYNC) return;
  k->got = 1;
  outcome o;
  inspect(c, r, &o);
  if (o.has_rows) {
    k->has_rows = 1;
    k->rows += o.rows;
  }
  if (o.copy) k->copy = 1;
  void *rec = k->q_n && o.failed && !k->failed ? pend_rec(k, &k->q[k->q_head]) : NULL;
  if (o.failed) k->failed = 1;
  if (rec) {
    size_t cap = k->q[k->q_head].cap;
    if (o.sqlstate) ss__rec_add_str(rec, cap, "db.response.status_code", o.sqlstate, 5);
    ss__rec_add_str(rec, cap, "error.type", o.type, strlen(o.type));
    if (o.msg) ss__rec_add_str(rec, cap, NULL, o.msg, msg_len(o.msg, MSG_MAX));
  }
  /* The connection is gone (backend terminated): no NULL result may ever come, and
   * apps such as psql exit right away; end the statement now, and any queued behind. */
  if (o.failed && real_PQstatus()(c) == CONNECTION_BAD) {
    complete_head(k);
    abandon_all(k);
  }
}

static int in_pipeline(const PGconn *c) {
  __typeof__(&PQpipelineStatus) ps = real_PQpipelineStatus();
  return ps && ps(c) != PQ_PIPELINE_OFF;
}

/* Before a synchronous query: spans of async statements whose results the app never
 * collected end here (libpq discards those results inside the call). */
static void before_sync(const PGconn *c) {
  conn *k = conn_find(c);
  if (k && (k->q_n || k->overflow) && !in_pipeline(c)) abandon_all(k);
}

/* After a synchronous query: ends the span, or, when the result opens a COPY, queues it
 * so that it lasts until the COPY's final result. */
static void sync_end(ss__sb *b, PGconn *c, const PGresult *r) {
  outcome o;
  inspect(c, r, &o);
  if (o.copy && b->recording) {
    conn *k = conn_get(c);
    if (k && k->q_n == 0 && k->overflow == 0) {
      ss__span_pop(b);
      enqueue(k, b);
      k->got = k->copy = 1;
      return;
    }
  }
  sb_outcome(b, &o);
  ss__span_end(b);
}

/* After an async send: a failed send ends the span with libpq's message; a sent
 * statement is queued until its results. */
static void send_end(ss__sb *b, PGconn *c, int ok) {
  if (!ok) {
    outcome o = {.failed = 1, .type = "_OTHER", .msg = real_PQerrorMessage()(c)};
    if (real_PQstatus()(c) == CONNECTION_BAD) o.type = "08006";
    sb_outcome(b, &o);
    ss__span_end(b);
    return;
  }
  ss__span_pop(b);
  conn *k = conn_get(c);
  if (k == NULL) {
    if (b->recording) ss__dropped(SS_DROP_TABLE_FULL);
    return;
  }
  enqueue(k, b);
}

/* ---- hooks: queries ---- */

#define ENTER() in_pq++
#define LEAVE(err) \
  do {             \
    err = errno;   \
    in_pq--;       \
  } while (0)

SS_EXPORT PGresult *PQexec(PGconn *c, const char *query) {
  __typeof__(&PQexec) real = real_PQexec();
  if (real == NULL) return NULL;
  if (!tracing() || query == NULL) return real(c, query);
  before_sync(c);
  ss__sb b;
  query_start(&b, c, query, text_len(query), NULL);
  ENTER();
  PGresult *r = real(c, query);
  int err;
  LEAVE(err);
  sync_end(&b, c, r);
  errno = err;
  return r;
}

SS_EXPORT PGresult *PQexecParams(PGconn *c, const char *command, int nParams,
                                 const Oid *paramTypes, const char *const *paramValues,
                                 const int *paramLengths, const int *paramFormats,
                                 int resultFormat) {
  __typeof__(&PQexecParams) real = real_PQexecParams();
  if (real == NULL) return NULL;
  if (!tracing() || command == NULL)
    return real(c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
                resultFormat);
  before_sync(c);
  ss__sb b;
  query_start(&b, c, command, text_len(command), NULL);
  ENTER();
  PGresult *r = real(c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
                     resultFormat);
  int err;
  LEAVE(err);
  sync_end(&b, c, r);
  errno = err;
  return r;
}

SS_EXPORT PGresult *PQprepare(PGconn *c, const char *stmtName, const char *query, int nParams,
                              const Oid *paramTypes) {
  __typeof__(&PQprepare) real = real_PQprepare();
  if (real == NULL) return NULL;
  if (!tracing() || query == NULL) return real(c, stmtName, query, nParams, paramTypes);
  before_sync(c);
  ss__sb b;
  query_start(&b, c, query, text_len(query), "PREPARE");
  ENTER();
  PGresult *r = real(c, stmtName, query, nParams, paramTypes);
  int err;
  LEAVE(err);
  if (r && real_PQresultStatus()(r) == PGRES_COMMAND_OK) {
    conn *k = conn_get(c);
    if (k) stmt_put(k, stmtName, query);
  }
  sync_end(&b, c, r);
  errno = err;
  return r;
}

/* A span for running or describing a prepared statement: its remembered text, or none. */
static void prepared_start_at(void *caller, ss__sb *b, const PGconn *c, const char *name,
                              const char *op) {
  const stmt *s = stmt_get(conn_find(c), name);
  query_start_at(caller, b, c, s ? s->sql : NULL, s ? s->len : 0,
                 s ? op : (op ? op : "EXECUTE"));
}
#define prepared_start(...) prepared_start_at(__builtin_return_address(0), __VA_ARGS__)

SS_EXPORT PGresult *PQexecPrepared(PGconn *c, const char *stmtName, int nParams,
                                   const char *const *paramValues, const int *paramLengths,
                                   const int *paramFormats, int resultFormat) {
  __typeof__(&PQexecPrepared) real = real_PQexecPrepared();
  if (real == NULL) return NULL;
  if (!tracing())
    return real(c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
  before_sync(c);
  ss__sb b;
  prepared_start(&b, c, stmtName, NULL);
  ENTER();
  PGresult *r = real(c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
  int err;
  LEAVE(err);
  sync_end(&b, c, r);
  errno = err;
  return r;
}

SS_EXPORT PGresult *PQdescribePrepared(PGconn *c, const char *stmtName) {
  __typeof__(&PQdescribePrepared) real = real_PQdescribePrepared();
  if (real == NULL) return NULL;
  if (!tracing()) return real(c, stmtName);
  before_sync(c);
  ss__sb b;
  prepared_start(&b, c, stmtName, "DESCRIBE");
  ENTER();
  PGresult *r = real(c, stmtName);
  int err;
  LEAVE(err);
  sync_end(&b, c, r);
  errno = err;
  return r;
}

SS_EXPORT PGresult *PQdescribePortal(PGconn *c, const char *portal) {
  __typeof__(&PQdescribePortal) real = real_PQdescribePortal();
  if (real == NULL) return NULL;
  if (!tracing()) return real(c, portal);
  before_sync(c);
  ss__sb b;
  query_start(&b, c, NULL, 0, "DESCRIBE");
  ENTER();
  PGresult *r = real(c, portal);
  int err;
  LEAVE(err);
  sync_end(&b, c, r);
  errno = err;
  return r;
}

SS_EXPORT int PQsendQuery(PGconn *c, const char *query) {
  __typeof__(&PQsendQuery) real = real_PQsendQuery();
  if (real == NULL) return 0;
  if (!tracing() || query == NULL) return real(c, query);
  ss__sb b;
  query_start(&b, c, query, text_len(query), NULL);
  ENTER();
  int ok = real(c, query);
  int err;
  LEAVE(err);
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT int PQsendQueryParams(PGconn *c, const char *command, int nParams,
                                const Oid *paramTypes, const char *const *paramValues,
                                const int *paramLengths, const int *paramFormats,
                                int resultFormat) {
  __typeof__(&PQsendQueryParams) real = real_PQsendQueryParams();
  if (real == NULL) return 0;
  if (!tracing() || command == NULL)
    return real(c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
                resultFormat);
  ss__sb b;
  query_start(&b, c, command, text_len(command), NULL);
  ENTER();
  int ok = real(c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
                resultFormat);
  int err;
  LEAVE(err);
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT int PQsendPrepare(PGconn *c, const char *stmtName, const char *query, int nParams,
                            const Oid *paramTypes) {
  __typeof__(&PQsendPrepare) real = real_PQsendPrepare();
  if (real == NULL) return 0;
  if (!tracing() || query == NULL) return real(c, stmtName, query, nParams, paramTypes);
  ss__sb b;
  query_start(&b, c, query, text_len(query), "PREPARE");
  ENTER();
  int ok = real(c, stmtName, query, nParams, paramTypes);
  int err;
  LEAVE(err);
  if (ok) {
    conn *k = conn_get(c);
    if (k) stmt_put(k, stmtName, query);
  }
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT int PQsendQueryPrepared(PGconn *c, const char *stmtName, int nParams,
                                  const char *const *paramValues, const int *paramLengths,
                                  const int *paramFormats, int resultFormat) {
  __typeof__(&PQsendQueryPrepared) real = real_PQsendQueryPrepared();
  if (real == NULL) return 0;
  if (!tracing())
    return real(c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
  ss__sb b;
  prepared_start(&b, c, stmtName, NULL);
  ENTER();
  int ok = real(c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat);
  int err;
  LEAVE(err);
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT int PQsendDescribePrepared(PGconn *c, const char *stmtName) {
  __typeof__(&PQsendDescribePrepared) real = real_PQsendDescribePrepared();
  if (real == NULL) return 0;
  if (!tracing()) return real(c, stmtName);
  ss__sb b;
  prepared_start(&b, c, stmtName, "DESCRIBE");
  ENTER();
  int ok = real(c, stmtName);
  int err;
  LEAVE(err);
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT int PQsendDescribePortal(PGconn *c, const char *portal) {
  __typeof__(&PQsendDescribePortal) real = real_PQsendDescribePortal();
  if (real == NULL) return 0;
  if (!tracing()) return real(c, portal);
  ss__sb b;
  query_start(&b, c, NULL, 0, "DESCRIBE");
  ENTER();
  int ok = real(c, portal);
  int err;
  LEAVE(err);
  send_end(&b, c, ok);
  errno = err;
  return ok;
}

SS_EXPORT PGresult *PQgetResult(PGconn *c) {
  __typeof__(&PQgetResult) real = real_PQgetResult();
  if (real == NULL) return NULL;
  if (!tracing()) return real(c);
  conn *k = conn_find(c);
  if (k == NULL || (k->q_n == 0 && k->overflow == 0)) return real(c);
  ENTER();
  PGresult *r = real(c);
  int err;
  LEAVE(err);
  on_result(k, c, r);
  errno = err;
  return r;
}

SS_EXPORT int PQpipelineSync(PGconn *c) {
  __typeof__(&PQpipelineSync) real = real_PQpipelineSync();
  if (real == NULL) return 0;
  int ok = real(c);
  if (!ok) return ok;
  int err = errno;
  conn *k = conn_find(c);
  if (k) {
    /* The statements since the previous sync form one batch. */
    if (k->seg_n >= 2)
      for (unsigned i = 0; i < k->q_n; i++) {
        pend *p = &k->q[(k->q_head + i) % QUEUE];
        void *rec = pend_rec(k, p);
        if (rec && p->seg == k->seg)
          ss__rec_add_int(rec, p->cap, "db.operation.batch.size", k->seg_n);
      }
    k->seg++;
    k->seg_n = 0;
  }
  errno = err;
  return ok;
}

SS_EXPORT int PQputCopyData(PGconn *c, const char *buffer, int nbytes) {
  __typeof__(&PQputCopyData) real = real_PQputCopyData();
  if (real == NULL) return -1;
  int rc = real(c, buffer, nbytes);
  if (rc == 1 && nbytes > 0) {
    conn *k = conn_find(c);
    if (k && k->q_n && k->copy) k->bytes += nbytes;
  }
  return rc;
}

SS_EXPORT int PQgetCopyData(PGconn *c, char **buffer, int async) {
  __typeof__(&PQgetCopyData) real = real_PQgetCopyData();
  if (real == NULL) return -2;
  int rc = real(c, buffer, async);
  if (rc > 0) {
    conn *k = conn_find(c);
    if (k && k->q_n && k->copy) k->bytes += rc;
  }
  return rc;
}

/* ---- hooks: connections ---- */

/* Connection failures carry no SQLSTATE in libpq's API; the server's (English) message
 * names it. */
static const struct {
  const char *needle, *code;
} connect_codes[] = {
    {"password authentication failed", "28P01"},
    {"no pg_hba.conf entry", "28000"},
    {"pg_hba.conf rejects connection", "28000"},
    {"does not exist", NULL}, /* database or role: decided below */
    {"the database system is starting up", "57P03"},
    {"the database system is shutting down", "57P03"},
    {"the database system is in recovery mode", "57P03"},
    {"too many clients already", "53300"},
    {"terminating connection due to administrator command", "57P01"},
};

static const char *connect_code(const char *msg) {
  if (msg == NULL) return NULL;
  for (size_t i = 0; i < sizeof connect_codes / sizeof connect_codes[0]; i++) {
    if (strstr(msg, connect_codes[i].needle) == NULL) continue;
    if (connect_codes[i].code) return connect_codes[i].code;
    if (strstr(msg, "FATAL:  database \"")) return "3D000";
    if (strstr(msg, "FATAL:  role \"")) return "28000";
  }
  return NULL;
}

static void connect_outcome(ss__sb *b, const PGconn *c) {
  conn_attrs(b, c);
  if (c && real_PQstatus()(c) == CONNECTION_OK) {
    __typeof__(&PQhostaddr) ha = real_PQhostaddr();
    const char *addr = ha ? ha(c) : NULL;
    if (addr && *addr) {
      ss__span_str(b, "network.peer.address", addr, (size_t)-1);
      int port = port_of(real_PQport()(c));
      if (port > 0) ss__span_int(b, "network.peer.port", port);
    }
    return;
  }
  const char *msg = c ? real_PQerrorMessage()(c) : "out of memory";
  const char *code = connect_code(msg);
  if (code) ss__span_str(b, "db.response.status_code", code, 5);
  ss__span_error(b, code ? code : "08001", NULL);
  set_message(b, msg);
}

static void forget(PGconn *c) {
  conn *k = conn_find(c);
  if (k) conn_release(k);
}

static void connect_park(ss__sb *b, PGconn *c);

/* After the real call that made connection c (ENTER() before it): the span ends now, or
 * is parked until polling tells the outcome; errno is left as the real call left it. */
static PGconn *connect_made(ss__sb *b, PGconn *c, int polled) {
  int err;
  LEAVE(err);
  forget(c); /* a slot left by a connection freed behind our back */
  if (polled) {
    connect_park(b, c);
  } else {
    connect_outcome(b, c);
    ss__span_end(b);
  }
  errno = err;
  return c;
}

SS_EXPORT PGconn *PQconnectdb(const char *conninfo) {
  __typeof__(&PQconnectdb) real = real_PQconnectdb();
  if (real == NULL) return NULL;
  if (!tracing()) return real(conninfo);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  return connect_made(&b, real(conninfo), 0);
}

SS_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                    int expand_dbname) {
  __typeof__(&PQconnectdbParams) real = real_PQconnectdbParams();
  if (real == NULL) return NULL;
  if (!tracing()) return real(keywords, values, expand_dbname);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  return connect_made(&b, real(keywords, values, expand_dbname), 0);
}

SS_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                               const char *pgtty, const char *dbName, const char *login,
                               const char *pwd) {
  __typeof__(&PQsetdbLogin) real = real_PQsetdbLogin();
  if (real == NULL) return NULL;
  if (!tracing()) return real(pghost, pgport, pgoptions, pgtty, dbName, login, pwd);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  return connect_made(&b, real(pghost, pgport, pgoptions, pgtty, dbName, login, pwd), 0);
}

/* A polled connect: the span is parked in the connection's slot until polling ends. */
static void connect_park(ss__sb *b, PGconn *c) {
  conn *k = (c && real_PQstatus()(c) != CONNECTION_BAD) ? conn_get(c) : NULL;
  if (k == NULL || !b->recording) {
    if (c && real_PQstatus()(c) != CONNECTION_BAD && b->recording) {
      ss__span_pop(b); /* no slot: untraced */
      ss__dropped(SS_DROP_TABLE_FULL);
      return;
    }
    connect_outcome(b, c);
    ss__span_end(b);
    return;
  }
  ss__span_pop(b);
  ss__span_str(b, "db.system.name", "postgresql", 10);
  k->connecting = ss__span_park(b, k->connect_rec, sizeof k->connect_rec - EXTRA) > 0;
  if (!k->connecting) ss__dropped(SS_DROP_TOO_BIG);
}

/* Ends a parked connect span with the connection's state. */
static void connect_finish(conn *k, const PGconn *c) {
  if (!k->connecting) return;
  k->connecting = 0;
  /* Build the outcome on a scratch builder, then copy its attributes over. */
  ss__sb tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.recording = 1;
  tmp.s.attrs = tmp.attrs;
  connect_outcome(&tmp, c);
  void *rec = k->connect_rec;
  size_t cap = sizeof k->connect_rec;
  for (size_t i = 0; i < tmp.s.n_attrs; i++) {
    const ss__attr *a = &tmp.attrs[i];
    if (strcmp(a->key, "db.system.name") == 0) continue; /* parked already */
    if (a->type == SS_ATTR_INT)
      ss__rec_add_int(rec, cap, a->key, a->v.i);
    else
      ss__rec_add_str(rec, cap, a->key, a->v.s, a->len);
  }
  if (tmp.s.status_message)
    ss__rec_add_str(rec, cap, NULL, tmp.s.status_message,
                    msg_len(tmp.s.status_message, MSG_MAX));
  ss__rec_finish(rec, ss__now_ns(), tmp.s.status);
}

/* Runs a poll with the parked connect span as this thread's current context, so the
 * socket spans libpq makes meanwhile become its children. */
static PostgresPollingStatusType poll_as_child(conn *k, PGconn *c,
                                               __typeof__(&PQconnectPoll) real, int *err) {
  ss__ctx parent;
  ss__rec_ctx(k->connect_rec, &parent);
  int token = ss__ctx_push(&parent);
  ENTER();
  PostgresPollingStatusType st = real(c);
  LEAVE(*err);
  ss__ctx_pop(token);
  return st;
}

SS_EXPORT PGconn *PQconnectStart(const char *conninfo) {
  __typeof__(&PQconnectStart) real = real_PQconnectStart();
  if (real == NULL) return NULL;
  if (!tracing()) return real(conninfo);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  return connect_made(&b, real(conninfo), 1);
}

SS_EXPORT PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                                       int expand_dbname) {
  __typeof__(&PQconnectStartParams) real = real_PQconnectStartParams();
  if (real == NULL) return NULL;
  if (!tracing()) return real(keywords, values, expand_dbname);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  return connect_made(&b, real(keywords, values, expand_dbname), 1);
}

static PostgresPollingStatusType traced_poll(PGconn *c, __typeof__(&PQconnectPoll) real) {
  conn *k = conn_find(c);
  if (k == NULL || !k->connecting) return real(c);
  int err;
  PostgresPollingStatusType st = poll_as_child(k, c, real, &err);
  if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) connect_finish(k, c);
  errno = err;
  return st;
}

SS_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *c) {
  __typeof__(&PQconnectPoll) real = real_PQconnectPoll();
  if (real == NULL) return PGRES_POLLING_FAILED;
  if (!tracing()) return real(c);
  return traced_poll(c, real);
}

SS_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *c) {
  __typeof__(&PQresetPoll) real = real_PQresetPoll();
  if (real == NULL) return PGRES_POLLING_FAILED;
  if (!tracing()) return real(c);
  return traced_poll(c, real);
}

/* A reset drops the server session: queued statements end, prepared ones are gone. */
static conn *reset_state(PGconn *c) {
  conn *k = conn_find(c);
  if (k) {
    abandon_all(k);
    for (int i = 0; i < STMTS; i++) k->stmts[i].used = 0;
    if (k->connecting) connect_finish(k, c);
  }
  return k;
}

SS_EXPORT void PQreset(PGconn *c) {
  __typeof__(&PQreset) real = real_PQreset();
  if (real == NULL) return;
  if (!tracing()) {
    real(c);
    return;
  }
  reset_state(c);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  real(c);
  int err;
  LEAVE(err);
  connect_outcome(&b, c);
  ss__span_end(&b);
  errno = err;
}

SS_EXPORT int PQresetStart(PGconn *c) {
  __typeof__(&PQresetStart) real = real_PQresetStart();
  if (real == NULL) return 0;
  if (!tracing()) return real(c);
  reset_state(c);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ENTER();
  int ok = real(c);
  int err;
  LEAVE(err);
  if (ok) {
    connect_park(&b, c);
  } else {
    connect_outcome(&b, c);
    ss__span_end(&b);
  }
  errno = err;
  return ok;
}

SS_EXPORT void PQfinish(PGconn *c) {
  __typeof__(&PQfinish) real = real_PQfinish();
  if (real == NULL) return;
  conn *k = in_pq == 0 ? conn_find(c) : NULL;
  if (k) {
    int err = errno;
    abandon_all(k);
    if (k->connecting) connect_finish(k, c);
    conn_release(k);
    errno = err;
  }
  real(c);
}
