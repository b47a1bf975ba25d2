/* signals.c - a signal that is about to end the process first delivers the spans
 * (bounded by SPANSHIM_EXIT_FLUSH_MS), then the process ends exactly as it would have:
 * same signal, same wait status, same core dump.
 *
 * Two sets:
 *  - Fatal signals (SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL), with process spans on: the
 *    shim's handler stays installed behind a handler the app sets (with the app's mask
 *    and SA_NODEFER) and chains straight to it, recording nothing: a fault the app
 *    handles is not a crash. When the app's disposition at delivery is SIG_DFL (or
 *    SIG_IGN for a fault the kernel raised, which the kernel turns into SIG_DFL), the
 *    signal is recorded on the process span, the spans are delivered, and the default
 *    action runs.
 *  - Default-action signals (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1/2,
 *    SIGALRM, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ), whenever tracing is on: caught only
 *    while the app leaves the default action. The handler records the signal on the
 *    process span (when there is one), flushes, puts the default action back and sends
 *    the signal again; it is delivered as the handler returns, so the process dies of it
 *    at the point it was interrupted. A handler or SIG_IGN the app sets is installed as
 *    it is, with nothing of the shim's behind it; SIG_DFL puts the shim's back. Blocked
 *    signals stay blocked (the shim never changes a mask). Not in a pid-1 process, where
 *    the kernel drops a default-action signal that an installed handler would see.
 *
 * Either set is caught only when its disposition is the default at start (an inherited
 * SIG_IGN, as under nohup, is left alone). sigaction and signal are interposed so the app
 * always sees, and sets, its own disposition: a query reads the kernel's, and answers
 * what the app set whenever the shim's handler stands in for it. exec resets caught
 * signals to the default, so an exec'd image sees SIG_DFL where the app had it (and
 * SIG_IGN where the app set that: it is the kernel's). Everything a handler does is
 * async-signal-safe: atomics, nanosleep, the lock-free ring, sigaction, raise; when no
 * exporter thread was started yet (the process made no span before the signal), the
 * dying thread delivers itself with the exporter's signal-safe encoder, from a copy of
 * the fd table of its own (runtime/exporter.h: ss__exporter_flush_dying). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/exporter.h"
#include "runtime/stack.h"
#include "hooks/hooks.h"
#include "hooks/hook.h"
#include "runtime/sys.h"

SS_REAL(sigaction)
SS_REAL(signal)

enum { SS_SIG_NONE = 0, SS_SIG_FATAL = 1, SS_SIG_DEFAULT = 2 };

static const int fatal[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
/* The default-action set as a mask (bit sig - 1): a constant in the code, so installing
 * it at start reads no page of the shim's .rodata. */
#define SIG_MASK(s) ((uint64_t)1 << ((s) - 1))
#define DEADLY_MASK                                                                        \
  (SIG_MASK(SIGTERM) | SIG_MASK(SIGINT) | SIG_MASK(SIGHUP) | SIG_MASK(SIGQUIT) |           \
   SIG_MASK(SIGPIPE) | SIG_MASK(SIGUSR1) | SIG_MASK(SIGUSR2) | SIG_MASK(SIGALRM) |         \
   SIG_MASK(SIGVTALRM) | SIG_MASK(SIGPROF) | SIG_MASK(SIGXCPU) | SIG_MASK(SIGXFSZ))
/* What the app set, while our handler stands in: app_act[sig] when sig's bit (1 << (sig -
 * 1)) is in app_kept, else the disposition every signal has after an exec (SIG_DFL, no
 * flags, empty mask), which is what the constructor almost always finds. Kept
 * apart, so installing at start writes none of the 10 KiB of app_act (each page the
 * shim touches costs a process a page fault). */
static struct sigaction app_act[NSIG];
static _Atomic uint64_t app_kept;
/* Which set sig is in once installed (never reset): its bit in in_fatal or in_default. */
static _Atomic uint64_t in_fatal, in_default;

static uint64_t sig_bit(int sig) {
  return SIG_MASK(sig);
}

static struct sigaction app_of(int sig) {
  struct sigaction a;
  if (atomic_load(&app_kept) & sig_bit(sig)) return app_act[sig];
  memset(&a, 0, sizeof a);
  sigemptyset(&a.sa_mask);
  return a;
}

static int is_exec_default(const struct sigaction *a) {
  if (a->sa_handler != SIG_DFL || a->sa_flags != 0 || a->sa_restorer != NULL) return 0;
  /* The words holding signals 1 to NSIG - 1 (glibc leaves the rest of sa_mask as it was:
   * sigismember over every signal would cost 64 calls per signal). */
  const size_t bits = 8 * sizeof a->sa_mask.__val[0];
  for (size_t w = 0; w < (NSIG - 1 + bits - 1) / bits; w++)
    if (a->sa_mask.__val[w] != 0) return 0;
  return 1;
}

