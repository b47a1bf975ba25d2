/* run.c - `spanshim run -- COMMAND`: trace one command.
 *
 * Where spans go: --endpoint, else an endpoint already in the environment, else a
 * spanshimd answering at the default socket; with none of those (or with --out), a
 * private spanshimd on a socket in a fresh 0700 directory writes FILE, and its waterfall
 * is printed when the command ends. The private daemon runs in its own process group so
 * a Ctrl-C at the terminal reaches the command but not the collector that must still
 * flush its spans. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/config.h"
#include "tools/spanshim/cli.h"

#define DEFAULT_OUT "spanshim-traces.jsonl"
#define START_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 10000
#define EXIT_SETUP 125  /* spanshim itself failed (as env(1) and friends do) */

static const char run_usage[] =
    "usage: spanshim run [--out FILE] [--html REPORT.html] [--service NAME]\n"
    "                    [--endpoint ENDPOINT] [--quiet] [--no-color] -- COMMAND [ARGS...]\n";
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
    "\n"
    "Without --out or --endpoint, a collector named by SPANSHIM_ENDPOINT or\n"
    "OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, or a spanshimd answering at the default socket\n"
    "($XDG_RUNTIME_DIR/spanshim/collector.sock, else /tmp/spanshim-$UID/collector.sock)\n"
    "receives the spans, and no waterfall is printed. Otherwise a private spanshimd\n"
    "collects them and the waterfall goes to stderr when COMMAND ends.\n"
    "SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to spanshim are passed on to COMMAND.\n";

typedef struct run_opts {
  const char *out, *service, *endpoint, *html;
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
  int set_endpoint;         /* put `endpoint` into the command's SPANSHIM_ENDPOINT */
  pid_t daemon;
} run_state;

static volatile sig_atomic_t child_pid;

/* "a/b" into out; 0, or -ENAMETOOLONG (out then holds a cut path that is not used). */
static int path_join(char *out, size_t n, const char *a, const char *b) {
  int len = snprintf(out, n, "%s/%s", a, b);
  return len >= 0 && (size_t)len < n ? 0 : -ENAMETOOLONG;
}

/* ---- options ---- */

static int usage_error(const char *fmt, const char *arg) {
  fputs("spanshim: run: ", stderr);
  fprintf(stderr, fmt, arg);
  fputc('\n', stderr);
  fputs(run_usage, stderr);
  return 2;
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
               !opt_value(argc, argv, &i, "--html", "--html", &o->html, &bad)) {
      return usage_error("unknown option '%s'", a);
    }
    if (bad) return usage_error("option '%s' needs a value", a);
  }
  if (i >= argc) return usage_error("%s", "no COMMAND given");
  if (o->out && !o->out[0]) return usage_error("%s", "--out needs a file name");
  if (o->endpoint && !o->endpoint[0]) return usage_error("%s", "--endpoint is empty");
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

/* A collector answers on this Unix socket path. */
static int socket_answers(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) return 0;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

static const char *env_nonempty(const char *name) {
  const char *v = getenv(name);
  return v && v[0] ? v : NULL;
}

