#!/usr/bin/env bash
# The test command (README): installs what is missing, builds the two CI
# configurations (warnings as errors; ASan+UBSan), starts a throwaway
# PostgreSQL and runs every suite: unit, db, netns, bench smoke.
# Run as root from the repository root or anywhere: tests/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-$(nproc)}
PG_PORT=${CTQUOTA_TEST_PG_PORT:-54329}
PG_DIR=$(mktemp -d /tmp/ctquota-test-pg.XXXXXX)

log() { printf '\n==> %s  [%s]\n' "$*" "$(date +%T)"; }

cleanup() {
    if [[ -n ${RELEASE_BUILD:-} ]]; then
        kill "$RELEASE_BUILD" 2>/dev/null || true  # usually long finished
    fi
    "$ROOT/deploy/pg-throwaway.sh" stop "$PG_DIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

if [[ $(id -u) -ne 0 ]]; then
    echo "tests/run.sh needs root (network namespaces, nftables, conntrack)" >&2
    exit 1
fi

log "dependencies"
"$ROOT/deploy/install-deps.sh"

# The ASan+UBSan build first; the release build then runs at the lowest CPU
# priority while the sanitized suites run (they leave most of the two cores
# idle: they wait on packets, timeouts and polls), and its suites after.
log "build: ASan+UBSan (build/asan)"
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug -DCTQUOTA_WERROR=ON -DCTQUOTA_SANITIZE=ON >/dev/null
cmake --build build/asan -j"$JOBS"

log "build: release, warnings as errors (build/ci), in the background at nice 19"
# Line tables only (-g1): stack traces keep file:line, the build takes a
# quarter less time than with full debug information.
cmake -S . -B build/ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCTQUOTA_WERROR=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" >/dev/null
RELEASE_LOG=$(mktemp /tmp/ctquota-release-build.XXXXXX)
nice -n 19 cmake --build build/ci -j"$JOBS" >"$RELEASE_LOG" 2>&1 &
RELEASE_BUILD=$!

log "throwaway PostgreSQL in $PG_DIR"
CTQUOTA_TEST_DB_URL=$("$ROOT/deploy/pg-throwaway.sh" start "$PG_DIR" "$PG_PORT")
export CTQUOTA_TEST_DB_URL
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp

status=0
# Under the sanitizers: every suite except the benchmarks' smoke runs and the
# real-traffic rate/latency measurements (label timing): a sanitized binary
# is several times slower, which says nothing about its correctness; the
# code they drive runs sanitized in enforce_kernel and the netns suites.
# Suites that assert the same whatever the build run once, to keep CI under
# 30 minutes: label sanitized_only (exact totals and records, asserted of a
# sanitized daemon) only here, label release_only (the tooling's self-check,
# the browser test) only in the release build.
log "ctest: ASan+UBSan build (all suites but bench, timing and release_only; the daemon runs sanitized in the netns tests)"
ctest --test-dir build/asan --output-on-failure -j"$JOBS" -LE "bench|timing|release_only" || status=1

log "build: waiting for the release build"
if ! wait "$RELEASE_BUILD"; then
    tail -n 100 "$RELEASE_LOG"
    echo "release build failed (whole log: $RELEASE_LOG)" >&2
    exit 1
fi
tail -n 3 "$RELEASE_LOG"

log "ctest: release build (all suites but sanitized_only)"
ctest --test-dir build/ci --output-on-failure -j"$JOBS" -LE sanitized_only || status=1

exit $status
