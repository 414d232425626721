#!/usr/bin/env bash
# Build the portcullis binary exactly as the Dockerfile does and copy it to OUT_DIR/portcullis.
# The Dockerfile's builder stage runs this script, and the chart checks run it too, so the two
# cannot drift apart.
#
#   scripts/build-release.sh [OUT_DIR]        OUT_DIR defaults to <repo>/dist
#
# It runs `cargo build --release --locked --features otlp --bin portcullis` (Cargo.lock must be
# current), then prints the built binary's --version as a smoke test.
#
# Environment:
#   CARGO_TARGET_DIR  cargo's build directory (default <repo>/target; a relative path is taken
#                     from the repository root). The Dockerfile points it at a cache mount.
#   BUILD_PROFILE     cargo profile, default "release". "dev" gives a fast debug build that
#                     reuses `cargo build`'s artifacts: tests/chart/test_dockerfile.py uses it to
#                     check this script without a second release build.
#   FEATURES          cargo features, default "otlp" (OTLP trace export, still off until
#                     tracing.otlp_endpoint is set); empty for none.
#   CARGO             the cargo to run (default: cargo).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$ROOT/dist}"
PROFILE="${BUILD_PROFILE:-release}"
CARGO="${CARGO:-cargo}"
FEATURES="${FEATURES-otlp}"

say() { printf 'build-release: %s\n' "$*"; }
die() { printf 'build-release: error: %s\n' "$*" >&2; exit 1; }

[ $# -le 1 ] || die "usage: scripts/build-release.sh [OUT_DIR]"
command -v "$CARGO" >/dev/null || die "$CARGO not found (install the Rust toolchain)"

# Resolve OUT_DIR against the caller's directory before moving to the repository root.
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$ROOT"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
export CARGO_TARGET_DIR="$TARGET_DIR"

case "$PROFILE" in
  release) profile_args=(--release); profile_dir=release ;;
  dev)     profile_args=(--profile dev); profile_dir=debug ;;
  *)       profile_args=(--profile "$PROFILE"); profile_dir="$PROFILE" ;;
esac

say "$("$CARGO" --version)"
feature_args=()
[ -z "$FEATURES" ] || feature_args=(--features "$FEATURES")
say "cargo build ${profile_args[*]} --locked ${feature_args[*]:+${feature_args[*]} }--bin portcullis (target dir $TARGET_DIR)"
"$CARGO" build "${profile_args[@]}" --locked "${feature_args[@]}" --bin portcullis

built="$TARGET_DIR/$profile_dir/portcullis"
[ -x "$built" ] || die "cargo finished but $built is missing"
# Copy to a temporary name and rename, so OUT_DIR never holds a half-written binary.
install -m 0755 "$built" "$OUT_DIR/.portcullis.tmp"
mv -f "$OUT_DIR/.portcullis.tmp" "$OUT_DIR/portcullis"
say "$("$OUT_DIR/portcullis" --version) -> $OUT_DIR/portcullis"
