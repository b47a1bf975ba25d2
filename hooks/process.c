/* process.c - the process span, and the exit paths that end it.
 *
 * Process span (SPANSHIM_PROCESS_SPAN=1; on under `spanshim run`): starts in the
 * constructor as a child of TRACEPARENT, named after the executable, and becomes the
 * parent of every span in the process that has no other parent. It ends at exit (with
 * process.exit.code: exit(), return from main, _exit/_Exit), at a fatal signal (status
 * ERROR, error.type = the signal's name; see hooks/signals.c), or when exec replaces the
 * image (hooks/spawn.c). A fork child gets a span of its own, child of the context active
 * at the fork (dropped unsent when it execs before making any span; see below).
 *
 * Exit paths: exit() and the return from main (through __libc_start_main) note the exit
 * code; _exit/_Exit (from any thread) and the destructor end the span and flush within
 * SPANSHIM_EXIT_FLUSH_MS. A signal that kills the process (fatal, or a default-action one
 * such as SIGTERM) ends it from the signal handler, error.type = the signal's name. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hooks/hook.h"
#include "hooks/hooks.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/log.h"
#include "runtime/sanitize.h"
#include "runtime/sys.h"

extern char **environ;

/* Without libc's exit/_exit/_Exit the process still ends, with the status asked for. */
__attribute__((noreturn)) static void missing_exit(int status) {
  for (;;) syscall(SYS_exit_group, status);
}
SS_REAL_OR(exit, missing_exit)
SS_REAL_OR(_exit, missing_exit)
SS_REAL_OR(_Exit, missing_exit)

/* ---- the process span ---- */
#define PROC_REC_BYTES 12288
#define ARGS_BYTES 4096
#define MAX_ARGS 128

static uint64_t proc_rec[PROC_REC_BYTES / 8];
static _Atomic int proc_state; /* 0 none, 1 open, 2 ended */
static char proc_name[256];      /* process.executable.name */
static char proc_span_name[256]; /* the span's: what was executed */
static const char *proc_path = ""; /* ss__sys_exe_path() once known */
static char proc_args[ARGS_BYTES];
static size_t proc_args_len;
static _Atomic int exit_code = -1; /* known once exit/_exit/main's return says it */

/* process.command_args per SPANSHIM_COMMAND_ARGS, each item cut to the attribute value
 * length limit (the spec cuts each element of an array, never drops the array). */
static size_t collect_args(int argc, char **argv) {
  if (ss__cfg.command_args == SS_ARGS_NONE) return 0;
  return ss__argv_redact(argc < MAX_ARGS ? argc : MAX_ARGS, argv,
                         ss__cfg.command_args == SS_ARGS_FULL, ss__span_value_limit(), proc_args,
                         sizeof proc_args);
}

static void copy_base(char *dst, size_t cap, const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t len = strnlen(base, cap - 1);
  memcpy(dst, base, len);
  dst[len] = '\0';
}

/* process.executable.name is, per semantic conventions, the base name of /proc/self/exe's
 * target (python3.11 for python3, redis-check-rdb for redis-server); the span is named
 * after what was executed: the base name of the path given to execve (AT_EXECFN), else of
 * argv[0]. */
static void exe_names(void) {
  proc_path = ss__sys_exe_path();
  copy_base(proc_name, sizeof proc_name, proc_path[0] ? proc_path : program_invocation_short_name);
  const char *ran = (const char *)getauxval(AT_EXECFN);
  if (ran == NULL || *ran == '\0') ran = program_invocation_name;
  copy_base(proc_span_name, sizeof proc_span_name, ran && *ran ? ran : proc_name);
  if (proc_span_name[0] == '\0') copy_base(proc_span_name, sizeof proc_span_name, proc_name);
}

/* hooks/signals.c: default-action signals (SIGTERM, SIGINT, ...) deliver before they kill,
 * process span or not. Installed here because the constructor calls this whenever
 * tracing is on. */
void ss__signals_install_default(void);

/* Starts the process span under the calling thread's current context (TRACEPARENT or
 * nothing in a new image; the context at fork in a fork child) and makes it the root
 * parent. Returns 1 when it is open. */
static int open_span(void) {
  ss__sb b;
  if (!ss__span_start_at(&b, proc_span_name, SS_KIND_INTERNAL, NULL)) { /* no calling code */
    ss__span_pop(&b);
    return 0;
  }
  ss__span_int(&b, "process.pid", ss__sys_getpid());
  ss__span_int(&b, "process.parent_pid", ss__sys_getppid());
  ss__span_str(&b, "process.executable.name", proc_name, (size_t)-1);
  if (proc_path[0]) ss__span_str(&b, "process.executable.path", proc_path, (size_t)-1);
  if (proc_args_len) ss__span_strarr(&b, "process.command_args", proc_args, proc_args_len);
  ss__span_pop(&b);
  if (ss__span_park(&b, proc_rec, sizeof proc_rec) == 0) return 0;
  ss__ctx c;
  ss__span_ctx(&b, &c);
  ss__ctx_set_root(&c); /* every parentless span in this process nests under it */
  atomic_store(&proc_state, 1);
  return 1;
}

