/* decode.c - protobuf decoding of request bodies, safe against hostile input.
 *
 * protobuf-c recurses once per nested message with no depth limit, so a body of deeply
 * nested AnyValue arrays could exhaust the stack; a cheap wire-format walk guided by the
 * same descriptors rejects anything nested deeper than MAX_DEPTH first. Decoding then
 * allocates from a bump arena with a budget proportional to the body, so a small body
 * cannot expand into gigabytes of structs, and a whole request is freed by resetting the
 * arena: no per-field free, and after warm-up no malloc at all. OTLP JSON bodies are
 * decoded (otlp_json_in.c) into the same arena under the same budget. */
#include "tools/common/arena.h"
#include "tools/spanshimd/spanshimd.h"

#define MAX_DEPTH 48
#define BLOCK_MIN (1u << 20)
#define BUDGET(len) ((size_t)(len) * 32 + (8u << 20))

static ss__arena arena = {.block_min = BLOCK_MIN};

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

/* 0 if p[0..len) is well-formed wire data whose known message fields nest at most
 * MAX_DEPTH deep; -1 otherwise. Unknown fields are skipped unexamined. */
static int check(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                 int depth) {
  const uint8_t *end = p + len;
  if (depth > MAX_DEPTH) return -1;
  while (p < end) {
    uint64_t tag, v;
    if (varint(&p, end, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return -1;
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
      const ProtobufCFieldDescriptor *f =
          protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3));
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
          check(f->descriptor, p, (size_t)v, depth + 1) != 0)
        return -1;
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
  *too_big = 0;
  if (check(d, p, len, 0) != 0) return NULL;
  ss__arena_reset(&arena, BUDGET(len));
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

/* ---- OTLP JSON (otlp_json_in.c), into the same arena under the same budget ---- */

static void *decode_json(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                         int *too_big, char *err, size_t errn) {
  ss__arena_reset(&arena, BUDGET(len));
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
