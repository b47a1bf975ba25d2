/* perfetto.c - Chrome trace event JSON of a span model; see perfetto.h. */
#include "tools/common/perfetto.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/common/buf.h"
#include "tools/common/otlp_json.h"

#define MAX_LANES 64               /* tracks per trace; deeper overlaps share the last */

/* A process as Perfetto shows it: one per pid. A pid that exec'd has one resource per
 * image (generation 0, 1, ... by first span); each keeps its own tracks. */
typedef struct proc {
  long pid;          /* process.pid, else one number per resource */
  int gen;           /* exec generation within the pid */
  int gens;          /* how many generations the pid has */
  uint64_t first;    /* earliest span start of this resource */
} proc;

static const proc *g_procs;  /* qsort has no context argument */

static int cmp_spans(const void *a, const void *b) {
  const ss__tm_span *x = *(const ss__tm_span *const *)a, *y = *(const ss__tm_span *const *)b;
  const proc *px = &g_procs[x->res->idx], *py = &g_procs[y->res->idx];
  if (px->pid != py->pid) return px->pid < py->pid ? -1 : 1;
  if (px->gen != py->gen) return px->gen < py->gen ? -1 : 1;
  int c = strcmp(x->trace_id, y->trace_id);
  if (c) return c;
  if (x->start_ns != y->start_ns) return x->start_ns < y->start_ns ? -1 : 1;
  return ss__tm_end(x) > ss__tm_end(y) ? -1 : ss__tm_end(x) < ss__tm_end(y) ? 1 : 0;  /* parents first */
}

static void jw_cstr(ss__buf *b, const char *s) { ss__jw_str(b, s ? s : "", s ? strlen(s) : 0); }

static int cmp_gen(const void *a, const void *b) {
  const proc *x = *(const proc *const *)a, *y = *(const proc *const *)b;
  if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
  return x->first < y->first ? -1 : x->first > y->first;
}

/* Fills procs[m->n_res]: pid, and exec generations ordered by first span. 0 or -ENOMEM. */
static int number_procs(const ss__tm *m, proc *procs) {
  for (size_t i = 0; i < m->n_res; i++) {
    const ss__tm_attr *a = ss__tm_res_attr(m->res[i], "process.pid");
    procs[i].pid = a && a->type == SS_TM_INT && a->i > 0 && a->i < 1000000000L
                       ? (long)a->i
                       : 1000000000L + (long)i;
    procs[i].first = UINT64_MAX;
  }
  for (size_t i = 0; i < m->n_spans; i++) {
    proc *p = &procs[m->spans[i].res->idx];
    if (m->spans[i].start_ns < p->first) p->first = m->spans[i].start_ns;
  }
  const proc **order = malloc((m->n_res ? m->n_res : 1) * sizeof(*order));
  if (!order) return -ENOMEM;
  for (size_t i = 0; i < m->n_res; i++) order[i] = &procs[i];
  qsort(order, m->n_res, sizeof(*order), cmp_gen);
  for (size_t i = 0; i < m->n_res;) {
    size_t j = i;
    for (; j < m->n_res && order[j]->pid == order[i]->pid; j++)
      ((proc *)order[j])->gen = (int)(j - i);
    for (size_t k = i; k < j; k++) ((proc *)order[k])->gens = (int)(j - i);
    i = j;
  }
  free(order);
  return 0;
}

/* A resource's short name: the executable, else the service. */
static const char *image_name(const ss__tm_resource *r) {
  const ss__tm_attr *a = ss__tm_res_attr(r, "process.executable.name");
  if (!a) a = ss__tm_res_attr(r, "service.name");
  return a ? a->text : "?";
}

