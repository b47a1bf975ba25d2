/* sink.c - the JSON lines output files (one per signal, as the Collector's file exporter
 * writes them) and the counters.
 *
 * Each accepted request becomes one line — or, when that line would be longer than the
 * bound (--max-line, 1 MiB by default: what the Collector's otlpjsonfile receiver reads),
 * several, split by resource, then scope, then halves of the span (record, metric) list,
 * each a complete document. The lines of a request are built in memory and written with
 * as few write(2) calls as the kernel allows, straight to the fd (no stdio buffer): when
 * the daemon is killed, everything acknowledged with 200 is already in the file. If a
 * write fails halfway (ENOSPC), the partial lines are cut off again with ftruncate so
 * readers never see half a line; the request is answered 503. One span (record, metric)
 * whose own line is longer than the bound is written anyway, alone on its line, and
 * counted in lines_oversize. */
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/common/otlp_json.h"
#include "tools/spanshimd/spanshimd.h"

ss__stats ss__stats_g;

typedef struct output {
  int fd;
  int seekable;
  int pending;                    /* path set, file not there yet: opened at first write */
  const char *path;
} output;

static output outs[SS_SIG_N] = {{-1, 0, 0, NULL}, {-1, 0, 0, NULL}, {-1, 0, 0, NULL}};
static ss__buf line = SS_BUF_INIT;
static size_t max_line = SS_DEFAULT_MAX_LINE;

#define LINE_KEEP (8u << 20)

/* Whether other users can put files into the directory st describes: it is not ours or
 * root's, or it is group- or world-writable (/tmp, /var/tmp, a shared project folder). */
static int dir_shared(const struct stat *st) {
  uid_t me = geteuid();
  if (st->st_uid != me && st->st_uid != 0) return 1;
  return (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
}

int ss__open_output(const char *path, int truncate, char *why, size_t whyn) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char dir[4096];
  int flags = O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY;
  snprintf(why, whyn, "%s", "");
  if (slash == path) snprintf(dir, sizeof dir, "/");
  else if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  else snprintf(dir, sizeof dir, ".");
  if (*base == '\0' || strlen(path) >= sizeof dir) {
    snprintf(why, whyn, "not a file name");
    return -EINVAL;
  }
  /* The directory is opened once and the file looked up in it, so what was checked is
   * what the file is created in. */
  int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct stat ds, fs;
  if (dfd < 0 || fstat(dfd, &ds) != 0) {
    int e = errno;
    snprintf(why, whyn, "directory %s: %s", dir, strerror(e));
    if (dfd >= 0) close(dfd);
    return -e;
  }
  int shared = dir_shared(&ds), fd = -1;
  for (int tries = 0; fd < 0 && tries < 4; tries++) {
    fd = openat(dfd, base, flags);
    if (fd < 0 && errno == ENOENT)  /* a new file is ours alone: O_EXCL, never a planted one */
      fd = openat(dfd, base, flags | O_CREAT | O_EXCL, 0600);
    if (fd < 0 && errno != EEXIST && errno != ENOENT) break;
  }
  int e = errno;
  close(dfd);
  if (fd < 0) {
    if (e == ELOOP) snprintf(why, whyn, "it is a symbolic link (refused: it could point anywhere)");
    else snprintf(why, whyn, "%s", strerror(e));
    return -e;
  }
  if (fstat(fd, &fs) != 0) {
    e = errno;
    close(fd);
    snprintf(why, whyn, "%s", strerror(e));
    return -e;
  }
  if (shared && (!S_ISREG(fs.st_mode) || fs.st_uid != geteuid() || fs.st_nlink != 1)) {
    close(fd);
    snprintf(why, whyn,
             "it exists in %s, a directory other users can write to, and is not a regular "
             "file of ours (uid %u) with one link; remove it or choose another path",
             dir, (unsigned)geteuid());
    return -EPERM;
  }
  if (truncate && S_ISREG(fs.st_mode) && ftruncate(fd, 0) != 0) {
    e = errno;
    close(fd);
    snprintf(why, whyn, "cannot truncate: %s", strerror(e));
    return -e;
  }
  return fd;
}

/* An earlier signal's output on the same path, so signals sharing a file share its open
 * file (outputs are opened, and reopened, in signal order). */
static const output *same_path(int sig, const char *path) {
  for (int i = 0; i < sig; i++)
    if (outs[i].fd >= 0 && outs[i].path && strcmp(outs[i].path, path) == 0)
      return &outs[i];
  return NULL;
}

