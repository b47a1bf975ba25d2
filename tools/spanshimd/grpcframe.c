/* grpcframe.c - gRPC's message framing and grpc-message encoding (see grpc.h): pure
 * functions, apart from grpc.c so the fuzzer and the unit tests take them alone. */
#include "tools/spanshimd/grpc.h"

int ss__grpc_unframe(const uint8_t *in, size_t n, int coding, size_t max, uint8_t **buf,
                     size_t *cap, const uint8_t **msg, size_t *len, const char **why) {
  if (n == 0) {
    *why = "no request message";
    return SS_GRPC_INTERNAL;
  }
  if (n < 5) {
    *why = "request message prefix cut short";
    return SS_GRPC_INTERNAL;
  }
  uint64_t mlen = ss__grpc_be32(in + 1);
  if (in[0] > 1) {
    *why = "bad compressed flag in the message prefix";
    return SS_GRPC_INTERNAL;
  }
  if (5 + mlen > n) {
    *why = "request message shorter than its length prefix";
    return SS_GRPC_INTERNAL;
  }
  if (5 + mlen < n) {
    *why = "more than one request message in a unary call";
    return SS_GRPC_INTERNAL;
  }
  if (in[0] == 0) {
    if (mlen > max) {
      *why = "request message larger than --max-body";
      return SS_GRPC_RESOURCE_EXHAUSTED;
    }
    *msg = in + 5;
    *len = (size_t)mlen;
    return SS_GRPC_OK;
  }
  if (coding != SS_CE_GZIP && coding != SS_CE_DEFLATE) {
    *why = "compressed message without a grpc-encoding";
    return SS_GRPC_INTERNAL;
  }
  int st = ss__inflate(coding, in + 5, (size_t)mlen, max, buf, cap, len);
  if (st == 200) {
    *msg = *buf;
    return SS_GRPC_OK;
  }
  *why = st == 413   ? "request message larger than --max-body once decompressed"
         : st == 400 ? "request message is not valid data in its grpc-encoding"
                     : "out of memory";
  return st == 400 ? SS_GRPC_INTERNAL : SS_GRPC_RESOURCE_EXHAUSTED;
}

void ss__grpc_pct_encode(const char *msg, char *out, size_t outsz) {
  static const char hex[] = "0123456789ABCDEF";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
    int plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
    if (o + (plain ? 1 : 3) >= outsz) break;
    if (plain) {
      out[o++] = (char)*p;
    } else {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    }
  }
  out[o] = 0;
}

