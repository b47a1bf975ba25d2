/* sanitize.h - making span attributes safe to leave the process.
 *
 * Hooks copy values as they are (cheap, on the app thread); the exporter thread runs every
 * decoded span through ss__sanitize_span before encoding, which rewrites the attributes
 * that can carry secrets: db.query.text (literals → ?), url.full and url.query
 * (userinfo, credential-like query values and fragment values → REDACTED), and every
 * span's status message (ss__message_scrub: the exception event and log record quote it).
 * Nothing here runs on an app thread but ss__argv_redact (once, in the process
 * constructor). The rewritten values live in the caller's scratch buffer. */
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

/* Whether a name - a query key (percent-encoded as in a URL), an option name, the key of a
 * key=value pair or a header name - looks like a credential: split into words at
 * non-alphanumerics, digits and camelCase humps, a word is token, key, secret, password,
 * auth, cookie, session, signature... (runtime/url.c has the list), or SPANSHIM_REDACT_
 * QUERY_KEYS names it. Pure; thread-safe once the extra keys are set. */
int ss__cred_name(const char *name, size_t n);

/* Free text with its credentials replaced by REDACTED (runtime/args.c: URL userinfo and
 * credential query values, `name=value` and `name: value` with a credential-like name,
 * quoted values whole, `Bearer x`). Writes at most cap bytes to out, returns the length.
 * Pure, reentrant, no allocation. */
size_t ss__text_redact(const char *in, size_t n, char *out, size_t cap);

/* process.command_args: argv redacted word by word with the command-line rules of
 * runtime/args.c (credential options, -p/-P values that are not ports, SQL literals in SQL
 * clients' -c strings, shell -c scripts recursively...), or copied as is when `full`.
 * Writes the items NUL-terminated one after another into out (at most cap bytes: the
 * items that do not fit are left out, the last one cut), each cut to item_max bytes
 * (0: no limit) without splitting a UTF-8 sequence; returns the bytes used. Uses static
 * scratch: one caller at a time (the process constructor; tests). */
size_t ss__argv_redact(int argc, char *const *argv, int full, size_t item_max, char *out,
                       size_t cap);

/* The scrubber of every status message (exporter thread): quoted parts become "?" unless
 * the span shows them already (a string attribute's value or a path under it, an
 * identifier of a database span's db.query.text) or keep_quoted is set, then
 * ss__text_redact. s and attrs are the span as sanitized so far. Writes at most cap bytes
 * to out (using all of it as scratch) and returns the length. Pure, no allocation. */
size_t ss__message_scrub(const char *msg, size_t n, const ss__span *s, const ss__attr *attrs,
                         int keep_quoted, char *out, size_t cap);
/* SPANSHIM_DB_ERROR_MESSAGES=full (1): database spans' messages keep their quoted parts.
 * Call at init, before the exporter thread runs. */
void ss__message_scrub_mode(int full);

/* Rewrites s's attributes in place (attrs must be the span's own, writable array),
 * taking space from the scratch buffer (advancing scratch, shrinking left). Returns 0, or -1 when scratch ran out (the value is
 * then replaced by "REDACTED": nothing unsanitized leaves). Remembers the last statements'
 * scrubbed texts and summaries in static tables (sanitize.c), so one caller at a time:
 * the exporter's encoders run it under the ring's consumer lock. */
int ss__sanitize_span(ss__span *s, ss__attr *attrs, char **scratch, size_t *left);

#endif
