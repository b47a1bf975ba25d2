/* spanshimd.h - internals of spanshimd, the collector: shared between its source files.
 *
 * spanshimd is single-threaded: one epoll loop (receiver.c) owns every connection, the
 * decoder's arena (decode.c) and the output file (sink.c), so nothing here is locked and
 * nothing here is thread-safe. Pointers handed between modules are borrowed for the
 * duration of the call unless a comment says otherwise.
 *
 *   main.c      options, signals, startup and the final counters line
 *   listen.c    the Unix socket (directory checks, stale socket, 0600) and the TCP port
 *   http.c      the HTTP/1.1 request-head parser and chunked body decoder
 *   inflate.c   Content-Encoding gzip and deflate, bounded by --max-body
 *   receiver.c  the event loop: connections, framing, routing, responses
 *   grpc.c      OTLP/gRPC over HTTP/2 (libnghttp2) on its own sockets, in the same loop
 *   pipeline.c  one request's way: decode → validate → enrich → sample → sinks
 *   decode.c    protobuf decoding with a bounded arena and a nesting-depth pre-check
 *   otlp_json_in.c  OTLP JSON bodies into the same messages, driven by the descriptors
 *   sink.c      JSON lines to the output file, and the /stats document
 *   upstream.c  OTLP/HTTP forwarding on a worker thread behind a bounded queue (the one
 *               module with a thread of its own; its header block says what is shared)
 *   sampler.c   tail sampling: traces held for a decision window, kept or dropped whole
 *   sqlsum.c    SQL enrichment of database spans with PostgreSQL's parser (libpg_query)
 *   metrics.c   span metrics (RED) and the Prometheus text exposition */
#ifndef SS_SPANSHIMD_H
#define SS_SPANSHIMD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "opentelemetry/proto/collector/metrics/v1/metrics_service.pb-c.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb-c.h"
#include "tools/common/arena.h"
#include "tools/common/beside.h"
#include "tools/common/buf.h"
#include "tools/common/otlp_json.h"

typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest ss__traces_req;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ss__logs_req;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest ss__metrics_req;

#define SS_DEFAULT_OUT "spanshim-traces.jsonl"
#define SS_DEFAULT_MAX_LINE (1u << 20)  /* the Collector otlpjsonfile receiver's default */

/* The signals, each with its own output file. */
enum { SS_SIG_TRACES = 0, SS_SIG_LOGS = 1, SS_SIG_METRICS = 2, SS_SIG_N = 3 };
#define SS_DEFAULT_MAX_BODY (16u << 20)
#define SS_MAX_HEAD 16384         /* request line + headers */
#define SS_MAX_HEADERS 100
#define SS_MAX_CONNS 4096

typedef struct ss__opts {
  char socket_path[108];          /* sun_path size */
  const char *out_path;            /* traces */
  const char *logs_out, *metrics_out;  /* default: beside out_path (ss__beside) */
  size_t max_line;                /* longest line written, '\n' included */
  const char *listen;             /* "127.0.0.1:4318" or NULL */
  int truncate;
  size_t max_body;
  const char *metrics;            /* "127.0.0.1:9464" or NULL */
  int file;                       /* write the JSON lines file */
  uint32_t allow_uids[32];        /* --allow-uid, besides our own uid and root */
  size_t n_allow_uids;
  uint32_t allow_gids[32];        /* --allow-group: peers with this primary or extra group */
  size_t n_allow_gids;
  const char *grpc_listen;        /* --grpc-listen "127.0.0.1:4317" or NULL */
  const char *grpc_socket;        /* --grpc-socket PATH or NULL */
  char listen_token[1024];        /* --listen-token FILE's token: "" none */
  size_t listen_token_len;
  uint64_t header_timeout_ms;     /* a request head must be complete this long after its
                                     first byte */
  uint64_t body_timeout_ms;       /* ... and its body this long after the head */
  uint64_t idle_timeout_ms;       /* a connection with nothing in progress is closed */
  size_t max_conns;               /* connections open at most (fd limit allowing) */
  size_t max_conns_per_peer;      /* per uid (Unix socket) or address (TCP) */
  size_t max_buffered;            /* request bytes held across connections, besides
                                     each peer's first SS_FREE_BUFFER */
  size_t max_buffered_peer;       /* ... by one peer: half, but one largest request */
  int no_tree;                    /* --no-tree: admit by credentials alone (tree.c) */
  int tree_root;                  /* --tree-root PID, or 0 */
  const char *tree_file;          /* --tree-file FILE, or NULL */
} ss__opts;

#define SS_DEFAULT_HEADER_TIMEOUT_MS 10000
#define SS_DEFAULT_BODY_TIMEOUT_MS 30000
#define SS_DEFAULT_IDLE_TIMEOUT_MS 120000
#define SS_FREE_BUFFER (256u << 10)   /* input a peer's connections may buffer without
                                         asking, besides 16 KiB each */
#define SS_RESERVE_FEW 8              /* peers holding fewer may use the last 1/8 of slots */

