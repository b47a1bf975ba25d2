/* tree.c - the traced tree: Unix-socket peers admitted although their uid is not.
 *
 * SO_PEERCRED says who a peer was when it connected. A traced process that changes its
 * credentials (nginx's workers and apt's methods drop from root to another user; setpriv,
 * runuser and su run a command as another user) connects afterwards with a uid the
 * collector does not admit. So a peer whose uid is not admitted is admitted when it is,
 * or descends from, a process of the traced tree: one that sent this collector an OTLP
 * request over a connection admitted by its credentials (or by this rule), or the process
 * --tree-root names (`spanshim run`). A process is its pid and its start time
 * (/proc/PID/stat field 22, clock ticks since boot), so a pid used again never matches.
 * The peer is pinned while it is looked at: its start time counts only if its pidfd
 * (SO_PEERPIDFD, Linux 6.5) says it is still alive after the read (before 6.5, its pid as
 * of connect is read as is). Ancestors come from PPid (field 4), each started no later
 * than its child (else the parent died and its pid went to a newer process), at most
 * SS_TREE_DEPTH steps up.
 *
 * The pid rule needs the peer alive (or a zombie) when its connection is accepted. A
 * process that has ended is still known by its pidfd (SO_PEERPIDFD gives one for an
 * ended, reaped peer too on recent kernels), whose inode on pidfs is the process's own
 * for the whole boot (64-bit, never used again; the same across exec): a remembered
 * process is remembered with it, so a connection of a remembered process that ended
 * before the collector got to it is admitted (a program exec'd after a drop by a process
 * of the tree that said hello, such as setpriv or runuser: the same process). A child
 * forked after a drop that sends and exits, and is reaped, before the collector gets to
 * its connection was never remembered itself. So the tree also has a token: 128 random bits, made at
 * start, handed in every 2xx answer to an OTLP request on an admitted Unix connection
 * (Spanshim-Tree header), which the shim keeps in memory and sends on every request from
 * then on (fork children inherit it; an exec forgets it). A Unix peer admitted neither by
 * its credentials nor by the pid rule is accepted pending: its first request head must
 * carry the token (compared in constant time), else it is refused (403) and its
 * connection closed. Who may send is unchanged: only a process of the tree, or one it
 * chose to give the token to, holds it — and a process of the tree can send whatever it
 * likes for anyone anyway. After a drop from root a process is not dumpable, so no other
 * process of its new user can read the token from its memory; a program exec'd after a
 * drop is dumpable, but a process that may read its memory may as well make it send.
 *
 * Memory: a table of SS_TREE_MAX processes (128 KiB, and 64 KiB to sweep it; static). When it is full, the
 * processes that are gone are forgotten (a sweep of /proc, at most once a second); when
 * they are all alive, a new one is not remembered (counted in /stats as tree_full): its
 * connection is served, but once it has changed user, a new connection of its own is
 * refused unless an ancestor is remembered.
 *
 * Receiver thread only (the gRPC loop runs on it too). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "runtime/clock.h"
#include "tools/spanshimd/spanshimd.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

#define SS_TREE_MAX 4096
#define SS_TREE_SLOTS (2 * SS_TREE_MAX) /* open addressing, half full at most */
#define SS_TREE_DEPTH 64
#define SWEEP_EVERY_MS 1000

static ss__proc_id slots[SS_TREE_SLOTS]; /* pid 0: free */
static size_t n_known;
static uint64_t last_sweep_ms;
static uint64_t (*clock_ms)(void) = ss__mono_ms; /* ss__tree_clock: a test's own clock */
static int off; /* --no-tree */
static char token[SS_TREE_TOKEN_LEN + 1]; /* hex; "" until made */

