/* sql.c - SQL literal scrubbing, statement summaries and safe error messages; see sql.h and
 * sanitize.h.
 *
 * The scrubber is a PostgreSQL lexer reduced to what matters for secrets: every literal
 * becomes `?` (single-quoted, E'', U&'', B'', X'', N'' and dollar-quoted strings, numbers
 * in every notation, TRUE/FALSE), comments are dropped, and everything else (keywords,
 * identifiers, "quoted identifiers", $1 parameters, ::casts, operators) is kept. When the
 * text cannot be read with certainty — an unterminated literal, comment or quoted
 * identifier, or a backslash inside a plain '' string (whose meaning depends on the
 * server's standard_conforming_strings) — everything from there on becomes one `?`: the
 * scrubber may hide too much, never too little. */
#include "runtime/sql.h"

#include <string.h>

#include "runtime/outbuf.h"
#include "runtime/sanitize.h"

const char ss__sql_span_name[] = "postgresql";

static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
static int is_alpha(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_xdigit(unsigned char c) {
  return is_digit(c) || ((c | 32) >= 'a' && (c | 32) <= 'f');
}
/* Identifier bytes by table (the scrubber asks for every byte of the text): a letter,
 * '_' or any byte >= 0x80 starts one; digits and '$' continue it. */
enum { C_START = 1, C_IDENT = 2 };
static const unsigned char ident_class[256] = {
    ['a' ... 'z'] = C_START | C_IDENT, ['A' ... 'Z'] = C_START | C_IDENT,
    ['_'] = C_START | C_IDENT,         [0x80 ... 0xff] = C_START | C_IDENT,
    ['0' ... '9'] = C_IDENT,           ['$'] = C_IDENT};
static int ident_start(unsigned char c) {
  return ident_class[c] & C_START;
}
static int ident_char(unsigned char c) {
  return ident_class[c] & C_IDENT;
}
static unsigned char lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 32) : c;
}

/* ---- scrubbing ---- */

typedef ss__out out;
#define put ss__out_putc
#define put_n ss__out_put

enum { STR_STD, STR_ESC, STR_PLAIN };

/* in[i] is the opening quote. Returns the index after the closing quote, or (size_t)-1
 * when the string is unterminated or ambiguous (STR_STD with a backslash). STR_ESC: the
 * backslash escapes the next byte; STR_PLAIN: backslashes are ordinary (U&'', B'', X''). */
static size_t skip_string(const char *in, size_t n, size_t i, int mode) {
  for (i++; i < n; i++) {
    char c = in[i];
    if (c == '\\') {
      if (mode == STR_STD) return (size_t)-1;
      if (mode == STR_ESC) i++;
    } else if (c == '\'') {
      if (i + 1 < n && in[i + 1] == '\'') {
        i++;
        continue;
      }
      return i + 1;
    }
  }
  return (size_t)-1;
}

/* in[i] == '$' starting a dollar quote $tag$ ...$tag$. Returns the index after it, 0 when
 * in[i] does not start a dollar quote, (size_t)-1 when it is unterminated. */
static size_t skip_dollar(const char *in, size_t n, size_t i) {
  size_t t = i + 1;
  if (t < n && ident_start((unsigned char)in[t]))
    while (t < n && ident_char((unsigned char)in[t]) && in[t] != '$') t++;
  if (t >= n || in[t] != '$') return 0;
  size_t taglen = t + 1 - i;
  for (size_t j = t + 1; j + taglen <= n; j++)
    if (in[j] == '$' && memcmp(in + j, in + i, taglen) == 0) return j + taglen;
  return (size_t)-1;
}

/* in[i] starts a number (digit, or '.' then digit). Returns the index after it, with any
 * identifier characters glued to it (`1e5x`, `0x1F`, `1_000`). */
