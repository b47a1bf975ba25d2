/* signals.c - a fatal signal (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL) is recorded on the
 * process span and the spans are flushed (bounded), then the app's own handler or the
 * default action runs exactly as it would have: same exit status, same core dump.
 *
 * Installed only when process spans are on, and only for signals whose disposition is
 * the default at start. sigaction and signal are interposed so the app always sees, and
 * sets, its own disposition: the shim's handler stays installed behind it (with the
 * app's mask and SA_NODEFER/SA_ONSTACK) and chains to what the app set. Everything the
 * handler does is async-signal-safe. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "runtime/exporter.h"
#include "hooks/hook.h"

SS_REAL(sigaction)
SS_REAL(signal)

static const int fatal[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
static struct sigaction app_act[NSIG]; /* the disposition the app believes it has */
static _Atomic int ours[NSIG];         /* our handler is installed behind the app's */

int ss__real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  return real_sigaction()(sig, act, old);
}

static int app_has_handler(const struct sigaction *a) {
  return a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN;
}

static void on_fatal(int sig, siginfo_t *info, void *uctx) {
  SS_SAVE_ERRNO({
    if (ss__exporter_running()) {
      ss__process_end(SS_PROC_SIGNAL, sig);
      ss__exporter_flush_signal(ss__cfg.exit_flush_ms);
    }
  });
  struct sigaction app = app_act[sig];
  if (app_has_handler(&app)) {
    if (app.sa_flags & SA_RESETHAND) {
      memset(&app_act[sig], 0, sizeof app_act[sig]);
      app_act[sig].sa_handler = SIG_DFL;
    }
    if (app.sa_flags & SA_SIGINFO)
      app.sa_sigaction(sig, info, uctx);
    else
      app.sa_handler(sig);
    return;
  }
  if (app.sa_handler == SIG_IGN) return;
  /* The default action: put it back and let it happen. A fault re-executes the faulting
   * instruction on return; a signal that was sent (kill, raise, abort) is sent again and
   * stays pending until we return. */
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  real_sigaction()(sig, &dfl, NULL);
  atomic_store(&ours[sig], 0);
  if (info == NULL || info->si_code <= 0) raise(sig);
}

static void install_behind(int sig, const struct sigaction *app) {
  struct sigaction mine = {.sa_sigaction = on_fatal};
  mine.sa_mask = app->sa_mask;
  mine.sa_flags = SA_SIGINFO | SA_ONSTACK | (app->sa_flags & (SA_NODEFER | SA_RESTART));
  real_sigaction()(sig, &mine, NULL);
}

void ss__signals_install(void) {
  for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
    int sig = fatal[i];
    struct sigaction cur;
    if (real_sigaction()(sig, NULL, &cur) != 0 || cur.sa_handler != SIG_DFL) continue;
    app_act[sig] = cur;
    install_behind(sig, &cur);
    atomic_store(&ours[sig], 1);
  }
}

static int is_ours(int sig) {
  return sig > 0 && sig < NSIG && atomic_load(&ours[sig]);
}

/* The app's sigaction; signal() uses it directly rather than through the exported name. */
static int app_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!is_ours(sig)) return real_sigaction()(sig, act, old);
  struct sigaction prev = app_act[sig];
  if (act) {
    app_act[sig] = *act;
    install_behind(sig, act);
  }
  if (old) *old = prev;
  return 0;
}

SS_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  return app_sigaction(sig, act, old);
}

SS_EXPORT __sighandler_t signal(int sig, __sighandler_t handler) {
  if (!is_ours(sig)) return real_signal()(sig, handler);
  /* glibc's signal(): BSD semantics. */
  struct sigaction act = {.sa_handler = handler, .sa_flags = SA_RESTART}, old;
  sigemptyset(&act.sa_mask);
  sigaddset(&act.sa_mask, sig);
  app_sigaction(sig, &act, &old);
  return old.sa_handler;
}