int ss__proc_stat(int pid, int *ppid, uint64_t *start) {
  char path[32], buf[1024];
  if (pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  /* "pid (comm) state ppid ...": comm may hold spaces and parentheses. */
  char *p = strrchr(buf, ')');
  if (p == NULL) return -1;
  p++;
  unsigned long long v = 0;
  for (int field = 3; field <= 22; field++) {
    while (*p == ' ') p++;
    if (*p == '\0') return -1;
    char *end = p;
    if (field == 4 || field == 22) {
      v = strtoull(p, &end, 10);
      if (end == p) return -1;
      if (field == 4 && ppid) *ppid = (int)v;
    }
    while (*end && *end != ' ') end++;
    p = end;
  }
  *start = v;
  return 0;
}

static size_t slot_of(int pid) {
  return ((uint32_t)pid * 2654435761u) % SS_TREE_SLOTS;
}

/* The slot holding pid, or the free slot where it would go. */
static ss__proc_id *find(int pid) {
  size_t i = slot_of(pid);
  while (slots[i].pid != 0 && slots[i].pid != pid) i = (i + 1) % SS_TREE_SLOTS;
  return &slots[i];
}

static int known(int pid, uint64_t start) {
  const ss__proc_id *s = find(pid);
  return s->pid == pid && s->start == start;
}

/* Forgets the processes that are gone: the table is built again from the live ones. */
static void sweep(void) {
  static ss__proc_id live[SS_TREE_MAX];
  size_t n = 0;
  uint64_t start;
  for (size_t i = 0; i < SS_TREE_SLOTS; i++)
    if (slots[i].pid != 0 && ss__proc_stat(slots[i].pid, NULL, &start) == 0 &&
        start == slots[i].start && n < SS_TREE_MAX)
      live[n++] = slots[i];
  memset(slots, 0, sizeof slots);
  for (size_t i = 0; i < n; i++) *find(live[i].pid) = live[i];
  n_known = n;
  ss__stats_g.tree_processes = n;
}

static void put(const ss__proc_id *id) {
  ss__proc_id *s = find(id->pid);
  if (s->pid == id->pid) { /* known, or its pid's earlier process, which is gone */
    s->start = id->start;
    s->ino = id->ino;
    return;
  }
  if (n_known >= SS_TREE_MAX) {
    uint64_t now = clock_ms();
    if (now - last_sweep_ms >= SWEEP_EVERY_MS || last_sweep_ms == 0) {
      last_sweep_ms = now;
      sweep();
    }
    if (n_known >= SS_TREE_MAX) {
      ss__stats_g.tree_full++;
      return;
    }
    s = find(id->pid);
  }
  *s = *id;
  n_known++;
  ss__stats_g.tree_processes = n_known;
}

void ss__tree_clock(uint64_t (*fn)(void)) { clock_ms = fn ? fn : ss__mono_ms; }

void ss__tree_remember(const ss__proc_id *id) {
  /* Not init: every process descends from it (a traced init, under a system-wide
   * preload, would admit the whole machine); --tree-root 1 may still name it. */
  if (off || id->pid <= 1) return;
  put(id);
}

/* Whether pid (started at `start`) is in the tree: remembered, or a descendant of a
 * remembered process through a chain of parents each started no later than its child. */
static int in_tree(int pid, uint64_t start) {
  int ppid;
  uint64_t s;
  if (known(pid, start)) return 1;
  if (ss__proc_stat(pid, &ppid, &s) != 0 || s != start) return 0;
  for (int depth = 0; depth < SS_TREE_DEPTH && ppid > 0; depth++) {
    int cur = ppid;
    uint64_t child_start = s;
    if (ss__proc_stat(cur, &ppid, &s) != 0 || s > child_start) return 0;
    if (known(cur, s)) return 1;
  }
  return 0;
}

/* The inode of pidfd when it is on pidfs (Linux 6.9 and later: one per process), else 0
 * (an anonymous inode, shared by every pidfd). */
static uint64_t pidfs_ino(int pidfd) {
  struct statfs fs;
  struct stat st;
  if (pidfd < 0 || fstatfs(pidfd, &fs) != 0 || fs.f_type != PID_FS_MAGIC ||
      fstat(pidfd, &st) != 0)
    return 0;
  return (uint64_t)st.st_ino;
}

/* Reads the peer's identity at accept: its pid as of connect (SO_PEERCRED) and its start
 * time, counted only when its pidfd says it is alive after the read, or, ended, its pid
 * still shows that start time after we saw it end (a zombie not yet reaped: its pid
 * cannot have gone to another process); its pidfs inode too when there is one. 0, or -1
 * (pid 0) with *ended_ino the inode of a peer that has ended (0: none known). */
static int peer_id(int fd, ss__proc_id *id, uint64_t *ended_ino) {
  struct ucred cr;
  socklen_t len = sizeof cr;
  memset(id, 0, sizeof *id);
  *ended_ino = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || cr.pid <= 0) return -1;
  int pidfd = -1;
  len = sizeof pidfd;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0) {
    if (errno != ENOPROTOOPT) return -1; /* the peer has ended (ESRCH) */
    pidfd = -1;                          /* before Linux 6.5 */
  }
  uint64_t start;
  int ok = ss__proc_stat(cr.pid, NULL, &start) == 0;
  if (ok && pidfd >= 0) { /* readable: the process has ended; its pid may be another's */
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    uint64_t again;
    ok = poll(&p, 1, 0) == 0 ||
         (ss__proc_stat(cr.pid, NULL, &again) == 0 && again == start); /* a zombie */
  }
  uint64_t ino = pidfs_ino(pidfd);
  if (pidfd >= 0) close(pidfd);
  if (!ok) {
    *ended_ino = ino;
    return -1;
  }
  id->pid = cr.pid;
  id->start = start;
  id->ino = ino;
  return 0;
}