static int open_one(int sig, const char *path, int truncate, int reopen) {
  char why[512];
  output *o = &outs[sig];
  const output *twin = same_path(sig, path);
  int fd = twin ? dup(twin->fd) : ss__open_output(path, truncate, why, sizeof why);
  if (twin && fd < 0) snprintf(why, sizeof why, "%s", strerror(errno));
  if (fd < 0) {
    if (reopen)  /* keep writing the old file rather than losing what comes */
      fprintf(stderr, "spanshimd: SIGHUP: cannot reopen %s: %s; still writing the old file\n",
              path, why);
    else
      fprintf(stderr, "spanshimd: cannot open %s: %s\n", path, why);
    return -1;
  }
  if (o->fd >= 0) close(o->fd);
  o->fd = fd;
  o->path = path;
  struct stat st;
  o->seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  return 0;
}

int ss__sink_open(int sig, const char *path, int truncate) {
  struct stat st;
  if (sig < 0 || sig >= SS_SIG_N) return -1;
  /* Logs and metrics files appear with their first line, so a run that sends none
   * leaves none behind; one already there is checked (and truncated) now. */
  if (sig != SS_SIG_TRACES && !same_path(sig, path) && lstat(path, &st) != 0 &&
      errno == ENOENT) {
    outs[sig].path = path;
    outs[sig].pending = 1;
    return 0;
  }
  /* 0600: spans carry SQL text, URLs and host details of the user's programs. */
  return open_one(sig, path, truncate, 0);
}

/* The output of sig, opened now if it was waiting for its first line; NULL when the
 * signal has no file. *rc is -EIO when it could not be opened (printed). */
static output *output_of(int sig, int *rc) {
  output *o = &outs[sig];
  *rc = 0;
  if (o->fd < 0 && o->pending) {
    if (open_one(sig, o->path, 0, 0) != 0) {
      *rc = -EIO;
      return NULL;
    }
    o->pending = 0;
  }
  return o->fd >= 0 ? o : NULL;
}

void ss__sink_max_line(size_t n) { max_line = n ? n : SS_DEFAULT_MAX_LINE; }
int ss__sink_line_fits(size_t n) { return n <= max_line; }

int ss__sink_reopen(void) {
  int rc = 0;
  for (int i = 0; i < SS_SIG_N; i++)
    if (outs[i].fd >= 0 && outs[i].path && open_one(i, outs[i].path, 0, 1) != 0) rc = -1;
  if (rc == 0) ss__stats_g.reopens++;
  return rc;
}

void ss__sink_close(void) {
  for (int i = 0; i < SS_SIG_N; i++) {
    if (outs[i].fd >= 0) close(outs[i].fd);
    outs[i].fd = -1;
  }
  ss__buf_free(&line);
}

static int write_all(int fd, const char *p, size_t n, size_t *done) {
  *done = 0;
  while (*done < n) {
    ssize_t w = write(fd, p + *done, n - *done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (w == 0) return -EIO;
    *done += (size_t)w;
  }
  return 0;
}

/* Writes data[0..len) (nlines whole lines) to o; on failure removes whatever part got
 * in. */
static int write_lines(output *o, const char *data, size_t len, uint64_t nlines) {
  off_t start = o->seekable ? lseek(o->fd, 0, SEEK_END) : -1;
  size_t done;
  int rc = write_all(o->fd, data, len, &done);
  if (rc == 0) {
    ss__stats_g.lines_written += nlines;
    ss__stats_g.bytes_written += len;
  } else {
    ss__stats_g.write_errors++;
    /* Cut the fragment off; where that is impossible (a pipe), at least end it so the
     * lines after it still parse. */
    if (done > 0 && (start < 0 || ftruncate(o->fd, start) != 0)) {
      size_t ignored;
      write_all(o->fd, "\n", 1, &ignored);
    }
  }
  return rc;
}

/* ---- lines under the bound ----
 * A request whose line would pass max_line is cut into smaller requests that share its
 * resource and scope structs (shallow copies on the stack): first one per resource, then
 * one per scope, then the item list in halves, until each line fits or is one item. The
 * three signals have the same shape — request.1 → resource.2 → scope.2 are the repeated
 * resource, scope and item fields — so one walk over the descriptors serves them all. */

typedef int (*encode_fn)(const ProtobufCMessage *q, ss__buf *out);

/* A message copied by value (every OTLP request, resource and scope message is small). */
typedef union msgcopy {
  ProtobufCMessage m;
  max_align_t align;
  char bytes[256];
} msgcopy;

/* m's repeated field `id`: its count and its array of pointers. */
static void list_of(ProtobufCMessage *m, unsigned id, size_t **n, void ***arr) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(m->descriptor, id);
  *n = (size_t *)((char *)m + f->quantifier_offset);
  *arr = (void **)((char *)m + f->offset);
}

