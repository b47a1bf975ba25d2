/* carrier.h - the W3C context carried to child processes through the environment
 * (TRACEPARENT), per the OpenTelemetry env-carrier spec; and, after a change of user, the
 * collector's socket (SPANSHIM_ENDPOINT).
 *
 * Every exec family call, posix_spawn(p), system and popen (hooks/spawn.c) passes the
 * calling thread's current context as TRACEPARENT in the child's environment (replacing
 * an inherited one); TRACESTATE and BAGGAGE pass through as inherited. The parent's
 * environ is never modified: the new envp is built in the caller's stack frame (no
 * allocation, so this is safe in a vfork child). With OTEL_PROPAGATORS=none no context is
 * injected.
 *
 * A process that uses the default socket and has changed its effective user since it
 * worked the path out (a privilege drop: /tmp/spanshim-0 became /tmp/spanshim-65534) also
 * passes the socket it uses as SPANSHIM_ENDPOINT, unless the child's environment names
 * one already: a program it execs (setpriv, runuser) sends to the collector its tree
 * uses, where the traced tree admits it. A program exec'd with setuid, setgid or file
 * capabilities ignores it (secure_getenv), as every variable of ours. */
#ifndef SS_CARRIER_H
#define SS_CARRIER_H

#include <stddef.h>

#include "runtime/ids.h"

#define SS_TP_VAR "TRACEPARENT="
#define SS_EP_VAR "SPANSHIM_ENDPOINT="

typedef struct ss__carrier {
  int tp_on;                                      /* tp is passed on */
  char tp[sizeof SS_TP_VAR + SS_TRACEPARENT_LEN]; /* "TRACEPARENT=00-...", NUL-terminated */
  char ep[sizeof SS_EP_VAR + 5 + 108];            /* "SPANSHIM_ENDPOINT=unix:/path", or "" */
} ss__carrier;

/* 1 when there is something to pass on, formatted into *c: the calling thread's context
 * (the process family is traced), the socket after a change of user, or both; else 0
 * (the child gets the environment unchanged). */
int ss__carrier_want(ss__carrier *c);
/* Entries in envp (NULL counts as empty). */
size_t ss__env_count(char *const *envp);
/* envp without TRACEPARENT, plus c's, and c's SPANSHIM_ENDPOINT unless envp has one, into
 * out (room for ss__env_count(envp) + 3). Returns out; out points into envp's strings and
 * c, which must outlive it. */
char **ss__carrier_env(char *const *envp, char **out, const ss__carrier *c);

/* Returns `call_with_env` (which names the new envp `e_`) when there is a context to
 * pass, else `call_plain`. The envp lives in the caller's frame, for the call only. */
#define SS_WITH_CARRIED_ENV(envp, call_with_env, call_plain) \
  do {                                                       \
    ss__carrier c_;                                          \
    if (ss__carrier_want(&c_)) {                             \
      char *env_[ss__env_count(envp) + 3];                   \
      char **e_ = ss__carrier_env((envp), env_, &c_);        \
      return call_with_env;                                  \
    }                                                        \
    return call_plain;                                       \
  } while (0)

#endif
