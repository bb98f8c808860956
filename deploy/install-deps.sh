#!/usr/bin/env bash
# Installs every build, test and run dependency of ctquota from Debian.
# Idempotent: packages already present are skipped; apt is only asked when
# something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git clang-format clang-tidy libhowardhinnant-date-dev tzdata
  libnetfilter-conntrack-dev libmnl-dev libnftables-dev
  libpqxx-dev libpq-dev nlohmann-json3-dev libcpp-httplib-dev libssl-dev
  libspdlog-dev libfmt-dev doctest-dev libtomlplusplus-dev robin-map-dev
  postgresql-15 postgresql-client-15
  nftables conntrack iproute2 procps iputils-ping socat python3 util-linux curl wrk openssl
  chromium
  # Drops after conntrack (daemon/drops/): the BPF program is compiled with
  # clang -target bpf and loaded with libbpf; its netns test turns the veths'
  # offloads off with ethtool.
  clang libbpf-dev ethtool
  # The API server (Boost.Beast) and the package / privileges suites.
  libboost-dev lintian man-db adduser systemd
  # The flow records' tests: nfcapd and nfdump, a real IPFIX collector.
  nfdump
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# The web test runs node and npm (playwright-core). Machines that already have
# them (e.g. from NodeSource, whose nodejs bundles npm) keep theirs: Debian's
# npm package would conflict with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
