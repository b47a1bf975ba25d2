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
/* Integer value: a NUMBER, or a STRING of the same shape (OTLP JSON writes 64-bit
 * integers as strings), whose value is integral (ss__json_int_digits: "1e3" too). Returns
 * 0, or -EINVAL (not an integer) or -ERANGE (does not fit); *out unchanged on failure. */
int ss__json_int64(const ss__json *j, int64_t *out);
/* The integer a JSON number text t[0..n) writes, as proto3's JSON mapping takes it for
 * integer fields: an optional '-', digits, an optional fraction and exponent, as long as
 * the value is integral ("1e3", "100.0", "25e-1" is not). Writes its decimal digits into
 * out[0..outn) (NUL-terminated; '-' first when negative and not zero; no leading zeros).
 * 0, -EINVAL (not such a number, or not integral) or -ERANGE (does not fit outn). */
int ss__json_int_digits(const char *t, size_t n, char *out, size_t outn);
int ss__json_uint64(const ss__json *j, uint64_t *out);

/* ---- a pull reader: the same grammar and limits, one value at a time, no tree ----
 *
 * For decoders that map a document straight onto their own structures (spanshimd's
 * OTLP JSON receiver): nothing is allocated, so memory is what the caller makes of it.
 * The caller walks the document as it is nested: ss__jr_object then ss__jr_next_key until
 * it returns 0, ss__jr_array then ss__jr_next_item likewise, and for each value one of the
 * value calls (or ss__jr_skip). Every call returns -1 once anything failed, and the first
 * error's message "<what> at byte <offset>" stays in err. Not thread-safe per reader. */
typedef struct ss__jr {
  const unsigned char *s;  /* private, all of it */
  size_t n, pos;
  int depth, max_depth;
  char *err;
  size_t errn;
  int failed;
  int first;               /* no item read yet in the innermost open container */
  char key[64];            /* the last short key, decoded */
  size_t str_start, str_end;  /* the string ss__jr_string checked last */
  int str_plain;
} ss__jr;

/* Reads s[0..n); max_depth bounds the nesting of arrays and objects (<= 0: default). */
void ss__jr_init(ss__jr *r, const char *s, size_t n, int max_depth, char *err, size_t errn);
/* The same, starting at byte `pos` (a value found by an earlier reader: ss__jr_pos), as
 * if it were the whole document; error offsets stay those of s. */
void ss__jr_init_at(ss__jr *r, const char *s, size_t n, size_t pos, int max_depth, char *err,
                    size_t errn);
/* Where the next value starts (after ss__jr_peek) or the last one ended. */
size_t ss__jr_pos(const ss__jr *r);
/* The type of the next value (SS_JSON_*; BOOL for true and false), or -1. */
int ss__jr_peek(ss__jr *r);
/* Enters the object (array) that comes next; 0 or -1 (not one, or too deep). */
int ss__jr_object(ss__jr *r);
int ss__jr_array(ss__jr *r);
/* 1: a member follows, its name in *key[0..*len) (valid until the next call; names of
 * 64 bytes or more are given raw, undecoded); 0: the object ended; -1. */
int ss__jr_next_key(ss__jr *r, const char **key, size_t *len);
/* 1: an element follows; 0: the array ended; -1. */
int ss__jr_next_item(ss__jr *r);
/* A string comes next: checks it and gives the room its decoded form needs (*max_len
 * bytes, plus a NUL); then ss__jr_string_copy decodes it into out and moves past it,
 * returning its length. 0 or -1. */
int ss__jr_string(ss__jr *r, size_t *max_len);
size_t ss__jr_string_copy(ss__jr *r, char *out);
/* A number comes next: its literal as written, text[0..len) (inside the input). 0, -1. */
int ss__jr_number(ss__jr *r, const char **text, size_t *len);
/* true (1), false (0), null (0) comes next; -1 for anything else. */
int ss__jr_literal(ss__jr *r);
/* Moves past the next value, whatever it is (checked all the same); 0 or -1. */
int ss__jr_skip(ss__jr *r);
/* 0 when nothing but whitespace is left, else -1. */
int ss__jr_end(ss__jr *r);
/* Fails the reader here with `what` (a schema error the caller found); later calls -1. */
void ss__jr_fail(ss__jr *r, const char *what);

#endif
