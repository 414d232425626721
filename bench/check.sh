#!/usr/bin/env bash
# Rows 1 and 4 of bench/README.md, side by side in one run on loopback:
#   floor            bench/floor.rs: 200 + identity headers, no work
#   valid cookie     portcullis check with a valid session cookie (HTTP ext_authz, 200)
#   no session       portcullis check from a browser without a session (302 + state, nonce,
#                    PKCE, pending-login cookie)
# Each row: wrk -t2 -c50 -d${DURATION}s --latency, plus the server's CPU time per request from
# /proc/<pid>/stat (utime+stime) before and after. ROUNDS>1 repeats the rows in turn, so a
# burst of load from elsewhere hits every row alike. BEFORE_BIN=path adds the valid-cookie row
# for another portcullis binary (a before/after comparison in the same run); PRELOAD=lib.so adds
# it for this binary run with LD_PRELOAD (e.g. another allocator: /usr/lib/x86_64-linux-gnu/
# libjemalloc.so.2 from Debian's libjemalloc2); PRELOAD_BIN=path runs another binary that way
# (e.g. one built with the system allocator, as mimalloc's #[global_allocator] ignores LD_PRELOAD).
#
#   bench/check.sh                         (DURATION=10, ROUNDS=1, LOG=info)
#   BEFORE_BIN=/tmp/old/portcullis ROUNDS=3 bench/check.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
need wrk curl python3
build_release --bin portcullis --example floor

F=$(free_port)
"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
start_dev "$BIN" NEW
if [ -n "${BEFORE_BIN:-}" ]; then start_dev "$BEFORE_BIN" OLD; fi
if [ -n "${PRELOAD:-}" ]; then LD_PRELOAD="$PRELOAD" start_dev "${PRELOAD_BIN:-$BIN}" PRE; fi
wait_http "http://127.0.0.1:$F/"
RSS_IDLE=$(rss "$NEW_PID")

header
for round in $(seq "$ROUNDS"); do
  wrk_row "floor (200 + headers)" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
  wrk_row "portcullis, valid cookie (200)" "$NEW_PID" "http://127.0.0.1:$NEW_PORT/app" \
    "accept: application/json" "cookie: $NEW_COOKIE"
  if [ -n "${BEFORE_BIN:-}" ]; then
    wrk_row "portcullis BEFORE_BIN ($(basename "$BEFORE_BIN")), valid cookie (200)" "$OLD_PID" "http://127.0.0.1:$OLD_PORT/app" \
      "accept: application/json" "cookie: $OLD_COOKIE"
  fi
  if [ -n "${PRELOAD:-}" ]; then
    wrk_row "portcullis ${PRELOAD_BIN:+$(basename "$PRELOAD_BIN") }with LD_PRELOAD=$(basename "$PRELOAD"), valid cookie (200)" "$PRE_PID" \
      "http://127.0.0.1:$PRE_PORT/app" "accept: application/json" "cookie: $PRE_COOKIE"
  fi
  wrk_row "portcullis, no session, browser (302)" "$NEW_PID" "http://127.0.0.1:$NEW_PORT/app" \
    "accept: text/html"
done
echo
echo "session cookie: ${#NEW_COOKIE} bytes (name=value)"
echo "RSS of portcullis idle (after one login): $RSS_IDLE; after the run: $(rss "$NEW_PID") (dev mode: proxy + development issuer in one process)"
footer