/* Everything /stats and the exit line report. Monotonic counters unless noted. */
typedef struct ss__stats {
  uint64_t requests;              /* complete request heads parsed (any outcome) */
  uint64_t grpc_requests;         /* ... of which gRPC calls */
  uint64_t traces_requests, logs_requests, stats_requests;
  uint64_t spans_received;
  uint64_t logs_received;         /* log records, less libspanshim's drop reports */
  uint64_t metrics_requests, data_points_received;  /* /v1/metrics */
  uint64_t spans_rejected, logs_rejected;  /* malformed ids: partial_success */
  /* Spans and exception log records in requests of libspanshim that were refused (413,
   * 503, ...: it never sends those again) and counted here, the answer saying so
   * (Spanshim-Refused-Counted): spans_received + shim_spans_dropped + spans_refused =
   * spans produced. */
  uint64_t spans_refused, logs_refused;
  /* Spans the senders produced but dropped, as their `spanshim.spans.dropped` log records
   * report them (libspanshim sends one after a drop): spans_received +
   * shim_spans_dropped = spans produced by every traced process. */
  uint64_t shim_spans_dropped;
  /* The same for exception log records (`spanshim.logs.dropped` records): logs_received +
   * shim_logs_dropped = log records produced; the reports themselves (records of either
   * event) are counted in shim_drop_reports, not in logs_received. */
  uint64_t shim_logs_dropped, shim_drop_reports;
  uint64_t rej_bad_http;          /* 400 malformed HTTP (connection closed) */
  uint64_t rej_header_too_large;  /* 431 */
  uint64_t rej_not_found;         /* 404 */
  uint64_t rej_method;            /* 405 */
  uint64_t rej_length_required;   /* 411 (no Content-Length, or chunked) */
  uint64_t rej_too_large;         /* 413 */
  uint64_t rej_content_type;      /* 415 */
  uint64_t rej_bad_protobuf;      /* 400 on a well-formed HTTP request */
  uint64_t rej_unavailable;       /* 503 after a write error */
  uint64_t rej_unauthorized;      /* 401: TCP request without the --listen-token */
  uint64_t lines_written, bytes_written, write_errors;
  uint64_t lines_oversize;        /* one item alone longer than --max-line */
  uint64_t connections;           /* accepted and allowed */
  uint64_t connections_open;      /* gauge */
  uint64_t connections_refused;   /* over SS_MAX_CONNS */
  uint64_t peers_refused;         /* SO_PEERCRED: another uid, not of the traced tree */
  uint64_t tree_admitted;         /* Unix connections of another uid admitted as part of
                                     the traced tree (tree.c) */
  uint64_t tree_processes;        /* gauge: processes the traced tree remembers */
  uint64_t tree_full;             /* processes not remembered: the table was full */
  uint64_t tree_token_admitted;   /* Unix connections admitted by the tree's token (the
                                     process may have ended before they were accepted) */
  uint64_t peer_limited;          /* refused: the peer holds its share of connections */
  uint64_t timeouts;              /* closed by --header/--body/--idle-timeout, or cut at stop */
  uint64_t buffer_waits;          /* reads paused: --max-buffered reached */
  uint64_t sql_spans;             /* PostgreSQL spans with db.query.text seen */
  uint64_t sql_unparsed;          /* ... whose text PostgreSQL's parser refused */
  uint64_t sql_rescrubbed;        /* ... in which the parser still found a literal */
  uint64_t reopens;               /* output file reopened on SIGHUP */
} ss__stats;

extern ss__stats ss__stats_g;

/* ---- upstream.c ---- */
#define SS_UP_MAX_HEADERS 32
typedef struct ss__upstream_cfg {
  char traces_url[1024];          /* "" : traces are not forwarded */
  char logs_url[1024];
  char metrics_url[1024];         /* "": metrics are not forwarded */
  char *headers[SS_UP_MAX_HEADERS]; /* "Name: value", malloc'd; freed by ss__upstream_stop */
  size_t n_headers;
  char ca_file[512];              /* OTEL_EXPORTER_OTLP_CERTIFICATE: trusted CA bundle */
  int gzip;                       /* 1 gzip, 0 none, -1 not set yet (env decides) */
  uint64_t timeout_ms;            /* per request */
  size_t queue_bytes;             /* bound on bodies waiting */
  uint64_t retry_initial_ms, retry_max_ms, retry_max_elapsed_ms;
} ss__upstream_cfg;

/* Written by the worker (and the receiver for drops), read by anyone: relaxed atomics. */
typedef struct ss__upstream_stats {
  _Atomic uint64_t exported_requests, exported_items;  /* items: spans or log records */
  _Atomic uint64_t dropped_requests, dropped_items;    /* queue full at enqueue */
  _Atomic uint64_t failed_items;      /* refused (4xx), or given up on after retrying */
  _Atomic uint64_t rejected_items;    /* partial_success.rejected_* from the upstream */
  _Atomic uint64_t retries, transport_errors, http_errors;
  _Atomic uint64_t queued_bytes, queued_items;         /* gauges */
  _Atomic uint64_t latency_ms_sum, latency_samples, latency_ms_max;  /* enqueue → 2xx */
} ss__upstream_stats;
extern ss__upstream_stats ss__up_stats_g;

/* Fills the endpoint part of c from --otlp-endpoint (a base URL; wins) or the
 * OTEL_EXPORTER_OTLP_{,TRACES_,LOGS_}ENDPOINT variables, and headers, timeout and
 * compression from OTEL_EXPORTER_OTLP_{HEADERS,TIMEOUT,COMPRESSION}. Returns 1 when an
 * upstream is configured, 0 when none is, -1 for an unusable endpoint (printed). */
