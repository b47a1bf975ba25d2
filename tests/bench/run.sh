#!/bin/sh
# tests/bench/run.sh BUILD: the spanshim benchmarks (tests/bench/bench.py says what each
# measures). Prints numbers and a summary table; never fails on timing, only when a
# benchmark cannot run at all. `make bench` builds what they need first.
set -eu
here=$(dirname "$0")
status=0
"${PYTHON:-python3}" "$here/bench.py" "${1:-build}" || status=1
"${PYTHON:-python3}" "$here/curl_nginx.py" "${1:-build}" || status=1
"${PYTHON:-python3}" "$here/bench_spanshimd.py" "${1:-build}" || status=1
"${PYTHON:-python3}" "$here/bench_libpq.py" "${1:-build}" || status=1
"${PYTHON:-python3}" "$here/bench_http.py" "${1:-build}" || status=1
"${PYTHON:-python3}" "$here/bench_view.py" "${1:-build}" || status=1
exit $status
