/* sanitize.c - the exporter's pass over attributes that may carry secrets; see sanitize.h.
 *
 * Database spans (named ss__sql_span_name on the app thread) get a second pass once their
 * text is scrubbed: the span name, db.operation.name and db.collection.name are derived
 * from the scrubbed text (hooks leave those two attributes empty as placeholders, or set
 * db.operation.name themselves for PREPARE/DESCRIBE), empty placeholders are removed, and
 * the status message (the server's error text, which may quote values) is scrubbed. */
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
  if (s->status_message && s->status_message_len) {
    size_t cap = s->status_message_len + 8;
    if (cap <= *left) {
      size_t k = ss__sql_message_scrub(s->status_message, s->status_message_len, sql, sqln,
                                       *scratch, cap);
      s->status_message = *scratch;
      s->status_message_len = (uint32_t)k;
      *scratch += k;
      *left -= k;
    } else {
      s->status_message = "REDACTED";
      s->status_message_len = 8;
      rc = -1;
    }
  }
  drop_empty(s, attrs, "db.operation.name");
  drop_empty(s, attrs, "db.collection.name");
  return rc;
}

int ss__sanitize_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left) {
  int rc = 0;
  for (size_t i = 0; i < s->n_attrs; i++) {
    ss__attr *a = &attrs[i];
    if (a->type != SS_ATTR_STR) continue;
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
      if (strcmp(a->key, rules[r].key) != 0) continue;
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
  return rc;
}
