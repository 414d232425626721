#!/usr/bin/env bash
# Row 5 of bench/README.md: bearer JWTs under load, side by side in one run on loopback:
#   floor               bench/floor.rs: 200 + identity headers, no work
#   valid cookie        portcullis check with a valid session cookie (the path to compare with)
#   cached bearer       the same `authorization: Bearer` JWT on every request (RS256, ES256):
#                       after the first, a cache hit (SHA-256 of the token + lookup)
#   unique bearer       a different JWT on every request (bench/rotate.lua walks a pool of
#                       POOL pre-signed tokens, kept in target/bench-tokens for a day): a cold
#                       verification each time; UNIQUE_DURATION (default DURATION) bounds these
#                       rows so that the run does not outlast the pool
# One `portcullis serve` trusts the issuer stub of bench/kit.rs (discovery + JWKS on loopback)
# for the login and its JWKS for bearer tokens; its session cookie is sealed by bench/kit.rs with the
# same configuration file. Each row: wrk -t2 -c50 -d${DURATION}s --latency, plus the server's
# CPU time per request from /proc/<pid>/stat. The unique rows also report how many requests
# were answered from the verified-token cache (portcullis_bearer_cache_hits_total), i.e. how
# many tokens repeated because the run outlasted the pool.
#
#   bench/bearer.sh          (DURATION=8, UNIQUE_DURATION=$DURATION, ROUNDS=1, POOL=100000, LOG=info)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
DURATION="${DURATION:-8}"
ROUNDS="${ROUNDS:-1}"
POOL="${POOL:-100000}"
need wrk curl python3
build_release --bin portcullis --example floor --example bench_kit

F=$(free_port)
"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
start_kit
# The bearer issuer has a fixed name (its JWKS is the stub's), so pools of signed tokens can be
# kept between runs: RS256 signing is slow (about 2 ms a token here).
BISS="https://bench-issuer.invalid"
start_serve P '[bearer]' 'enabled = true' 'accept_login_issuer = false' \
  '[[bearer.issuers]]' "issuer = \"$BISS\"" "jwks_uri = \"$ISS/jwks\"" 'audiences = ["api"]'
wait_http "http://127.0.0.1:$F/"
"$KIT" cookies "$P_CONFIG" 1 "$WORK/cookie"
COOKIE=$(head -1 "$WORK/cookie")
TOKENS="$ROOT/target/bench-tokens"
mkdir -p "$TOKENS"
for alg in RS256 ES256; do
  "$KIT" tokens "$BISS" "$alg" 1 "$WORK/cached-$alg" cached-
  pool="$TOKENS/pool-$alg-$POOL"
  if [ -z "$(find "$pool" -mmin -1440 2>/dev/null)" ]; then
    started=$(date +%s)
    "$KIT" tokens "$BISS" "$alg" "$POOL" "$pool.tmp" && mv "$pool.tmp" "$pool"
    echo "signed $POOL $alg tokens in $(( $(date +%s) - started )) s (not measured; kept in $pool for a day)"
  fi
  ln -sf "$pool" "$WORK/pool-$alg"
done
URL="http://127.0.0.1:$P_PORT/app"
for alg in RS256 ES256; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "authorization: Bearer $(head -1 "$WORK/pool-$alg")" "$URL")
  [ "$code" = 200 ] || { echo "$alg token refused: $code" >&2; cat "$WORK/serve-P.log" >&2; exit 1; }
done
echo

NOTES=()
unique_row() { # alg
  local alg=$1 v0 h0 v1 h1
  v0=$(metric "$P_ADMIN" portcullis_bearer_verifications_total)
  h0=$(metric "$P_ADMIN" portcullis_bearer_cache_hits_total)
  ROTATE_FILE="$WORK/pool-$alg" ROTATE_HEADER=authorization ROTATE_PREFIX='Bearer ' \
    DURATION="${UNIQUE_DURATION:-$DURATION}" WRK_SCRIPT=bench/rotate.lua wrk_row "portcullis, unique bearer $alg (cold verify)" "$P_PID" "$URL" \
    "accept: application/json"
  v1=$(metric "$P_ADMIN" portcullis_bearer_verifications_total)
  h1=$(metric "$P_ADMIN" portcullis_bearer_cache_hits_total)
  NOTES+=("unique $alg: $((v1 - v0)) bearer requests, $((h1 - h0)) of them cache hits (pool of $POOL)")
}

header
for round in $(seq "$ROUNDS"); do
  wrk_row "floor (200 + headers)" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
  wrk_row "portcullis, valid cookie" "$P_PID" "$URL" "accept: application/json" "cookie: $COOKIE"
  for alg in RS256 ES256; do
    wrk_row "portcullis, cached bearer $alg" "$P_PID" "$URL" "accept: application/json" \
      "authorization: Bearer $(cat "$WORK/cached-$alg")"
  done
  for alg in RS256 ES256; do unique_row "$alg"; done
done
echo
printf '%s\n' "${NOTES[@]}"
echo "token sizes: RS256 $(head -1 "$WORK/pool-RS256" | wc -c) bytes, ES256 $(head -1 "$WORK/pool-ES256" | wc -c) bytes; session cookie ${#COOKIE} bytes"
footer
