/* resource.c - the OTel resource of this process (see resource.h).
 *
 * Precedence, lowest first: what we detect (host.name, process.executable.name), then
 * OTEL_RESOURCE_ATTRIBUTES (a later duplicate key wins; one malformed entry discards the
 * whole value, as the SDK environment-variable spec says), then OTEL_SERVICE_NAME, then
 * what only we can know (process.pid, process.creation.time, process.command,
 * service.instance.id, telemetry.sdk.*).
 *
 * telemetry.sdk.language: the semantic conventions' list (cpp, dotnet, erlang, go, java,
 * nodejs, php, python, ruby, rust, swift, webjs) has no value for C; "cpp" is the closest
 * documented one (native code, the same ABI and tooling), so backends that group by
 * language put us with native SDKs. service.instance.id is a random UUID (version 4) per
 * process, the same in every resource the process builds: a fork child, being another
 * process, gets its own.
 *
 * Memory: r->attrs is one array; every string we produce lives in r->storage, one block
 * laid out as [OTEL_RESOURCE_ATTRIBUTES decoded in place][service name][exe][host]
 * [instance id][creation time]. Keys and fixed values are string literals. */
#include "runtime/resource.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "runtime/kv.h"
#include "runtime/log.h"
#include "runtime/ownfd.h"
#include "runtime/sys.h"

#define UNKNOWN_SERVICE "unknown_service:"
/* service.name, pid, exe, host, command, creation.time, instance.id, sdk.name,
 * sdk.language, sdk.version, spare */
#define FIXED_ATTRS 11
#define UUID_LEN 36
#define ISO_LEN 30 /* 2026-11-30T17:20:01.123456789Z */

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

static int count_only(void *arg, const char *key, size_t klen, const char *value, size_t vlen) {
  (void)arg, (void)key, (void)klen, (void)value, (void)vlen;
  return 0;
}

/* Parses the copy of OTEL_RESOURCE_ATTRIBUTES in `s` (modified in place). The spec: "in
 * case of any error ... the entire environment variable value SHOULD be discarded". So a
 * first pass over a scratch copy (s itself, restored from raw) only counts bad entries. */
static void parse_env_attrs(ss__resource *r, char *s, const char *raw) {
  int bad = ss__kv_parse(s, count_only, NULL);

  strcpy(s, raw);
  if (bad == 0) {
    ss__kv_parse(s, add_attr, r);
    return;
  }
  SS_LOG(SS_LOG_WARN, "OTEL_RESOURCE_ATTRIBUTES=\"%.64s%s\" has %d malformed entr%s "
         "(want name=value pairs, percent-encoded); discarding the whole value, as the OTel "
         "SDK spec requires", raw, strlen(raw) > 64 ? "..." : "", bad, bad == 1 ? "y" : "ies");
}

/* This process's service.instance.id: made once per process (pid) and kept, so the
 * exporter thread and an exit or a dying thread on another thread, each building its
 * resource, send the same one; a fork child (another pid) makes its own.
 * Async-signal-safe: an atomic claim, never a wait (a thread interrupted while writing the
 * id leaves the handler to use a fresh one, once). */
static char proc_id[UUID_LEN + 1];
static pid_t proc_id_pid; /* whose id proc_id holds; -1 while it is written */

static void uuid_v4(char out[UUID_LEN + 1]);

static void instance_id(char out[UUID_LEN + 1], pid_t me) {
  pid_t have = __atomic_load_n(&proc_id_pid, __ATOMIC_ACQUIRE);
  if (have == me) {
    memcpy(out, proc_id, sizeof proc_id);
    return;
  }
  uuid_v4(out);
  if (have != -1 &&
      __atomic_compare_exchange_n(&proc_id_pid, &have, -1, 0, __ATOMIC_ACQ_REL,
                                  __ATOMIC_ACQUIRE)) {
    memcpy(proc_id, out, sizeof proc_id);
    __atomic_store_n(&proc_id_pid, me, __ATOMIC_RELEASE);
  } else if (have == me) { /* another thread of ours made it first */
    memcpy(out, proc_id, sizeof proc_id);
  }
}

/* A random UUID, version 4 (RFC 9562), as 36 characters and a NUL. */
static void uuid_v4(char out[UUID_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char b[16];
  size_t o = 0;

  if (ss__sys_getrandom(b, sizeof b, GRND_NONBLOCK) != (ssize_t)sizeof b) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ss__sys_getpid() << 17;
    for (size_t i = 0; i < sizeof b; i++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: unique enough, not secret */
      b[i] = (unsigned char)x;
    }
  }
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
}

/* A whole small file into buf (NUL-terminated); bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
  int fd = ss__own_open_brief(path, O_RDONLY);
  ssize_t n;

  if (fd < 0) return -1;
  n = ss__sys_read(fd, buf, cap - 1);
  ss__own_close_brief(fd);
  if (n >= 0) buf[n] = '\0';
  return n;
}

static void copy_trunc(char *out, size_t n, const char *s);

/* A fork child's start: the clock read by the parent just before the fork
 * (ss__resource_atfork_prepare, into fork_at), kept by the child (ss__resource_forked). */