static void app_keep(int sig, const struct sigaction *a) {
  app_act[sig] = *a;
  atomic_fetch_or(&app_kept, sig_bit(sig));
}

/* The thread delivering for a dying process (0: none). */
static _Atomic long flusher;
/* The first thread that began to deliver before a signal's death (0: none; never reset:
 * the death follows its delivery). */
static _Atomic long dying;

int ss__real_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  return real_sigaction()(sig, act, old);
}

static int app_has_handler(const struct sigaction *a) {
  return a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN;
}

/* In a vfork child memory is the parent's: nothing of ours may be touched. */
static int in_vfork_child(void) {
  return ss__sys_getpid() != ss__pid;
}

/* Records the signal on the process span and delivers what is queued. One thread at a
 * time: a second dying thread waits (bounded) for the first and then delivers what is
 * left; a nested signal on the delivering thread itself does not wait. A fork child that
 * inherited a delivery in progress takes it over (its thread is not in this process). */
static void deliver_before_death(int sig) {
  long me = syscall(SYS_gettid), other = 0, none = 0;
  atomic_compare_exchange_strong(&dying, &none, me);
  if (!atomic_compare_exchange_strong(&flusher, &other, me)) {
    if (other == me) return;
    struct timespec tick = {0, 1000000};
    for (uint32_t waited = 0; waited < ss__cfg.exit_flush_ms; waited++) {
      other = atomic_load(&flusher);
      if (other == 0 && atomic_compare_exchange_strong(&flusher, &other, me)) break;
      if (other != 0 && syscall(SYS_tgkill, ss__sys_getpid(), other, 0) != 0 && errno == ESRCH &&
          atomic_compare_exchange_strong(&flusher, &other, me))
        break;
      nanosleep(&tick, NULL);
    }
    if (atomic_load(&flusher) != me) return;
  }
  /* Requests the process was serving or making end with it, as failed: "SIG" + name. */
  char why[40] = "SIG";
  const char *abbrev = sigabbrev_np(sig);
  size_t n = abbrev ? strnlen(abbrev, sizeof why - 4) : 0;
  memcpy(why + 3, abbrev ? abbrev : "", n);
  why[3 + n] = '\0';
  ss__http_dying(why);
  if (ss__exporter_running()) {
    ss__socket_ending();
    ss__process_end(SS_PROC_SIGNAL, sig);
    ss__exporter_flush_signal(ss__cfg.exit_flush_ms);
  } else {
    /* No exporter thread (no span before the signal): this thread delivers the process
     * span itself, signal-safely; no commit may start a thread here. */
    ss__exporter_exiting();
    ss__socket_ending();
    ss__process_end(SS_PROC_SIGNAL, sig);
    ss__exporter_flush_dying(ss__cfg.exit_flush_ms);
  }
  atomic_store(&flusher, 0);
}

/* A fault the app handles is the app's business (runtimes use SIGSEGV/SIGBUS/SIGFPE as
 * ordinary events, and recover with siglongjmp): its handler runs directly, with nothing
 * recorded and nothing delivered, so a recovered fault costs one indirect call. Only the
 * default action, which is about to end the process, is recorded; so is a handler that
 * puts SIG_DFL back and re-raises or returns into the fault again (through our sigaction,
 * our handler then finds SIG_DFL). SIG_IGN for a fault the kernel raised (si_code > 0) is
 * what the kernel does with it: it forces the default action. A sent signal the app
 * ignores is dropped, as the kernel would have. */
static void on_fatal(int sig, siginfo_t *info, void *uctx) {
  struct sigaction app = app_of(sig);
  if (app_has_handler(&app)) {
    if (app.sa_flags & SA_RESETHAND) app_act[sig].sa_handler = SIG_DFL; /* flags stay */
    if (app.sa_flags & SA_SIGINFO)
      app.sa_sigaction(sig, info, uctx);
    else
      app.sa_handler(sig);
    return;
  }
  int sent = info == NULL || info->si_code <= 0;
  if (app.sa_handler == SIG_IGN && sent) return;
  if (!sent) ss__stack_note_fault(uctx); /* the frame, should no unwinder be loaded */
  SS_SAVE_ERRNO({
    if (!in_vfork_child()) deliver_before_death(sig);
  });
  /* The default action: put it back and let it happen. A fault re-executes the faulting
   * instruction on return; a signal that was sent (kill, raise, abort) is sent again and
   * stays pending until we return. */
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  real_sigaction()(sig, &dfl, NULL);
  if (sent) raise(sig);
}

