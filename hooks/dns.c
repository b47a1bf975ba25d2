/* dns.c - getaddrinfo spans and the address → name cache (see hooks.h).
 *
 * Span: `getaddrinfo`, INTERNAL, dns.question.name, dns.answers (unique addresses, at most
 * MAX_ANSWERS), spanshim.dns.answer_count; on failure status ERROR and error.type = the
 * EAI_* name (the errno name for EAI_SYSTEM). Lookups with no node name (passive
 * listeners) are not traced. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <string.h>

#include "hooks/hooks.h"
#include "hooks/hook.h"
#include "runtime/sys.h"
#include "runtime/clock.h"

#define CACHE_SLOTS 64
#define CACHE_NAME 128
#define MAX_ANSWERS 16

/* A name is lent to a connect only by a lookup made in the same causal place, recently:
 * under the same current span (the lookup on libcurl's resolver thread and the connect
 * on the app thread are both under the transfer's span), or, with no span current, on
 * the same thread; and within LEND_NS. A connect to a bare IP never borrows the name of
 * an unrelated lookup that happened to resolve to it elsewhere. */
#define LEND_NS (30ull * 1000000000ull)

typedef struct slot {
  _Atomic uint32_t seq; /* odd while being written */
  int family;
  unsigned char addr[16];
  uint64_t key;         /* ss__dns_key() of the lookup */
  uint64_t at_ns;       /* when it answered */
  char name[CACHE_NAME];
} slot;

static slot cache[CACHE_SLOTS];
static _Atomic int cache_used; /* connect skips the lookup while nothing was resolved */

static size_t addr_len(int family) {
  return family == AF_INET6 ? 16 : 4;
}

/* Direct-mapped: an address has one slot, so a lookup reads one entry. */
static slot *slot_for(int family, const void *addr) {
  const unsigned char *b = addr;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < addr_len(family); i++) h = (h ^ b[i]) * 16777619u;
  return &cache[h % CACHE_SLOTS];
}

uint64_t ss__dns_key(void) {
  ss__ctx c;
  if (ss__ctx_depth() > 0 && ss__ctx_current(&c)) {
    uint64_t k;
    memcpy(&k, c.span_id, sizeof k);
    return k;
  }
  return (uint64_t)(uintptr_t)&ss__self; /* this thread */
}

uint64_t ss__dns_key_of(const ss__sb *b) {
  /* The parent span's id when the parent was an entry of this thread's stack (token > 0:
   * it was not empty; a barrier entry left parent_id zero), else this thread. */
  uint64_t k;
  memcpy(&k, b->s.parent_id, sizeof k);
  return b->token > 0 && k != 0 ? k : (uint64_t)(uintptr_t)&ss__self;
}

void ss__dns_remember(int family, const void *addr, const char *name, uint64_t key) {
  slot *s = slot_for(family, addr);
  uint32_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
  if ((seq & 1) ||
      !atomic_compare_exchange_strong_explicit(&s->seq, &seq, seq + 1, memory_order_acquire,
                                               memory_order_relaxed))
    return; /* another writer has it: losing one cache entry is fine */
  s->family = family;
  memcpy(s->addr, addr, addr_len(family));
  s->key = key;
  s->at_ns = ss__now_ns();
  size_t n = strnlen(name, CACHE_NAME - 1);
  memcpy(s->name, name, n);
  s->name[n] = '\0';
  atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
  if (!atomic_load_explicit(&cache_used, memory_order_relaxed))
    atomic_store_explicit(&cache_used, 1, memory_order_relaxed);
}

int ss__dns_lookup(int family, const void *addr, uint64_t key, char *out, size_t cap) {
  if (!atomic_load_explicit(&cache_used, memory_order_relaxed)) return -1;
  slot *s = slot_for(family, addr);
  uint32_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
  if (seq == 0 || (seq & 1) || s->family != family ||
      memcmp(s->addr, addr, addr_len(family)) != 0 || s->key != key ||
      ss__now_ns() - s->at_ns > LEND_NS)
    return -1;
  char tmp[CACHE_NAME];
  memcpy(tmp, s->name, sizeof tmp);
  atomic_thread_fence(memory_order_acquire);
  if (atomic_load_explicit(&s->seq, memory_order_relaxed) != seq) return -1;
  tmp[CACHE_NAME - 1] = '\0';
  size_t n = strnlen(tmp, cap - 1);
  memcpy(out, tmp, n);
  out[n] = '\0';
  return 0;
}