static size_t skip_number(const char *in, size_t n, size_t i) {
  while (i < n && (is_digit((unsigned char)in[i]) || in[i] == '_')) i++;
  if (i < n && in[i] == '.') {
    i++;
    while (i < n && (is_digit((unsigned char)in[i]) || in[i] == '_')) i++;
  }
  if (i < n && (in[i] | 32) == 'e') {
    size_t j = i + 1;
    if (j < n && (in[j] == '+' || in[j] == '-')) j++;
    if (j < n && is_digit((unsigned char)in[j])) i = j;
  }
  while (i < n && (ident_char((unsigned char)in[i]) || is_xdigit((unsigned char)in[i]))) i++;
  return i;
}

/* After a comment: keep words apart without doubling spaces. */
static size_t after_comment(const char *in, size_t n, size_t i, out *o) {
  if (o->n > 0 && is_space((unsigned char)o->p[o->n - 1])) {
    while (i < n && is_space((unsigned char)in[i])) i++;
  } else if (o->n > 0 && i < n && !is_space((unsigned char)in[i])) {
    put(o, ' ');
  }
  return i;
}

static int word_is(const char *w, size_t n, const char *kw) {
  size_t k = strlen(kw);
  if (n != k) return 0;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)w[i]) != (unsigned char)kw[i]) return 0;
  return 1;
}

/* A string-literal prefix at in[i] (E' B' X' N' U&'): returns the prefix length and the
 * string mode, or 0. */
static size_t literal_prefix(const char *in, size_t n, size_t i, int *mode) {
  /* Asked at every byte: what is rare (a quote or "&'" next) first. */
  if (!(i + 1 < n && (in[i + 1] == '\'' || (in[i + 1] == '&' && i + 2 < n)))) return 0;
  unsigned char c = lower((unsigned char)in[i]);
  if (i > 0 && ident_char((unsigned char)in[i - 1])) return 0;
  if (i + 1 < n && in[i + 1] == '\'') {
    if (c == 'e') { *mode = STR_ESC; return 1; }
    if (c == 'b' || c == 'x') { *mode = STR_PLAIN; return 1; }
    if (c == 'n') { *mode = STR_STD; return 1; }
  }
  if (c == 'u' && i + 2 < n && in[i + 1] == '&' && in[i + 2] == '\'') {
    *mode = STR_PLAIN;
    return 2;
  }
  return 0;
}

size_t ss__sql_scrub(const char *in, size_t n, char *outp, size_t cap) {
  out o = {outp, 0, cap};
  size_t i = 0, j;
  int mode;
  while (i < n) {
    unsigned char c = (unsigned char)in[i];
    if (c == '-' && i + 1 < n && in[i + 1] == '-') {
      while (i < n && in[i] != '\n') i++;
      i = after_comment(in, n, i, &o);
    } else if (c == '/' && i + 1 < n && in[i + 1] == '*') {
      int depth = 0;
      for (; i < n; i++) {
        if (in[i] == '/' && i + 1 < n && in[i + 1] == '*') {
          depth++;
          i++;
        } else if (in[i] == '*' && i + 1 < n && in[i + 1] == '/') {
          i++;
          if (--depth == 0) {
            i++;
            break;
          }
        }
      }
      if (depth > 0) break; /* unterminated: the rest is comment */
      i = after_comment(in, n, i, &o);
    } else if (c == '\'' || ((j = literal_prefix(in, n, i, &mode)) > 0)) {
      if (c == '\'') {
        mode = STR_STD;
        j = 0;
      }
      size_t end = skip_string(in, n, i + j, mode);
      put(&o, '?');
      if (end == (size_t)-1) break;
      i = end;
    } else if (ident_start(c)) {
      for (j = i; j < n && ident_char((unsigned char)in[j]); j++) {}
      if (word_is(in + i, j - i, "true") || word_is(in + i, j - i, "false"))
        put(&o, '?');
      else
        put_n(&o, in + i, j - i);
      i = j;
    } else if (c == '"') {
      for (j = i + 1; j < n; j++) {
        if (in[j] != '"') continue;
        if (j + 1 < n && in[j + 1] == '"') {
          j++;
          continue;
        }
        break;
      }
      if (j >= n) {
        put(&o, '?');
        break;
      }
      put_n(&o, in + i, j + 1 - i);
      i = j + 1;
    } else if (c == '$') {
      if (i + 1 < n && is_digit((unsigned char)in[i + 1])) {
        for (j = i + 1; j < n && is_digit((unsigned char)in[j]); j++) {}
        put_n(&o, in + i, j - i);
        i = j;
        continue;
      }
      size_t end = skip_dollar(in, n, i);
      if (end == 0) {
        put(&o, '$');
        i++;
        continue;
      }
      put(&o, '?');
      if (end == (size_t)-1) break;
      i = end;
    } else if (is_digit(c) || (c == '.' && i + 1 < n && is_digit((unsigned char)in[i + 1]))) {
      put(&o, '?');
      i = skip_number(in, n, i);
    } else {
      put(&o, (char)c);
      i++;
    }
  }
  while (o.n > 0 && is_space((unsigned char)o.p[o.n - 1])) o.n--;
  return o.n;
}