/* 0, or -1 for a message too big to copy here (then it is not split). */
static int copy_of(msgcopy *c, const void *m) {
  const ProtobufCMessage *src = m;
  if (src->descriptor->sizeof_message > sizeof c->bytes) return -1;
  memcpy(c->bytes, m, src->descriptor->sizeof_message);
  return 0;
}

/* Appends q's line(s) to `line`; counts them in *n. 0 or -ENOMEM. */
static int lines_of(const ProtobufCMessage *q, encode_fn enc, uint64_t *n) {
  size_t mark = line.len;
  if (enc(q, &line) != 0) return -ENOMEM;
  if (line.len - mark <= max_line) {
    ++*n;
    return 0;
  }
  msgcopy rq, rr, rs;
  size_t *nres, *nsc, *nit;
  void **res, **sc, **it, *rrp = &rr, *rsp = &rs;
  if (copy_of(&rq, q) != 0) goto alone;
  list_of(&rq.m, 1, &nres, &res);
  if (*nres == 0) goto alone;
  void **all_res = *(void ***)res;
  if (*nres > 1) {  /* one line (or more) per resource */
    line.len = mark;
    size_t k = *nres;
    *nres = 1;
    for (size_t i = 0; i < k; i++) {
      *(void ***)res = &all_res[i];
      if (lines_of(&rq.m, enc, n) != 0) return -ENOMEM;
    }
    return 0;
  }
  if (copy_of(&rr, all_res[0]) != 0) goto alone;
  *(void ***)res = &rrp;
  list_of(&rr.m, 2, &nsc, &sc);
  if (*nsc == 0) goto alone;
  void **all_sc = *(void ***)sc;
  if (*nsc > 1) {  /* per scope */
    line.len = mark;
    size_t k = *nsc;
    *nsc = 1;
    for (size_t j = 0; j < k; j++) {
      *(void ***)sc = &all_sc[j];
      if (lines_of(&rq.m, enc, n) != 0) return -ENOMEM;
    }
    return 0;
  }
  if (copy_of(&rs, all_sc[0]) != 0) goto alone;
  *(void ***)sc = &rsp;
  list_of(&rs.m, 2, &nit, &it);
  if (*nit < 2) goto alone;
  line.len = mark;  /* halves of the items */
  void **items = *(void ***)it;
  size_t all = *nit, half = all / 2;
  *nit = half;
  if (lines_of(&rq.m, enc, n) != 0) return -ENOMEM;
  *(void ***)it = items + half;
  *nit = all - half;
  return lines_of(&rq.m, enc, n);
alone:
  ss__stats_g.lines_oversize++;
  ++*n;
  return 0;
}

static int enc_traces(const ProtobufCMessage *q, ss__buf *out) {
  return ss__json_traces((const ss__traces_req *)q, out);
}
static int enc_logs(const ProtobufCMessage *q, ss__buf *out) {
  return ss__json_logs((const ss__logs_req *)q, out);
}
static int enc_metrics(const ProtobufCMessage *q, ss__buf *out) {
  return ss__json_metrics((const ss__metrics_req *)q, out);
}

/* Writes request q of signal sig as lines into its file. */
static int sink(int sig, const ProtobufCMessage *q, encode_fn enc) {
  uint64_t n = 0;
  int rc;
  output *o = output_of(sig, &rc);
  if (o == NULL) return rc;
  ss__buf_reset(&line);
  if (lines_of(q, enc, &n) != 0 || line.oom) {
    ss__stats_g.write_errors++;
    return -ENOMEM;
  }
  rc = write_lines(o, line.data, line.len, n);
  if (line.cap > LINE_KEEP) ss__buf_free(&line);  /* one huge request must not pin it */
  return rc;
}

int ss__sink_traces(const ss__traces_req *req) {
  return sink(SS_SIG_TRACES, &req->base, enc_traces);
}
int ss__sink_traces_line(const char *json, size_t n, const uint8_t *body, size_t len) {
  int too_big, rc;
  if (n > max_line) {  /* rare: split it as the decoded path does */
    const ss__traces_req *q = ss__decode_traces(body, len, &too_big);
    return q ? ss__sink_traces(q) : -ENOMEM;
  }
  output *o = output_of(SS_SIG_TRACES, &rc);
  return o ? write_lines(o, json, n, 1) : rc;
}

