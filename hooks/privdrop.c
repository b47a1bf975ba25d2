/* privdrop.c - privilege drops: setuid, setgid, seteuid, setegid, setreuid, setregid,
 * setresuid, setresgid, setgroups, initgroups.
 *
 * A collector admits a peer by its credentials when it connects (SO_PEERCRED: the
 * collector's uid, root, or --allow-uid/--allow-group), and it keeps admitting that
 * connection for its life. A process about to change its credentials (nginx's workers
 * and apt's methods drop from root to an unprivileged user) connects first, with the
 * credentials it was started with, and keeps that connection across the drop: nothing
 * about who may send changes (a process that was never allowed to connect still cannot),
 * and the traced process's spans still arrive. A fork child has a connection of its own
 * (the inherited one is the parent's): made at its own drop, or, when it was forked
 * after its parent dropped, not at all — its spans are lost and counted in its
 * diagnostics (SPANSHIM_LOG_LEVEL=info).
 *
 * Each hook: connect (bounded by SPANSHIM_EXIT_FLUSH_MS, errno kept), then the real call.
 * Nothing is done in a vfork child (memory shared with the parent) or on the shim's own
 * threads. */
#include <grp.h>
#include <string.h>
#include <unistd.h>

#include "hooks/hook.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/log.h"

SS_REAL(setuid)
SS_REAL(setgid)
SS_REAL(seteuid)
SS_REAL(setegid)
SS_REAL(setreuid)
SS_REAL(setregid)
SS_REAL(setresuid)
SS_REAL(setresgid)
SS_REAL(setgroups)
SS_REAL(initgroups)

static void before_drop(void) {
  if (!ss__tracing_on() || ss__internal() || getpid() != ss__pid) return;
  SS_SAVE_ERRNO({
    uint64_t deadline = ss__mono_ms() + ss__cfg.exit_flush_ms;
    int rc = ss__transport_connect(&ss__transport_g, deadline);
    if (rc != 0)
      SS_LOG(SS_LOG_INFO, "no collector connection before a privilege drop (%s): spans made "
             "after it may be refused", strerror(-rc));
  });
}

SS_EXPORT int setuid(uid_t u) {
  before_drop();
  return real_setuid()(u);
}

SS_EXPORT int setgid(gid_t g) {
  before_drop();
  return real_setgid()(g);
}

SS_EXPORT int seteuid(uid_t u) {
  before_drop();
  return real_seteuid()(u);
}

SS_EXPORT int setegid(gid_t g) {
  before_drop();
  return real_setegid()(g);
}

SS_EXPORT int setreuid(uid_t r, uid_t e) {
  before_drop();
  return real_setreuid()(r, e);
}

SS_EXPORT int setregid(gid_t r, gid_t e) {
  before_drop();
  return real_setregid()(r, e);
}

SS_EXPORT int setresuid(uid_t r, uid_t e, uid_t s) {
  before_drop();
  return real_setresuid()(r, e, s);
}

SS_EXPORT int setresgid(gid_t r, gid_t e, gid_t s) {
  before_drop();
  return real_setresgid()(r, e, s);
}

SS_EXPORT int setgroups(size_t n, const gid_t *list) {
  before_drop();
  return real_setgroups()(n, list);
}

SS_EXPORT int initgroups(const char *user, gid_t g) {
  before_drop();
  return real_initgroups()(user, g);
}
