#!/usr/bin/env bash
# Instruction counts per request under callgrind (stable on a loaded machine, unlike req/s):
# the floor (bench/floor.rs), portcullis with a valid session cookie, and portcullis answering a
# browser without a session (302 to the IdP with state, nonce, PKCE and a pending-login cookie),
# each run under `valgrind --tool=callgrind` with instrumentation switched on only for the
# measured requests.
# Prints instructions per request (user space; the kernel's share is not counted) and writes
# the annotated profiles to $OUT (default target/bench-profile/).
#
#   bench/profile.sh                 (REQUESTS=20000 by default; LOG=info by default)
#   LOG=warn bench/profile.sh        (the check's span and debug line filtered out)
#   SKIP_BUILD=1 bench/profile.sh    (use the binaries already in target/release)
#   PORTCULLIS_BIN=path              (profile another portcullis binary; also in bench/lib.sh)
# With target/release/examples/grpc_{floor,load} built, two gRPC rows follow (GRPC_SECONDS=10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUESTS="${REQUESTS:-20000}"
LOG="${LOG:-info}"
OUT="${OUT:-$ROOT/target/bench-profile}"
for tool in valgrind callgrind_control callgrind_annotate curl python3; do
  command -v "$tool" >/dev/null || { echo "$tool missing: bench/install.sh" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --locked --bin portcullis --example floor --example grpc_floor \
    --example grpc_load 2>&1 | tail -1
fi
BIN="${PORTCULLIS_BIN:-$ROOT/target/release/portcullis}"
FLOOR="$ROOT/target/release/examples/floor"
rm -rf "$OUT"; mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(free_port); I=$(free_port); A=$(free_port); F=$(free_port); G=$(free_port)
WORK=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

CG=(valgrind --tool=callgrind --instr-atstart=no --dump-instr=no --compress-strings=no)
RUST_LOG="$LOG" "${CG[@]}" --callgrind-out-file="$OUT/portcullis.%p.out" \
  "$BIN" dev --port "$P" --idp-port "$I" --admin-port "$A" --grpc-port "$G" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
"${CG[@]}" --callgrind-out-file="$OUT/floor.%p.out" "$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$A/readyz" >/dev/null && break; sleep 0.5; done
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$F/" && break; sleep 0.3; done

JAR="$WORK/jar"
AUTH=$(curl -s -o /dev/null -w '%{redirect_url}' -c "$JAR" -b "$JAR" -H 'accept: text/html' "http://127.0.0.1:$P/")
CB=$(curl -s -o /dev/null -w '%{redirect_url}' "$AUTH&login_hint=alice")
curl -s -o /dev/null -c "$JAR" -b "$JAR" "$CB"
COOKIE=$(awk '$6=="_portcullis"{print "_portcullis="$7}' "$JAR")
[ -n "$COOKIE" ] || { echo "login failed" >&2; cat "$WORK/dev.log" >&2; exit 1; }

# Exactly $REQUESTS requests over 4 keep-alive connections (plus a warm-up), counted by the client.
load() { # status url header...
  python3 - "$REQUESTS" "$@" <<'PY'
import http.client, sys, threading, urllib.parse
n, want, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
headers = dict(h.split(": ", 1) for h in sys.argv[4:])
u = urllib.parse.urlsplit(url)
bad = []
def run(k):
    c = http.client.HTTPConnection(u.hostname, u.port)
    for _ in range(k):
        c.request("GET", u.path, headers=headers)
        r = c.getresponse(); r.read()
        if r.status != want: bad.append(r.status)
ts = [threading.Thread(target=run, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit(f"{len(bad)} answers were not {want}: {bad[:3]}")
PY
}

measure() { # name pid status url header...
  local name=$1 pid=$2; shift 2
  REQUESTS=200 load "$@"
  callgrind_control -i on "$pid" >/dev/null
  load "$@"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$name" "$pid" >/dev/null
  # That dump is the newest numbered file of this process: name it after its row.
  mv "$(ls -t "$OUT"/*."$pid".out.* | head -1)" "$OUT/$name.out"
}

measure floor "$FLOOR_PID" 200 "http://127.0.0.1:$F/app" "accept: application/json"
measure portcullis "$DEV_PID" 200 "http://127.0.0.1:$P/app" "accept: application/json" "cookie: $COOKIE"
# Dumps are cumulative from the last zeroing: `-z` after the first dump starts the 302 row at 0.
callgrind_control -z "$DEV_PID" >/dev/null
measure nosession "$DEV_PID" 302 "http://127.0.0.1:$P/app" "accept: text/html"

# gRPC Check (bench/grpc_load.rs, 2 connections × 25 calls in flight for GRPC_SECONDS): the tonic
# floor (bench/grpc_floor.rs) and portcullis's gRPC listener with the session cookie. The
# client runs for a time, not a count, so each row is divided by the answers it counted.
declare -A COUNT=([floor]=$REQUESTS [portcullis]=$REQUESTS [nosession]=$REQUESTS)
LOADGEN="$ROOT/target/release/examples/grpc_load"
GRPC_ROWS=()
if [ -x "$LOADGEN" ] && [ -x "$ROOT/target/release/examples/grpc_floor" ]; then
  GF=$(free_port)
  "${CG[@]}" --callgrind-out-file="$OUT/grpc_floor.%p.out" \
    "$ROOT/target/release/examples/grpc_floor" "127.0.0.1:$GF" >"$WORK/grpc-floor.log" 2>&1 &
  GF_PID=$!
  sleep 3
  grpc_measure() { # name pid url header...
    local name=$1 pid=$2 url=$3; shift 3
    "$LOADGEN" "$url" 2 1 4 "$@" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    COUNT[$name]=$("$LOADGEN" "$url" "${GRPC_SECONDS:-10}" 2 25 "$@" | awk -F': ' '$1=="requests"{print $2}')
    callgrind_control -i off "$pid" >/dev/null
    callgrind_control -d "$name" "$pid" >/dev/null
    mv "$(ls -t "$OUT"/*."$pid".out.* | head -1)" "$OUT/$name.out"
    GRPC_ROWS+=("$name")
  }
  grpc_measure grpc_floor "$GF_PID" "http://127.0.0.1:$GF"
  grpc_measure grpc_portcullis "$DEV_PID" "http://127.0.0.1:$G" "cookie: $COOKIE"
  kill "$GF_PID"
fi
kill "$DEV_PID" "$FLOOR_PID"; wait 2>/dev/null || true

per_request() { # file requests
  python3 - "$1" "$2" <<'PY'
import sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
print(round(total / int(sys.argv[2])))
PY
}
echo "load average: $(cat /proc/loadavg)"
echo "| row | instructions per request (user space) |"
echo "|---|---|"
for name in floor portcullis nosession "${GRPC_ROWS[@]}"; do
  # Each row is the dump made on request for it (the exit dumps are empty).
  f="$OUT/$name.out"
  echo "| $name | $(per_request "$f" "${COUNT[$name]}") |"
  callgrind_annotate --inclusive=yes "$f" >"$OUT/$name.inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$f" >"$OUT/$name.self.txt" 2>/dev/null || true
done
echo
echo "profiles: $OUT/<row>.{inclusive,self}.txt"
