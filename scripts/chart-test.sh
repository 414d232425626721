#!/usr/bin/env bash
# Chart checks: lint and render helm/portcullis with Helm's own Go SDK (helm-python-sdk, no helm
# binary), validate every manifest against the Kubernetes schemas (kubernetes-validate), assert
# the fields that matter, and run `portcullis check-config` on the rendered config when a binary
# is there; plus the Dockerfile / scripts/build-release.sh checks (tests/chart/test_dockerfile.py).
#
#   scripts/chart-test.sh [pytest args...]
#
# Installs tests/chart/requirements.txt (and pytest, at the version tests/e2e/requirements.txt
# pins) into the project venv, creating it if missing; idempotent through a stamp file, so a
# second run installs nothing.
#
# Environment: PYTHON (interpreter for a new venv, default python3), E2E_VENV (the venv, default
# <repo>/.venv), PORTCULLIS_BIN (binary for the drift checks, default target/debug/portcullis;
# those checks skip when it is missing), BUILD_RELEASE_TEST=1 to also run scripts/build-release.sh
# end to end (a debug build into a temporary directory; see tests/chart/test_dockerfile.py).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${E2E_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
REQS="$ROOT/tests/chart/requirements.txt"

say() { printf 'chart-test: %s\n' "$*"; }
die() { printf 'chart-test: error: %s\n' "$*" >&2; exit 1; }

command -v "$PYTHON" >/dev/null || [ -x "$VENV/bin/python" ] || die "$PYTHON not found"

pytest_pin="$(grep -E '^pytest==' "$ROOT/tests/e2e/requirements.txt" 2>/dev/null || echo pytest)"
stamp="$VENV/.chart-requirements.sha256"
want="$( { cat "$REQS"; echo "$pytest_pin"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] \
   && "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, pytest' 2>/dev/null; then
  say "python venv up to date ($VENV)"
else
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating venv $VENV"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed (install python3-venv)"
  fi
  say "pip install -r tests/chart/requirements.txt $pytest_pin"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" "$pytest_pin"
  "$VENV/bin/python" -c 'import helm_python, kubernetes_validate, yaml, pytest'
  echo "$want" > "$stamp"
fi
say "$("$VENV/bin/python" -c 'import helm_python as h, kubernetes_validate as k; print("helm SDK", h.helm_sdk_version(), "/ kubernetes-validate", k.__version__)')"

cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q tests/chart "$@"
