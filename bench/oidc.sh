# Sourced after bench/lib.sh by bench/login.sh and bench/peer.sh: the real OpenID Provider of the
# end-to-end tests (tests/e2e/idp/server.mjs, the npm oidc-provider 8) and `portcullis serve`
# as one of its clients, both on loopback ports chosen by the caller.
# shellcheck shell=bash

IDP_DIR="$ROOT/tests/e2e/idp"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3

rand_b64() { head -c "$1" /dev/urandom | base64 | tr -d '\n'; }
rand_token() { head -c "$1" /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'; }

# client_json ID SECRET REDIRECT_URI: one client of server.mjs's IDP_CLIENT list (confidential,
# client_secret_basic, authorization_code + refresh_token: server.mjs's defaults).
client_json() {
  printf '{"client_id":"%s","client_secret":"%s","redirect_uris":["%s"]}' "$1" "$2" "$3"
}

# start_idp PORT CLIENTS_JSON: node server.mjs on 127.0.0.1:PORT. Sets IDP_PID and IDP_ISSUER.
start_idp() {
  [ -d "$IDP_DIR/node_modules/oidc-provider" ] ||
    { echo "$IDP_DIR/node_modules is missing: run scripts/install-test-deps.sh" >&2; exit 1; }
  (cd "$IDP_DIR" && IDP_PORT=$1 IDP_CLIENT=$2 exec node server.mjs) >"$WORK/idp.log" 2>&1 &
  IDP_PID=$!
  IDP_ISSUER="http://127.0.0.1:$1"
  wait_http "$IDP_ISSUER/.well-known/openid-configuration" ||
    { cat "$WORK/idp.log" >&2; exit 1; }
}

# start_serve BIN PORT CLIENT_ID CLIENT_SECRET: `portcullis serve` on 127.0.0.1:PORT as a
# client of $IDP_ISSUER (cookie session, plain http, log level $LOG). Sets SERVE_PID.
start_serve() {
  local bin=$1 port=$2 admin grpc
  admin=$(free_port); grpc=$(free_port)
  cat >"$WORK/portcullis.toml" <<EOF
[server]
http_address = "127.0.0.1:$port"
grpc_address = "127.0.0.1:$grpc"
admin_address = "127.0.0.1:$admin"

[oidc]
issuer_url = "$IDP_ISSUER"
client_id = "$3"
client_secret = "$4"
scopes = ["openid", "email", "profile", "groups"]

[cookie]
secret = "$(rand_b64 32)"
secure = false

[authz]
redirect_domains = ["127.0.0.1:*"]

[log]
level = "$LOG"
EOF
  env -u RUST_LOG "$bin" serve --config "$WORK/portcullis.toml" >"$WORK/portcullis.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "portcullis serve not ready" >&2; cat "$WORK/portcullis.log" >&2; exit 1
}
