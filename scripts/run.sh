#!/usr/bin/env bash
# make run: a private redis-server (unless REDIS_URL is set) and lighttpd in the
# foreground on http://127.0.0.1:${PORT:-8080}, spawning the gateway. Ctrl-C stops all.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
export SG_ROOT=$root SG_VAR=$root/var SG_BIN=$root/build/story-gateway
export PORT=${PORT:-8080} BIND=${BIND:-127.0.0.1}
mkdir -p "$SG_VAR"
chmod 700 "$SG_VAR"

# A JWT secret that survives restarts, unless the environment gives one.
if [ -z "${JWT_SECRET:-}" ]; then
    if [ ! -s "$SG_VAR/jwt_secret" ]; then
        (umask 077 && openssl rand -hex 32 > "$SG_VAR/jwt_secret")
    fi
    JWT_SECRET=$(cat "$SG_VAR/jwt_secret")
    export JWT_SECRET
fi
export RATE_LIMITS_FILE=${RATE_LIMITS_FILE:-$root/limits.json}

redis_pid=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

if [ -z "${REDIS_URL:-}" ]; then
    # Private Redis on a unix socket: no port to collide with, data in var/.
    rm -f "$SG_VAR/redis.sock"
    redis-server --port 0 --unixsocket "$SG_VAR/redis.sock" --unixsocketperm 700 \
        --dir "$SG_VAR" --appendonly yes --save "" --daemonize no \
        --logfile "$SG_VAR/redis.log" &
    redis_pid=$!
    for _ in $(seq 50); do
        [ -S "$SG_VAR/redis.sock" ] && break
        sleep 0.1
    done
    if [ ! -S "$SG_VAR/redis.sock" ]; then
        echo "redis-server did not start; its log:" >&2
        tail -n 20 "$SG_VAR/redis.log" >&2
        exit 1
    fi
    export REDIS_URL="unix://$SG_VAR/redis.sock"
fi

echo "story-gateway on http://$BIND:$PORT/  (logs: var/lighttpd-error.log; Ctrl-C stops)"
# lighttpd -D leaves its stderr (and so the gateway's JSON log lines) on ours:
# show it and keep it in the error log too.
lighttpd -D -f "$root/lighttpd.conf" 2> >(tee -a "$SG_VAR/lighttpd-error.log" >&2) || true
