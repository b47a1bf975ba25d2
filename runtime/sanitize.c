/* sanitize.c - the exporter's pass over attributes that may carry secrets; see sanitize.h.
 *
 * Database spans (named ss__sql_span_name on the app thread) get a second pass once their
 * text is scrubbed: the span name, db.operation.name and db.collection.name are derived
 * from the scrubbed text (hooks leave those two attributes empty as placeholders, or set
 * db.operation.name themselves for PREPARE/DESCRIBE), and empty placeholders are removed.
 * The scrubbed texts and summaries of the last statements are remembered (a statement run
 * again costs a hash and a compare instead of the lexer twice).
 *
 * Every span's status message (and so the exception event's and log record's
 * exception.message, which quote it) then goes through one scrubber, whatever made the span
 * (libpq's client messages that quote a conninfo URI, a server's error text, libcurl,
 * process exits): each quoted part is a value and becomes "?" unless the span already shows
 * it (an attribute's value, e.g. server.address, or an identifier of its scrubbed SQL),
 * then credentials left in the open text are redacted (ss__text_redact). With
 * SPANSHIM_DB_ERROR_MESSAGES=full, a database span's message keeps its quoted parts. */
#include "runtime/sanitize.h"

#include <string.h>

#include "runtime/hash.h"
#include "runtime/sql.h"

static const char redacted[] = "REDACTED";

typedef size_t (*rewrite_fn)(const char *in, size_t n, char *out, size_t cap);

static size_t sql_scrub_kept(const char *in, size_t n, char *out, size_t cap);

/* Their keys start with 'd' or 'u' (ss__sanitize_span looks at no other key). */
static const struct {
  const char *key;
  rewrite_fn fn;
} rules[] = {
    {"db.query.text", sql_scrub_kept},
    {"url.full", ss__url_redact},
    {"url.query", ss__url_query_redact},
};

/* Copies n bytes into scratch; NULL when it is full. */
static char *take(char **scratch, size_t *left, const char *src, size_t n) {
  if (n > *left) return NULL;
  char *p = *scratch;
  memcpy(p, src, n);
  *scratch += n;
  *left -= n;
  return p;
}

/* key is want: the same literal (the linker merges equal ones), else the same text. The
 * keys of one span mostly share "db." or "url.": their fourth byte tells them apart. */
static inline int key_is(const char *key, const char *want) {
  if (key == want) return 1;
  if (key[0] != want[0] || key[0] == '\0') return key[0] == want[0];
  if (key[1] != want[1] || key[1] == '\0') return key[1] == want[1];
  if (key[2] != want[2] || key[2] == '\0') return key[2] == want[2];
  return key[3] == want[3] && strcmp(key, want) == 0;
}

/* ---- statements seen before ----
 * Apps run the same statements over and over (every execution of a prepared statement has
 * the same text; pgbench -S runs tens of thousands a second), and scrubbing and
 * summarizing a statement cost the exporter more than encoding its whole span. Two
 * direct-mapped tables keep the last ones:
 *   texts  raw db.query.text -> its scrubbed text and that text's summary
 *   sums   scrubbed text -> its summary (statements whose literals differ each time)
 * A hit gives what ss__sql_scrub and ss__sql_summarize give for the same bytes: only the
 * cost changes. Texts longer than SQL_KEEP bytes are not kept. Written and read only inside
 * ss__sanitize_span, whose callers take turns (sanitize.h). */
#define SQL_SLOTS 64 /* each table; a power of two */
#define SQL_KEEP 480

typedef struct sql_sum {
  char op[sizeof(((ss__sql_summary *)0)->op)];
  uint16_t coll_off, coll_len; /* coll_len 0: no collection */
} sql_sum;

static struct sql_text {
  uint64_t hash;               /* of raw[0..raw_len); 0: empty */
  uint16_t raw_len, out_len;
  uint8_t has_sum;             /* sum is out's summary */
  sql_sum sum;
  char raw[SQL_KEEP], out[SQL_KEEP];
} texts[SQL_SLOTS];

static struct sql_sum_slot {
  uint64_t hash;               /* of text[0..len); 0: empty */
  uint16_t len;
  sql_sum sum;
  char text[SQL_KEEP];
} sums[SQL_SLOTS];

/* The texts[] entry whose scrubbed text the span being sanitized carries, at `text_at`
 * in scratch (set by sql_scrub_kept, read by db_span for the same span). */
static struct sql_text *text_of_span;
static const char *text_at;

static uint64_t key_hash(const char *p, size_t n) {
  uint64_t h = ss__hash_words(p, n);
  return h ? h : 1;
}

static size_t slot_of(uint64_t h) {
  return (size_t)(h >> 58) & (SQL_SLOTS - 1);
}

