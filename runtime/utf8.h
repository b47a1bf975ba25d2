/* utf8.h - UTF-8 validation shared by the protobuf and JSON encoders, so both make the
 * same choice of what to replace with U+FFFD. Pure function; any thread. */
#ifndef SS_UTF8_H
#define SS_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence starting at s (at most n bytes, n >= 1), or 0 if
 * invalid: no overlongs, no surrogates, nothing above U+10FFFF (RFC 3629). */
size_t ss__utf8_seq(const unsigned char *s, size_t n);

#endif
