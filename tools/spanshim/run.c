/* run.c - `spanshim run -- COMMAND`: trace one command.
 *
 * Where spans go: --endpoint, else an endpoint already in the environment, else a
 * spanshimd answering at the default socket; with none of those (or with --out), a
 * private spanshimd on a socket in a fresh 0711 directory writes FILE, and its waterfall
 * is printed when the command ends. The private daemon runs in its own process group so
 * a Ctrl-C at the terminal reaches the command but not the collector that must still
 * flush its spans. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/config.h"
#include "runtime/transport.h"
#include "tools/common/duration.h"
#include "tools/spanshim/cli.h"

#define DEFAULT_OUT "spanshim-traces.jsonl"
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 10000
#define EXIT_SETUP 125  /* spanshim itself failed (as env(1) and friends do) */
#define DEFAULT_WAIT_TREE "5s"

static const char run_usage[] =
    "usage: spanshim run [--out FILE] [--html REPORT.html] [--service NAME]\n"
    "                    [--endpoint ENDPOINT] [--quiet] [--no-color] [--wait-tree DUR]\n"
    "                    -- COMMAND [ARGS...]\n";
static const char run_help[] =
    "\n"
    "Runs COMMAND with libspanshim.so preloaded and exits with its status (128+N when a\n"
    "signal N killed it; 127 when COMMAND is not found, 126 when it cannot run).\n"
    "\n"
    "  -o, --out FILE        write spans to FILE (OTLP JSON lines, truncated first) through\n"
    "                        a private spanshimd; default ./" DEFAULT_OUT "\n"
    "      --html REPORT.html also write the run's HTML report (one self-contained file,\n"
    "                        see `spanshim view --html`); implies a private spanshimd\n"
    "  -s, --service NAME    OTEL_SERVICE_NAME for the command\n"
    "  -e, --endpoint EP     send spans to this collector instead: unix:/path/to.sock, a\n"
    "                        socket path, or http://host:port/v1/traces\n"
    "  -q, --quiet           print nothing but errors (no waterfall)\n"
    "      --no-color        no colours in the waterfall (also: NO_COLOR=1)\n"
    "      --wait-tree DUR   after COMMAND exits, keep collecting while processes it\n"
    "                        started (background jobs, daemons) still run, for at most\n"
    "                        DUR (default " DEFAULT_WAIT_TREE "; 0: not at all); then name\n"
    "                        the ones still running\n"
    "\n"
    "Without --out or --endpoint, a collector named by SPANSHIM_ENDPOINT or\n"
    "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, or a spanshimd answering at the default socket\n"
    "($XDG_RUNTIME_DIR/spanshim/collector.sock, else /tmp/spanshim-$UID/collector.sock)\n"
    "receives the spans, and no waterfall is printed. Otherwise a private spanshimd\n"
    "collects them and the waterfall goes to stderr when COMMAND ends.\n"
    "SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to spanshim are passed on to COMMAND.\n";

typedef struct run_opts {
  const char *out, *service, *endpoint, *html, *wait_tree;
  uint64_t wait_tree_ms;
  int quiet, no_color;
  char **cmd;
} run_opts;

typedef struct run_state {
  char dir[PATH_MAX];       /* private daemon's directory ("" when none) */
  char sock[PATH_MAX];
  char log[PATH_MAX];       /* its stderr */
  char out[PATH_MAX];       /* absolute FILE */
  char lib[PATH_MAX];
  char endpoint[PATH_MAX + 8];
  int external;             /* spans go to a collector we did not start */
  int silent;               /* ... and at its Unix socket nothing answered at the start */
  int daemon_died;          /* the private collector ended before it was stopped */
  int set_endpoint;         /* put `endpoint` into the command's SPANSHIM_ENDPOINT */
  pid_t daemon;
  int lfd;                  /* the private daemon's listening socket, until handed over */
} run_state;

static volatile sig_atomic_t child_pid;
static volatile sig_atomic_t stop_waiting; /* a signal ended the wait for the tree */

/* "a/b" into out; 0, or -ENAMETOOLONG (out then holds a cut path that is not used). */
static int path_join(char *out, size_t n, const char *a, const char *b) {
  int len = snprintf(out, n, "%s/%s", a, b);
  return len >= 0 && (size_t)len < n ? 0 : -ENAMETOOLONG;
}

/* ---- options ---- */

static int usage_error(const char *fmt, const char *arg) {
  return ss__usage_error("run", run_usage, fmt, arg);
}

/* Matches "-x VALUE", "--long VALUE" and "--long=VALUE"; advances *i past a value. */
static int opt_value(int argc, char **argv, int *i, const char *s, const char *l,
                     const char **val, int *bad) {
  const char *a = argv[*i];
  size_t ll = strlen(l);
  if (strncmp(a, l, ll) == 0 && a[ll] == '=') {
    *val = a + ll + 1;
    return 1;
  }
  if (strcmp(a, s) != 0 && strcmp(a, l) != 0) return 0;
  if (*i + 1 >= argc) {
    *bad = 1;
    return 1;
  }
  *val = argv[++*i];
  return 1;
}

