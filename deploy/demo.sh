#!/usr/bin/env bash
# The ctquota demo (README "Run the demo"). As root on a fresh Debian 12 machine:
#
#   deploy/demo.sh [--duration SECONDS] [--interval SECONDS]
#
# Installs what is missing (deploy/install-deps.sh), builds ctquotad in
# build-demo/, then tests/netns/demo.py takes over: a throwaway PostgreSQL,
# network namespaces subscribers -> gateway -> servers with NAT and conntrack,
# eight IPv4/IPv6 subscribers, ctquotad in the gateway namespace, continuous
# TCP and UDP traffic at different rates, and the per-subscriber usage table
# every few seconds. Ctrl-C (or the end of --duration) stops the traffic,
# stops ctquotad (it flushes), prints the final totals and removes everything
# it created: processes, namespaces, the database cluster. The host's own
# network configuration is not touched.
#
# --duration makes it non-interactive (smoke test): the exit status is 0 when
# ctquotad stopped cleanly and every subscriber's usage grew.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD="$ROOT/build-demo"

for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    esac
done
if [[ $(id -u) -ne 0 ]]; then
    echo "deploy/demo.sh needs root (network namespaces, nftables, conntrack)" >&2
    exit 1
fi

echo "==> dependencies"
"$ROOT/deploy/install-deps.sh"

echo "==> building ctquotad in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$BUILD" -j2 --target ctquotad

echo "==> demo"
# exec: Ctrl-C goes to the demo alone, which stops everything in order.
exec python3 "$ROOT/tests/netns/demo.py" --bin "$BUILD/daemon/app/ctquotad" "$@"
