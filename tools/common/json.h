/* json.h - a small, strict, bounded JSON parser that builds a read-only tree.
 *
 * For the tools, which read OTLP JSON lines written by spanshimd or anyone else: input is
 * untrusted. The parser accepts exactly RFC 8259 JSON (UTF-8 checked, no comments, no
 * trailing commas, no leading zeros, no NaN), limits nesting depth so a hostile document
 * cannot exhaust the stack, never reads past the n bytes it is given (no NUL needed) and
 * reports the first error with its byte offset. Memory is proportional to the input.
 *
 * Ownership: ss__json_parse returns one tree that the caller frees with ss__json_free;
 * every node, key and string inside it belongs to that tree. Strings are NUL-terminated
 * copies (an escaped \u0000 is kept, so use `len` when that matters). Trees are immutable
 * after parsing, so several threads may read one tree; the parser keeps no global state. */
#ifndef SS_JSON_H
#define SS_JSON_H

#include <stddef.h>
#include <stdint.h>

enum ss__json_type {
  SS_JSON_NULL = 0,
  SS_JSON_BOOL,
  SS_JSON_NUMBER,
  SS_JSON_STRING,
  SS_JSON_ARRAY,
  SS_JSON_OBJECT,
};

#define SS_JSON_DEFAULT_DEPTH 128

/* A node. All fields are read-only for users. */
typedef struct ss__json {
  int type;              /* enum ss__json_type */
  char *key;             /* member name when the node is an object member, else NULL */
  size_t key_len;
  size_t len;            /* STRING: bytes (excluding the NUL); ARRAY/OBJECT: children */
  union {
    int b;               /* BOOL */
    struct {
      double d;          /* NUMBER: value as a double */
      char *text;        /* NUMBER: the literal as written, for exact integers */
    } num;
    char *s;             /* STRING */
    struct ss__json *kids; /* ARRAY/OBJECT: `len` children in document order */
  } u;
} ss__json;

typedef struct ss__json_opts {
  int max_depth;         /* nesting limit for arrays and objects; <= 0: the default */
} ss__json_opts;

/* Parses n bytes of s as one JSON value (surrounding whitespace allowed). Returns the tree,
 * or NULL with a message "<what> at byte <offset>" in err (when errn > 0; always
 * NUL-terminated). Out of memory is reported the same way. */
ss__json *ss__json_parse(const char *s, size_t n, char *err, size_t errn);
ss__json *ss__json_parse_opts(const char *s, size_t n, const ss__json_opts *o, char *err,
                              size_t errn);
/* Frees a tree returned by the parser; NULL is fine. Children cannot be freed alone. */
void ss__json_free(ss__json *j);

/* Member `key` of an object (the last one when a key repeats), or NULL when j is NULL,
 * not an object, or has no such member. */
const ss__json *ss__json_get(const ss__json *obj, const char *key);
/* Child i of an array or object, or NULL when out of range or j is not a container. */
const ss__json *ss__json_at(const ss__json *j, size_t i);
/* Number of children of an array or object; 0 for anything else (and NULL). */
size_t ss__json_count(const ss__json *j);

/* Typed accessors: NULL/0 when j is NULL or not of that type. */
const char *ss__json_str(const ss__json *j, size_t *len);
int ss__json_is(const ss__json *j, int type);
/* Integer value: a NUMBER written as an integer, or a STRING of decimal digits (OTLP JSON
 * writes 64-bit integers as strings). Returns 0, or -EINVAL (not an integer, fraction,
 * exponent) or -ERANGE (does not fit); *out unchanged on failure. */
int ss__json_int64(const ss__json *j, int64_t *out);
int ss__json_uint64(const ss__json *j, uint64_t *out);

#endif
