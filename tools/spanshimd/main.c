/* main.c - spanshimd: options, signals, startup and shutdown.
 *
 * Foreground, single-threaded. stdout stays silent (only --help writes there); the
 * startup line and the final counters go to stderr. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/config.h"
#include "tools/common/duration.h"
#include "tools/spanshimd/grpc.h"
#include "tools/spanshimd/spanshimd.h"

static const char usage[] =
    "usage: spanshimd [--socket PATH] [--out FILE.jsonl] [--logs-out FILE]\n"
    "                 [--metrics-out FILE] [--max-line BYTES] [--truncate]\n"
    "                 [--listen 127.0.0.1:PORT] [--max-body BYTES]\n"
    "                 [--grpc-listen 127.0.0.1:PORT] [--grpc-socket PATH]\n"
    "                 [--listen-token FILE] [--header-timeout DUR] [--body-timeout DUR]\n"
    "                 [--idle-timeout DUR] [--max-conns-per-peer N] [--max-buffered BYTES]\n"
    "                 [--otlp-endpoint URL] [--otlp-header K=V] [--otlp-compression gzip|none]\n"
    "                 [--otlp-timeout DUR] [--queue-size BYTES] [--retry-initial DUR]\n"
    "                 [--retry-max DUR] [--retry-max-elapsed DUR] [--shutdown-grace DUR]\n"
    "                 [--help]\n"
    "\n"
    "OTLP/HTTP collector for spanshim: receives POST /v1/traces, /v1/logs and\n"
    "/v1/metrics (application/x-protobuf or application/json), appends each request\n"
    "as OTLP JSON lines (one file per signal) and/or forwards it to an upstream\n"
    "OTLP/HTTP endpoint.\n"
    "\n"
    "  --socket PATH     Unix socket to listen on (default $XDG_RUNTIME_DIR/spanshim/\n"
    "                    collector.sock, else /tmp/spanshim-$UID/collector.sock);\n"
    "                    its directory is created 0700, the socket is 0600, and\n"
    "                    only peers with our uid (or root) are served\n"
    "  --out FILE        traces as JSON lines, appended (default " SS_DEFAULT_OUT ",\n"
    "                    or no file when an upstream is configured)\n"
    "  --logs-out FILE   log records (default beside --out: \"traces\" in its name\n"
    "                    becomes \"logs\", else FILE.logs.jsonl; created when the\n"
    "                    first log record comes)\n"
    "  --metrics-out FILE  metrics, likewise (\"metrics\")\n"
    "  --max-line N      longest line written, in bytes (default 1M, as the\n"
    "                    Collector's otlpjsonfile receiver reads); bigger requests\n"
    "                    are split into several lines\n"
    "  --truncate        empty the output files at start\n"
    "  --listen H:P      also listen on TCP, loopback only (e.g. 127.0.0.1:4318;\n"
    "                    port 0 picks a free port, shown on the startup line).\n"
    "                    EVERY LOCAL USER can send spans there (into our output),\n"
    "                    unless --listen-token is given\n"
    "  --listen-token FILE  require \"Authorization: Bearer <token>\" on the TCP ports,\n"
    "                    the token being FILE's content (trailing newline dropped);\n"
    "                    FILE must not be readable by others (chmod 600); requests\n"
    "                    without it get 401 (gRPC: UNAUTHENTICATED; senders:\n"
    "                    OTEL_EXPORTER_OTLP_HEADERS=\n"
    "                    Authorization=Bearer%20<token>)\n"
    "  --max-body N      largest request body in bytes, K/M suffixes allowed\n"
    "                    (default 16M); larger requests get 413\n"
    "  --grpc-listen H:P also serve OTLP/gRPC (Trace/Logs/MetricsService Export;\n"
    "                    gzip) on TCP, loopback only (e.g. 127.0.0.1:4317; port 0 picks one);\n"
    "                    like --listen, open to EVERY LOCAL USER unless --listen-token\n"
    "  --grpc-socket P   ... and/or on a Unix socket, checked as --socket is\n"
    "  --header-timeout DUR  a request head must arrive within this (default 10s)\n"
    "  --body-timeout DUR    ... and its body within this after the head (default 30s)\n"
    "  --idle-timeout DUR    close a TCP connection with nothing to do (default 2m;\n"
    "                    Unix-socket peers keep theirs: a worker that dropped\n"
    "                    privileges could not connect again)\n"
    "  --max-conns-per-peer N  connections one uid (Unix socket) or all TCP clients\n"
    "                    may hold (default a quarter of the table: 1024); when the\n"
    "                    table is 7/8 full only peers holding fewer than 8 get more\n"
    "  --max-buffered N  request bytes held across all connections beyond 16K each\n"
    "                    and 256K per peer (gRPC: 64K per connection; default twice\n"
    "                    --max-body); a peer gets half; past it, reading pauses (gRPC:\n"
    "                    UNAVAILABLE)\n"
    "\n"
    "Upstream (OTLP/HTTP protobuf; the OTEL_EXPORTER_OTLP_* variables apply too):\n"
    "  --otlp-endpoint URL     base URL; /v1/traces and /v1/logs are appended\n"
    "                          (default: OTEL_EXPORTER_OTLP_ENDPOINT, or the\n"
    "                          _TRACES_/_LOGS_ENDPOINT variables used as they are)\n"
    "  --otlp-header K=V       extra request header (repeatable; adds to\n"
    "                          OTEL_EXPORTER_OTLP_HEADERS)\n"
    "  --otlp-compression C    gzip or none (default OTEL_EXPORTER_OTLP_COMPRESSION,\n"
    "                          else none)\n"
    "  --otlp-timeout DUR      per request (default OTEL_EXPORTER_OTLP_TIMEOUT ms, else 10s)\n"
    "  --queue-size N          bytes of requests waiting for the upstream (default 64M);\n"
    "                          beyond it new requests are dropped and counted\n"
    "  --retry-initial DUR     first backoff after a retryable failure (default 500ms);\n"
    "                          doubles, with jitter, up to --retry-max (default 30s)\n"
    "  --retry-max-elapsed DUR give a batch up after retrying this long (default 5m)\n"
    "  --shutdown-grace DUR    at exit, time left to deliver what is queued (default 5s)\n"
    "\n"
    "Tail sampling (off unless one of these is given):\n"
    "  --sample-ratio R        keep this share (0..1) of traces, chosen by trace id;\n"
    "                          traces with an error span are always kept whole\n"
    "  --keep-slower-than DUR  also keep every trace with a span at least this long\n"
    "  --decision-wait DUR     how long a trace's spans are held for a decision,\n"
    "                          from its first held span (default 5s)\n"
    "  --sample-buffer N       bytes of held spans at most (default 64M); beyond it the\n"
    "                          oldest undecided traces are dropped early (counted)\n"
    "\n"
    "  --no-sql-summary        leave PostgreSQL spans as the shim named them (default:\n"
    "                          db.query.summary, db.operation.name, db.collection.name\n"
    "                          and the span name from PostgreSQL's parser)\n"
    "\n"
    "Metrics and operation:\n"
    "  --metrics H:P           serve Prometheus text at http://H:P/metrics (loopback\n"
    "                          only): span counts, errors, duration histograms by\n"
    "                          service, span name and peer, and our own counters\n"
    "  --metrics-max-series N  series at most (default 10000); the rest count as\n"
    "                          span_name=\"_overflow\"\n"
    "  --allow-uid U           also serve peers with this uid or user name (repeatable);\n"
    "  --allow-group G         ... or in this group; the socket is then mode 0666 in a\n"
    "                          0711 directory and SO_PEERCRED does the checking\n"
    "  --no-tree               admit peers by uid alone: not the traced tree (processes\n"
    "                          that sent spans as an admitted user, and their\n"
    "                          descendants, after they change user)\n"
    "  --tree-root PID         that process and its descendants are the traced tree\n"
    "                          (spanshim run names itself)\n"
    "  --tree-file FILE        keep the traced tree across restarts in FILE (written\n"
    "                          at exit, read at start)\n"
    "  --daemon                detach once listening (--pid-file FILE, --log-file FILE)\n"
    "\n"
    "DUR is a number with ms, s, m or h (a bare number means ms).\n"
    "\n"
    "GET /stats returns the counters as JSON. SIGHUP reopens the output file (after\n"
    "logrotate). SIGTERM or SIGINT: finish, deliver what is queued upstream (up to\n"
    "--shutdown-grace), print the counters on stderr, remove the socket, exit 0.\n";

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-') return -1;
  if (*end == 'k' || *end == 'K') v <<= 10, end++;
  else if (*end == 'm' || *end == 'M') v <<= 20, end++;
  else if (*end == 'g' || *end == 'G') v <<= 30, end++;
  if (*end || v == 0 || v > (1ull << 32)) return -1;
  *out = (size_t)v;
  return 0;
}

static int parse_ms(const char *flag, const char *s, uint64_t *ms) {
  uint64_t ns;
  if (ss__parse_duration_ns(s, &ns) != 0 || ns < 1000000) {
    fprintf(stderr, "spanshimd: bad %s %s (a duration of at least 1ms, e.g. 500ms, 2s)\n",
            flag, s);
    return -1;
  }
  *ms = ns / 1000000;
  return 0;
}

/* --allow-uid / --allow-group: a number or a name. 0, or -1 after printing why. */
static int add_allowed(ss__opts *o, int group, const char *v) {
  char *end;
  unsigned long id = strtoul(v, &end, 10);
  if (end == v || *end) {
    if (group) {
      struct group *g = getgrnam(v);
      if (g == NULL) goto bad;
      id = g->gr_gid;
    } else {
      struct passwd *pw = getpwnam(v);
      if (pw == NULL) goto bad;
      id = pw->pw_uid;
    }
  }
  if (group ? o->n_allow_gids >= 32 : o->n_allow_uids >= 32) goto bad;
  if (group) o->allow_gids[o->n_allow_gids++] = (uint32_t)id;
  else o->allow_uids[o->n_allow_uids++] = (uint32_t)id;
  return 0;
bad:
  fprintf(stderr, "spanshimd: bad --allow-%s %s (a known %s name or a number; 32 at most)\n",
          group ? "group" : "uid", v, group ? "group" : "user");
  return -1;
}