/* Whether the peer on fd, which has ended (its pidfd's inode: ino), is a remembered
 * process: its pid as of connect is remembered with that inode. */
static int ended_known(int fd, uint64_t ino) {
  struct ucred cr;
  socklen_t len = sizeof cr;
  if (ino == 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 || cr.pid <= 0)
    return 0;
  const ss__proc_id *s = find(cr.pid);
  return s->pid == cr.pid && s->ino == ino;
}

/* Says on stderr who was refused, for the first SAY_REFUSED refusals (then they are only
 * counted, in peers_refused): the pid and uid as of connect, and why. */
#define SAY_REFUSED 10
void ss__say_refused(int fd, const char *why) {
  static unsigned said;
  struct ucred cr = {0};
  socklen_t len = sizeof cr;
  if (said >= SAY_REFUSED) return;
  said++;
  getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len);
  fprintf(stderr,
          "spanshimd: refused a connection of pid %d (uid %u): %s%s\n", (int)cr.pid,
          (unsigned)cr.uid, why,
          said == SAY_REFUSED ? " (further refusals are only counted: peers_refused)" : "");
}

int ss__peer_admit(const ss__opts *o, int fd, ss__proc_id *id, const char **why) {
  memset(id, 0, sizeof *id);
  *why = NULL;
  uint64_t ended;
  if (ss__peer_allowed(o, fd)) {
    if (!off) peer_id(fd, id, &ended);
    return 1;
  }
  if (off) {
    *why = "not an allowed user (--no-tree)";
    return 0;
  }
  if (peer_id(fd, id, &ended) != 0) {
    if (ended_known(fd, ended)) { /* remembered; it has ended since it connected */
      ss__stats_g.tree_admitted++;
      return 2;
    }
    *why = "not an allowed user, and it ended before it could be looked at";
    return 0;
  }
  if (!in_tree(id->pid, id->start)) {
    *why = "not an allowed user, nor of the traced tree";
    return 0;
  }
  ss__tree_remember(id);
  ss__stats_g.tree_admitted++;
  return 2;
}

int ss__tree_add_root(int pid) {
  ss__proc_id id = {.pid = pid};
  if (off || ss__proc_stat(pid, NULL, &id.start) != 0) return -1;
  put(&id);
  return 0;
}

