/* otlp_json_in.c - OTLP/JSON request bodies decoded into the protobuf-c messages the
 * pipeline works on, as if they had come as protobuf.
 *
 * The OTLP JSON encoding (opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding) is
 * proto3 JSON with two exceptions: trace and span ids are hex, not base64, and enums are
 * integers. The decoder is driven by the protobuf-c descriptors, so every message of the
 * schema is covered by one walk:
 *   - member names in lowerCamelCase, or the original snake_case field names (which
 *     receivers must accept); unknown members are skipped (checked as JSON all the same);
 *   - 64-bit integers as decimal strings or as numbers; 32-bit ones as either too; in
 *     exponent or fraction form as well when the value is integral ("1e3", "5.0"), as
 *     proto3's JSON mapping accepts;
 *   - enums as integers, or by their value names ("SPAN_KIND_SERVER");
 *   - doubles as numbers or "NaN", "Infinity", "-Infinity";
 *   - bytes as base64 (standard or URL-safe, padding optional), except the fields named
 *     trace_id, span_id and parent_span_id, which are hex; an id that is not hex becomes
 *     ss__otlp_not_hex_id so that validation refuses that span alone, saying so
 *     (pipeline.c);
 *   - null for any field means "not set".
 *
 * Memory: nothing but the messages themselves, taken from the caller's arena under its
 * budget (a repeated field's array doubles as it fills, so at most twice its final size);
 * the JSON reader (tools/common/json.c) allocates nothing and bounds nesting, and every
 * nested message is at least one JSON level, so the recursion here is bounded too.
 * Single-threaded like the rest of spanshimd. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/json.h"
#include "tools/common/otlp_json.h"
#include "tools/spanshimd/spanshimd.h"

#define JSON_MAX_DEPTH 128

typedef struct jd {
  ss__jr r;
  ss__arena *a;
} jd;

/* Whether JSON member name key[0..n) names field `name` (snake_case) either as written or
 * in lowerCamelCase ("trace_id" / "traceId"). */
static int name_matches(const char *name, const char *key, size_t n) {
  size_t i = 0;
  if (strlen(name) == n && memcmp(name, key, n) == 0) return 1;
  for (const char *p = name; *p; p++) {
    char want = *p;
    if (*p == '_' && p[1] >= 'a' && p[1] <= 'z') want = (char)(*++p - 'a' + 'A');
    if (i >= n || key[i] != want) return 0;
    i++;
  }
  return i == n;
}

static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessageDescriptor *d,
                                                const char *key, size_t n) {
  for (unsigned i = 0; i < d->n_fields; i++)
    if (name_matches(d->fields[i].name, key, n)) return &d->fields[i];
  return NULL;
}

static int fail_field(jd *d, const ProtobufCFieldDescriptor *f, const char *what) {
  char m[160];
  snprintf(m, sizeof m, "field %s: %s", f->name, what);
  ss__jr_fail(&d->r, m);
  return -1;
}

static void *alloc(jd *d, size_t n) {
  void *p = ss__arena_alloc(d->a, n ? n : 1);
  if (p == NULL) ss__jr_fail(&d->r, "request decodes to more memory than allowed");
  return p;
}

/* The next value as a string, decoded into the arena (NUL-terminated); NULL on failure. */
static char *string_value(jd *d, size_t *len) {
  size_t max;
  if (ss__jr_string(&d->r, &max) < 0) return NULL;
  char *s = alloc(d, max + 1);
  if (s == NULL) return NULL;
  *len = ss__jr_string_copy(&d->r, s);
  return s;
}

/* The decimal digits of an integer given as a number or a string, in proto3 JSON's
 * forms (exponent and fraction allowed when the value is integral: ss__json_int_digits),
 * into buf; returns 0 or -1 (not an integer). */
static int int_text(jd *d, char *buf, size_t bufn) {
  const char *t;
  size_t n;
  char s[64];
  int type = ss__jr_peek(&d->r);
  if (type == SS_JSON_NUMBER) {
    if (ss__jr_number(&d->r, &t, &n) < 0) return -1;
  } else if (type == SS_JSON_STRING) {
    size_t max;
    if (ss__jr_string(&d->r, &max) < 0) return -1;
    if (max >= sizeof s) return -1;
    n = ss__jr_string_copy(&d->r, s);
    t = s;
  } else {
    return -1;
  }
  return ss__json_int_digits(t, n, buf, bufn) == 0 ? 0 : -1;
}

