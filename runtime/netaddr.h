/* netaddr.h - numeric IP address text without stdio.
 *
 * glibc's inet_ntop formats through sprintf, which is too slow for the app thread's
 * budget; these produce the same text (RFC 5952 for IPv6: lower case, the longest run of
 * two or more zero groups as "::", first run on a tie, IPv4-mapped and -compatible forms
 * as inet_ntop writes them) with no allocation, no lock and no system call. */
#ifndef SS_NETADDR_H
#define SS_NETADDR_H

#include <stddef.h>
#include <stdint.h>

#define SS_IP4_STRLEN 16 /* "255.255.255.255" + NUL */
#define SS_IP6_STRLEN 46

/* Write the text and a NUL into out (SS_IP4_STRLEN / SS_IP6_STRLEN bytes: ss__ip4_format
 * may write all 16, past the NUL); return the text's length. */
size_t ss__ip4_format(const uint8_t a[4], char *out);
size_t ss__ip6_format(const uint8_t a[16], char *out);

#endif