/* ---- summaries ---- */

typedef struct lex {
  const char *s;
  size_t n, i;
  int depth;
} lex;

/* The next token at any depth: a word, a "quoted identifier", or one other byte. Returns
 * its length (0 at the end) and its start in *tok. Parentheses update depth. */
static size_t next_tok(lex *l, const char **tok) {
  while (l->i < l->n && is_space((unsigned char)l->s[l->i])) l->i++;
  if (l->i >= l->n) return 0;
  size_t st = l->i;
  unsigned char c = (unsigned char)l->s[st];
  *tok = l->s + st;
  if (ident_start(c)) {
    while (l->i < l->n && ident_char((unsigned char)l->s[l->i])) l->i++;
  } else if (c == '"') {
    l->i++;
    while (l->i < l->n && l->s[l->i] != '"') l->i++;
    if (l->i < l->n) l->i++;
  } else {
    if (c == '(') l->depth++;
    if (c == ')') l->depth--;
    l->i++;
  }
  return l->i - st;
}

static int tok_is(const char *t, size_t n, const char *kw) {
  return n > 0 && word_is(t, n, kw);
}

/* Reads a possibly qualified name (a.b."C") at the lexer's position into out->coll. */
static int read_name(lex *l, ss__sql_summary *out) {
  const char *t;
  size_t n = next_tok(l, &t);
  if (n == 0 || !(ident_start((unsigned char)t[0]) || t[0] == '"')) return 0;
  const char *start = t, *end = t + n;
  while (l->i < l->n && l->s[l->i] == '.') {
    lex save = *l;
    l->i++;
    size_t m = next_tok(l, &t);
    if (m == 0 || !(ident_start((unsigned char)t[0]) || t[0] == '"' || t[0] == '*')) {
      *l = save;
      break;
    }
    end = t + m;
  }
  out->coll = start;
  out->coll_len = (size_t)(end - start);
  return 1;
}

static void skip_words(lex *l, const char *const *words) {
  for (;;) {
    lex save = *l;
    const char *t;
    size_t n = next_tok(l, &t);
    int hit = 0;
    for (const char *const *w = words; *w && !hit; w++) hit = tok_is(t, n, *w);
    if (!hit) {
      *l = save;
      return;
    }
  }
}

/* After a FROM/JOIN target: is there a second table at this depth (a join or a comma)? */
static int more_tables(lex *l) {
  static const char *const joins[] = {"join", "inner", "left", "right", "full", "cross",
                                      "natural", NULL};
  int depth = l->depth;
  const char *t;
  size_t n;
  while ((n = next_tok(l, &t)) > 0) {
    if (l->depth < depth) return 0;
    if (l->depth > depth || (l->depth == depth && t[0] == ')')) continue;
    if (t[0] == ',') return 1;
    for (const char *const *w = joins; *w; w++)
      if (tok_is(t, n, *w)) return 1;
    if (tok_is(t, n, "where") || tok_is(t, n, "group") || tok_is(t, n, "order") ||
        tok_is(t, n, "limit") || tok_is(t, n, "union") || t[0] == ';')
      return 0;
  }
  return 0;
}