static int parse_int(jd *d, const ProtobufCFieldDescriptor *f, int is_signed, int bits,
                     uint64_t *out) {
  char buf[32];
  if (int_text(d, buf, sizeof buf) < 0) return fail_field(d, f, "expected an integer");
  errno = 0;
  if (is_signed) {
    long long v = strtoll(buf, NULL, 10);
    long long lim = bits == 64 ? INT64_MAX : INT32_MAX;
    if (errno || v > lim || v < -lim - 1) return fail_field(d, f, "integer out of range");
    *out = (uint64_t)v;
  } else {
    if (buf[0] == '-') return fail_field(d, f, "expected an unsigned integer");
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno || (bits == 32 && v > UINT32_MAX)) return fail_field(d, f, "integer out of range");
    *out = v;
  }
  return 0;
}

static int parse_double(jd *d, const ProtobufCFieldDescriptor *f, double *out) {
  char buf[64];
  const char *t;
  size_t n;
  int type = ss__jr_peek(&d->r);
  if (type == SS_JSON_NUMBER) {
    if (ss__jr_number(&d->r, &t, &n) < 0) return -1;
    if (n >= sizeof buf) n = sizeof buf - 1;  /* digits past 63 do not change a double much */
    memcpy(buf, t, n);
    buf[n] = '\0';
    *out = strtod(buf, NULL);
    return 0;
  }
  size_t max;
  if (type != SS_JSON_STRING || ss__jr_string(&d->r, &max) < 0 || max >= sizeof buf)
    return fail_field(d, f, "expected a number");
  ss__jr_string_copy(&d->r, buf);
  if (strcmp(buf, "NaN") == 0) *out = NAN;
  else if (strcmp(buf, "Infinity") == 0) *out = INFINITY;
  else if (strcmp(buf, "-Infinity") == 0) *out = -INFINITY;
  else {
    char *end;
    *out = strtod(buf, &end);
    if (end == buf || *end) return fail_field(d, f, "expected a number");
  }
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static int b64val(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

/* Hex (ids) or base64 (other bytes) into b; 0 or -1. */
static int parse_bytes(jd *d, const ProtobufCFieldDescriptor *f, ProtobufCBinaryData *b) {
  size_t n;
  char *s = string_value(d, &n);
  if (s == NULL) return -1;
  uint8_t *o = (uint8_t *)s;  /* decoding shrinks: in place */
  size_t k = 0;
  if (ss__otlp_is_id_field(f)) {
    int ok = n % 2 == 0;
    for (size_t i = 0; ok && i < n; i += 2) {
      int hi = hexval(s[i]), lo = hexval(s[i + 1]);
      if (hi < 0 || lo < 0) ok = 0;
      else o[k++] = (uint8_t)(hi << 4 | lo);
    }
    if (!ok) {  /* refused per span by validation, which says why */
      b->data = (uint8_t *)ss__otlp_not_hex_id;
      b->len = 1;
      return 0;
    }
  } else {
    unsigned acc = 0;
    int bits = 0;
    size_t i = 0;
    for (; i < n && s[i] != '='; i++) {
      int v = b64val((unsigned char)s[i]);
      if (v < 0) return fail_field(d, f, "invalid base64");
      acc = acc << 6 | (unsigned)v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        o[k++] = (uint8_t)(acc >> bits);
      }
    }
    for (; i < n; i++)
      if (s[i] != '=') return fail_field(d, f, "invalid base64");
  }
  b->data = o;
  b->len = k;
  return 0;
}

static int parse_enum(jd *d, const ProtobufCFieldDescriptor *f, int32_t *out) {
  if (ss__jr_peek(&d->r) == SS_JSON_STRING) {
    char buf[128];
    size_t max;
    if (ss__jr_string(&d->r, &max) < 0) return -1;
    if (max < sizeof buf) {
      ss__jr_string_copy(&d->r, buf);
      const ProtobufCEnumValue *v =
          protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, buf);
      if (v) {
        *out = v->value;
        return 0;
      }
      /* Not an integer in a string either: an unknown name. */
      char *end;
      long x = strtol(buf, &end, 10);
      if (end != buf && *end == '\0' && x >= INT32_MIN && x <= INT32_MAX) {
        *out = (int32_t)x;
        return 0;
      }
    }
    return fail_field(d, f, "unknown enum value");
  }
  uint64_t v;
  if (parse_int(d, f, 1, 32, &v) < 0) return -1;
  *out = (int32_t)v;
  return 0;
}

