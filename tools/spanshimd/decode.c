/* decode.c - protobuf decoding of request bodies, safe against hostile input.
 *
 * protobuf-c recurses once per nested message with no depth limit, so a body of deeply
 * nested AnyValue arrays could exhaust the stack; a cheap wire-format walk guided by the
 * same descriptors rejects anything nested deeper than MAX_DEPTH first. Decoding then
 * allocates from a bump arena with a budget proportional to the body, so a small body
 * cannot expand into gigabytes of structs, and a whole request is freed by resetting the
 * arena: no per-field free, and after warm-up no malloc at all. OTLP JSON bodies are
 * decoded (otlp_json_in.c) into the same arena under a budget of their own. */
#include "tools/common/arena.h"
#include "tools/spanshimd/spanshimd.h"

#define MAX_DEPTH 48
#define BLOCK_MIN (1u << 20)
/* What a body may decode to: the shim's batches take about 7 times their wire size,
 * attributes with small integer values up to about 10. Big requests are decoded in
 * slices (ss__slice_request), so this is a bound per slice in practice. */
#define BUDGET(len) ((size_t)(len) * 16 + (4u << 20))
/* ... and never more than this: what one decoding may take whatever the body (a single
 * span of 16 MB in small attributes could otherwise take 16 times that). */
#define DECODE_CAP ((size_t)32 << 20)
#define KEEP_MAX (4u << 20)       /* arena kept between requests; more goes back */

static ss__arena arena = {.block_min = BLOCK_MIN, .keep_max = KEEP_MAX};

uint64_t ss__decode_count;

static void *pb_alloc(void *a, size_t n) { return ss__arena_alloc(a, n); }

static void pb_free(void *a, void *p) {
  (void)a;
  (void)p;  /* everything goes at the arena's next reset */
}

void ss__pb_allocator(ProtobufCAllocator *pa, ss__arena *a) {
  pa->alloc = pb_alloc;
  pa->free = pb_free;
  pa->allocator_data = a;
}

void ss__decode_release(void) { ss__arena_release(&arena); }

/* ---- depth pre-check ---- */

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t c = *(*p)++;
    x |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *v = x;
      return 0;
    }
  }
  return -1;
}

/* An allocation of n bytes from the arena, with room to spare for its alignment. */
#define COST(n) ((((size_t)(n) + 15) & ~(size_t)15) + 16)

/* 0 if p[0..len) is well-formed wire data whose known message fields nest at most
 * MAX_DEPTH deep; -1 otherwise. Unknown fields are skipped unexamined. Adds to *est an
 * upper bound of what protobuf-c will allocate to unpack it (the message, one slot per
 * repeated element, strings and bytes copied, unknown fields kept), so a request is
 * refused before it takes the memory (an empty span: 2 bytes on the wire, ~200 decoded). */
