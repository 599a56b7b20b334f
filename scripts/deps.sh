#!/usr/bin/env bash
# Installs the Debian packages story-gateway needs to build, run and test.
# As root it installs what is missing; otherwise it prints the one command to run.
set -euo pipefail

packages=(
    gcc make pkg-config binutils
    libfcgi-dev libhiredis-dev libjansson-dev libjwt-dev libcurl4-openssl-dev
    libsodium-dev libcmocka-dev
    lighttpd redis-server redis-tools
    curl jq openssl ca-certificates procps iproute2
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "story-gateway needs these Debian packages; run as root:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
