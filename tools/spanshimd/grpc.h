/* grpc.h - spanshimd's OTLP/gRPC receiver (grpc.c).
 *
 * The OTLP/gRPC services on an HTTP/2 cleartext port (--grpc-listen, loopback only) and/or
 * a Unix socket (--grpc-socket, with the peer-credential rules of the HTTP socket):
 *   opentelemetry.proto.collector.trace.v1.TraceService/Export
 *   opentelemetry.proto.collector.logs.v1.LogsService/Export
 *   opentelemetry.proto.collector.metrics.v1.MetricsService/Export (as POST /v1/metrics)
 * Anything else is answered UNIMPLEMENTED (12). HTTP/2 is
 * libnghttp2's (one server session per connection, fed from our own non-blocking reads
 * and writes); what this module does is the gRPC part: the 5-byte Length-Prefixed-Message
 * framing, grpc-encoding gzip/deflate (inflate.c), statuses in grpc-status/grpc-message
 * trailers, and handing each request's message to the same pipeline (pipeline.c) that
 * HTTP requests go through.
 *
 * Bounds: a message at most --max-body bytes once decompressed (RESOURCE_EXHAUSTED past
 * it); SS_GRPC_MAX_STREAMS concurrent calls per connection and 1,024 per peer (a uid on
 * the Unix socket, an address on TCP; REFUSED_STREAM past it); SS_GRPC_MAX_CONNS
 * connections, a peer at most a quarter of them and only 8 once the table is 7/8 full
 * (ss__peer_cap); call bodies grow with the bytes received, and beyond 64 KiB per
 * connection draw on the --max-buffered budget shared with the HTTP listeners, one peer
 * at most half of it (UNAVAILABLE past it, which OTLP clients retry); the preface must
 * be complete within --header-timeout of its first byte, a call within --body-timeout of
 * its headers (else DEADLINE_EXCEEDED), and a TCP connection without calls is closed
 * after --idle-timeout (GOAWAY first; an idle peer on the Unix socket is kept); each
 * counted in `timeouts`. A connection refused at accept (a peer not admitted, the table
 * full, a peer over its share) is not closed unread: kept outside the table for
 * REFUSED_OPEN_MS (GRPC_REFUSED_OPEN of them at once, others ended at once), every call
 * on it answered PERMISSION_DENIED or UNAVAILABLE, then stopped from sending (SHUT_RD),
 * what it sent read and answered, GOAWAY, closed.
 *
 * Single-threaded like the rest of spanshimd: everything here runs on the receiver's
 * loop (receiver.c), which watches ss__grpc_fd() and calls in; nothing is thread-safe. */
#ifndef SS_GRPC_H
#define SS_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "tools/spanshimd/spanshimd.h"

#define SS_GRPC_MAX_STREAMS 100  /* RFC 9113 5.1.2: not below 100 */
#define SS_GRPC_MAX_CONNS 1024

/* gRPC status codes (grpc/doc/statuscodes.md) that spanshimd answers with. */
enum {
  SS_GRPC_OK = 0,
  SS_GRPC_INVALID_ARGUMENT = 3,
  SS_GRPC_DEADLINE_EXCEEDED = 4,
  SS_GRPC_RESOURCE_EXHAUSTED = 8,
  SS_GRPC_UNIMPLEMENTED = 12,
  SS_GRPC_PERMISSION_DENIED = 7,
  SS_GRPC_INTERNAL = 13,
  SS_GRPC_UNAVAILABLE = 14,
  SS_GRPC_UNAUTHENTICATED = 16,
};

/* The big-endian 32-bit length of a message prefix, at p[0..4). */
static inline uint32_t ss__grpc_be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Unframes the body of a unary gRPC request: exactly one Length-Prefixed-Message
 * (1 byte compressed flag, 4 bytes big-endian length, the message). `coding` is the
 * call's grpc-encoding as SS_CE_IDENTITY, SS_CE_GZIP or SS_CE_DEFLATE; a compressed
 * message is inflated into *buf (malloc'd, *cap bytes, reused between calls as
 * ss__inflate does), bounded by max. Returns SS_GRPC_OK with *msg and *len set (pointing
 * into `in` or *buf), or the status to answer with and *why a static message:
 * INTERNAL (no message, truncated, more than one, a flag other than 0/1, the compressed
 * flag under identity, data that is not valid in its coding), RESOURCE_EXHAUSTED (more
 * than max bytes, or out of memory). Pure: no I/O, no global state. */
int ss__grpc_unframe(const uint8_t *in, size_t n, int coding, size_t max, uint8_t **buf,
                     size_t *cap, const uint8_t **msg, size_t *len, const char **why);

/* Percent-encodes a grpc-message value (bytes outside 0x20..0x7E, and '%') into out,
 * NUL-terminated, truncated to fit outsz (>= 4). */
void ss__grpc_pct_encode(const char *msg, char *out, size_t outsz);

/* Starts serving gRPC on the given listening sockets (either may be -1; both -1 is a
 * no-op returning 0). o is borrowed for the process's life. 0, or -1 (printed). */
int ss__grpc_start(const ss__opts *o, int tcp_fd, int unix_fd);
/* The fd for the receiver's epoll to watch for readability (an epoll fd of ours), or -1
 * when gRPC is not served. */
int ss__grpc_fd(void);
/* Handles whatever is ready on our sockets now, without waiting. */
void ss__grpc_events(void);
/* Expires calls and connections whose time is up; returns ms until the next deadline,
 * or -1 when none is pending. */
int64_t ss__grpc_tick(uint64_t now_ms);
/* Out of fds at stop: connections with no call open, nothing to send and nothing
 * waiting in their sockets are sent GOAWAY and closed (they would be at the stop). */
void ss__grpc_let_idle_go(void);
/* At shutdown: stops accepting, serves what the peers already sent for at most
 * grace_ms, then closes every connection and frees everything. */
void ss__grpc_stop(uint64_t grace_ms);

#endif
