# Shared by the bench/*.sh scripts (sourced, not run). Loopback only; free ports from the OS.
# shellcheck shell=bash

BIN="${PORTCULLIS_BIN:-$ROOT/target/release/portcullis}"
FLOOR="$ROOT/target/release/examples/floor"
LOG="${LOG:-info}"
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d)
cleanup() {
  local pids
  pids=$(jobs -p)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$tool missing: run bench/install.sh" >&2; exit 1; }
  done
}

# cargo build --release of the given targets (SKIP_BUILD=1: use what is in target/release).
build_release() {
  [ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked "$@" 2>&1 | tail -1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url [tries]
  for _ in $(seq "${2:-200}"); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "not answering: $1" >&2; return 1
}

# start_dev BIN PREFIX: `portcullis dev` (proxy + development issuer), then a login as alice.
# Sets PREFIX_PID, PREFIX_PORT, PREFIX_IDP, PREFIX_GRPC, PREFIX_ADMIN and PREFIX_COOKIE.
start_dev() {
  local bin=$1 p=$2 port idp admin grpc pid
  port=$(free_port); idp=$(free_port); admin=$(free_port); grpc=$(free_port)
  RUST_LOG="$LOG" "$bin" dev --port "$port" --idp-port "$idp" --admin-port "$admin" \
    --grpc-port "$grpc" >"$WORK/dev-$p.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  local jar="$WORK/jar-$p" auth cb cookie
  auth=$(curl -s -o /dev/null -w '%{redirect_url}' -c "$jar" -b "$jar" -H 'accept: text/html' "http://127.0.0.1:$port/")
  cb=$(curl -s -o /dev/null -w '%{redirect_url}' "$auth&login_hint=alice")
  curl -s -o /dev/null -c "$jar" -b "$jar" "$cb"
  cookie=$(awk '$6=="_portcullis"{print "_portcullis="$7}' "$jar")
  [ -n "$cookie" ] || { echo "login failed" >&2; cat "$WORK/dev-$p.log" >&2; exit 1; }
  printf -v "${p}_PID" '%s' "$pid"
  printf -v "${p}_PORT" '%s' "$port"
  printf -v "${p}_IDP" '%s' "$idp"
  printf -v "${p}_GRPC" '%s' "$grpc"
  printf -v "${p}_ADMIN" '%s' "$admin"
  printf -v "${p}_COOKIE" '%s' "$cookie"
}

# CPU ticks (user + system) of a process and all its threads, plus those of its children: live
# ones read recursively, exited ones from its cutime + cstime (Apache's parent and workers; for a
# process without children this is its own utime + stime).
cpu_ticks() {
  local t c
  t=$(awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0)
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do t=$((t + $(cpu_ticks "$c"))); done
  echo "$t"
}
# CPU µs per request between two tick readings.
cpu_us() { python3 -c "print(round(($2-$1)/$TICK*1e6/max($3,1),1))"; }
rss() { awk '/VmRSS/{print $2, $3}' "/proc/$1/status"; }

header() {
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| row | req/s | p50 | p99 | p99.9 | server CPU µs/req | non-2xx |"
  echo "|---|---|---|---|---|---|---|"
}

# wrk_row NAME PID URL [HEADER...]: one wrk run; PID is the server whose CPU is counted
# (several PIDs, space-separated, are summed). WRK_SCRIPT=file.lua adds `-s file.lua`.
wrk_row() {
  local name=$1 pids=$2 url=$3; shift 3
  local args=() h before=0 after=0 xbefore=0 xafter=0 out reqs p
  for h in "$@"; do args+=(-H "$h"); done
  for p in $pids; do before=$((before + $(cpu_ticks "$p"))); done
  for p in ${EXTRA_PIDS:-}; do xbefore=$((xbefore + $(cpu_ticks "$p"))); done
  out=$(wrk -t2 -c"${CONNECTIONS:-50}" -d"${DURATION}s" --latency ${WRK_SCRIPT:+-s "$WRK_SCRIPT"} "${args[@]}" "$url")
  for p in $pids; do after=$((after + $(cpu_ticks "$p"))); done
  for p in ${EXTRA_PIDS:-}; do xafter=$((xafter + $(cpu_ticks "$p"))); done
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps p50 p99 p999 non2xx extra=""
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  p999=$(echo "$out" | awk '$1=="99.900%"{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $5}')
  # EXTRA_PIDS (e.g. redis-server): their CPU per request, in one more column.
  [ -z "${EXTRA_PIDS+x}" ] || extra=" $( [ -n "$EXTRA_PIDS" ] && cpu_us "$xbefore" "$xafter" "$reqs" || echo -) |"
  printf '| %s | %s | %s | %s | %s | %s |%s %s |\n' "$name" "$rps" "$p50" "$p99" "${p999:--}" \
    "$(cpu_us "$before" "$after" "$reqs")" "$extra" "${non2xx:-0}"
}

footer() {
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src bench || echo '+changes'); machine: $(nproc) × $(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2); print $2}')"
}

# --- `portcullis serve` against bench/kit.rs (bench/bearer.sh, redis.sh, sessions100k.sh) ---
KIT="$ROOT/target/release/examples/bench_kit"

# start_kit: the OpenID provider / bearer issuer stub (discovery + JWKS of the bench keys).
# Sets KIT_PID and ISS.
start_kit() {
  local port
  port=$(free_port)
  "$KIT" serve "127.0.0.1:$port" >"$WORK/kit.log" 2>&1 &
  KIT_PID=$!
  ISS="http://127.0.0.1:$port"
  wait_http "$ISS/jwks"
}

# start_serve PREFIX [TOML...]: `portcullis serve` with a config file trusting $ISS for login
# and bearer tokens, plus the given TOML lines; waits for /readyz. Sets PREFIX_PID,
# PREFIX_PORT, PREFIX_ADMIN and PREFIX_CONFIG.
start_serve() {
  local p=$1 port admin grpc pid conf; shift
  port=$(free_port); admin=$(free_port); grpc=$(free_port)
  conf="$WORK/portcullis-$p.toml"
  {
    printf '[server]\nhttp_address = "127.0.0.1:%s"\ngrpc_address = "127.0.0.1:%s"\nadmin_address = "127.0.0.1:%s"\n' "$port" "$grpc" "$admin"
    printf '[oidc]\nissuer_url = "%s"\nclient_id = "bench"\nclient_secret = "bench"\n' "$ISS"
    printf '[cookie]\nsecret = "%s"\nsecure = false\n' "$(head -c32 /dev/urandom | base64)"
    printf '[log]\nlevel = "%s"\n' "$LOG"
    printf '%s\n' "$@"
  } >"$conf"
  "$BIN" serve --config "$conf" >"$WORK/serve-$p.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null || { echo "portcullis not ready" >&2; cat "$WORK/serve-$p.log" >&2; exit 1; }
  printf -v "${p}_PID" '%s' "$pid"
  printf -v "${p}_PORT" '%s' "$port"
  printf -v "${p}_ADMIN" '%s' "$admin"
  printf -v "${p}_CONFIG" '%s' "$conf"
}

# metric ADMIN_PORT NAME: one counter or gauge of portcullis's /metrics (0 when absent).
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1==n{v=$2} END{print v+0}'; }
