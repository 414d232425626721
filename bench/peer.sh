#!/usr/bin/env bash
# Row 9 of bench/README.md, with rows 1 and 4 in the same run: portcullis side by side with its
# peer, Apache httpd + mod_auth_openidc (Debian's apache2 and libapache2-mod-auth-openidc,
# bench/install.sh), both relying parties of the same OpenID Provider (tests/e2e/idp:
# oidc-provider 8, one client registered for each), all on free loopback ports:
#   floor              bench/floor.rs: 200 + identity headers, no work
#   portcullis         `portcullis serve`: valid session cookie (200); no session, browser (302)
#   Apache, no auth    the same Apache serving the same empty file without the module (its floor)
#   Apache + module    AuthType openid-connect, OIDCSessionType client-cookie (the session is an
#                      encrypted JWT in the cookie): valid cookie (200); no cookie with
#                      `Accept: text/html` (302 with state cookie, nonce, PKCE)
# The session cookies come from scripted logins through each relying party (bench/login.py).
# Apache runs unprivileged (as www-data when this script runs as root) in the foreground with its
# own ServerRoot, PidFile and ErrorLog under a temporary directory: mpm_event with Debian's
# default worker settings, KeepAlive without a request limit (as hyper), no access log.
# Each row: wrk -t2 -c50 -d${DURATION}s --latency; server CPU µs/request summed over all the
# server's processes (Apache's parent and workers) from /proc before and after. ROUNDS>1 repeats
# the rows in turn.
#
#   bench/peer.sh                  (DURATION=10, ROUNDS=1, LOG=info)
#   SKIP_BUILD=1 DURATION=8 ROUNDS=2 bench/peer.sh
#   PERF_OUT=target/bench-perf bench/peer.sh   (then one more valid-cookie run per relying party
#                                              under `perf record`: CPU by shared object; perf
#                                              is Debian's linux-perf, not in bench/install.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
source bench/oidc.sh
DURATION="${DURATION:-10}"
ROUNDS="${ROUNDS:-1}"
APACHE2="${APACHE2:-/usr/sbin/apache2}"
MODULES="${APACHE_MODULES:-/usr/lib/apache2/modules}"
need wrk curl node python3
[ -x "$APACHE2" ] && [ -e "$MODULES/mod_auth_openidc.so" ] ||
  { echo "apache2 or mod_auth_openidc missing: run bench/install.sh" >&2; exit 1; }
# mod_auth_openidc re-seals a client-cookie session once its last update is older than 10 % of
# OIDCSessionInactivityTimeout (at most 60 s); wrk keeps sending the old cookie, so a longer row
# would measure a re-seal per request. Each Apache valid-cookie row starts with a fresh login.
[ "$DURATION" -le 50 ] || { echo "DURATION must be ≤ 50 s (see the comment above)" >&2; exit 1; }
build_release --bin portcullis --example floor

F=$(free_port); IDP_PORT=$(free_port); PC_PORT=$(free_port); AP_PORT=$(free_port)
PC_SECRET=$(rand_token 24); AP_SECRET=$(rand_token 24)
PC_CALLBACK="http://127.0.0.1:$PC_PORT/oauth2/callback"
AP_CALLBACK="http://127.0.0.1:$AP_PORT/redirect_uri"

"$FLOOR" "127.0.0.1:$F" >"$WORK/floor.log" 2>&1 &
FLOOR_PID=$!
start_idp "$IDP_PORT" "[$(client_json portcullis-bench "$PC_SECRET" "$PC_CALLBACK"),$(
  client_json apache-bench "$AP_SECRET" "$AP_CALLBACK")]"
start_serve "$BIN" "$PC_PORT" portcullis-bench "$PC_SECRET"

