/* libcurl.c - HTTP client spans for libcurl transfers, and W3C trace-context injection;
 * see DESIGN.md §4.
 *
 * Span: `{METHOD}` (or `HTTP` for a non-standard method), CLIENT, from the start of
 * curl_easy_perform, or from curl_multi_add_handle, to its return, or to the CURLMSG_DONE
 * that curl_multi_info_read hands out (else curl_multi_remove_handle, else
 * curl_easy_cleanup). Attributes: http.request.method (+ _original), url.full (raw here;
 * the exporter's sanitize pass redacts userinfo and signed query values), server.address,
 * server.port, network.peer.address/port, http.response.status_code,
 * network.protocol.version, http.request.resend_count (redirects followed), and curl's
 * phase timings as spanshim.curl.*_time_us. Transport failures: status ERROR, error.type =
 * the CURLcode name; 4xx/5xx: status ERROR, error.type = the status code. Request headers,
 * cookies and proxy settings are never read.
 *
 * Injection: the request carries `traceparent` (plus `tracestate` when the trace came
 * from the TRACESTATE/TRACEPARENT environment, and `baggage` from BAGGAGE) per
 * OTEL_PROPAGATORS. An easy transfer of plain-text HTTP/1.x gets its traceparent spliced
 * into the request heads libcurl writes ("write level" below); otherwise the app's
 * CURLOPT_HTTPHEADER list is never touched: a few list nodes of ours, in the handle's
 * slot, are put in front of it for the transfer (ours → ... → the app's list) and the
 * app's pointer is set back afterwards. If the
 * app's list has a `traceparent`, it becomes the span's parent and nothing is injected.
 *
 * Children: curl_easy_perform keeps the span on the thread's context stack, so the
 * connect and (through hooks/thread.c) the resolver thread's getaddrinfo are children.
 * Multi transfers progress inside curl_multi_perform/socket_action for many handles at
 * once; there our CURLOPT_OPENSOCKETFUNCTION and CURLOPT_RESOLVER_START_FUNCTION
 * wrappers (calling the app's own, if any) put the transfer's context on the stack right
 * before curl resolves or connects for it, until the multi call returns.
 *
 * Per-handle state lives in a fixed table (SLOTS handles at once; a handle beyond that is
 * still traced, without injection), keyed by the CURL pointer; libcurl lets one thread
 * use a handle at a time, so a slot's fields need no lock, only the key is atomic. */
#define CURL_DISABLE_TYPECHECK
#define CURL_DISABLE_DEPRECATION
#include <curl/curl.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <strings.h>
#include <sys/socket.h>

#include "libcurl_codes.h" /* generated into $(BUILD)/gen from curl.h */
#include "hooks/hooks.h"
#include "hooks/hook.h"
#include "runtime/hash.h"
#include "runtime/http1.h"

#define LIB "libcurl"
SS_REAL_LIB(LIB, curl_easy_setopt)
SS_REAL_LIB(LIB, curl_easy_perform)
SS_REAL_LIB(LIB, curl_easy_getinfo)
SS_REAL_LIB(LIB, curl_easy_strerror)
SS_REAL_LIB(LIB, curl_easy_duphandle)
SS_REAL_LIB(LIB, curl_easy_reset)
SS_REAL_LIB(LIB, curl_easy_cleanup)
SS_REAL_LIB(LIB, curl_multi_add_handle)
SS_REAL_LIB(LIB, curl_multi_remove_handle)
SS_REAL_LIB(LIB, curl_multi_info_read)
SS_REAL_LIB(LIB, curl_multi_perform)
SS_REAL_LIB(LIB, curl_multi_socket_action)
SS_REAL_LIB(LIB, curl_multi_socket_all)

#define SLOTS 256
#define URL_CAP 2048
#define CUSTOM_CAP 32
#define TP_PREFIX "traceparent: "

enum { M_GET, M_HEAD, M_POST, M_PUT };
/* Options under which only the header list puts the headers where libcurl would (hslot's
 * list_only bits): the write-level injection below is not used. */
enum {
  LO_DOH = 1,         /* CURLOPT_DOH_URL: libcurl's own DoH requests must not get ours */
  LO_SHARE = 2,       /* CURLOPT_SHARE: its connections may be other handles' */
  LO_UNIFIED = 4,     /* CURLOPT_HEADEROPT CURLHEADER_UNIFIED: a CONNECT carries them too */
  LO_TLS_PROXY = 8,   /* an HTTPS proxy (CURLOPT_PROXY/PRE_PROXY https://, PROXYTYPE) */
  LO_DEFAULT_PROTO = 16, /* CURLOPT_DEFAULT_PROTOCOL: a URL without scheme may not be HTTP */
  LO_STICKY = 32      /* the handle made an HTTP(S) transfer without the write level (or
                         one that turned to TLS): its cached connections may be TLS ones
                         (https, an HTTPS proxy), whose requests the write level never sees */
};
/* Write-level injection, per transfer: wl_phase. */
enum { WL_NONE = 0, WL_HEAD, WL_BODY, WL_OFF };
enum { KEY_FREE = 0, KEY_TOMB = 1 };

typedef struct hslot {
  _Atomic uintptr_t key;            /* KEY_FREE, KEY_TOMB, or the CURL * */
  /* what the app set, as curl would see it without us */
  struct curl_slist *app_headers;
  curl_opensocket_callback app_open;
  void *app_open_data;
  curl_resolver_start_callback app_rs;
  void *app_rs_data;
  uint8_t method;                   /* M_* from POST/UPLOAD/HTTPGET/... */
  uint8_t nobody;                   /* CURLOPT_NOBODY: HEAD */
  uint8_t custom_len;               /* CUSTOMREQUEST, 0 when unset */
  char custom[CUSTOM_CAP];
  uint16_t url_len;                 /* CURLOPT_URL, 0 when unset or too long */
  char url[URL_CAP];
  struct {                          /* url read once when set (a handle's transfers */
    int8_t sch;                     /* usually share it): scheme_of(url) */
    uint8_t sep, tls;               /* it has "://"; its scheme is https */
    uint16_t host_off, host_len;    /* url_server(url): host, port (0: none) */
    int32_t port;
  } u;
  uint8_t http_version;             /* CURLOPT_HTTP_VERSION (CURL_HTTP_VERSION_*) */
  uint8_t list_only;                /* LO_* bits */
  /* the running transfer */
  uint8_t busy;                     /* 1 easy perform, 2 in a multi */
  uint8_t injected;                 /* HTTPHEADER points at our nodes */
  uint8_t hooked_cbs;               /* our open/resolver callbacks are installed */
  uint8_t adopted;                  /* an app traceparent was pushed as the parent */
  int adopt_token;                  /* ss__ctx_push token of that parent */
  ss__ctx ctx;                      /* the span's context, for the multi callbacks */
  struct curl_slist nodes[3];       /* traceparent, tracestate, baggage */
  char tp[sizeof TP_PREFIX + SS_TRACEPARENT_LEN];
  uint8_t app_baggage;              /* the app's list sets baggage */
  /* write-level injection of an easy transfer (see "write level" below) */
  uint8_t wl_phase;                 /* WL_* */
  int wl_fd;                        /* WL_BODY: the socket its request goes on */
  int64_t wl_left;                  /* WL_BODY: request bytes still to come, -1: see wl_h1 */
  ss__splice wl_sp;                 /* wl_line's bytes still to go into wl_fd's stream */
  char wl_line[sizeof TP_PREFIX + SS_TRACEPARENT_LEN + 1]; /* "traceparent: ...\r\n" */
  ss__h1 wl_h1;                     /* framing of a request with a body */
  ss__sb sb;
} hslot;