/* A default-action signal: deliver, then die of it. The signal is blocked while this
 * handler runs, so raise() leaves it pending; the default action takes it as the handler
 * returns, with the interrupted context (the core of SIGQUIT shows the app, not us). */
static void on_default(int sig, siginfo_t *info, void *uctx) {
  (void)info;
  (void)uctx;
  SS_SAVE_ERRNO({
    if (!in_vfork_child()) deliver_before_death(sig);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    real_sigaction()(sig, &dfl, NULL);
    raise(sig);
  });
}

void ss__signals_await_death(void) {
  long tid = atomic_load(&dying);
  if (tid == 0 || in_vfork_child() || tid == syscall(SYS_gettid)) return;
  uint64_t cap = (uint64_t)ss__cfg.exit_flush_ms * 10 + 100; /* its delivery's own bound */
  struct timespec tick = {0, 1000000};
  int saved = errno; /* the app's, should the death not come */
  for (uint64_t waited = 0; waited < cap; waited++) {
    /* Gone from this process (a fork child inherited the flag): nothing will come. */
    if (syscall(SYS_tgkill, ss__sys_getpid(), tid, 0) != 0 && errno == ESRCH) break;
    nanosleep(&tick, NULL);
  }
  errno = saved;
}

static int is_our_handler(const struct sigaction *k) {
  return (k->sa_flags & SA_SIGINFO) &&
         (k->sa_sigaction == on_fatal || k->sa_sigaction == on_default);
}

/* Behind an app's handler, the kernel delivers as it would to that handler (mask, stack,
 * restart, nodefer are the app's); behind SIG_DFL, on the alternate stack when there is
 * one, so that a stack overflow is still recorded. */
static void install_fatal(int sig, const struct sigaction *app) {
  struct sigaction mine = {.sa_sigaction = on_fatal};
  sigemptyset(&mine.sa_mask);
  mine.sa_flags = SA_SIGINFO | SA_ONSTACK;
  if (app_has_handler(app)) {
    mine.sa_mask = app->sa_mask;
    mine.sa_flags = SA_SIGINFO | (app->sa_flags & (SA_NODEFER | SA_RESTART | SA_ONSTACK));
  }
  real_sigaction()(sig, &mine, NULL);
}

/* old: the disposition it replaces (may be NULL); 0, or -1 with errno set. */
static int install_default(int sig, struct sigaction *old) {
  struct sigaction mine = {.sa_sigaction = on_default};
  sigemptyset(&mine.sa_mask);
  mine.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  return real_sigaction()(sig, &mine, old);
}

static int kind_of(int sig) {
  if (sig <= 0 || sig >= NSIG) return SS_SIG_NONE;
  if (atomic_load(&in_fatal) & sig_bit(sig)) return SS_SIG_FATAL;
  return atomic_load(&in_default) & sig_bit(sig) ? SS_SIG_DEFAULT : SS_SIG_NONE;
}

static void install_set(const int *sigs, size_t n, int k) {
  for (size_t i = 0; i < n; i++) {
    int sig = sigs[i];
    struct sigaction cur;
    if (kind_of(sig) != SS_SIG_NONE) continue;
    if (real_sigaction()(sig, NULL, &cur) != 0 || cur.sa_handler != SIG_DFL) continue;
    if (!is_exec_default(&cur)) app_keep(sig, &cur);
    if (k == SS_SIG_FATAL) install_fatal(sig, &cur);
    else install_default(sig, NULL);
    atomic_fetch_or(k == SS_SIG_FATAL ? &in_fatal : &in_default, sig_bit(sig));
  }
}

/* With process spans on (shim/shim.c's constructor). */
void ss__signals_install(void) {
  install_set(fatal, sizeof fatal / sizeof fatal[0], SS_SIG_FATAL);
}

/* Whenever tracing is on (hooks/process.c, from the constructor). One sigaction per
 * signal instead of a query and a set (24 system calls at every process start): ours is
 * set and the old disposition read back in the same call, and put back in the rare case it
 * was not the default (an inherited SIG_IGN). The set is blocked meanwhile (two calls), so
 * no signal can meet our handler standing in for a disposition that was not the default;
 * the mask is then restored exactly. */
