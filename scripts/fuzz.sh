#!/usr/bin/env bash
# Bounded fuzzing of every cargo-fuzz target in fuzz/ (see fuzz/README.md), as run by
# scripts/test: one build of all targets (nightly, -O, debug assertions on, no sanitizer: the
# crate forbids unsafe code, and ASan would double the build), then each target for
# FUZZ_SECONDS (default 10) from its checked-in seeds (fuzz/seeds/<target>) plus a scratch
# corpus (fuzz/corpus/<target>, git-ignored). Any crash, assertion or timeout fails the run;
# the input is left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh                 # every target, FUZZ_SECONDS each
#   scripts/fuzz.sh cookie path     # only these
#   FUZZ_SECONDS=600 scripts/fuzz.sh redirect
#   FUZZ_SEED=1 scripts/fuzz.sh     # libFuzzer's -seed (default 0: a random one each run)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT/fuzz"
SECS="${FUZZ_SECONDS:-10}"
SEED="${FUZZ_SEED:-0}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
FLAGS=(-O -a --sanitizer none)

started=$(date +%s)
cargo "+$TOOLCHAIN" fuzz build "${FLAGS[@]}"
echo "fuzz: build took $(( $(date +%s) - started ))s"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "+$TOOLCHAIN" fuzz list)
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  echo "fuzz: $t for ${SECS}s"
  log="corpus/$t.log"
  status=0
  cargo "+$TOOLCHAIN" fuzz run "${FLAGS[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECS" -seed="$SEED" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '(DONE|stat::number_of_executed_units|stat::peak_rss_mb|panicked|SUMMARY|Test unit written|ERROR)' "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $status); reproduce with: cd fuzz && cargo +$TOOLCHAIN fuzz run ${FLAGS[*]} $t artifacts/$t/<file>" >&2
    grep -A3 panicked "$log" >&2 || true
    tail -40 "$log" >&2
    exit 1
  fi
done
echo "fuzz: all ${#targets[@]} targets ran clean in $(( $(date +%s) - started ))s"