int ss__upstream_config(ss__upstream_cfg *c, const char *flag_endpoint,
                        const char *(*env)(const char *));
/* Adds "k=v,k2=v2" (values percent-decoded) to c's headers; -1 if some were malformed. */
int ss__upstream_add_headers(ss__upstream_cfg *c, const char *list);
/* Starts the worker thread; 0 or -1. The cfg is copied. */
int ss__upstream_start(const ss__upstream_cfg *c);
/* Copies a serialized Export{Trace,Logs,Metrics}ServiceRequest carrying n items (spans,
 * log records, data points) into the queue of signal `logs` (SS_SIG_*).
 * Never blocks on the network; 0, or -ENOSPC when the queue is full (dropped, counted).
 * A no-op returning 0 when no upstream was started. Receiver thread only. */
int ss__upstream_enqueue(int logs, const void *body, size_t len, uint64_t n);
/* Stops taking bodies, lets the worker deliver what is queued for up to grace_ms, then
 * drops the rest (counted as failed) and joins it. */
void ss__upstream_stop(uint64_t grace_ms);
int ss__upstream_enabled(void);

/* ---- listen.c ---- */
/* Every listener's backlog (listen(2)); at SIGTERM each listener is taken from at most
 * SS_STOP_ACCEPTS times (whatever waited in its queue, and a bound against a peer that
 * keeps connecting). */
#define SS_LISTEN_BACKLOG 512
#define SS_STOP_ACCEPTS (2 * SS_LISTEN_BACKLOG)
/* Prepares the socket's directory (creating it 0700, or refusing one that is not ours or
 * is group/other-writable), removes a stale socket (refusing if a live daemon answers)
 * and listens with mode 0600 (shared: 0666 in a 0711 directory, for --allow-uid/group
 * and for the traced tree, SO_PEERCRED and tree.c then choosing the peers). A socket
 * passed by `spanshim run` (LISTEN_FDS) is taken as it is (shared: made 0666 in a 0711
 * directory when we may; a note on stderr otherwise). Returns the fd, or -1 after
 * printing why. */
int ss__listen_unix(const char *path, int shared);
/* Listens on a loopback "HOST:PORT" (127.0.0.1, ::1 or localhost); the bound address is
 * written to `bound` for the startup line. Returns the fd, or -1 after printing why. */
int ss__listen_tcp(const char *hostport, char *bound, size_t n);
/* At stop, takes what waits in a receiver's listener queues (unix_lfd, tcp_lfd; -1 for
 * none): up to SS_STOP_ACCEPTS / 64 rounds of take(lfd, is_unix) per listener (take
 * accepts up to 64 and returns 0 when the queue is empty or it has paused for want of
 * fds, setting *paused_until). While paused and until_ms (ss__mono_ms) has not come,
 * settle() frees fds (lets idle connections go, serves events for up to 10 ms) and the
 * queues are taken again. Clears *paused_until. Main thread only. */
void ss__listen_take_queues(int unix_lfd, int tcp_lfd, uint64_t *paused_until,
                            uint64_t until_ms, int (*take)(int lfd, int is_unix),
                            void (*settle)(void));
/* Unlinks the socket at exit if it is still the one we created. */
void ss__unlisten_unix(const char *path);
/* Whether the peer on an accepted Unix connection may send to us (SO_PEERCRED): our
 * uid, root, --allow-uid, or --allow-group as its primary or (SO_PEERGROUPS)
 * supplementary group. 1 or 0 (0 too when the credentials cannot be read). */
int ss__peer_allowed(const ss__opts *o, int fd);

/* ---- tree.c: the traced tree (see there for the rule) ---- */
/* A process: its pid in our pid namespace and its start time (/proc/PID/stat field 22);
 * pid 0: not known. */
typedef struct ss__proc_id {
  int pid;
  uint64_t start;
  uint64_t ino;     /* its pidfd's inode on pidfs: one per process for the boot, also
                       once it has ended (0: not known) */
} ss__proc_id;
/* Whether the peer on an accepted Unix connection may send: 1 admitted by its
 * credentials (ss__peer_allowed), 2 as part of the traced tree (then remembered itself,
 * counted in tree_admitted), 0 not by those (*why says why: the caller refuses it,
 * counting peers_refused and saying so with ss__say_refused, or asks for the tree's
 * token). *id gets the peer's identity when it could be read (pid 0 otherwise), for
 * ss__tree_remember. */
int ss__peer_admit(const ss__opts *o, int fd, ss__proc_id *id, const char **why);
/* Says on stderr that the peer on fd was refused and why (its pid and uid as of
 * connect), for the first 10 refusals; later ones are only counted (peers_refused). */
void ss__say_refused(int fd, const char *why);
/* The peer with identity id, admitted by its credentials, sent an OTLP request: it and
 * its descendants are the traced tree from now on (a full table: counted in tree_full). */
void ss__tree_remember(const ss__proc_id *id);
/* The monotonic milliseconds the full table's once-a-second sweep goes by: fn, or
 * ss__mono_ms again when NULL (a unit test's clock, so that "within the second" does
 * not depend on how fast the machine is). Receiver thread only. */
void ss__tree_clock(uint64_t (*fn)(void));
/* --tree-root PID: that process and its descendants are the traced tree. 0, or -1 when
 * there is no such process. */