static hslot slots[SLOTS];
static void track_url(hslot *s, const char *u);

/* > 0 while this thread is inside one of our perform/multi hooks: libcurl calls its own
 * exported API (curl_easy_perform runs a multi; DoH and HTTP/2 push add handles), and
 * those inner calls must not make spans of their own. */
static __thread int in_curl __attribute__((tls_model("initial-exec")));
/* ctx[] index of the context a multi callback pushed, -1 when none. */
static __thread int sticky __attribute__((tls_model("initial-exec"))) = -1;
/* The slot of the easy transfer this thread runs with write-level injection armed. */
__thread void *ss__curl_wl __attribute__((tls_model("initial-exec")));

int ss__libcurl_busy(void) {
  return in_curl > 0;
}

/* ---- the handle table ---- */
static size_t slot_hash(const void *h) {
  return ss__ptr_hash(h) % SLOTS;
}

static hslot *slot_find(const void *h) {
  if (h == NULL) return NULL;
  size_t i = slot_hash(h);
  for (size_t k = 0; k < SLOTS; k++, i = (i + 1) % SLOTS) {
    uintptr_t key = atomic_load_explicit(&slots[i].key, memory_order_acquire);
    if (key == (uintptr_t)h) return &slots[i];
    if (key == KEY_FREE) return NULL;
  }
  return NULL;
}

/* The handle's slot, made if needed; NULL when the table is full. */
static hslot *slot_get(const void *h) {
  hslot *s = slot_find(h);
  if (s || h == NULL) return s;
  size_t i = slot_hash(h);
  for (size_t k = 0; k < SLOTS; k++, i = (i + 1) % SLOTS) {
    uintptr_t key = atomic_load_explicit(&slots[i].key, memory_order_relaxed);
    if (key != KEY_FREE && key != KEY_TOMB) continue;
    if (!atomic_compare_exchange_strong(&slots[i].key, &key, (uintptr_t)h)) continue;
    s = &slots[i];
    s->app_headers = NULL;
    s->app_open = NULL;
    s->app_open_data = NULL;
    s->app_rs = NULL;
    s->app_rs_data = NULL;
    s->method = M_GET;
    s->nobody = 0;
    s->custom_len = 0;
    track_url(s, NULL);
    s->http_version = 0;
    s->list_only = 0;
    s->wl_phase = WL_NONE;
    s->wl_sp.len = s->wl_sp.off = 0;
    s->busy = s->injected = s->hooked_cbs = s->adopted = 0;
    return s;
  }
  return NULL;
}

static void slot_free(hslot *s) {
  atomic_store_explicit(&s->key, KEY_TOMB, memory_order_release);
}

/* ---- the multi callbacks' context (a push of our own, until the multi call returns) ---- */
static void sticky_set(const ss__ctx *c) {
  if (in_curl == 0) return; /* only inside a multi call that will clear it */
  if (sticky >= 0) {
    ss__ctx_replace(sticky, c);
    return;
  }
  sticky = ss__ctx_push(c);
}

static void sticky_clear(void) {
  if (sticky >= 0 && ss__ctx_depth() == sticky + 1) ss__ctx_pop(sticky);
  sticky = -1;
}

/* ---- setopt tracking ---- */
static int scheme_of(const char *u, size_t n);
static void url_server(const char *u, size_t n, const char **host, size_t *hlen, long *port);

static void track_url(hslot *s, const char *u) {
  size_t n = u ? strlen(u) : 0;
  if (n >= URL_CAP) n = 0; /* the effective URL is used instead */
  memcpy(s->url, u ? u : "", n);
  s->url_len = (uint16_t)n;
  const char *host;
  size_t hlen;
  long port;
  s->u.sch = (int8_t)scheme_of(s->url, n);
  s->u.sep = memmem(s->url, n, "://", 3) != NULL;
  s->u.tls = n >= 8 && strncasecmp(s->url, "https://", 8) == 0;
  url_server(s->url, n, &host, &hlen, &port);
  s->u.host_off = (uint16_t)(host ? host - s->url : 0);
  s->u.host_len = (uint16_t)(host ? hlen : 0);
  s->u.port = (int32_t)port;
}

static void track_custom(hslot *s, const char *m) {
  size_t n = m ? strlen(m) : 0;
  if (n >= CUSTOM_CAP) n = CUSTOM_CAP - 1;
  memcpy(s->custom, m ? m : "", n);
  s->custom_len = (uint8_t)n;
}

static void lo_set(hslot *s, uint8_t bit, int on) {
  s->list_only = (uint8_t)(on ? s->list_only | bit : s->list_only & ~bit);
}

static int is_https(const char *u) {
  return strncasecmp(u, "https://", 8) == 0;
}

/* Mirrors how libcurl's setopt derives the request method (lib/setopt.c): a method and
 * a separate no-body flag that makes it HEAD. */
static void track_option(hslot *s, CURLoption opt, long l, void *p) {
  switch (opt) {
    case CURLOPT_URL: track_url(s, p); break;
    case CURLOPT_CUSTOMREQUEST: track_custom(s, p); break;
    case CURLOPT_HTTPHEADER: s->app_headers = p; s->injected = 0; break;
    case CURLOPT_NOBODY: s->nobody = l != 0; break;
    case CURLOPT_POST:
      s->method = l ? M_POST : M_GET;
      if (l) s->nobody = 0;
      break;
    case CURLOPT_POSTFIELDS:
    case CURLOPT_COPYPOSTFIELDS:
      s->method = M_POST;
      break;
    case CURLOPT_HTTPPOST:
    case CURLOPT_MIMEPOST:
      if (p) s->method = M_POST, s->nobody = 0;
      break;
    case CURLOPT_UPLOAD:
    case CURLOPT_PUT:
      s->method = l ? M_PUT : M_GET;
      if (l) s->nobody = 0;
      break;
    case CURLOPT_HTTPGET:
      if (l) s->method = M_GET, s->nobody = 0;
      break;
    case CURLOPT_HTTP_VERSION: s->http_version = (uint8_t)(l >= 0 && l < 256 ? l : 255); break;
    case CURLOPT_DOH_URL: lo_set(s, LO_DOH, p && *(const char *)p); break;
    case CURLOPT_SHARE: lo_set(s, LO_SHARE, p != NULL); break;
    case CURLOPT_HEADEROPT: lo_set(s, LO_UNIFIED, !(l & CURLHEADER_SEPARATE)); break;
    case CURLOPT_PROXY: case CURLOPT_PRE_PROXY:
      lo_set(s, LO_TLS_PROXY, (s->list_only & LO_TLS_PROXY) || (p && is_https(p)));
      break;
    case CURLOPT_PROXYTYPE: if (l == CURLPROXY_HTTPS) lo_set(s, LO_TLS_PROXY, 1); break;
    case CURLOPT_DEFAULT_PROTOCOL:
      lo_set(s, LO_DEFAULT_PROTO, p && strcasecmp(p, "http") != 0);
      break;
    default: break;
  }
}

