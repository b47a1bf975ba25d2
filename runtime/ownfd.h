/* ownfd.h - the file descriptors the shim owns inside the traced process (the collector
 * socket, the log file, files read for symbols), kept where the app's fds cannot be.
 *
 * The promise: the app's fd numbers, bytes and errors are what they would be without the
 * shim. So every fd of ours is
 *  - placed out of the app's way: at or above the soft RLIMIT_NOFILE when it is 4096 or
 *    less and the hard limit leaves room (the soft limit is raised for the duration of one
 *    fcntl and put back; an fd above the soft limit takes none of the app's slots and
 *    cannot be a dup2 target); else at the top of a soft limit of 1024 or less (soft - 8,
 *    and then held only while used: ss__own_in_app_range), else from 1000 up, where only
 *    an app with 1000 fds open meets it;
 *  - guarded from birth: the kernel creates an fd at the lowest free number, which is the
 *    app's; while one is being born there (socket/open, then moved up), the app's
 *    close/close_range/closefrom/dup2/dup3 wait (ss__own_app_enter/leave; a birth is two
 *    or three non-blocking system calls), so the app can neither close it nor have its
 *    own data written into the number. What remains visible: an app thread allocating an
 *    fd at the same instant gets the next number up;
 *  - registered until closed: the guards ask ss__owns.
 * That is for fds made on app threads (an exit's last delivery, the hello sent before a
 * privilege drop, the log file). The exporter thread, where nearly all of them are made,
 * has an fd table of its own instead (ss__own_go_private, below), which the app's fd
 * numbers cannot meet at all.
 *
 * Thread safety: every function may be called from any thread. ss__owns and ss__own_list
 * are lock-free and async-signal-safe; ss__own_app_enter may wait for a birth on another
 * thread (bounded: no birth blocks). Births wait while an app thread is inside a guarded
 * call. A fork child calls ss__own_atfork_child (nothing is being born there). */
#ifndef SS_OWNFD_H
#define SS_OWNFD_H

#include <sys/types.h>

#define SS_OWN_MAX 8 /* fds of ours open at once, at most */

/* socket(2) born high and registered. Returns the fd or -1 with errno (EMFILE when the
 * registry is full or there is no room out of the app's way). */
int ss__own_socket(int domain, int type, int protocol);
/* open(2) (O_CLOEXEC is added) born high and registered; the same returns. */
int ss__own_open(const char *path, int flags, mode_t mode);
/* A file read and closed at once (a /proc file, an ELF file to map): opened where the
 * kernel puts it, with the app's closing and dup2 held off (ss__own_app_enter waits)
 * until ss__own_close_brief. Only non-blocking work in between (read of a small or
 * /proc file, fstat, mmap). Returns the fd or -1 with errno (nothing held then). */
int ss__own_open_brief(const char *path, int flags);
void ss__own_close_brief(int fd);
/* Closes a registered fd and forgets it. 0 or -1 with errno. */
int ss__own_close(int fd);
/* Forgets a registered fd without closing it: it was closed behind our back (a raw
 * close_range system call) and its number may be the app's by now. */
void ss__own_forget(int fd);
/* For an app's dup2 onto fd: a copy of fd is registered at another high number and
 * returned; fd itself is forgotten but left open, for the app's dup2 to close atomically.
 * -1 with errno when no copy could be made (fd is then forgotten and must be closed by
 * its owner, or by the app's dup2). */
int ss__own_move(int fd);
/* 1 when fd is one of ours. */
int ss__owns(int fd);
/* Our fds now, ascending; returns how many (at most max). */
int ss__own_list(int *out, int max);

/* 1 when fd is below a soft RLIMIT_NOFILE of 1024 or less (a low limit the app may well
 * reach; the hard limit left no room above it): the owner then holds fd only while using it (the exporter reconnects per request, the log reopens per
 * line), so that between uses the app gets every fd and EMFILE where it would. */
int ss__own_in_app_range(int fd);
/* Around a library call of ours that opens and closes fds of its own at low numbers
 * (dlopen of the unwinder): the app's closing and dup2 wait, as for a birth. */
void ss__own_library_begin(void);
void ss__own_library_end(void);

/* ---- a table of our own (the exporter thread) ----
 * The sure way out of the app's way: the calling thread gets an fd table of its own, so
 * every fd it (or a library it calls: the loader, the resolver) makes is numbered in that
 * table and never takes, even for an instant, a number the app could get; the app's
 * closefrom/dup2 cannot reach it and /proc/self/fd does not list it. On that thread the
 * functions above make fds where the kernel puts them and register nothing. Needs
 * close_range(CLOSE_RANGE_UNSHARE) (Linux 5.9), pidfd_open and pidfd_getfd (5.6); without
 * them, or refused by a seccomp filter, the thread stays in the app's table and the
 * scheme above applies. The table starts empty: nothing of the app's is copied. */
/* Gives the calling thread its own fd table. 0, or -errno (it stays in the app's). Call
 * before the thread makes any fd; never from an app thread. */
int ss__own_go_private(void);
/* For a thread that is ending the process (a default-action or fatal signal about to kill
 * it, _exit): a table of its own that is a copy of the app's (the app's fds keep their
 * numbers there, so stderr and the log file need no borrowing), where its last
 * connection is made. The copy is the kernel's (close_range(~0U, ~0U,
 * CLOSE_RANGE_UNSHARE), else unshare(CLONE_FILES)); other threads are unaffected; no way
 * back, so never on a thread that may go on running app code. Async-signal-safe. 0, or
 * -errno (it stays in the app's table). */
int ss__own_go_private_copy(void);
/* For a thread that delivers and then goes on running app code (exit's destructors and
 * stdio flush, a failed exec's caller), whose own table must stay the app's: runs fn(arg)
 * on a helper thread (a pthread of the shim's, signals masked as the caller's) that first
 * takes a copy of the fd table of its own (ss__own_go_private_copy; when it cannot, fn
 * runs there anyway and its fds are born high and guarded), and waits for it: fds fn
 * makes are numbered in that copy and vanish with the helper. Not async-signal-safe
 * (pthread_create). 0 once fn has run, or -errno when no helper could be started (fn did
 * not run). */
int ss__own_run_in_copy(int (*fn)(void *), void *arg);
/* 1 on a thread that has its own table. */
int ss__own_is_private(void);
/* One of the app's fds (the log's, stderr) for
 * use on this thread: on a private thread a copy of it in our table (pidfd_getfd: the same
 * open file), elsewhere fd itself. -1 with errno when it cannot be had (the app closed
 * it; the process's main thread has exited and the kernel no longer shows its table).
 * Give it back with ss__own_unborrow(copy, fd). */
int ss__own_borrow(int fd);
void ss__own_unborrow(int copy, int fd);

/* Around an app's call that closes or replaces fds. */
void ss__own_app_enter(void);
void ss__own_app_leave(void);

/* At init, while the process is (normally) single-threaded: grows the fd table to hold
 * our numbers now (growing it later with threads running makes the kernel wait an RCU
 * grace period, ~10 ms). */
void ss__own_prepare(void);
void ss__own_atfork_child(void);

#endif
