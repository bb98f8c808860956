#!/usr/bin/env bash
# The floors of daemon/ (daemon/CMakeLists.txt): every project include of a
# folder must name a folder it may use. Prints each offending line; exit 1 if any.
set -euo pipefail
cd "$(dirname "$0")/../daemon"

declare -A allowed=(
    [core]="core"
    [metrics]="metrics"
    [conntrack]="conntrack core"
    [drops]="drops core"
    [store]="store core"
    [enforce]="enforce core"
    [runtime]="runtime sinks conntrack drops store metrics core"
    [sinks]="sinks store metrics core"
    [api]="api store metrics core"
    [notify]="notify store metrics core"
    [policy]="policy runtime enforce store metrics core"
    [app]="app api policy notify runtime sinks enforce store conntrack drops metrics core"
)

bad=0
checked=0
for folder in */; do
    folder=${folder%/}
    if [[ -z ${allowed[$folder]+x} ]]; then
        echo "layout: daemon/$folder is not in the table of floors (tests/layout_check.sh)"
        bad=1
        continue
    fi
    while IFS= read -r line; do
        file=${line%%:*}
        target=$(sed -E 's/.*#include "([a-z_]+)\/.*/\1/' <<<"$line")
        checked=$((checked + 1))
        if [[ " ${allowed[$folder]} " != *" $target "* ]]; then
            echo "layout: daemon/$file includes $target/, which $folder/ may not use"
            bad=1
        fi
    done < <(grep -HnE '#include "[a-z_]+/' "$folder"/*.hpp "$folder"/*.cpp "$folder"/*.in 2>/dev/null || true)
done
echo "layout: $checked includes checked"
if ((bad)); then
    echo "0 passed, 1 failed"
    exit 1
fi
echo "1 passed, 0 failed"