static int decode_message(jd *d, const ProtobufCMessageDescriptor *md, void **out);

/* One value of field f's type into dst (a field slot or an array element). */
static int scalar(jd *d, const ProtobufCFieldDescriptor *f, void *dst) {
  uint64_t v;
  switch (f->type) {
  case PROTOBUF_C_TYPE_INT32:
  case PROTOBUF_C_TYPE_SINT32:
  case PROTOBUF_C_TYPE_SFIXED32:
    if (parse_int(d, f, 1, 32, &v) < 0) return -1;
    *(int32_t *)dst = (int32_t)v;
    return 0;
  case PROTOBUF_C_TYPE_UINT32:
  case PROTOBUF_C_TYPE_FIXED32:
    if (parse_int(d, f, 0, 32, &v) < 0) return -1;
    *(uint32_t *)dst = (uint32_t)v;
    return 0;
  case PROTOBUF_C_TYPE_INT64:
  case PROTOBUF_C_TYPE_SINT64:
  case PROTOBUF_C_TYPE_SFIXED64:
  case PROTOBUF_C_TYPE_UINT64:
  case PROTOBUF_C_TYPE_FIXED64: {
    int sig = f->type != PROTOBUF_C_TYPE_UINT64 && f->type != PROTOBUF_C_TYPE_FIXED64;
    if (parse_int(d, f, sig, 64, &v) < 0) return -1;
    memcpy(dst, &v, 8);
    return 0;
  }
  case PROTOBUF_C_TYPE_DOUBLE: return parse_double(d, f, (double *)dst);
  case PROTOBUF_C_TYPE_FLOAT: {
    double x;
    if (parse_double(d, f, &x) < 0) return -1;
    *(float *)dst = (float)x;
    return 0;
  }
  case PROTOBUF_C_TYPE_BOOL: {
    int t = ss__jr_peek(&d->r);
    if (t != SS_JSON_BOOL) return fail_field(d, f, "expected true or false");
    *(protobuf_c_boolean *)dst = ss__jr_literal(&d->r) == 1;
    return 0;
  }
  case PROTOBUF_C_TYPE_ENUM: return parse_enum(d, f, (int32_t *)dst);
  case PROTOBUF_C_TYPE_STRING: {
    size_t n;
    if (ss__jr_peek(&d->r) != SS_JSON_STRING) return fail_field(d, f, "expected a string");
    char *s = string_value(d, &n);
    if (s == NULL) return -1;
    *(char **)dst = s;
    return 0;
  }
  case PROTOBUF_C_TYPE_BYTES:
    if (ss__jr_peek(&d->r) != SS_JSON_STRING) return fail_field(d, f, "expected a string");
    return parse_bytes(d, f, (ProtobufCBinaryData *)dst);
  case PROTOBUF_C_TYPE_MESSAGE:
    if (ss__jr_peek(&d->r) != SS_JSON_OBJECT) return fail_field(d, f, "expected an object");
    return decode_message(d, f->descriptor, (void **)dst);
  default:
    return fail_field(d, f, "unsupported type");
  }
}

/* A repeated field: a JSON array (null: empty). The array grows by doubling in the
 * arena; a field given twice keeps the last. */
