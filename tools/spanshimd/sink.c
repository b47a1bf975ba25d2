/* sink.c - the JSON lines output file and the counters.
 *
 * Each accepted request becomes exactly one line, built in memory and written with as
 * few write(2) calls as the kernel allows, straight to the fd (no stdio buffer): when the
 * daemon is killed, everything acknowledged with 200 is already in the file. If a write
 * fails halfway (ENOSPC), the partial line is cut off again with ftruncate so readers
 * never see half a line; the request is answered 503. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/common/otlp_json.h"
#include "tools/spanshimd/spanshimd.h"

ss__stats ss__stats_g;

static int out_fd = -1;
static int out_seekable;
static const char *out_path;
static ss__buf line = SS_BUF_INIT;

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

int ss__sink_open(const char *path, int truncate) {
  char why[512];
  /* 0600: spans carry SQL text, URLs and host details of the user's programs. */
  out_fd = ss__open_output(path, truncate, why, sizeof why);
  out_path = path;
  if (out_fd < 0) {
    fprintf(stderr, "spanshimd: cannot open %s: %s\n", path, why);
    return -1;
  }
  struct stat st;
  out_seekable = fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
  return 0;
}

int ss__sink_reopen(void) {
  if (out_fd < 0 || out_path == NULL) return 0;
  char why[512];
  int fd = ss__open_output(out_path, 0, why, sizeof why);
  if (fd < 0) {  /* keep writing the old file rather than losing spans */
    fprintf(stderr, "spanshimd: SIGHUP: cannot reopen %s: %s; still writing the old file\n",
            out_path, why);
    return -1;
  }
  close(out_fd);
  out_fd = fd;
  struct stat st;
  out_seekable = fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode);
  ss__stats_g.reopens++;
  return 0;
}

void ss__sink_close(void) {
  if (out_fd >= 0) close(out_fd);
  out_fd = -1;
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

/* Writes `line` as one record; on failure removes whatever part of it got in. */
static int write_line(void) {
  off_t start = out_seekable ? lseek(out_fd, 0, SEEK_END) : -1;
  size_t done;
  int rc = write_all(out_fd, line.data, line.len, &done);
  if (rc == 0) {
    ss__stats_g.lines_written++;
    ss__stats_g.bytes_written += line.len;
  } else {
    ss__stats_g.write_errors++;
    /* Cut the fragment off; where that is impossible (a pipe), at least end it so the
     * lines after it still parse. */
    if (done > 0 && (start < 0 || ftruncate(out_fd, start) != 0)) {
      size_t ignored;
      write_all(out_fd, "\n", 1, &ignored);
    }
  }
  if (line.cap > LINE_KEEP) ss__buf_free(&line);  /* one huge request must not pin it */
  return rc;
}

int ss__sink_traces(const ss__traces_req *req) {
  ss__buf_reset(&line);
  if (ss__json_traces(req, &line) != 0) {
    ss__stats_g.write_errors++;
    return -ENOMEM;
  }
  return write_line();
}

int ss__sink_logs(const ss__logs_req *req) {
  ss__buf_reset(&line);
  if (ss__json_logs(req, &line) != 0) {
    ss__stats_g.write_errors++;
    return -ENOMEM;
  }
  return write_line();
}

#define COUNTERS(X)                                                                     \
  X(requests) X(grpc_requests) X(traces_requests) X(logs_requests) X(stats_requests) X(spans_received)   \
  X(logs_received) X(spans_rejected) X(logs_rejected) X(lines_written) X(bytes_written) X(write_errors) X(connections)      \
  X(connections_open) X(connections_refused) X(peers_refused) X(sql_spans) X(sql_unparsed) \
  X(sql_rescrubbed) X(reopens)
#define REJECTED(X)                                                                     \
  X(bad_http) X(header_too_large) X(not_found) X(method) X(length_required)             \
  X(too_large) X(content_type) X(bad_protobuf) X(unavailable)

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
