/* clock.h - span timestamps.
 *
 * Wall-clock nanoseconds since the Unix epoch, as OTLP wants them. CLOCK_REALTIME is served
 * by the vDSO on Linux, so reading it makes no system call: safe on the app thread and in
 * signal handlers. */
#ifndef SS_CLOCK_H
#define SS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ss__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Monotonic milliseconds, for timeouts and backoff (never for span times). */
static inline uint64_t ss__mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

#endif