int ss__tree_add_root(int pid);
/* --no-tree: peers are admitted by their credentials alone. */
void ss__tree_off(void);
/* The tree's token (see tree.c): made by ss__tree_token_init at start (0, or -1 when no
 * random bytes could be had: then there is none); ss__tree_token is it in hex
 * (SS_TREE_TOKEN_LEN characters), or NULL (none, or --no-tree); ss__tree_token_ok says in
 * constant time whether v[0..n) is it. */
#define SS_TREE_TOKEN_LEN 32
int ss__tree_token_init(void);
const char *ss__tree_token(void);
int ss__tree_token_ok(const char *v, size_t n);
/* --tree-file: the tree across restarts. ss__tree_load remembers the processes FILE names
 * that still run (same start time, same boot): how many, 0 for a missing file, or -1
 * after printing why it was not read (not a regular file of ours that only we may
 * write). ss__tree_save writes the table (a temporary file renamed over FILE, 0600): 0
 * or -1. */
int ss__tree_load(const char *path);
int ss__tree_save(const char *path);
/* Reads /proc/PID/stat: *ppid (may be NULL) and *start (field 22). 0 or -1. */
int ss__proc_stat(int pid, int *ppid, uint64_t *start);

/* Who is at the other end of an accepted connection, for per-peer limits: a uid on a
 * Unix socket; on TCP (loopback only, where the client picks its source address) every
 * client is the same one peer. Compared with memcmp (ss__peer_of zeroes it first). */
typedef struct ss__peer {
  int kind;                       /* 0 unknown (or the metrics port), 1 uid, 2 TCP */
  uint32_t uid;
} ss__peer;
/* Fills *who for an accepted fd (SO_PEERCRED, getpeername); kind 0 when it cannot. */
void ss__peer_of(int fd, int is_unix, ss__peer *who);
/* How many connections a peer may hold in a table of max_conns with n_conns open: at most
 * per_peer, and only SS_RESERVE_FEW once the table is 7/8 full (the last eighth is kept
 * for peers with few connections, so one client's thousands leave others room). */
size_t ss__peer_cap(size_t n_conns, size_t max_conns, size_t per_peer);

/* ---- receiver.c: the budget of buffered request bytes (HTTP and gRPC together) ----
 * Bytes a connection (HTTP) or a call's body (gRPC) holds beyond its free allowance are
 * charged to one budget of --max-buffered. ss__buffer_charge moves *charged to `want`:
 * 0, or -1 (nothing changed) when the budget has no room for the growth; giving back
 * wakes HTTP connections paused for memory. Receiver thread only. */
int ss__buffer_charge(size_t *charged, size_t want);

/* ---- http.c ---- */
enum { SS_CONN_DEFAULT = 0, SS_CONN_CLOSE = 1, SS_CONN_KEEP_ALIVE = 2 };
enum { SS_CE_IDENTITY = 0, SS_CE_GZIP = 1, SS_CE_DEFLATE = 2, SS_CE_UNSUPPORTED = 3 };

typedef struct ss__http_req {
  const char *method;             /* these point into the parsed buffer */
  size_t method_len;
  const char *path;               /* target without the query string */
  size_t path_len;
  int minor;                      /* HTTP/1.minor */
  int64_t content_length;         /* -1: none */
  int chunked;                    /* Transfer-Encoding: chunked (the only coding taken) */
  int content_encoding;           /* SS_CE_*: unsupported for unknown or stacked codings */
  int connection;                 /* SS_CONN_* from the Connection header */
  int expect_continue;
  const char *ctype;              /* media type, parameters stripped; NULL if absent */
  size_t ctype_len;
  const char *authorization;      /* Authorization value; NULL if absent */
  size_t authorization_len;
  int authorizations;             /* how many Authorization headers came */
  int from_shim;                  /* User-Agent: spanshim/...: libspanshim, which never
                                     sends a request again (it counts what it is refused) */
  const char *tree_token;         /* Spanshim-Tree value; NULL if absent */
  size_t tree_token_len;
  size_t head_len;                /* bytes of request line + headers + blank line */
} ss__http_req;

/* Parses a request head at buf[0..len). Returns 1 (complete, *r filled), 0 (need more
 * bytes), or the HTTP status to answer before closing: 400 (malformed, or framing RFC
 * 9112 6.1/6.3 refuses: Transfer-Encoding with Content-Length, in HTTP/1.0, or not ending
 * in chunked), 431 (head longer than SS_MAX_HEAD or more than SS_MAX_HEADERS headers),
 * 501 (a transfer coding besides chunked; *r is filled). `*scan` carries, between calls
 * on the same growing buffer, how far the blank-line search has got (start at 0). */
int ss__http_parse(const char *buf, size_t len, size_t *scan, ss__http_req *r);

#define SS_MAX_CHUNK_LINE 4096    /* chunk size line with its extensions */
/* A chunked body being decoded; zero it to start. */
typedef struct ss__chunked {
  int state;
  uint64_t left;                  /* data bytes still to come in the current chunk */
  size_t out;                     /* decoded bytes, at buf[0..out) */
  size_t pos;                     /* raw bytes consumed (>= out) */
  size_t trailer;                 /* bytes of trailer fields so far */
  int trailers;                   /* trailer fields so far */
} ss__chunked;
/* Decodes a chunked body in place, as it arrives: buf[0..len) is the raw body so far
 * (the same buffer growing between calls; the decoder only writes below c->pos), and
 * the decoded bytes are moved down to buf[0..c->out). Chunk extensions are checked and
 * ignored, trailer fields likewise. Returns 1 once the last chunk and the trailer
 * section are complete (c->pos is then the raw length: bytes after it are the next
 * request's), 0 for more bytes, 400 (malformed), 413 (the decoded size would pass max;
 * known from a chunk's size line, before its data) or 431 (trailer section longer than
 * SS_MAX_HEAD or with more than SS_MAX_HEADERS fields). */