/* --listen-token FILE: the token is the file's first line. A file others may read is
 * refused: whoever can read it can send. 0, or -1 after printing why. */
static int read_token(const char *path, ss__opts *o) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  ssize_t n = -1;
  if (fd < 0 || fstat(fd, &st) != 0) {
    fprintf(stderr, "spanshimd: --listen-token %s: %s\n", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  if (st.st_mode & (S_IROTH | S_IWOTH)) {
    fprintf(stderr, "spanshimd: refusing --listen-token %s: every local user can %s it "
            "(mode %04o); chmod 600 it\n", path, st.st_mode & S_IROTH ? "read" : "write",
            (unsigned)(st.st_mode & 07777));
    close(fd);
    return -1;
  }
  if (st.st_mode & S_IRGRP)
    fprintf(stderr, "spanshimd: warning: --listen-token %s is readable by its group (mode "
            "%04o): every member can send spans\n", path, (unsigned)(st.st_mode & 07777));
  n = read(fd, o->listen_token, sizeof o->listen_token - 1);
  close(fd);
  size_t len = n > 0 ? (size_t)n : 0;
  o->listen_token[len] = '\0';
  len = strcspn(o->listen_token, "\r\n");
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)o->listen_token[i] <= 0x20 || o->listen_token[i] == 0x7f) len = 0;
  if (len == 0 || len >= sizeof o->listen_token - 1) {
    fprintf(stderr, "spanshimd: --listen-token %s: want one line of 1 to 1000 visible "
            "characters (no spaces)\n", path);
    return -1;
  }
  o->listen_token[len] = '\0';
  o->listen_token_len = len;
  return 0;
}

