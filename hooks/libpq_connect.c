/* libpq_connect.c - `connect postgresql` spans: the blocking connects, the polled ones
 * (the span parked in the connection's slot until polling ends), resets, and PQfinish.
 * See libpq.h. */
#include <string.h>

#include "hooks/libpq.h"
#include "runtime/clock.h"

SS_REAL_LIB(SS_PQ_LIB, PQconnectdb)
SS_REAL_LIB(SS_PQ_LIB, PQconnectdbParams)
SS_REAL_LIB(SS_PQ_LIB, PQsetdbLogin)
SS_REAL_LIB(SS_PQ_LIB, PQconnectStart)
SS_REAL_LIB(SS_PQ_LIB, PQconnectStartParams)
SS_REAL_LIB(SS_PQ_LIB, PQconnectPoll)
SS_REAL_LIB(SS_PQ_LIB, PQreset)
SS_REAL_LIB(SS_PQ_LIB, PQresetStart)
SS_REAL_LIB(SS_PQ_LIB, PQresetPoll)
SS_REAL_LIB(SS_PQ_LIB, PQfinish)

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

/* PostgreSQL's own connection-time refusals (their values are quoted, and the exporter
 * masks those). Any other server text at connect (a login event trigger's RAISE, an
 * authentication hook of an extension) may carry values unquoted. */
static const char *const core_fatal[] = {
    "password authentication failed", "no pg_hba.conf entry", "pg_hba.conf rejects",
    "does not exist", "the database system is", "too many clients", "too many connections",
    "remaining connection slots", "terminating connection", "permission denied for database",
    "is not permitted to log in", "authentication failed for user", "has no password assigned",
    "password is expired", "SSL", "GSSAPI", "certificate", "unsupported frontend protocol",
    "invalid", "out of memory", "could not", "canceling authentication",
};

/* The length of msg to export: under SPANSHIM_DB_ERROR_MESSAGES=masked, server text that
 * is none of PostgreSQL's own refusals is cut off at its "FATAL:" or "ERROR:" (libpq's
 * part before it stays: where it connected and that it failed). */
static size_t connect_message_len(const char *msg) {
  size_t n = ss__pq_msg_len(msg, SS_PQ_MSG_MAX * 4);
  if (ss__cfg.db_error_messages == SS_DBMSG_FULL) return n;
  const char *srv = strstr(msg, "FATAL:  ");
  if (srv == NULL) srv = strstr(msg, "ERROR:  ");
  if (srv == NULL || (size_t)(srv - msg) >= n) return n;
  for (size_t i = 0; i < sizeof core_fatal / sizeof core_fatal[0]; i++) {
    const char *hit = strstr(srv, core_fatal[i]);
    const char *eol = strchr(srv, '\n');
    if (hit && (eol == NULL || hit < eol)) return n;
  }
  size_t k = (size_t)(srv - msg);
  while (k > 0 && (msg[k - 1] == ' ' || msg[k - 1] == ':')) k--;
  return k;
}

static void connect_outcome(ss__sb *b, const PGconn *c) {
  ss__pq_conn_attrs(b, c);
  if (c && ss__pq.status(c) == CONNECTION_OK) {
    __typeof__(&PQhostaddr) ha = ss__pq.hostaddr;
    const char *addr = ha ? ha(c) : NULL;
    if (addr && *addr) {
      ss__span_str(b, "network.peer.address", addr, (size_t)-1);
      int port = ss__pq_port_of(ss__pq.port(c));
      if (port > 0) ss__span_int(b, "network.peer.port", port);
    }
    return;
  }
  const char *msg = c ? ss__pq.error_message(c) : "out of memory";
  const char *code = connect_code(msg);
  if (code) ss__span_str(b, "db.response.status_code", code, 5);
  ss__span_error(b, code ? code : "08001", NULL);
  if (msg) ss__span_message(b, msg, connect_message_len(msg));
}


/* A polled connect: the span is parked in the connection's slot until polling ends. */
static void connect_park(ss__sb *b, PGconn *c) {
  ss__pq_conn *k = (c && ss__pq.status(c) != CONNECTION_BAD) ? ss__pq_conn_get(c) : NULL;
  if (k == NULL || !b->recording) {
    if (c && ss__pq.status(c) != CONNECTION_BAD && b->recording) {
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
  k->connecting = ss__span_park(b, k->connect_rec, sizeof k->connect_rec - SS_PQ_EXTRA) > 0;
  if (!k->connecting) ss__dropped(SS_DROP_TOO_BIG);
}

/* Ends a parked connect span with the connection's state. */
void ss__pq_connect_finish(ss__pq_conn *k, const PGconn *c) {
  if (!__atomic_exchange_n(&k->connecting, 0, __ATOMIC_ACQ_REL)) return;
  /* Build the ss__pq_outcome on a scratch builder, then copy its attributes over. */
  ss__sb tmp;
  ss__span_scratch(&tmp);
  connect_outcome(&tmp, c);
  ss__rec_finish_from(k->connect_rec, sizeof k->connect_rec, &tmp,
                      "db.system.name" /* parked already */, ss__now_ns());
}

void ss__pq_connect_end_unknown(ss__pq_conn *k) {
  if (!__atomic_exchange_n(&k->connecting, 0, __ATOMIC_ACQ_REL)) return;
  ss__sb tmp;
  ss__span_scratch(&tmp); /* nothing added: the outcome is not known */
  ss__rec_finish_from(k->connect_rec, sizeof k->connect_rec, &tmp, "db.system.name",
                      ss__now_ns());
}

/* After the real call that made connection c: the span ends now, or is parked until
 * polling tells the outcome. */
static void connect_made(ss__sb *b, PGconn *c, int polled) {
  ss__pq_conn *stale = ss__pq_conn_find(c);
  if (stale) ss__pq_conn_release(stale); /* left by a connection freed behind our back */
  if (polled) {
    connect_park(b, c);
  } else {
    connect_outcome(b, c);
    ss__span_end(b);
  }
}

/* The one shape of a connect hook: guard, start, call real, record, end, restore errno.
 * `polled`: the span lasts until PQconnectPoll reports the outcome. */
#define CONNECT_HOOK(fn, args, polled)                                  \
  do {                                                                  \
    __typeof__(&fn) real = real_##fn();                                 \
    if (real == NULL) return NULL;                                      \
    if (!ss__pq_tracing()) return real args;                            \
    ss__sb b;                                                           \
    ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);           \
    ss__pq_depth++;                                                     \
    PGconn *c = real args;                                              \
    SS_SAVE_ERRNO({                                                     \
      ss__pq_depth--;                                                   \
      connect_made(&b, c, polled);                                      \
    });                                                                 \
    return c;                                                           \
  } while (0)

SS_EXPORT PGconn *PQconnectdb(const char *conninfo) {
  CONNECT_HOOK(PQconnectdb, (conninfo), 0);
}

SS_EXPORT PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values,
                                    int expand_dbname) {
  CONNECT_HOOK(PQconnectdbParams, (keywords, values, expand_dbname), 0);
}