/* The rule for db.query.text: ss__sql_scrub, remembered by raw text. */
static size_t sql_scrub_kept(const char *in, size_t n, char *out, size_t cap) {
  text_of_span = NULL;
  if (n > SQL_KEEP) return ss__sql_scrub(in, n, out, cap);
  uint64_t h = key_hash(in, n);
  struct sql_text *t = &texts[slot_of(h)];
  if (t->hash == h && t->raw_len == n && t->out_len <= cap && memcmp(t->raw, in, n) == 0) {
    memcpy(out, t->out, t->out_len);
  } else {
    size_t k = ss__sql_scrub(in, n, out, cap);
    if (k > SQL_KEEP) return k;
    t->hash = h;
    t->raw_len = (uint16_t)n;
    t->out_len = (uint16_t)k;
    t->has_sum = 0;
    memcpy(t->raw, in, n);
    memcpy(t->out, out, k);
  }
  text_of_span = t;
  text_at = out;
  return t->out_len;
}

static void sum_put(sql_sum *d, const ss__sql_summary *s, const char *sql) {
  memcpy(d->op, s->op, sizeof d->op);
  d->coll_off = (uint16_t)(s->coll ? s->coll - sql : 0);
  d->coll_len = (uint16_t)(s->coll ? s->coll_len : 0);
}

static void sum_get(ss__sql_summary *s, const sql_sum *d, const char *sql) {
  memcpy(s->op, d->op, sizeof s->op);
  s->coll = d->coll_len ? sql + d->coll_off : NULL;
  s->coll_len = d->coll_len;
}

/* ss__sql_summarize(sql, n), remembered by text. */
static void summarize_kept(const char *sql, size_t n, ss__sql_summary *out) {
  struct sql_text *t = text_of_span;
  int ours = t && sql == text_at && n == t->out_len; /* this span's scrubbed text */
  if (ours && t->has_sum) {
    sum_get(out, &t->sum, sql);
    return;
  }
  if (n == 0 || n > SQL_KEEP) {
    ss__sql_summarize(sql, n, out);
  } else {
    uint64_t h = key_hash(sql, n);
    struct sql_sum_slot *e = &sums[slot_of(h)];
    if (!(e->hash == h && e->len == n && memcmp(e->text, sql, n) == 0)) {
      ss__sql_summary s;
      ss__sql_summarize(sql, n, &s);
      e->hash = h;
      e->len = (uint16_t)n;
      memcpy(e->text, sql, n);
      sum_put(&e->sum, &s, sql);
    }
    sum_get(out, &e->sum, sql);
  }
  if (ours) {
    sum_put(&t->sum, out, sql);
    t->has_sum = 1;
  }
}

/* Database spans: name and operation/collection from the scrubbed text; then the
 * placeholders still empty are removed. */
static int db_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left) {
  int rc = 0;
  ss__attr *text = NULL, *op = NULL, *coll = NULL;
  /* Literals, not arrays: the hooks' keys are the same merged literals. */
  const char *const k_text = "db.query.text", *const k_op = "db.operation.name",
                    *const k_coll = "db.collection.name";
  for (size_t i = 0; i < s->n_attrs; i++) { /* the first of each key */
    const char *k = attrs[i].key;
    if (k == NULL || k[0] != 'd') continue;
    if (!text && key_is(k, k_text)) text = &attrs[i];
    else if (!op && key_is(k, k_op)) op = &attrs[i];
    else if (!coll && key_is(k, k_coll)) coll = &attrs[i];
  }
  if (text && text->v.s == redacted) text = NULL; /* scratch ran out: summarize nothing */
  const char *sql = text ? text->v.s : "";
  size_t sqln = text ? text->len : 0;
  ss__sql_summary sum;
  summarize_kept(sql, sqln, &sum);
  if (op && op->type == SS_ATTR_STR && op->len == 0 && sum.op[0]) {
    size_t opn = strlen(sum.op);
    char *p = take(scratch, left, sum.op, opn);
    if (p) {
      op->v.s = p;
      op->len = (uint32_t)opn;
    }
  }
  if (coll && coll->type == SS_ATTR_STR && coll->len == 0 && sum.coll) {
    coll->v.s = sum.coll; /* points into the scrubbed text, which outlives the span */
    coll->len = (uint32_t)sum.coll_len;
  }
  /* Name: "{operation} {collection}", "{operation}", else ss__sql_span_name. */
  if (op && op->type == SS_ATTR_STR && op->len > 0) {
    size_t need = op->len + (coll && coll->len ? 1 + coll->len : 0) + 1;
    if (need <= *left) {
      char *p = *scratch;
      memcpy(p, op->v.s, op->len);
      size_t k = op->len;
      if (coll && coll->len) {
        p[k++] = ' ';
        memcpy(p + k, coll->v.s, coll->len);
        k += coll->len;
      }
      p[k++] = '\0'; /* names are NUL-terminated */
      s->name = p;
      *scratch += k;
      *left -= k;
    } else {
      rc = -1;
    }
  }
  /* The first empty db.operation.name and db.collection.name go. */
  int op_gone = 0, coll_gone = 0;
  size_t n = 0;
  for (size_t i = 0; i < s->n_attrs; i++) {
    const ss__attr *a = &attrs[i];
    if (a->type == SS_ATTR_STR && a->len == 0 && a->key) {
      if (!op_gone && key_is(a->key, k_op)) {
        op_gone = 1;
        continue;
      }
      if (!coll_gone && key_is(a->key, k_coll)) {
        coll_gone = 1;
        continue;
      }
    }
    if (n != i) attrs[n] = *a;
    n++;
  }
  s->n_attrs = n;
  return rc;
}