int ss__chunked_decode(ss__chunked *c, char *buf, size_t len, size_t max);

/* Whether an Authorization value is "Bearer <o's --listen-token>" (the scheme in any
 * case, RFC 9110 11.1), compared in constant time for a given token length. */
int ss__bearer_ok(const ss__opts *o, const char *v, size_t n);

/* ---- inflate.c ---- */
/* Decodes a body in Content-Encoding SS_CE_GZIP (members one after another, RFC 1952)
 * or SS_CE_DEFLATE (zlib, RFC 1950; raw deflate taken too, as senders get it wrong)
 * into *out, a malloc'd buffer of *cap bytes reused between calls (grown as needed, to
 * at most max + 1). Stops inflating as soon as more than max bytes come out, so a small
 * bomb costs max bytes at most. Returns 200 (*out_len bytes), 400 (not that coding,
 * truncated or followed by other bytes), 413 (decodes to more than max), 503 (out of
 * memory). */
int ss__inflate(int coding, const uint8_t *in, size_t n, size_t max, uint8_t **out,
                size_t *cap, size_t *out_len);
/* Case-insensitive comparison of s[0..n) with the NUL-terminated lit. */
int ss__http_ieq(const char *s, size_t n, const char *lit);

/* ---- decode.c ---- */
/* Decodes a body into a request that stays valid until the next ss__decode_* call or
 * ss__decode_release. Returns NULL for bytes that are not a valid message of that type
 * (or nest deeper than our limit); *too_big is set when decoding would need more memory
 * than the budget for a body of this size. */
ss__traces_req *ss__decode_traces(const uint8_t *p, size_t len, int *too_big);
ss__logs_req *ss__decode_logs(const uint8_t *p, size_t len, int *too_big);
/* The same from OTLP JSON (otlp_json_in.c), budget ss__json_budget(len); on failure
 * err[0..errn) says why and where. Metrics take either format (SS_FMT_*). Every budget
 * is at most 32 MiB, whatever the body. */
ss__metrics_req *ss__decode_metrics(int fmt, const uint8_t *p, size_t len, int *too_big,
                                    char *err, size_t errn);
ss__traces_req *ss__decode_traces_json(const uint8_t *p, size_t len, int *too_big,
                                       char *err, size_t errn);
ss__logs_req *ss__decode_logs_json(const uint8_t *p, size_t len, int *too_big, char *err,
                                   size_t errn);
/* What OTLP JSON text of len bytes may decode to: 8 x len + 4 MiB, at most 32 MiB. */
size_t ss__json_budget(size_t len);
/* Decodes an OTLP JSON traces (logs when `logs`) request p[0..len) in slices of about
 * `max` bytes of its text (ss__otlp_json_slices), calling fn(request, arg) for each in
 * order; the request is valid until fn returns. Returns 0, 400 (err says why), 413 (a
 * slice over its budget), or fn's non-zero return, which stops it. */
int ss__decode_json_slices(int logs, const uint8_t *p, size_t len, size_t max,
                           int (*fn)(void *msg, void *arg), void *arg, char *err, size_t errn);
/* ---- otlp_json_in.c ---- */
/* Decodes an OTLP JSON document of message type md from p[0..len) into messages
 * allocated from a (under its budget). Returns the message, or NULL with why and where
 * in err[0..errn) (arena `over` set when it was the budget). Unknown members are
 * skipped; ids that are not hex come back one byte long (see the file's header). */
void *ss__otlp_json_decode(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t len,
                           ss__arena *a, char *err, size_t errn);
/* The same for a big request, in slices: whole resources gathered while their text fits
 * max bytes, a bigger resource split into its scopes under copies of its other fields,
 * a bigger scope into its items likewise (so memory follows a slice, not the body).
 * Each slice is decoded into a (reset per slice, budget ss__json_budget of its text) and
 * given to fn(request, arg), valid until fn returns; slices come in document order.
 * Returns 0, 400 (err says why and where), 413 (a slice over its budget), or fn's
 * non-zero return, which stops it. A list given twice in one object has both delivered
 * (the whole-request decoder keeps the last). Receiver thread only (static arenas). */
int ss__otlp_json_slices(const ProtobufCMessageDescriptor *md, const uint8_t *p, size_t len,
                         size_t max, ss__arena *a, int (*fn)(void *msg, void *arg), void *arg,
                         char *err, size_t errn);
/* Frees the decoder's memory (at exit; in between it is reused). */
void ss__decode_release(void);
/* Cuts an Export{Trace,Logs}ServiceRequest body (both have the same shape: resources →
 * scopes → items) into valid requests of the same type of about `max` bytes or fewer,
 * and calls fn on each, in order: whole resource entries where they fit; else a
 * resource's scope entries under a copy of its other fields; else a scope's items
 * (spans, log records) under copies of both (an item larger than max is a piece of its
 * own). Together the pieces hold every item once, in order; other top-level fields are
 * dropped (the request type has none). Stops at the first fn result that is not 0 and
 * returns it; -1 for wire data malformed at those levels. Pieces are borrowed for the
 * call; about 4 * max bytes of scratch memory, freed before returning. */
