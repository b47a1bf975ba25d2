/* sqlsum.c - SQL enrichment of PostgreSQL spans with PostgreSQL's own parser.
 *
 * For every span with db.query.text whose db.system.name (or older db.system) is
 * "postgresql", the text is parsed with libpg_query (the server's grammar, in the
 * collector, never in the traced process) and the span gets:
 *   db.query.summary    operations and tables in the order the statement names them
 *                       ("SELECT orders", "INSERT shipping SELECT orders"); CTE names
 *                       are not tables; a SELECT without FROM inside another statement
 *                       (INSERT ... VALUES) adds nothing
 *   db.operation.name   the outermost operation
 *   db.collection.name  the target of INSERT/UPDATE/DELETE/MERGE, or the single table a
 *                       SELECT reads (removed when a SELECT reads several)
 *   name                the summary (OTel database span naming)
 * The shim scrubs literals into `?`, which PostgreSQL's grammar does not know, so `?`
 * outside quotes becomes a parameter ($1) for the parse. The scrubbing is re-checked:
 * if the parse still finds a literal, db.query.text is replaced by the parser's
 * normalized text (every constant a $n parameter) and the span counted as rescrubbed.
 * Text that does not parse keeps the shim's name and attributes, and its
 * db.query.summary is the shim's span name.
 *
 * Results are cached by text (direct-mapped), since services repeat their statements.
 * Attribute values and arrays added to a span are allocated from a pool that lives until
 * the next request. Receiver thread only.
 *
 * libpg_query is opened when the first statement is parsed (tools/spanshimd/lazy.h):
 * linked, its 8,600 relocations were a third of every collector's start (`spanshim run`
 * of a command that makes no SQL span waited for them). Not there: every text keeps the
 * shim's name, as text that does not parse (said once on stderr). */
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/hash.h"
#include "runtime/sql.h"
#include "tools/common/arena.h"
#include "tools/common/json.h"
#include "tools/common/otlp_json.h"
#include "tools/spanshimd/lazy.h"
#include "tools/spanshimd/spanshimd.h"

#define PG_QUERY_FNS(X)                                                                 \
  X(pg_query_parse) X(pg_query_normalize) X(pg_query_free_normalize_result)            \
  X(pg_query_free_parse_result)
SS_LAZY_TABLE(pgq, PG_QUERY_FNS)
#define pg_query_parse SS_LAZY(pgq, pg_query_parse)
#define pg_query_normalize SS_LAZY(pgq, pg_query_normalize)
#define pg_query_free_normalize_result SS_LAZY(pgq, pg_query_free_normalize_result)
#define pg_query_free_parse_result SS_LAZY(pgq, pg_query_free_parse_result)
#ifndef SS_PG_QUERY_SONAME /* the Makefile passes the one this build links against */
#define SS_PG_QUERY_SONAME "libpg_query.so"
#endif
static const char *const pgq_sonames[] = {SS_PG_QUERY_SONAME, "libpg_query.so", NULL};

/* 0 once libpg_query is there; -1: no parse (said once). */
static int load_pgq(void) {
  static int failed;
  if (failed) return -1;
  return SS_LAZY_LOAD(pgq, "libpg_query", pgq_sonames) != 0 ? (failed = -1) : 0;
}

typedef Opentelemetry__Proto__Trace__V1__Span pb_span;
typedef Opentelemetry__Proto__Common__V1__KeyValue pb_kv;
typedef Opentelemetry__Proto__Common__V1__AnyValue pb_any;

#define SUMMARY_MAX 255
#define CACHE_SLOTS 4096
#define TEXT_MAX 65536             /* longer statements are not parsed (kept as they are) */

typedef struct result {
  char *text;                      /* the key; NULL: empty slot */
  size_t text_len;
  int ok;                          /* parsed */
  char summary[SUMMARY_MAX + 1];
  char op[32];
  char coll[128];                  /* "" none */
  char *normalized;                /* non-NULL: the shim left a literal; use this text */
  size_t summary_len, op_len, coll_len, normalized_len;  /* the strings' lengths */
} result;

static result cache[CACHE_SLOTS];
static int cache_used; /* a slot of cache[] was ever written */
static int disabled;

/* ---- the per-request pool ---- */

static ss__arena pool = {.keep_max = 8u << 20};  /* what enrichment adds to one request */

