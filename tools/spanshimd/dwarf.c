/* dwarf.c - the collector's stage of stack symbolization: file:line from DWARF.
 *
 * The shim writes exception.stacktrace frames as "#N 0xADDR in FUNC (MODULE+0xOFF)" and
 * lists "BUILD-ID PATH" for each module in spanshim.stack.modules. Here, for every frame
 * whose module file on this host has that same build id (so a replaced binary is never
 * mis-symbolized) and debug information (in the file or found by build id under
 * /usr/lib/debug), " FILE:LINE" is appended to the frame, as gdb's `bt` prints it. Runs
 * on the receiver thread; one libdwfl session per module, cached (bounded). */
#include <elfutils/libdwfl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/spanshimd/spanshimd.h"
#include "tools/spanshimd/lazy.h"

/* libdw is opened on the first stack to annotate (tools/spanshimd/lazy.h), never linked. */
#define DW_FNS(X)                                                                        \
  X(dwfl_begin) X(dwfl_end) X(dwfl_report_offline) X(dwfl_report_end)                    \
  X(dwfl_module_build_id) X(dwfl_module_getelf) X(dwfl_module_getsrc) X(dwfl_lineinfo)   \
  X(dwfl_standard_find_debuginfo) X(dwfl_build_id_find_elf) X(dwfl_offline_section_address)
SS_LAZY_TABLE(dw, DW_FNS)
#define dwfl_begin SS_LAZY(dw, dwfl_begin)
#define dwfl_end SS_LAZY(dw, dwfl_end)
#define dwfl_report_offline SS_LAZY(dw, dwfl_report_offline)
#define dwfl_report_end SS_LAZY(dw, dwfl_report_end)
#define dwfl_module_build_id SS_LAZY(dw, dwfl_module_build_id)
#define dwfl_module_getelf SS_LAZY(dw, dwfl_module_getelf)
#define dwfl_module_getsrc SS_LAZY(dw, dwfl_module_getsrc)
#define dwfl_lineinfo SS_LAZY(dw, dwfl_lineinfo)
#define dwfl_standard_find_debuginfo SS_LAZY(dw, dwfl_standard_find_debuginfo)
#define dwfl_build_id_find_elf SS_LAZY(dw, dwfl_build_id_find_elf)
#define dwfl_offline_section_address SS_LAZY(dw, dwfl_offline_section_address)
static const char *const dw_sonames[] = {"libdw.so.1", NULL};

typedef Opentelemetry__Proto__Common__V1__KeyValue kv_t;
typedef Opentelemetry__Proto__Common__V1__AnyValue any_t;

#define MAX_CACHED 64

typedef struct dmod {
  char *path;
  char build_id[41];
  Dwfl *dwfl;        /* NULL: no usable file (missing, other build id) */
  Dwfl_Module *mod;
} dmod;

static dmod cache[MAX_CACHED];
static int n_cache;

/* Strings made here live until the next request (the tree is written out before). */
static char *made[256];
static int n_made;

static void forget_made(void) {
  for (int i = 0; i < n_made; i++) free(made[i]);
  n_made = 0;
}

/* Separate debug files (/usr/lib/debug) are looked up for the app's own modules only: a
 * system library's (libc6-dbg's is 30 MB of DWARF) costs ~100 ms to load cold, while the
 * failing program that sent the stack waits within its exit budget, and a libc frame's
 * file:line is rarely the answer anyone is after. Their frames keep module+offset. */
static int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                          Dwarf_Addr base, const char *file_name, const char *debuglink_file,
                          GElf_Word debuglink_crc, char **debuginfo_file_name) {
  if (file_name && (strncmp(file_name, "/lib/", 5) == 0 || strncmp(file_name, "/usr/lib/", 9) == 0 ||
                    strncmp(file_name, "/lib64/", 7) == 0))
    return -1;
  return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
                                      debuglink_crc, debuginfo_file_name);
}

static Dwfl_Callbacks callbacks = {.find_debuginfo = find_debuginfo}; /* the rest at load */

/* 0 once libdw is there; -1: no file:line (said once on stderr). */
static int load_dw(void) {
  static int failed;
  if (failed) return -1;
  if (SS_LAZY_LOAD(dw, "libdw", dw_sonames) != 0) return failed = -1;
  callbacks.find_elf = dwfl_build_id_find_elf;
  callbacks.section_address = dwfl_offline_section_address;
  return 0;
}