int ss__sink_logs(const ss__logs_req *req) { return sink(SS_SIG_LOGS, &req->base, enc_logs); }
int ss__sink_metrics(const ss__metrics_req *req) {
  return sink(SS_SIG_METRICS, &req->base, enc_metrics);
}

#define COUNTERS(X)                                                                     \
  X(requests) X(grpc_requests) X(traces_requests) X(logs_requests) X(stats_requests)  \
  X(spans_received) X(logs_received) X(metrics_requests) X(data_points_received) X(spans_rejected) X(logs_rejected) X(spans_refused) X(logs_refused) X(lines_written) \
  X(lines_oversize) X(bytes_written) X(write_errors) X(connections)                      \
  X(connections_open) X(connections_refused) X(peers_refused) X(tree_admitted) X(tree_processes) \
  X(tree_full) X(tree_token_admitted) X(peer_limited) X(timeouts) \
  X(buffer_waits) X(sql_spans) X(sql_unparsed) X(sql_rescrubbed) X(reopens) X(shim_spans_dropped) \
  X(shim_logs_dropped) X(shim_drop_reports)
#define REJECTED(X)                                                                     \
  X(bad_http) X(header_too_large) X(not_found) X(method) X(length_required)             \
  X(too_large) X(content_type) X(bad_protobuf) X(unavailable) X(unauthorized)

#define UPSTREAM(X)                                                                     \
  X(exported_requests) X(exported_items) X(dropped_requests) X(dropped_items)           \
  X(failed_items) X(rejected_items) X(retries) X(transport_errors) X(http_errors)       \
  X(queued_bytes) X(queued_items) X(latency_ms_sum) X(latency_samples) X(latency_ms_max)

#define SAMPLING(X)                                                                     \
  X(kept_spans) X(dropped_spans) X(evicted_spans) X(kept_traces_ratio) X(kept_traces_error) \
  X(kept_traces_slow) X(dropped_traces) X(held_spans) X(held_bytes)

void ss__stats_json(ss__buf *b) {
  const ss__stats *s = &ss__stats_g;
  ss__buf_putc(b, '{');
#define J(name) SS_BUF_LIT(b, "\"" #name "\":"); ss__jw_u64(b, s->name); ss__buf_putc(b, ',');
  COUNTERS(J)
#undef J
  SS_BUF_LIT(b, "\"rejected\":{");
#define R(name) SS_BUF_LIT(b, "\"" #name "\":"); ss__jw_u64(b, s->rej_##name); ss__buf_putc(b, ',');
  REJECTED(R)
#undef R
  b->len--;  /* the last comma */
  ss__buf_putc(b, '}');
  if (ss__upstream_enabled()) {
    SS_BUF_LIT(b, ",\"upstream\":{");
#define U(name) SS_BUF_LIT(b, "\"" #name "\":"); \
    ss__jw_u64(b, atomic_load_explicit(&ss__up_stats_g.name, memory_order_relaxed)); \
    ss__buf_putc(b, ',');
    UPSTREAM(U)
#undef U
    b->len--;
    ss__buf_putc(b, '}');
  }
  if (ss__sampler_enabled()) {
    SS_BUF_LIT(b, ",\"sampling\":{");
#define S(name) SS_BUF_LIT(b, "\"" #name "\":"); ss__jw_u64(b, ss__samp_stats_g.name); \
    ss__buf_putc(b, ',');
    SAMPLING(S)
#undef S
    b->len--;
    ss__buf_putc(b, '}');
  }
  SS_BUF_LIT(b, "}\n");
}

void ss__stats_line(ss__buf *b) {
  const ss__stats *s = &ss__stats_g;
  SS_BUF_LIT(b, "spanshimd: exiting:");
#define L(name) SS_BUF_LIT(b, " " #name "="); ss__jw_u64(b, s->name);
  COUNTERS(L)
#undef L
#define R(name) SS_BUF_LIT(b, " rejected." #name "="); ss__jw_u64(b, s->rej_##name);
  REJECTED(R)
#undef R
  if (ss__upstream_enabled()) {
#define U(name) SS_BUF_LIT(b, " upstream." #name "="); \
    ss__jw_u64(b, atomic_load_explicit(&ss__up_stats_g.name, memory_order_relaxed));
    UPSTREAM(U)
#undef U
  }
  if (ss__samp_stats_g.kept_spans + ss__samp_stats_g.dropped_spans) {
#define S(name) SS_BUF_LIT(b, " sampling." #name "="); ss__jw_u64(b, ss__samp_stats_g.name);
    SAMPLING(S)
#undef S
  }
  ss__buf_putc(b, '\n');
}
