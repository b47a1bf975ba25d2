/* privdrop.c - privilege drops: setuid, setgid, seteuid, setegid, setreuid, setregid,
 * setresuid, setresgid, setfsuid, setfsgid, setgroups, initgroups. (setfsuid: a Unix
 * socket is reached with the filesystem uid.)
 *
 * A collector admits a peer by its credentials when it connects (SO_PEERCRED: the
 * collector's uid, root, or --allow-uid/--allow-group), or as part of the traced tree:
 * spanshimd remembers a process that sent it an OTLP request while its uid was admitted,
 * and admits that process and its descendants whatever their uid later
 * (tools/spanshimd/tree.c). So a process about to change its credentials (nginx's
 * workers and apt's methods drop from root to an unprivileged user; setpriv, runuser and
 * su run a command as another user) says hello first, with the credentials it started
 * with: an empty traces request, answered before the real call. After it, the process
 * connects, reconnects (the collector closed an idle connection) and forks as it likes,
 * and a program it execs keeps its pid: all admitted. Nothing about who may send changes
 * for a process that was never traced by an admitted user. Once per process (a fork
 * child says its own hello); a process the collector knows already (as part of the tree)
 * is answered as quickly. Not over TCP, where a collector admits by a token, not a uid.
 *
 * Each hook: hello (bounded by HELLO_MS, errno kept), then the real call. The hello's
 * connection is made by a helper thread in a copy of the fd table (ss__own_run_in_copy;
 * without one, on the app thread, born out of the app's way: runtime/ownfd.h) and closed
 * before the real call: no fd of ours is ever in the app's table. Nothing is done
 * in a vfork child (memory shared with the parent) or on the shim's own threads. */
#include <errno.h>
#include <grp.h>
#include <stdatomic.h>
#include <sys/fsuid.h>
#include <string.h>
#include <unistd.h>

#include "hooks/hook.h"
#include "runtime/clock.h"
#include "runtime/exporter.h"
#include "runtime/log.h"
#include "runtime/ownfd.h"
#include "runtime/span.h"
#include "runtime/sys.h"

/* How long a drop waits for the collector's answer, at most (once per process, and only
 * when a collector accepted the connection but is slow to answer). */
#define HELLO_MS 1000

static _Atomic pid_t known_as; /* the process the collector has said hello to */

typedef struct hello_job {
  uint64_t deadline_ms;
  int rc;
} hello_job;

static int hello_run(void *arg) {
  hello_job *h = arg;
  ss__internal_begin(); /* on the helper thread too: nothing of ours is traced */
  h->rc = ss__transport_hello(&ss__transport_g, h->deadline_ms);
  ss__internal_end();
  return h->rc;
}

static void before_drop(void) {
  if (!ss__tracing_on() || ss__internal() || ss__sys_getpid() != ss__pid) return;
  /* Over TCP a collector admits by its token, not by uid: nothing to say. */
  if (!ss__transport_g.ep.is_unix || atomic_load(&known_as) == ss__pid) return;
  SS_SAVE_ERRNO({
    uint32_t wait = ss__cfg.exit_flush_ms > HELLO_MS ? ss__cfg.exit_flush_ms : HELLO_MS;
    hello_job h;
    h.deadline_ms = ss__mono_ms() + wait;
    h.rc = -EAGAIN;
    /* Said from a helper thread (it has this thread's credentials, from before the
     * drop) in a copy of the fd table, so its connection never takes a number an app
     * thread could get; here, born high and guarded, when no helper can be had. */
    if (!ss__cfg.own_fd_table || ss__own_run_in_copy(hello_run, &h) < 0) hello_run(&h);
    int rc = h.rc;
    if (rc == 0)
      atomic_store(&known_as, ss__pid);
    else
      SS_LOG(SS_LOG_INFO, "the collector did not answer a hello before a privilege drop "
             "(%d%s%s): spans made after it may be refused", rc, rc < 0 ? ", " : "",
             rc < 0 ? strerror(-rc) : "");
  });
}

/* Each hook: hello first, then the real call, whose result and errno are the app's. */
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