static int check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                 int depth, size_t *est) {
  const uint8_t *end = p + len;
  if (depth > MAX_DEPTH) return -1;
  *est += COST(d->sizeof_message);
  while (p < end) {
    uint64_t tag, v;
    if (varint(&p, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
    if (f == NULL) *est += 64;                 /* its unknown-field slot and data */
    else if (f->label == PROTOBUF_C_LABEL_REPEATED) *est += 16;  /* its array slot */
    switch (tag & 7) {
    case 0:
      if (varint(&p, end, &v) != 0) return -1;
      break;
    case 1:
      if (end - p < 8) return -1;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return -1;
      p += 4;
      break;
    case 2: {
      if (varint(&p, end, &v) != 0 || v > (uint64_t)(end - p)) return -1;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (check(f->descriptor, p, (size_t)v, depth + 1, est) != 0) return -1;
      } else if (f && f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_BYTES) {
        *est += (size_t)v * 8;  /* packed scalars: at most 8 bytes per wire byte */
      } else {
        *est += COST(v + 1);    /* a string, bytes, or an unknown field's data */
      }
      p += v;
      break;
    }
    default:
      return -1;  /* groups (3, 4) are not proto3 */
    }
  }
  return 0;
}

static void *decode(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                    int *too_big) {
  size_t est = 0;
  *too_big = 0;
  if (check(d, p, len, 0, &est) != 0) return NULL;
  size_t budget = BUDGET(len) < DECODE_CAP ? BUDGET(len) : DECODE_CAP;
  if (est > budget) {  /* refused before taking the memory */
    *too_big = 1;
    return NULL;
  }
  ss__arena_reset(&arena, budget);
  ss__decode_count++;
  ProtobufCAllocator pa;
  ss__pb_allocator(&pa, &arena);
  void *m = protobuf_c_message_unpack(d, &pa, len, p);
  if (m == NULL && arena.over) *too_big = 1;
  return m;
}

ss__traces_req *ss__decode_traces(const uint8_t *p, size_t len, int *too_big) {
  return decode(&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
                p, len, too_big);
}

ss__logs_req *ss__decode_logs(const uint8_t *p, size_t len, int *too_big) {
  return decode(&opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor,
                p, len, too_big);
}

/* ---- OTLP JSON (otlp_json_in.c), into the same arena ---- */

/* JSON is wordier than protobuf, so its budget is tighter: an OTel SDK's spans decode to
 * about 2.5 times their JSON, attributes with one-letter keys and small values to about
 * 4.5, an array of small integers to 6; a body of empty objects ("{},{},...") would take
 * 28 times and gets 413 at this bound instead. */
#define JSON_BUDGET(len) ((size_t)(len) * 8 + (4u << 20))

size_t ss__json_budget(size_t len) {
  return JSON_BUDGET(len) < DECODE_CAP ? JSON_BUDGET(len) : DECODE_CAP;
}

static void *decode_json(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                         int *too_big, char *err, size_t errn) {
  ss__arena_reset(&arena, ss__json_budget(len));
  ss__decode_count++;
  void *m = ss__otlp_json_decode(d, p, len, &arena, err, errn);
  *too_big = m == NULL && arena.over;
  return m;
}

ss__traces_req *ss__decode_traces_json(const uint8_t *p, size_t len, int *too_big, char *err,
                                       size_t errn) {
  return decode_json(&opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
                     p, len, too_big, err, errn);
}

ss__logs_req *ss__decode_logs_json(const uint8_t *p, size_t len, int *too_big, char *err,
                                   size_t errn) {
  return decode_json(&opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor,
                     p, len, too_big, err, errn);
}

ss__metrics_req *ss__decode_metrics(int fmt, const uint8_t *p, size_t len, int *too_big,
                                    char *err, size_t errn) {
  const ProtobufCMessageDescriptor *d =
      &opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__descriptor;
  if (fmt == SS_FMT_JSON) return decode_json(d, p, len, too_big, err, errn);
  return decode(d, p, len, too_big);
}

int ss__decode_json_slices(int logs, const uint8_t *p, size_t len, size_t max,
                           int (*fn)(void *msg, void *arg), void *arg, char *err, size_t errn) {
  ss__decode_count++;
  return ss__otlp_json_slices(
      logs ? &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor
           : &opentelemetry__proto__collector__trace__v1__export_trace_service_request__descriptor,
      p, len, max, &arena, fn, arg, err, errn);
}

/* ---- slicing big requests ---- */

typedef ss__wire_field field;

int ss__wire_next(const uint8_t **p, const uint8_t *end, ss__wire_field *f) {
  uint64_t tag, v;
  if (*p >= end) return 0;
  f->start = *p;
  if (varint(p, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
  f->no = (unsigned)(tag >> 3);
  f->wt = (int)(tag & 7);
  f->data = *p;
  switch (f->wt) {
  case 0:
    if (varint(p, end, &v) != 0) return -1;
    break;
  case 1:
    if (end - *p < 8) return -1;
    *p += 8;
    break;
  case 5:
    if (end - *p < 4) return -1;
    *p += 4;
    break;
  case 2:
    if (varint(p, end, &v) != 0 || v > (uint64_t)(end - *p)) return -1;
    f->data = *p;
    *p += v;
    break;
  default:
    return -1;
  }
  f->end = *p;
  return 1;
}

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

static void put_varint(ss__buf *b, uint64_t v) {
  while (v >= 0x80) {
    ss__buf_putc(b, (char)(v | 0x80));
    v >>= 7;
  }
  ss__buf_putc(b, (char)v);
}

void ss__wire_put_head(ss__buf *b, unsigned no, size_t len) {
  put_varint(b, (uint64_t)no << 3 | 2);
  put_varint(b, len);
}

static size_t head_size(unsigned no, size_t len) {
  return varint_size((uint64_t)no << 3 | 2) + varint_size(len);
}

typedef struct slicer {
  size_t max;
  int (*fn)(const uint8_t *, size_t, void *);
  void *arg;
  int rc;
  ss__buf out;            /* the piece being built: resource entries (field 1) */
  ss__buf rest, grp;      /* a resource's other fields; the scope entries gathered */
  ss__buf srest, items;   /* a scope's other fields; the items gathered */
} slicer;

static void flush(slicer *s) {
  if (s->out.len && s->rc == 0) s->rc = s->fn((const uint8_t *)s->out.data, s->out.len, s->arg);
  ss__buf_reset(&s->out);
}

/* Room for an entry of n bytes in the piece: sends the piece first if it would grow past
 * max (an entry bigger than max is a piece of its own). */
static void make_room(slicer *s, size_t n) {
  if (s->out.len && s->out.len + n > s->max) flush(s);
}

/* The resource (rest) with the scope entries gathered in grp, as one resource entry. */
static void put_resource(slicer *s) {
  if (s->grp.len == 0) return;
  size_t rl = s->rest.len + s->grp.len;
  make_room(s, head_size(1, rl) + rl);
  ss__wire_put_head(&s->out, 1, rl);
  ss__buf_append(&s->out, s->rest.data, s->rest.len);
  ss__buf_append(&s->out, s->grp.data, s->grp.len);
  ss__buf_reset(&s->grp);
}

/* The resource with one scope (srest) holding the items gathered. */
static void put_items(slicer *s) {
  if (s->items.len == 0) return;
  size_t sl = s->srest.len + s->items.len, rl = s->rest.len + head_size(2, sl) + sl;
  make_room(s, head_size(1, rl) + rl);
  ss__wire_put_head(&s->out, 1, rl);
  ss__buf_append(&s->out, s->rest.data, s->rest.len);
  ss__wire_put_head(&s->out, 2, sl);
  ss__buf_append(&s->out, s->srest.data, s->srest.len);
  ss__buf_append(&s->out, s->items.data, s->items.len);
  ss__buf_reset(&s->items);
}

/* Splits fields [p, end) into the repeated field 2's entries (each passed to `each`) and
 * the others, copied to `rest`. 0 or -1. */
static int split_fields(slicer *s, const uint8_t *p, const uint8_t *end, ss__buf *rest,
                        int (*each)(slicer *, const field *)) {
  field f;
  int rc;
  ss__buf_reset(rest);
  for (const uint8_t *q = p; (rc = ss__wire_next(&q, end, &f)) == 1;)
    if (f.no != 2 || f.wt != 2) ss__buf_append(rest, f.start, (size_t)(f.end - f.start));
  if (rc < 0) return -1;
  while ((rc = ss__wire_next(&p, end, &f)) == 1)
    if (f.no == 2 && f.wt == 2 && each(s, &f) != 0) return -1;
  return 0;
}

static int one_item(slicer *s, const field *f) {
  size_t n = (size_t)(f->end - f->start);
  if (s->items.len && s->rest.len + s->srest.len + s->items.len + n + 16 > s->max) put_items(s);
  ss__buf_append(&s->items, f->start, n);
  return 0;
}

static int one_scope(slicer *s, const field *f) {
  size_t n = (size_t)(f->end - f->start);
  if (s->rest.len + n + 8 <= s->max) {
    if (s->grp.len && s->rest.len + s->grp.len + n + 8 > s->max) put_resource(s);
    ss__buf_append(&s->grp, f->start, n);
    return 0;
  }
  put_resource(s);  /* keep the order: what came before goes first */
  if (split_fields(s, f->data, f->end, &s->srest, one_item) != 0) return -1;
  put_items(s);
  return 0;
}

int ss__slice_request(const uint8_t *p, size_t len, size_t max,
                      int (*fn)(const uint8_t *, size_t, void *), void *arg) {
  slicer s = {max, fn, arg, 0, SS_BUF_INIT, SS_BUF_INIT, SS_BUF_INIT, SS_BUF_INIT,
              SS_BUF_INIT};
  const uint8_t *end = p + len;
  field f;
  int rc = 0; /* s.rc starts at 0, so the loop runs; -O1 cannot see it */
  while (s.rc == 0 && (rc = ss__wire_next(&p, end, &f)) == 1) {
    size_t n = (size_t)(f.end - f.start);
    if (f.no != 1 || f.wt != 2) continue;  /* the request has no other fields */
    if (n <= max) {
      make_room(&s, n);
      ss__buf_append(&s.out, f.start, n);
    } else if (split_fields(&s, f.data, f.end, &s.rest, one_scope) != 0) {
      rc = -1;
      break;
    } else {
      put_resource(&s);
    }
  }
  if (rc >= 0) flush(&s);
  ss__buf_free(&s.out);
  ss__buf_free(&s.rest);
  ss__buf_free(&s.grp);
  ss__buf_free(&s.srest);
  ss__buf_free(&s.items);
  return rc < 0 ? -1 : s.rc;
}
