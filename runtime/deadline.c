/* deadline.c - timeout arithmetic (see deadline.h). */
#include "runtime/deadline.h"
#include "runtime/clock.h"

struct timespec ss__timespec_after_ms(clockid_t clk, uint64_t ms) {
  struct timespec ts;
  ss__clock(clk, &ts);
  ts.tv_sec += (time_t)(ms / 1000);
  ts.tv_nsec += (long)(ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}
