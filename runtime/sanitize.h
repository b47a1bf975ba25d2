/* sanitize.h - making span attributes safe to leave the process.
 *
 * Hooks copy values as they are (cheap, on the app thread); the exporter thread runs every
 * decoded span through ss__sanitize_span before encoding, which rewrites the attributes
 * that can carry secrets: db.query.text (literals → ?), url.full and url.query
 * (userinfo, credential-like query values and fragment values → REDACTED). Nothing here runs on an app thread. The rewritten values
 * live in the caller's scratch buffer. */
#ifndef SS_SANITIZE_H
#define SS_SANITIZE_H

#include <stddef.h>

#include "runtime/attr.h"

/* Each writes the sanitized text into out (at most cap bytes, no NUL needed) and returns
 * its length; never fails (a value that cannot be sanitized safely becomes "?" or
 * "REDACTED" whole). */
size_t ss__sql_scrub(const char *in, size_t n, char *out, size_t cap);
size_t ss__url_redact(const char *in, size_t n, char *out, size_t cap);
/* The same rule for a query string alone (url.query: "a=1&sig=..." without the '?'). */
size_t ss__url_query_redact(const char *in, size_t n, char *out, size_t cap);
/* Extra query keys whose values are redacted (SPANSHIM_REDACT_QUERY_KEYS), on top of the
 * built-in rule: a comma-separated list of names, blanks around them ignored, matched
 * case-insensitively against the whole (percent-decoded) key or any one word of it.
 * Replaces the previous list (NULL or "" clears it). Call at init, before the exporter
 * thread runs. Returns how many names were dropped (containing blanks, control
 * characters, '=', '&', ';' or '#', or beyond 1 KiB of names in all). */
int ss__url_redact_keys_set(const char *list);

/* Redacts one command-line argument into out (at most cap bytes) and returns the length.
 * *secret_next carries state between consecutive arguments: start with 0; after a bare
 * `--password` flag the next argument is redacted whole. Runs once per process, at start. */
size_t ss__arg_redact(const char *arg, int *secret_next, char *out, size_t cap);

/* Rewrites s's attributes in place (attrs must be the span's own, writable array),
 * taking space from the scratch buffer (advancing scratch, shrinking left). Returns 0, or -1 when scratch ran out (the value is
 * then replaced by "REDACTED": nothing unsanitized leaves). */
int ss__sanitize_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left);

#endif