SS_FORK_TEXT void ss__dns_atfork_child(void) {
  /* A writer in another parent thread may have left a slot odd; clear those. Nothing to
   * read when nothing was ever resolved (untouched pages fault even on a read). */
  if (!atomic_load(&cache_used)) return;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    uint32_t seq = atomic_load(&cache[i].seq);
    if (seq & 1) atomic_store(&cache[i].seq, 0);
  }
}

static const char *eai_name(int rc, int err) {
  switch (rc) {
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_BADFLAGS: return "EAI_BADFLAGS";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
    case EAI_OVERFLOW: return "EAI_OVERFLOW";
    case EAI_SYSTEM: {
      const char *n = strerrorname_np(err);
      return n ? n : "EAI_SYSTEM";
    }
    default: return "_OTHER";
  }
}

/* Our own messages: gai_strerror may translate, and translation may allocate. */
static const char *eai_message(int rc) {
  switch (rc) {
    case EAI_AGAIN: return "Temporary failure in name resolution";
    case EAI_FAIL: return "Non-recoverable failure in name resolution";
    case EAI_NONAME: return "Name or service not known";
    case EAI_SERVICE: return "Servname not supported for ai_socktype";
    case EAI_FAMILY: return "ai_family not supported";
    case EAI_MEMORY: return "Memory allocation failure";
    case EAI_SYSTEM: return "System error";
    default: return "Name resolution failed";
  }
}

/* Unique numeric addresses of the answers, NUL-separated, into buf. Returns bytes used
 * and the number of answers (all of them, not only those listed) in *count. */
static size_t collect_answers(const char *node, const struct addrinfo *res, char *buf,
                              size_t cap, int *count, uint64_t key) {
  size_t used = 0;
  int listed = 0;
  *count = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    ss__peer p;
    if (ai->ai_addr == NULL || ss__peer_format(ai->ai_addr, ai->ai_addrlen, &p) != 0 ||
        p.family == AF_UNIX)
      continue;
    size_t n = strlen(p.addr) + 1;
    int dup = 0;
    for (size_t off = 0; off < used; off += strlen(buf + off) + 1)
      if (strcmp(buf + off, p.addr) == 0) dup = 1;
    if (dup) continue;
    (*count)++;
    ss__dns_remember(p.family, p.raw, node, key);
    if (listed < MAX_ANSWERS && used + n <= cap) {
      memcpy(buf + used, p.addr, n);
      used += n;
      listed++;
    }
  }
  return used;
}

static int missing_getaddrinfo(const char *node, const char *service,
                               const struct addrinfo *hints, struct addrinfo **res) {
  (void)node, (void)service, (void)hints, (void)res;
  errno = ENOSYS;
  return EAI_SYSTEM;
}
SS_REAL_OR(getaddrinfo, missing_getaddrinfo)
SS_EXPORT int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res) {
  if (node == NULL || !ss__active(SS_HOOK_DNS))
    return real_getaddrinfo()(node, service, hints, res);
  ss__sb b;
  uint64_t key = ss__dns_key(); /* where the lookup was made: before its own span */
  ss__span_start(&b, "getaddrinfo", SS_KIND_INTERNAL);
  int rc = real_getaddrinfo()(node, service, hints, res);
  int err = errno;
  char answers[MAX_ANSWERS * 48];
  ss__span_str(&b, "dns.question.name", node, (size_t)-1);
  if (rc == 0) {
    int count;
    size_t used = collect_answers(node, *res, answers, sizeof answers, &count, key);
    if (used) ss__span_strarr(&b, "dns.answers", answers, used);
    ss__span_int(&b, "spanshim.dns.answer_count", count);
  } else {
    ss__span_error(&b, eai_name(rc, err), eai_message(rc));
  }
  ss__span_end(&b);
  errno = err;
  return rc;
}
