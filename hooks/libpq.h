/* libpq.h - internal to the libpq hooks: PostgreSQL client spans; see DESIGN.md §4 and
 * README "Spans".
 *
 * Three files, one job each:
 *  - libpq_state.c: the per-connection state table, prepared statements, the FIFO of
 *    statements awaiting results, and what a result means for a span;
 *  - libpq_query.c: the query hooks (PQexec ... PQsendDescribePortal, PQgetResult,
 *    pipeline sync, COPY data), every one of the same shape (PQ_QUERY_HOOK);
 *  - libpq_connect.c: `connect postgresql` spans (PQconnectdb/Params, PQsetdbLogin,
 *    PQconnectStart/Params + PQconnectPoll, PQreset, PQresetStart + PQresetPoll) and
 *    PQfinish.
 *
 * Query spans: one CLIENT span per operation: PQexec, PQexecParams, PQprepare,
 * PQexecPrepared, PQdescribePrepared/Portal synchronously; PQsendQuery,
 * PQsendQueryParams, PQsendPrepare, PQsendQueryPrepared, PQsendDescribePrepared/Portal
 * from the send to the PQgetResult that returns NULL, on whatever thread collects it; in
 * pipeline mode one span per queued statement, ended by its own results
 * (PGRES_PIPELINE_ABORTED ones are errors), with db.operation.batch.size = statements
 * between two PQpipelineSync calls. A COPY's span lasts until its final result and
 * records spanshim.db.copy.bytes moved through PQputCopyData/PQgetCopyData. The span is
 * named ss__sql_span_name here; the exporter scrubs db.query.text and derives the name,
 * db.operation.name and db.collection.name (runtime/sanitize.c). Parameter values are
 * never read.
 *
 * Connect spans: attributes db.system.name, db.namespace, server.address (host or socket
 * dir), server.port (when not 5432), network.peer.address/port; on failure error.type =
 * the SQLSTATE the server's message maps to (28P01, 3D000, ...; English messages), else
 * 08001. The polled forms' span ends when polling reaches OK or FAILED, and the socket
 * spans made while polling are its children. Conninfo strings, keyword arrays and
 * passwords are never read.
 *
 * State per connection lives in a fixed table of SS_PQ_CONNS slots keyed by PGconn*
 * (claimed with a CAS, released by PQfinish): prepared statements (name → SQL, STMTS per
 * connection, SQL truncated to STMT_SQL bytes, oldest replaced first) and the FIFO of
 * statements sent but not yet answered, whose spans are parked in the slot's arena. A
 * connection uses its slot from one thread at a time (libpq requires it; the app's own
 * synchronization orders a send on one thread before the results on another), so the
 * slot itself needs no lock. Limits: a 65th concurrent connection, a statement queue
 * longer than QUEUE, or an arena that cannot hold the span leave that statement untraced
 * and counted in spanshim.spans.dropped; its results still keep the queue in order.
 *
 * libpq calls its own exported functions through the PLT (PQexec → PQsendQuery,
 * PQgetResult; PQconnectdb → PQconnectStart, PQconnectPoll): a per-thread depth
 * (ss__pq_depth) makes those inner calls pass straight through. */
#ifndef SS_HOOKS_LIBPQ_H
#define SS_HOOKS_LIBPQ_H

#include <postgresql/libpq-fe.h>
#include <stdatomic.h>
#include <stdint.h>

#include "hooks/hook.h"

#define SS_PQ_LIB "libpq"
#define SS_PQ_CONNS 64
#define SS_PQ_STMTS 16
#define SS_PQ_STMT_NAME 64
#define SS_PQ_STMT_SQL 1024
#define SS_PQ_QUEUE 128
#define SS_PQ_ARENA 16384
#define SS_PQ_EXTRA 512 /* room kept after a parked span for what its results add */
#define SS_PQ_MSG_MAX 256
#define SS_PQ_CONNECT_REC 1024

/* libpq's accessors, called by the hooks, never hooked. Resolved together, once, by the
 * first ss__pq_tracing() that finds them all (hostaddr and pipeline_status are optional:
 * NULL on an old libpq); read-only afterwards. Use only once ss__pq_tracing() has been
 * true (every code path that reaches a traced connection has). */
typedef struct ss__pq_api {
  __typeof__(&PQstatus) status;
  __typeof__(&PQerrorMessage) error_message;
  __typeof__(&PQdb) db;
  __typeof__(&PQhost) host;
  __typeof__(&PQport) port;
  __typeof__(&PQhostaddr) hostaddr;
  __typeof__(&PQpipelineStatus) pipeline_status;
  __typeof__(&PQresultStatus) result_status;
  __typeof__(&PQresultErrorField) result_error_field;
  __typeof__(&PQresultErrorMessage) result_error_message;
  __typeof__(&PQntuples) ntuples;
} ss__pq_api;
extern ss__pq_api ss__pq;