void ss__signals_install_default(void) {
  if (ss__pid == 1) return; /* init: the kernel drops what would kill another process */
  sigset_t block, old;
  sigemptyset(&block);
  for (int sig = 1; sig <= 64; sig++)
    if (DEADLY_MASK & sig_bit(sig)) sigaddset(&block, sig);
  if (pthread_sigmask(SIG_BLOCK, &block, &old) != 0) return;
  for (int sig = 1; sig <= 64; sig++) {
    struct sigaction cur;
    if (!(DEADLY_MASK & sig_bit(sig)) || kind_of(sig) != SS_SIG_NONE) continue;
    if (install_default(sig, &cur) != 0) continue;
    if (cur.sa_handler != SIG_DFL) { /* not ours to catch: as it was */
      real_sigaction()(sig, &cur, NULL);
      continue;
    }
    if (!is_exec_default(&cur)) app_keep(sig, &cur);
    atomic_fetch_or(&in_default, sig_bit(sig));
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* The app's sigaction; signal() uses it directly rather than through the exported name.
 * The kernel's disposition is the truth, except that our handler stands for app_act. */
/* 1 when act is, field for field, what app_act[sig] keeps: the kernel's form of what the
 * app set before, handed back (libcurl saves SIGPIPE's disposition with a query and puts
 * it back after every transfer). Setting it again would read back the same. */
static int is_kept(int sig, const struct sigaction *act) {
  if (!(atomic_load(&app_kept) & sig_bit(sig))) return 0;
  const struct sigaction *k = &app_act[sig];
  return k->sa_handler == act->sa_handler && k->sa_flags == act->sa_flags &&
         k->sa_restorer == act->sa_restorer &&
         /* the kernel's part of the mask: glibc copies only _NSIG - 1 bits either way, and
          * the rest of a caller's sigset_t may be uninitialised */
         memcmp(&k->sa_mask, &act->sa_mask, (_NSIG - 1) / 8) == 0;
}

/* *old, which holds the kernel's disposition of sig, becomes what the app set when it is
 * our handler standing in (libcurl queries and puts back SIGPIPE's six times a transfer:
 * the kernel writes straight into the caller's struct, copied only when ours). */
static void app_view(int sig, struct sigaction *old) {
  if (old && is_our_handler(old)) *old = app_of(sig);
}

static int app_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  int k = kind_of(sig);
  if (k == SS_SIG_NONE) return real_sigaction()(sig, act, old);
  struct sigaction kern, prev;
  /* The paths that only read our tables need not know whether this is a vfork child
   * (a getpid system call): a query, and a set that leaves nothing of ours behind. The
   * kernel leaves *old as it was when the call fails. */
  if (act == NULL || (k == SS_SIG_DEFAULT && act->sa_handler != SIG_DFL)) {
    if (real_sigaction()(sig, act, old) != 0) return -1;
    app_view(sig, old);
    return 0;
  }
  /* SIG_DFL put back exactly as kept: our handler goes back in one call, the kept form
   * stands (in a vfork child too: only the child's kernel table changes). */
  if (k == SS_SIG_DEFAULT && is_kept(sig, act)) {
    if (install_default(sig, old) != 0) return -1;
    app_view(sig, old);
    return 0;
  }
  if (in_vfork_child()) { /* the kernel only; our tables are the parent's */
    if (real_sigaction()(sig, act, &kern) != 0) return -1;
    if (old) *old = is_our_handler(&kern) ? app_of(sig) : kern;
    return 0;
  }
  /* Set exactly what the app asked for (the kernel validates it), then read back the
   * kernel's form of it (flags and mask as a later query returns them), then put our
   * handler behind where the set says so. */
  if (real_sigaction()(sig, act, &kern) != 0) return -1;
  prev = is_our_handler(&kern) ? app_of(sig) : kern;
  struct sigaction now;
  if (real_sigaction()(sig, NULL, &now) != 0) now = *act;
  if (k == SS_SIG_FATAL && act->sa_handler != SIG_IGN) {
    app_keep(sig, &now);
    install_fatal(sig, act);
  } else if (k == SS_SIG_DEFAULT && act->sa_handler == SIG_DFL) {
    app_keep(sig, &now);
    install_default(sig, NULL);
  }
  if (old) *old = prev;
  return 0;
}

SS_EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  return app_sigaction(sig, act, old);
}

SS_EXPORT __sighandler_t signal(int sig, __sighandler_t handler) {
  if (kind_of(sig) == SS_SIG_NONE) return real_signal()(sig, handler);
  /* glibc's signal(): BSD semantics. */
  struct sigaction act = {.sa_handler = handler, .sa_flags = SA_RESTART}, old;
  sigemptyset(&act.sa_mask);
  sigaddset(&act.sa_mask, sig);
  if (app_sigaction(sig, &act, &old) != 0) return SIG_ERR;
  return old.sa_handler;
}
