/* privdrop.c - privilege drops: setuid, setgid, seteuid, setegid, setreuid, setregid,
 * setresuid, setresgid, setfsuid, setfsgid, setgroups, initgroups. (setfsuid: a Unix
 * socket is reached with the filesystem uid, so a process that changed only that could
 * no longer connect to a 0700 collector directory.)
 *
 * A collector admits a peer by its credentials when it connects (SO_PEERCRED: the
 * collector's uid, root, or --allow-uid/--allow-group), and it keeps admitting that
 * connection for its life. A process about to change its credentials (nginx's workers
 * and apt's methods drop from root to an unprivileged user) connects first, with the
 * credentials it was started with, and keeps that connection across the drop: nothing
 * about who may send changes (a process that was never allowed to connect still cannot),
 * and the traced process's spans still arrive. A fork child has a connection of its own
 * (the inherited one is the parent's): made at its own drop, or, for the first
 * SS_TRANSPORT_SPARES children forked after the drop, one of the spares made with the
 * first; later children have none (their spans are counted in their diagnostics,
 * SPANSHIM_LOG_LEVEL=info).
 *
 * Each hook: connect (bounded by SPANSHIM_EXIT_FLUSH_MS, errno kept), then the real call.
 * Nothing is done in a vfork child (memory shared with the parent) or on the shim's own
 * threads. */
#include <grp.h>
#include <sys/fsuid.h>
#include <string.h>
#include <unistd.h>

#include "hooks/hook.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/log.h"

static void before_drop(void) {
  if (!ss__tracing_on() || ss__internal() || getpid() != ss__pid) return;
  SS_SAVE_ERRNO({
    uint64_t deadline = ss__mono_ms() + ss__cfg.exit_flush_ms;
    int rc = ss__transport_connect(&ss__transport_g, deadline);
    if (rc == 0) ss__transport_spares(&ss__transport_g, SS_TRANSPORT_SPARES, deadline);
    if (rc != 0)
      SS_LOG(SS_LOG_INFO, "no collector connection before a privilege drop (%s): spans made "
             "after it may be refused", strerror(-rc));
  });
}

/* Each hook: connect first, then the real call, whose result and errno are the app's. */
#define DROP_HOOK(name, params, args) \
  SS_REAL(name)                       \
  SS_EXPORT int name params {         \
    before_drop();                    \
    return real_##name() args;        \
  }

DROP_HOOK(setuid, (uid_t u), (u))
DROP_HOOK(setgid, (gid_t g), (g))
DROP_HOOK(seteuid, (uid_t u), (u))
DROP_HOOK(setegid, (gid_t g), (g))
DROP_HOOK(setreuid, (uid_t r, uid_t e), (r, e))
DROP_HOOK(setregid, (gid_t r, gid_t e), (r, e))
DROP_HOOK(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))
DROP_HOOK(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))
DROP_HOOK(setfsuid, (uid_t u), (u))
DROP_HOOK(setfsgid, (gid_t g), (g))
DROP_HOOK(setgroups, (size_t n, const gid_t *list), (n, list))
DROP_HOOK(initgroups, (const char *user, gid_t g), (user, g))
