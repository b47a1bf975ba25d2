/* hook.h - the machinery every hook uses: is tracing on, where is the real function, how
 * is errno kept; and what the hook files call of each other.
 *
 * A hook body reads the same in every file: guard, start, call real, record, end,
 * restore errno.
 *  - Guard: ss__active(family) is false until init has run (init runs
 *    lazily on the first hook call, or in the constructor, whichever comes first, and
 *    once), when tracing is disabled, when the family is switched off, and on the shim's
 *    own threads (ss__internal()). A hook that is not active calls the real function and
 *    nothing else.
 *  - Real functions: libc's are resolved once, lazily, with dlsym(RTLD_NEXT); a missing
 *    one makes its hook fail as a libc without it would (ENOSYS; see SS_REAL_OR). Library
 *    functions (libpq, libcurl: SS_REAL_LIB) are looked up until found, and a hook whose
 *    real function is not found returns the library's own failure value.
 *  - errno: whatever a hook does after the real call runs inside SS_SAVE_ERRNO, so the
 *    app sees errno exactly as the real call left it.
 *
 * The init state, the configuration and the resolution functions are defined by the
 * preload entry (shim/); this header is all the hooks know of it. Include order: shim →
 * hooks → runtime. */
#ifndef SS_HOOK_H
#define SS_HOOK_H

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "runtime/config.h"
#include "runtime/span.h"

/* ---- init state and configuration (defined in shim/shim.c) ---- */
enum { SS_INIT_NONE = 0, SS_INIT_RUNNING = 1, SS_INIT_ON = 2, SS_INIT_OFF = 3 };

extern _Atomic int ss__init_state;
extern ss__config ss__cfg; /* read-only once init is done */
extern pid_t ss__pid;      /* this process's pid, renewed in a fork child */

/* Lazy once-only init; safe against recursion (a hook called during init passes through). */
void ss__init(void);

static inline int ss__active(uint32_t family) {
  int st = atomic_load_explicit(&ss__init_state, memory_order_acquire);
  if (__builtin_expect(st == SS_INIT_NONE, 0)) {
    ss__init();
    st = atomic_load_explicit(&ss__init_state, memory_order_acquire);
  }
  return st == SS_INIT_ON && (ss__cfg.hooks & family) && !ss__internal();
}

/* 1 once init has switched tracing on (no lazy init, no family or thread check): for
 * guards that must run even on the shim's own threads. */
static inline int ss__tracing_on(void) {
  return atomic_load_explicit(&ss__init_state, memory_order_relaxed) == SS_INIT_ON;
}

/* ---- errno ---- */

/* Runs `block` and leaves errno as it was before it (libuv's SAVE_ERRNO). */
#define SS_SAVE_ERRNO(block)          \
  do {                                \
    int ss_saved_errno_ = errno;      \
    do {                              \
      block;                          \
    } while (0);                      \
    errno = ss_saved_errno_;          \
  } while (0)

/* ---- real functions (shim/resolve.c) ---- */

void *ss__dlsym_next(const char *name);

#define SS_EXPORT __attribute__((visibility("default")))

/* What a hook calls when libc has no definition of its function (a libc without it, or
 * a dlsym failure): the call fails as that libc would, never through a NULL pointer
 * (LTTng-UST's wrappers do the same). ss__missing_errno fits every hook whose function
 * reports failure as -1 with errno (int, ssize_t, SIG_ERR): it is called through the
 * hook's own pointer type, which the x86-64 and AArch64 calling conventions allow (the
 * arguments are ignored, -1 is returned in the integer register). Hooks whose function
 * reports failure otherwise name a fallback of the exact type with SS_REAL_OR. */
long ss__missing_errno(void);
#if !defined(__x86_64__) && !defined(__aarch64__)
#error "ss__missing_errno relies on the x86-64/AArch64 calling convention; add typed fallbacks"
#endif

/* Declares real_NAME(), returning the next definition of NAME (libc's, usually), else
 * `fallback` (a function of NAME's type). Resolved once; never NULL. */
