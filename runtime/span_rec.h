/* span_rec.h - the ring record format: private to runtime/ (span.c writes it, the exporter
 * reads it, unit tests build records). Hooks never look inside; they use span.h. */
#ifndef SS_SPAN_REC_H
#define SS_SPAN_REC_H

#include <stdint.h>

typedef struct ss__rec {
  uint32_t size;        /* bytes of the whole record, header and attributes, multiple of 8 */
  uint16_t n_attrs;
  uint8_t kind, status;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_id[8];
  uint8_t flags;
  uint8_t has_stack;    /* 1: an attribute of type SS_ATTR_STACK is among them */
  uint8_t pad[6];
  uint64_t start_ns, end_ns;
  const char *name;     /* static string of the shim's */
  uint64_t caller;      /* return address into the calling code, for code.function.name */
} ss__rec;

/* Followed by 8 bytes (INT, BOOL, DOUBLE) or len bytes rounded up to 8 (STR, STRARR).
 * key == NULL marks the status message. */
typedef struct ss__rec_attr {
  const char *key;
  uint8_t type;
  uint8_t pad[3];
  uint32_t len;
} ss__rec_attr;

#endif