/* Returns -1 to go on, else the exit status (help: 0, bad usage: 2). */
/* The endpoint --endpoint names: a bare socket path is the common thing to type; the
 * shim wants "unix:". */
static void endpoint_value(char *out, size_t n, const char *arg) {
  snprintf(out, n, "%s%s", arg[0] == '/' ? "unix:" : "", arg);
}

static int parse_opts(int argc, char **argv, run_opts *o) {
  memset(o, 0, sizeof(*o));
  int i, bad = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) { i++; break; }
    if (a[0] != '-' || a[1] == '\0') break;  /* the command starts here */
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      printf("%s%s", run_usage, run_help);
      return 0;
    } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
      o->quiet = 1;
    } else if (strcmp(a, "--no-color") == 0 || strcmp(a, "--no-colour") == 0) {
      o->no_color = 1;
    } else if (!opt_value(argc, argv, &i, "-o", "--out", &o->out, &bad) &&
               !opt_value(argc, argv, &i, "-s", "--service", &o->service, &bad) &&
               !opt_value(argc, argv, &i, "-e", "--endpoint", &o->endpoint, &bad) &&
               !opt_value(argc, argv, &i, "--html", "--html", &o->html, &bad) &&
               !opt_value(argc, argv, &i, "--wait-tree", "--wait-tree", &o->wait_tree, &bad)) {
      return usage_error("unknown option '%s'", a);
    }
    if (bad) return usage_error("option '%s' needs a value", a);
  }
  if (i >= argc) return usage_error("%s", "no COMMAND given");
  if (o->out && !o->out[0]) return usage_error("%s", "--out needs a file name");
  if (o->endpoint && !o->endpoint[0]) return usage_error("%s", "--endpoint is empty");
  if (o->endpoint) {
    char ep[PATH_MAX + 8], why[160], msg[sizeof(ep) + sizeof(why) + 40];
    endpoint_value(ep, sizeof(ep), o->endpoint);
    if (ss__config_endpoint_check("SPANSHIM_ENDPOINT", ep, why, sizeof(why)) != 0) {
      snprintf(msg, sizeof(msg), "--endpoint '%.200s' %s", o->endpoint, why);
      return usage_error("%s", msg);
    }
  }
  uint64_t ns;
  if (ss__parse_duration_ns(o->wait_tree ? o->wait_tree : DEFAULT_WAIT_TREE, &ns) != 0)
    return usage_error("--wait-tree '%s' is not a duration (5s, 500ms, 0)", o->wait_tree);
  o->wait_tree_ms = ns / 1000000;
  if (o->html && !o->html[0]) return usage_error("%s", "--html needs a file name");
  if ((o->out || o->html) && o->endpoint)
    return usage_error("%s", "--out/--html and --endpoint exclude each other (they start a "
                             "private collector)");
  o->cmd = argv + i;
  return -1;
}

/* ---- finding our files ---- */

static int find_lib(run_state *st, const char *self) {
  const char *rel[] = {"/libspanshim.so", "/../lib/libspanshim.so"};
  char p[PATH_MAX];
  for (int k = 0; k < 2; k++) {
    snprintf(p, sizeof(p), "%s%s", self, rel[k]);
    if (access(p, R_OK) == 0 && realpath(p, st->lib)) return 0;
  }
  ss__err("cannot find libspanshim.so next to %s or in %s/../lib", self, self);
  return -ENOENT;
}

/* A collector answers on this Unix socket path. With `why` (the default socket), only
 * one we can trust (runtime/transport.h: our directory, our or root's listener); else 0
 * and why[] says what was wrong, or stays "" when nothing answers. */
static int socket_answers(const char *path, char *why, size_t n) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  uid_t owner;
  if (strlen(path) >= sizeof(sa.sun_path)) return 0;
  strcpy(sa.sun_path, path);
  if (why && access(path, F_OK) == 0 && ss__unix_dir_trusted(path, 0, &owner, why, n) != 0)
    return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  if (ok && why && ss__unix_peer_trusted(fd, SS_UID_NONE, why, n) != 0) ok = 0;
  close(fd);
  return ok;
}

/* Something accepts TCP connections at an http:// endpoint (looked up as the shim will;
 * 1 s at most). A collector there is the user's to trust: nothing more is asked of it. */