static struct timespec forked_at, fork_at;
static pid_t forked_pid;

void ss__resource_atfork_prepare(void) {
  clock_gettime(CLOCK_REALTIME, &fork_at);
}

SS_FORK_TEXT void ss__resource_forked(void) {
  forked_at = fork_at;
  forked_pid = ss__sys_getpid();
}

/* secs.ms (after 1970) as ISO 8601 UTC with milliseconds. The civil date is worked out
 * here (days to year/month/day, H. Hinnant's algorithm): glibc's gmtime_r reads the time
 * zone file first, a /etc/localtime open in every fork child. */
static void iso_utc(char out[ISO_LEN + 1], time_t secs, unsigned long ms) {
  char buf[96];
  long long days = (long long)secs / 86400, rem = (long long)secs % 86400;
  long long z = days + 719468, era = z / 146097;
  long long doe = z - era * 146097, yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  long long d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
  long long y = yoe + era * 400 + (m <= 2);
  /* Digits by hand: printf's code is pages a fork child would fault in for this. */
  long long f[7] = {y, m, d, rem / 3600, rem / 60 % 60, rem % 60, (long long)(ms % 1000)};
  static const char sep[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
  static const int width[7] = {4, 2, 2, 2, 2, 2, 3};
  size_t o = 0;
  if (y < 0 || y > 9999) {
    out[0] = '\0';
    return;
  }
  for (int i = 0; i < 7; i++) {
    for (int k = width[i] - 1; k >= 0; k--, f[i] /= 10) buf[o + (size_t)k] = (char)('0' + f[i] % 10);
    o += (size_t)width[i];
    buf[o++] = sep[i];
  }
  buf[o] = '\0';
  copy_trunc(out, ISO_LEN + 1, buf);
}

/* When this process started (semconv process.creation.time, ISO 8601 UTC): its start time
 * in clock ticks after boot (/proc/self/stat field 22) plus the boot time, which is the
 * real-time clock less the boot-time clock read now (/proc/stat's btime is the same,
 * in whole seconds, and one more file to read in every process); in a fork child, the
 * fork's time (a short-lived child reads no /proc file). Empty when /proc cannot tell. */
static void creation_time_from_proc(char out[ISO_LEN + 1]);

static void creation_time(char out[ISO_LEN + 1], pid_t me) {
  out[0] = '\0';
  if (forked_pid != 0 && forked_pid == me) {
    iso_utc(out, forked_at.tv_sec, (unsigned long)(forked_at.tv_nsec / 1000000));
    return;
  }
  creation_time_from_proc(out);
}

/* Apart from creation_time so that a fork child neither runs sysconf (a page of libc's
 * code) nor touches a stack page more for the 4 KiB buffer. */
static __attribute__((noinline)) void creation_time_from_proc(char out[ISO_LEN + 1]) {
  char buf[4096], *p;
  unsigned long long ticks = 0;
  struct timespec real, boot;
  long hz = sysconf(_SC_CLK_TCK);
  int field;

  if (hz <= 0 || read_small("/proc/self/stat", buf, sizeof buf) <= 0) return;
  p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
  if (p == NULL) return;
  for (field = 2; field < 22 && (p = strchr(p + 1, ' ')) != NULL; field++) {
  }
  /* The number by hand: sscanf's code is pages of libc a short process would fault in. */
  if (p == NULL || p[1] < '0' || p[1] > '9') return;
  for (p++; *p >= '0' && *p <= '9'; p++) ticks = ticks * 10 + (unsigned long long)(*p - '0');
  if (clock_gettime(CLOCK_REALTIME, &real) != 0 || clock_gettime(CLOCK_BOOTTIME, &boot) != 0)
    return;
  /* In ms: the boot time (real - boot) plus the start's ticks. */
  int64_t ms = ((int64_t)real.tv_sec - boot.tv_sec) * 1000 + (real.tv_nsec - boot.tv_nsec) / 1000000 +
               (int64_t)(ticks * 1000 / (unsigned long long)hz);
  if (ms < 0) return;
  iso_utc(out, (time_t)(ms / 1000), (unsigned long)(ms % 1000));
}

static void copy_trunc(char *out, size_t n, const char *s) {
  size_t len = strlen(s);

  if (len >= n)
    len = n - 1;
  memcpy(out, s, len);
  out[len] = '\0';
}

/* The executable's base name (the path is read once per image: ss__sys_exe_path). */
static void exe_name(char *out, size_t n) {
  const char *path = ss__sys_exe_path(), *base = path;
  size_t len = strlen(path);

  if (len == 0) {
    copy_trunc(out, n, program_invocation_short_name);
    return;
  }
  /* The kernel marks a replaced or removed binary; the name is still the one that ran. */
  if (len > 10 && memcmp(path + len - 10, " (deleted)", 10) == 0)
    len -= 10;
  for (size_t i = 0; i < len; i++) /* no copy of the path: a stack page less in a fork child */
    if (path[i] == '/') base = path + i + 1;
  len -= (size_t)(base - path);
  if (len >= n) len = n - 1;
  memcpy(out, base, len);
  out[len] = '\0';
}

static size_t count_entries(const char *s) {
  size_t n = 1;
  for (; s != NULL && *s; s++)
    n += *s == ',';
  return n;
}

/* What a resource for c needs: attribute entries and storage bytes. */
static void sizes(const ss__config *c, size_t exe_len, size_t host_len, size_t *n_attrs,
                  size_t *bytes) {
  const char *raw = c->resource_attributes != NULL ? c->resource_attributes : "";
  size_t svc_len = c->service_name != NULL ? strlen(c->service_name) : 0;
  if (svc_len < sizeof(UNKNOWN_SERVICE) - 1 + exe_len)
    svc_len = sizeof(UNKNOWN_SERVICE) - 1 + exe_len;
  *n_attrs = count_entries(raw) + FIXED_ATTRS;
  *bytes = strlen(raw) + 1 + svc_len + 1 + exe_len + 1 + host_len + 1 + (UUID_LEN + 1) +
           (ISO_LEN + 1);
}

/* Fills r, whose attrs and storage are sized by sizes(). */
static void fill(ss__resource *r, const ss__config *c, const char *exe, const char *host) {
  const char *raw = c->resource_attributes != NULL ? c->resource_attributes : "";
  size_t raw_len = strlen(raw), exe_len = strlen(exe), host_len = strlen(host), svc_len;
  char *svc, *ex, *ho, *id, *ct;
  ss__attr pid;

  svc_len = c->service_name != NULL ? strlen(c->service_name) : 0;
  if (svc_len < sizeof(UNKNOWN_SERVICE) - 1 + exe_len)
    svc_len = sizeof(UNKNOWN_SERVICE) - 1 + exe_len;
  svc = r->storage + raw_len + 1;
  ex = svc + svc_len + 1;
  ho = ex + exe_len + 1;
  id = ho + host_len + 1;
  ct = id + UUID_LEN + 1;
  memcpy(ex, exe, exe_len + 1);
  memcpy(ho, host, host_len + 1);
  pid_t me = ss__sys_getpid(); /* once: a system call each */
  instance_id(id, me);
  creation_time(ct, me);

  if (host[0] != '\0')
    set_str(r, "host.name", ho);
  set_str(r, "process.executable.name", ex);
  memcpy(r->storage, raw, raw_len + 1);
  parse_env_attrs(r, r->storage, raw);
  if (c->service_name != NULL) {
    strcpy(svc, c->service_name);
  } else if (find_str(r, "service.name") == NULL || find_str(r, "service.name")[0] == '\0') {
    memcpy(svc, UNKNOWN_SERVICE, sizeof(UNKNOWN_SERVICE) - 1); /* svc_len leaves room */
    memcpy(svc + sizeof(UNKNOWN_SERVICE) - 1, exe, exe_len + 1);
  } else {
    svc = NULL;
  }
  if (svc != NULL)
    set_str(r, "service.name", svc);
  pid = (ss__attr){.type = SS_ATTR_INT, .v.i = (int64_t)me};
  set_attr(r, "process.pid", &pid);
  if (ct[0] != '\0') set_str(r, "process.creation.time", ct);
  if (program_invocation_name != NULL && program_invocation_name[0] != '\0')
    set_str(r, "process.command", program_invocation_name); /* argv[0], lives for the process */
  set_str(r, "service.instance.id", id);
  set_str(r, "telemetry.sdk.name", "spanshim");
  set_str(r, "telemetry.sdk.language", "cpp");
  set_str(r, "telemetry.sdk.version", SPANSHIM_VERSION);
}

static void detect(char exe[256], char host[256]) {
  exe_name(exe, 256);
  if (gethostname(host, 256) != 0)
    host[0] = '\0';
  host[255] = '\0';
}

int ss__resource_build(ss__resource *r, const ss__config *c) {
  char exe[256], host[256];
  size_t n_attrs, bytes;

  memset(r, 0, sizeof(*r));
  detect(exe, host);
  sizes(c, strlen(exe), strlen(host), &n_attrs, &bytes);
  r->attrs = calloc(n_attrs, sizeof(ss__attr));
  r->storage = malloc(bytes);
  if (r->attrs == NULL || r->storage == NULL) {
    ss__resource_free(r);
    return -ENOMEM;
  }
  fill(r, c, exe, host);
  return 0;
}

int ss__resource_build_in(ss__resource *r, const ss__config *c, ss__attr *attrs,
                          size_t max_attrs, char *storage, size_t cap) {
  char exe[256], host[256];
  size_t n_attrs, bytes;

  memset(r, 0, sizeof(*r));
  detect(exe, host);
  sizes(c, strlen(exe), strlen(host), &n_attrs, &bytes);
  if (n_attrs > max_attrs || bytes > cap)
    return -ENOBUFS;
  memset(attrs, 0, n_attrs * sizeof(ss__attr));
  r->attrs = attrs;
  r->storage = storage;
  fill(r, c, exe, host);
  return 0;
}

void ss__resource_free(ss__resource *r) {
  free(r->attrs);
  free(r->storage);
  memset(r, 0, sizeof(*r));
}
