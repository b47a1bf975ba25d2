/* console.c - the `console` exporter (see console.h). */
#include "runtime/console.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/utf8.h"

#define LINE_BYTES 16384

typedef struct out {
  char *p;
  size_t n, cap;
  size_t safe; /* the line up to its last whole top-level field */
  int full;    /* something did not fit: the line ends at `safe`, marked "truncated" */
} out;

/* After each whole top-level field: where a cut line may end. */
static void mark(out *o) {
  if (!o->full) o->safe = o->n;
}

static void put(out *o, const char *s, size_t n) {
  if (o->full || o->n + n > o->cap - 32) { /* keep room for the closing marks */
    o->full = 1;
    return;
  }
  memcpy(o->p + o->n, s, n);
  o->n += n;
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

/* A JSON string: quotes, backslashes and control characters escaped, bytes that are not
 * valid UTF-8 written as U+FFFD (as the OTLP encoder does), so every line is valid JSON. */
static void jstr(out *o, const char *s, size_t n) {
  char esc[8];
  put(o, "\"", 1);
  for (size_t i = 0; i < n && !o->full;) {
    unsigned char c = (unsigned char)s[i];
    size_t k = c < 0x80 ? 1 : ss__utf8_seq((const unsigned char *)s + i, n - i);
    if (k == 0) {
      put(o, "\xef\xbf\xbd", 3);
      k = 1;
    } else if (c == '"' || c == '\\') {
      esc[0] = '\\', esc[1] = (char)c;
      put(o, esc, 2);
    } else if (c < 0x20 || c == 0x7f) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(o, esc, 6);
    } else {
      put(o, s + i, k);
    }
    i += k;
  }
  put(o, "\"", 1);
}

static void jhex(out *o, const uint8_t *id, size_t n) {
  char hex[33];
  ss__hex_encode(id, n, hex);
  hex[2 * n] = '\0';
  jstr(o, hex, 2 * n);
}

/* ,"traceId":"…","spanId":"…" as two whole fields. */
static void jids(out *o, const uint8_t trace_id[16], const uint8_t span_id[8]) {
  mark(o);
  puts_(o, ",\"traceId\":");
  jhex(o, trace_id, 16);
  mark(o);
  puts_(o, ",\"spanId\":");
  jhex(o, span_id, 8);
}