typedef struct cli {
  const char *otlp_endpoint;
  const char *headers[SS_UP_MAX_HEADERS];
  size_t n_headers;
  int gzip;  /* -1 unset */
  uint64_t timeout_ms, queue_bytes_set;
  ss__upstream_cfg up;
  uint64_t grace_ms;
  int sampling;
  ss__sampler_cfg samp;
  size_t max_series;
  int daemon;
  const char *pid_file, *log_file;
} cli;

enum {
  O_SOCKET = 256, O_OUT, O_TRUNCATE, O_LISTEN, O_MAXBODY, O_HELP, O_OTLP, O_HEADER,
  O_COMPRESSION, O_TIMEOUT, O_QUEUE, O_RETRY_INITIAL, O_RETRY_MAX, O_RETRY_ELAPSED, O_GRACE,
  O_RATIO, O_SLOWER, O_WAIT, O_SBUF, O_NO_SQL, O_METRICS, O_MAX_SERIES, O_ALLOW_UID,
  O_ALLOW_GROUP, O_DAEMON, O_PIDFILE, O_LOGFILE, O_GRPC_LISTEN, O_GRPC_SOCKET,
  O_LOGS_OUT, O_METRICS_OUT, O_MAX_LINE,
  O_TOKEN, O_HDR_TO, O_BODY_TO, O_IDLE_TO,
  O_PER_PEER, O_MAX_BUFFERED, O_NO_TREE, O_TREE_ROOT, O_TREE_FILE,
};