static int tcp_answers(const char *url) {
  ss__endpoint ep;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai, *a;
  int ok = 0;
  if (ss__endpoint_parse(url, "/v1/traces", &ep) != 0 || ep.is_unix) return 0;
  if (getaddrinfo(ep.host, ep.port, &hints, &ai) != 0) return 0;
  for (a = ai; a && !ok; a = a->ai_next) {
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof(err);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
      ok = 1;
    else if (errno == EINPROGRESS && poll(&p, 1, 1000) == 1 &&
             getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
      ok = 1;
    close(fd);
  }
  freeaddrinfo(ai);
  return ok;
}

/* A collector answers at the external endpoint now. */
static int endpoint_answers(const run_state *st) {
  return strncmp(st->endpoint, "unix:", 5) == 0 ? socket_answers(st->endpoint + 5, NULL, 0)
                                                : tcp_answers(st->endpoint);
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && v[0] ? v : NULL;
}

/* Picks an existing collector, if the user named or runs one. An endpoint variable the
 * shim cannot use (it would fall back to the default socket) is said and passed over:
 * the command's spans then go where they would without it. */
static void choose_external(run_state *st, const run_opts *o) {
  const char *names[] = {"SPANSHIM_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                         "OTEL_EXPORTER_OTLP_ENDPOINT"};
  char path[PATH_MAX], why[200] = "";
  if (o->endpoint) {
    endpoint_value(st->endpoint, sizeof(st->endpoint), o->endpoint);
    st->external = st->set_endpoint = 1;
    return;
  }
  if (o->out || o->html) return;
  for (int k = 0; k < 3; k++) {
    const char *v = env_nonempty(names[k]);
    if (!v) continue;
    if (ss__config_endpoint_check(names[k], v, why, sizeof(why)) != 0) {
      ss__err("%s='%.200s' %s; passing it over, as the shim does", names[k], v, why);
      why[0] = '\0';
      break;  /* the shim stops at the first one set, usable or not */
    }
    snprintf(st->endpoint, sizeof(st->endpoint), "%s", v);
    st->external = 1;  /* the shim reads it from the environment itself */
    return;
  }
  if (ss__default_socket_path(path, sizeof(path), getenv) == 0 &&
      socket_answers(path, why, sizeof(why))) {
    snprintf(st->endpoint, sizeof(st->endpoint), "unix:%s", path);
    st->external = st->set_endpoint = 1;
  } else if (why[0]) {
    ss__err("not using the collector at %s: %s; collecting privately instead", path, why);
  }
}

/* ---- the private collector ---- */

static int make_private_dir(run_state *st) {
  const char *tmp = env_nonempty("TMPDIR");
  /* Unix socket paths are short (108 bytes); fall back to /tmp for long TMPDIRs. */
  if (!tmp || strlen(tmp) > 60) tmp = "/tmp";
  snprintf(st->dir, sizeof(st->dir), "%s/spanshim-run-XXXXXX", tmp);
  if (!mkdtemp(st->dir)) {  /* mkdtemp makes it 0700 */
    ss__err("cannot create a directory in %s: %s", tmp, strerror(errno));
    st->dir[0] = '\0';
    return -errno;
  }
  /* The command's processes may change user (nginx's workers, as root): they must reach
   * the socket, and spanshimd admits them as the tree we started (--tree-root); anyone
   * else is refused there (SO_PEERCRED). Only root's commands can change user (a setuid
   * program ignores our variables): anyone else's private collector stays unreachable. */
  if (geteuid() == 0 && chmod(st->dir, 0711) != 0) {
    ss__err("cannot make %s searchable: %s", st->dir, strerror(errno));
    return -errno;
  }
  if (path_join(st->sock, sizeof(st->sock), st->dir, "collector.sock") < 0 ||
      path_join(st->log, sizeof(st->log), st->dir, "spanshimd.log") < 0)
    return -ENAMETOOLONG;  /* cannot happen: TMPDIR was checked to be short */
  snprintf(st->endpoint, sizeof(st->endpoint), "unix:%s", st->sock);
  st->set_endpoint = 1;
  return 0;
}

/* ---- children ----
 * Both children are started with vfork: the child runs in our memory until its exec, so
 * none of our pages is copied for it (a fork cost each child 35-40 page faults before its
 * exec, about 1 ms of CPU on a VM, on the way to the command's first instruction). What a
 * child needs is made ready here first: the environment is set in ours, the child execs
 * with it, and ours is put back (env_save/env_restore); signals are blocked across the
 * vfork, so no handler of ours runs in the child on our memory. A child only makes system
 * calls and execs. */
#define ENV_SAVED 8
typedef struct env_saved {
  const char *name[ENV_SAVED];
  char *value[ENV_SAVED]; /* strdup'd, or NULL when unset */
  int n;
} env_saved;

static void env_save(env_saved *s, const char *name) {
  const char *v = getenv(name);
  if (s->n == ENV_SAVED) return;
  s->name[s->n] = name;
  s->value[s->n++] = v ? strdup(v) : NULL;
}

static void env_restore(env_saved *s) {
  for (int i = 0; i < s->n; i++) {
    if (s->value[i]) setenv(s->name[i], s->value[i], 1);
    else unsetenv(s->name[i]);
    free(s->value[i]);
  }
  s->n = 0;
}

/* Signals blocked around a vfork (the child puts *old back before it execs). */
static void block_all(sigset_t *old) {
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, old);
}

/* The collector must not trace itself: drop our library from an inherited LD_PRELOAD. */
static void strip_preload(void) {
  const char *v = getenv("LD_PRELOAD");
  if (!v || !strstr(v, "libspanshim.so")) return;
  char *copy = strdup(v), *save = NULL, out[4096] = "";
  size_t len = 0;
  for (char *t = copy ? strtok_r(copy, ": ", &save) : NULL; t; t = strtok_r(NULL, ": ", &save)) {
    const char *base = strrchr(t, '/');
    if (strcmp(base ? base + 1 : t, "libspanshim.so") == 0) continue;
    len += (size_t)snprintf(out + len, len < sizeof(out) ? sizeof(out) - len : 0, "%s%s",
                            len ? ":" : "", t);
  }
  free(copy);
  if (len && len < sizeof(out)) setenv("LD_PRELOAD", out, 1);
  else unsetenv("LD_PRELOAD");
}

/* The private daemon's socket, bound and listening before the daemon or the command
 * starts: the command's shim can connect at once (the kernel queues the connection) and the
 * daemon takes the socket over (LISTEN_FDS) and serves it when it is up. Born 0600, then
 * for root 0666 in our 0711 directory (make_private_dir): spanshimd checks every peer. */
static int bind_private_socket(run_state *st) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(st->sock) >= sizeof(sa.sun_path)) return -ENAMETOOLONG;
  strcpy(sa.sun_path, st->sock);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rc == 0 && geteuid() == 0) rc = chmod(sa.sun_path, 0666); /* see make_private_dir */
  if (rc != 0 || listen(fd, 512) != 0) {
    rc = -errno;
    close(fd);
    ss__err("cannot listen on %s: %s", st->sock, strerror(-rc));
    return rc;
  }
  st->lfd = fd;
  return 0;
}