static int tracked(CURLoption opt) {
  switch (opt) {
    case CURLOPT_URL: case CURLOPT_CUSTOMREQUEST: case CURLOPT_HTTPHEADER:
    case CURLOPT_NOBODY: case CURLOPT_POST: case CURLOPT_POSTFIELDS:
    case CURLOPT_COPYPOSTFIELDS: case CURLOPT_HTTPPOST: case CURLOPT_MIMEPOST:
    case CURLOPT_UPLOAD: case CURLOPT_PUT: case CURLOPT_HTTPGET:
    case CURLOPT_OPENSOCKETFUNCTION: case CURLOPT_OPENSOCKETDATA:
    case CURLOPT_RESOLVER_START_FUNCTION: case CURLOPT_RESOLVER_START_DATA:
    case CURLOPT_HTTP_VERSION: case CURLOPT_DOH_URL: case CURLOPT_SHARE:
    case CURLOPT_HEADEROPT: case CURLOPT_PROXY: case CURLOPT_PRE_PROXY:
    case CURLOPT_PROXYTYPE: case CURLOPT_DEFAULT_PROTOCOL:
      return 1;
    default: return 0;
  }
}

/* The four callback options: while our wrappers are installed the app's values are
 * kept for the wrappers to call, and set back when the transfer ends. Returns 1 when
 * the value was taken (curl is not to be told). */
static int track_callback(hslot *s, CURLoption opt, void *p, void (*f)(void)) {
  switch (opt) {
    case CURLOPT_OPENSOCKETFUNCTION: s->app_open = (curl_opensocket_callback)f; break;
    case CURLOPT_OPENSOCKETDATA: s->app_open_data = p; break;
    case CURLOPT_RESOLVER_START_FUNCTION: s->app_rs = (curl_resolver_start_callback)f; break;
    case CURLOPT_RESOLVER_START_DATA: s->app_rs_data = p; break;
    default: return 0;
  }
  return s->hooked_cbs;
}

SS_EXPORT CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...) {
  union {
    long l;
    void *p;
    void (*f)(void);
    curl_off_t o;
  } v = {0};
  va_list ap;
  va_start(ap, opt);
  int type = (int)opt / 10000 * 10000;
  if (type == CURLOPTTYPE_LONG) v.l = va_arg(ap, long);
  else if (type == CURLOPTTYPE_FUNCTIONPOINT) v.f = va_arg(ap, void (*)(void));
  else if (type == CURLOPTTYPE_OFF_T) v.o = va_arg(ap, curl_off_t);
  else v.p = va_arg(ap, void *); /* OBJECTPOINT (strings, lists, data), BLOB */
  va_end(ap);

  __typeof__(&curl_easy_setopt) real = real_curl_easy_setopt();
  if (real == NULL) return CURLE_FAILED_INIT;
  hslot *s = NULL;
  if (tracked(opt) && ss__active(SS_HOOK_LIBCURL)) {
    /* Handles libcurl makes for itself (DoH) are set up inside our calls: not tracked. */
    s = in_curl ? slot_find(h) : slot_get(h);
    if (s && track_callback(s, opt, v.p, v.f)) return CURLE_OK;
  }
  CURLcode rc;
  if (type == CURLOPTTYPE_LONG) rc = real(h, opt, v.l);
  else if (type == CURLOPTTYPE_FUNCTIONPOINT) rc = real(h, opt, v.f);
  else if (type == CURLOPTTYPE_OFF_T) rc = real(h, opt, v.o);
  else rc = real(h, opt, v.p);
  if (s && rc == CURLE_OK) SS_SAVE_ERRNO(track_option(s, opt, v.l, v.p));
  return rc;
}

/* ---- injection ---- */
static const char *hdr_tracestate, *hdr_baggage;
static pthread_once_t hdr_once = PTHREAD_ONCE_INIT;

static char *header_line(const char *name, const char *value) {
  size_t n = strlen(name), m = strlen(value);
  char *p = malloc(n + 2 + m + 1);
  if (p == NULL) return NULL;
  memcpy(p, name, n);
  memcpy(p + n, ": ", 2);
  memcpy(p + n + 2, value, m + 1);
  return p;
}

/* Built once: the environment's TRACESTATE and BAGGAGE never change in a process. */
static void hdr_init(void) {
  if (ss__cfg.tracestate && *ss__cfg.tracestate)
    hdr_tracestate = header_line("tracestate", ss__cfg.tracestate);
  if (ss__cfg.baggage && *ss__cfg.baggage) hdr_baggage = header_line("baggage", ss__cfg.baggage);
}

static int header_is(const char *line, const char *name) {
  size_t n = strlen(name);
  if (line == NULL || strncasecmp(line, name, n) != 0) return 0;
  line += n;
  while (*line == ' ' || *line == '\t') line++;
  return *line == ':' || *line == ';';
}

/* Looks through the app's list: 1 and *parent when it carries a valid traceparent, 2
 * when it carries one that does not parse; *has_baggage when it sets baggage. */
static int app_traceparent(const struct curl_slist *l, ss__ctx *parent, int *has_baggage) {
  int found = 0;
  *has_baggage = 0;
  for (int n = 0; l && n < 1000; l = l->next, n++) {
    if (header_is(l->data, "baggage")) *has_baggage = 1;
    if (found || !header_is(l->data, "traceparent")) continue;
    const char *v = strpbrk(l->data, ":;");
    found = 2;
    if (*v == ':' && ss__traceparent_parse(v + 1, strlen(v + 1), parent) == 0) {
      parent->valid = 1;
      found = 1;
    }
  }
  return found;
}