void ss__tree_off(void) {
  off = 1;
}

int ss__tree_token_init(void) {
  uint8_t raw[SS_TREE_TOKEN_LEN / 2];
  if (off) return 0;
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return -1;
  for (size_t i = 0; i < sizeof raw; i++) {
    token[2 * i] = "0123456789abcdef"[raw[i] >> 4];
    token[2 * i + 1] = "0123456789abcdef"[raw[i] & 15];
  }
  token[SS_TREE_TOKEN_LEN] = '\0';
  return 0;
}

const char *ss__tree_token(void) {
  return off || token[0] == '\0' ? NULL : token;
}

int ss__tree_token_ok(const char *v, size_t n) {
  if (ss__tree_token() == NULL || v == NULL || n != SS_TREE_TOKEN_LEN) return 0;
  volatile unsigned char diff = 0;  /* constant time: the length is public */
  for (size_t i = 0; i < SS_TREE_TOKEN_LEN; i++) diff |= (unsigned char)(v[i] ^ token[i]);
  return diff == 0;
}

/* ---- across restarts (--tree-file) ----
 * "spanshim-tree 2 BOOT_ID TOKEN\n" (version 1: no token), then "PID START\n" for each
 * process remembered. Start times count from boot, so a file from another boot is ignored
 * whole; an entry whose process is gone, or whose pid now has another start time, is
 * skipped. The token is kept too, so that processes holding it are admitted after a
 * restart (the file is ours alone, 0600, like the tree it names). */

static int boot_id(char *out, size_t n) {
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t r = read(fd, out, n - 1);
  close(fd);
  if (r <= 0) return -1;
  out[r] = '\0';
  out[strcspn(out, "\n")] = '\0';
  return 0;
}

int ss__tree_load(const char *path) {
  char boot[64], want[64];
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? 0 : -1;
  struct stat st;
  FILE *f = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
                    !(st.st_mode & (S_IWGRP | S_IWOTH))
                ? fdopen(fd, "r")
                : NULL;
  if (f == NULL) { /* another user's or a shared file: it could name anyone */
    close(fd);
    fprintf(stderr, "spanshimd: not reading %s: not a regular file of ours that only we "
            "may write\n", path);
    return -1;
  }
  int n = 0, version = 0;
  char tok[SS_TREE_TOKEN_LEN + 2];
  if (boot_id(want, sizeof want) == 0 &&
      fscanf(f, "spanshim-tree %d %63s", &version, boot) == 2 && strcmp(boot, want) == 0 &&
      (version == 1 || (version == 2 && fscanf(f, " %33[0-9a-f]", tok) == 1))) {
    if (version == 2 && strlen(tok) == SS_TREE_TOKEN_LEN && !off)
      memcpy(token, tok, sizeof token);
    ss__proc_id id;
    uint64_t now;
    while (fscanf(f, "%d %" SCNu64, &id.pid, &id.start) == 2)
      if (ss__proc_stat(id.pid, NULL, &now) == 0 && now == id.start) {
        ss__tree_remember(&id);
        n++;
      }
  }
  fclose(f);
  return n;
}

int ss__tree_save(const char *path) {
  char boot[64], tmp[PATH_MAX];
  if (off || boot_id(boot, sizeof boot) != 0 ||
      snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof tmp)
    return -1;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  if (f == NULL) {
    if (fd >= 0) close(fd);
    return -1;
  }
  if (token[0]) fprintf(f, "spanshim-tree 2 %s %s\n", boot, token);
  else fprintf(f, "spanshim-tree 1 %s\n", boot);
  for (size_t i = 0; i < SS_TREE_SLOTS; i++)
    if (slots[i].pid != 0) fprintf(f, "%d %" PRIu64 "\n", slots[i].pid, slots[i].start);
  int bad = fclose(f) != 0;
  if (bad || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}