#define SS_REAL_OR(name, fallback)                                                     \
  static __typeof__(&name) real_##name##_ptr;                                          \
  static inline __typeof__(&name) real_##name(void) {                                  \
    __typeof__(&name) p = __atomic_load_n(&real_##name##_ptr, __ATOMIC_ACQUIRE);       \
    if (__builtin_expect(p == NULL, 0)) {                                              \
      p = (__typeof__(&name))ss__dlsym_next(#name);                                    \
      if (p == NULL) p = (fallback);                                                   \
      __atomic_store_n(&real_##name##_ptr, p, __ATOMIC_RELEASE);                       \
    }                                                                                  \
    return p;                                                                          \
  }

/* SS_REAL_OR for the functions that fail with -1 and errno: missing means ENOSYS. */
#define SS_REAL(name) SS_REAL_OR(name, (__typeof__(&name))(void (*)(void))ss__missing_errno)

/* Library functions (libpq, libcurl) resolve to the definition the CALLER would have bound
 * to without the shim: the next one in the global scope (RTLD_NEXT) when there is one;
 * else, for a caller whose library was loaded RTLD_LOCAL (a Python wheel's extension with
 * its own libpq-<hash>.so.5 as a dependency), the one in the caller's own lookup scope
 * (the caller object found from the hook's return address, searched with dlsym on its
 * RTLD_NOLOAD handle); never by file name, never the shim's own hook. A call the shim
 * makes itself (an accessor inside a hook) resolves in the library copy the thread's last
 * hook resolved to (ss__lib_anchor). Cached: in the global case one pointer for everyone;
 * else per caller object (address range, up to SS_LIBFN_CALLERS objects), lock-free
 * after the first call from that object, whose resolution takes the loader lock (not
 * async-signal-safe). */
#define SS_LIBFN_CALLERS 8
/* No name inside (it is passed with each call): a table of these is all zero, in .bss,
 * so the loader relocates nothing in it and a process that never calls the library never
 * touches its pages. */
typedef struct ss__libfn {
  void *_Atomic global; /* the global scope's definition, when there is one */
  struct {
    _Atomic uintptr_t lo, hi; /* a caller object's address range (hi == 0: free) */
    void *_Atomic fn;
  } by[SS_LIBFN_CALLERS];
} ss__libfn;

/* The last library function a hook of this thread resolved to (an address in that
 * library copy). */
extern __thread void *ss__lib_anchor __attribute__((tls_model("initial-exec")));
/* The shim's own address range, once known (0, 0 before the first slow resolution). */
extern _Atomic uintptr_t ss__self_lo, ss__self_hi;

/* Slow path of ss__libfn_get: resolves sym (loader lock) and caches it in f. NULL when
 * the symbol is nowhere: the hook then passes through as for a missing library. */
void *ss__libfn_resolve(ss__libfn *f, const char *sym, uintptr_t caller);

static inline __attribute__((always_inline)) void *ss__libfn_get(ss__libfn *f, const char *sym,
                                                                 void *ret) {
  void *p = atomic_load_explicit(&f->global, memory_order_acquire);
  if (__builtin_expect(p == NULL, 0)) {
    uintptr_t a = (uintptr_t)ret;
    if (a >= atomic_load_explicit(&ss__self_lo, memory_order_relaxed) &&
        a < atomic_load_explicit(&ss__self_hi, memory_order_relaxed))
      a = (uintptr_t)ss__lib_anchor; /* the shim's own call: the thread's library copy */
    for (int i = 0; i < SS_LIBFN_CALLERS && p == NULL; i++)
      if (a >= atomic_load_explicit(&f->by[i].lo, memory_order_acquire) &&
          a < atomic_load_explicit(&f->by[i].hi, memory_order_acquire))
        p = atomic_load_explicit(&f->by[i].fn, memory_order_acquire);
    if (p == NULL) p = ss__libfn_resolve(f, sym, a);
  }
  if (p != NULL) ss__lib_anchor = p;
  return p;
}

/* The definition of sym for a call the shim makes itself (accessor tables): the global
 * scope's, else the thread's library copy's (ss__lib_anchor), else any loaded object's
 * but the shim's. `lib` names the library in diagnostics only. NULL when nowhere. Takes
 * the loader lock. */
void *ss__dlsym_lib(const char *lib, const char *sym);

/* Declares real_NAME() for a function of library `lib` (e.g. "libpq"), resolved for the
 * hook's caller as above; must be called from the exported hook itself (always inlined:
 * __builtin_return_address(0) is then the app's call site). NULL when not found. */
#define SS_REAL_LIB(lib, name)                                                         \
  static ss__libfn real_##name##_fn;                                                   \
  static inline __attribute__((always_inline)) __typeof__(&name) real_##name(void) {   \
    (void)(lib);                                                                       \
    return (__typeof__(&name))ss__libfn_get(&real_##name##_fn, #name,                  \
                                            __builtin_return_address(0));              \
  }

/* ---- what the hook files call of each other (and the entry calls of them) ---- */

/* hooks/socket.c, for the fd guards and fork. */
void ss__socket_fd_closed(int fd);
void ss__socket_fds_closed(unsigned lo, unsigned hi);
void ss__socket_atfork_child(void);
/* Before a fork: the commonest socket functions resolved in the parent, once. */
void ss__socket_atfork_prepare(void);
/* hooks/fdguard.c: the same for close, dup2 and dup3 (a child that closes an fd would
 * otherwise look close up with dlsym: ~5 page faults of the loader's and libc's). */
void ss__fdguard_atfork_prepare(void);

/* hooks/process.c: the process span, and the exit paths that end it. */
enum { SS_PROC_EXIT = 0, SS_PROC_SIGNAL = 1, SS_PROC_EXEC = 2 };
void ss__process_start(int argc, char **argv);
void ss__process_end(int how, int value);
void ss__process_note_exit(int code);
/* hooks/spawn.c, in a fork child: its locks made usable again. */
void ss__spawn_atfork_child(void);
/* Before a fork (pthread_atfork prepare): the exit functions are resolved here, once per
 * process, so no fork child looks them up itself (a dlsym in every child, whose pages it
 * would fault in). */
void ss__process_atfork_prepare(void);
/* In a fork child (pthread_atfork): opens the child's own process span. */
void ss__process_atfork_child(void);
/* exec is about to replace the image: ends the process span (SS_PROC_EXEC) and returns 1,
 * or returns 0 when a fork child's span was dropped unsent (it made no span: nothing to
 * deliver). Not in a vfork child. */
int ss__process_exec(void);
/* The calling thread's context is being passed to another process (a child's
 * environment, a fork): a fork child's span is then always delivered. */
void ss__process_ctx_shared(void);
/* The process is ending (destructor, _exit): ends the process span, flushes (bounded by
 * SPANSHIM_EXIT_FLUSH_MS). Nothing in a vfork child. */
void ss__exiting(void);
/* Flushes (bounded by SPANSHIM_EXIT_FLUSH_MS); not in a vfork child. */
void ss__exit_flush(void);

/* hooks/signals.c: fatal-signal recording, installed when process spans are on. */
struct sigaction;
void ss__signals_install(void);
/* For exit, _exit and a return from main: when another thread is delivering before a
 * signal's death (the signal came first: without the shim the process would be dead of
 * it already), waits for that death, bounded by the delivery's own bound, so that the
 * process ends of the signal, not of this exit. Returns at once otherwise. errno is kept. */
void ss__signals_await_death(void);
int ss__real_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

#endif