# Apache: its own tree under $WORK, owned by the user it runs as.
AP="$WORK/apache"
mkdir -p "$AP/htdocs" "$AP/run"
: >"$AP/htdocs/app"
: >"$AP/htdocs/open"
cat >"$AP/httpd.conf" <<EOF
ServerRoot "$AP"
ServerName 127.0.0.1
Listen 127.0.0.1:$AP_PORT
PidFile "$AP/run/httpd.pid"
DefaultRuntimeDir "$AP/run"
ErrorLog "$AP/error.log"
LogLevel warn
LoadModule mpm_event_module $MODULES/mod_mpm_event.so
LoadModule authn_core_module $MODULES/mod_authn_core.so
LoadModule authz_core_module $MODULES/mod_authz_core.so
LoadModule authz_user_module $MODULES/mod_authz_user.so
LoadModule auth_openidc_module $MODULES/mod_auth_openidc.so

# mpm_event as Debian ships it (/etc/apache2/mods-available/mpm_event.conf).
StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0
KeepAlive On
KeepAliveTimeout 5
MaxKeepAliveRequests 0

DocumentRoot "$AP/htdocs"

OIDCProviderMetadataURL $IDP_ISSUER/.well-known/openid-configuration
OIDCClientID apache-bench
OIDCClientSecret $AP_SECRET
OIDCRedirectURI $AP_CALLBACK
OIDCCryptoPassphrase $(rand_token 32)
OIDCScope "openid email profile groups"
OIDCPKCEMethod S256
OIDCSessionType client-cookie

<Location />
  AuthType openid-connect
  Require valid-user
</Location>
# The same empty file without authentication: what Apache costs on its own.
<Location /open>
  AuthType None
  Require all granted
</Location>
EOF
if [ "$(id -u)" = 0 ]; then
  chmod 711 "$WORK"
  chown -R www-data:www-data "$AP"
  setpriv --reuid=www-data --regid=www-data --clear-groups \
    "$APACHE2" -f "$AP/httpd.conf" -D FOREGROUND >"$WORK/apache.out" 2>&1 &
else
  "$APACHE2" -f "$AP/httpd.conf" -D FOREGROUND >"$WORK/apache.out" 2>&1 &
fi
AP_PID=$!
wait_http "http://127.0.0.1:$AP_PORT/open" 100 || { cat "$WORK/apache.out" "$AP/error.log" >&2; exit 1; }
APACHE_MPM=$("$APACHE2" -f "$AP/httpd.conf" -V 2>/dev/null | awk -F: '/Server MPM/{gsub(/ /,"",$2); print $2}')

login_cookie() { # URL CALLBACK PREFIX
  "$PY" bench/login.py cookie --url "$1" --callback "$2" --cookie-prefix "$3"
}
PC_COOKIE=$(login_cookie "http://127.0.0.1:$PC_PORT/app" "$PC_CALLBACK" _portcullis)
AP_COOKIE=$(login_cookie "http://127.0.0.1:$AP_PORT/app" "$AP_CALLBACK" mod_auth_openidc_session)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "cookie: $AP_COOKIE" "http://127.0.0.1:$AP_PORT/app")" = 200 ] ||
  { echo "Apache refused its own session cookie" >&2; cat "$AP/error.log" >&2; exit 1; }

