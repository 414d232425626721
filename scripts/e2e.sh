#!/usr/bin/env bash
# End-to-end tests: real Envoy (HTTP ext_authz, Istio-style) + real OpenID Provider + portcullis.
#
#   cargo build && scripts/e2e.sh [pytest args...]
#
# It does not build portcullis: it tests $PORTCULLIS_BIN (default <repo>/target/debug/portcullis).
# Dependencies are installed first by scripts/install-test-deps.sh (fast when already there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${E2E_VENV:-$ROOT/.venv}"

"$ROOT/scripts/install-test-deps.sh"

export PORTCULLIS_BIN="${PORTCULLIS_BIN:-$ROOT/target/debug/portcullis}"
if [ ! -x "$PORTCULLIS_BIN" ]; then
  echo "e2e: no portcullis binary at $PORTCULLIS_BIN (run 'cargo build' first or set PORTCULLIS_BIN)" >&2
  exit 1
fi

cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q tests/e2e "$@"
