/* itemcount.c - counts what a refused OTLP request held, as its bytes go by (see
 * spanshimd.h). Both request types have one shape on the wire: field 1 (resource entries)
 * → field 2 (scope entries) → field 2 (spans, log records); every other field at those
 * levels is passed over. A log record small enough to be a drop report is gathered and
 * decoded, so that what it reports is counted as a report, not as a record refused. */
#include <stdlib.h>
#include <string.h>

#include "tools/spanshimd/spanshimd.h"

/* A varint at p[0..n): bytes used, 0 when it may go on past n, -1 when over 10 bytes. */
static int varint(const uint8_t *p, size_t n, uint64_t *v) {
  *v = 0;
  for (size_t i = 0; i < n && i < 10; i++) {
    *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
    if (!(p[i] & 0x80)) return (int)i + 1;
  }
  return n >= 10 ? -1 : 0;
}

/* A field's head at p[0..n): its tag, and its payload's length (wire type 2), or a varint
 * value (type 0, payload length 0), or type 1 and 5 (payload 8 and 4 bytes). Bytes used,
 * 0 when the head goes on past n, -1 for what protobuf does not allow here (groups). */
static int field_head(const uint8_t *p, size_t n, unsigned *no, int *wt, uint64_t *len) {
  uint64_t tag, v;
  int a = varint(p, n, &tag), b;
  if (a <= 0) return a;
  *no = (unsigned)(tag >> 3);
  *wt = (int)(tag & 7);
  switch (*wt) {
  case 0:
    if ((b = varint(p + a, n - (size_t)a, &v)) <= 0) return b;
    *len = 0;
    return a + b;
  case 1: *len = 8; return a;
  case 5: *len = 4; return a;
  case 2:
    if ((b = varint(p + a, n - (size_t)a, &v)) <= 0) return b;
    *len = v;
    return a + b;
  default: return -1;
  }
}

void ss__item_count_begin(ss__item_count *c, int logs, uint64_t len) {
  memset(c, 0, sizeof *c);
  c->logs = logs;
  c->end[0] = len;
}

/* A gathered log record: a drop report counts as one. */
static void look_into(ss__item_count *c) {
  Opentelemetry__Proto__Logs__V1__LogRecord *r =
      opentelemetry__proto__logs__v1__log_record__unpack(NULL, c->rec_len, c->rec);
  if (r == NULL) {
    c->bad = 1;
    return;
  }
  c->reports += (uint64_t)ss__shim_drop_report(r, &c->spans_dropped, &c->logs_dropped);
  opentelemetry__proto__logs__v1__log_record__free_unpacked(r, NULL);
}

/* The field whose head was just read (its payload starts at c->pos). */
static void on_field(ss__item_count *c, unsigned no, int wt, uint64_t len) {
  uint64_t end = c->pos + len;
  if (end < c->pos || end > c->end[c->depth]) { /* runs past its message */
    c->bad = 1;
    return;
  }
  if (wt == 2 && no == (c->depth == 0 ? 1u : 2u)) {
    if (c->depth < 2) {
      c->end[++c->depth] = end;
      return;
    }
    c->items++;
    if (c->logs && len <= SS_ITEM_REC_MAX) {
      if (c->rec == NULL && (c->rec = malloc(SS_ITEM_REC_MAX)) == NULL) {
        c->bad = 1;
        return;
      }
      c->rec_len = 0;
      c->rec_want = (size_t)len;
      if (len == 0) look_into(c), c->rec_want = 0;
      return;
    }
  }
  c->skip_to = end;
}

void ss__item_count_feed(ss__item_count *c, const uint8_t *p, size_t n) {
  while (n > 0 && !c->bad) {
    size_t take;
    if (c->rec_want) { /* a small log record being gathered */
      take = c->rec_want - c->rec_len < n ? c->rec_want - c->rec_len : n;
      memcpy(c->rec + c->rec_len, p, take);
      c->rec_len += take;
      if (c->rec_len == c->rec_want) {
        c->rec_want = 0;
        c->pos += take;
        p += take, n -= take;
        look_into(c);
        continue;
      }
    } else if (c->pos < c->skip_to) {
      take = c->skip_to - c->pos < n ? (size_t)(c->skip_to - c->pos) : n;
    } else {
      while (c->head_len == 0 && c->depth > 0 && c->pos == c->end[c->depth]) c->depth--;
      if (c->head_len == 0 && c->pos >= c->end[0]) { /* bytes after the body's end */
        c->bad = 1;
        return;
      }
      uint8_t h[sizeof c->head];
      size_t had = c->head_len, add = sizeof h - had < n ? sizeof h - had : n;
      memcpy(h, c->head, had);
      memcpy(h + had, p, add);
      unsigned no = 0;
      int wt = 0;
      uint64_t len = 0;
      int used = field_head(h, had + add, &no, &wt, &len);
      if (used < 0 || (used == 0 && had + add == sizeof h)) {
        c->bad = 1;
        return;
      }
      if (used == 0) { /* the head goes on in the next piece */
        memcpy(c->head + had, p, add);
        c->head_len += add;
        c->pos += add;
        return;
      }
      take = (size_t)used - had;
      c->head_len = 0;
      c->pos += take;
      p += take, n -= take;
      on_field(c, no, wt, len);
      continue;
    }
    c->pos += take;
    p += take, n -= take;
  }
}

int ss__item_count_end(ss__item_count *c) {
  while (c->depth > 0 && c->pos == c->end[c->depth]) c->depth--;
  int ok = !c->bad && c->depth == 0 && c->head_len == 0 && c->rec_want == 0 &&
           c->pos >= c->skip_to && c->pos == c->end[0];
  free(c->rec);
  c->rec = NULL;
  return ok ? 0 : -1;
}

void ss__item_count_stats(const ss__item_count *c) {
  ss__stats *s = &ss__stats_g;
  if (!c->logs) {
    s->spans_refused += c->items;
    return;
  }
  s->logs_refused += c->items - c->reports;
  s->shim_spans_dropped += c->spans_dropped;
  s->shim_logs_dropped += c->logs_dropped;
  s->shim_drop_reports += c->reports;
}
