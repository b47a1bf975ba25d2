/* clock.h - span timestamps.
 *
 * Wall-clock nanoseconds since the Unix epoch, as OTLP wants them. CLOCK_REALTIME is served
 * by the vDSO on Linux, so reading it makes no system call: safe on the app thread and in
 * signal handlers. */
#ifndef SS_CLOCK_H
#define SS_CLOCK_H

#include <stdint.h>
#include <time.h>

/* The vDSO's clock_gettime itself, once ss__clock_resolve found it (NULL before, and where
 * it cannot: then libc's clock_gettime). Found by a process's first fork, for its
 * children: libc's clock_gettime is a page of libc's code of its own, which a fork child
 * making a span faulted in for that call alone (the kernel copies no page table of a file
 * mapping into a fork child). */
extern int (*ss__vdso_clock_gettime)(clockid_t, struct timespec *);
/* Looks for the vDSO's __vdso_clock_gettime (getauxval(AT_SYSINFO_EHDR), its dynamic
 * symbols by DT_HASH); sets ss__vdso_clock_gettime when found. Not async-signal-safe; for
 * a fork's prepare handler. */
void ss__clock_resolve(void);

/* clock_gettime(id, ts) through the vDSO when ss__clock_resolve found it; 0 or nonzero on
 * failure (a clock the vDSO does not serve, CLOCK_THREAD_CPUTIME_ID, is its system call). */
static inline int ss__clock(clockid_t id, struct timespec *ts) {
  int (*f)(clockid_t, struct timespec *) = ss__vdso_clock_gettime;
  return f != NULL ? f(id, ts) : clock_gettime(id, ts);
}

static inline uint64_t ss__now_ns(void) {
  struct timespec ts;
  ss__clock(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Monotonic milliseconds, for timeouts and backoff (never for span times). */
static inline uint64_t ss__mono_ms(void) {
  struct timespec ts;
  ss__clock(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