static int repeated(jd *d, const ProtobufCFieldDescriptor *f, char *msg) {
  size_t *count = (size_t *)(msg + f->quantifier_offset);
  void **arr = (void **)(msg + f->offset);
  size_t es = ss__pb_value_size(f->type), n = 0, cap = 0;
  char *items = NULL;
  *count = 0;
  *arr = NULL;
  if (ss__jr_peek(&d->r) == SS_JSON_NULL) return ss__jr_literal(&d->r) < 0 ? -1 : 0;
  if (ss__jr_peek(&d->r) != SS_JSON_ARRAY) return fail_field(d, f, "expected an array");
  if (ss__jr_array(&d->r) < 0) return -1;
  int rc;
  while ((rc = ss__jr_next_item(&d->r)) == 1) {
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 4;
      char *ni = alloc(d, ncap * es);
      if (ni == NULL) return -1;
      if (n) memcpy(ni, items, n * es);
      items = ni;
      cap = ncap;
    }
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && ss__jr_peek(&d->r) == SS_JSON_NULL)
      return fail_field(d, f, "null in a list of messages");
    if (scalar(d, f, items + n * es) < 0) return -1;
    n++;
  }
  if (rc < 0) return -1;
  *count = n;
  *arr = items;
  return 0;
}

/* Member value for field f of msg. */
static int member(jd *d, const ProtobufCFieldDescriptor *f, char *msg) {
  if (f->label == PROTOBUF_C_LABEL_REPEATED) return repeated(d, f, msg);
  if (ss__jr_peek(&d->r) == SS_JSON_NULL) return ss__jr_literal(&d->r) < 0 ? -1 : 0;
  if (scalar(d, f, msg + f->offset) < 0) return -1;
  if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
    *(uint32_t *)(msg + f->quantifier_offset) = f->id;
  else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
           f->type != PROTOBUF_C_TYPE_MESSAGE && f->type != PROTOBUF_C_TYPE_STRING)
    *(protobuf_c_boolean *)(msg + f->quantifier_offset) = 1;
  return 0;
}

/* The message that comes next into *out; field number `skip` (0: none) is passed over
 * as if unknown. */
static int decode_message_but(jd *d, const ProtobufCMessageDescriptor *md, unsigned skip,
                              void **out) {
  char *msg = alloc(d, md->sizeof_message);
  if (msg == NULL) return -1;
  md->message_init((ProtobufCMessage *)msg);
  if (ss__jr_object(&d->r) < 0) return -1;
  const char *key;
  size_t n;
  int rc;
  while ((rc = ss__jr_next_key(&d->r, &key, &n)) == 1) {
    const ProtobufCFieldDescriptor *f = field_of(md, key, n);
    if (f && f->id == skip) f = NULL;
    if ((f ? member(d, f, msg) : ss__jr_skip(&d->r)) < 0) return -1;
  }
  if (rc < 0) return -1;
  *out = msg;
  return 0;
}

static int decode_message(jd *d, const ProtobufCMessageDescriptor *md, void **out) {
  return decode_message_but(d, md, 0, out);
}

void *ss__otlp_json_decode(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t len,
                           ss__arena *a, char *err, size_t errn) {
  jd d = {.a = a};
  void *m = NULL;
  ss__jr_init(&d.r, (const char *)p, len, JSON_MAX_DEPTH, err, errn);
  if (ss__jr_peek(&d.r) != SS_JSON_OBJECT) {
    if (!d.r.failed) ss__jr_fail(&d.r, "expected an object");
    return NULL;
  }
  if (decode_message(&d, md, &m) < 0 || ss__jr_end(&d.r) < 0) return NULL;
  return m;
}

/* ---- big requests in slices ----
 *
 * An export request nests three lists: resources (field 1 of the request), their scopes
 * (field 2), the scopes' spans, log records or metrics (field 2). The text is walked
 * without allocating; whole resources whose text fits `max` are gathered into a slice,
 * a bigger one is split into its scopes under a copy of the resource (its "shell": every
 * field but the list, decoded once into an arena of its own), a bigger scope into its
 * items under copies of both. Each slice is decoded from its ranges of text into the
 * caller's arena (reset per slice, budget ss__json_budget of its text) and handed on. */

typedef struct jrange {
  size_t start, end;             /* a value's text: p[start, end) */
} jrange;