static int parse_args(int argc, char **argv, ss__opts *o, cli *c) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, O_SOCKET},
      {"out", required_argument, NULL, O_OUT},
      {"truncate", no_argument, NULL, O_TRUNCATE},
      {"listen", required_argument, NULL, O_LISTEN},
      {"max-body", required_argument, NULL, O_MAXBODY},
      {"help", no_argument, NULL, O_HELP},
      {"otlp-endpoint", required_argument, NULL, O_OTLP},
      {"otlp-header", required_argument, NULL, O_HEADER},
      {"otlp-compression", required_argument, NULL, O_COMPRESSION},
      {"otlp-timeout", required_argument, NULL, O_TIMEOUT},
      {"queue-size", required_argument, NULL, O_QUEUE},
      {"retry-initial", required_argument, NULL, O_RETRY_INITIAL},
      {"retry-max", required_argument, NULL, O_RETRY_MAX},
      {"retry-max-elapsed", required_argument, NULL, O_RETRY_ELAPSED},
      {"shutdown-grace", required_argument, NULL, O_GRACE},
      {"sample-ratio", required_argument, NULL, O_RATIO},
      {"keep-slower-than", required_argument, NULL, O_SLOWER},
      {"decision-wait", required_argument, NULL, O_WAIT},
      {"sample-buffer", required_argument, NULL, O_SBUF},
      {"no-sql-summary", no_argument, NULL, O_NO_SQL},
      {"metrics", required_argument, NULL, O_METRICS},
      {"metrics-max-series", required_argument, NULL, O_MAX_SERIES},
      {"allow-uid", required_argument, NULL, O_ALLOW_UID},
      {"allow-group", required_argument, NULL, O_ALLOW_GROUP},
      {"daemon", no_argument, NULL, O_DAEMON},
      {"pid-file", required_argument, NULL, O_PIDFILE},
      {"log-file", required_argument, NULL, O_LOGFILE},
      {"grpc-listen", required_argument, NULL, O_GRPC_LISTEN},
      {"grpc-socket", required_argument, NULL, O_GRPC_SOCKET},
      {"logs-out", required_argument, NULL, O_LOGS_OUT},
      {"metrics-out", required_argument, NULL, O_METRICS_OUT},
      {"max-line", required_argument, NULL, O_MAX_LINE},
      {"listen-token", required_argument, NULL, O_TOKEN},
      {"header-timeout", required_argument, NULL, O_HDR_TO},
      {"body-timeout", required_argument, NULL, O_BODY_TO},
      {"idle-timeout", required_argument, NULL, O_IDLE_TO},
      {"max-conns-per-peer", required_argument, NULL, O_PER_PEER},
      {"max-buffered", required_argument, NULL, O_MAX_BUFFERED},
      {"no-tree", no_argument, NULL, O_NO_TREE},
      {"tree-root", required_argument, NULL, O_TREE_ROOT},
      {"tree-file", required_argument, NULL, O_TREE_FILE},
      {NULL, 0, NULL, 0}};
  int ch;
  memset(o, 0, sizeof *o);
  memset(c, 0, sizeof *c);
  c->gzip = -1;
  c->up.gzip = -1;
  c->up.timeout_ms = 10000;
  c->up.queue_bytes = 64u << 20;
  c->up.retry_initial_ms = 500;
  c->up.retry_max_ms = 30000;
  c->up.retry_max_elapsed_ms = 300000;
  c->grace_ms = 5000;
  c->samp.ratio = 1.0;
  c->samp.wait_ms = 5000;
  c->samp.max_bytes = 64u << 20;
  c->samp.cache_traces = 65536;
  o->max_body = SS_DEFAULT_MAX_BODY;
  o->header_timeout_ms = SS_DEFAULT_HEADER_TIMEOUT_MS;
  o->body_timeout_ms = SS_DEFAULT_BODY_TIMEOUT_MS;
  o->idle_timeout_ms = SS_DEFAULT_IDLE_TIMEOUT_MS;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case O_SOCKET:
      if (strlen(optarg) >= sizeof o->socket_path) {
        fprintf(stderr, "spanshimd: socket path too long: %s\n", optarg);
        return 2;
      }
      strcpy(o->socket_path, optarg);
      break;
    case O_OUT: o->out_path = optarg; break;
    case O_LOGS_OUT: o->logs_out = optarg; break;
    case O_METRICS_OUT: o->metrics_out = optarg; break;
    case O_MAX_LINE:
      if (parse_size(optarg, &o->max_line) != 0 || o->max_line < 4096) {
        fprintf(stderr, "spanshimd: bad --max-line %s (4K..4G bytes, K/M suffix)\n", optarg);
        return 2;
      }
      break;
    case O_TRUNCATE: o->truncate = 1; break;
    case O_LISTEN: o->listen = optarg; break;
    case O_MAXBODY:
      if (parse_size(optarg, &o->max_body) != 0 || o->max_body > (1u << 30)) {
        fprintf(stderr, "spanshimd: bad --max-body %s (1..1G bytes, K/M suffix)\n", optarg);
        return 2;
      }
      break;
    case O_OTLP: c->otlp_endpoint = optarg; break;
    case O_HEADER:
      if (c->n_headers >= SS_UP_MAX_HEADERS || !strchr(optarg, '=')) {
        fprintf(stderr, "spanshimd: bad --otlp-header %s (want KEY=VALUE)\n", optarg);
        return 2;
      }
      c->headers[c->n_headers++] = optarg;
      break;
    case O_COMPRESSION:
      if (strcmp(optarg, "gzip") != 0 && strcmp(optarg, "none") != 0) {
        fprintf(stderr, "spanshimd: bad --otlp-compression %s (gzip or none)\n", optarg);
        return 2;
      }
      c->gzip = strcmp(optarg, "gzip") == 0;
      break;
    case O_TIMEOUT:
      if (parse_ms("--otlp-timeout", optarg, &c->timeout_ms) != 0) return 2;
      break;
    case O_QUEUE:
      if (parse_size(optarg, &c->up.queue_bytes) != 0) {
        fprintf(stderr, "spanshimd: bad --queue-size %s (bytes, K/M/G suffix)\n", optarg);
        return 2;
      }
      break;
    case O_RETRY_INITIAL:
      if (parse_ms("--retry-initial", optarg, &c->up.retry_initial_ms) != 0) return 2;
      break;
    case O_RETRY_MAX:
      if (parse_ms("--retry-max", optarg, &c->up.retry_max_ms) != 0) return 2;
      break;
    case O_RETRY_ELAPSED:
      if (parse_ms("--retry-max-elapsed", optarg, &c->up.retry_max_elapsed_ms) != 0) return 2;
      break;
    case O_GRACE:
      if (parse_ms("--shutdown-grace", optarg, &c->grace_ms) != 0) return 2;
      break;
    case O_RATIO: {
      char *end;
      errno = 0;
      c->samp.ratio = strtod(optarg, &end);
      if (errno || end == optarg || *end || !(c->samp.ratio >= 0 && c->samp.ratio <= 1)) {
        fprintf(stderr, "spanshimd: bad --sample-ratio %s (a number from 0 to 1)\n", optarg);
        return 2;
      }
      c->sampling = 1;
      break;
    }
    case O_SLOWER:
      if (ss__parse_duration_ns(optarg, &c->samp.slow_ns) != 0 || c->samp.slow_ns == 0) {
        fprintf(stderr, "spanshimd: bad --keep-slower-than %s (e.g. 250ms, 1.5s)\n", optarg);
        return 2;
      }
      c->sampling = 1;
      break;
    case O_WAIT:
      if (parse_ms("--decision-wait", optarg, &c->samp.wait_ms) != 0) return 2;
      break;
    case O_SBUF:
      if (parse_size(optarg, &c->samp.max_bytes) != 0) {
        fprintf(stderr, "spanshimd: bad --sample-buffer %s (bytes, K/M/G suffix)\n", optarg);
        return 2;
      }
      break;
    case O_NO_SQL: ss__sqlsum_disable(); break;
    case O_METRICS: o->metrics = optarg; break;
    case O_MAX_SERIES:
      if (parse_size(optarg, &c->max_series) != 0 || c->max_series > 1000000) {
        fprintf(stderr, "spanshimd: bad --metrics-max-series %s (1..1000000)\n", optarg);
        return 2;
      }
      break;
    case O_ALLOW_UID:
    case O_ALLOW_GROUP:
      if (add_allowed(o, ch == O_ALLOW_GROUP, optarg) != 0) return 2;
      break;
    case O_DAEMON: c->daemon = 1; break;
    case O_PIDFILE: c->pid_file = optarg; break;
    case O_LOGFILE: c->log_file = optarg; break;
    case O_GRPC_LISTEN: o->grpc_listen = optarg; break;
    case O_GRPC_SOCKET: o->grpc_socket = optarg; break;
    case O_TOKEN:
      if (read_token(optarg, o) != 0) return 2;
      break;
    case O_HDR_TO:
      if (parse_ms("--header-timeout", optarg, &o->header_timeout_ms) != 0) return 2;
      break;
    case O_BODY_TO:
      if (parse_ms("--body-timeout", optarg, &o->body_timeout_ms) != 0) return 2;
      break;
    case O_IDLE_TO:
      if (parse_ms("--idle-timeout", optarg, &o->idle_timeout_ms) != 0) return 2;
      break;
    case O_NO_TREE: o->no_tree = 1; break;
    case O_TREE_FILE: o->tree_file = optarg; break;
    case O_TREE_ROOT: {
      char *end;
      long pid = strtol(optarg, &end, 10);
      if (*optarg == '\0' || *end != '\0' || pid <= 0 || pid > INT32_MAX) {
        fprintf(stderr, "spanshimd: bad --tree-root %s (a process id)\n", optarg);
        return 2;
      }
      o->tree_root = (int)pid;
      break;
    }
    case O_PER_PEER:
      if (parse_size(optarg, &o->max_conns_per_peer) != 0 || o->max_conns_per_peer > 1000000) {
        fprintf(stderr, "spanshimd: bad --max-conns-per-peer %s (1..1000000)\n", optarg);
        return 2;
      }
      break;
    case O_MAX_BUFFERED:
      if (parse_size(optarg, &o->max_buffered) != 0) {
        fprintf(stderr, "spanshimd: bad --max-buffered %s (bytes, K/M/G suffix)\n", optarg);
        return 2;
      }
      break;
    case O_HELP: fputs(usage, stdout); return 1;
    default: fputs(usage, stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "spanshimd: unexpected argument %s\n", argv[optind]);
    return 2;
  }
  if (o->listen_token_len && !o->listen && !o->grpc_listen) {
    fprintf(stderr, "spanshimd: --listen-token is for the TCP ports: give --listen or "
            "--grpc-listen too\n");
    return 2;
  }
  size_t one = SS_MAX_HEAD + o->max_body + 16384;
  if (o->max_buffered == 0) o->max_buffered = 2 * one;
  if (o->max_buffered < one) {
    fprintf(stderr, "spanshimd: --max-buffered must hold one largest request (%zu bytes "
            "with --max-body %zu)\n", one, o->max_body);
    return 2;
  }
  /* A peer gets half, never less than its largest request (a gRPC one compressed a
   * little larger). */
  o->max_buffered_peer = o->max_buffered / 2;
  if (o->max_buffered_peer < one + one / 1024) o->max_buffered_peer = one + one / 1024;
  if (!o->socket_path[0] &&
      ss__default_socket_path(o->socket_path, sizeof o->socket_path, getenv) != 0) {
    fprintf(stderr, "spanshimd: default socket path too long; use --socket\n");
    return 2;
  }
  return 0;
}