SS_EXPORT PGconn *PQsetdbLogin(const char *pghost, const char *pgport, const char *pgoptions,
                               const char *pgtty, const char *dbName, const char *login,
                               const char *pwd) {
  CONNECT_HOOK(PQsetdbLogin, (pghost, pgport, pgoptions, pgtty, dbName, login, pwd), 0);
}

SS_EXPORT PGconn *PQconnectStart(const char *conninfo) {
  CONNECT_HOOK(PQconnectStart, (conninfo), 1);
}

SS_EXPORT PGconn *PQconnectStartParams(const char *const *keywords, const char *const *values,
                                       int expand_dbname) {
  CONNECT_HOOK(PQconnectStartParams, (keywords, values, expand_dbname), 1);
}

/* Runs a poll with the parked connect span as this thread's current context, so the
 * socket spans libpq makes meanwhile become its children; ends the span when polling
 * reaches OK or FAILED. */
static PostgresPollingStatusType traced_poll(PGconn *c, __typeof__(&PQconnectPoll) real) {
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k == NULL || !k->connecting) return real(c);
  ss__ctx parent;
  ss__rec_ctx(k->connect_rec, &parent);
  int token = ss__ctx_push(&parent);
  ss__pq_depth++;
  PostgresPollingStatusType st = real(c);
  SS_SAVE_ERRNO({
    ss__pq_depth--;
    ss__ctx_pop(token);
    if (st == PGRES_POLLING_OK || st == PGRES_POLLING_FAILED) ss__pq_connect_finish(k, c);
  });
  return st;
}

SS_EXPORT PostgresPollingStatusType PQconnectPoll(PGconn *c) {
  __typeof__(&PQconnectPoll) real = real_PQconnectPoll();
  if (real == NULL) return PGRES_POLLING_FAILED;
  if (!ss__pq_tracing()) return real(c);
  return traced_poll(c, real);
}

SS_EXPORT PostgresPollingStatusType PQresetPoll(PGconn *c) {
  __typeof__(&PQresetPoll) real = real_PQresetPoll();
  if (real == NULL) return PGRES_POLLING_FAILED;
  if (!ss__pq_tracing()) return real(c);
  return traced_poll(c, real);
}

/* A reset drops the server session: queued statements end, prepared ones are gone; a
 * connect still being polled is abandoned, its outcome not known (status unset, as at
 * exit: nothing failed). */
static void reset_state(PGconn *c) {
  ss__pq_conn *k = ss__pq_conn_find(c);
  if (k == NULL) return;
  ss__pq_abandon_all(k);
  ss__pq_stmts_clear(k);
  ss__pq_connect_end_unknown(k);
}

SS_EXPORT void PQreset(PGconn *c) {
  __typeof__(&PQreset) real = real_PQreset();
  if (real == NULL) return;
  if (!ss__pq_tracing()) {
    real(c);
    return;
  }
  reset_state(c);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ss__pq_depth++;
  real(c);
  SS_SAVE_ERRNO({
    ss__pq_depth--;
    connect_outcome(&b, c);
    ss__span_end(&b);
  });
}

SS_EXPORT int PQresetStart(PGconn *c) {
  __typeof__(&PQresetStart) real = real_PQresetStart();
  if (real == NULL) return 0;
  if (!ss__pq_tracing()) return real(c);
  reset_state(c);
  ss__sb b;
  ss__span_start(&b, "connect postgresql", SS_KIND_CLIENT);
  ss__pq_depth++;
  int ok = real(c);
  SS_SAVE_ERRNO({
    ss__pq_depth--;
    if (ok) {
      connect_park(&b, c);
    } else {
      connect_outcome(&b, c);
      ss__span_end(&b);
    }
  });
  return ok;
}

SS_EXPORT void PQfinish(PGconn *c) {
  __typeof__(&PQfinish) real = real_PQfinish();
  if (real == NULL) return;
  ss__pq_conn *k = ss__pq_depth == 0 ? ss__pq_conn_find(c) : NULL;
  if (k) SS_SAVE_ERRNO({
      ss__pq_abandon_all(k);
      ss__pq_connect_end_unknown(k); /* still being polled: abandoned, as reset_state */
      ss__pq_conn_release(k);
    });
  real(c);
}