int ss__slice_request(const uint8_t *p, size_t len, size_t max,
                      int (*fn)(const uint8_t *, size_t, void *), void *arg);
/* One protobuf field, as read by ss__wire_next. */
typedef struct ss__wire_field {
  unsigned no;
  int wt;                             /* wire type: 0 varint, 1 64-bit, 2 bytes, 5 32-bit */
  const uint8_t *start, *data, *end;  /* the whole field; its payload; its end */
} ss__wire_field;
/* The next field of [*p, end) into *f (advancing *p): 1, 0 at the end, -1 when
 * malformed (groups included). */
int ss__wire_next(const uint8_t **p, const uint8_t *end, ss__wire_field *f);
/* Appends a length-delimited field's tag and length (its payload is the caller's). */
void ss__wire_put_head(ss__buf *b, unsigned no, size_t len);
/* Bodies handed to protobuf-c for decoding since start (each request's once). */
extern uint64_t ss__decode_count;
/* Fills *pa with a protobuf-c allocator that takes its memory from arena a (whose reset
 * then frees what was unpacked); frees are no-ops. */
void ss__pb_allocator(ProtobufCAllocator *pa, ss__arena *a);

/* ---- sink.c ---- */
/* Opens a file spanshimd writes (outputs, --log-file, --pid-file) for appending, mode
 * 0600 when created, never through a symbolic link at its last component (O_NOFOLLOW).
 * In a directory other users can add files to (not ours or root's, or group/world
 * writable: /tmp), a new file is created with O_EXCL and an existing one must be a
 * regular file of ours with one link, else it is refused. `truncate` empties it after
 * those checks. Returns the fd, or -errno with a reason in why[0..whyn). */
int ss__open_output(const char *path, int truncate, char *why, size_t whyn);
/* Opens signal sig's output file (ss__open_output; truncated when asked). Signals with
 * the same path share one open file; open them in signal order. 0, or -1 after printing
 * why. A signal with no file opened is not written (its sink call returns 0). */
int ss__sink_open(int sig, const char *path, int truncate);
/* Lines longer than n bytes ('\n' included) are split (0: SS_DEFAULT_MAX_LINE). */
void ss__sink_max_line(size_t n);
/* Whether a line of n bytes ('\n' included) is written whole. */
int ss__sink_line_fits(size_t n);
/* Writes the request as OTLP JSON lines (one, or several under the line bound) into its
 * signal's file. 0, or -errno (write failed: nothing of the lines is left in the file
 * when it could be undone). Counts into ss__stats_g. */
int ss__sink_traces(const ss__traces_req *req);
/* Writes a traces request already written as one JSON line (json[0..n), '\n' included,
 * by ss__wire_traces_json from the protobuf body[0..len)); a line over the bound is
 * split as ss__sink_traces does, from the body decoded. 0 or -errno, as above. */
int ss__sink_traces_line(const char *json, size_t n, const uint8_t *body, size_t len);
int ss__sink_logs(const ss__logs_req *req);
int ss__sink_metrics(const ss__metrics_req *req);
/* Reopens the output files by their paths (SIGHUP, after logrotate moved them); on
 * failure the old file stays in use. 0 or -1. */
int ss__sink_reopen(void);
void ss__sink_close(void);
/* The /stats JSON document. */
void ss__stats_json(ss__buf *b);
/* The one-line summary printed at exit. */
void ss__stats_line(ss__buf *b);

/* ---- sampler.c ---- */
typedef struct ss__sampler_cfg {
  double ratio;                   /* share of traces kept by trace id, 0..1 */
  uint64_t slow_ns;               /* keep traces with a span at least this long; 0 off */
  uint64_t wait_ms;               /* decision window, from a trace's first held span */
  size_t max_bytes;               /* bound on held spans */
  size_t cache_traces;            /* decisions remembered (rounded up to a power of 2) */
} ss__sampler_cfg;

typedef struct ss__sampler_stats {
  uint64_t kept_spans, dropped_spans, evicted_spans;  /* evicted: dropped for memory */
  uint64_t kept_traces_ratio, kept_traces_error, kept_traces_slow, dropped_traces;
  uint64_t held_spans, held_bytes;                    /* gauges */
} ss__sampler_stats;
extern ss__sampler_stats ss__samp_stats_g;

/* Starts sampling with c (copied); 0, or -1 when out of memory. Again after
 * ss__sampler_free to start over (the stats are not cleared). */
int ss__sampler_init(const ss__sampler_cfg *c);
int ss__sampler_enabled(void);
/* Decides every span of q and returns what to send on now, decoded:
 *  - q itself, when every span of it passes and no held trace was released;
 *  - else a request the sampler assembled (possibly with no spans): q's kept spans, the
 *    very Span structs of q, in order, and before the span that decided it "keep", the
 *    held spans of a trace released by it, unpacked; resource and scope fields are
 *    shallow copies of q's (or of the held spans' own);
 *  - NULL when memory ran out (what would have been sent is lost).
 * The assembled request is owned by the sampler and valid until the next call (and, for
 * the parts that are q's, as long as q). Spans held are copied (serialized), so nothing
 * of q is referenced after the call by the sampler itself. */
