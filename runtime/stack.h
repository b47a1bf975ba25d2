/* stack.h - the stack of a failing call, captured on the app thread.
 *
 * The unwinder is the system's own, libgcc_s's _Unwind_Backtrace (the one C++ exceptions
 * and pthread_cancel use, normally loaded already), loaded with dlopen(RTLD_LOCAL) on
 * first need. It walks the DWARF call-frame information of each module, holds no fd and
 * probes no memory through a pipe (libunwind, used before, opened a pipe to validate
 * addresses, which took an fd number of the app's and, after an app's closefrom, read
 * and wrote one byte of the app's own sockets). Frames without call-frame information
 * (JIT code, hand-written assembly) end the stack there. Capture stores raw return
 * addresses only (symbolization happens on the exporter thread): no allocation, no lock
 * where the C library provides _dl_find_object (glibc 2.35 and later), safe in signal
 * handlers once loaded. */
#ifndef SS_STACK_H
#define SS_STACK_H

#include <stdint.h>

/* Loads the unwinder once (later calls return the first answer). 0 when capture works.
 * Takes the dynamic loader's lock: call it from init or the exporter thread, or on the
 * first failure. Not async-signal-safe. When libgcc_s is not loaded yet, dlopen opens it,
 * and an fd it opens on an app thread would take a number the app could get: on a thread
 * that shares the app's fd table, the load is asked of the loader set with
 * ss__stack_set_loader (the exporter thread, in a table of its own: runtime/ownfd.h).
 * That returns 0 once the load is decided, -EAGAIN when it was not in time (this capture
 * has no stack; a later one will), -ENOSYS when it cannot (then it is done here). */
int ss__stack_load(void);
void ss__stack_set_loader(int (*load_elsewhere)(void));
/* 1 when ss__stack_load has succeeded; ss__stack_decided: or failed for good. */
int ss__stack_ready(void);
int ss__stack_decided(void);
/* Writes up to max return addresses, innermost first; returns how many (0 when the unwinder
 * is not loaded and no fault was noted on this thread). Async-signal-safe. */
int ss__stack_capture(uint64_t *out, int max);
/* In a fault's signal handler (uctx: its ucontext_t): notes where this thread faulted, so
 * that a capture on this thread while the unwinder is not loaded (a process that faults
 * before its first failed call; the loader cannot be used in a signal handler) still
 * gives the faulting frame: its address + 1 (a return address's convention). Thread-local,
 * async-signal-safe. */
void ss__stack_note_fault(const void *uctx);

/* The address range [*lo, *hi) an object's PT_LOAD segments span (hi 0: none). */
struct dl_phdr_info;
void ss__module_range(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi);

/* The shim's own uses of the dynamic loader off the app's path (dlopen of the unwinder,
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