static const char *env_get(const char *k) { return getenv(k); }

/* Detaches: the parent exits 0 once the sockets are listening (so a service manager or
 * script that waits for it finds the socket ready), the child starts a session, moves to
 * /, and points stdio at /dev/null (stderr at --log-file when given). 0 in the child,
 * -1 on failure (printed). */
static int daemonize(const char *log_file, const char *pid_file) {
  int logfd = -1;
  char why[512];
  if (log_file && (logfd = ss__open_output(log_file, 0, why, sizeof why)) < 0) {
    fprintf(stderr, "spanshimd: cannot open %s: %s\n", log_file, why);
    return -1;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    perror("spanshimd: fork");
    return -1;
  }
  if (pid > 0) _exit(0);
  setsid();
  if (chdir("/") != 0) { /* "/" always exists; nothing to do */ }
  int null = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(logfd >= 0 ? logfd : null, 2);
    if (null > 2) close(null);
  }
  if (logfd > 2) close(logfd);
  if (pid_file) {
    int fd = ss__open_output(pid_file, 1, why, sizeof why);
    if (fd >= 0) {
      dprintf(fd, "%d\n", (int)getpid());
      close(fd);
    } else {
      fprintf(stderr, "spanshimd: cannot write %s: %s\n", pid_file, why);
    }
  }
  return 0;
}