typedef struct jslicer {
  const char *p;
  size_t len, max;
  const ProtobufCMessageDescriptor *md[4];  /* request, resource, scope, item */
  ss__arena *a;                  /* slices */
  void *shell[2];                /* the resource and scope being split, in shell_arena */
  jrange *g;                     /* the gathered ranges: children of level `lvl` */
  size_t n, cap, bytes;
  int lvl;
  int (*fn)(void *msg, void *arg);
  void *arg;
  char *err;
  size_t errn;
  int rc;                        /* 0, 400, 413, or fn's */
} jslicer;

static ss__arena shell_arena[2] = {{.block_min = 64u << 10, .keep_max = 1u << 20},
                                   {.block_min = 64u << 10, .keep_max = 1u << 20}};

/* The list field of level lvl's message: resources in the request, else 2. */
static unsigned list_id(int lvl) { return lvl == 0 ? 1 : 2; }

/* Records why the slicer stopped (the first reason wins). */
static int stop(jslicer *s, const jd *d, int rc) {
  if (s->rc == 0) s->rc = rc ? rc : d && d->a && d->a->over ? 413 : 400;
  return -1;
}

/* The value that comes next, skipped: its range. */
static int value_range(ss__jr *r, jrange *rg) {
  if (ss__jr_peek(r) < 0) return -1;
  rg->start = ss__jr_pos(r);
  if (ss__jr_skip(r) < 0) return -1;
  rg->end = ss__jr_pos(r);
  return 0;
}

/* Decodes the message of descriptor md at rg (skipping its field `skip`) from arena a. */
static int decode_at(jslicer *s, const ProtobufCMessageDescriptor *md, jrange rg,
                     unsigned skip, ss__arena *a, void **out) {
  jd d = {.a = a};
  ss__jr_init_at(&d.r, s->p, rg.end, rg.start, JSON_MAX_DEPTH, s->err, s->errn);
  if (ss__jr_peek(&d.r) != SS_JSON_OBJECT) {
    if (!d.r.failed) ss__jr_fail(&d.r, "expected an object");
    return stop(s, &d, 0);
  }
  if (decode_message_but(&d, md, skip, out) < 0) return stop(s, &d, 0);
  return 0;
}

static void set_list(void *msg, const ProtobufCMessageDescriptor *md, unsigned id, void **arr,
                     size_t n) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(md, id);
  *(size_t *)((char *)msg + f->quantifier_offset) = n;
  *(void ***)((char *)msg + f->offset) = arr;
}

/* Decodes the gathered ranges as one request (under copies of the shells) and hands it
 * on. */
static int emit(jslicer *s) {
  if (s->n == 0) return 0;
  ss__arena_reset(s->a, ss__json_budget(s->bytes));
  jd d = {.a = s->a};
  size_t n = s->n;
  void **arr = ss__arena_alloc(s->a, n * sizeof *arr);
  if (arr == NULL) return stop(s, &d, 413);
  for (size_t i = 0; i < n; i++)
    if (decode_at(s, s->md[s->lvl + 1], s->g[i], 0, s->a, &arr[i]) != 0) return -1;
  for (int l = s->lvl; l >= 0; l--) {
    const ProtobufCMessageDescriptor *md = s->md[l];
    char *m = ss__arena_alloc(s->a, md->sizeof_message);
    void **one = ss__arena_alloc(s->a, sizeof *one);
    if (m == NULL || one == NULL) return stop(s, &d, 413);
    if (l > 0) memcpy(m, s->shell[l - 1], md->sizeof_message);
    else md->message_init((ProtobufCMessage *)m);
    set_list(m, md, list_id(l), arr, n);
    one[0] = m;
    arr = one;
    n = 1;
  }
  s->n = s->bytes = 0;
  int rc = s->fn(arr[0], s->arg);
  return rc ? stop(s, NULL, rc) : 0;
}

/* Adds a child of level lvl to the slice being gathered (sending that first when it
 * is of another level or would grow past max). */
