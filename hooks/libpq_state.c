/* libpq_state.c - per-connection state of the libpq hooks: the slot table, prepared
 * statements, the FIFO of statements awaiting results, and what a result means for a
 * span. See libpq.h. */
#include <string.h>

#include "hooks/libpq.h"
#include "runtime/clock.h"
#include "runtime/hash.h"
#include "runtime/sql.h"
#include "runtime/sys.h"

__thread int ss__pq_depth __attribute__((tls_model("initial-exec")));
ss__pq_api ss__pq;

/* All required accessors found (once). */
static _Atomic int acc_state; /* 0 unknown, 1 ready, 2 missing */

#define API(field, name) (ss__pq.field = (__typeof__(&name))ss__dlsym_lib(SS_PQ_LIB, #name))

int ss__pq_ready(void) {
  int st = atomic_load_explicit(&acc_state, memory_order_acquire);
  if (__builtin_expect(st == 0, 0)) {
    /* Racing threads store the same pointers. */
    st = (API(status, PQstatus) && API(error_message, PQerrorMessage) && API(db, PQdb) &&
          API(host, PQhost) && API(port, PQport) && API(result_status, PQresultStatus) &&
          API(result_error_field, PQresultErrorField) &&
          API(result_error_message, PQresultErrorMessage) && API(ntuples, PQntuples))
             ? 1 : 2;
    API(hostaddr, PQhostaddr);
    API(pipeline_status, PQpipelineStatus);
    atomic_store_explicit(&acc_state, st, memory_order_release);
  }
  return st == 1;
}

/* ---- the slot table ---- */

static ss__pq_conn conns[SS_PQ_CONNS];
static _Atomic int conns_used;

static unsigned slot_hash(const PGconn *c) {
  return (unsigned)(ss__ptr_hash(c) % SS_PQ_CONNS);
}

ss__pq_conn *ss__pq_conn_find(const PGconn *c) {
  if (c == NULL || atomic_load_explicit(&conns_used, memory_order_relaxed) == 0) return NULL;
  unsigned h = slot_hash(c);
  for (unsigned i = 0; i < SS_PQ_CONNS; i++) {
    ss__pq_conn *k = &conns[(h + i) % SS_PQ_CONNS];
    if (atomic_load_explicit(&k->key, memory_order_acquire) == c) return k;
  }
  return NULL;
}

static void head_reset(ss__pq_conn *k) {
  k->got = k->failed = k->copy = k->has_rows = 0;
  k->rows = k->bytes = 0;
}

/* The connection's slot, claimed if it has none. NULL when the table is full. */
ss__pq_conn *ss__pq_conn_get(PGconn *c) {
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k || c == NULL) return k;
  unsigned h = slot_hash(c);
  for (unsigned i = 0; i < SS_PQ_CONNS; i++) {
    k = &conns[(h + i) % SS_PQ_CONNS];
    PGconn *expected = NULL;
    if (!atomic_compare_exchange_strong(&k->key, &expected, c)) continue;
    k->connecting = 0;
    ss__pq_stmts_clear(k);
    k->q_head = k->q_n = k->overflow = 0;
    k->seg = k->seg_n = 0;
    k->arena_used = 0;
    head_reset(k);
    atomic_fetch_add(&conns_used, 1);
    return k;
  }
  return NULL;
}

void ss__pq_ending(void) {
  if (atomic_load_explicit(&conns_used, memory_order_relaxed) == 0) return;
  for (unsigned i = 0; i < SS_PQ_CONNS; i++)
    if (atomic_load_explicit(&conns[i].key, memory_order_acquire) != NULL)
      ss__pq_connect_end_unknown(&conns[i]);
}

SS_FORK_TEXT void ss__pq_atfork_child(void) {
  if (atomic_load_explicit(&conns_used, memory_order_relaxed) == 0) return;
  for (unsigned i = 0; i < SS_PQ_CONNS; i++)
    if (atomic_load_explicit(&conns[i].key, memory_order_relaxed) != NULL &&
        conns[i].connecting)
      conns[i].connecting = 0;
}

void ss__pq_conn_release(ss__pq_conn *k) {
  atomic_store_explicit(&k->key, NULL, memory_order_release);
  atomic_fetch_sub(&conns_used, 1);
}

/* ---- prepared statements ---- */

void ss__pq_stmt_put(ss__pq_conn *k, const char *name, const char *sql) {
  if (name == NULL || sql == NULL) return;
  size_t nl = strnlen(name, SS_PQ_STMT_NAME);
  if (nl >= SS_PQ_STMT_NAME) return; /* too long to remember: its executions carry no text */
  ss__pq_stmt *s = NULL;
  for (int i = 0; i < SS_PQ_STMTS && !s; i++)
    if (k->stmts[i].used && strcmp(k->stmts[i].name, name) == 0) s = &k->stmts[i];
  if (s == NULL) s = &k->stmts[k->stmt_next++ % SS_PQ_STMTS];
  memcpy(s->name, name, nl + 1);
  size_t n = strnlen(sql, SS_PQ_STMT_SQL);
  if (n == SS_PQ_STMT_SQL) /* truncated: never inside a UTF-8 sequence */
    while (n > 0 && ((unsigned char)sql[n] & 0xC0) == 0x80) n--;
  memcpy(s->sql, sql, n);
  s->len = (uint16_t)n;
  s->used = 1;
}

