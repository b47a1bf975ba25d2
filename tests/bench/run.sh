#!/bin/sh
# tests/bench/run.sh BUILD: the spanshim benchmarks (tests/bench/bench.py says what each
# measures). Prints numbers, each script's summary, and at the end the issue 16 cost table
# (tests/bench/table.py) that the scripts fill as they measure. Never fails on timing,
# only when a benchmark cannot run at all. `make bench` builds what they need first.
set -eu
here=$(dirname "$0")
py=${PYTHON:-python3}
BENCH_TABLE=$(mktemp "${TMPDIR:-/tmp}/spanshim-bench-table.XXXXXX")
export BENCH_TABLE
trap 'rm -f "$BENCH_TABLE"' EXIT
echo "spanshim bench: $(nproc) cores, load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
start=$(date +%s)
status=0
"$py" "$here/bench.py" "${1:-build}" || status=1
"$py" "$here/curl_nginx.py" "${1:-build}" || status=1
"$py" "$here/bench_spanshimd.py" "${1:-build}" || status=1
"$py" "$here/bench_libpq.py" "${1:-build}" || status=1
"$py" "$here/bench_http.py" "${1:-build}" || status=1
"$py" "$here/bench_view.py" "${1:-build}" || status=1
"$py" "$here/table.py" "$BENCH_TABLE"
echo "  (make bench: $(($(date +%s) - start)) s)"
exit $status
