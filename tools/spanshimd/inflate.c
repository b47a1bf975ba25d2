/* inflate.c - request bodies in Content-Encoding gzip or deflate (zlib), decoded into a
 * buffer that never grows past the --max-body bound: inflating stops at the first byte
 * beyond it, so a decompression bomb costs at most that much memory and time. */
#include <limits.h>
#include <stdlib.h>
#include <zlib.h>

#include "tools/spanshimd/spanshimd.h"

/* RFC 1950: CM 8 (deflate), CINFO <= 7, header check a multiple of 31. */
static int zlib_header(const uint8_t *in, size_t n) {
  return n >= 2 && (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 && ((in[0] << 8) | in[1]) % 31 == 0;
}

/* Makes room for at least one more byte, growing geometrically up to limit; 0 or -1. */
static int grow(uint8_t **out, size_t *cap, size_t len, size_t limit) {
  if (*cap > len) return 0;
  size_t want = *cap < 65536 ? 65536 : *cap * 2;
  if (want > limit || want < *cap) want = limit;
  uint8_t *p = realloc(*out, want);
  if (p == NULL) return -1;
  *out = p;
  *cap = want;
  return 0;
}

int ss__inflate(int coding, const uint8_t *in, size_t n, size_t max, uint8_t **out,
                size_t *cap, size_t *out_len) {
  z_stream z = {0};
  int wbits = coding == SS_CE_GZIP ? 15 + 16 : zlib_header(in, n) ? 15 : -15;
  *out_len = 0;
  if (coding != SS_CE_GZIP && coding != SS_CE_DEFLATE) return 400;
  if (inflateInit2(&z, wbits) != Z_OK) return 503;
  size_t limit = max + 1;  /* one byte past the bound tells "too large" */
  size_t len = 0, left = n;
  const uint8_t *p = in;
  int rc = 0;
  while (rc == 0) {
    if (z.avail_in == 0 && left) {
      z.next_in = (Bytef *)p;
      z.avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
      p += z.avail_in;
      left -= z.avail_in;
    }
    if (len >= limit) {
      rc = 413;
      break;
    }
    if (grow(out, cap, len, limit) != 0) {
      rc = 503;
      break;
    }
    size_t room = (*cap < limit ? *cap : limit) - len;
    if (room > UINT_MAX) room = UINT_MAX;
    z.next_out = *out + len;
    z.avail_out = (uInt)room;
    int zr = inflate(&z, Z_NO_FLUSH);
    len += room - z.avail_out;
    switch (zr) {
    case Z_OK:
      break;
    case Z_STREAM_END:
      if (z.avail_in == 0 && left == 0) rc = 200;
      else if (coding == SS_CE_GZIP && inflateReset(&z) == Z_OK) break;  /* next member */
      else rc = 400;  /* bytes after the end of the stream */
      break;
    case Z_BUF_ERROR:  /* no progress: out of input, as output always has room */
      if (z.avail_in == 0 && left == 0) rc = 400;  /* truncated */
      else if (z.avail_in != 0) rc = 400;
      break;
    case Z_MEM_ERROR:
      rc = 503;
      break;
    default:
      rc = 400;
    }
  }
  inflateEnd(&z);
  if (rc == 200 && len > max) rc = 413;
  *out_len = rc == 200 ? len : 0;
  return rc;
}