static void *pool_alloc(size_t n) { return ss__arena_alloc(&pool, n); }

/* ---- walking the parse tree ---- */

typedef struct walk {
  char summary[SUMMARY_MAX + 1];
  size_t len;
  char op[32];
  char coll[128];                  /* target of the outermost statement */
  const char *ctes[32];
  size_t n_ctes;
  char first_rel[128], last_rel[128];
  size_t n_rels;                   /* relations named outside CTE references */
  int literal;
  int depth;                       /* statement nesting */
} walk;

static void add_token(walk *w, const char *tok) {
  size_t n = strlen(tok);
  if (w->len + (w->len ? 1 : 0) + n > SUMMARY_MAX) return;
  if (w->len) w->summary[w->len++] = ' ';
  memcpy(w->summary + w->len, tok, n);
  w->len += n;
  w->summary[w->len] = 0;
}

static void walk_node(walk *w, const ss__json *j);

static void relation(walk *w, const ss__json *rv) {
  size_t n;
  const char *rel = ss__json_str(ss__json_get(rv, "relname"), &n);
  const char *schema = ss__json_str(ss__json_get(rv, "schemaname"), &n);
  if (rel == NULL) return;
  if (!schema)
    for (size_t i = 0; i < w->n_ctes; i++)
      if (strcmp(w->ctes[i], rel) == 0) return;  /* a CTE, not a table */
  char name[128];
  snprintf(name, sizeof name, "%s%s%s", schema ? schema : "", schema ? "." : "", rel);
  add_token(w, name);
  if (w->n_rels++ == 0) snprintf(w->first_rel, sizeof w->first_rel, "%s", name);
  snprintf(w->last_rel, sizeof w->last_rel, "%s", name);
}

static const char *dml_op(const char *key) {
  static const char *const map[][2] = {
      {"SelectStmt", "SELECT"}, {"InsertStmt", "INSERT"}, {"UpdateStmt", "UPDATE"},
      {"DeleteStmt", "DELETE"}, {"MergeStmt", "MERGE"}};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (strcmp(key, map[i][0]) == 0) return map[i][1];
  return NULL;
}

/* One statement: its CTEs first (they come first in the text), then its operation, then
 * what it names. A nested statement that names no table (INSERT's VALUES list, a SELECT
 * from a CTE) takes its operation back out of the summary. */
static void statement(walk *w, const char *op, const ss__json *st) {
  int outer = w->depth == 0;
  const ss__json *with = ss__json_get(st, "withClause");
  w->depth++;
  if (with) walk_node(w, with);
  w->depth--;
  size_t n;
  const char *so = ss__json_str(ss__json_get(st, "op"), &n);
  int is_select = strcmp(op, "SELECT") == 0;
  int set_operation = is_select && so && strcmp(so, "SETOP_NONE") != 0;
  size_t mark = w->len, rels_before = w->n_rels;
  if (!set_operation) add_token(w, op);
  if (outer && !w->op[0]) snprintf(w->op, sizeof w->op, "%s", op);
  w->depth++;
  if (outer && !is_select) {  /* the target first, so it is the collection */
    const ss__json *rel = ss__json_get(st, "relation");
    size_t before = w->n_rels;
    if (rel) relation(w, rel);
    if (w->n_rels > before && !w->coll[0]) snprintf(w->coll, sizeof w->coll, "%s", w->last_rel);
  }
  for (size_t i = 0; i < ss__json_count(st); i++) {
    const ss__json *m = ss__json_at(st, i);
    if (strcmp(m->key, "withClause") == 0) continue;
    if (outer && !is_select && strcmp(m->key, "relation") == 0) continue;
    if (set_operation && (strcmp(m->key, "larg") == 0 || strcmp(m->key, "rarg") == 0)) {
      w->depth--;  /* the branches of a UNION are as outer as the UNION */
      statement(w, "SELECT", m);
      w->depth++;
      continue;
    }
    walk_node(w, m);
  }
  w->depth--;
  if (!outer && !set_operation && w->n_rels == rels_before) {
    w->len = mark;
    w->summary[mark] = 0;
  }
}