/* v in decimal into out (at least 21 bytes), by hand: the vfork child calls no printf. */
static void put_pid(char *out, pid_t v) {
  char digits[20];
  int n = 0;
  for (unsigned long u = (unsigned long)v; n == 0 || u; u /= 10) digits[n++] = (char)('0' + u % 10);
  while (n > 0) *out++ = digits[--n];
  *out = '\0';
}

/* In the daemon's (vfork) child: own process group, quiet stdio, the listening socket as
 * fd 3 (sd_listen_fds(3)), exec with the environment start_daemon set (LISTEN_PID's value
 * is written here, into `pid`, 20 characters the parent set aside in that environment).
 * SIGTERM and SIGINT stay blocked across the exec, so a stop that comes before spanshimd
 * has set up its signalfd waits for it (and finds the queued connections served) instead
 * of killing it. Never returns. */
static void exec_daemon(const run_state *st, const char *daemon, pid_t parent, char *pid,
                        const sigset_t *mask) {
  /* A private collector dies with its spanshim (SIGKILLed, say), not left to init: its
   * SIGTERM lets it write out what it has. Checked after: the parent may be gone already. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(EXIT_SETUP);
  setpgid(0, 0);
  sigset_t stop = *mask;
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_SETMASK, &stop, NULL);
  if (st->lfd >= 0) {
    if (st->lfd != 3 && dup2(st->lfd, 3) < 0) _exit(EXIT_SETUP);
    fcntl(3, F_SETFD, 0);
    put_pid(pid, getpid());
  }
  int null = open("/dev/null", O_RDWR);
  int log = open(st->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
  }
  if (log >= 0) dup2(log, 2);
  char root[24]; /* we are the subreaper of the command's tree: all of it descends from us */
  put_pid(root, parent);
  execl(daemon, "spanshimd", "--socket", st->sock, "--out", st->out, "--truncate",
        "--tree-root", root, (char *)NULL);
  dprintf(2, "spanshim: cannot run %s: %s\n", daemon, strerror(errno));
  _exit(EXIT_SETUP);
}

static void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

/* Polling that answers fast when the answer comes fast: sleeps 0.1 ms, growing by half
 * up to cap_us; returns the microseconds slept, for the caller's bound. */
static long poll_pause(long *step_us, long cap_us) {
  long us = *step_us ? *step_us : 100;
  sleep_us(us);
  *step_us = us + us / 2 > cap_us ? cap_us : us + us / 2;
  return us;
}

static void show_daemon_log(const run_state *st) {
  FILE *f = fopen(st->log, "r");
  char line[512];
  while (f && fgets(line, sizeof(line), f)) fputs(line, stderr);
  if (f) fclose(f);
}