/* Finds `kw` at the statement's top level (depth 0). */
static int find_top(lex *l, const char *kw) {
  const char *t;
  size_t n;
  while ((n = next_tok(l, &t)) > 0) {
    if (t[0] == ';' && l->depth == 0) return 0;
    if (l->depth == 0 && tok_is(t, n, kw)) return 1;
  }
  return 0;
}

static void set_op(ss__sql_summary *out, const char *w, size_t n, const char *second,
                   size_t n2) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < sizeof out->op; i++)
    out->op[o++] = (char)(w[i] >= 'a' && w[i] <= 'z' ? w[i] - 32 : w[i]);
  if (n2 && o + 1 + n2 < sizeof out->op) {
    out->op[o++] = ' ';
    for (size_t i = 0; i < n2; i++)
      out->op[o++] = (char)(second[i] >= 'a' && second[i] <= 'z' ? second[i] - 32 : second[i]);
  }
  out->op[o] = '\0';
}

/* Statement keywords: a text starting with anything else (a typo, garbage) names no
 * operation, and its span keeps the generic name. */
static int command_word(const char *w, size_t n) {
  /* Inline, not pointers (see runtime/sqlstate.c's codes). */
  static const char words[][12] = {
      "abort", "alter", "analyze", "begin", "call", "checkpoint", "close", "cluster",
      "comment", "commit", "copy", "create", "deallocate", "declare", "delete", "discard",
      "do", "drop", "end", "execute", "explain", "fetch", "grant", "import", "insert",
      "listen", "load", "lock", "merge", "move", "notify", "prepare", "reassign", "refresh",
      "reindex", "release", "reset", "revoke", "rollback", "savepoint", "security", "select",
      "set", "show", "start", "table", "truncate", "unlisten", "update", "vacuum", "values",
      "with"};
  for (size_t k = 0; k < sizeof words / sizeof words[0]; k++)
    if (word_is(w, n, words[k])) return 1;
  return 0;
}