static void walk_node(walk *w, const ss__json *j) {
  if (ss__json_is(j, SS_JSON_ARRAY)) {
    for (size_t i = 0; i < ss__json_count(j); i++) walk_node(w, ss__json_at(j, i));
    return;
  }
  if (!ss__json_is(j, SS_JSON_OBJECT)) return;
  if (ss__json_get(j, "relname")) {
    relation(w, j);
    return;
  }
  for (size_t i = 0; i < ss__json_count(j); i++) {
    const ss__json *m = ss__json_at(j, i);
    const char *op = dml_op(m->key);
    if (op && ss__json_is(m, SS_JSON_OBJECT)) {
      statement(w, op, m);
    } else if (strcmp(m->key, "A_Const") == 0) {
      if (!ss__json_get(m, "isnull")) w->literal = 1;
    } else if (strcmp(m->key, "CommonTableExpr") == 0) {
      size_t n;
      const char *name = ss__json_str(ss__json_get(m, "ctename"), &n);
      if (name && w->n_ctes < sizeof w->ctes / sizeof *w->ctes) w->ctes[w->n_ctes++] = name;
      walk_node(w, m);
    } else {
      walk_node(w, m);
    }
  }
}

/* Operations other than DML, named by their statement node. */
static const char *other_op(const char *key, const ss__json *st) {
  static const char *const map[][2] = {
      {"CreateStmt", "CREATE TABLE"}, {"DropStmt", "DROP"}, {"TruncateStmt", "TRUNCATE"},
      {"CopyStmt", "COPY"}, {"AlterTableStmt", "ALTER TABLE"}, {"IndexStmt", "CREATE INDEX"},
      {"VariableSetStmt", "SET"}, {"VariableShowStmt", "SHOW"}, {"ExplainStmt", "EXPLAIN"},
      {"CallStmt", "CALL"}, {"LockStmt", "LOCK"}, {"VacuumStmt", "VACUUM"},
      {"PrepareStmt", "PREPARE"}, {"ExecuteStmt", "EXECUTE"}, {"DeallocateStmt", "DEALLOCATE"},
      {"ListenStmt", "LISTEN"}, {"NotifyStmt", "NOTIFY"}, {"DoStmt", "DO"}};
  if (strcmp(key, "TransactionStmt") == 0) {
    size_t n;
    const char *kind = ss__json_str(ss__json_get(st, "kind"), &n);
    if (kind && strstr(kind, "COMMIT")) return "COMMIT";
    if (kind && strstr(kind, "ROLLBACK")) return "ROLLBACK";
    if (kind && strstr(kind, "SAVEPOINT")) return "SAVEPOINT";
    return "BEGIN";
  }
  for (size_t i = 0; i < sizeof map / sizeof *map; i++)
    if (strcmp(key, map[i][0]) == 0) return map[i][1];
  return NULL;
}

/* Fills r from the parse tree JSON; 0, or -1 when it is not what we expect. */
static int summarize(result *r, const char *tree, const char *text) {
  char err[128];
  ss__json *root = ss__json_parse(tree, strlen(tree), err, sizeof err);
  const ss__json *stmts = ss__json_get(root, "stmts");
  if (root == NULL || !ss__json_is(stmts, SS_JSON_ARRAY) || ss__json_count(stmts) == 0) {
    ss__json_free(root);
    return -1;
  }
  walk w;
  memset(&w, 0, sizeof w);
  for (size_t i = 0; i < ss__json_count(stmts); i++) {
    const ss__json *node = ss__json_get(ss__json_at(stmts, i), "stmt");
    const ss__json *st = ss__json_at(node, 0);
    if (st == NULL) continue;
    w.depth = 0;
    if (dml_op(st->key)) {
      walk_node(&w, node);
    } else {
      const char *op = other_op(st->key, st);
      ss__sql_summary s;
      if (op == NULL) {  /* a statement we do not map: the shim's lexer names it */
        ss__sql_summarize(text, strlen(text), &s);
        op = s.op[0] ? s.op : NULL;
      }
      if (op) add_token(&w, op);
      if (op && !w.op[0]) snprintf(w.op, sizeof w.op, "%s", op);
      size_t rels = w.n_rels;
      w.depth = 1;
      walk_node(&w, st);
      if (!w.coll[0] && w.n_rels == rels + 1 && i == 0)
        snprintf(w.coll, sizeof w.coll, "%s", w.first_rel);
    }
  }
  if (!w.coll[0] && strcmp(w.op, "SELECT") == 0 && w.n_rels == 1)
    snprintf(w.coll, sizeof w.coll, "%s", w.first_rel);
  memcpy(r->summary, w.summary, w.len + 1);
  snprintf(r->op, sizeof r->op, "%s", w.op);
  snprintf(r->coll, sizeof r->coll, "%s", w.coll);
  r->ok = w.len > 0;
  ss__json_free(root);
  return w.literal;
}

