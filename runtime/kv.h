/* kv.h - comma-separated, percent-encoded `key=value` lists: the one parser for the OTel
 * environment variables of that shape (OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_EXPORTER_OTLP_HEADERS / _TRACES_HEADERS; the W3C Baggage form the spec names).
 *
 * The rule: entries are separated by ','; blank entries are skipped; an entry is
 * `key=value` split at its first '='; blanks (space, tab) around key and value are
 * trimmed; then both are percent-decoded (%XX, either case). An entry without '=', with
 * an empty key, or with a bad %-escape is malformed and skipped. What a key or value may
 * contain beyond that is the caller's rule (the callback refuses an entry by returning
 * non-zero).
 *
 * Parses in place (decoding only shrinks): no allocation, no lock, no locale; safe on any
 * thread. The caller owns the buffer. */
#ifndef SS_KV_H
#define SS_KV_H

#include <stddef.h>

/* Called for each well-formed entry, key and value decoded and NUL-terminated (a value
 * may hold a decoded NUL: vlen is its real length). Returns 0 to accept, non-zero to
 * count the entry as malformed. */
typedef int (*ss__kv_fn)(void *arg, const char *key, size_t klen, const char *value,
                         size_t vlen);

/* Parses the list in s (modified in place), calling fn for each entry. Returns the
 * number of malformed entries (0 when all were good). */
int ss__kv_parse(char *s, ss__kv_fn fn, void *arg);

/* Percent-decodes s[0..n) in place and writes a NUL after the result (s[n] must be
 * writable). Returns the decoded length, or -1 on a bad %-escape (s unspecified). */
long ss__pct_decode(char *s, size_t n);

#endif
