/* resource.c - the OTel resource of this process (see resource.h).
 *
 * Precedence, lowest first: what we detect (host.name, process.executable.name), then
 * OTEL_RESOURCE_ATTRIBUTES (a later duplicate key wins), then OTEL_SERVICE_NAME, then what
 * only we can know (process.pid, telemetry.sdk.*). telemetry.sdk.language is left out:
 * the semantic conventions have no value for C.
 *
 * Memory: r->attrs is one array; every string we produce lives in r->storage, one block
 * laid out as [OTEL_RESOURCE_ATTRIBUTES decoded in place][service name][exe][host]. Keys
 * and fixed values are string literals. */
#include "runtime/resource.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/kv.h"
#include "runtime/log.h"

#define UNKNOWN_SERVICE "unknown_service:"
#define FIXED_ATTRS 7 /* service.name, pid, exe, host, sdk.name, sdk.version, spare */

static void set_attr(ss__resource *r, const char *key, const ss__attr *a) {
  size_t i;

  for (i = 0; i < r->n_attrs; i++)
    if (strcmp(r->attrs[i].key, key) == 0)
      break;
  r->attrs[i] = *a;
  r->attrs[i].key = key;
  if (i == r->n_attrs)
    r->n_attrs++;
}

static void set_str(ss__resource *r, const char *key, const char *v) {
  ss__attr a = {.type = SS_ATTR_STR, .len = (uint32_t)strlen(v), .v.s = v};
  set_attr(r, key, &a);
}

static const char *find_str(const ss__resource *r, const char *key) {
  for (size_t i = 0; i < r->n_attrs; i++)
    if (strcmp(r->attrs[i].key, key) == 0 && r->attrs[i].type == SS_ATTR_STR)
      return r->attrs[i].v.s;
  return NULL;
}

static int add_attr(void *r, const char *key, size_t klen, const char *value, size_t vlen) {
  (void)klen, (void)vlen;
  set_str(r, key, value);
  return 0;
}

/* Parses the copy of OTEL_RESOURCE_ATTRIBUTES in `s` (modified in place). */
static void parse_env_attrs(ss__resource *r, char *s, const char *raw) {
  int bad = ss__kv_parse(s, add_attr, r);

  if (bad > 0)
    SS_LOG(SS_LOG_WARN, "OTEL_RESOURCE_ATTRIBUTES=\"%.64s%s\" has %d malformed entr%s "
           "(want key=value, percent-encoded); skipping %s", raw,
           strlen(raw) > 64 ? "..." : "", bad, bad == 1 ? "y" : "ies",
           bad == 1 ? "it" : "them");
}

static void copy_trunc(char *out, size_t n, const char *s) {
  size_t len = strlen(s);

  if (len >= n)
    len = n - 1;
  memcpy(out, s, len);
  out[len] = '\0';
}

static void exe_name(char *out, size_t n) {
  char path[4096];
  ssize_t len = readlink("/proc/self/exe", path, sizeof(path) - 1);
  const char *base;

  if (len <= 0) {
    copy_trunc(out, n, program_invocation_short_name);
    return;
  }
  path[len] = '\0';
  /* The kernel marks a replaced or removed binary; the name is still the one that ran. */
  if (len > 10 && strcmp(path + len - 10, " (deleted)") == 0)
    path[len - 10] = '\0';
  base = strrchr(path, '/');
  copy_trunc(out, n, base != NULL ? base + 1 : path);
}

static size_t count_entries(const char *s) {
  size_t n = 1;
  for (; s != NULL && *s; s++)
    n += *s == ',';
  return n;
}

int ss__resource_build(ss__resource *r, const ss__config *c) {
  const char *raw = c->resource_attributes != NULL ? c->resource_attributes : "";
  size_t raw_len = strlen(raw), exe_len, host_len, svc_len;
  char exe[256], host[256], *svc, *ex, *ho;
  ss__attr pid;

  memset(r, 0, sizeof(*r));
  exe_name(exe, sizeof(exe));
  if (gethostname(host, sizeof(host)) != 0)
    host[0] = '\0';
  host[sizeof(host) - 1] = '\0';
  exe_len = strlen(exe);
  host_len = strlen(host);
  svc_len = c->service_name != NULL ? strlen(c->service_name) : 0;
  if (svc_len < sizeof(UNKNOWN_SERVICE) - 1 + exe_len)
    svc_len = sizeof(UNKNOWN_SERVICE) - 1 + exe_len;

  r->attrs = calloc(count_entries(raw) + FIXED_ATTRS, sizeof(ss__attr));
  r->storage = malloc(raw_len + 1 + svc_len + 1 + exe_len + 1 + host_len + 1);
  if (r->attrs == NULL || r->storage == NULL) {
    ss__resource_free(r);
    return -ENOMEM;
  }
  svc = r->storage + raw_len + 1;
  ex = svc + svc_len + 1;
  ho = ex + exe_len + 1;
  memcpy(ex, exe, exe_len + 1);
  memcpy(ho, host, host_len + 1);

  if (host[0] != '\0')
    set_str(r, "host.name", ho);
  set_str(r, "process.executable.name", ex);
  memcpy(r->storage, raw, raw_len + 1);
  parse_env_attrs(r, r->storage, raw);
  if (c->service_name != NULL)
    strcpy(svc, c->service_name);
  else if (find_str(r, "service.name") == NULL || find_str(r, "service.name")[0] == '\0')
    snprintf(svc, svc_len + 1, UNKNOWN_SERVICE "%s", exe);
  else
    svc = NULL;
  if (svc != NULL)
    set_str(r, "service.name", svc);
  pid = (ss__attr){.type = SS_ATTR_INT, .v.i = (int64_t)getpid()};
  set_attr(r, "process.pid", &pid);
  set_str(r, "telemetry.sdk.name", "spanshim");
  set_str(r, "telemetry.sdk.version", SPANSHIM_VERSION);
  return 0;
}

void ss__resource_free(ss__resource *r) {
  free(r->attrs);
  free(r->storage);
  memset(r, 0, sizeof(*r));
}