static int gather(jslicer *s, int lvl, jrange rg) {
  size_t n = rg.end - rg.start;
  if (s->n && (s->lvl != lvl || s->bytes + n > s->max) && emit(s) != 0) return -1;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 64;
    jrange *g = realloc(s->g, cap * sizeof *g);
    if (g == NULL) return stop(s, NULL, 413);
    s->g = g;
    s->cap = cap;
  }
  s->lvl = lvl;
  s->g[s->n++] = rg;
  s->bytes += n;
  return 0;
}

static int split(jslicer *s, int lvl, jrange rg);

/* Walks the object of level lvl at rg: its list's children are gathered (resources and
 * scopes too big for a slice are split), other members skipped. `list` gets the bytes of
 * the list's text when not NULL, and then nothing is gathered (the shell's size). */
static int walk(jslicer *s, int lvl, jrange rg, size_t *list) {
  jd d = {.a = NULL};
  const char *key;
  size_t kn;
  int rc;
  ss__jr_init_at(&d.r, s->p, rg.end, rg.start, JSON_MAX_DEPTH, s->err, s->errn);
  if (ss__jr_peek(&d.r) != SS_JSON_OBJECT) {
    if (!d.r.failed) ss__jr_fail(&d.r, "expected an object");
    return stop(s, &d, 0);
  }
  if (ss__jr_object(&d.r) < 0) return stop(s, &d, 0);
  while ((rc = ss__jr_next_key(&d.r, &key, &kn)) == 1) {
    const ProtobufCFieldDescriptor *f = field_of(s->md[lvl], key, kn);
    int t = ss__jr_peek(&d.r);
    if (f == NULL || f->id != list_id(lvl) || t == SS_JSON_NULL) {
      if (ss__jr_skip(&d.r) < 0) return stop(s, &d, 0);
      continue;
    }
    if (t != SS_JSON_ARRAY) {
      fail_field(&d, f, "expected an array");
      return stop(s, &d, 0);
    }
    if (list) {
      jrange all;
      if (value_range(&d.r, &all) < 0) return stop(s, &d, 0);
      *list += all.end - all.start;
      continue;
    }
    if (ss__jr_array(&d.r) < 0) return stop(s, &d, 0);
    while ((rc = ss__jr_next_item(&d.r)) == 1) {
      jrange it;
      if (value_range(&d.r, &it) < 0) return stop(s, &d, 0);
      if (lvl == 2 || it.end - it.start <= s->max) {
        if (gather(s, lvl, it) != 0) return -1;
      } else if (emit(s) != 0 || split(s, lvl + 1, it) != 0) {
        return -1;
      }
    }
    if (rc < 0) return stop(s, &d, 0);
  }
  if (rc < 0 || (lvl == 0 && ss__jr_end(&d.r) < 0)) return stop(s, &d, 0);
  return 0;
}

/* A resource (lvl 1) or scope (lvl 2) too big for one slice: its shell, then its
 * children in slices under it. */
static int split(jslicer *s, int lvl, jrange rg) {
  size_t list = 0;
  if (walk(s, lvl, rg, &list) != 0) return -1;
  ss__arena *sa = &shell_arena[lvl - 1];
  ss__arena_reset(sa, ss__json_budget(rg.end - rg.start - list));
  if (decode_at(s, s->md[lvl], rg, list_id(lvl), sa, &s->shell[lvl - 1]) != 0) return -1;
  if (walk(s, lvl, rg, NULL) != 0 || emit(s) != 0) return -1;
  return 0;
}

int ss__otlp_json_slices(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t len,
                         size_t max, ss__arena *a, int (*fn)(void *msg, void *arg), void *arg,
                         char *err, size_t errn) {
  jslicer s = {.p = (const char *)p, .len = len, .max = max, .a = a, .fn = fn, .arg = arg,
               .err = err, .errn = errn};
  s.md[0] = md;
  for (int l = 1; l < 4; l++) {
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(s.md[l - 1], list_id(l - 1));
    s.md[l] = f->descriptor;
  }
  if (walk(&s, 0, (jrange){0, len}, NULL) == 0) emit(&s);
  free(s.g);
  for (int i = 0; i < 2; i++) ss__arena_reset(&shell_arena[i], 0);  /* keeps 1 MiB at most */
  return s.rc;
}
