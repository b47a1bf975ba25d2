/* libpq_query.c - query spans: the synchronous calls, the PQsend* family and the
 * PQgetResult that collects their results, pipeline sync and COPY data. See libpq.h. */
#include <string.h>

#include "hooks/libpq.h"
#include "runtime/sql.h"

SS_REAL_LIB(SS_PQ_LIB, PQexec)
SS_REAL_LIB(SS_PQ_LIB, PQexecParams)
SS_REAL_LIB(SS_PQ_LIB, PQprepare)
SS_REAL_LIB(SS_PQ_LIB, PQexecPrepared)
SS_REAL_LIB(SS_PQ_LIB, PQdescribePrepared)
SS_REAL_LIB(SS_PQ_LIB, PQdescribePortal)
SS_REAL_LIB(SS_PQ_LIB, PQsendQuery)
SS_REAL_LIB(SS_PQ_LIB, PQsendQueryParams)
SS_REAL_LIB(SS_PQ_LIB, PQsendPrepare)
SS_REAL_LIB(SS_PQ_LIB, PQsendQueryPrepared)
SS_REAL_LIB(SS_PQ_LIB, PQsendDescribePrepared)
SS_REAL_LIB(SS_PQ_LIB, PQsendDescribePortal)
SS_REAL_LIB(SS_PQ_LIB, PQgetResult)
SS_REAL_LIB(SS_PQ_LIB, PQpipelineSync)
SS_REAL_LIB(SS_PQ_LIB, PQputCopyData)
SS_REAL_LIB(SS_PQ_LIB, PQgetCopyData)

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
  ss__pq_conn_attrs(b, c);
  if (sql) ss__span_str(b, "db.query.text", sql, len);
  ss__span_str(b, "db.operation.name", op ? op : "", op ? strlen(op) : 0);
  ss__span_str(b, "db.collection.name", "", 0);
}

/* Called from the exported hook itself, so the return address is the app's. */
#define query_start(...) query_start_at(__builtin_return_address(0), __VA_ARGS__)

static int in_pipeline(const PGconn *c) {
  __typeof__(&PQpipelineStatus) ps = ss__pq.pipeline_status;
  return ps && ps(c) != PQ_PIPELINE_OFF;
}

/* Before a synchronous query: spans of async statements whose results the app never
 * collected end here (libpq discards those results inside the call). */
static void before_sync(const PGconn *c) {
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k && (k->q_n || k->overflow) && !in_pipeline(c)) ss__pq_abandon_all(k);
}

/* After a synchronous query: ends the span, or, when the result opens a COPY, queues it
 * so that it lasts until the COPY's final result. */
static void sync_end(ss__sb *b, PGconn *c, const PGresult *r) {
  ss__pq_outcome o;
  ss__pq_inspect(c, r, &o);
  if (o.copy && b->recording) {
    ss__pq_conn *k = ss__pq_conn_get(c);
    if (k && k->q_n == 0 && k->overflow == 0) {
      ss__span_pop(b);
      ss__pq_enqueue(k, b);
      k->got = k->copy = 1;
      return;
    }
  }
  ss__pq_sb_outcome(b, &o);
  ss__span_end(b);
}

/* After an async send: a failed send ends the span with libpq's message; a sent
 * statement is queued until its results. */
static void send_end(ss__sb *b, PGconn *c, int ok) {
  if (!ok) {
    ss__pq_outcome o = {.failed = 1, .type = "_OTHER", .msg = ss__pq.error_message(c)};
    if (ss__pq.status(c) == CONNECTION_BAD) o.type = "08006";
    ss__pq_sb_outcome(b, &o);
    ss__span_end(b);
    return;
  }
  ss__span_pop(b);
  ss__pq_conn *k = ss__pq_conn_get(c);
  if (k == NULL) {
    if (b->recording) ss__dropped(SS_DROP_TABLE_FULL);
    return;
  }
  ss__pq_enqueue(k, b);
}