static void inject(CURL *h, hslot *s, int app_baggage) {
  uint32_t props = ss__cfg.propagators;
  if (!(props & (SS_PROP_TRACECONTEXT | SS_PROP_BAGGAGE))) return;
  pthread_once(&hdr_once, hdr_init);
  struct curl_slist *head = s->app_headers;
  int k = 0;
  if ((props & SS_PROP_BAGGAGE) && hdr_baggage && !app_baggage) {
    s->nodes[k].data = (char *)hdr_baggage;
    s->nodes[k].next = head;
    head = &s->nodes[k++];
  }
  if ((props & SS_PROP_TRACECONTEXT) && s->ctx.valid) { /* OTEL_SDK_DISABLED: none w/o a parent */
    if (hdr_tracestate && ss__cfg.parent.valid &&
        memcmp(ss__cfg.parent.trace_id, s->ctx.trace_id, 16) == 0) {
      s->nodes[k].data = (char *)hdr_tracestate;
      s->nodes[k].next = head;
      head = &s->nodes[k++];
    }
    memcpy(s->tp, TP_PREFIX, sizeof TP_PREFIX - 1);
    ss__traceparent_format(&s->ctx, s->tp + sizeof TP_PREFIX - 1);
    s->nodes[k].data = s->tp;
    s->nodes[k].next = head;
    head = &s->nodes[k++];
  }
  if (head != s->app_headers &&
      real_curl_easy_setopt()(h, CURLOPT_HTTPHEADER, head) == CURLE_OK)
    s->injected = 1;
}

static void uninject(CURL *h, hslot *s) {
  if (!s->injected) return;
  real_curl_easy_setopt()(h, CURLOPT_HTTPHEADER, s->app_headers);
  s->injected = 0;
}

/* ---- write level ----
 * A custom header costs libcurl far more than the shim's whole span (it copies, scans and
 * formats its header list for every request: ~6k instructions per GET, 10% of a keep-alive
 * request to nginx). So for an easy transfer of plain-text HTTP/1.x, with nothing but a
 * traceparent to add, the line goes into each request head libcurl itself writes on a
 * socket during the transfer (redirects and authentication rounds included, as the list's
 * headers do), spliced in before the blank line that ends the head: the server gets what
 * the header list would have given it (only the line's place among the fields differs).
 *   - Only writes made from libcurl's own code are looked at (its send()s); writes of the
 *     app's callbacks never are.
 *   - A request with a body (Content-Length or Transfer-Encoding among its fields) is
 *     followed to its end with runtime/http1.h's parser, so body bytes are never taken
 *     for a head; a CONNECT to a proxy gets nothing (libcurl sends the list there only
 *     with CURLHEADER_UNIFIED, which is left to the list).
 *   - What the write level cannot see into goes back to the list: HTTPS (and HTTP/2,
 *     HTTP/3, h2c), DoH, HTTPS proxies named in options or in the environment, handles
 *     that share connections (CURLOPT_SHARE) or made a transfer of another kind before
 *     (their cached connections may be TLS ones the next request reuses), tracestate or baggage to add, the multi interface. A TLS handshake
 *     written during an armed transfer (an HTTPS proxy, a redirect to https) puts the
 *     list in place before libcurl builds the request (it builds it once connected), and
 *     the handle keeps using the list (LO_STICKY). */
static struct {
  pthread_once_t once;
  uintptr_t lo, hi;  /* libcurl's executable segment; 0, 0 when not found */
  int env_tls_proxy; /* http_proxy / all_proxy name an https:// proxy (read once) */
} wl_env = {PTHREAD_ONCE_INIT, 0, 0, 0};

static int text_of(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  uintptr_t at = (uintptr_t)data;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && at >= lo && at < lo + ph->p_memsz) {
      wl_env.lo = lo;
      wl_env.hi = lo + ph->p_memsz;
      return 1;
    }
  }
  return 0;
}

static void wl_init(void) {
  void *f = (void *)real_curl_easy_perform();
  if (f) dl_iterate_phdr(text_of, f);
  /* libcurl reads its proxy from the environment; a secure-execution process's environment
   * is not ours to read (secure_getenv gives nothing there), so it keeps the header list,
   * which works whatever the proxy. */
  if (getauxval(AT_SECURE)) {
    wl_env.env_tls_proxy = 1;
    return;
  }
  static const char *const vars[] = {"http_proxy", "all_proxy", "ALL_PROXY"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = secure_getenv(vars[i]);
    if (v && is_https(v)) wl_env.env_tls_proxy = 1;
  }
}

/* Whether transfer s, about to inject, can do it at the write level. */
static int wl_eligible(const hslot *s, int app_baggage) {
  uint32_t props = ss__cfg.propagators;
  if (s->list_only || s->url_len == 0 || !(props & SS_PROP_TRACECONTEXT) || !s->ctx.valid)
    return 0;
  pthread_once(&hdr_once, hdr_init);
  if ((props & SS_PROP_BAGGAGE) && hdr_baggage && !app_baggage) return 0;
  if (hdr_tracestate && ss__cfg.parent.valid &&
      memcmp(ss__cfg.parent.trace_id, s->ctx.trace_id, 16) == 0)
    return 0;
  if (s->u.sch != -1 || s->u.tls) return 0; /* http:// or a URL guessed to be HTTP */
  switch (s->http_version) {
    case CURL_HTTP_VERSION_NONE: case CURL_HTTP_VERSION_1_0: case CURL_HTTP_VERSION_1_1:
    case CURL_HTTP_VERSION_2TLS: break; /* HTTP/1.x on plain text */
    default: return 0;
  }
  if (s->custom_len == 7 && strncasecmp(s->custom, "CONNECT", 7) == 0) return 0;
  pthread_once(&wl_env.once, wl_init);
  return wl_env.hi != 0 && !wl_env.env_tls_proxy;
}

static void wl_arm(hslot *s) {
  memcpy(s->wl_line, TP_PREFIX, sizeof TP_PREFIX - 1);
  ss__traceparent_format(&s->ctx, s->wl_line + sizeof TP_PREFIX - 1);
  memcpy(s->wl_line + sizeof TP_PREFIX - 1 + SS_TRACEPARENT_LEN, "\r\n", 2);
  s->wl_sp = (ss__splice){.buf = s->wl_line};
  s->wl_phase = WL_HEAD;
}

/* Leaves the write level for the rest of the transfer (and the handle's life): the
 * list carries the headers from the next request libcurl builds. */
static void wl_to_list(hslot *s) {
  s->wl_phase = WL_OFF;
  s->list_only |= LO_STICKY;
  inject((CURL *)atomic_load_explicit(&s->key, memory_order_relaxed), s, s->app_baggage);
}

