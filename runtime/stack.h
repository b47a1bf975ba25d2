/* stack.h - the stack of a failing call, captured on the app thread.
 *
 * libunwind is loaded with dlopen(RTLD_LOCAL) rather than linked: libunwind.so exports
 * its own _Unwind_* functions, and as a dependency of a preloaded library those would
 * take over C++ exception handling in every traced program. Loading it locally keeps its
 * symbols to us. Capture stores raw return addresses only (symbolization happens on the
 * exporter thread): no allocation, no lock, safe in signal handlers once loaded. */
#ifndef SS_STACK_H
#define SS_STACK_H

#include <stdint.h>

/* Loads libunwind once (later calls return the first answer). 0 when capture works.
 * Takes the dynamic loader's lock: call it from init or the exporter thread, or on the
 * first failure. Not async-signal-safe. */
int ss__stack_load(void);
/* 1 when ss__stack_load has succeeded. */
int ss__stack_ready(void);
/* Writes up to max return addresses, innermost first; returns how many (0 when libunwind
 * is not loaded). Async-signal-safe. */
int ss__stack_capture(uint64_t *out, int max);

/* The shim's own uses of the dynamic loader off the app's path (dlopen of libunwind,
 * dl_iterate_phdr and dladdr while symbolizing) run under this leaf lock, and a fork
 * waits for it (ss__loader_atfork_*): a fork taken while another thread of ours holds
 * the loader's locks would leave them held in the child, and the child's next dlopen -
 * ours or the app's - would hang. */
void ss__loader_lock(void);
void ss__loader_unlock(void);
void ss__loader_atfork_prepare(void);
void ss__loader_atfork_parent(void);
void ss__loader_atfork_child(void);

#endif