/* A span for running or describing a prepared statement: its remembered text, or none. */
static void prepared_start_at(void *caller, ss__sb *b, const PGconn *c, const char *name,
                              const char *op) {
  const ss__pq_stmt *s = ss__pq_stmt_get(ss__pq_conn_find(c), name);
  query_start_at(caller, b, c, s ? s->sql : NULL, s ? s->len : 0,
                 s ? op : (op ? op : "EXECUTE"));
}
#define prepared_start(...) prepared_start_at(__builtin_return_address(0), __VA_ARGS__)

/* A PREPARE that succeeded: remember the statement's text for its executions. */
static void remember(PGconn *c, const char *name, const char *sql, int ok) {
  ss__pq_conn *k = ok ? ss__pq_conn_get(c) : NULL;
  if (k) ss__pq_stmt_put(k, name, sql);
}

static int prepared_ok(const PGresult *r) {
  return r && ss__pq.result_status(r) == PGRES_COMMAND_OK;
}

/* ---- hooks ---- */

/* The one shape of a query hook: guard, start, call real, record, end, restore errno.
 * `traced` is an extra guard (NULL text is libpq's error to report, untraced); `start`
 * starts span `b` (it must be query_start or prepared_start, expanded here so that the
 * return address is the app's); `record` runs after the call with its result in `r`;
 * `end` is sync_end (the span ends now) or send_end (it waits for its results). */
#define QUERY_HOOK(fn, fail, args, traced, before, start, record, end) \
  do {                                                                 \
    __typeof__(&fn) real = real_##fn();                                \
    if (real == NULL) return fail;                                     \
    if (!ss__pq_tracing() || !(traced)) return real args;              \
    before;                                                            \
    ss__sb b;                                                          \
    start;                                                             \
    ss__pq_depth++;                                                    \
    __typeof__(real args) r = real args;                               \
    SS_SAVE_ERRNO({                                                    \
      ss__pq_depth--;                                                  \
      record;                                                          \
      end(&b, c, r);                                                   \
    });                                                                \
    return r;                                                          \
  } while (0)

/* Synchronous: PGresult* (NULL when libpq is missing), the span ends with the call. */
#define SYNC_HOOK(fn, args, traced, start, record) \
  QUERY_HOOK(fn, NULL, args, traced, before_sync(c), start, record, sync_end)
/* Asynchronous: 1/0 (0 when libpq is missing), the span ends with its results. */
#define SEND_HOOK(fn, args, traced, start, record) \
  QUERY_HOOK(fn, 0, args, traced, (void)0, start, record, send_end)

SS_EXPORT PGresult *PQexec(PGconn *c, const char *query) {
  SYNC_HOOK(PQexec, (c, query), query != NULL,
            query_start(&b, c, query, text_len(query), NULL), (void)0);
}

SS_EXPORT PGresult *PQexecParams(PGconn *c, const char *command, int nParams,
                                 const Oid *paramTypes, const char *const *paramValues,
                                 const int *paramLengths, const int *paramFormats,
                                 int resultFormat) {
  SYNC_HOOK(PQexecParams,
            (c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
             resultFormat),
            command != NULL, query_start(&b, c, command, text_len(command), NULL), (void)0);
}

SS_EXPORT PGresult *PQprepare(PGconn *c, const char *stmtName, const char *query, int nParams,
                              const Oid *paramTypes) {
  SYNC_HOOK(PQprepare, (c, stmtName, query, nParams, paramTypes), query != NULL,
            query_start(&b, c, query, text_len(query), "PREPARE"),
            remember(c, stmtName, query, prepared_ok(r)));
}

SS_EXPORT PGresult *PQexecPrepared(PGconn *c, const char *stmtName, int nParams,
                                   const char *const *paramValues, const int *paramLengths,
                                   const int *paramFormats, int resultFormat) {
  SYNC_HOOK(PQexecPrepared,
            (c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat), 1,
            prepared_start(&b, c, stmtName, NULL), (void)0);
}

SS_EXPORT PGresult *PQdescribePrepared(PGconn *c, const char *stmtName) {
  SYNC_HOOK(PQdescribePrepared, (c, stmtName), 1,
            prepared_start(&b, c, stmtName, "DESCRIBE"), (void)0);
}

