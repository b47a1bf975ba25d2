/* main.c - spanshimd: options, signals, startup and shutdown.
 *
 * Foreground, single-threaded. stdout stays silent (only --help writes there); the
 * startup line and the final counters go to stderr. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "runtime/config.h"
#include "tools/spanshimd/spanshimd.h"

static const char usage[] =
    "usage: spanshimd [--socket PATH] [--out FILE.jsonl] [--truncate]\n"
    "                 [--listen 127.0.0.1:PORT] [--max-body BYTES] [--help]\n"
    "\n"
    "OTLP/HTTP collector for spanshim: receives POST /v1/traces and /v1/logs\n"
    "(application/x-protobuf) and appends each request as one OTLP JSON line.\n"
    "\n"
    "  --socket PATH     Unix socket to listen on (default $XDG_RUNTIME_DIR/spanshim/\n"
    "                    collector.sock, else /tmp/spanshim-$UID/collector.sock);\n"
    "                    its directory is created 0700, the socket is 0600, and\n"
    "                    only peers with our uid (or root) are served\n"
    "  --out FILE        JSON lines output, appended (default " SS_DEFAULT_OUT ")\n"
    "  --truncate        empty the output file at start\n"
    "  --listen H:P      also listen on TCP, loopback only (e.g. 127.0.0.1:4318;\n"
    "                    port 0 picks a free port, shown on the startup line)\n"
    "  --max-body N      largest request body in bytes, K/M suffixes allowed\n"
    "                    (default 16M); larger requests get 413\n"
    "  --help            this text\n"
    "\n"
    "GET /stats returns the counters as JSON. SIGTERM or SIGINT: finish, print the\n"
    "counters on stderr, remove the socket, exit 0.\n";

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-') return -1;
  if (*end == 'k' || *end == 'K') v <<= 10, end++;
  else if (*end == 'm' || *end == 'M') v <<= 20, end++;
  if (*end || v == 0 || v > (1ull << 30)) return -1;
  *out = (size_t)v;
  return 0;
}

static int parse_args(int argc, char **argv, ss__opts *o) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'}, {"out", required_argument, NULL, 'o'},
      {"truncate", no_argument, NULL, 't'},     {"listen", required_argument, NULL, 'l'},
      {"max-body", required_argument, NULL, 'm'}, {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int ch;
  memset(o, 0, sizeof *o);
  o->out_path = SS_DEFAULT_OUT;
  o->max_body = SS_DEFAULT_MAX_BODY;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (ch) {
    case 's':
      if (strlen(optarg) >= sizeof o->socket_path) {
        fprintf(stderr, "spanshimd: socket path too long: %s\n", optarg);
        return 2;
      }
      strcpy(o->socket_path, optarg);
      break;
    case 'o': o->out_path = optarg; break;
    case 't': o->truncate = 1; break;
    case 'l': o->listen = optarg; break;
    case 'm':
      if (parse_size(optarg, &o->max_body) != 0) {
        fprintf(stderr, "spanshimd: bad --max-body %s (1..1G bytes, K/M suffix)\n", optarg);
        return 2;
      }
      break;
    case 'h': fputs(usage, stdout); return 1;
    default: fputs(usage, stderr); return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "spanshimd: unexpected argument %s\n", argv[optind]);
    return 2;
  }
  if (!o->socket_path[0] &&
      ss__default_socket_path(o->socket_path, sizeof o->socket_path, getenv) != 0) {
    fprintf(stderr, "spanshimd: default socket path too long; use --socket\n");
    return 2;
  }
  return 0;
}

/* SIGTERM/SIGINT arrive on a signalfd, so the loop ends between two requests; SIGPIPE
 * is ignored (sends use MSG_NOSIGNAL anyway; this covers the output file being a pipe). */
static int setup_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  signal(SIGPIPE, SIG_IGN);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int main(int argc, char **argv) {
  ss__opts o;
  int rc = parse_args(argc, argv, &o);
  if (rc) return rc == 1 ? 0 : rc;
  int sigfd = setup_signals();
  if (sigfd < 0) {
    perror("spanshimd: signals");
    return 1;
  }
  if (ss__sink_open(o.out_path, o.truncate) != 0) return 1;
  int ufd = ss__listen_unix(o.socket_path);
  if (ufd < 0) return 1;
  int tfd = -1;
  char bound[128] = "";
  if (o.listen && (tfd = ss__listen_tcp(o.listen, bound, sizeof bound)) < 0) {
    ss__unlisten_unix(o.socket_path);
    return 1;
  }
  fprintf(stderr, "spanshimd: listening on unix:%s%s%s, writing %s\n", o.socket_path,
          tfd >= 0 ? " and http://" : "", bound, o.out_path);
  rc = ss__receiver_run(&o, ufd, tfd, sigfd);
  ss__unlisten_unix(o.socket_path);
  close(ufd);
  if (tfd >= 0) close(tfd);
  ss__sink_close();
  ss__decode_release();
  ss__buf line = SS_BUF_INIT;
  ss__stats_line(&line);
  if (write(2, line.data, line.len) < 0) { /* nowhere left to report it */ }
  ss__buf_free(&line);
  return rc == 0 ? 0 : 1;
}