const ss__pq_stmt *ss__pq_stmt_get(const ss__pq_conn *k, const char *name) {
  if (k == NULL || name == NULL) return NULL;
  for (int i = 0; i < SS_PQ_STMTS; i++)
    if (k->stmts[i].used && strcmp(k->stmts[i].name, name) == 0) return &k->stmts[i];
  return NULL;
}


void ss__pq_stmts_clear(ss__pq_conn *k) {
  k->stmt_next = 0;
  for (int s = 0; s < SS_PQ_STMTS; s++) k->stmts[s].used = 0;
}

/* ---- attributes ---- */

int ss__pq_port_of(const char *p) {
  int v = 0;
  if (p == NULL || *p == '\0') return 5432;
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > 65535) return -1;
    v = v * 10 + (*p - '0');
  }
  return v;
}

void ss__pq_conn_attrs(ss__sb *b, const PGconn *c) {
  ss__span_str(b, "db.system.name", "postgresql", 10);
  if (c == NULL) return;
  const char *db = ss__pq.db(c), *host = ss__pq.host(c);
  if (db && *db) ss__span_str(b, "db.namespace", db, (size_t)-1);
  if (host && *host) ss__span_str(b, "server.address", host, (size_t)-1);
  int port = ss__pq_port_of(ss__pq.port(c));
  if (port > 0 && port != 5432) ss__span_int(b, "server.port", port);
}

size_t ss__pq_msg_len(const char *m, size_t cap) {
  size_t n = strnlen(m, cap);
  while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' ')) n--;
  return n;
}

void ss__pq_set_message(ss__sb *b, const char *m) {
  if (m == NULL) return;
  ss__span_message(b, m, ss__pq_msg_len(m, SS_PQ_MSG_MAX * 4));
}

/* ---- results ---- */

/* Whether the server's error text was written by database code (RAISE in PL/pgSQL,
 * plpy.error, elog in PL/Perl or PL/Tcl: sources pl_exec.c, plpy_*.c, plperl.c, pltcl.c),
 * or by a server that does not say where it came from: such text may carry any value
 * unquoted (`RAISE EXCEPTION 'failed for %', secret`), so by default only its condition
 * name is exported. PostgreSQL's own messages quote their values (its message style
 * guide), and the exporter masks those. */
static int user_authored(const PGresult *r) {
  const char *file = ss__pq.result_error_field(r, PG_DIAG_SOURCE_FILE);
  const char *sqlstate = ss__pq.result_error_field(r, PG_DIAG_SQLSTATE);
  if (file == NULL || *file == '\0') return 1;
  if (sqlstate && sqlstate[0] == 'P' && sqlstate[1] == '0') return 1; /* plpgsql_error */
  return strncmp(file, "pl_", 3) == 0 || strncmp(file, "plpy", 4) == 0 ||
         strncmp(file, "plperl", 6) == 0 || strncmp(file, "pltcl", 5) == 0 ||
         strncmp(file, "plv8", 4) == 0;
}

void ss__pq_inspect(const PGconn *c, const PGresult *r, ss__pq_outcome *o) {
  memset(o, 0, sizeof *o);
  if (r == NULL) {
    o->failed = 1;
    o->type = ss__pq.status(c) == CONNECTION_BAD ? "08006" : "_OTHER";
    o->msg = ss__pq.error_message(c);
    return;
  }
  switch (ss__pq.result_status(r)) {
    case PGRES_TUPLES_OK:
    case PGRES_SINGLE_TUPLE:
      o->has_rows = 1;
      o->rows = ss__pq.ntuples(r);
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
      const char *st = ss__pq.result_error_field(r, PG_DIAG_SQLSTATE);
      o->sqlstate = (st && *st) ? st : NULL;
      /* SQLSTATE classes 00 (success) and 01 (warning) are not errors. */
      o->failed = !(o->sqlstate && o->sqlstate[0] == '0' &&
                    (o->sqlstate[1] == '0' || o->sqlstate[1] == '1'));
      o->type = o->sqlstate ? o->sqlstate
                            : (ss__pq.status(c) == CONNECTION_BAD ? "08006" : "_OTHER");
      o->msg = ss__pq.result_error_field(r, PG_DIAG_MESSAGE_PRIMARY);
      if (o->msg == NULL) o->msg = ss__pq.result_error_message(r);
      if (ss__cfg.db_error_messages != SS_DBMSG_FULL && user_authored(r)) {
        const char *name = ss__sqlstate_name(o->sqlstate);
        o->msg = name ? name : "error raised by database code";
      }
      break;
    }
    default:
      break;
  }
}