# wrk counts a 302 as a success: after a valid-cookie row, the same request must still be a 200
# without a Set-Cookie (no re-sealed session), or the row did not measure what it says.
still_valid() { # URL COOKIE
  local head
  head=$(curl -s -o /dev/null -D - -H "accept: application/json" -H "cookie: $2" "$1")
  echo "$head" | head -1 | grep -q ' 200' || { echo "not 200 with the session cookie: $1" >&2; echo "$head" >&2; exit 1; }
  ! echo "$head" | grep -qi '^set-cookie' || echo "(warning: $1 answered with Set-Cookie on a valid cookie: the session was re-sealed)"
}
tree_pids() { echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); }
mib() { python3 -c "print(round($1/1024, 1))"; }
rss_kb() { local s=0 p; for p in $(tree_pids "$1"); do s=$((s + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done; echo "$s"; }
pss_kb() { local s=0 p; for p in $(tree_pids "$1"); do s=$((s + $(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup"))); done; echo "$s"; }
sleep 1
IDLE=()
for name_pid in "floor:$FLOOR_PID" "portcullis serve:$SERVE_PID" "Apache + mod_auth_openidc:$AP_PID"; do
  IDLE+=("| ${name_pid%%:*} | $(echo $(tree_pids "${name_pid#*:}") | wc -w) | $(mib "$(rss_kb "${name_pid#*:}")") MiB | $(mib "$(pss_kb "${name_pid#*:}")") MiB |")
done

header
for round in $(seq "$ROUNDS"); do
  wrk_row "floor (200 + headers)" "$FLOOR_PID" "http://127.0.0.1:$F/app" "accept: application/json"
  wrk_row "portcullis, valid cookie (200)" "$SERVE_PID" "http://127.0.0.1:$PC_PORT/app" \
    "accept: application/json" "cookie: $PC_COOKIE"
  still_valid "http://127.0.0.1:$PC_PORT/app" "$PC_COOKIE"
  wrk_row "portcullis, no session, browser (302)" "$SERVE_PID" "http://127.0.0.1:$PC_PORT/app" \
    "accept: text/html"
  wrk_row "Apache, no auth (empty file, 200)" "$AP_PID" "http://127.0.0.1:$AP_PORT/open" \
    "accept: application/json"
  AP_COOKIE=$(login_cookie "http://127.0.0.1:$AP_PORT/app" "$AP_CALLBACK" mod_auth_openidc_session)
  wrk_row "Apache + mod_auth_openidc, valid cookie (200)" "$AP_PID" "http://127.0.0.1:$AP_PORT/app" \
    "accept: application/json" "cookie: $AP_COOKIE"
  still_valid "http://127.0.0.1:$AP_PORT/app" "$AP_COOKIE"
  wrk_row "Apache + mod_auth_openidc, no cookie, browser (302)" "$AP_PID" \
    "http://127.0.0.1:$AP_PORT/app" "accept: text/html"
done
if [ -n "${PERF_OUT:-}" ]; then
  # Where the CPU goes, by shared object: perf samples of each server's process tree during one
  # more valid-cookie run (not in the table above: sampling costs CPU too).
  need perf
  mkdir -p "$PERF_OUT"
  AP_COOKIE=$(login_cookie "http://127.0.0.1:$AP_PORT/app" "$AP_CALLBACK" mod_auth_openidc_session)
  for row in "apache:$AP_PID:$AP_PORT:$AP_COOKIE" "portcullis:$SERVE_PID:$PC_PORT:$PC_COOKIE"; do
    IFS=: read -r name pid port cookie <<<"$row"
    perf record -q -F 999 -g -o "$PERF_OUT/$name.data" -p "$(tree_pids "$pid" | tr ' ' ',')" \
      >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
    wrk -t2 -c50 -d"${DURATION}s" -H "accept: application/json" -H "cookie: $cookie" \
      "http://127.0.0.1:$port/app" >/dev/null
    kill -INT "$perf_pid"; wait "$perf_pid" || true
    echo
    echo "perf, $name, valid cookie: share of CPU samples by shared object (top 12)"
    echo '```'
    perf report -i "$PERF_OUT/$name.data" --stdio --no-children --sort dso 2>/dev/null |
      grep -E '^ +[0-9]' | head -12
    echo '```'
  done
fi
echo
echo "| server | processes | RSS idle (sum) | PSS idle (sum) |"
echo "|---|---|---|---|"
printf '%s\n' "${IDLE[@]}"
echo
echo "session cookies (name=value): portcullis ${#PC_COOKIE} bytes, mod_auth_openidc ${#AP_COOKIE} bytes"
echo "Apache $("$APACHE2" -v | awk -F/ '/version/{print $2}'), MPM $APACHE_MPM; mod_auth_openidc $(dpkg-query -W -f '${Version}' libapache2-mod-auth-openidc 2>/dev/null || echo '?')"
echo "Apache processes after the run: $(echo $(tree_pids "$AP_PID") | wc -w)"
footer
