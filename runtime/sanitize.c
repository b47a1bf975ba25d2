/* sanitize.c - the exporter's pass over attributes that may carry secrets; see sanitize.h.
 *
 * Database spans (named ss__sql_span_name on the app thread) get a second pass once their
 * text is scrubbed: the span name, db.operation.name and db.collection.name are derived
 * from the scrubbed text (hooks leave those two attributes empty as placeholders, or set
 * db.operation.name themselves for PREPARE/DESCRIBE), and empty placeholders are removed.
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

#include "runtime/sql.h"

static const char redacted[] = "REDACTED";

typedef size_t (*rewrite_fn)(const char *in, size_t n, char *out, size_t cap);

static const struct {
  const char *key;
  rewrite_fn fn;
} rules[] = {
    {"db.query.text", ss__sql_scrub},
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

static ss__attr *find_attr(ss__span *s, ss__attr *attrs, const char *key) {
  for (size_t i = 0; i < s->n_attrs; i++)
    if (attrs[i].key && strcmp(attrs[i].key, key) == 0) return &attrs[i];
  return NULL;
}

static void drop_empty(ss__span *s, ss__attr *attrs, const char *key) {
  for (size_t i = 0; i < s->n_attrs; i++) {
    if (strcmp(attrs[i].key, key) != 0 || attrs[i].type != SS_ATTR_STR || attrs[i].len) continue;
    memmove(&attrs[i], &attrs[i + 1], (s->n_attrs - i - 1) * sizeof attrs[0]);
    s->n_attrs--;
    return;
  }
}

/* Database spans: name and operation/collection from the scrubbed text. */
static int db_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left) {
  int rc = 0;
  ss__attr *text = find_attr(s, attrs, "db.query.text");
  ss__attr *op = find_attr(s, attrs, "db.operation.name");
  ss__attr *coll = find_attr(s, attrs, "db.collection.name");
  if (text && text->v.s == redacted) text = NULL; /* scratch ran out: summarize nothing */
  const char *sql = text ? text->v.s : "";
  size_t sqln = text ? text->len : 0;
  ss__sql_summary sum;
  ss__sql_summarize(sql, sqln, &sum);
  if (op && op->type == SS_ATTR_STR && op->len == 0 && sum.op[0]) {
    char *p = take(scratch, left, sum.op, strlen(sum.op));
    if (p) {
      op->v.s = p;
      op->len = (uint32_t)strlen(sum.op);
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
  drop_empty(s, attrs, "db.operation.name");
  drop_empty(s, attrs, "db.collection.name");
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
  const ss__attr *text = NULL;
  for (size_t i = 0; s->name == ss__sql_span_name && i < s->n_attrs; i++)
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

/* Status message, after the attributes it may refer to were rewritten. */
static int message(ss__span *s, ss__attr *attrs, char **scratch, size_t *left) {
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
  int keep = db_full && s->name == ss__sql_span_name;
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
  for (size_t i = 0; i < s->n_attrs; i++) {
    ss__attr *a = &attrs[i];
    if (a->type != SS_ATTR_STR) continue;
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
      /* The first byte first: most keys are no rule's (the shim's own constants). */
      if (a->key[0] != rules[r].key[0] || strcmp(a->key, rules[r].key) != 0) continue;
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
  if (s->name == ss__sql_span_name && db_span(s, attrs, scratch, left) != 0) rc = -1;
  if (message(s, attrs, scratch, left) != 0) rc = -1;
  return rc;
}