/* Starts spanshimd and waits (bounded) until its socket accepts connections. */
static int start_daemon(run_state *st, const char *self) {
  char daemon[PATH_MAX];
  if (path_join(daemon, sizeof(daemon), self, "spanshimd") < 0 || access(daemon, X_OK) < 0) {
    ss__err("cannot find spanshimd next to the spanshim binary (%s)", daemon);
    return -ENOENT;
  }
  env_saved env = {0};
  env_save(&env, "LD_PRELOAD");
  env_save(&env, "LISTEN_FDS");
  env_save(&env, "LISTEN_PID");
  env_save(&env, "OTEL_EXPORTER_OTLP_ENDPOINT");
  env_save(&env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  env_save(&env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
  strip_preload();
  /* A collector named by these was passed over (choose_external) or --out asked for a
   * file: the private one only writes it, it forwards nowhere. */
  unsetenv("OTEL_EXPORTER_OTLP_ENDPOINT");
  unsetenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  unsetenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
  char *pid_digits = NULL;
  if (st->lfd >= 0) {
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_PID", "00000000000000000000", 1); /* the child writes its pid here */
    pid_digits = getenv("LISTEN_PID");
  }
  sigset_t mask;
  block_all(&mask);
  pid_t parent = getpid(), pid = vfork();
  if (pid == 0) exec_daemon(st, daemon, parent, pid_digits, &mask);
  int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &mask, NULL);
  env_restore(&env);
  if (pid < 0) {
    ss__err("fork: %s", strerror(fork_errno));
    return -fork_errno;
  }
  st->daemon = pid;
  if (st->lfd >= 0) { /* handed over: the command may start now */
    close(st->lfd);
    st->lfd = -1;
    return 0;
  }
  for (long waited_us = 0, step = 0; waited_us < START_TIMEOUT_MS * 1000L;) {
    int status;
    if (socket_answers(st->sock, NULL, 0)) return 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      st->daemon = 0;
      ss__err("spanshimd exited before it was ready:");
      show_daemon_log(st);
      return -ECHILD;
    }
    waited_us += poll_pause(&step, 10000);
  }
  ss__err("spanshimd did not accept connections on %s within %d ms", st->sock,
          START_TIMEOUT_MS);
  show_daemon_log(st);
  return -ETIMEDOUT;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits at most ms milliseconds for our child pid to end. Returns 1 when it ended
 * (reaped, *status set), 0 when it still runs. A pidfd (Linux 5.3) wakes us the moment it
 * ends; without one, polls (0.1 ms growing to 2 ms, which the command's end waits on). */
static int wait_child_ms(pid_t pid, int *status, long ms) {
  int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
  uint64_t end = mono_ms() + (uint64_t)ms;
  long step = 0;
  for (;;) {
    if (waitpid(pid, status, WNOHANG) == pid) {
      if (pfd >= 0) close(pfd);
      return 1;
    }
    uint64_t now = mono_ms();
    if (now >= end) break;
    if (pfd >= 0) {
      struct pollfd p = {.fd = pfd, .events = POLLIN};
      (void)poll(&p, 1, (int)(end - now)); /* EINTR (SIGCHLD, a forwarded signal): again */
    } else {
      (void)poll_pause(&step, 2000);
    }
  }
  if (pfd >= 0) close(pfd);
  return 0;
}

/* SIGTERM, then wait (bounded: it has to flush, but must not hang us). */
static void stop_daemon(run_state *st) {
  int status;
  if (st->daemon <= 0) return;
  kill(st->daemon, SIGTERM);
  if (wait_child_ms(st->daemon, &status, STOP_TIMEOUT_MS)) {
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
      ss__err("spanshimd exited with status %d:", WEXITSTATUS(status));
      show_daemon_log(st);
    }
    st->daemon = 0;
    return;
  }
  ss__err("spanshimd did not stop within %d ms; killed", STOP_TIMEOUT_MS);
  kill(st->daemon, SIGKILL);
  waitpid(st->daemon, &status, 0);
  st->daemon = 0;
}

static void cleanup_dir(run_state *st) {
  if (st->lfd >= 0) close(st->lfd);
  st->lfd = -1;
  if (!st->dir[0]) return;
  unlink(st->sock);
  unlink(st->log);
  rmdir(st->dir);
}

/* ---- the command ---- */

/* Signals sent to spanshim by another process are passed on. Ones the terminal sends to
 * the whole foreground group (si_code SI_KERNEL) already reached the command. */
static void forward(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  int saved = errno;
  if (child_pid > 0 && si->si_code <= 0) kill((pid_t)child_pid, sig);
  if (child_pid == 0) stop_waiting = 1;
  errno = saved;
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define N_FORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))
/* Bit k: forwarded[k] was ignored when we started (nohup's SIGHUP, SIGINT and SIGQUIT of
 * a shell's background job): it stays ignored, here and in the command, as without us. */
