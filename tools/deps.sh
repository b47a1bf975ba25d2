#!/bin/sh
# Installs the Debian packages spanshim needs to build and test, if any are missing.
# Uses sudo when not root. Prints what it does; exits non-zero if installation fails.
# Everything a test needs is here, so CI (strict: a skipped test fails) can run them all:
# valgrind, openssl, prometheus (+promtool), groff (man pages), systemd (systemd-analyze),
# python3-psycopg2 (the HTTP suite's Python services run /usr/bin/python3 with it),
# apache2-utils (ab: the keep-alive loop of tests/bench/bench_http.py), chromium + nodejs +
# npm (the HTML report's browser tests: playwright-core from tests/browser, `npm ci`; and the
# OpenTelemetry JS SDK peers of tests/integration/test_sdk_interop.py, `make interop-deps`),
# libnghttp2-dev (spanshimd's HTTP/2 for OTLP/gRPC), patchelf (test_libpq's wheel-style
# bundled libpq/libcurl copies with renamed sonames).
set -eu
pkgs="gcc make pkg-config libc6-dev protobuf-c-compiler libprotobuf-c-dev patchelf
check libsubunit-dev python3 curl libcurl4-openssl-dev libpq-dev postgresql postgresql-contrib
nginx-light valgrind procps zlib1g-dev libpg-query-dev libdw-dev prometheus clang libclang-rt-dev openssl
groff-base systemd python3-psycopg2 apache2-utils chromium libnghttp2-dev nodejs npm"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
# python3 may come from elsewhere (pyenv); do not reinstall it if it runs.
case " $missing " in *" python3 "*) command -v python3 >/dev/null 2>&1 &&
  missing=$(echo "$missing" | sed 's/ python3//');; esac
# node and npm may come from elsewhere (NodeSource's nodejs carries npm and conflicts with
# Debian's npm package); do not install either if both run.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
  missing=$(echo "$missing" | sed 's/ nodejs\b//; s/ npm\b//')
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