/* 1 when a header line among h[0..n) is Content-Length or Transfer-Encoding. */
static int has_body_fields(const char *h, size_t n) {
  for (size_t i = 0; i < n;) {
    const char *lf = memchr(h + i, '\n', n - i);
    size_t len = (lf ? (size_t)(lf - h) : n) - i;
    char c = (char)(h[i] | 0x20); /* most lines are neither: their first letter says so */
    if ((c == 'c' && len > 15 && strncasecmp(h + i, "content-length:", 15) == 0) ||
        (c == 't' && len > 18 && strncasecmp(h + i, "transfer-encoding:", 18) == 0))
      return 1;
    if (lf == NULL) break;
    i = (size_t)(lf - h) + 1;
  }
  return 0;
}

/* Follows the request's own bytes b[0..k) that went out: WL_HEAD again at its end. */
static void wl_framing(hslot *s, const char *b, size_t k) {
  if (s->wl_left >= 0) {
    if ((int64_t)k >= s->wl_left) s->wl_phase = WL_HEAD;
    else s->wl_left -= (int64_t)k;
    return;
  }
  while (k > 0) {
    int ev;
    size_t used = ss__h1_feed(&s->wl_h1, b, k, &ev);
    if (ev & SS_H1_BAD) {
      s->wl_phase = WL_OFF; /* lost track: nothing more is spliced in this transfer */
      ss__http_count_skipped();
      return;
    }
    if (ev & SS_H1_END) {
      s->wl_phase = WL_HEAD; /* the rest of this write is not a head libcurl would write */
      return;
    }
    b += used;
    k -= used;
  }
}

/* A request head b[0..n) libcurl writes on fd: spliced and sent. */
static ssize_t wl_head(hslot *s, int fd, const char *b, size_t n, int flags, size_t le,
                       size_t he) {
  int body = he == 0 || has_body_fields(b + le, he - le);
  size_t at = he ? he - (he >= 2 && b[he - 2] == '\r' ? 2 : 1) : le;
  s->wl_sp = (ss__splice){.buf = s->wl_line, .len = sizeof s->wl_line, .after = (uint32_t)at};
  s->wl_phase = WL_BODY;
  s->wl_fd = fd;
  s->wl_left = body ? -1 : (int64_t)he;
  if (body) ss__h1_init(&s->wl_h1, SS_H1_REQUEST);
  struct iovec v = {(void *)b, n};
  ssize_t k = ss__splice_sock(&s->wl_sp, fd, &v, 1, flags);
  if (k > 0) wl_framing(s, b, (size_t)k);
  return k;
}

int ss__libcurl_send(int fd, const void *buf, size_t n, int flags, const void *caller,
                     ssize_t *rc) {
  hslot *s = ss__curl_wl;
  const char *b = buf;
  if (n == 0 || s->wl_phase == WL_OFF) return 0;
  int saved = errno;
  if (s->wl_phase == WL_BODY && fd == s->wl_fd) { /* the request's own bytes */
    struct iovec v = {(void *)b, n};
    errno = saved;
    ssize_t k = ss__splice_sock(&s->wl_sp, fd, &v, 1, flags);
    int err = errno;
    if (k > 0) wl_framing(s, b, (size_t)k);
    *rc = k;
    errno = err;
    return 1;
  }
  /* A TLS handshake (from libcurl or the TLS library it uses): an HTTPS proxy or a
   * redirect to https, whose requests the list must carry. */
  if (n >= 3 && b[0] == 0x16 && b[1] == 3) {
    wl_to_list(s);
    errno = saved;
    return 0;
  }
  uintptr_t ra = (uintptr_t)caller;
  if (ra < wl_env.lo || ra >= wl_env.hi) return 0;
  /* TLS already up: a connection the rules above did not foresee (an HTTPS proxy the
   * environment named after start): this request goes without, counted. */
  if (n >= 3 && b[0] == 0x17 && b[1] == 3) {
    ss__http_count_skipped();
    wl_to_list(s);
    errno = saved;
    return 0;
  }
  size_t le, he;
  int has_tp;
  if (ss__h1_scan_request(b, n, &le, &he, &has_tp) != 0 || has_tp ||
      (le > 8 && memcmp(b, "CONNECT ", 8) == 0)) {
    errno = saved;
    return 0;
  }
  /* A head on another connection: the one in progress was given up (libcurl closes a
   * connection whose request it did not finish). */
  errno = saved;
  *rc = wl_head(s, fd, b, n, flags, le, he);
  return 1;
}

/* ---- schemes ---- */
/* The non-HTTP schemes libcurl speaks, their span names and default ports. */
static const struct {
  char scheme[10], name[10]; /* inline, not pointers (see runtime/sqlstate.c's codes) */
  uint16_t port;
} schemes[] = {
    {"ftp", "FTP", 21},       {"ftps", "FTPS", 990},    {"sftp", "SFTP", 22},
    {"scp", "SCP", 22},       {"smtp", "SMTP", 25},     {"smtps", "SMTPS", 465},
    {"imap", "IMAP", 143},    {"imaps", "IMAPS", 993},  {"pop3", "POP3", 110},
    {"pop3s", "POP3S", 995},  {"ldap", "LDAP", 389},    {"ldaps", "LDAPS", 636},
    {"dict", "DICT", 2628},   {"file", "FILE", 0},      {"gopher", "GOPHER", 70},
    {"gophers", "GOPHERS", 70}, {"mqtt", "MQTT", 1883}, {"rtsp", "RTSP", 554},
    {"smb", "SMB", 445},      {"smbs", "SMBS", 445},    {"telnet", "TELNET", 23},
    {"tftp", "TFTP", 69},     {"ws", "WS", 80},         {"wss", "WSS", 443},
};

/* The entry of schemes[] for url (len bytes), or -1 for HTTP(S) and what curl takes as
 * HTTP: a URL without a scheme is guessed from its host's first label as libcurl does
 * (lib/urlapi.c: ftp., dict., ldap., imap., smtp., pop3. hosts), else HTTP. An unknown
 * scheme is -2 (libcurl refuses it; not HTTP either). */
static int scheme_of(const char *u, size_t n) {
  const char *sep = u ? memmem(u, n, "://", 3) : NULL;
  size_t len;
  const char *sch = u;
  if (sep) {
    len = (size_t)(sep - u);
  } else {
    static const char *const guess[] = {"ftp", "dict", "ldap", "imap", "smtp", "pop3"};
    if (u == NULL) return -1;
    for (size_t i = 0; i < sizeof guess / sizeof guess[0]; i++) {
      size_t l = strlen(guess[i]);
      if (n > l && strncasecmp(u, guess[i], l) == 0 && u[l] == '.') {
        sch = guess[i];
        len = l;
        goto look;
      }
    }
    return -1;
  }
  if ((len == 4 && strncasecmp(sch, "http", 4) == 0) ||
      (len == 5 && strncasecmp(sch, "https", 5) == 0))
    return -1;
look:
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strlen(schemes[i].scheme) == len && strncasecmp(schemes[i].scheme, sch, len) == 0)
      return (int)i;
  return -2;
}

