#!/usr/bin/env bash
# Row 8 of bench/README.md, the rest of it: portcullis's RSS idle, while and after 100 000
# distinct session cookies are checked (each cookie once: bench/rotate.lua walks a file of
# SESSIONS cookies sealed by bench/kit.rs under portcullis's own configuration file, so they
# open with its key), and under 1000 concurrent connections doing the same. The session cache
# keeps at most 1024 opened sessions, so RSS should not grow with the number of sessions.
# `portcullis serve` (cookie store) against the issuer stub of bench/kit.rs; RSS sampled from
# /proc/<pid>/status every 100 ms.
#
#   bench/memory100k.sh            (SESSIONS=100000, DURATION=15, CONNECTIONS=1000, LOG=info)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-15}"
SESSIONS="${SESSIONS:-100000}"
MANY="${CONNECTIONS:-1000}"
unset CONNECTIONS
need wrk curl python3
ulimit -n "$((MANY * 2 + 256))" 2>/dev/null || true
build_release --bin portcullis --example bench_kit

start_kit
start_serve P
started=$(date +%s)
"$KIT" cookies "$P_CONFIG" "$SESSIONS" "$WORK/cookies"
echo "sealed $SESSIONS sessions in $(( $(date +%s) - started )) s (not measured); cookie $(head -1 "$WORK/cookies" | wc -c) bytes"
URL="http://127.0.0.1:$P_PORT/app"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept: application/json' -H "cookie: $(head -1 "$WORK/cookies")" "$URL")
[ "$code" = 200 ] || { echo "session refused: $code" >&2; cat "$WORK/serve-P.log" >&2; exit 1; }
sleep 1

kib() { awk '/VmRSS/{print $2}' "/proc/$P_PID/status"; }
mib() { python3 -c "print(round($1/1024, 1))"; }
# run CONNS: wrk rotating through the cookies; prints "requests peak_kib samples(MiB, 1 s apart)".
run() {
  local conns=$1 peak=0 v n=0 samples=()
  ROTATE_FILE="$WORK/cookies" ROTATE_HEADER=cookie wrk -t2 -c"$conns" -d"${DURATION}s" \
    -s bench/rotate.lua -H 'accept: application/json' "$URL" >"$WORK/wrk.out" 2>&1 &
  local wrk_pid=$!
  while kill -0 "$wrk_pid" 2>/dev/null; do
    v=$(kib); [ "$v" -gt "$peak" ] && peak=$v
    n=$((n + 1)); [ $((n % 10)) = 0 ] && samples+=("$(mib "$v")")
    sleep 0.1
  done
  wait "$wrk_pid" || true
  grep -q 'Non-2xx' "$WORK/wrk.out" && { echo "non-2xx answers:" >&2; cat "$WORK/wrk.out" >&2; exit 1; }
  echo "$(awk '/requests in/{print $1}' "$WORK/wrk.out") $peak ${samples[*]}"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
IDLE=$(kib)
read -r R1 P1 S1 < <(run 50)
AFTER1=$(kib)
read -r R2 P2 S2 < <(run "$MANY")
sleep 2
AFTER2=$(kib)
echo
echo "| phase | requests | distinct sessions | RSS | peak RSS during |"
echo "|---|---|---|---|---|"
echo "| idle (after one check) | - | 1 | $(mib "$IDLE") MiB | - |"
echo "| 50 connections, rotating through the sessions | $R1 | $(( R1 < SESSIONS ? R1 : SESSIONS )) | $(mib "$AFTER1") MiB after | $(mib "$P1") MiB |"
echo "| $MANY connections, the same $SESSIONS sessions again | $R2 | $(( R2 < SESSIONS ? R2 : SESSIONS )) | $(mib "$AFTER2") MiB 2 s after | $(mib "$P2") MiB |"
echo
echo "RSS, one reading about every 1.5 s, 50 connections (MiB): $S1"
echo "RSS, one reading about every 1.5 s, $MANY connections (MiB): $S2"
[ "$R1" -ge "$SESSIONS" ] || echo "NOTE: the 50-connection run checked only $R1 of the $SESSIONS sessions; raise DURATION"
footer
