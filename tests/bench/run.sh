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
took=""
for script in bench.py curl_nginx.py bench_spanshimd.py bench_libpq.py bench_http.py \
              bench_view.py; do
  t0=$(date +%s)
  "$py" "$here/$script" "${1:-build}" || status=1
  took="$took $script $(($(date +%s) - t0)) s;"
done
"$py" "$here/table.py" "$BENCH_TABLE"
echo "  (make bench: $(($(date +%s) - start)) s:$took load average at the end" \
     "$(cut -d' ' -f1-3 /proc/loadavg))"
exit $status