void ss__process_start(int argc, char **argv) {
  ss__signals_install_default();
  if (!ss__cfg.process_span || !(ss__cfg.hooks & SS_HOOK_PROCESS)) return;
  exe_names();
  proc_args_len = collect_args(argc, argv);
  open_span();
}

/* ---- fork without exec ----
 * A fork child gets a process span of its own, child of the context current at the fork
 * (the parent's process span, or the request or span the forking thread was in), with
 * its own pid, exit code and lifetime; the spans it makes nest under it. A child that
 * execs before making any span or passing its context on (a shell running a command,
 * subprocess) has it dropped unsent: the new image's span nests where it would have
 * without the fork. */
static ss__ctx fork_root;               /* the root parent before the fork */
static ss__ctx fork_stack[SS_CTX_DEPTH]; /* the forking thread's contexts, when it had any */
static int fork_depth;
static uint64_t fork_mark;               /* ss__tracer_activity() when the span opened */
static int fork_span;                    /* the open process span is a fork child's */
static _Atomic int fork_span_shared;     /* its context went to a child: it must be sent */

void ss__process_ctx_shared(void) {
  if (fork_span && !atomic_load_explicit(&fork_span_shared, memory_order_relaxed))
    atomic_store(&fork_span_shared, 1);
}

static void fork_child_span(void) {
  ss__ctx cur;
  int depth = ss__self.depth, n = depth < SS_CTX_DEPTH ? depth : SS_CTX_DEPTH;
  ss__ctx_root(&fork_root);
  fork_depth = depth;
  if (n) memcpy(fork_stack, ss__self.ctx, (size_t)n * sizeof fork_stack[0]);
  /* A barrier (an event loop's thread) would make the child a trace of its own: it
   * nests under the parent's process span instead. */
  if (depth && !ss__ctx_current(&cur)) ss__self.depth = 0;
  if (!open_span()) {
    ss__self.depth = depth;
    if (n) memcpy(ss__self.ctx, fork_stack, (size_t)n * sizeof fork_stack[0]);
    return;
  }
  /* What the forking thread goes on to do in the child nests under the child's span. */
  ss__ctx mine;
  ss__ctx_root(&mine);
  ss__self.depth = depth;
  for (int i = 0; i < n; i++) ss__self.ctx[i] = mine;
  fork_span = 1;
  atomic_store(&fork_span_shared, 0);
  fork_mark = ss__tracer_activity();
}

void ss__process_atfork_prepare(void) {
  (void)real__exit();
  (void)real_exit();
  (void)real__Exit();
}

SS_FORK_TEXT void ss__process_atfork_child(void) {
  /* The parent's span is the parent's to end. */
  if (atomic_load(&proc_state) != 0) atomic_store(&proc_state, 0);
  if (atomic_load(&exit_code) != -1) atomic_store(&exit_code, -1);
  if (fork_span) fork_span = 0;
  /* The configuration first: proc_name's page, never touched without process spans, would
   * be a fault to read. */
  if (ss__cfg.process_span && (ss__cfg.hooks & SS_HOOK_PROCESS) && proc_name[0])
    fork_child_span();
}

/* exec in a fork child that has made no span since: drop its span unsent and give the
 * contexts back, so the new image nests under what the fork was made from. Returns 1
 * when it did (nothing is left to deliver). */
static int fork_span_drop(void) {
  if (!fork_span || atomic_load(&proc_state) != 1 || atomic_load(&fork_span_shared) ||
      ss__tracer_activity() != fork_mark)
    return 0;
  int open = 1;
  if (!atomic_compare_exchange_strong(&proc_state, &open, 0)) return 0;
  fork_span = 0;
  ss__ctx_set_root(&fork_root);
  int n = fork_depth < SS_CTX_DEPTH ? fork_depth : SS_CTX_DEPTH;
  if (ss__self.depth == fork_depth && n)
    memcpy(ss__self.ctx, fork_stack, (size_t)n * sizeof fork_stack[0]);
  return 1;
}

int ss__process_exec(void) {
  if (fork_span_drop()) return 0;
  ss__process_end(SS_PROC_EXEC, 0);
  return 1;
}

void ss__process_note_exit(int code) {
  ss__signals_await_death();
  atomic_store(&exit_code, code & 0xff);
}

