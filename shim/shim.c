/* shim.c - the preload entry: lazy once-only init, constructor/destructor, fork handlers.
 * See shim.h. The interposed functions (exit paths included) live under hooks/. */
#include "shim/shim.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/log.h"
#include "runtime/ownfd.h"
#include "runtime/resource.h"
#include "runtime/stack.h"
#include "runtime/symbolize.h"
#include "runtime/sys.h"

_Atomic int ss__init_state;
/* Aligned 64 like the tracer and the transport (runtime/exporter.c): the link sorts .bss by
 * alignment, so the three structures every process writes at start come first, on the
 * page the loader has already written (the end of .data), not on pages of their own. */
ss__config ss__cfg __attribute__((aligned(64)));
pid_t ss__pid;

void *ss__dlsym_next(const char *name) {
  return dlsym(RTLD_NEXT, name);
}

/* A fork is an fd-replacing call too: no fd of ours is mid-birth at a low number in the
 * child (runtime/ownfd.h). */
static void atfork_prepare(void) {
  if (atomic_load(&ss__init_state) != SS_INIT_ON) return;
  ss__process_atfork_prepare(); /* these may take the loader lock: before we hold it */
  (void)ss__sys_exe_path(); /* read once per image: here, not in every child that exports */
  ss__socket_atfork_prepare();
  ss__sys_resolve_thread();
  ss__loader_atfork_prepare();
  ss__symbolize_atfork_prepare(); /* under the loader lock: the symbol cache's */
  ss__clock_resolve(); /* for the children: the vDSO's clock, not libc's wrapper */
  ss__resource_atfork_prepare();
  ss__exporter_atfork_prepare();
  ss__own_app_enter();
}

static void atfork_parent(void) {
  if (atomic_load(&ss__init_state) != SS_INIT_ON) return;
  ss__own_app_leave();
  ss__loader_atfork_parent();
  ss__process_ctx_shared(); /* the child's span nests under ours */
}

SS_FORK_TEXT static void atfork_child(void) {
  if (atomic_load(&ss__init_state) != SS_INIT_ON) return;
  ss__own_atfork_child();
  ss__loader_atfork_child();
  ss__internal_begin();
  ss__pid = ss__sys_getpid();
  ss__ids_atfork_child();
  ss__exporter_atfork_child();
  ss__socket_atfork_child();
  ss__spawn_atfork_child();
  ss__process_atfork_child();
  ss__internal_end();
}

/* pthread_atfork is libc_nonshared.a's stub around __register_atfork, linked at the end of
 * the shim's code: calling it at start faulted in a 64 KiB window of code of its own. The
 * same call, made directly (glibc's stub passes the object's __dso_handle so the handlers
 * go when the object is unloaded; the shim never is: -z nodelete). */
extern int __register_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void),
                             void *dso_handle);
extern void *__dso_handle;

/* DT_FINI (the link's -fini): the C runtime's _fini is empty and sits after all the code,
 * in a window of its own that every exit faulted in; this one is next to the
 * constructor. The destructor below runs from DT_FINI_ARRAY as before. */
void ss__fini(void) {
}

/* The collector must never trace itself, even when started with LD_PRELOAD set: its
 * executable exports `spanshimd_collector` (tools/spanshimd/main.c), whatever its name,
 * and this weak reference is bound to it by the loader (NULL in any other program); its
 * usual name is enough too. No readlink of /proc/self/exe here: that, its pthread_once and
 * the page of the 4 KiB path buffer were a cost of every process's start. */
extern const int spanshimd_collector __attribute__((weak));

static int is_collector(void) {
  return &spanshimd_collector != NULL ||
         strcmp(program_invocation_short_name, "spanshimd") == 0;
}

void ss__init(void) {
  int expected = SS_INIT_NONE;
  if (!atomic_compare_exchange_strong(&ss__init_state, &expected, SS_INIT_RUNNING)) return;
  ss__internal_begin();
  int saved_errno = errno; /* the app's errno at main() is what it would be without us */
  /* Diagnostics about the configuration itself need the log level and file first. */
  /* secure_getenv: a setuid/setgid or capability-raising program takes no configuration
   * from its caller's environment (AT_SECURE): defaults only, no log file. */
  const char *lvl = secure_getenv("SPANSHIM_LOG_LEVEL");
  if (lvl == NULL || *lvl == '\0') lvl = secure_getenv("OTEL_LOG_LEVEL");
  int level = ss__config_log_level(lvl && *lvl ? lvl : NULL), log_fd = 2;
  if (lvl && *lvl && level != SS_LOG_OFF) { /* an unknown name too: its diagnostic is seen */
    log_fd = ss__log_open_file(secure_getenv("SPANSHIM_LOG_FILE"));
    ss__log_setup(level == SS_LOG_ERROR ? SS_LOG_ERROR : SS_LOG_WARN, log_fd, "spanshim");
  }
  ss__config_load(&ss__cfg, secure_getenv);
  int log_err = 0;
  if (log_fd == 2) {
    errno = 0;
    log_fd = ss__log_open_file(ss__cfg.log_file);
    log_err = log_fd == 2 ? errno : 0;
  }
  ss__log_setup(ss__cfg.log_level, log_fd, "spanshim");
  if (log_err != 0) /* where the lines go instead, and why (seen only with a log level) */
    SS_LOG(SS_LOG_WARN, "SPANSHIM_LOG_FILE \"%s\" cannot be opened (%s); diagnostics go to "
           "stderr", ss__cfg.log_file, strerror(log_err));
  errno = saved_errno;
  ss__pid = ss__sys_getpid();
  int state = SS_INIT_OFF;
  if (!is_collector()) { /* OTEL_SDK_DISABLED: hooks only pass context on (span.c) */
    /* Ids are seeded by the first one drawn (runtime/ids.c): a process that makes no span
     * reads no randomness. */
    if (ss__exporter_init(&ss__cfg) == 0) {
      ss__transport_prepare_fd_table();
      __register_atfork(atfork_prepare, atfork_parent, atfork_child, &__dso_handle);
      state = SS_INIT_ON;
    }
  }
  ss__internal_end();
  atomic_store_explicit(&ss__init_state, state, memory_order_release);
}

/* glibc passes argc/argv/envp to constructors; the process span wants argv. */
__attribute__((constructor)) static void ss__ctor(int argc, char **argv, char **envp) {
  (void)envp;
  if (atomic_load(&ss__init_state) == SS_INIT_NONE) ss__init();
  if (atomic_load(&ss__init_state) != SS_INIT_ON) return;
  ss__internal_begin();
  ss__process_start(argc, argv);
  if (ss__cfg.process_span && (ss__cfg.hooks & SS_HOOK_PROCESS)) ss__signals_install();
  ss__internal_end();
}

/* Every exit path (hooks/process.c) ends the process span and flushes; this one too. */
__attribute__((destructor)) static void ss__dtor(void) {
  ss__exiting();
}