/* A relative --out path, made absolute before a daemon moves to / (SIGHUP reopens it). */
static const char *absolute(const char *path) {
  static char buf[4096];
  char cwd[4000];
  if (path[0] == '/' || getcwd(cwd, sizeof cwd) == NULL) return path;
  snprintf(buf, sizeof buf, "%s/%s", cwd, path);
  return buf;
}

/* Resolves the upstream from flags and environment; 1 configured, 0 none, -1 error. */
static int setup_upstream(ss__opts *o, cli *c) {
  c->up.gzip = c->gzip;
  int rc = ss__upstream_config(&c->up, c->otlp_endpoint, env_get);
  if (rc < 0) {
    fprintf(stderr, "spanshimd: unusable upstream endpoint\n");
    return -1;
  }
  if (rc == 0) {
    if (c->n_headers) {
      fprintf(stderr, "spanshimd: --otlp-header needs an upstream (--otlp-endpoint)\n");
      return -1;
    }
    return 0;
  }
  if (c->timeout_ms) c->up.timeout_ms = c->timeout_ms;
  for (size_t i = 0; i < c->n_headers; i++)
    if (ss__upstream_add_headers(&c->up, c->headers[i]) != 0) {
      fprintf(stderr, "spanshimd: bad --otlp-header %s\n", c->headers[i]);
      return -1;
    }
  (void)o;
  return 1;
}