/* The shim's `?` placeholders (outside quotes) become $1 so PostgreSQL's grammar reads
 * the statement; `?` that is part of an operator (?| ?& @?) is left alone. */
static char *params_for_parse(const char *s, size_t n) {
  char *out = malloc(2 * n + 1), *o = out;
  if (out == NULL) return NULL;
  char quote = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      *o++ = c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      *o++ = c;
    } else if (c == '?' && !(i + 1 < n && strchr("|&", s[i + 1])) && !(i && s[i - 1] == '@')) {
      *o++ = '$';
      *o++ = '1';
    } else {
      *o++ = c;
    }
  }
  *o = 0;
  return out;
}

/* The lengths of r's strings, once they are final. */
static const result *measured(result *r) {
  r->summary_len = strlen(r->summary);
  r->op_len = strlen(r->op);
  r->coll_len = strlen(r->coll);
  r->normalized_len = r->normalized ? strlen(r->normalized) : 0;
  return r;
}

static const result *lookup(const char *text, size_t n) {
  result *r = &cache[ss__hash_words(text, n) % CACHE_SLOTS];
  if (r->text && r->text_len == n && memcmp(r->text, text, n) == 0) return r;
  cache_used = 1;
  free(r->text);
  free(r->normalized);
  memset(r, 0, sizeof *r);
  if ((r->text = malloc(n + 1)) == NULL) return NULL;
  memcpy(r->text, text, n);
  r->text[n] = 0;
  r->text_len = n;
  char *p = params_for_parse(text, n);
  if (p == NULL) return measured(r);
  if (load_pgq() != 0) {
    free(p);
    return measured(r);
  }
  PgQueryParseResult pr = pg_query_parse(p);
  if (pr.error == NULL && pr.parse_tree && summarize(r, pr.parse_tree, p) == 1) {
    PgQueryNormalizeResult nr = pg_query_normalize(p);
    if (nr.error == NULL && nr.normalized_query) r->normalized = strdup(nr.normalized_query);
    pg_query_free_normalize_result(nr);
  }
  pg_query_free_parse_result(pr);
  free(p);
  return measured(r);
}

/* ---- span attributes ---- */

static pb_kv *find(const pb_span *s, const char *key) {
  for (size_t i = 0; i < s->n_attributes; i++)
    if (strcmp(s->attributes[i]->key, key) == 0) return s->attributes[i];
  return NULL;
}