static unsigned ignored_at_start;

static void note_ignored(void) {
  for (size_t k = 0; k < N_FORWARDED; k++) {
    struct sigaction old;
    if (sigaction(forwarded[k], NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) &&
        old.sa_handler == SIG_IGN)
      ignored_at_start |= 1u << k;
  }
}

/* on: forward the signals (those not ignored at start); off: back to the default action
 * (async-signal-safe: the vfork child calls it). */
static void set_forwarding(int on) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sigemptyset(&sa.sa_mask);
  if (on) {
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
  } else {
    sa.sa_handler = SIG_DFL;
  }
  for (size_t k = 0; k < N_FORWARDED; k++)
    if (!(ignored_at_start & (1u << k))) sigaction(forwarded[k], &sa, NULL);
}

/* LD_PRELOAD with our library first; not added twice when already there. */
static void set_preload(const char *lib) {
  const char *old = getenv("LD_PRELOAD");
  if (!old || !old[0]) {
    setenv("LD_PRELOAD", lib, 1);
    return;
  }
  size_t n = strlen(lib);
  for (const char *p = old; (p = strstr(p, lib)); p += n)
    if ((p == old || p[-1] == ':' || p[-1] == ' ') && (p[n] == '\0' || p[n] == ':' ||
                                                       p[n] == ' '))
      return;
  char *v = malloc(n + strlen(old) + 2);
  if (!v) return;
  sprintf(v, "%s:%s", lib, old);
  setenv("LD_PRELOAD", v, 1);
  free(v);
}

/* The command's environment, set in ours for the vfork child (saved in env first). */
static void command_env(const run_state *st, const run_opts *o, env_saved *env) {
  env_save(env, "LD_PRELOAD");
  env_save(env, "SPANSHIM_ENDPOINT");
  env_save(env, "OTEL_SERVICE_NAME");
  env_save(env, "SPANSHIM_PROCESS_SPAN");
  set_preload(st->lib);
  if (st->set_endpoint) setenv("SPANSHIM_ENDPOINT", st->endpoint, 1);
  if (o->service) setenv("OTEL_SERVICE_NAME", o->service, 1);
  setenv("SPANSHIM_PROCESS_SPAN", "1", 0);
}

/* In the command's (vfork) child: our handlers off (the child's own table), the signal
 * mask as it was, exec; errno goes back through `fd`. */
static void exec_command(const run_opts *o, int fd, const sigset_t *mask) {
  set_forwarding(0);
  sigprocmask(SIG_SETMASK, mask, NULL);
  execvp(o->cmd[0], o->cmd);
  int e = errno;
  if (write(fd, &e, sizeof(e)) < 0) {
  }
  _exit(127);
}

/* Runs the command and waits for it; returns its shell-style status, or 126/127 when it
 * could not be executed (message printed), or EXIT_SETUP. */
static int run_command(const run_state *st, const run_opts *o, int *exec_failed) {
  int p[2], status, e;
  *exec_failed = 0;
  if (pipe2(p, O_CLOEXEC) < 0) {
    ss__err("pipe: %s", strerror(errno));
    return EXIT_SETUP;
  }
  fflush(NULL);
  set_forwarding(1);
  env_saved env = {0};
  command_env(st, o, &env);
  sigset_t mask;
  block_all(&mask);
  pid_t pid = vfork();
  if (pid == 0) exec_command(o, p[1], &mask);
  int fork_errno = errno;
  if (pid > 0) child_pid = pid; /* before a signal can ask for it */
  sigprocmask(SIG_SETMASK, &mask, NULL);
  env_restore(&env);
  if (pid < 0) {
    ss__err("fork: %s", strerror(fork_errno));
    close(p[0]);
    close(p[1]);
    set_forwarding(0);
    return EXIT_SETUP;
  }
  child_pid = pid;
  close(p[1]);
  ssize_t got;
  while ((got = read(p[0], &e, sizeof(e))) < 0 && errno == EINTR) {
  }
  close(p[0]);
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  child_pid = 0;
  set_forwarding(0);
  if (got == (ssize_t)sizeof(e)) {
    *exec_failed = 1;
    if (e == ENOENT || e == ENOTDIR) {
      ss__err("%s: command not found", o->cmd[0]);
      return 127;
    }
    ss__err("%s: %s", o->cmd[0], strerror(e));
    return 126;
  }
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_SETUP;
}

/* ---- the rest of the tree ----
 * spanshim run is the child subreaper of the command's tree (PR_SET_CHILD_SUBREAPER): a
 * process whose parent exits is reparented to us, so while any process the command
 * started still runs, one of our children (other than the collector) is alive. After
 * the command exits we keep collecting while there is one, for at most --wait-tree. */

#define TREE_SHOWN 8

