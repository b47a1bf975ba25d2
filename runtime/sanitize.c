/* sanitize.c - the exporter's pass over attributes that may carry secrets; see sanitize.h. */
#include "runtime/sanitize.h"

#include <string.h>

typedef size_t (*rewrite_fn)(const char *in, size_t n, char *out, size_t cap);

static const struct {
  const char *key;
  rewrite_fn fn;
} rules[] = {
    {"db.query.text", ss__sql_scrub},
    {"url.full", ss__url_redact},
};

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
        a->v.s = "REDACTED";
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
  return rc;
}