static void hex(const unsigned char *b, int n, char out[41]) {
  if (n > 20) n = 20;
  for (int i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
  out[2 * (n > 0 ? n : 0)] = '\0';
}

/* Answers already looked up, by (module, offset): the stacks of one failing loop repeat
 * the same few frames hundreds of times per request. Direct-mapped; a collision replaces. */
#define LINE_CACHE 1024
static struct {
  const dmod *m;
  unsigned long long off;
  int ok;
  char src[120];
} lines[LINE_CACHE];

static dmod *open_module(const char *path, const char *build_id) {
  for (int i = 0; i < n_cache; i++)
    if (strcmp(cache[i].path, path) == 0 && strcmp(cache[i].build_id, build_id) == 0)
      return &cache[i];
  if (n_cache == MAX_CACHED) { /* full: start over rather than grow */
    memset(lines, 0, sizeof lines); /* its entries name modules about to go */
    for (int i = 0; i < n_cache; i++) {
      if (cache[i].dwfl) dwfl_end(cache[i].dwfl);
      free(cache[i].path);
    }
    n_cache = 0;
  }
  dmod *m = &cache[n_cache];
  memset(m, 0, sizeof *m);
  if ((m->path = strdup(path)) == NULL) return NULL;
  snprintf(m->build_id, sizeof m->build_id, "%s", build_id);
  n_cache++;
  Dwfl *d = dwfl_begin(&callbacks);
  Dwfl_Module *mod = d ? dwfl_report_offline(d, path, path, -1) : NULL;
  if (d) dwfl_report_end(d, NULL, NULL);
  const unsigned char *bits;
  GElf_Addr vaddr;
  char have[41] = "";
  if (mod) hex(bits, dwfl_module_build_id(mod, &bits, &vaddr), have);
  if (mod == NULL || strcmp(have, build_id) != 0) {
    if (d) dwfl_end(d);
    return m; /* cached as unusable */
  }
  m->dwfl = d;
  m->mod = mod;
  return m;
}

static int source_line_uncached(dmod *m, unsigned long long off, char *out, size_t cap);

/* "FILE:LINE" for offset off (a return address) in module m, into out; 0 or -1. */
static int source_line(dmod *m, unsigned long long off, char *out, size_t cap) {
  if (m == NULL || m->dwfl == NULL || off == 0) return -1;
  size_t h = (size_t)((((uintptr_t)m >> 4) ^ off) * 0x9E3779B97F4A7C15ull >> 54) % LINE_CACHE;
  if (lines[h].m == m && lines[h].off == off) {
    if (!lines[h].ok) return -1;
    snprintf(out, cap, "%s", lines[h].src);
    return 0;
  }
  int rc = source_line_uncached(m, off, out, cap);
  lines[h].m = m;
  lines[h].off = off;
  size_t n = rc == 0 ? strlen(out) : 0;
  lines[h].ok = rc == 0 && n < sizeof lines[h].src;
  if (lines[h].ok) memcpy(lines[h].src, out, n + 1);
  return rc;
}

static int source_line_uncached(dmod *m, unsigned long long off, char *out, size_t cap) {
  Dwarf_Addr bias = 0;
  if (dwfl_module_getelf(m->mod, &bias) == NULL) return -1;
  Dwfl_Line *line = dwfl_module_getsrc(m->mod, bias + off - 1); /* inside the call */
  int lineno = 0;
  const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
  if (file == NULL || lineno <= 0) return -1;
  snprintf(out, cap, "%s:%d", file, lineno);
  return 0;
}

static const char *build_id_of(const any_t *mods, const char *path, size_t plen) {
  if (mods == NULL || mods->value_case != OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE ||
      mods->array_value == NULL)
    return NULL;
  static char id[41];
  for (size_t i = 0; i < mods->array_value->n_values; i++) {
    const any_t *v = mods->array_value->values[i];
    const char *s = v->string_value, *sp;
    if (v->value_case != OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE || !s ||
        (sp = strchr(s, ' ')) == NULL || (size_t)(sp - s) > 40)
      continue;
    if (strlen(sp + 1) == plen && strncmp(sp + 1, path, plen) == 0) {
      memcpy(id, s, (size_t)(sp - s));
      id[sp - s] = '\0';
      return id;
    }
  }
  return NULL;
}

/* Rewrites one stack trace; returns the new string (owned by `made`) or NULL. */
static char *annotate(const char *trace, const any_t *mods) {
  size_t cap = strlen(trace) * 2 + 256, o = 0;
  char *out = malloc(cap);
  if (out == NULL || n_made == (int)(sizeof made / sizeof made[0])) {
    free(out);
    return NULL;
  }
  int changed = 0;
  for (const char *p = trace; *p;) {
    const char *nl = strchr(p, '\n');
    size_t n = nl ? (size_t)(nl - p) : strlen(p);
    char src[512] = "";
    const char *open = memchr(p, '(', n), *plus = NULL;
    for (const char *q = p + n; open && q > open; q--)
      if (*q == '+' && q[1] == '0' && q[2] == 'x') {
        plus = q;
        break;
      }
    if (open && plus) {
      const char *id = build_id_of(mods, open + 1, (size_t)(plus - open - 1));
      if (id && strcmp(id, "-") != 0) {
        char path[4096];
        snprintf(path, sizeof path, "%.*s", (int)(plus - open - 1), open + 1);
        source_line(open_module(path, id), strtoull(plus + 3, NULL, 16), src, sizeof src);
      }
    }
    if (o + n + strlen(src) + 3 > cap) break;
    memcpy(out + o, p, n);
    o += n;
    if (src[0]) {
      o += (size_t)snprintf(out + o, cap - o, " %s", src);
      changed = 1;
    }
    if (nl) out[o++] = '\n';
    p += n + (nl != NULL);
  }
  out[o] = '\0';
  if (!changed) {
    free(out);
    return NULL;
  }
  made[n_made++] = out;
  return out;
}

static int annotate_attrs(kv_t **attrs, size_t n) {
  any_t *trace = NULL;
  const any_t *mods = NULL;
  for (size_t i = 0; i < n; i++) {
    if (attrs[i]->key == NULL || attrs[i]->value == NULL) continue;
    if (strcmp(attrs[i]->key, "exception.stacktrace") == 0) trace = attrs[i]->value;
    if (strcmp(attrs[i]->key, "spanshim.stack.modules") == 0) mods = attrs[i]->value;
  }
  if (trace == NULL || mods == NULL || trace->string_value == NULL ||
      trace->value_case != OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
    return 0;
  if (load_dw() != 0) return 0; /* frames keep module+offset */
  char *s = annotate(trace->string_value, mods);
  if (s == NULL) return 0;
  trace->string_value = s; /* the old one belongs to the decoder's arena */
  return 1;
}

int ss__dwarf_annotate_traces(ss__traces_req *q) {
  int changed = 0;
  forget_made();
  for (size_t r = 0; r < q->n_resource_spans; r++)
    for (size_t s = 0; s < q->resource_spans[r]->n_scope_spans; s++) {
      Opentelemetry__Proto__Trace__V1__ScopeSpans *ss = q->resource_spans[r]->scope_spans[s];
      for (size_t k = 0; k < ss->n_spans; k++)
        for (size_t e = 0; e < ss->spans[k]->n_events; e++)
          changed += annotate_attrs(ss->spans[k]->events[e]->attributes,
                                    ss->spans[k]->events[e]->n_attributes);
    }
  return changed;
}

int ss__dwarf_annotate_logs(ss__logs_req *q) {
  int changed = 0;
  forget_made();
  for (size_t r = 0; r < q->n_resource_logs; r++)
    for (size_t s = 0; s < q->resource_logs[r]->n_scope_logs; s++) {
      Opentelemetry__Proto__Logs__V1__ScopeLogs *sl = q->resource_logs[r]->scope_logs[s];
      for (size_t k = 0; k < sl->n_log_records; k++)
        changed += annotate_attrs(sl->log_records[k]->attributes,
                                  sl->log_records[k]->n_attributes);
    }
  return changed;
}

void ss__dwarf_free(void) {
  forget_made();
  for (int i = 0; i < n_cache; i++) {
    if (cache[i].dwfl) dwfl_end(cache[i].dwfl);
    free(cache[i].path);
  }
  n_cache = 0;
}
