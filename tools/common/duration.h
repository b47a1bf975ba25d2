/* duration.h - durations as people type them on command lines (spanshimd's flags,
 * `spanshim view --slower-than`). Pure function, thread-safe. */
#ifndef SS_DURATION_H
#define SS_DURATION_H

#include <stdint.h>

/* "250ms", "2s", "1.5m", "1h", "100us", "10ns" (a bare number is ms) in nanoseconds;
 * 0, or -1 (*ns unchanged) when s is not such a duration or exceeds 1e18 ns. */
int ss__parse_duration_ns(const char *s, uint64_t *ns);

#endif
