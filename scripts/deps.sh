#!/usr/bin/env bash
# Installs what story-gateway needs to build, run and test: Debian packages, and the npm
# packages of the browser test (tests/browser/, from its package-lock.json).
# As root it installs what is missing; otherwise it prints the one command to run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

packages=(
    gcc make pkg-config binutils
    libfcgi-dev libhiredis-dev libjansson-dev libjwt-dev libcurl4-openssl-dev
    libsodium-dev libcmocka-dev
    lighttpd redis-server redis-tools
    curl jq openssl ca-certificates procps iproute2
    apache2 libapache2-mod-fcgid
    clang libclang-rt-dev valgrind wrk
    chromium fonts-dejavu-core
)
# Node.js for the browser test: Debian's, unless a node and npm are already there.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "story-gateway needs these Debian packages; run as root:" >&2
        echo "  apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the services it installs; the tests start their own on free ports.
    for service in apache2 lighttpd; do
        if [ -d /run/systemd/system ]; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        fi
    done
fi

# The browser test's npm packages (playwright-core only; it drives Debian's chromium).
browser=$root/tests/browser
stamp=$browser/node_modules/.installed-lock.json
if [ -f "$browser/package-lock.json" ] && ! cmp -s "$browser/package-lock.json" "$stamp"; then
    echo "installing the browser test's npm packages" >&2
    (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$browser/package-lock.json" "$stamp"
fi