typedef struct tree_seen {
  int n;                         /* processes seen alive after the command exited */
  pid_t pid[TREE_SHOWN];
  char comm[TREE_SHOWN][32];
} tree_seen;

/* The parent pid in /proc/PID/stat and whether it is still running (not a zombie). */
static pid_t stat_ppid(const char *pid, int *running) {
  char path[300], buf[512];
  snprintf(path, sizeof(path), "/proc/%s/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'), state;
  int ppid;
  if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2) return -1;
  *running = state != 'Z' && state != 'X';
  return ppid;
}

/* Notes pid, with its command name as of now (it may have exec'd since last time). */
static void note_seen(tree_seen *t, pid_t pid) {
  int i = 0;
  while (i < t->n && i < TREE_SHOWN && t->pid[i] != pid) i++;
  if (i == t->n) t->n++;
  if (i >= TREE_SHOWN) return;
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, t->comm[i], sizeof(t->comm[0]) - 1) : -1;
  if (fd >= 0) close(fd);
  if (n > 0) t->comm[i][n - 1] = '\0'; /* comm ends in a newline */
  else if (t->pid[i] != pid) strcpy(t->comm[i], "?");
  t->pid[i] = pid;
}

/* Reaps our ended children (noting the collector's end) and returns how many of the
 * others still run; each is noted in *t (alive into `now`, up to TREE_SHOWN). */
static int tree_alive(run_state *st, tree_seen *t, pid_t now[TREE_SHOWN]) {
  pid_t p;
  int status, alive = 0;
  while ((p = waitpid(-1, &status, WNOHANG)) > 0)
    if (p == st->daemon) {
      ss__err("spanshimd ended early:");
      show_daemon_log(st);
      st->daemon = 0;
      st->daemon_died = 1;
    }
  pid_t self = getpid();
  char path[64], list[8192];
  /* Our children, from the kernel's list (we are single-threaded: all are the main
   * thread's), else by scanning /proc for our pid as parent. */
  snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)self, (int)self);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, list, sizeof(list) - 1) : -1;
  if (fd >= 0) close(fd);
  DIR *d = n < 0 || n == (ssize_t)sizeof(list) - 1 ? opendir("/proc") : NULL;
  char *cur = list, *end;
  if (n >= 0) list[n] = '\0';
  for (;;) {
    const char *name;
    struct dirent *e = NULL;
    if (d) {
      if ((e = readdir(d)) == NULL) break;
      name = e->d_name;
    } else {
      if (n < 0) break;
      long v = strtol(cur, &end, 10);
      if (end == cur) break;
      cur = end;
      snprintf(path, sizeof(path), "%ld", v);
      name = path;
    }
    int running = 0;
    if (name[0] < '1' || name[0] > '9') continue;
    if (stat_ppid(name, &running) != self || !running) continue;
    pid_t pid = (pid_t)atoi(name);
    if (pid == st->daemon) continue;
    if (alive < TREE_SHOWN) now[alive] = pid;
    alive++;
    note_seen(t, pid);
  }
  if (d) closedir(d);
  return alive;
}

static void list_pids(char *out, size_t n, const tree_seen *t, const pid_t *pids, int count) {
  size_t len = 0;
  out[0] = '\0';
  for (int i = 0; i < count && i < TREE_SHOWN && len < n; i++) {
    const char *comm = "?";
    for (int k = 0; k < t->n && k < TREE_SHOWN; k++)
      if (t->pid[k] == pids[i]) comm = t->comm[k];
    len += (size_t)snprintf(out + len, n - len, "%s%d (%s)", i ? ", " : "", (int)pids[i], comm);
  }
  if (count > TREE_SHOWN && len < n) snprintf(out + len, n - len, ", ...");
}

/* After the command exited: collect while its tree runs, at most o->wait_tree_ms, then
 * say what we waited for (and what still runs: its later spans are not collected). */
static void wait_tree(run_state *st, const run_opts *o) {
  tree_seen t = {0};
  pid_t now[TREE_SHOWN];
  uint64_t start = mono_ms();
  int alive = tree_alive(st, &t, now);
  if (alive == 0) return;
  stop_waiting = 0;
  set_forwarding(1);
  long step = 0;
  while (alive > 0 && !stop_waiting && mono_ms() - start < o->wait_tree_ms) {
    poll_pause(&step, 10000);
    alive = tree_alive(st, &t, now);
  }
  set_forwarding(0);
  char list[512];
  if (alive > 0) {
    list_pids(list, sizeof(list), &t, now, alive);
    ss__err("%d process%s the command started still run%s after %.1f s: %s; spans they make "
            "from now on are not collected (--wait-tree)", alive, alive == 1 ? "" : "es",
            alive == 1 ? "s" : "", (double)(mono_ms() - start) / 1000, list);
  } else if (!o->quiet) {
    list_pids(list, sizeof(list), &t, t.pid, t.n);
    ss__err("waited %.1f s for %d process%s the command left running: %s",
            (double)(mono_ms() - start) / 1000, t.n, t.n == 1 ? "" : "es", list);
  }
}

