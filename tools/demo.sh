#!/bin/sh
# tools/demo.sh BUILD - what `make demo` runs: traces real, unmodified curl and psql.
#
# Starts a throwaway PostgreSQL (tests/integration/pg.py: initdb in a temp dir, as the
# postgres user when run as root) and a local HTTP server (python3 -m http.server on a free
# loopback port), then runs, under `spanshim run`:
#     curl http://localhost:PORT/          an HTTP request
#     psql -h 127.0.0.1 -c 'select 1'      a PostgreSQL session (SCRAM password)
#     curl http://127.0.0.1:1/             a refused connect, to show an error span
# The waterfall prints on stderr. Everything started here is stopped and removed on exit,
# also on error or Ctrl-C; the spans too, unless DEMO_OUT=FILE names where to keep them.
# then two traced Python HTTP services and their client (tools/examples/orders_demo.py).
# Exits with spanshim run's status (0 when all went well).
set -eu

BUILD=${1:-build}
BUILD=$(cd "$BUILD" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
unset LD_PRELOAD || true

work=$(mktemp -d "${TMPDIR:-/tmp}/spanshim-demo.XXXXXX")
# The cluster's dir must be reachable by the postgres user: a sibling in the (sticky,
# world-traversable) temp dir, not inside our 0700 one.
pgdir="$work-pg"
http_pid=""

cleanup() {
  status=$?
  trap - EXIT INT TERM HUP
  if [ -n "$http_pid" ]; then
    kill "$http_pid" 2>/dev/null || true
    wait "$http_pid" 2>/dev/null || true
  fi
  if [ -d "$pgdir" ]; then
    "$PY" "$ROOT/tests/integration/pg.py" stop "$pgdir" >/dev/null 2>&1 || true
  fi
  rm -rf "$work" "$pgdir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

for tool in curl psql "$PY"; do
  command -v "$tool" >/dev/null 2>&1 || { echo "demo: $tool is needed (make deps)" >&2; exit 1; }
done
[ -x "$BUILD/spanshim" ] || { echo "demo: $BUILD/spanshim is missing (make)" >&2; exit 1; }

echo "demo: starting a throwaway PostgreSQL in $pgdir ..." >&2
pgvars=$("$PY" "$ROOT/tests/integration/pg.py" start "$pgdir")
eval "$pgvars"

mkdir "$work/www"
printf '<!doctype html><title>spanshim demo</title><p>hello from the demo server</p>\n' \
  >"$work/www/index.html"
http_port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m http.server --bind 127.0.0.1 --directory "$work/www" "$http_port" \
  >"$work/http.log" 2>&1 &
http_pid=$!
i=0
until curl -s -o /dev/null "http://127.0.0.1:$http_port/"; do
  i=$((i + 1))
  if [ "$i" -gt 100 ] || ! kill -0 "$http_pid" 2>/dev/null; then
    echo "demo: the HTTP server did not start:" >&2
    cat "$work/http.log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "demo: HTTP server on 127.0.0.1:$http_port, PostgreSQL on $PGDEMO_HOST:$PGDEMO_PORT" >&2

cmd="curl -s http://localhost:$http_port/ >/dev/null;"
cmd="$cmd psql -X -h $PGDEMO_HOST -p $PGDEMO_PORT -U $PGDEMO_USER -d $PGDEMO_USER -c 'select 1' >/dev/null;"
cmd="$cmd curl -s http://127.0.0.1:1/ || true"
echo "demo: spanshim run -- sh -c \"$cmd\"" >&2
echo >&2

out=${DEMO_OUT:-$work/demo.jsonl}
set +e
PGPASSWORD=$PGDEMO_PASSWORD "$BUILD/spanshim" run --out "$out" -- sh -c "$cmd"
rc=$?
set -e

# Services: two Python HTTP services (orders asks PostgreSQL and inventory) and a client,
# no tracing code in them; each request is one trace across the three processes.
svc_py=$PY
if /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then svc_py=/usr/bin/python3; fi
echo >&2
echo "demo: spanshim run -- $svc_py tools/examples/orders_demo.py" >&2
echo >&2
set +e
PGDEMO_HOST=$PGDEMO_HOST PGDEMO_PORT=$PGDEMO_PORT PGDEMO_USER=$PGDEMO_USER \
  PGDEMO_PASSWORD=$PGDEMO_PASSWORD "$BUILD/spanshim" run --out "$out" -- \
  "$svc_py" "$ROOT/tools/examples/orders_demo.py"
rc2=$?
set -e
[ "$rc" -ne 0 ] || rc=$rc2

echo >&2
if [ -n "${DEMO_OUT:-}" ]; then
  echo "demo: the spans are in $DEMO_OUT (OTLP JSON lines; $BUILD/spanshim view shows them)" >&2
else
  echo "demo: the spans' file is removed now; DEMO_OUT=FILE keeps it" >&2
fi
exit "$rc"