/* Picks an existing collector, if the user named or runs one. */
static void choose_external(run_state *st, const run_opts *o) {
  const char *names[] = {"SPANSHIM_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                         "OTEL_EXPORTER_OTLP_ENDPOINT"};
  char path[PATH_MAX];
  if (o->endpoint) {
    /* A bare socket path is the common thing to type; the shim wants "unix:". */
    snprintf(st->endpoint, sizeof(st->endpoint), "%s%s",
             o->endpoint[0] == '/' ? "unix:" : "", o->endpoint);
    st->external = st->set_endpoint = 1;
    return;
  }
  if (o->out || o->html) return;
  for (int k = 0; k < 3; k++) {
    const char *v = env_nonempty(names[k]);
    if (v) {
      snprintf(st->endpoint, sizeof(st->endpoint), "%s", v);
      st->external = 1;  /* the shim reads it from the environment itself */
      return;
    }
  }
  if (ss__default_socket_path(path, sizeof(path), getenv) == 0 && socket_answers(path)) {
    snprintf(st->endpoint, sizeof(st->endpoint), "unix:%s", path);
    st->external = st->set_endpoint = 1;
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
  if (path_join(st->sock, sizeof(st->sock), st->dir, "collector.sock") < 0 ||
      path_join(st->log, sizeof(st->log), st->dir, "spanshimd.log") < 0)
    return -ENAMETOOLONG;  /* cannot happen: TMPDIR was checked to be short */
  snprintf(st->endpoint, sizeof(st->endpoint), "unix:%s", st->sock);
  st->set_endpoint = 1;
  return 0;
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

/* In the daemon's child: own process group, quiet stdio, exec. Never returns. */
static void exec_daemon(const run_state *st, const char *daemon) {
  setpgid(0, 0);
  int null = open("/dev/null", O_RDWR);
  int log = open(st->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
  }
  if (log >= 0) dup2(log, 2);
  strip_preload();
  execl(daemon, "spanshimd", "--socket", st->sock, "--out", st->out, "--truncate",
        (char *)NULL);
  dprintf(2, "spanshim: cannot run %s: %s\n", daemon, strerror(errno));
  _exit(EXIT_SETUP);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
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
  pid_t pid = fork();
  if (pid < 0) {
    ss__err("fork: %s", strerror(errno));
    return -errno;
  }
  if (pid == 0) exec_daemon(st, daemon);
  st->daemon = pid;
  for (long waited = 0; waited < START_TIMEOUT_MS; waited += 10) {
    int status;
    if (socket_answers(st->sock)) return 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      st->daemon = 0;
      ss__err("spanshimd exited before it was ready:");
      show_daemon_log(st);
      return -ECHILD;
    }
    sleep_ms(10);
  }
  ss__err("spanshimd did not accept connections on %s within %d ms", st->sock,
          START_TIMEOUT_MS);
  show_daemon_log(st);
  return -ETIMEDOUT;
}

/* SIGTERM, then wait (bounded: it has to flush, but must not hang us). */
static void stop_daemon(run_state *st) {
  int status;
  if (st->daemon <= 0) return;
  kill(st->daemon, SIGTERM);
  for (long waited = 0; waited < STOP_TIMEOUT_MS; waited += 10) {
    if (waitpid(st->daemon, &status, WNOHANG) == st->daemon) {
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        ss__err("spanshimd exited with status %d:", WEXITSTATUS(status));
        show_daemon_log(st);
      }
      st->daemon = 0;
      return;
    }
    sleep_ms(10);
  }
  ss__err("spanshimd did not stop within %d ms; killed", STOP_TIMEOUT_MS);
  kill(st->daemon, SIGKILL);
  waitpid(st->daemon, &status, 0);
  st->daemon = 0;
}

static void cleanup_dir(run_state *st) {
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
  errno = saved;
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

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
  for (size_t k = 0; k < sizeof(forwarded) / sizeof(forwarded[0]); k++)
    sigaction(forwarded[k], &sa, NULL);
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

/* In the command's child: environment, then exec; errno goes back through `fd`. */
static void exec_command(const run_state *st, const run_opts *o, int fd) {
  set_forwarding(0);
  set_preload(st->lib);
  if (st->set_endpoint) setenv("SPANSHIM_ENDPOINT", st->endpoint, 1);
  if (o->service) setenv("OTEL_SERVICE_NAME", o->service, 1);
  setenv("SPANSHIM_PROCESS_SPAN", "1", 0);
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
  pid_t pid = fork();
  if (pid < 0) {
    ss__err("fork: %s", strerror(errno));
    close(p[0]);
    close(p[1]);
    set_forwarding(0);
    return EXIT_SETUP;
  }
  if (pid == 0) {
    close(p[0]);
    exec_command(st, o, p[1]);
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

/* ---- after ---- */

static void report(const run_state *st, const run_opts *o) {
  if (o->html && !st->external) {
    char *files[1] = {(char *)st->out};
    if (ss__html_report(o->html, files, 1) == 0 && !o->quiet)
      ss__err("report written to %s", o->html);
  }
  if (o->quiet) return;
  if (st->external) {
    ss__err("spans sent to the collector at %s", st->endpoint);
    return;
  }
  struct stat sb;
  if (stat(st->out, &sb) < 0 || sb.st_size == 0) {
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
  if (st->external) return 0;
  if ((rc = resolve_out(st, o)) < 0 || (rc = make_private_dir(st)) < 0) return rc;
  return start_daemon(st, self);
}

int ss__cmd_run(int argc, char **argv) {
  run_opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc >= 0) return rc;
  run_state st;
  memset(&st, 0, sizeof(st));
  if (prepare(&st, &o) < 0) {
    stop_daemon(&st);
    cleanup_dir(&st);
    return EXIT_SETUP;
  }
  int exec_failed;
  int status = run_command(&st, &o, &exec_failed);
  stop_daemon(&st);
  if (!exec_failed) report(&st, &o);
  cleanup_dir(&st);
  return status;
}