/* ---- after ---- */

static void report(const run_state *st, const run_opts *o) {
  if (o->html && !st->external) {
    char *files[1] = {(char *)st->out};
    if (ss__html_report(o->html, files, 1) == 0 && !o->quiet)
      ss__err("report written to %s", o->html);
  }
  if (o->quiet) return;
  if (st->external) {
    if (st->silent)
      ss__err("spans were for the collector at %s, where nothing answered at the start",
              st->endpoint);
    else if (!endpoint_answers(st))
      ss__err("the collector at %s no longer answers: spans made after it stopped are lost "
              "(each process counts them in its diagnostics)", st->endpoint);
    else
      ss__err("spans sent to the collector at %s", st->endpoint);
    return;
  }
  struct stat sb;
  if (st->daemon_died) {
    ss__err("the private collector ended early (above): spans made after that are lost%s",
            stat(st->out, &sb) == 0 && sb.st_size > 0 ? "; those before it are below" : "");
    if (stat(st->out, &sb) < 0 || sb.st_size == 0) return;
  } else if (stat(st->out, &sb) < 0 || sb.st_size == 0) {
    ss__err("no spans were recorded (%s is empty)", st->out);
    return;
  }
  /* A closed stderr must not turn the command's status into a SIGPIPE death. */
  signal(SIGPIPE, SIG_IGN);
  fputc('\n', stderr);
  ss__show_file(stderr, st->out, ss__want_color(2, o->no_color), 2);
  fprintf(stderr, "spanshim: spans written to %s\n", st->out);
}

static int resolve_out(run_state *st, const run_opts *o) {
  const char *out = o->out ? o->out : DEFAULT_OUT;
  char cwd[PATH_MAX];
  if (out[0] == '/') {
    snprintf(st->out, sizeof(st->out), "%s", out);
    return 0;
  }
  if (!getcwd(cwd, sizeof(cwd))) {
    ss__err("getcwd: %s", strerror(errno));
    return -errno;
  }
  if (path_join(st->out, sizeof(st->out), cwd, out) < 0) {
    ss__err("%s: path too long", out);
    return -ENAMETOOLONG;
  }
  return 0;
}

/* The directory of file `path` (absolute, or relative to ours) must be there and
 * writable before the command runs: --out's, else the private collector would end early,
 * at a moment that races the command (status 0 or 125); --html's, else the report of a
 * command that ran for an hour would be lost at its end. 0, or -errno (said). */
static int check_dir_of(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL) snprintf(dir, sizeof(dir), ".");
  else if (slash == dir) slash[1] = '\0';
  else *slash = '\0';
  if (access(dir, W_OK | X_OK) == 0) return 0;
  int err = errno;
  ss__err("cannot write %s: directory %s: %s", path, dir, strerror(err));
  return -err;
}

/* Everything before the command runs: our files, then where spans go. */
static int prepare(run_state *st, const run_opts *o) {
  char self[PATH_MAX];
  int rc = ss__self_dir(self, sizeof(self));
  if (rc < 0) {
    ss__err("cannot find the spanshim binary: %s", strerror(-rc));
    return rc;
  }
  if ((rc = find_lib(st, self)) < 0) return rc;
  choose_external(st, o);
  if (st->external && !endpoint_answers(st)) {
    st->silent = 1;
    ss__err("nothing answers at %s: the command's spans are lost (each process counts them "
            "in its diagnostics) unless a collector starts there", st->endpoint);
  }
  if (st->external) return 0;
  if ((rc = resolve_out(st, o)) < 0 || (rc = check_dir_of(st->out)) < 0 ||
      (o->html && (rc = check_dir_of(o->html)) < 0) ||
      (rc = make_private_dir(st)) < 0)
    return rc;
  if ((rc = bind_private_socket(st)) < 0) return rc;
  return start_daemon(st, self);
}

int ss__cmd_run(int argc, char **argv) {
  note_ignored();
  run_opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc >= 0) return rc;
  run_state st;
  memset(&st, 0, sizeof(st));
  st.lfd = -1;
  if (prepare(&st, &o) < 0) {
    stop_daemon(&st);
    cleanup_dir(&st);
    return EXIT_SETUP;
  }
  int exec_failed;
  /* Orphans of the command's tree become ours, so we know while any of it runs. */
  if (!st.external) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  int status = run_command(&st, &o, &exec_failed);
  if (!st.external && !exec_failed) wait_tree(&st, &o);
  stop_daemon(&st);
  if (!exec_failed) report(&st, &o);
  cleanup_dir(&st);
  return status;
}
