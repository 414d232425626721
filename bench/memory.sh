#!/usr/bin/env bash
# Row 8 of bench/README.md (partly): portcullis's RSS idle (after one login) and its peak RSS
# while wrk holds 1000 keep-alive connections checking a valid session cookie, next to the
# floor's under the same load. RSS is sampled from /proc/<pid>/status every 100 ms.
#
#   bench/memory.sh                (DURATION=10, CONNECTIONS=1000)
# BEFORE_BIN=path adds a row for another portcullis binary; PRELOAD=lib.so (with PRELOAD_BIN=path,
# default this build) one for a binary run with LD_PRELOAD (another malloc), as in bench/check.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-1000}"
need wrk curl python3
ulimit -n "$((CONNECTIONS * 2 + 256))" 2>/dev/null || true
build_release --bin portcullis --example floor

F=$(free_port)
"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
start_dev "$BIN" NEW
if [ -n "${BEFORE_BIN:-}" ]; then start_dev "$BEFORE_BIN" OLD; fi
if [ -n "${PRELOAD:-}" ]; then LD_PRELOAD="$PRELOAD" start_dev "${PRELOAD_BIN:-$BIN}" PRE; fi
wait_http "http://127.0.0.1:$F/"
sleep 1

peak_rss() { # pid seconds -> peak kB
  local pid=$1 n=$(($2 * 10)) peak=0 v
  for _ in $(seq "$n"); do
    v=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
    [ "$v" -gt "$peak" ] && peak=$v
    sleep 0.1
  done
  echo "$peak"
}
mib() { python3 -c "print(round($1/1024, 1))"; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| server | RSS idle | peak RSS at $CONNECTIONS connections | req/s | non-2xx |"
echo "|---|---|---|---|---|"
mem_row() { # name pid url header...
  local name=$1 pid=$2 url=$3; shift 3
  local args=() h idle peak out
  for h in "$@"; do args+=(-H "$h"); done
  idle=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "${args[@]}" "$url" >"$WORK/wrk.out" 2>&1 &
  local wrk_pid=$!
  peak=$(peak_rss "$pid" "$DURATION")
  wait "$wrk_pid" || true
  out=$(cat "$WORK/wrk.out")
  printf '| %s | %s MiB | %s MiB | %s | %s |\n' "$name" "$(mib "$idle")" "$(mib "$peak")" \
    "$(echo "$out" | awk '/Requests\/sec/{print $2}')" "$(echo "$out" | awk '/Non-2xx/{n=$5} END{print n+0}')"
}
mem_row "floor" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
mem_row "portcullis dev (proxy + development issuer), valid cookie" "$NEW_PID" \
  "http://127.0.0.1:$NEW_PORT/app" "accept: application/json" "cookie: $NEW_COOKIE"
if [ -n "${BEFORE_BIN:-}" ]; then
  mem_row "portcullis BEFORE_BIN ($(basename "$BEFORE_BIN")), valid cookie" "$OLD_PID" \
    "http://127.0.0.1:$OLD_PORT/app" "accept: application/json" "cookie: $OLD_COOKIE"
fi
if [ -n "${PRELOAD:-}" ]; then
  mem_row "portcullis ${PRELOAD_BIN:+$(basename "$PRELOAD_BIN") }with LD_PRELOAD=$(basename "$PRELOAD"), valid cookie" \
    "$PRE_PID" "http://127.0.0.1:$PRE_PORT/app" "accept: application/json" "cookie: $PRE_COOKIE"
fi
echo
footer