/* Starts the transfer's span in b (parented on the app's traceparent when it set one)
 * and injects the headers; caller is the app's return address (code.function.name). Leaves the span, and an adopted parent under it, pushed. */
static void xfer_begin(CURL *h, hslot *s, ss__sb *b, void *caller, int easy) {
  ss__ctx parent;
  int app_baggage = 0;
  int app_tp = s ? app_traceparent(s->app_headers, &parent, &app_baggage) : 0;
  if (s) {
    s->adopted = 0;
    s->app_baggage = (uint8_t)app_baggage;
    s->wl_phase = WL_NONE;
  }
  if (app_tp == 1) {
    s->adopt_token = ss__ctx_push(&parent);
    s->adopted = 1;
  }
  ss__span_start_at(b, "HTTP", SS_KIND_CLIENT, caller);
  if (s == NULL) return;
  ss__span_ctx(b, &s->ctx);
  /* Headers go only where they are HTTP headers: an SMTP or IMAP upload would carry them
   * in the message itself. (A URL too long to track is taken as HTTP.) */
  int http = s->url_len == 0 || s->u.sch == -1;
  if (app_tp == 0 && http && easy && wl_eligible(s, app_baggage)) {
    wl_arm(s);
    return;
  }
  if (http) s->list_only |= LO_STICKY; /* its connections may be TLS ones */
  if (app_tp == 0 && http) inject(h, s, app_baggage);
}

/* ---- attributes at the end ---- */
static const char *const known_methods[] = {"CONNECT", "DELETE", "GET",   "HEAD", "OPTIONS",
                                            "PATCH",   "POST",   "PUT",   "TRACE", "QUERY"};

/* The span name for method m (a static string), or NULL when m is not a known one. */
static const char *method_name(const char *m, size_t n) {
  for (size_t i = 0; i < sizeof known_methods / sizeof known_methods[0]; i++)
    if (strlen(known_methods[i]) == n && memcmp(known_methods[i], m, n) == 0)
      return known_methods[i];
  return NULL;
}

static const char *curle_name(CURLcode rc) {
  if ((size_t)rc < sizeof curle_names / sizeof curle_names[0] && curle_names[rc][0])
    return curle_names[rc];
  return "_OTHER";
}

/* server.address and server.port from a URL: host without userinfo or brackets; the
 * port as written, else the scheme's default (0 when unknown). */
static void url_server(const char *u, size_t n, const char **host, size_t *hlen, long *port) {
  const char *end = u + n, *p = u;
  const char *sep = memmem(u, n, "://", 3);
  *host = NULL;
  *hlen = 0;
  *port = 0;
  if (sep) {
    size_t sl = (size_t)(sep - u);
    if (sl == 4 && strncasecmp(u, "http", 4) == 0) *port = 80;
    if (sl == 5 && strncasecmp(u, "https", 5) == 0) *port = 443;
    p = sep + 3;
  }
  const char *a = p;
  while (a < end && *a != '/' && *a != '?' && *a != '#') a++;
  for (const char *q = p; q < a; q++)
    if (*q == '@') p = q + 1;
  const char *h = p, *he;
  if (h < a && *h == '[') {
    he = memchr(h, ']', (size_t)(a - h));
    if (he == NULL) return;
    h++;
    p = he + 1;
  } else {
    he = h;
    while (he < a && *he != ':') he++;
    p = he;
  }
  *host = h;
  *hlen = (size_t)(he - h);
  if (p < a && *p == ':' && p + 1 < a) {
    long v = 0;
    for (p++; p < a && *p >= '0' && *p <= '9' && v < 65536; p++) v = v * 10 + (*p - '0');
    if (p == a) *port = v;
  }
}

static void add_timing(ss__sb *b, CURL *h, CURLINFO what, const char *key) {
  curl_off_t us = 0;
  if (real_curl_easy_getinfo()(h, what, &us) == CURLE_OK && us > 0) ss__span_int(b, key, us);
}

/* A transfer of another protocol (sch: its schemes[] entry, or -2 for one curl does not
 * know): named by its scheme ("SMTP", "FTP", else "CURL"), with url.full, url.scheme,
 * network.protocol.name, server.address/port (the scheme's default port when none is
 * written), the peer, and the protocol's own last reply code (an SMTP 250, an FTP 226) as
 * spanshim.curl.response_code: semantic conventions define no span for these protocols,
 * and http.* attributes would say it was HTTP. */