void ss__process_end(int how, int value) {
  int open = 1;
  if (!atomic_compare_exchange_strong(&proc_state, &open, 2)) return;
  int status = SS_STATUS_UNSET;
  char buf[160];
  if (how == SS_PROC_EXIT && value >= 0) {
    ss__rec_add_int(proc_rec, sizeof proc_rec, "process.exit.code", value);
    if (value != 0) {
      int n = snprintf(buf, sizeof buf, "%d", value);
      ss__rec_add_str(proc_rec, sizeof proc_rec, "error.type", buf, (size_t)n);
      n = snprintf(buf, sizeof buf, "exit status %d", value);
      ss__rec_add_str(proc_rec, sizeof proc_rec, NULL, buf, (size_t)n);
      status = SS_STATUS_ERROR | SS_STATUS_NO_STACK; /* an exit status, not a failed call */
    }
  } else if (how == SS_PROC_SIGNAL) {
    /* Signal-safe: no stdio. "SIG" + abbreviation, and the static description. */
    const char *abbrev = sigabbrev_np(value), *descr = sigdescr_np(value);
    size_t n = 0;
    memcpy(buf, "SIG", 3);
    n = 3;
    if (abbrev) {
      size_t l = strnlen(abbrev, 32);
      memcpy(buf + n, abbrev, l);
      n += l;
    }
    ss__rec_add_str(proc_rec, sizeof proc_rec, "error.type", buf, n);
    if (descr) ss__rec_add_str(proc_rec, sizeof proc_rec, NULL, descr, strlen(descr));
    /* A crash carries the crashing thread's stack; a kill (SIGTERM, SIGINT, ...) says
     * where the process was, not what failed: no stack, no exception record. */
    int crash = value == SIGSEGV || value == SIGABRT || value == SIGBUS || value == SIGFPE ||
                value == SIGILL;
    status = SS_STATUS_ERROR | (crash ? SS_STATUS_IN_SIGNAL : SS_STATUS_NO_STACK);
  }
  ss__rec_finish(proc_rec, ss__now_ns(), status);
}


/* ---- exit paths ---- */

/* In a vfork child memory is shared with the parent: touch nothing. */
static int ours_to_flush(void) {
  return ss__tracing_on() && ss__sys_getpid() == ss__pid;
}

static void exit_flush_checked(void) {
  SS_SAVE_ERRNO(ss__exporter_flush(ss__cfg.exit_flush_ms));
}

void ss__exit_flush(void) {
  if (ours_to_flush()) exit_flush_checked();
}

/* What was lost before the exporter, by reason, in the shim's diagnostics (the total is
 * also the spanshim.spans.dropped the collector reports). */
static void report_losses(void) {
  uint64_t ring = ss__dropped_count(SS_DROP_RING_FULL), table = ss__dropped_count(SS_DROP_TABLE_FULL),
           big = ss__dropped_count(SS_DROP_TOO_BIG), queue = ss__dropped_count(SS_DROP_QUEUE),
           other = ss__dropped_count(SS_DROP_OTHER), inj = ss__http_injections_skipped();
  if (ring + table + big + queue + other + inj == 0) return;
  SS_LOG(SS_LOG_INFO,
         "spans dropped before export: ring full %llu, table full %llu, too big %llu, "
         "queue full %llu, other %llu; traceparent injections skipped %llu",
         (unsigned long long)ring, (unsigned long long)table, (unsigned long long)big,
         (unsigned long long)queue, (unsigned long long)other, (unsigned long long)inj);
}

/* ending: nothing of the app runs on this thread after the flush (_exit, _Exit). */
static void exiting(int ending) {
  if (!ours_to_flush()) return;
  SS_SAVE_ERRNO({
    ss__exporter_exiting();
    ss__http_exiting();
    ss__socket_ending();
    report_losses();
    /* glibc's exit(0) after the last thread ended comes from inside libc, not through
     * exit() above: its status is 0. */
    int code = atomic_load(&exit_code);
    if (code < 0 && ss__exporter_last_thread_ended()) code = 0;
    ss__process_end(SS_PROC_EXIT, code);
  });
  if (ending) SS_SAVE_ERRNO(ss__exporter_flush_ending(ss__cfg.exit_flush_ms));
  else exit_flush_checked(); /* ours_to_flush said yes above: one getpid per exit */
}

void ss__exiting(void) {
  exiting(0);
}
SS_EXPORT void exit(int status) {
  ss__process_note_exit(status);
  real_exit()(status);
  __builtin_unreachable();
}

typedef int (*main_fn)(int, char **, char **);
static main_fn real_main;

static int main_wrapper(int argc, char **argv, char **envp) {
  int rc = real_main(argc, argv, envp);
  ss__process_note_exit(rc); /* __libc_start_main calls exit() internally */
  return rc;
}

typedef int (*start_fn)(main_fn, int, char **, void (*)(void), void (*)(void),
                        void (*)(void), void *);

SS_EXPORT int __libc_start_main(main_fn main, int argc, char **argv, void (*init)(void),
                                void (*fini)(void), void (*rtld_fini)(void), void *stack_end) {
  start_fn real = (start_fn)ss__dlsym_next("__libc_start_main");
  real_main = main;
  if (real == NULL) real_exit()(main_wrapper(argc, argv, environ)); /* not with glibc */
  return real(main_wrapper, argc, argv, init, fini, rtld_fini, stack_end);
}

SS_EXPORT void _exit(int status) {
  ss__process_note_exit(status);
  exiting(1);
  real__exit()(status);
  __builtin_unreachable();
}

SS_EXPORT void _Exit(int status) {
  ss__process_note_exit(status);
  exiting(1);
  real__Exit()(status);
  __builtin_unreachable();
}