/* Applies an ss__pq_outcome to a span still being built. */
void ss__pq_sb_outcome(ss__sb *b, const ss__pq_outcome *o) {
  if (o->has_rows) ss__span_int(b, "db.response.returned_rows", o->rows);
  if (o->sqlstate) ss__span_str(b, "db.response.status_code", o->sqlstate, (size_t)-1);
  if (o->failed) {
    ss__span_error(b, o->type, NULL);
    ss__pq_set_message(b, o->msg);
  }
}

/* ---- the FIFO of statements awaiting results ---- */

static void *pend_rec(ss__pq_conn *k, const ss__pq_pend *p) {
  return p->cap ? (char *)k->arena + p->off : NULL;
}

/* Queues the span being built in b (popped from the context stack by the caller).
 * Statements that cannot be parked are queued untraced and counted. */
void ss__pq_enqueue(ss__pq_conn *k, const ss__sb *b) {
  uint32_t seg = k->seg;
  k->seg_n++;
  if (k->overflow > 0 || k->q_n == SS_PQ_QUEUE) {
    k->overflow++;
    if (b->recording) ss__dropped(SS_DROP_QUEUE);
    return;
  }
  ss__pq_pend *p = &k->q[(k->q_head + k->q_n) % SS_PQ_QUEUE];
  p->off = k->arena_used;
  p->cap = 0;
  p->seg = seg;
  if (b->recording) {
    size_t room = SS_PQ_ARENA - k->arena_used;
    size_t n = room > SS_PQ_EXTRA ? ss__span_park(b, (char *)k->arena + k->arena_used, room - SS_PQ_EXTRA) : 0;
    if (n > 0) {
      p->cap = (uint32_t)(n + SS_PQ_EXTRA);
      k->arena_used += (p->cap + 7u) & ~7u;
    } else {
      ss__dropped(SS_DROP_TOO_BIG);
    }
  }
  if (k->q_n == 0) head_reset(k);
  k->q_n++;
}

/* Ends the head statement's span (status from its results) and dequeues it. */
static void complete_head(ss__pq_conn *k) {
  if (k->q_n == 0) {
    if (k->overflow > 0) k->overflow--;
    head_reset(k);
    return;
  }
  ss__pq_pend *p = &k->q[k->q_head];
  void *rec = pend_rec(k, p);
  if (rec) {
    if (k->has_rows) ss__rec_add_int(rec, p->cap, "db.response.returned_rows", k->rows);
    if (k->bytes) ss__rec_add_int(rec, p->cap, "spanshim.db.copy.bytes", k->bytes);
    ss__rec_finish(rec, ss__now_ns(), k->failed ? SS_STATUS_ERROR : SS_STATUS_UNSET);
  }
  k->q_head = (k->q_head + 1) % SS_PQ_QUEUE;
  if (--k->q_n == 0) k->arena_used = 0;
  head_reset(k);
}

/* Ends every queued span now, ss__pq_outcome unknown (PQfinish, PQreset, or a PQexec that
 * discards results the app never collected). */
void ss__pq_abandon_all(ss__pq_conn *k) {
  while (k->q_n > 0) {
    k->got = 1;
    complete_head(k);
  }
  k->overflow = 0;
  k->seg_n = 0;
  head_reset(k);
}

/* One result (or the NULL that ends a statement) of the head statement. */
void ss__pq_on_result(ss__pq_conn *k, const PGconn *c, const PGresult *r) {
  if (r == NULL) {
    if (k->got) complete_head(k);
    return;
  }
  if (ss__pq.result_status(r) == PGRES_PIPELINE_SYNC) return;
  k->got = 1;
  ss__pq_outcome o;
  ss__pq_inspect(c, r, &o);
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
    if (o.msg) ss__rec_add_str(rec, cap, NULL, o.msg, ss__pq_msg_len(o.msg, SS_PQ_MSG_MAX));
  }
  /* The connection is gone (backend terminated): no NULL result may ever come, and
   * apps such as psql exit right away; end the statement now, and any queued behind. */
  if (o.failed && ss__pq.status(c) == CONNECTION_BAD) {
    complete_head(k);
    ss__pq_abandon_all(k);
  }
}

void ss__pq_pipeline_synced(ss__pq_conn *k) {
  if (k->seg_n >= 2)
    for (unsigned i = 0; i < k->q_n; i++) {
      ss__pq_pend *p = &k->q[(k->q_head + i) % SS_PQ_QUEUE];
      void *rec = pend_rec(k, p);
      if (rec && p->seg == k->seg)
        ss__rec_add_int(rec, p->cap, "db.operation.batch.size", k->seg_n);
    }
  k->seg++;
  k->seg_n = 0;
}

void ss__pq_copy_bytes(const PGconn *c, int64_t n) {
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k && k->q_n && k->copy) k->bytes += n;
}