/* SIGTERM/SIGINT arrive on a signalfd, so the loop ends between two requests; SIGPIPE
 * is ignored (sends use MSG_NOSIGNAL anyway; this covers the output file being a pipe). */
static int setup_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  signal(SIGPIPE, SIG_IGN);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* Room for SS_MAX_CONNS connections (and the gRPC table's SS_GRPC_MAX_CONNS): the soft
 * fd limit is raised as far as the hard one allows, and the table sized to what it gives
 * (a full table must not mean EMFILE). */
static void size_conn_table(ss__opts *o) {
  struct rlimit rl;
  size_t max = SS_MAX_CONNS;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rlim_t grpc = o->grpc_listen || o->grpc_socket ? SS_GRPC_MAX_CONNS : 0;
    rlim_t want = SS_MAX_CONNS + grpc + 128;
    if (rl.rlim_cur < want) {
      rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur < want)
      max = rl.rlim_cur > grpc + 256 ? (size_t)(rl.rlim_cur - grpc) - 128 : 128;
  }
  o->max_conns = max;
  if (o->max_conns_per_peer == 0) o->max_conns_per_peer = max / 4 > 1 ? max / 4 : 1;
}

/* The shim finds this in the collector's dynamic symbols (the link exports it) and stays
 * off: the collector never traces itself, under whatever name it was started. */
__attribute__((visibility("default"), used)) const int spanshimd_collector = 1;

