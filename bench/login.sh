#!/usr/bin/env bash
# Row 7 of bench/README.md: full logins. `portcullis serve` (release build) as a client of the
# real OpenID Provider of the e2e tests (tests/e2e/idp: oidc-provider 8 on node), both on free
# loopback ports; bench/login.py scripts N complete logins, each a fresh browser: start (302 to
# the IdP) -> the IdP's authorize, login form and consent form -> callback (code exchange and
# userinfo at the IdP, session cookie) -> the first allowed check. Once one login at a time, then
# with CONCURRENCY clients at once (threads). Reports logins/s, p50/p99 wall time per login, the
# CPU per login of portcullis, of the IdP (node) and of the client (utime+stime from /proc before
# and after), and p50/p99 of each step.
#
#   bench/login.sh                 (N=200 logins per level, CONCURRENCY="1 10", LOG=info)
#   SKIP_BUILD=1 N=500 CONCURRENCY="1 4 10" bench/login.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
source bench/oidc.sh
N="${N:-200}"
CONCURRENCY="${CONCURRENCY:-1 10}"
need curl node python3
build_release --bin portcullis

IDP_PORT=$(free_port)
PC_PORT=$(free_port)
SECRET=$(rand_token 24)
CALLBACK="http://127.0.0.1:$PC_PORT/oauth2/callback"
start_idp "$IDP_PORT" "[$(client_json portcullis-bench "$SECRET" "$CALLBACK")]"
start_serve "$BIN" "$PC_PORT" portcullis-bench "$SECRET"

# shellcheck disable=SC2086
"$PY" bench/login.py run --url "http://127.0.0.1:$PC_PORT/app" --callback "$CALLBACK" \
  --n "$N" --concurrency $CONCURRENCY --pid "portcullis=$SERVE_PID" --pid "IdP (node)=$IDP_PID"
echo
echo "RSS after the logins: portcullis $(rss "$SERVE_PID"), IdP (node) $(rss "$IDP_PID")"
footer