static void jnum(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jnum(out *o, const char *fmt, ...) {
  char buf[192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) put(o, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void jattrs(out *o, const ss__attr *a, size_t n) {
  int first = 1;
  put(o, "{", 1);
  for (size_t i = 0; i < n; i++) {
    if (a[i].type == SS_ATTR_STACK) continue; /* raw addresses: the exception has the text */
    if (!first) put(o, ",", 1);
    first = 0;
    jstr(o, a[i].key, strlen(a[i].key));
    put(o, ":", 1);
    switch (a[i].type) {
      case SS_ATTR_STR: jstr(o, a[i].v.s, a[i].len); break;
      case SS_ATTR_INT: jnum(o, "%" PRId64, a[i].v.i); break;
      case SS_ATTR_BOOL: puts_(o, a[i].v.i ? "true" : "false"); break;
      case SS_ATTR_DOUBLE: jnum(o, "%.17g", a[i].v.d); break;
      case SS_ATTR_STRARR: { /* NUL-separated items */
        put(o, "[", 1);
        for (size_t k = 0, first = 1; k < a[i].len; first = 0) {
          size_t l = strnlen(a[i].v.s + k, a[i].len - k);
          if (!first) put(o, ",", 1);
          jstr(o, a[i].v.s + k, l);
          k += l + 1;
        }
        put(o, "]", 1);
        break;
      }
      default: puts_(o, "null");
    }
  }
  put(o, "}", 1);
}

static void jresource(out *o, const ss__resource *res) {
  static const char *const keep[] = {"service.name", "process.pid"};
  ss__attr a[2];
  size_t n = 0;
  for (size_t k = 0; k < 2 && res != NULL; k++)
    for (size_t i = 0; i < res->n_attrs; i++)
      if (strcmp(res->attrs[i].key, keep[k]) == 0) a[n++] = res->attrs[i];
  puts_(o, "\"resource\":");
  jattrs(o, a, n);
}

/* Closes the line (cut back to its last whole field when something did not fit) and
 * writes it. */
static void emit(out *o) {
  int cut = o->full;
  if (cut) o->n = o->safe;
  o->full = 0;
  puts_(o, cut ? ",\"truncated\":true}}\n" : "}}\n");
  ss__log_line(o->p, o->n);
}

static const char *const kinds[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                    "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                    "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};

void ss__console_spans(const ss__resource *res, const ss__span *spans, size_t n) {
  char buf[LINE_BYTES];
  for (size_t i = 0; i < n; i++) {
    const ss__span *s = &spans[i];
    out o = {buf, 0, sizeof buf, 0, 0};
    puts_(&o, "{\"span\":{\"name\":");
    jstr(&o, s->name ? s->name : "", s->name ? strlen(s->name) : 0);
    jids(&o, s->trace_id, s->span_id);
    if (!ss__id_is_zero(s->parent_id, 8)) {
      puts_(&o, ",\"parentSpanId\":");
      jhex(&o, s->parent_id, 8);
    }
    if (s->trace_state_len) {
      puts_(&o, ",\"traceState\":");
      jstr(&o, s->trace_state, s->trace_state_len);
    }
    mark(&o);
    jnum(&o, ",\"flags\":%u,\"kind\":\"%s\"", s->flags, kinds[s->kind < 6 ? s->kind : 0]);
    jnum(&o, ",\"startTimeUnixNano\":\"%" PRIu64 "\",\"endTimeUnixNano\":\"%" PRIu64
         "\",\"durationNs\":%" PRIu64, s->start_ns, s->end_ns,
         s->end_ns > s->start_ns ? s->end_ns - s->start_ns : 0);
    mark(&o);
    jnum(&o, ",\"status\":{\"code\":\"%s\"", s->status == SS_STATUS_ERROR ? "STATUS_CODE_ERROR"
                                             : s->status == SS_STATUS_OK  ? "STATUS_CODE_OK"
                                                                          : "STATUS_CODE_UNSET");
    if (s->status_message) {
      puts_(&o, ",\"message\":");
      jstr(&o, s->status_message, s->status_message_len);
    }
    puts_(&o, "}");
    mark(&o);
    puts_(&o, ",\"attributes\":");
    jattrs(&o, s->attrs, s->n_attrs);
    mark(&o);
    if (s->n_events) {
      puts_(&o, ",\"events\":[");
      for (size_t e = 0; e < s->n_events; e++) {
        if (e) puts_(&o, ",");
        puts_(&o, "{\"name\":");
        jstr(&o, s->events[e].name, strlen(s->events[e].name));
        puts_(&o, ",\"attributes\":");
        jattrs(&o, s->events[e].attrs, s->events[e].n_attrs);
        puts_(&o, "}");
      }
      puts_(&o, "]");
    }
    mark(&o);
    puts_(&o, ",");
    jresource(&o, res);
    emit(&o);
  }
}

void ss__console_logs(const ss__resource *res, const ss__logrec *logs, size_t n) {
  char buf[LINE_BYTES];
  for (size_t i = 0; i < n; i++) {
    const ss__logrec *l = &logs[i];
    out o = {buf, 0, sizeof buf, 0, 0};
    puts_(&o, "{\"log\":{\"eventName\":");
    jstr(&o, l->event_name ? l->event_name : "", l->event_name ? strlen(l->event_name) : 0);
    jnum(&o, ",\"timeUnixNano\":\"%" PRIu64 "\",\"severityNumber\":%d", l->time_ns,
         l->severity);
    jids(&o, l->trace_id, l->span_id);
    mark(&o);
    puts_(&o, ",\"attributes\":");
    jattrs(&o, l->attrs, l->n_attrs);
    mark(&o);
    puts_(&o, ",");
    jresource(&o, res);
    emit(&o);
  }
}