SS_EXPORT PGresult *PQdescribePortal(PGconn *c, const char *portal) {
  SYNC_HOOK(PQdescribePortal, (c, portal), 1, query_start(&b, c, NULL, 0, "DESCRIBE"),
            (void)0);
}

SS_EXPORT int PQsendQuery(PGconn *c, const char *query) {
  SEND_HOOK(PQsendQuery, (c, query), query != NULL,
            query_start(&b, c, query, text_len(query), NULL), (void)0);
}

SS_EXPORT int PQsendQueryParams(PGconn *c, const char *command, int nParams,
                                const Oid *paramTypes, const char *const *paramValues,
                                const int *paramLengths, const int *paramFormats,
                                int resultFormat) {
  SEND_HOOK(PQsendQueryParams,
            (c, command, nParams, paramTypes, paramValues, paramLengths, paramFormats,
             resultFormat),
            command != NULL, query_start(&b, c, command, text_len(command), NULL), (void)0);
}

SS_EXPORT int PQsendPrepare(PGconn *c, const char *stmtName, const char *query, int nParams,
                            const Oid *paramTypes) {
  SEND_HOOK(PQsendPrepare, (c, stmtName, query, nParams, paramTypes), query != NULL,
            query_start(&b, c, query, text_len(query), "PREPARE"),
            remember(c, stmtName, query, r));
}

SS_EXPORT int PQsendQueryPrepared(PGconn *c, const char *stmtName, int nParams,
                                  const char *const *paramValues, const int *paramLengths,
                                  const int *paramFormats, int resultFormat) {
  SEND_HOOK(PQsendQueryPrepared,
            (c, stmtName, nParams, paramValues, paramLengths, paramFormats, resultFormat), 1,
            prepared_start(&b, c, stmtName, NULL), (void)0);
}

SS_EXPORT int PQsendDescribePrepared(PGconn *c, const char *stmtName) {
  SEND_HOOK(PQsendDescribePrepared, (c, stmtName), 1,
            prepared_start(&b, c, stmtName, "DESCRIBE"), (void)0);
}

SS_EXPORT int PQsendDescribePortal(PGconn *c, const char *portal) {
  SEND_HOOK(PQsendDescribePortal, (c, portal), 1, query_start(&b, c, NULL, 0, "DESCRIBE"),
            (void)0);
}

/* Results: only connections with statements queued are inspected. */
SS_EXPORT PGresult *PQgetResult(PGconn *c) {
  __typeof__(&PQgetResult) real = real_PQgetResult();
  if (real == NULL) return NULL;
  if (!ss__pq_tracing()) return real(c);
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k == NULL || (k->q_n == 0 && k->overflow == 0)) return real(c);
  ss__pq_depth++;
  PGresult *r = real(c);
  SS_SAVE_ERRNO({
    ss__pq_depth--;
    ss__pq_on_result(k, c, r);
  });
  return r;
}

SS_EXPORT int PQpipelineSync(PGconn *c) {
  __typeof__(&PQpipelineSync) real = real_PQpipelineSync();
  if (real == NULL) return 0;
  int ok = real(c);
  if (ok) SS_SAVE_ERRNO({
      ss__pq_conn *k = ss__pq_conn_find(c);
      if (k) ss__pq_pipeline_synced(k);
    });
  return ok;
}

SS_EXPORT int PQputCopyData(PGconn *c, const char *buffer, int nbytes) {
  __typeof__(&PQputCopyData) real = real_PQputCopyData();
  if (real == NULL) return -1;
  int rc = real(c, buffer, nbytes);
  if (rc == 1 && nbytes > 0) ss__pq_copy_bytes(c, nbytes);
  return rc;
}

SS_EXPORT int PQgetCopyData(PGconn *c, char **buffer, int async) {
  __typeof__(&PQgetCopyData) real = real_PQgetCopyData();
  if (real == NULL) return -2;
  int rc = real(c, buffer, async);
  if (rc > 0) ss__pq_copy_bytes(c, rc);
  return rc;
}
