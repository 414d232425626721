#!/usr/bin/env bash
# Row 3 of bench/README.md: gRPC ext_authz Check, side by side in one run on loopback, with
# bench/grpc_load.rs (2 HTTP/2 connections × 25 calls in flight, reused the way Envoy reuses
# its connections):
#   gRPC floor          bench/grpc_floor.rs: a tonic Authorization server that always allows
#   portcullis          portcullis's gRPC listener, valid session cookie (OkResponse)
# Each row also reports the server's CPU µs per request from /proc/<pid>/stat. BEFORE_BIN=path
# adds the same row for another portcullis binary (e.g. one built from the previous commit).
#
#   bench/grpc.sh                  (DURATION=10, ROUNDS=1, LOG=info)
#   BEFORE_BIN=/tmp/old/portcullis ROUNDS=2 bench/grpc.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
need curl python3
build_release --bin portcullis --example grpc_floor --example grpc_load
LOAD="$ROOT/target/release/examples/grpc_load"

GF=$(free_port)
"$ROOT/target/release/examples/grpc_floor" "127.0.0.1:$GF" >"$WORK/grpc-floor.log" 2>&1 &
GF_PID=$!
start_dev "$BIN" NEW
if [ -n "${BEFORE_BIN:-}" ]; then start_dev "$BEFORE_BIN" OLD; fi
sleep 1

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| row | req/s | p50 | p99 | p99.9 | server CPU µs/req | not allowed |"
echo "|---|---|---|---|---|---|---|"
grpc_row() { # name pid url header...
  local name=$1 pid=$2 url=$3; shift 3
  local before after out
  before=$(cpu_ticks "$pid")
  out=$("$LOAD" "$url" "$DURATION" 2 25 "$@")
  after=$(cpu_ticks "$pid")
  val() { echo "$out" | awk -F': ' -v k="$1" '$1==k{print $2}'; }
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(val requests/s)" "$(val p50)" \
    "$(val p99)" "$(val p99.9)" "$(cpu_us "$before" "$after" "$(val requests)")" "$(val 'not allowed')"
}
for round in $(seq "$ROUNDS"); do
  grpc_row "gRPC floor (tonic, always allow)" "$GF_PID" "http://127.0.0.1:$GF"
  grpc_row "portcullis gRPC, valid cookie" "$NEW_PID" "http://127.0.0.1:$NEW_GRPC" "cookie: $NEW_COOKIE"
  if [ -n "${BEFORE_BIN:-}" ]; then
    grpc_row "portcullis BEFORE_BIN ($(basename "$BEFORE_BIN")) gRPC, valid cookie" "$OLD_PID" \
      "http://127.0.0.1:$OLD_GRPC" "cookie: $OLD_COOKIE"
  fi
done
echo
footer