/* Calls into libpq made by a hook (libpq's own PLT calls back into us) pass through. */
extern __thread int ss__pq_depth __attribute__((tls_model("initial-exec")));

/* 1 when the accessors are there (resolving them on first use). */
int ss__pq_ready(void);

/* The guard of every libpq hook: not inside another libpq hook, family on, libpq usable. */
static inline int ss__pq_tracing(void) {
  return ss__pq_depth == 0 && ss__active(SS_HOOK_LIBPQ) && ss__pq_ready();
}

/* ---- per-connection state (libpq_state.c) ---- */

typedef struct ss__pq_stmt {
  uint8_t used;
  char name[SS_PQ_STMT_NAME];
  uint16_t len;
  char sql[SS_PQ_STMT_SQL];
} ss__pq_stmt;

typedef struct ss__pq_pend {
  uint32_t off, cap; /* the parked span in the arena; cap 0: an untraced statement */
  uint32_t seg;      /* pipeline segment it was queued in */
} ss__pq_pend;

typedef struct ss__pq_conn {
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
  uint64_t connect_rec[SS_PQ_CONNECT_REC / 8];
  ss__pq_pend q[SS_PQ_QUEUE];
  ss__pq_stmt stmts[SS_PQ_STMTS];
  uint64_t arena[SS_PQ_ARENA / 8];
} ss__pq_conn;

/* The connection's slot, or NULL. */
ss__pq_conn *ss__pq_conn_find(const PGconn *c);
/* The connection's slot, claimed if it has none. NULL when the table is full. */
ss__pq_conn *ss__pq_conn_get(PGconn *c);
void ss__pq_conn_release(ss__pq_conn *k);

/* Remembers a prepared statement's text (a name too long to keep is not remembered). */
void ss__pq_stmt_put(ss__pq_conn *k, const char *name, const char *sql);
/* The remembered statement, or NULL (k may be NULL). */
const ss__pq_stmt *ss__pq_stmt_get(const ss__pq_conn *k, const char *name);
/* Forgets every prepared statement (the server session is gone). */
void ss__pq_stmts_clear(ss__pq_conn *k);

/* ---- attributes and results (libpq_state.c) ---- */

/* db.system.name, db.namespace, server.address, server.port of connection c. */
void ss__pq_conn_attrs(ss__sb *b, const PGconn *c);
/* The port libpq reports as a number: 5432 when none, -1 when not a number. */
int ss__pq_port_of(const char *p);
/* Length of message m without its trailing newlines and blanks, at most cap. */
size_t ss__pq_msg_len(const char *m, size_t cap);
/* Status message of the span being built: libpq's message, trimmed. */
void ss__pq_set_message(ss__sb *b, const char *m);

typedef struct ss__pq_outcome {
  uint8_t failed, copy, has_rows, aborted;
  int64_t rows;
  const char *sqlstate; /* from the server; NULL when none */
  const char *type;     /* error.type */
  const char *msg;
} ss__pq_outcome;

/* What result r (NULL: none) of connection c says about its statement. */
void ss__pq_inspect(const PGconn *c, const PGresult *r, ss__pq_outcome *o);
/* Applies an outcome to a span still being built. */
void ss__pq_sb_outcome(ss__sb *b, const ss__pq_outcome *o);

/* ---- the FIFO of statements awaiting results (libpq_state.c) ---- */

/* Queues the span being built in b (popped from the context stack by the caller).
 * Statements that cannot be parked are queued untraced and counted. */
void ss__pq_enqueue(ss__pq_conn *k, const ss__sb *b);
/* Ends every queued span now, outcome unknown (PQfinish, PQreset, or a PQexec that
 * discards results the app never collected). */
void ss__pq_abandon_all(ss__pq_conn *k);
/* One result (or the NULL that ends a statement) of the head statement. */
void ss__pq_on_result(ss__pq_conn *k, const PGconn *c, const PGresult *r);
/* The statements queued since the previous PQpipelineSync form one batch. */
void ss__pq_pipeline_synced(ss__pq_conn *k);
/* Bytes moved through PQputCopyData/PQgetCopyData during the head statement's COPY. */
void ss__pq_copy_bytes(const PGconn *c, int64_t n);

/* ---- connect spans (libpq_connect.c) ---- */

/* Ends a parked connect span with the connection's state (reset, finish). */
void ss__pq_connect_finish(ss__pq_conn *k, const PGconn *c);
/* The same, with no call into libpq (the process ends, maybe in a signal handler): the
 * span ends with status unset and no outcome. Either ends the span once: the first
 * caller claims it. Async-signal-safe. */
void ss__pq_connect_end_unknown(ss__pq_conn *k);

#endif
