#!/bin/sh
# Runs the libFuzzer harness for SECONDS on a working corpus in the build dir, seeded from
# tools/fuzz/seeds. Exits non-zero when the fuzzer found a crash, leak or timeout (the
# reproducer is left in the build dir as crash-*/leak-*/timeout-*).
#   run.sh BIN SECONDS
set -eu
bin=$1
secs=$2
dir=$(dirname "$bin")
here=$(dirname "$0")
mkdir -p "$dir/corpus"
echo "fuzz: $bin for ${secs}s"
cd "$dir"
if ./"$(basename "$bin")" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$OLDPWD/$here/otlp.dict" corpus "$OLDPWD/$here/seeds" \
    >fuzz.log 2>&1; then
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' fuzz.log | sed 's/^/fuzz: /'
  echo "fuzz: no crash in ${secs}s"
else
  tail -40 fuzz.log
  echo "fuzz: FAILED (see $dir/fuzz.log and the crash-* file there)"
  exit 1
fi
