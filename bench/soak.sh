#!/usr/bin/env bash
# Soak (issue 11): bench/soak.rs (example `soak`) against the release build of portcullis for
# DURATION seconds (default 600): 50 HTTP/1.1 keep-alive connections + 10 gRPC Check streams of mixed
# traffic, every answer checked, RSS and open fds of portcullis sampled every SAMPLE s (10).
# The generator starts and stops everything it needs (development issuer, JWKS server,
# portcullis with its own config) and exits 1 on any wrong answer, 5xx or growing memory.
#
#   bench/soak.sh                  600 s
#   DURATION=20 SAMPLE=2 bench/soak.sh    a smoke run
#
# The binary is built on its own (`cargo build --release --bin portcullis`, the features a user
# gets), the generator in a second invocation (it needs the dev-dependencies, whose features
# would otherwise leak into the binary). SKIP_BUILD=1 uses what is in target/release.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
build_release --bin portcullis
build_release --example soak
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
status=0
PORTCULLIS_BIN="$BIN" "$ROOT/target/release/examples/soak" "${DURATION:-600}" || status=$?
footer
exit "$status"