static const char *str_attr(const pb_span *s, const char *key) {
  pb_kv *kv = find(s, key);
  if (kv && kv->value &&
      kv->value->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
    return kv->value->string_value;
  return NULL;
}

static char *pool_str(const char *v) { return ss__arena_strndup(&pool, v, strlen(v)); }

/* Sets a string attribute (replacing its value, or appending it); 0 or -1. */
static int set_str(pb_span *s, const char *key, const char *v) {
  pb_kv *kv = find(s, key);
  pb_any *val = pool_alloc(sizeof *val);
  char *copy = pool_str(v);
  if (val == NULL || copy == NULL) return -1;
  *val = (pb_any)OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;
  val->value_case = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE;
  val->string_value = copy;
  if (kv) {
    kv->value = val;
    return 0;
  }
  kv = pool_alloc(sizeof *kv);
  pb_kv **arr = pool_alloc((s->n_attributes + 1) * sizeof *arr);
  char *k = pool_str(key);
  if (kv == NULL || arr == NULL || k == NULL) return -1;
  *kv = (pb_kv)OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT;
  kv->key = k;
  kv->value = val;
  if (s->n_attributes) memcpy(arr, s->attributes, s->n_attributes * sizeof *arr);
  arr[s->n_attributes++] = kv;
  s->attributes = arr;
  return 0;
}

static void remove_attr(pb_span *s, const char *key) {
  for (size_t i = 0; i < s->n_attributes; i++)
    if (strcmp(s->attributes[i]->key, key) == 0) {
      memmove(&s->attributes[i], &s->attributes[i + 1],
              (s->n_attributes - i - 1) * sizeof *s->attributes);
      s->n_attributes--;
      return;
    }
}

/* ---- what to change, decided once for both paths ---- */

static int eq(ss__strv a, const char *lit) {
  return a.p && a.n == strlen(lit) && memcmp(a.p, lit, a.n) == 0;
}

static void plan_set(ss__sql_edit *e, const char *key, const char *v, size_t n) {
  e->set[e->n_set].key = key;
  e->set[e->n_set].key_len = strlen(key);
  e->set[e->n_set].val = (ss__strv){v, n};
  e->n_set++;
}

int ss__sqlsum_plan(const ss__sql_in *in, ss__sql_edit *e) {
  memset(e, 0, sizeof *e);
  ss__strv sys = in->sys_name.p ? in->sys_name : in->sys;
  if (disabled || in->text.p == NULL || !eq(sys, "postgresql")) return 0;
  size_t n = in->text.n;
  ss__stats_g.sql_spans++;
  const result *r = n <= TEXT_MAX ? lookup(in->text.p, n) : NULL;
  if (r == NULL || !r->ok) {
    ss__stats_g.sql_unparsed++;
    if (in->name.n && !eq(in->name, ss__sql_span_name)) {
      plan_set(e, "db.query.summary", in->name.p, in->name.n);
      e->changed = 1;
    }
    return e->changed;
  }
  e->changed = 1;
  /* The shim names PREPARE and DESCRIBE from the libpq call itself; the text only says
   * what is being prepared, so those keep the shim's operation and name. */
  if (eq(in->api_op, "PREPARE") || eq(in->api_op, "DESCRIBE")) {
    if (r->coll[0]) plan_set(e, "db.collection.name", r->coll, r->coll_len);
    if (in->name.n) plan_set(e, "db.query.summary", in->name.p, in->name.n);
    return 1;
  }
  plan_set(e, "db.query.summary", r->summary, r->summary_len);
  if (r->op[0]) plan_set(e, "db.operation.name", r->op, r->op_len);
  if (r->coll[0]) plan_set(e, "db.collection.name", r->coll, r->coll_len);
  else e->remove = "db.collection.name";
  if (r->normalized) {
    plan_set(e, "db.query.text", r->normalized, r->normalized_len);
    ss__stats_g.sql_rescrubbed++;
  }
  e->name = (ss__strv){r->summary, r->summary_len};
  return 1;
}

/* ---- the decoded path ---- */

static ss__strv strv(const char *s) { return (ss__strv){s, s ? strlen(s) : 0}; }

/* Enriches one span; 1 when it changed. */
static int enrich(pb_span *s) {
  const char *text = str_attr(s, "db.query.text");
  if (text == NULL) return 0;  /* most spans: one look */
  ss__sql_in in = {strv(text), strv(str_attr(s, "db.system.name")),
                   strv(str_attr(s, "db.system")), strv(str_attr(s, "db.operation.name")),
                   strv(s->name)};
  ss__sql_edit e;
  if (!ss__sqlsum_plan(&in, &e)) return 0;
  for (size_t i = 0; i < e.n_set; i++) {
    char *v = ss__arena_strndup(&pool, e.set[i].val.p, e.set[i].val.n);
    if (v == NULL || set_str(s, e.set[i].key, v) != 0) return i > 0;
  }
  if (e.remove) remove_attr(s, e.remove);
  if (e.name.p) {
    char *name = ss__arena_strndup(&pool, e.name.p, e.name.n);
    if (name) s->name = name;
  }
  return 1;
}

/* ---- the wire path: the same edits on protobuf bytes ---- */

typedef ss__wire_field wfield;

static ss__strv cut(const uint8_t *p, size_t n) {  /* as protobuf-c's C string reads */
  const uint8_t *z = memchr(p, 0, n);
  return (ss__strv){(const char *)p, z ? (size_t)(z - p) : n};
}

/* A KeyValue's key and, when its value is a string, that string (p NULL otherwise). */
static int kv_of(const wfield *kvf, ss__strv *key, ss__strv *sval) {
  const uint8_t *p = kvf->data, *q;
  size_t n = (size_t)(kvf->end - p), kl = n > 2 ? p[1] : 0;
  wfield f, g;
  int rc;
  /* the usual encoding, read without the general walk: key, then a value holding one
   * short string or something else that is not a string */
  if (n >= 4 && p[0] == 0x0a && kl < 0x80 && kl + 4 <= n && p[kl + 2] == 0x12 &&
      p[kl + 3] < 0x80 && kl + 4 + p[kl + 3] == n) {
    const uint8_t *v = p + kl + 4;
    size_t vl = p[kl + 3];
    *key = cut(p + 2, kl);
    if (vl >= 2 && v[0] == 0x0a && v[1] < 0x80 && (size_t)v[1] + 2 == vl) {
      *sval = cut(v + 2, v[1]);
      return 0;
    }
    if (vl >= 1 && v[0] != 0x0a && (v[0] & 7) != 2 && v[0] < 0x80) {
      *sval = (ss__strv){NULL, 0};  /* one scalar value: not a string */
      for (q = v; (rc = ss__wire_next(&q, v + vl, &g)) == 1;)
        if (g.wt == 2) break;
      if (rc == 0) return 0;
    }
  }
  *key = (ss__strv){"", 0};
  *sval = (ss__strv){NULL, 0};
  while ((rc = ss__wire_next(&p, kvf->end, &f)) == 1) {
    if (f.no == 1 && f.wt == 2) *key = cut(f.data, (size_t)(f.end - f.data));
    if (f.no != 2 || f.wt != 2) continue;
    *sval = (ss__strv){NULL, 0};
    for (q = f.data; (rc = ss__wire_next(&q, f.end, &g)) == 1;)
      *sval = g.no == 1 && g.wt == 2 ? cut(g.data, (size_t)(g.end - g.data)) : (ss__strv){NULL, 0};
    if (rc < 0) return -1;
  }
  return rc;
}

static int key_is(ss__strv k, const char *lit) { return eq(k, lit); }

/* What enrichment reads of the span at [p, end); 0 or -1. */
static int read_span(const uint8_t *p, const uint8_t *end, ss__sql_in *in) {
  static const char *const keys[4] = {"db.query.text", "db.system.name", "db.system",
                                      "db.operation.name"};
  ss__strv *slot[4] = {&in->text, &in->sys_name, &in->sys, &in->api_op};
  int seen[4] = {0, 0, 0, 0}, rc;
  wfield f;
  memset(in, 0, sizeof *in);
  in->name = (ss__strv){"", 0};
  while ((rc = ss__wire_next(&p, end, &f)) == 1) {
    if (f.no == 5 && f.wt == 2) in->name = cut(f.data, (size_t)(f.end - f.data));
    if (f.no != 9 || f.wt != 2) continue;
    ss__strv k, v;
    if (kv_of(&f, &k, &v) != 0) return -1;
    for (int i = 0; i < 4; i++)
      if (!seen[i] && key_is(k, keys[i])) seen[i] = 1, *slot[i] = v;
  }
  return rc;
}

static void put_str_field(ss__buf *b, unsigned no, ss__strv v) {
  ss__wire_put_head(b, no, v.n);
  ss__buf_append(b, v.p, v.n);
}

/* Bytes of a length-delimited field's tag (field number < 16) and length n. */
static size_t ld_size(size_t n) {
  size_t s = 2;
  while (n >= 0x80) n >>= 7, s++;
  return s;
}

/* KeyValue{key, AnyValue{string_value}} as attribute field 9. */
static void put_attr(ss__buf *b, const char *key, ss__strv v) {
  size_t kl = strlen(key), any = ld_size(v.n) + v.n, kv = ld_size(kl) + kl + ld_size(any) + any;
  ss__wire_put_head(b, 9, kv);
  put_str_field(b, 1, (ss__strv){key, kl});
  ss__wire_put_head(b, 2, any);
  put_str_field(b, 1, v);
}

/* Writes the span at [p, end) with edit e applied into o. 0 or -1. */
static int write_span(const uint8_t *p, const uint8_t *end, const ss__sql_edit *e, ss__buf *o) {
  int applied[4] = {0, 0, 0, 0}, removed = 0, named = 0, rc;
  wfield f;
  while ((rc = ss__wire_next(&p, end, &f)) == 1) {
    size_t n = (size_t)(f.end - f.start);
    if (f.no == 5 && f.wt == 2 && e->name.p) {
      if (!named) put_str_field(o, 5, e->name);
      named = 1;
      continue;
    }
    if (f.no == 9 && f.wt == 2) {
      ss__strv k, v;
      size_t i;
      if (kv_of(&f, &k, &v) != 0) return -1;
      for (i = 0; i < e->n_set; i++)
        if (!applied[i] && key_is(k, e->set[i].key)) break;
      if (i < e->n_set) {
        put_attr(o, e->set[i].key, e->set[i].val);
        applied[i] = 1;
        continue;
      }
      if (e->remove && !removed && key_is(k, e->remove)) {
        removed = 1;
        continue;
      }
    }
    ss__buf_append(o, f.start, n);
  }
  for (size_t i = 0; i < e->n_set; i++)
    if (!applied[i]) put_attr(o, e->set[i].key, e->set[i].val);
  if (e->name.p && !named) put_str_field(o, 5, e->name);
  return rc;
}

/* One level of the request (request → resource_spans 1 → scope_spans 2 → spans 2): its
 * fields into o, the repeated child field rewritten by `child` (level + 1) where that
 * changed it. 1 changed, 0 not, -1 malformed. */
static int rewrite(const uint8_t *p, const uint8_t *end, int level, ss__buf *o);

static ss__buf levels[4] = {SS_BUF_INIT, SS_BUF_INIT, SS_BUF_INIT, SS_BUF_INIT};

static int rewrite_child(const wfield *f, int level, ss__buf *o) {
  ss__buf *c = &levels[level];
  ss__buf_reset(c);
  int rc;
  if (level == 3) {
    ss__sql_in in;
    ss__sql_edit e;
    if (read_span(f->data, f->end, &in) != 0) return -1;
    if (!ss__sqlsum_plan(&in, &e)) return 0;
    if (write_span(f->data, f->end, &e, c) != 0) return -1;
    rc = 1;
  } else {
    rc = rewrite(f->data, f->end, level, c);
  }
  if (rc == 1) {
    ss__wire_put_head(o, f->no, c->len);
    ss__buf_append(o, c->data, c->len);
  }
  return rc;
}

static int rewrite(const uint8_t *p, const uint8_t *end, int level, ss__buf *o) {
  wfield f;
  int rc, changed = 0;
  unsigned child = level == 0 ? 1 : 2;
  while ((rc = ss__wire_next(&p, end, &f)) == 1) {
    if (f.no == child && f.wt == 2) {
      int c = rewrite_child(&f, level + 1, o);
      if (c < 0) return -1;
      if (c == 1) {
        changed = 1;
        continue;
      }
    }
    ss__buf_append(o, f.start, (size_t)(f.end - f.start));
  }
  return rc < 0 ? -1 : changed;
}

int ss__sqlsum_wire(const uint8_t *p, size_t len, ss__buf *out) {
  if (disabled) return 0;
  ss__buf_reset(out);
  int rc = rewrite(p, p + len, 0, out);
  if (rc == 1 && ss__buf_error(out) != 0) return -1;
  /* What the rewrite replaced is not in out: malformed there (an attribute of the wrong
   * wire type), the request would be taken whole when protobuf-c refuses it. The wire
   * reader accepts exactly what protobuf-c does: the original must pass it. */
  ss__wire_info info;
  if (rc == 1 && ss__wire_traces_check(p, len, &info) != 0) return -1;
  return rc;
}

int ss__sqlsum_enrich(ss__traces_req *q) {
  ss__arena_reset(&pool, 0);
  if (disabled) return 0;
  int changed = 0;
  for (size_t i = 0; i < q->n_resource_spans; i++)
    for (size_t j = 0; j < q->resource_spans[i]->n_scope_spans; j++) {
      Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = q->resource_spans[i]->scope_spans[j];
      for (size_t k = 0; k < ss->n_spans; k++) changed |= enrich(ss->spans[k]);
    }
  return changed;
}

void ss__sqlsum_disable(void) { disabled = 1; }

void ss__sqlsum_free(void) {
  ss__arena_release(&pool);
  for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) ss__buf_free(&levels[i]);
  /* The table is 1.8 MB of zero pages until a statement is cached: walking and clearing it
   * untouched cost every collector without SQL spans hundreds of page faults at exit. */
  if (!cache_used) return;
  cache_used = 0;
  for (size_t i = 0; i < CACHE_SLOTS; i++) {
    free(cache[i].text);
    free(cache[i].normalized);
  }
  memset(cache, 0, sizeof cache);
}