void ss__sql_summarize(const char *sql, size_t n, ss__sql_summary *out) {
  static const char *const only[] = {"only", NULL};
  static const char *const ifx[] = {"if", "not", "exists", NULL};
  memset(out, 0, sizeof *out);
  lex l = {sql, n, 0, 0};
  const char *t;
  size_t m;
  while ((m = next_tok(&l, &t)) == 1 && t[0] == '(') {}
  l.depth = 0; /* a parenthesized statement: its inside is the top level */
  if (m == 0 || !ident_start((unsigned char)t[0]) || m >= sizeof out->op ||
      !command_word(t, m))
    return;
  if (tok_is(t, m, "with")) { /* the statement after the CTEs */
    static const char *const main_ops[] = {"select", "insert", "update", "delete", "merge",
                                           NULL};
    const char *w;
    size_t k;
    while ((k = next_tok(&l, &w)) > 0) {
      if (l.depth != 0 || (w[0] == ';')) {
        if (w[0] == ';') break;
        continue;
      }
      for (const char *const *op = main_ops; *op; op++)
        if (tok_is(w, k, *op)) {
          t = w;
          m = k;
          goto found;
        }
    }
    set_op(out, t, m, NULL, 0);
    return;
  }
found:
  if (tok_is(t, m, "select")) {
    set_op(out, t, m, NULL, 0);
    if (find_top(&l, "from")) {
      if (read_name(&l, out) && !more_tables(&l)) return;
      /* A subquery or several tables: no single collection. */
      out->coll = NULL;
      out->coll_len = 0;
    }
    return;
  }
  const char *t2 = NULL;
  size_t m2 = 0;
  if (tok_is(t, m, "insert") || tok_is(t, m, "merge")) {
    set_op(out, t, m, NULL, 0);
    m2 = next_tok(&l, &t2);
    if (tok_is(t2, m2, "into")) read_name(&l, out);
  } else if (tok_is(t, m, "update") || tok_is(t, m, "copy")) {
    set_op(out, t, m, NULL, 0);
    skip_words(&l, only);
    read_name(&l, out);
  } else if (tok_is(t, m, "delete")) {
    set_op(out, t, m, NULL, 0);
    m2 = next_tok(&l, &t2);
    if (tok_is(t2, m2, "from")) {
      skip_words(&l, only);
      read_name(&l, out);
    }
  } else if (tok_is(t, m, "truncate")) {
    static const char *const tbl[] = {"table", "only", NULL};
    set_op(out, t, m, NULL, 0);
    skip_words(&l, tbl);
    if (read_name(&l, out)) {
      lex after = l;
      if (next_tok(&after, &t2) == 1 && t2[0] == ',') out->coll = NULL, out->coll_len = 0;
    }
  } else if (tok_is(t, m, "create") || tok_is(t, m, "drop") || tok_is(t, m, "alter")) {
    static const char *const temp[] = {"temp", "temporary", "unlogged", "or", "replace",
                                       NULL};
    skip_words(&l, temp);
    m2 = next_tok(&l, &t2);
    if (tok_is(t2, m2, "table")) {
      set_op(out, t, m, t2, m2);
      skip_words(&l, ifx);
      skip_words(&l, only);
      read_name(&l, out);
    } else {
      set_op(out, t, m, NULL, 0);
    }
  } else {
    set_op(out, t, m, NULL, 0);
  }
  if (out->coll_len == 0) out->coll = NULL;
}

/* ---- error messages ---- */

/* Is w (n bytes) a whole identifier-like token of sql? */
static int in_sql(const char *sql, size_t sqln, const char *w, size_t n) {
  if (n == 0 || n > sqln) return 0;
  for (size_t i = 0; i + n <= sqln; i++) {
    if (memcmp(sql + i, w, n) != 0) continue;
    int left_ok = i == 0 || !ident_char((unsigned char)sql[i - 1]);
    int right_ok = i + n == sqln || !ident_char((unsigned char)sql[i + n]);
    if (left_ok && right_ok) return 1;
  }
  return 0;
}

size_t ss__message_mask(const char *msg, size_t n, int (*keep)(void *ctx, const char *w, size_t n),
                        void *ctx, char *outp, size_t cap) {
  out o = {outp, 0, cap};
  size_t i = 0;
  while (i < n) {
    char q = msg[i];
    if (q != '"' && q != '\'') {
      put(&o, q);
      i++;
      continue;
    }
    /* An apostrophe inside a word (e.g. "can't") is not a quote. */
    if (q == '\'' && i > 0 && is_alpha((unsigned char)msg[i - 1])) {
      put(&o, q);
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < n && msg[j] != q) j++;
    const char *w = msg + i + 1;
    size_t wl = j - i - 1;
    put(&o, q);
    if (j < n && keep && keep(ctx, w, wl))
      put_n(&o, w, wl);
    else
      put(&o, '?');
    if (j >= n) break;
    put(&o, q);
    i = j + 1;
  }
  return o.n;
}

typedef struct sql_text {
  const char *p;
  size_t n;
} sql_text;

static int keep_in_sql(void *ctx, const char *w, size_t n) {
  const sql_text *t = ctx;
  return in_sql(t->p, t->n, w, n);
}

size_t ss__sql_message_scrub(const char *msg, size_t n, const char *sql, size_t sqln, char *outp,
                             size_t cap) {
  sql_text t = {sql, sqln};
  return ss__message_mask(msg, n, keep_in_sql, &t, outp, cap);
}

int ss__sql_has_ident(const char *sql, size_t sqln, const char *w, size_t n) {
  return in_sql(sql, sqln, w, n);
}