static void other_scheme_attrs(ss__sb *b, CURL *h, int sch, const char *url, size_t url_len) {
  __typeof__(&curl_easy_getinfo) info = real_curl_easy_getinfo();
  ss__span_rename(b, sch >= 0 ? schemes[sch].name : "CURL");
  if (url) {
    const char *host;
    size_t hlen;
    long port;
    ss__span_str(b, "url.full", url, url_len);
    const char *sep = memmem(url, url_len, "://", 3);
    const char *scheme = sch >= 0 ? schemes[sch].scheme : url;
    size_t slen = sch >= 0 ? strlen(scheme) : sep ? (size_t)(sep - url) : 0;
    if (slen) {
      ss__span_str(b, "url.scheme", scheme, slen);
      ss__span_str(b, "network.protocol.name", scheme, slen);
    }
    url_server(url, url_len, &host, &hlen, &port);
    if (port == 0 && sch >= 0) port = schemes[sch].port;
    if (host && hlen) ss__span_str(b, "server.address", host, hlen);
    if (port > 0) ss__span_int(b, "server.port", port);
  }
  char *ip = NULL;
  long pport = 0, code = 0;
  if (info(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip) {
    ss__span_str(b, "network.peer.address", ip, (size_t)-1);
    if (info(h, CURLINFO_PRIMARY_PORT, &pport) == CURLE_OK && pport > 0)
      ss__span_int(b, "network.peer.port", pport);
  }
  if (info(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code > 0)
    ss__span_int(b, "spanshim.curl.response_code", code);
}

/* Fills the attributes from what curl knows about the finished transfer and ends the
 * span. rc_known: rc is the transfer's result (not known when the app removed or
 * cleaned up the handle before its CURLMSG_DONE). */
static void xfer_end(CURL *h, hslot *s, ss__sb *b, int rc_known, CURLcode rc) {
  __typeof__(&curl_easy_getinfo) info = real_curl_easy_getinfo();
  char status_str[12];
  const char *url = NULL, *m = NULL;
  size_t url_len = 0, m_len = 0;
  long redirects = 0, code = 0;
  if (b->recording && info) {
    int tracked_url = s && s->url_len && s->u.sep;
    if (tracked_url) {
      url = s->url;
      url_len = s->url_len;
    } else if (info(h, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url) {
      url_len = strlen(url);
    }
    int sch = tracked_url ? s->u.sch : scheme_of(url, url_len);
    if (sch != -1) { /* not HTTP: no method, no HTTP status (semconv's http.* is HTTP's) */
      other_scheme_attrs(b, h, sch, url, url_len);
      goto timings;
    }
    info(h, CURLINFO_REDIRECT_COUNT, &redirects);
    /* curl's own word when the request was not redirected (a 303 turns POST into GET);
     * else the method the options asked for, tracked at setopt. */
    if (redirects > 0 || info(h, CURLINFO_EFFECTIVE_METHOD, &m) != CURLE_OK) m = NULL;
    if (m) {
      m_len = strlen(m);
    } else if (s && s->custom_len) {
      m = s->custom;
      m_len = s->custom_len;
    } else if (s) {
      static const char *const base[] = {"GET", "HEAD", "POST", "PUT"};
      m = base[s->nobody ? M_HEAD : s->method];
      m_len = strlen(m);
    }
    const char *name = m ? method_name(m, m_len) : NULL;
    if (name) {
      ss__span_rename(b, name);
      ss__span_str(b, "http.request.method", name, (size_t)-1);
    } else {
      ss__span_str(b, "http.request.method", "_OTHER", 6);
      if (m) ss__span_str(b, "http.request.method_original", m, m_len);
    }
    if (url) {
      const char *host;
      size_t hlen;
      long port;
      ss__span_str(b, "url.full", url, url_len);
      if (tracked_url) {
        host = s->url + s->u.host_off;
        hlen = s->u.host_len;
        port = s->u.port;
      } else {
        url_server(url, url_len, &host, &hlen, &port);
      }
      if (host && hlen) ss__span_str(b, "server.address", host, hlen);
      if (port > 0) ss__span_int(b, "server.port", port);
    }
    char *ip = NULL;
    long pport = 0;
    if (info(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip) {
      ss__span_str(b, "network.peer.address", ip, (size_t)-1);
      if (info(h, CURLINFO_PRIMARY_PORT, &pport) == CURLE_OK && pport > 0)
        ss__span_int(b, "network.peer.port", pport);
    }
    if (info(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code > 0) {
      long ver = 0;
      ss__span_int(b, "http.response.status_code", code);
      if (info(h, CURLINFO_HTTP_VERSION, &ver) == CURLE_OK) {
        const char *vs = ver == CURL_HTTP_VERSION_1_0   ? "1.0"
                         : ver == CURL_HTTP_VERSION_1_1 ? "1.1"
                         : ver == CURL_HTTP_VERSION_2_0 ? "2"
                         : ver == CURL_HTTP_VERSION_3   ? "3"
                                                        : NULL;
        if (vs) ss__span_str(b, "network.protocol.version", vs, (size_t)-1);
      }
    }
    if (redirects > 0) ss__span_int(b, "http.request.resend_count", redirects);
  timings:
    add_timing(b, h, CURLINFO_NAMELOOKUP_TIME_T, "spanshim.curl.namelookup_time_us");
    add_timing(b, h, CURLINFO_CONNECT_TIME_T, "spanshim.curl.connect_time_us");
    add_timing(b, h, CURLINFO_APPCONNECT_TIME_T, "spanshim.curl.appconnect_time_us");
    add_timing(b, h, CURLINFO_STARTTRANSFER_TIME_T, "spanshim.curl.starttransfer_time_us");
  }
  if (rc_known && rc != CURLE_OK && !(rc == CURLE_HTTP_RETURNED_ERROR && code >= 400)) {
    __typeof__(&curl_easy_strerror) se = real_curl_easy_strerror();
    ss__span_error(b, curle_name(rc), se ? se(rc) : NULL);
  } else if (code >= 400) {
    int n = 0;
    for (long c = code; c > 0 && n < 10; c /= 10) n++;
    status_str[n] = '\0';
    for (long c = code; n > 0; c /= 10) status_str[--n] = (char)('0' + c % 10);
    ss__span_fail(b, status_str); /* an answer, not an exception (semconv) */
  }
  ss__span_end(b);
  if (s && s->adopted) {
    ss__ctx_pop(s->adopt_token);
    s->adopted = 0;
  }
}

/* ---- easy interface ---- */
SS_EXPORT CURLcode curl_easy_perform(CURL *h) {
  __typeof__(&curl_easy_perform) real = real_curl_easy_perform();
  if (real == NULL) return CURLE_FAILED_INIT;
  if (h == NULL || in_curl || !ss__active(SS_HOOK_LIBCURL)) {
    void *wl = ss__curl_wl; /* a transfer run from a callback of ours: not its requests */
    if (wl == NULL) return real(h);
    ss__curl_wl = NULL;
    CURLcode rc = real(h);
    ss__curl_wl = wl;
    return rc;
  }
  hslot *s = slot_get(h);
  if (s && s->busy) return real(h); /* curl refuses this itself; nothing to trace */
  ss__sb local, *b = s ? &s->sb : &local;
  if (s) s->busy = 1;
  xfer_begin(h, s, b, __builtin_return_address(0), 1);
  if (s && s->wl_phase == WL_HEAD) ss__curl_wl = s;
  in_curl++;
  CURLcode rc = real(h);
  SS_SAVE_ERRNO({
    ss__curl_wl = NULL;
    in_curl--;
    if (s) uninject(h, s);
    xfer_end(h, s, b, 1, rc);
    if (s) s->busy = 0;
  });
  return rc;
}

/* ---- multi interface ---- */
static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
  hslot *s = clientp;
  if (s->busy == 2) sticky_set(&s->ctx);
  if (s->app_open) return s->app_open(s->app_open_data, purpose, a);
  return ss__socket(a->family, a->socktype, a->protocol);
}

static int resolver_cb(void *resolver_state, void *reserved, void *userdata) {
  hslot *s = userdata;
  if (s->busy == 2) sticky_set(&s->ctx);
  if (s->app_rs) return s->app_rs(resolver_state, reserved, s->app_rs_data);
  return 0;
}

static void hook_callbacks(CURL *h, hslot *s) {
  __typeof__(&curl_easy_setopt) set = real_curl_easy_setopt();
  if (set(h, CURLOPT_OPENSOCKETFUNCTION, open_cb) != CURLE_OK) return;
  set(h, CURLOPT_OPENSOCKETDATA, s);
  set(h, CURLOPT_RESOLVER_START_FUNCTION, resolver_cb);
  set(h, CURLOPT_RESOLVER_START_DATA, s);
  s->hooked_cbs = 1;
}

static void unhook_callbacks(CURL *h, hslot *s) {
  if (!s->hooked_cbs) return;
  __typeof__(&curl_easy_setopt) set = real_curl_easy_setopt();
  set(h, CURLOPT_OPENSOCKETFUNCTION, s->app_open);
  set(h, CURLOPT_OPENSOCKETDATA, s->app_open_data);
  set(h, CURLOPT_RESOLVER_START_FUNCTION, s->app_rs);
  set(h, CURLOPT_RESOLVER_START_DATA, s->app_rs_data);
  s->hooked_cbs = 0;
}

/* Ends a multi transfer's span: curl's state is set back to the app's first. */
static void multi_finish(CURL *h, hslot *s, int rc_known, CURLcode rc) {
  SS_SAVE_ERRNO({
    uninject(h, s);
    unhook_callbacks(h, s);
    s->busy = 0;
    xfer_end(h, s, &s->sb, rc_known, rc);
  });
}

SS_EXPORT CURLMcode curl_multi_add_handle(CURLM *m, CURL *h) {
  __typeof__(&curl_multi_add_handle) real = real_curl_multi_add_handle();
  if (real == NULL) return CURLM_INTERNAL_ERROR;
  if (h == NULL || in_curl || !ss__active(SS_HOOK_LIBCURL)) return real(m, h);
  hslot *s = slot_get(h);
  if (s == NULL || s->busy) return real(m, h);
  xfer_begin(h, s, &s->sb, __builtin_return_address(0), 0);
  ss__span_pop(&s->sb); /* the transfer runs later, inside other calls */
  if (s->adopted) ss__ctx_pop(s->adopt_token);
  hook_callbacks(h, s);
  s->busy = 2;
  CURLMcode rc = real(m, h);
  s->adopted = 0; /* popped above */
  if (rc != CURLM_OK) { /* not added: no transfer, no span */
    SS_SAVE_ERRNO({
      uninject(h, s);
      unhook_callbacks(h, s);
      s->busy = 0;
    });
  }
  return rc;
}

SS_EXPORT CURLMsg *curl_multi_info_read(CURLM *m, int *left) {
  __typeof__(&curl_multi_info_read) real = real_curl_multi_info_read();
  if (real == NULL) return NULL;
  CURLMsg *msg = real(m, left);
  if (msg && msg->msg == CURLMSG_DONE && ss__active(SS_HOOK_LIBCURL)) {
    hslot *s = slot_find(msg->easy_handle);
    if (s && s->busy == 2) multi_finish(msg->easy_handle, s, 1, msg->data.result);
  }
  return msg;
}

SS_EXPORT CURLMcode curl_multi_remove_handle(CURLM *m, CURL *h) {
  __typeof__(&curl_multi_remove_handle) real = real_curl_multi_remove_handle();
  if (real == NULL) return CURLM_INTERNAL_ERROR;
  if (ss__active(SS_HOOK_LIBCURL)) {
    hslot *s = slot_find(h);
    if (s && s->busy == 2) multi_finish(h, s, 0, CURLE_OK);
  }
  return real(m, h);
}

/* The calls in which multi transfers make progress: the callbacks' context is cleared
 * when they return. */
#define MULTI_RUN(call)                                       \
  in_curl++;                                                  \
  CURLMcode rc = call;                                        \
  SS_SAVE_ERRNO(if (--in_curl == 0) sticky_clear());          \
  return rc;

SS_EXPORT CURLMcode curl_multi_perform(CURLM *m, int *running) {
  __typeof__(&curl_multi_perform) real = real_curl_multi_perform();
  if (real == NULL) return CURLM_INTERNAL_ERROR;
  MULTI_RUN(real(m, running))
}

SS_EXPORT CURLMcode curl_multi_socket_action(CURLM *m, curl_socket_t fd, int ev, int *running) {
  __typeof__(&curl_multi_socket_action) real = real_curl_multi_socket_action();
  if (real == NULL) return CURLM_INTERNAL_ERROR;
  MULTI_RUN(real(m, fd, ev, running))
}

SS_EXPORT CURLMcode curl_multi_socket_all(CURLM *m, int *running) {
  __typeof__(&curl_multi_socket_all) real = real_curl_multi_socket_all();
  if (real == NULL) return CURLM_INTERNAL_ERROR;
  MULTI_RUN(real(m, running))
}

/* ---- handle lifetime ---- */
static void dup_state(CURL *h, CURL *d);

SS_EXPORT CURL *curl_easy_duphandle(CURL *h) {
  __typeof__(&curl_easy_duphandle) real = real_curl_easy_duphandle();
  if (real == NULL) return NULL;
  CURL *d = real(h);
  if (d == NULL || !ss__active(SS_HOOK_LIBCURL)) return d;
  SS_SAVE_ERRNO(dup_state(h, d));
  return d;
}

/* The duplicate of h, d, starts with the app's view of h's options. */
static void dup_state(CURL *h, CURL *d) {
  hslot *s = slot_find(h), *t = s ? slot_get(d) : NULL;
  if (t) {
    /* The copy got curl's current options: the app's, except where ours stood in. */
    t->app_headers = s->app_headers;
    t->app_open = s->app_open;
    t->app_open_data = s->app_open_data;
    t->app_rs = s->app_rs;
    t->app_rs_data = s->app_rs_data;
    t->method = s->method;
    t->nobody = s->nobody;
    t->custom_len = s->custom_len;
    memcpy(t->custom, s->custom, s->custom_len);
    t->url_len = s->url_len;
    memcpy(t->url, s->url, s->url_len);
    t->u = s->u;
    t->http_version = s->http_version;
    t->list_only = s->list_only & (uint8_t)~LO_STICKY;
    t->injected = s->injected;
    t->hooked_cbs = s->hooked_cbs;
    uninject(d, t);
    unhook_callbacks(d, t);
  }
}

SS_EXPORT void curl_easy_reset(CURL *h) {
  __typeof__(&curl_easy_reset) real = real_curl_easy_reset();
  if (real == NULL) return;
  hslot *s = ss__active(SS_HOOK_LIBCURL) ? slot_find(h) : NULL;
  if (s && s->busy == 2) multi_finish(h, s, 0, CURLE_OK);
  real(h);
  if (s && !s->busy) {
    s->app_headers = NULL;
    s->app_open = NULL;
    s->app_open_data = NULL;
    s->app_rs = NULL;
    s->app_rs_data = NULL;
    s->method = M_GET;
    s->nobody = 0;
    s->custom_len = 0;
    track_url(s, NULL);
    s->http_version = 0;
    s->list_only &= LO_STICKY; /* its connections stay */
    s->injected = s->hooked_cbs = 0;
  }
}

SS_EXPORT void curl_easy_cleanup(CURL *h) {
  __typeof__(&curl_easy_cleanup) real = real_curl_easy_cleanup();
  if (real == NULL) return;
  hslot *s = ss__active(SS_HOOK_LIBCURL) ? slot_find(h) : NULL;
  if (s && s->busy == 2) multi_finish(h, s, 0, CURLE_OK);
  real(h);
  if (s && !s->busy) slot_free(s);
}
