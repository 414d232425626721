#!/usr/bin/env bash
# Row 6 of bench/README.md: the check with a Redis-backed session vs. the cookie session, side
# by side in one run on loopback, each in its own `portcullis serve` (the store is per process)
# against the issuer stub of bench/kit.rs:
#   floor                 bench/floor.rs: 200 + identity headers, no work
#   cookie store          the session is the (encrypted) cookie
#   cookie + deny-list    the cookie store with `session.redis.url` set: every check also asks
#                         Redis whether the session was revoked
#   redis store           the cookie is a ticket; every check GETs the session from Redis and
#                         opens it
# A real redis-server (Debian) on a free loopback port, no persistence, started and stopped
# here. Each session is saved by bench/kit.rs with its instance's own configuration file.
# Each row: wrk -t2 -c50 -d${DURATION}s --latency, and CPU per request of portcullis and of
# redis-server from /proc/<pid>/stat.
#
#   bench/redis.sh                          (DURATION=8, ROUNDS=1, LOG=info)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-1}"
need wrk curl python3 redis-server redis-cli
build_release --bin portcullis --example floor --example bench_kit

RP=$(free_port)
redis-server --bind 127.0.0.1 --port "$RP" --save '' --appendonly no --daemonize no \
  --dir "$WORK" >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
F=$(free_port)
"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
start_kit
REDIS_URL="redis://127.0.0.1:$RP/0"
start_serve C
start_serve D '[session]' 'store = "cookie"' '[session.redis]' "url = \"$REDIS_URL\""
start_serve R '[session]' 'store = "redis"' '[session.redis]' "url = \"$REDIS_URL\""
wait_http "http://127.0.0.1:$F/"
for p in C D R; do
  conf="${p}_CONFIG"
  "$KIT" cookies "${!conf}" 1 "$WORK/cookie-$p"
done
C_COOKIE=$(cat "$WORK/cookie-C"); D_COOKIE=$(cat "$WORK/cookie-D"); R_COOKIE=$(cat "$WORK/cookie-R")
for p in C D R; do
  port="${p}_PORT"; cookie="${p}_COOKIE"
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept: application/json' -H "cookie: ${!cookie}" "http://127.0.0.1:${!port}/app")
  [ "$code" = 200 ] || { echo "store $p: $code" >&2; cat "$WORK/serve-$p.log" >&2; exit 1; }
done
echo "redis keys: $(redis-cli -p "$RP" dbsize)"

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| row | req/s | p50 | p99 | p99.9 | portcullis CPU µs/req | redis-server CPU µs/req | non-2xx |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  EXTRA_PIDS="" wrk_row "floor (200 + headers)" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
  EXTRA_PIDS="$REDIS_PID" wrk_row "portcullis, cookie store" "$C_PID" "http://127.0.0.1:$C_PORT/app" \
    "accept: application/json" "cookie: $C_COOKIE"
  EXTRA_PIDS="$REDIS_PID" wrk_row "portcullis, cookie store + Redis deny-list" "$D_PID" \
    "http://127.0.0.1:$D_PORT/app" "accept: application/json" "cookie: $D_COOKIE"
  EXTRA_PIDS="$REDIS_PID" wrk_row "portcullis, redis store" "$R_PID" "http://127.0.0.1:$R_PORT/app" \
    "accept: application/json" "cookie: $R_COOKIE"
done
echo
echo "cookies: cookie store ${#C_COOKIE} bytes, redis ticket ${#R_COOKIE} bytes; $(redis-server --version | cut -d' ' -f1-3)"
redis-cli -p "$RP" info commandstats | grep -E '^cmdstat_(get|mget|exists)' || true
footer
