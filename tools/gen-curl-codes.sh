#!/bin/sh
# Writes to stdout the C table of CURLcode names that hooks/libcurl.c reports as error.type,
# read from the CURLcode enum of the curl.h the compiler finds (preprocessed, so comments
# and #ifdefs are gone). CURLE_OBSOLETE* codes and CURL_LAST are left out. Deterministic:
# the same curl.h gives the same bytes.
#   gen-curl-codes.sh CC [CPPFLAGS...]      e.g. gen-curl-codes.sh cc -D_GNU_SOURCE -I.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 CC [CPPFLAGS...]" >&2; exit 2; }
pre=$(printf '#include <curl/curl.h>\nspanshim_curl_version LIBCURL_VERSION\n' |
  "$@" -E -P -x c -)
version=$(printf '%s\n' "$pre" | sed -n 's/^spanshim_curl_version "\(.*\)"$/\1/p')
names=$(printf '%s\n' "$pre" | tr -s ' \t' '  ' | awk '
  /typedef enum *\{/ { inenum = 1; buf = ""; next }
  inenum && /\}/ { if ($0 ~ /\} *CURLcode *;/) { printf "%s", buf; found = 1 } inenum = 0; next }
  inenum { buf = buf $0 "\n" }
  END { if (!found) exit 1 }' | tr ',' '\n' | sed -n 's/^ *\(CURLE_[A-Z0-9_]*\).*/\1/p' |
  grep -v '^CURLE_OBSOLETE' || true)
[ -n "$names" ] || { echo "$0: no CURLcode enum in curl.h" >&2; exit 1; }
echo "/* libcurl_codes.h - CURLcode names for error.type, generated at build time by"
echo " * tools/gen-curl-codes.sh from the curl.h of libcurl ${version:-unknown}; codes a newer"
echo " * libcurl adds are reported as \"_OTHER\". Included by hooks/libcurl.c only. */"
# Names inline, not pointers: a table of pointers is written by the loader in every
# process at start (a page fault); a code without a name is an empty string.
width=$(printf '%s\n' "$names" | awk '{ if (length($1) > w) w = length($1) } END { print w + 1 }')
echo "static const char curle_names[][$width] = {"
printf '%s\n' "$names" | awk '{ printf "    [%s] = \"%s\",\n", $1, $1 }'
echo "};"
