/* sql.h - reading SQL text safely: literal scrubbing (ss__sql_scrub, in sanitize.h), the
 * operation and collection a statement names, and error messages made safe to export.
 *
 * All of it runs on the exporter thread (or in tools), never on an app thread: hooks copy
 * the raw text into the span and name the span ss__sql_span_name; ss__sanitize_span then
 * scrubs db.query.text and derives the name (`SELECT orders`) and the db.operation.name /
 * db.collection.name attributes from the scrubbed text. Pure functions over caller memory:
 * no allocation, no global state, thread-safe. */
#ifndef SS_SQL_H
#define SS_SQL_H

#include <stddef.h>

/* "postgresql": the name a database span carries from the app thread until the exporter
 * derives the real one; also the name it keeps when nothing better can be derived. Spans
 * are recognised by this pointer, not by the text. */
extern const char ss__sql_span_name[];

/* What a statement does. op is upper case ("SELECT", "INSERT", "CREATE TABLE"; empty when
 * the text starts with no keyword); coll points into the text given to ss__sql_summarize
 * (coll_len 0 when no single collection is evident). */
typedef struct ss__sql_summary {
  char op[32];
  const char *coll;
  size_t coll_len;
} ss__sql_summary;

/* Summarizes already scrubbed SQL text. Never fails. */
void ss__sql_summarize(const char *sql, size_t n, ss__sql_summary *out);

/* Copies a server error message into out (at most cap bytes), replacing every quoted
 * part ("..." or '...') whose content is not an identifier of the scrubbed statement
 * `sql` by "?" (messages quote values: `invalid input syntax for type integer: "42x"`).
 * Returns the length written. */
size_t ss__sql_message_scrub(const char *msg, size_t n, const char *sql, size_t sqln, char *out,
                             size_t cap);

/* Copies msg into out (at most cap bytes), replacing the content of every quoted part
 * ("..." or '...'; an apostrophe after a letter is not a quote) by "?" unless keep(ctx, w,
 * n) says the content may stay; an unterminated quote hides the rest. NULL keep: none
 * stays. Returns the length written. */
size_t ss__message_mask(const char *msg, size_t n, int (*keep)(void *ctx, const char *w, size_t n),
                        void *ctx, char *out, size_t cap);
/* Whether w is a whole identifier-like token of sql (what ss__sql_message_scrub keeps). */
int ss__sql_has_ident(const char *sql, size_t sqln, const char *w, size_t n);

/* The condition name of a SQLSTATE ("42P01" -> "undefined_table"; an unknown code of a
 * known class -> the class's name), or NULL. Static strings (runtime/sqlstate.c). */
const char *ss__sqlstate_name(const char *code);

#endif
