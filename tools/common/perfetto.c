/* perfetto.c - Chrome trace event JSON of a span model; see perfetto.h. */
#include "tools/common/perfetto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/buf.h"
#include "tools/common/otlp_json.h"

#define MAX_LANES 64               /* tracks per trace; deeper overlaps share the last */

static uint64_t end_of(const ss__tm_span *s) {
  return s->end_ns >= s->start_ns ? s->end_ns : s->start_ns;
}

static int cmp_spans(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  int c = x->res != y->res ? (x->res < y->res ? -1 : 1) : strcmp(x->trace_id, y->trace_id);
  if (c) return c;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return end_of(x) > end_of(y) ? -1 : end_of(x) < end_of(y) ? 1 : 0;  /* parents first */
}

static void jw_cstr(ss__buf *b, const char *s) { ss__jw_str(b, s ? s : "", s ? strlen(s) : 0); }

static long pid_of(const ss__tm *m, const ss__tm_resource *r) {
  const ss__tm_attr *a = ss__tm_res_attr(r, "process.pid");
  if (a && a->type == SS_TM_INT && a->i > 0) return (long)a->i;
  for (size_t i = 0; i < m->n_res; i++)
    if (m->res[i] == r) return 1000000000L + (long)i;  /* no pid: one per resource */
  return 999999999L;
}

/* Microseconds with the nanoseconds as three decimals. */
static void jw_us(ss__buf *b, uint64_t ns) {
  ss__buf_printf(b, "%llu.%03llu", (unsigned long long)(ns / 1000),
                 (unsigned long long)(ns % 1000));
}

static void meta(ss__buf *b, const char *what, long pid, long tid, const char *name) {
  ss__buf_printf(b, "{\"ph\":\"M\",\"name\":\"%s\",\"pid\":%ld,\"tid\":%ld,\"args\":{\"name\":",
                 what, pid, tid);
  jw_cstr(b, name);
  SS_BUF_LIT(b, "}},\n");
}

static const char *const kinds[] = {"unspecified", "internal", "server", "client", "producer",
                                    "consumer"};

static void event(ss__buf *b, const ss__tm_span *s, long pid, long tid, uint64_t t0) {
  SS_BUF_LIT(b, "{\"ph\":\"X\",\"name\":");
  jw_cstr(b, s->name);
  SS_BUF_LIT(b, ",\"cat\":");
  jw_cstr(b, s->kind >= 0 && s->kind <= 5 ? kinds[s->kind] : "unspecified");
  ss__buf_printf(b, ",\"pid\":%ld,\"tid\":%ld,\"ts\":", pid, tid);
  jw_us(b, s->start_ns - t0);
  SS_BUF_LIT(b, ",\"dur\":");
  jw_us(b, end_of(s) - s->start_ns);
  SS_BUF_LIT(b, ",\"args\":{\"trace_id\":");
  jw_cstr(b, s->trace_id);
  SS_BUF_LIT(b, ",\"span_id\":");
  jw_cstr(b, s->span_id);
  if (s->parent_id[0]) {
    SS_BUF_LIT(b, ",\"parent_id\":");
    jw_cstr(b, s->parent_id);
  }
  if (s->status == 2) {
    SS_BUF_LIT(b, ",\"status\":\"ERROR\"");
    if (s->status_message) {
      SS_BUF_LIT(b, ",\"status_message\":");
      jw_cstr(b, s->status_message);
    }
  }
  for (size_t i = 0; i < s->n_attrs; i++) {
    ss__buf_putc(b, ',');
    jw_cstr(b, s->attrs[i].key);
    ss__buf_putc(b, ':');
    const char *t = s->attrs[i].text;
    if (s->attrs[i].type == SS_TM_INT ||
        (s->attrs[i].type == SS_TM_DOUBLE && t[0] && strspn(t, "0123456789.-+eE") == strlen(t)))
      ss__buf_puts(b, t);
    else if (s->attrs[i].type == SS_TM_BOOL)
      ss__buf_puts(b, s->attrs[i].i ? "true" : "false");
    else
      jw_cstr(b, s->attrs[i].text);
  }
  SS_BUF_LIT(b, "}},\n");
}

int ss__perfetto_write(FILE *out, const ss__tm *m) {
  size_t n = m->n_spans;
  const ss__tm_span **sp = malloc((n ? n : 1) * sizeof(*sp));
  ss__buf b = SS_BUF_INIT;
  if (!sp) return -ENOMEM;
  uint64_t t0 = UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    sp[i] = &m->spans[i];
    if (sp[i]->start_ns < t0) t0 = sp[i]->start_ns;
  }
  qsort(sp, n, sizeof(*sp), cmp_spans);
  SS_BUF_LIT(&b, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"source\":\"spanshim\"},\n"
                 "\"traceEvents\":[\n");
  long next_tid = 1;
  const ss__tm_resource *last_res = NULL;
  for (size_t i = 0; i < n;) {
    const ss__tm_span *first = sp[i];
    long pid = pid_of(m, first->res);
    if (first->res != last_res) {
      const ss__tm_attr *svc = ss__tm_res_attr(first->res, "service.name");
      meta(&b, "process_name", pid, 0, svc ? svc->text : "unknown service");
      last_res = first->res;
    }
    /* One trace of one process: lanes keep spans nested, stacked by end time. */
    uint64_t stack[MAX_LANES][32];
    size_t depth[MAX_LANES] = {0}, lanes = 0;
    long base = next_tid;
    size_t j = i;
    for (; j < n && sp[j]->res == first->res && strcmp(sp[j]->trace_id, first->trace_id) == 0;
         j++) {
      const ss__tm_span *s = sp[j];
      size_t lane = 0;
      for (; lane < lanes; lane++) {
        while (depth[lane] && stack[lane][depth[lane] - 1] <= s->start_ns) depth[lane]--;
        if (depth[lane] == 0 || (stack[lane][depth[lane] - 1] >= end_of(s) && depth[lane] < 32))
          break;
      }
      if (lane == lanes) {
        if (lanes < MAX_LANES) {
          char name[64];
          snprintf(name, sizeof name, "trace %.8s%s", s->trace_id, lanes ? " (overlap)" : "");
          meta(&b, "thread_name", pid, base + (long)lanes, name);
          lanes++;
        } else {
          lane = MAX_LANES - 1;
        }
      }
      if (depth[lane] < 32) stack[lane][depth[lane]++] = end_of(s);
      event(&b, s, pid, base + (long)lane, t0);
    }
    next_tid = base + (long)lanes;
    i = j;
  }
  if (n) b.len -= 2;  /* the last ",\n" */
  SS_BUF_LIT(&b, "\n]}\n");
  int rc = ss__buf_error(&b);
  if (rc == 0 && (fwrite(b.data, 1, b.len, out) != b.len || fflush(out) != 0)) rc = -EIO;
  ss__buf_free(&b);
  free(sp);
  return rc;
}