/* The process_name of a pid: its service, and with exec'd images "sh → curl". */
static void process_name(ss__buf *b, const ss__tm *m, const proc *procs, long pid) {
  const ss__tm_resource *gen[16];
  int n = 0;
  for (size_t i = 0; i < m->n_res; i++)
    if (procs[i].pid == pid && procs[i].gen < 16 && procs[i].first != UINT64_MAX) {
      gen[procs[i].gen] = m->res[i];
      if (procs[i].gen + 1 > n) n = procs[i].gen + 1;
    }
  ss__buf name = SS_BUF_INIT;
  if (n <= 1) {
    const ss__tm_attr *svc = n ? ss__tm_res_attr(gen[0], "service.name") : NULL;
    ss__buf_puts(&name, svc ? svc->text : "unknown service");
  } else {
    for (int i = 0; i < n; i++) {
      if (i) ss__buf_puts(&name, " → ");
      ss__buf_puts(&name, gen[i] ? image_name(gen[i]) : "?");
    }
  }
  ss__buf_printf(b, "{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":%ld,\"tid\":0,\"args\":"
                    "{\"name\":", pid);
  ss__jw_str(b, name.data ? name.data : "", name.len);
  SS_BUF_LIT(b, "}},\n");
  if (ss__buf_error(&name)) b->oom = 1;
  ss__buf_free(&name);
}

/* A double's text as a JSON number when it is one ("0.5", "1e-3"), else as a string
 * (".5", "NaN", "Infinity" are not JSON numbers). */
static void jw_double(ss__buf *b, const char *t) {
  char *end;
  double d = strtod(t, &end);
  if (end != t && *end == '\0' && isfinite(d)) {
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.17g", d);
    if (strtod(tmp, NULL) == d) {
      char shorter[40];
      snprintf(shorter, sizeof(shorter), "%.15g", d);
      if (strtod(shorter, NULL) == d) memcpy(tmp, shorter, sizeof(tmp));
    }
    ss__buf_puts(b, tmp);  /* %g never writes ".5", "5." or a leading '+' */
  } else {
    jw_cstr(b, t);
  }
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
  jw_us(b, ss__tm_end(s) - s->start_ns);
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
    if (s->attrs[i].type == SS_TM_INT)
      ss__buf_puts(b, t);
    else if (s->attrs[i].type == SS_TM_DOUBLE)
      jw_double(b, t);
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
  proc *procs = calloc(m->n_res ? m->n_res : 1, sizeof(*procs));
  ss__buf b = SS_BUF_INIT;
  if (!sp || !procs || number_procs(m, procs) < 0) {
    free(sp);
    free(procs);
    return -ENOMEM;
  }
  uint64_t t0 = UINT64_MAX;
  for (size_t i = 0; i < n; i++) {
    sp[i] = &m->spans[i];
    if (sp[i]->start_ns < t0) t0 = sp[i]->start_ns;
  }
  g_procs = procs;
  qsort(sp, n, sizeof(*sp), cmp_spans);
  SS_BUF_LIT(&b, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"source\":\"spanshim\"},\n"
                 "\"traceEvents\":[\n");
  long next_tid = 1, last_pid = -1;
  for (size_t i = 0; i < n;) {
    const ss__tm_span *first = sp[i];
    const proc *pr = &procs[first->res->idx];
    long pid = pr->pid;
    if (pid != last_pid) {
      process_name(&b, m, procs, pid);
      last_pid = pid;
    }
    /* One trace of one process image: lanes keep spans nested, stacked by end time. */
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
        if (depth[lane] == 0 || (stack[lane][depth[lane] - 1] >= ss__tm_end(s) && depth[lane] < 32))
          break;
      }
      if (lane == lanes) {
        if (lanes < MAX_LANES) {
          char name[160];
          if (pr->gens > 1)
            snprintf(name, sizeof name, "%.60s (exec %d) · trace %.8s%s", image_name(s->res),
                     pr->gen, s->trace_id, lanes ? " (overlap)" : "");
          else
            snprintf(name, sizeof name, "trace %.8s%s", s->trace_id, lanes ? " (overlap)" : "");
          meta(&b, "thread_name", pid, base + (long)lanes, name);
          lanes++;
        } else {
          lane = MAX_LANES - 1;
        }
      }
      if (depth[lane] < 32) stack[lane][depth[lane]++] = ss__tm_end(s);
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
  free(procs);
  return rc;
}
