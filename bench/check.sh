#!/usr/bin/env bash
# Rows 1 and 4 of bench/README.md, side by side in one run on loopback:
#   floor            bench/floor.rs: 200 + identity headers, no work
#   valid cookie     portcullis check with a valid session cookie (HTTP ext_authz, 200)
#   no session       portcullis check from a browser without a session (302 + state, nonce,
#                    PKCE, pending-login cookie)
# Each row: wrk -t2 -c50 -d${DURATION}s --latency, plus the server's CPU time per request from
# /proc/<pid>/stat (utime+stime) before and after.
#
#   bench/check.sh            (DURATION=10 by default)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
command -v wrk >/dev/null || { echo "wrk missing: apt-get install wrk" >&2; exit 1; }
cargo build --release --locked --bin portcullis --example floor 2>&1 | tail -1
BIN="$ROOT/target/release/portcullis"
FLOOR="$ROOT/target/release/examples/floor"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); I=$(free_port); A=$(free_port); F=$(free_port); G=$(free_port)
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
RUST_LOG=warn "$BIN" dev --port "$P" --idp-port "$I" --admin-port "$A" --grpc-port "$G" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$A/readyz" >/dev/null && break; sleep 0.1; done

# A session cookie for alice, through the whole login.
JAR="$WORK/jar"
AUTH=$(curl -s -o /dev/null -w '%{redirect_url}' -c "$JAR" -b "$JAR" -H 'accept: text/html' "http://127.0.0.1:$P/")
CB=$(curl -s -o /dev/null -w '%{redirect_url}' "$AUTH&login_hint=alice")
curl -s -o /dev/null -c "$JAR" -b "$JAR" "$CB"
COOKIE=$(awk '$6=="_portcullis"{print "_portcullis="$7}' "$JAR")
[ -n "$COOKIE" ] || { echo "login failed" >&2; cat "$WORK/dev.log" >&2; exit 1; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

row() { # name pid url header...
  local name=$1 pid=$2 url=$3; shift 3
  local args=()
  for h in "$@"; do args+=(-H "$h"); done
  local before after out reqs
  before=$(cpu_ticks "$pid")
  out=$(wrk -t2 -c50 -d"${DURATION}s" --latency "${args[@]}" "$url")
  after=$(cpu_ticks "$pid")
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps p50 p99 p999 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  p999=$(echo "$out" | awk '$1=="99.900%"{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
  local cpu_us
  cpu_us=$(python3 -c "print(round(($after-$before)/$TICK*1e6/max($reqs,1),1))")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p50" "$p99" "${p999:--}" "$cpu_us" "${non2xx:-0}"
}

echo "| row | req/s | p50 | p99 | p99.9 | server CPU µs/req | non-2xx |"
echo "|---|---|---|---|---|---|---|"
row "floor (200 + headers)" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
row "portcullis, valid cookie (200)" "$DEV_PID" "http://127.0.0.1:$P/app" "accept: application/json" "cookie: $COOKIE"
row "portcullis, no session, browser (302)" "$DEV_PID" "http://127.0.0.1:$P/app" "accept: text/html"
echo
echo "RSS of portcullis after the run: $(awk '/VmRSS/{print $2, $3}' /proc/$DEV_PID/status) (dev mode: proxy + development issuer in one process)"