const ss__traces_req *ss__sampler_process(const ss__traces_req *q, uint64_t now_ms);
/* Drops traces whose window has ended; returns ms until the next one ends, or -1. */
int64_t ss__sampler_tick(uint64_t now_ms);
/* Drops whatever is still held (counted) and frees everything. */
void ss__sampler_free(void);

/* ---- sqlsum.c ---- */
/* Adds db.query.summary etc. to q's PostgreSQL spans and renames them (see sqlsum.c).
 * What it adds lives until the next call. Returns 1 when some span changed. */
int ss__sqlsum_enrich(ss__traces_req *q);
/* The same on an ExportTraceServiceRequest's protobuf bytes p[0..len): the request with
 * its PostgreSQL spans enriched is written to out (replacing what it held), with the
 * spans' other fields and attributes as they were, replaced attributes in their place,
 * added ones last, as ss__sqlsum_enrich leaves them. 1 (out holds it), 0 (no span to
 * change; out is not meaningful), -1 (wire data malformed at the levels walked, or the
 * request refused by ss__wire_traces_check when a span changed). Counts
 * sql_* in ss__stats_g like ss__sqlsum_enrich. */
int ss__sqlsum_wire(const uint8_t *p, size_t len, ss__buf *out);

/* ss__strv, ss__sql_in and ss__sql_edit: tools/common/otlp_json.h (the wire JSON writer
 * applies edits as it writes). */
/* Decides the edit for one span (parsing its statement, or from the cache); returns
 * e->changed. Counts sql_spans, sql_unparsed, sql_rescrubbed. */
int ss__sqlsum_plan(const ss__sql_in *in, ss__sql_edit *e);

/* dwarf.c: appends FILE:LINE to exception stack frames whose module (matched by build id)
 * has debug info here. Return how many stack traces changed. */
int ss__dwarf_annotate_traces(ss__traces_req *q);
int ss__dwarf_annotate_logs(ss__logs_req *q);
void ss__dwarf_free(void);
void ss__sqlsum_disable(void);
void ss__sqlsum_free(void);

/* ---- metrics.c ---- */
#define SS_METRICS_MAX_SERIES 10000
/* Allocates the series table (max series; 0: the default); 0 or -1. */
int ss__metrics_init(size_t max_series);
int ss__metrics_enabled(void);
/* Counts every span of q into its series. */
void ss__metrics_record(const ss__traces_req *q);
/* The Prometheus text exposition (format 0.0.4) of the span metrics and our counters. */
void ss__metrics_text(ss__buf *b);
void ss__metrics_free(void);

/* ---- main.c ---- */

/* ---- pipeline.c ---- */
/* A sink: where a request that came through the pipeline goes. Each callback gets the
 * request decoded and, when the sink wants_bytes, the same request as protobuf bytes
 * (the body as received if nothing changed it, else packed once for all sinks; NULL and
 * 0 otherwise), and its span or log record count. Returns 0, or -errno: the request then
 * earns 503 and the sinks after it do not see it (so a retry cannot duplicate it there).
 * Everything is borrowed for the call. */
typedef struct ss__sink {
  int (*traces)(void *ctx, const ss__traces_req *q, const uint8_t *body, size_t len,
                uint64_t n);
  int (*logs)(void *ctx, const ss__logs_req *q, const uint8_t *body, size_t len,
              uint64_t n);
  int wants_bytes;
  void *ctx;
  /* NULL: this sink takes no metrics */
  int (*metrics)(void *ctx, const ss__metrics_req *q, const uint8_t *body, size_t len,
                 uint64_t n);
  /* The same request with nothing to change in it, not decoded: its protobuf body as
   * received and that body as an OTLP JSON line (json[0..jn), '\n' included). When every
   * sink has this, requests that need no validation, enrichment, sampling or span
   * metrics come here instead of to `traces`, never unpacked. NULL: always `traces`. */
  int (*traces_wire)(void *ctx, const char *json, size_t jn, const uint8_t *body,
                     size_t len, uint64_t n);
  int wants_json;  /* traces_wire reads json; when no sink does, none is written (NULL, 0) */
} ss__sink;

#define SS_MAX_SINKS 4
/* Adds a sink (copied) after those already there; 0, or -1 when SS_MAX_SINKS are. */
int ss__pipeline_add_sink(const ss__sink *s);
void ss__pipeline_clear_sinks(void);
/* The collector's sinks, in this order: the JSON lines file (when `file`), then the
 * upstream queue (when an upstream is configured). Replaces any set before; 0 or -1. */
int ss__pipeline_default_sinks(int file);
/* The body formats an OTLP/HTTP request comes in (its Content-Type). */
enum { SS_FMT_PROTO = 0, SS_FMT_JSON = 1 };

/* What the last request's decode refused: the spans or log records taken out for
 * malformed ids (partial_success.rejected_*: n, and msg), or, when decoding failed, why
 * (msg; JSON bodies say where). Reset by every decode. */
typedef struct ss__rejected {
  uint64_t n;
  char msg[256];
} ss__rejected;
extern ss__rejected ss__pipeline_rejected;

/* One POST /v1/traces (or /v1/logs) body, borrowed for the call, through decode →
 * validate → enrich → sample → sinks. Returns the HTTP status it earns: 200 (also when
 * sampling holds or drops every span, or validation refused some or all of them: see
 * ss__pipeline_rejected), 400 (not a valid Export*ServiceRequest, or nested too deep),
 * 413 (decodes to more memory than the budget for its size), 503 (a sink failed, or out
 * of memory). Counts into ss__stats_g. The plain forms take protobuf. */
