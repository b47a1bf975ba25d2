/* deadline.h - the arithmetic of timeouts, in one place: an absolute timespec some
 * milliseconds from now (for pthread_cond_timedwait and friends, whose clock the caller
 * names), and the time left until a monotonic-millisecond deadline, never negative.
 * No allocation, no locks; safe on any thread. Used by the transport's and exporter's
 * waits and by spanshimd. */
#ifndef SS_DEADLINE_H
#define SS_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* The time on clock clk ms milliseconds from now, normalized (tv_nsec < 1e9). */
struct timespec ss__timespec_after_ms(clockid_t clk, uint64_t ms);

/* Milliseconds from now_ms until deadline_ms; 0 once it has passed. */
static inline uint64_t ss__ms_until(uint64_t deadline_ms, uint64_t now_ms) {
  return deadline_ms > now_ms ? deadline_ms - now_ms : 0;
}

#endif