static int db_full; /* SPANSHIM_DB_ERROR_MESSAGES=full */

void ss__message_scrub_mode(int full) {
  db_full = full;
}

typedef struct keep_ctx {
  const ss__span *s;
  const ss__attr *attrs;
  const char *sql;
  size_t sqln;
} keep_ctx;

/* A quoted part of a message may stay when the span shows it already: an identifier of
 * the scrubbed SQL, a string attribute's value, or a path under one (libpq's socket
 * "/run/postgresql/.s.PGSQL.5432" under server.address "/run/postgresql"). */
static int keep_shown(void *ctx, const char *w, size_t n) {
  const keep_ctx *k = ctx;
  if (n == 0) return 1;
  if (k->sql && ss__sql_has_ident(k->sql, k->sqln, w, n)) return 1;
  for (size_t i = 0; i < k->s->n_attrs; i++) {
    const ss__attr *a = &k->attrs[i];
    if (a->type != SS_ATTR_STR || a->len == 0 || a->len > n || a->v.s == redacted) continue;
    if (memcmp(a->v.s, w, a->len) != 0) continue;
    if (a->len == n || (a->v.s[0] == '/' && w[a->len] == '/')) return 1;
  }
  return 0;
}

size_t ss__message_scrub(const char *msg, size_t n, const ss__span *s, const ss__attr *attrs,
                         int keep_quoted, char *out, size_t cap) {
  /* Pass 1 (quotes) into the back half of out, pass 2 (credentials) to the front. */
  size_t half = cap / 2;
  if (half == 0) return 0;
  const ss__attr *text = NULL; /* a database span's statement (whatever it is named now) */
  for (size_t i = 0; i < s->n_attrs; i++)
    if (attrs[i].key && strcmp(attrs[i].key, "db.query.text") == 0) text = &attrs[i];
  keep_ctx k = {s, attrs, text ? text->v.s : NULL, text ? text->len : 0};
  size_t m;
  if (keep_quoted) {
    m = n < cap - half ? n : cap - half;
    memcpy(out + half, msg, m);
  } else {
    m = ss__message_mask(msg, n, keep_shown, &k, out + half, cap - half);
  }
  return ss__text_redact(out + half, m, out, half);
}

/* Status message, after the attributes it may refer to were rewritten. db: the span is
 * a database span (named ss__sql_span_name by its hook, before db_span renamed it). */
static int message(ss__span *s, ss__attr *attrs, int db, char **scratch, size_t *left) {
  if (s->status_message == NULL || s->status_message_len == 0) return 0;
  /* Masking adds at most one byte per quote pair, redaction at most "REDACTED" per byte
   * pair ("a=b" -> "a=REDACTED"): 4n + 64 for the two halves is enough, and the result
   * is cut (never left unscrubbed) if not. */
  size_t cap = (size_t)s->status_message_len * 8 + 128;
  if (cap > *left) {
    s->status_message = redacted;
    s->status_message_len = 8;
    return -1;
  }
  int keep = db_full && db;
  size_t k = ss__message_scrub(s->status_message, s->status_message_len, s, attrs, keep,
                               *scratch, cap);
  s->status_message = *scratch;
  s->status_message_len = (uint32_t)k;
  *scratch += k;
  *left -= k;
  return 0;
}

int ss__sanitize_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left) {
  int rc = 0;
  text_of_span = NULL;
  for (size_t i = 0; i < s->n_attrs; i++) {
    ss__attr *a = &attrs[i];
    /* The first byte first: most keys are no rule's (the shim's own constants). */
    if (a->type != SS_ATTR_STR || (a->key[0] != 'd' && a->key[0] != 'u')) continue;
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
      if (!key_is(a->key, rules[r].key)) continue;
      /* Sanitized text is never longer than twice the input plus a little. */
      size_t need = (size_t)a->len * 2 + 16;
      if (need > *left) {
        a->v.s = redacted;
        a->len = 8;
        rc = -1;
        break;
      }
      size_t n = rules[r].fn(a->v.s, a->len, *scratch, need);
      a->v.s = *scratch;
      a->len = (uint32_t)n;
      *scratch += n;
      *left -= n;
      break;
    }
  }
  int db = s->name == ss__sql_span_name;
  if (db && db_span(s, attrs, scratch, left) != 0) rc = -1;
  if (message(s, attrs, db, scratch, left) != 0) rc = -1;
  return rc;
}