int ss__pipeline_traces(const uint8_t *body, size_t len, uint64_t now_ms);
int ss__pipeline_traces_fmt(int fmt, const uint8_t *body, size_t len, uint64_t now_ms);
int ss__pipeline_logs(const uint8_t *body, size_t len);
/* In two steps, so the receiver can answer an exception-records request as soon as
 * it is decoded and do the slow part (symbolizing stacks: DWARF, 100-300 ms cold) after
 * the answer, within a short-lived sender's exit budget (it sends them last). decode
 * returns the request (valid until the next decode; malformed items already taken out)
 * and *status 200, or NULL and *status 400/413; finish returns what the one-step call
 * would (200 or 503, counted in ss__stats_g) and must follow the decode of the same
 * request: `body` is the protobuf body as received, or NULL when it came as JSON.
 * A logs body over 1 MiB (either format) is decoded in slices: the request returned
 * then stands for all of it and must only be given to finish, while the decoded body
 * is still valid (finish decodes it again, slice by slice; traces do likewise in one
 * step). */
ss__traces_req *ss__pipeline_traces_decode(int fmt, const uint8_t *body, size_t len,
                                           int *status);
int ss__pipeline_traces_finish(ss__traces_req *q, const uint8_t *body, size_t len,
                               uint64_t now_ms);
ss__logs_req *ss__pipeline_logs_decode(const uint8_t *body, size_t len, int *status);
ss__logs_req *ss__pipeline_logs_decode_fmt(int fmt, const uint8_t *body, size_t len,
                                           int *status);
int ss__pipeline_logs_finish(ss__logs_req *q, const uint8_t *body, size_t len);
/* One POST /v1/metrics body: decoded (checked), then to the sinks that take metrics (its
 * own file, the upstream). 200, 400, 413 or 503 as above; no partial success. */
int ss__pipeline_metrics(int fmt, const uint8_t *body, size_t len);
/* Appends the Export{Trace,Logs}ServiceResponse for a request that earned 200, in fmt:
 * empty (protobuf) or {} (JSON) when everything was taken, else partial_success with
 * ss__pipeline_rejected's count and message. */
void ss__export_response(ss__buf *b, int logs, int fmt);
/* Whether log record r is one of libspanshim's drop reports (event name
 * spanshim.spans.dropped or spanshim.logs.dropped): 1, with the count it reports added to
 * *spans or *logs; else 0. */
int ss__shim_drop_report(const Opentelemetry__Proto__Logs__V1__LogRecord *r, uint64_t *spans,
                         uint64_t *logs);
/* Frees the pipeline's buffer and forgets the sinks (at exit). */
void ss__pipeline_free(void);

/* ---- itemcount.c: what a refused request held ----
 * Counts the spans (or log records) of an Export{Trace,Logs}ServiceRequest in protobuf as
 * its bytes go by, in pieces of any size, keeping none of it but a small log record (a
 * drop report is recognised, so what it says is counted as such): for a request refused
 * (413, 503, ...) or too big to keep (read past and discarded), so its items are counted
 * where a user reads them (spans_refused and logs_refused in /stats). Memory: the struct,
 * and SS_ITEM_REC_MAX bytes while a logs request is walked. Receiver thread only. */
#define SS_ITEM_REC_MAX 4096      /* log records up to this size are looked into */
typedef struct ss__item_count {
  int logs;                       /* an ExportLogsServiceRequest */
  int bad;                        /* not such a request: nothing it says counts */
  int depth;                      /* 0 the request, 1 a Resource*, 2 a Scope* */
  uint64_t pos;                   /* body bytes walked */
  uint64_t end[3];                /* where the message at each depth ends */
  uint64_t skip_to;               /* a field's payload being passed over ends here */
  uint8_t head[24];               /* a field's tag and length cut between two pieces */
  size_t head_len;
  uint8_t *rec;                   /* a small log record being gathered (malloc'd) */
  size_t rec_len, rec_want;
  uint64_t items;                 /* spans, or log records (drop reports included) */
  uint64_t reports, spans_dropped, logs_dropped;  /* what drop reports among them say */
} ss__item_count;
/* Starts a walk of a body of len bytes (logs: a logs request). */
void ss__item_count_begin(ss__item_count *c, int logs, uint64_t len);
/* Walks the next n bytes of the body. */
void ss__item_count_feed(ss__item_count *c, const uint8_t *p, size_t n);
/* After the last byte: 0 when the body was such a request whole (the counts hold), else
 * -1. Frees the walk's memory either way. */
int ss__item_count_end(ss__item_count *c);
/* Adds a finished walk's counts to the stats: spans_refused, or logs_refused less the
 * drop reports, which count as reports (shim_spans_dropped, ...) as when received. */
void ss__item_count_stats(const ss__item_count *c);

/* ---- receiver.c ---- */
/* Runs the loop until SIGTERM/SIGINT arrives on sigfd; returns 0. tcp_fd and metrics_fd
 * (the --metrics port: GET /metrics only) may be -1. */
int ss__receiver_run(const ss__opts *o, int unix_fd, int tcp_fd, int metrics_fd, int sigfd);

#endif