int main(int argc, char **argv) {
  ss__opts o;
  cli c;
  int rc = parse_args(argc, argv, &o, &c);
  if (rc) return rc == 1 ? 0 : rc;
  size_conn_table(&o);
  /* Big buffers (bodies, inflated bodies, decoder blocks) come from mmap and go back to
   * the system when freed, rather than raising glibc's threshold and staying. */
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  int up = setup_upstream(&o, &c);
  if (up < 0) return 2;
  /* Without an upstream the file is the only output, so it has a default. */
  if (!o.out_path && !up) o.out_path = SS_DEFAULT_OUT;
  o.file = o.out_path != NULL;
  if (o.file && !o.logs_out) o.logs_out = strdup(ss__beside(o.out_path, "logs"));
  if (o.file && !o.metrics_out) o.metrics_out = strdup(ss__beside(o.out_path, "metrics"));
  if (o.file && c.daemon) {
    o.out_path = strdup(absolute(o.out_path));
    o.logs_out = strdup(absolute(o.logs_out));
    o.metrics_out = strdup(absolute(o.metrics_out));
  }
  if (c.pid_file && c.daemon) c.pid_file = strdup(absolute(c.pid_file));
  int sigfd = setup_signals();
  if (sigfd < 0) {
    perror("spanshimd: signals");
    return 1;
  }
  ss__sink_max_line(o.max_line);
  if (o.file && (ss__sink_open(SS_SIG_TRACES, o.out_path, o.truncate) != 0 ||
                 ss__sink_open(SS_SIG_LOGS, o.logs_out, o.truncate) != 0 ||
                 ss__sink_open(SS_SIG_METRICS, o.metrics_out, o.truncate) != 0))
    return 1;
  if (o.no_tree) ss__tree_off();
  if (ss__tree_token_init() != 0)
    fprintf(stderr, "spanshimd: no random bytes for the traced tree's token: processes of "
            "the tree are admitted while they run only\n");
  if (o.tree_file && !o.no_tree) ss__tree_load(o.tree_file);
  if (o.tree_root && !o.no_tree && ss__tree_add_root(o.tree_root) != 0) {
    fprintf(stderr, "spanshimd: --tree-root %d: no such process\n", o.tree_root);
    return 2;
  }
  /* Processes of the traced tree that changed user (tree.c) must reach the socket to be
   * admitted: it is 0666 in a 0711 directory, and SO_PEERCRED and the tree decide. Only
   * root's processes change user (a setuid program ignores the shim's variables), so a
   * collector not running as root keeps its socket 0600 in a 0700 directory, as the
   * design has it, unless --allow-uid/--allow-group names someone else. */
  int shared = o.n_allow_uids + o.n_allow_gids > 0 || (!o.no_tree && geteuid() == 0);
  int ufd = ss__listen_unix(o.socket_path, shared);
  if (ufd < 0) return 1;
  int tfd = -1;
  char bound[128] = "";
  if (o.listen && (tfd = ss__listen_tcp(o.listen, bound, sizeof bound)) < 0) {
    ss__unlisten_unix(o.socket_path);
    return 1;
  }
  int mfd = -1;
  char mbound[128] = "";
  if (o.metrics && ((mfd = ss__listen_tcp(o.metrics, mbound, sizeof mbound)) < 0 ||
                    ss__metrics_init(c.max_series) != 0)) {
    ss__unlisten_unix(o.socket_path);
    return 1;
  }
  int gtfd = -1, gufd = -1;
  char gbound[128] = "";
  if ((o.grpc_listen && (gtfd = ss__listen_tcp(o.grpc_listen, gbound, sizeof gbound)) < 0) ||
      (o.grpc_socket && (gufd = ss__listen_unix(o.grpc_socket, shared)) < 0) ||
      ss__grpc_start(&o, gtfd, gufd) != 0) {
    ss__unlisten_unix(o.socket_path);
    if (gufd >= 0) ss__unlisten_unix(o.grpc_socket);
    return 1;
  }
  if (c.sampling && ss__sampler_init(&c.samp) != 0) {
    fprintf(stderr, "spanshimd: out of memory for the sampler\n");
    return 1;
  }
  fprintf(stderr, "spanshimd: listening on unix:%s%s%s", o.socket_path,
          tfd >= 0 ? " and http://" : "", bound);
  if (gtfd >= 0) fprintf(stderr, ", gRPC on %s", gbound);
  if (gufd >= 0) fprintf(stderr, ", gRPC on unix:%s", o.grpc_socket);
  if (o.file) fprintf(stderr, ", writing %s", o.out_path);
  if (up) fprintf(stderr, ", forwarding to %s%s", c.up.traces_url[0] ? c.up.traces_url : c.up.logs_url,
                  c.up.gzip == 1 ? " (gzip)" : "");
  if (mfd >= 0) fprintf(stderr, ", metrics on http://%s/metrics", mbound);
  fputc('\n', stderr);
  if (c.daemon && daemonize(c.log_file, c.pid_file) != 0) {
    ss__unlisten_unix(o.socket_path);
    return 1;
  }
  if (up && ss__upstream_start(&c.up) != 0) {  /* threads only after a daemon forked */
    fprintf(stderr, "spanshimd: cannot start the upstream exporter\n");
    ss__unlisten_unix(o.socket_path);
    return 1;
  }
  rc = ss__receiver_run(&o, ufd, tfd, mfd, sigfd);
  ss__unlisten_unix(o.socket_path);
  if (o.grpc_socket) ss__unlisten_unix(o.grpc_socket);
  close(ufd);
  if (o.tree_file && !o.no_tree && ss__tree_save(o.tree_file) != 0)
    fprintf(stderr, "spanshimd: cannot write the traced tree to %s: %s\n", o.tree_file,
            strerror(errno));
  if (tfd >= 0) close(tfd);
  if (mfd >= 0) close(mfd);
  ss__upstream_stop(c.grace_ms);
  ss__metrics_free();
  if (c.pid_file && c.daemon) unlink(c.pid_file);
  if (c.sampling) ss__sampler_free();
  ss__sink_close();
  ss__sqlsum_free();
  ss__dwarf_free();
  ss__decode_release();
  ss__buf line = SS_BUF_INIT;
  ss__stats_line(&line);
  if (write(2, line.data, line.len) < 0) { /* nowhere left to report it */ }
  ss__buf_free(&line);
  return rc == 0 ? 0 : 1;
}
