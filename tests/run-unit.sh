#!/bin/sh
# Runs each Check unit suite given and prints its output as is (Check's own summary line,
# `100%: Checks: N, Failures: N, Errors: N`, for every suite), then one total line:
#   unit: N suites, N checks, N failures, N errors
# Fails if any suite fails, or exits non-zero without printing Check's summary (a crash).
#   run-unit.sh SUITE...
out=$(mktemp) || exit 1
trap 'rm -f "$out"' EXIT
status=0 suites=0 checks=0 failures=0 errors=0 bad=""
for t in "$@"; do
  echo "== $(basename "$t")"
  "$t" >"$out" 2>&1
  rc=$?
  cat "$out"
  suites=$((suites + 1))
  summary=$(sed -n 's/^[0-9]*%: Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' "$out" | tail -n 1)
  if [ -n "$summary" ]; then
    c=${summary%% *}; rest=${summary#* }; f=${rest%% *}; e=${rest#* }
    checks=$((checks + c)) failures=$((failures + f)) errors=$((errors + e))
  fi
  if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then
    status=1
    bad="$bad $(basename "$t")"
    [ -z "$summary" ] && echo "$(basename "$t"): exited $rc without Check's summary"
  fi
done
[ -n "$bad" ] && echo "unit: failed:$bad"
echo "unit: $suites suites, $checks checks, $failures failures, $errors errors"
exit $status
