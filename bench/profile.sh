#!/usr/bin/env bash
# Instruction counts per request under callgrind (stable on a loaded machine, unlike req/s):
# the floor (bench/floor.rs) and portcullis with a valid session cookie, each run under
# `valgrind --tool=callgrind` with instrumentation switched on only for the measured requests.
# Prints instructions per request (user space; the kernel's share is not counted) and writes
# the annotated profiles to $OUT (default target/bench-profile/).
#
#   bench/profile.sh                 (REQUESTS=20000 by default; LOG=info by default)
#   LOG=warn bench/profile.sh        (the check's span and debug line filtered out)
#   SKIP_BUILD=1 bench/profile.sh    (use the binaries already in target/release)
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
  cargo build --release --locked --bin portcullis --example floor 2>&1 | tail -1
fi
BIN="$ROOT/target/release/portcullis"
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
load() { # url header...
  python3 - "$REQUESTS" "$@" <<'PY'
import http.client, sys, threading, urllib.parse
n, url, headers = int(sys.argv[1]), sys.argv[2], dict(h.split(": ", 1) for h in sys.argv[3:])
u = urllib.parse.urlsplit(url)
bad = []
def run(k):
    c = http.client.HTTPConnection(u.hostname, u.port)
    for _ in range(k):
        c.request("GET", u.path, headers=headers)
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
ts = [threading.Thread(target=run, args=(n // 4,)) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
if bad: sys.exit(f"{len(bad)} answers were not 200: {bad[:3]}")
PY
}

measure() { # name pid url header...
  local name=$1 pid=$2; shift 2
  REQUESTS=200 load "$@"
  callgrind_control -i on "$pid" >/dev/null
  load "$@"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$name" "$pid" >/dev/null
}

measure floor "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
measure portcullis "$DEV_PID" "http://127.0.0.1:$P/app" "accept: application/json" "cookie: $COOKIE"
kill "$DEV_PID" "$FLOOR_PID"; wait 2>/dev/null || true

per_request() { # file
  python3 - "$1" "$REQUESTS" <<'PY'
import sys
total = 0
for line in open(sys.argv[1]):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = max(total, int(line.split()[1]))
print(round(total / int(sys.argv[2])))
PY
}
echo "load average: $(cat /proc/loadavg)"
echo "| server | instructions per request (user space) |"
echo "|---|---|"
for name in floor portcullis; do
  # The dump made on request is the one with parts (".1" suffix); the exit dump is empty.
  f=$(ls -S "$OUT"/$name.*.out* | head -1)
  echo "| $name | $(per_request "$f") |"
  callgrind_annotate --inclusive=yes "$f" >"$OUT/$name.inclusive.txt" 2>/dev/null || true
  callgrind_annotate "$f" >"$OUT/$name.self.txt" 2>/dev/null || true
done
echo
echo "profiles: $OUT/{floor,portcullis}.{inclusive,self}.txt"
