# shellcheck shell=bash
# tests/integration/lib.sh: shared helpers for the integration suites.
#
# Source it first thing from every tests/integration/NN-*.sh script:
#
#     #!/usr/bin/env bash
#     set -u
#     . "$(dirname "$0")/lib.sh"
#     start_redis
#     start_stack
#     req GET /healthz
#     check_status "healthz answers 200" 200
#
# Works with `set -u` (and `set -o pipefail`); do NOT use `set -e` in a suite: a failed
# check must print "not ok" and let the script go on.
#
# Output is TAP-like and plan-free: one "ok N - desc" or "not ok N - desc" line per
# check, diagnostics on "#" lines. tests/run.sh counts the ok / not ok lines. On exit
# the script prints "# <name>: P passed, F failed" and exits 1 when a check failed.
#
# Everything a script starts (redis-server, lighttpd and the gateways it spawned, any
# PID given to track_pid) is stopped by PID on EXIT, never by process name.
#
# Assertion argument order is always: DESCRIPTION first, then the expectation.
#
# With SG_HOST=apache in the environment, start_stack / stop_stack run Apache + mod_fcgid
# instead of lighttpd (tests/integration/apache.sh says what changes for a suite).
#
# Globals set by this file (read them, do not assign them unless documented):
#   ROOT       absolute path of the repository
#   SG_BUILD   the build folder ($ROOT/build, or what the environment says: make asan)
#   TEST_NAME  script name without .sh, e.g. 20-accounts
#   TEST_DIR   scratch folder tests/out/$TEST_NAME/ (emptied when the script starts)
#   REDIS_PORT, REDIS_PID          after start_redis
#   PORT, LIGHTTPD_PID, SG_VAR     after start_stack
#   STACK_SURVIVORS                after stop_stack: gateway PIDs that outlived lighttpd
#   STATUS, HEADERS, BODY, BODY_FILE, REQ_DESC   after req
#   PASSED, FAILED                 counters

# ---------------------------------------------------------------------------- setup

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The build folder the gateway and unit binaries come from: make asan sets build-asan.
SG_BUILD=${SG_BUILD:-$ROOT/build}
TEST_NAME=$(basename "$0" .sh)
# SG_HOST=apache: the stack runs under Apache + mod_fcgid (apache.sh), in its own folder.
if [ "${SG_HOST:-}" == apache ]; then
    TEST_NAME="$TEST_NAME.apache"
fi
TEST_DIR="$ROOT/tests/out/$TEST_NAME"
rm -rf "$TEST_DIR"
mkdir -p "$TEST_DIR"

PASSED=0
FAILED=0
_CHECK_N=0
_TRACKED_PIDS=()
_USED_PORTS=" "
_REQ_N=0

REDIS_PORT=
REDIS_PID=
_REDIS_ARGS=()
PORT=
LIGHTTPD_PID=
SG_VAR=
STATUS=
HEADERS="$TEST_DIR/headers.txt"
BODY=
BODY_FILE="$TEST_DIR/body.bin"
REQ_DESC=

# A developer's shell must not leak into a test (a REDIS_URL pointing at a real Redis
# would be written to). Scripts set what they need after sourcing this file.
# SG_TEST_KEEP_ENV=1 keeps the caller's values (e.g. LOG_LEVEL=debug while debugging).
if [ "${SG_TEST_KEEP_ENV:-0}" != 1 ]; then
    unset REDIS_URL RATE_LIMITS_FILE RATE_LIMIT_FAIL_MODE TRUSTED_PROXIES JWT_SECRET \
        JWT_TTL MISTRAL_API_KEY MISTRAL_API_URL MISTRAL_MODEL MISTRAL_TIMEOUT \
        GATEWAY_THREADS ENVIRONMENT LOG_LEVEL METRICS_TOKEN METRICS_SHM
fi
# curl must never go through a proxy to reach 127.0.0.1.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

# ------------------------------------------------------------------------ reporting

# pass DESC: print "ok N - DESC" and count a pass.
pass() {
    _CHECK_N=$((_CHECK_N + 1))
    PASSED=$((PASSED + 1))
    printf 'ok %d - %s\n' "$_CHECK_N" "$1"
}

# fail DESC [DIAG...]: print "not ok N - DESC", then each DIAG as a "#   " line, and count
# a failure. When the last request is known, its method/path, status and the start of its
# body are printed too.
fail() {
    local desc=$1 line
    shift
    _CHECK_N=$((_CHECK_N + 1))
    FAILED=$((FAILED + 1))
    printf 'not ok %d - %s\n' "$_CHECK_N" "$desc"
    for line in "$@"; do
        printf '#   %s\n' "$line"
    done
    if [ -n "$REQ_DESC" ]; then
        printf '#   last request: %s -> %s\n' "$REQ_DESC" "$STATUS"
        printf '#   body: %s\n' "$(printf '%s' "$BODY" | head -c 300 | tr '\r\n' '  ')"
    fi
}

# note TEXT...: print a "# TEXT" diagnostic line (not counted).
note() {
    printf '# %s\n' "$*"
}

# bail DESC: fail DESC and stop the script now (exit 1, cleanup still runs). For a
# precondition without which the remaining checks mean nothing (stack did not start).
bail() {
    fail "$@"
    exit 1
}

# ------------------------------------------------------------------------ assertions

# check_eq DESC EXPECTED GOT: ok when the two strings are equal.
check_eq() {
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "got:      $3"; fi
}

# check_ne DESC UNEXPECTED GOT: ok when the two strings differ.
check_ne() {
    if [ "$2" != "$3" ]; then pass "$1"; else fail "$1" "expected anything but: $2"; fi
}

# check_match DESC REGEX STRING: ok when STRING matches the bash extended REGEX
# ([[ =~ ]], unanchored unless the regex has ^ / $).
check_match() {
    if [[ $3 =~ $2 ]]; then pass "$1"; else fail "$1" "expected to match: $2" "got: $3"; fi
}

# check_true DESC CMD [ARGS...]: ok when the command exits 0 (its output is hidden).
check_true() {
    local desc=$1
    shift
    if "$@" >/dev/null 2>&1; then pass "$desc"; else fail "$desc" "command failed: $*"; fi
}

# check_false DESC CMD [ARGS...]: ok when the command exits non-zero.
check_false() {
    local desc=$1
    shift
    if "$@" >/dev/null 2>&1; then fail "$desc" "command succeeded: $*"; else pass "$desc"; fi
}

# check_status DESC EXPECTED: ok when the last req's HTTP status ($STATUS) is EXPECTED.
# EXPECTED may list alternatives separated by "|", e.g. "400|431".
check_status() {
    if [[ "|$2|" == *"|$STATUS|"* ]]; then
        pass "$1"
    else
        fail "$1" "expected status: $2" "got status:      $STATUS"
    fi
}

# check_body DESC EXPECTED: ok when the last req's body is exactly EXPECTED (byte for
# byte, except that a trailing newline of the body is ignored).
check_body() {
    local got=${BODY%$'\n'}
    if [ "$got" == "$2" ]; then pass "$1"; else fail "$1" "expected body: $2" "got body:      $got"; fi
}

# check_json DESC FILTER EXPECTED_JSON: ok when `jq FILTER` on the last req's body equals
# EXPECTED_JSON, both compared as JSON (key order and spacing ignored). EXPECTED_JSON is
# JSON text: a string needs its quotes, e.g.  check_json "type" .token_type '"bearer"'.
# Fails when the body is not JSON.
check_json() {
    local got want
    if ! got=$(printf '%s' "$BODY" | jq -cS "$2" 2>&1); then
        fail "$1" "body is not JSON or filter failed: $2" "jq: $got"
        return
    fi
    if ! want=$(printf '%s' "$3" | jq -cS . 2>&1); then
        fail "$1" "bad EXPECTED_JSON in the test: $3"
        return
    fi
    if [ "$got" == "$want" ]; then
        pass "$1"
    else
        fail "$1" "filter:   $2" "expected: $want" "got:      $got"
    fi
}

# check_jq DESC FILTER: ok when `jq -e FILTER` on the last req's body is true (not
# false/null), e.g.  check_jq "id is 32 hex" '.user.id | test("^[0-9a-f]{32}$")'.
check_jq() {
    local got
    if got=$(printf '%s' "$BODY" | jq -ce "$2" 2>&1); then
        pass "$1"
    else
        fail "$1" "filter not true: $2" "jq gave: $got"
    fi
}

# check_header DESC NAME EXPECTED: ok when response header NAME of the last req is
# present and its value equals EXPECTED exactly.
check_header() {
    local got
    if ! got=$(hdr "$2"); then
        fail "$1" "header $2 missing; expected: $3"
    elif [ "$got" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "header $2" "expected: $3" "got:      $got"
    fi
}

# check_header_match DESC NAME REGEX: ok when header NAME is present and matches REGEX.
check_header_match() {
    local got
    if ! got=$(hdr "$2"); then
        fail "$1" "header $2 missing; expected to match: $3"
    elif [[ $got =~ $3 ]]; then
        pass "$1"
    else
        fail "$1" "header $2" "expected to match: $3" "got: $got"
    fi
}

# check_no_header DESC NAME: ok when the last req's response has no header NAME.
check_no_header() {
    local got
    if got=$(hdr "$2"); then fail "$1" "header $2 present: $got"; else pass "$1"; fi
}

# check_ratelimit_headers DESC: ok when the last response carries RateLimit-Limit,
# RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy and RateLimit (SPEC 5.4).
check_ratelimit_headers() {
    local h missing=
    for h in RateLimit-Limit RateLimit-Remaining RateLimit-Reset RateLimit-Policy RateLimit; do
        hdr "$h" >/dev/null || missing="$missing $h"
    done
    if [ -z "$missing" ]; then pass "$1"; else fail "$1" "missing headers:$missing"; fi
}

# check_no_ratelimit_headers DESC: ok when the last response has none of the five
# RateLimit headers of SPEC 5.4.
check_no_ratelimit_headers() {
    local h present=
    for h in RateLimit-Limit RateLimit-Remaining RateLimit-Reset RateLimit-Policy RateLimit; do
        hdr "$h" >/dev/null && present="$present $h"
    done
    if [ -z "$present" ]; then pass "$1"; else fail "$1" "present headers:$present"; fi
}

# ------------------------------------------------------------------------------ http

# req METHOD PATH [CURL_ARGS...]: send one request to the stack (http://127.0.0.1:$PORT)
# and set STATUS (3 digits, "000" when there was no HTTP answer), HEADERS (file with the
# response headers, last response block only), BODY (body text) and BODY_FILE (raw body).
# PATH is sent as is (--path-as-is, --globoff). Extra args go to curl, e.g.
#   req POST /signup -H 'Content-Type: application/json' -d '{"email":"a@b.c"}'
# HEAD is sent with curl -I. "Expect: 100-continue" is disabled. Timeout 10 s.
req() {
    local method=$1 path=$2 code
    shift 2
    local -a m=(-X "$method")
    [ "$method" == HEAD ] && m=(-I)
    _REQ_N=$((_REQ_N + 1))
    REQ_DESC="$method $path"
    : >"$HEADERS"
    : >"$BODY_FILE"
    if [ -z "$PORT" ]; then   # never fall back to port 80
        echo "req: no PORT (call start_stack first)" >&2
        STATUS=000 BODY=
        return 1
    fi
    code=$(curl -s --noproxy '*' --path-as-is --globoff --max-time 10 -H 'Expect:' \
        "${m[@]}" -o "$BODY_FILE" -D "$HEADERS.raw" -w '%{http_code}' \
        "$@" "http://127.0.0.1:$PORT$path" 2>/dev/null)
    STATUS=${code:-000}
    # Keep the last header block only (after a 100 Continue there are two), without CRs.
    if [ -f "$HEADERS.raw" ]; then
        awk '/^HTTP\// { n = 0; delete a } { sub(/\r$/, ""); a[n++] = $0 }
             END { for (i = 0; i < n; i++) print a[i] }' "$HEADERS.raw" >"$HEADERS"
        rm -f "$HEADERS.raw"
    fi
    BODY=$(tr -d '\0' <"$BODY_FILE" 2>/dev/null; printf x)
    BODY=${BODY%x}
}

# timed METHOD PATH [CURL_ARGS...]: one request to the stack that keeps no body or
# headers (safe in a background job); prints "<status> <seconds>", or "000 <max>" when
# no answer came within TIMED_MAX seconds (default 20).
timed() {
    local method=$1 path=$2 max=${TIMED_MAX:-20}
    shift 2
    curl -s --noproxy '*' --max-time "$max" -H 'Expect:' -X "$method" -o /dev/null \
        -w '%{http_code} %{time_total}\n' "$@" "http://127.0.0.1:$PORT$path" 2>/dev/null ||
        echo "000 $max"
}

# req_json METHOD PATH JSON [CURL_ARGS...]: req with Content-Type: application/json and
# JSON as the body (sent byte for byte with --data-binary).
req_json() {
    local method=$1 path=$2 json=$3
    shift 3
    req "$method" "$path" -H 'Content-Type: application/json' --data-binary "$json" "$@"
}

# hdr NAME: print the value of response header NAME (case-insensitive, CR stripped,
# leading/trailing blanks trimmed) from the last req; with repeated headers, their values
# joined by ", ". Returns 1 when the header is absent.
hdr() {
    awk -v want="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
        BEGIN { found = 0; out = "" }
        /^HTTP\// { next }
        {
            i = index($0, ":"); if (i == 0) next
            name = tolower(substr($0, 1, i - 1))
            if (name != want) next
            v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t\r]+$/, "", v)
            out = found ? out ", " v : v; found = 1
        }
        END { if (found) print out; exit found ? 0 : 1 }' "$HEADERS"
}

# wait_until TIMEOUT_S CMD [ARGS...]: run CMD every 0.1 s until it exits 0; return 0 then,
# or 1 after TIMEOUT_S seconds (may be fractional). CMD is re-run each time, but "$(...)"
# in its arguments is expanded once by the caller: poll a function instead, e.g.
#   wait_until 5 healthz_is 200
wait_until() {
    local deadline
    deadline=$(( $(date +%s%N) + $(awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000000000 }') ))
    shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s%N)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

# healthz_status: print the HTTP status of GET /healthz ("000" when nothing answers).
# Does not touch STATUS/BODY.
healthz_status() {
    [ -n "$PORT" ] || { echo 000; return 0; }
    curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$PORT/healthz" 2>/dev/null || true
}

# healthz_is CODE: return 0 when GET /healthz answers CODE now (for wait_until).
healthz_is() {
    [ "$(healthz_status)" == "$1" ]
}

# ----------------------------------------------------------------------------- ports

# port_in_use PORT: return 0 when something listens on 127.0.0.1:PORT (or any address).
port_in_use() {
    if ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; then
        return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: print a random TCP port in 20000-60000 that nothing listens on and that this
# script has not handed out before.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
        [[ $_USED_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        _USED_PORTS="$_USED_PORTS$p "
        echo "$p"
        return 0
    done
    echo "free_port: no free port found" >&2
    return 1
}

# ----------------------------------------------------------------------------- redis

# redis_cli [ARGS...]: redis-cli against the test Redis (raw output, no auth warning).
redis_cli() {
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --no-auth-warning "$@"
}

# _redis_launch: start redis-server on $REDIS_PORT with _REDIS_ARGS; wait for PONG (5 s).
_redis_launch() {
    mkdir -p "$TEST_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize no --dir "$TEST_DIR/redis" "${_REDIS_ARGS[@]}" \
        >>"$TEST_DIR/redis/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do
        if [ "$(redis_cli ping 2>/dev/null)" == PONG ]; then
            return 0
        fi
        kill -0 "$REDIS_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill "$REDIS_PID" 2>/dev/null
    wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=
    return 1
}

# start_redis [EXTRA_REDIS_ARGS...]: start a private redis-server on a free port (no
# persistence, data dir $TEST_DIR/redis, log $TEST_DIR/redis/redis.log), wait until it
# answers PING; sets REDIS_PORT and REDIS_PID. Bails out (exit 1) when it cannot start.
start_redis() {
    _REDIS_ARGS=("$@")
    for _ in 1 2 3; do
        REDIS_PORT=$(free_port) || break
        _redis_launch && return 0
    done
    tail -n 20 "$TEST_DIR/redis/redis.log" 2>/dev/null | sed 's/^/#   redis: /'
    bail "start_redis"
}

# stop_redis: stop the test Redis (by PID) and wait for it; REDIS_PORT is kept so that
# restart_redis can bring it back on the same port.
stop_redis() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
        REDIS_PID=
    fi
    return 0
}

# restart_redis: start Redis again on the same REDIS_PORT with the same extra args (after
# stop_redis; stops it first if still running). Data is not kept. Bails out on failure.
restart_redis() {
    stop_redis
    for _ in $(seq 30); do
        _redis_launch && return 0
        sleep 0.1
    done
    tail -n 20 "$TEST_DIR/redis/redis.log" 2>/dev/null | sed 's/^/#   redis: /'
    bail "restart_redis on port $REDIS_PORT"
}

# redis_keys PATTERN: print every key matching PATTERN (SCAN, not KEYS), one a line.
redis_keys() {
    redis_cli --scan --pattern "$1"
}

# ----------------------------------------------------------------------------- stack

# tier_rate TIER: the tokens_per_second of TIER in the stack's limits file (with the
# development override of ai_authenticated); fails for a tier the file lacks.
tier_rate() {
    if [ "$1" == ai_authenticated ] && [ "${ENVIRONMENT:-}" == development ]; then
        echo 10
        return 0
    fi
    jq -er --arg t "$1" '.tiers[$t].tokens_per_second' \
        "${RATE_LIMITS_FILE:-$ROOT/limits.json}" 2>/dev/null
}

# wait_refusals_known: a gateway process that saw a bucket below one token refuses it by
# itself until Redis's next token was due, even if the bucket is deleted meanwhile
# (fcgi/refusecache.c, README "Refusals without Redis"). Before deleting buckets that a
# check wants full again at once, call this: it reads every rate_limit:<tier>:* bucket
# below one token and sleeps until the latest next token is due on Redis's clock
# (last_update + (1 - tokens) / rate), or until the refusal cache's horizon has passed
# since Redis's last answer (last_update + 10 s), whichever comes first.
wait_refusals_known() {
    local k tier rate state due latest=0 now
    for k in $(redis_keys 'rate_limit:*'); do
        tier=${k#rate_limit:}
        tier=${tier%%:*}
        [ "$tier" == login_failures ] && continue   # charged by the handler, not cached
        rate=$(tier_rate "$tier") || continue
        state=$(redis_cli hmget "$k" tokens last_update | tr '\n' ' ')
        due=$(awk -v s="$state" -v r="$rate" 'BEGIN { n = split(s, a, " ")
            w = (1 - a[1]) / r; if (w > 10) w = 10   # REFUSECACHE_HORIZON_S
            if (n < 2 || a[1] >= 1) print 0; else printf "%.6f", a[2] + w }')
        latest=$(awk -v a="$latest" -v b="$due" 'BEGIN { print (b > a ? b : a) }')
    done
    now=$(redis_cli time | awk 'NR == 1 { s = $1 } NR == 2 { printf "%.6f", s + $1 / 1e6 }')
    if awk -v l="$latest" -v n="$now" 'BEGIN { exit !(l > n) }'; then
        sleep "$(awk -v l="$latest" -v n="$now" 'BEGIN { printf "%.3f", l - n + 0.002 }')"
    fi
}

# limits_file JQ_FILTER: write limits.json transformed by JQ_FILTER to a new file under
# $TEST_DIR and print its path, e.g.
#   export RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 1000')
limits_file() {
    _LIMITS_N=$(( ${_LIMITS_N:-0} + 1 ))
    local out="$TEST_DIR/limits-$_LIMITS_N.json"
    jq "$1" "$ROOT/limits.json" >"$out" || { echo "limits_file: jq failed" >&2; return 1; }
    echo "$out"
}

# limits_auth_starved: limits_file with every tier far above what a load script sends
# (1000 burst, 1000/s), but the auth tier keeps its burst of 3 and refills so slowly
# (0.001/s) that once emptied it stays empty: the script's next /login is a 429.
limits_auth_starved() {
    limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                        | .value.burst_capacity = 1000)
                 | .tiers.auth = {tokens_per_second: 0.001, burst_capacity: 3}'
}

# _lighttpd_launch: start lighttpd -D on $PORT and wait for /healthz to answer 200 or
# 503 (the gateway is up, Redis may be down on purpose). Returns 1 on timeout (10 s) or
# when lighttpd exits.
_lighttpd_launch() {
    if [ "${SG_HOST:-}" == apache ]; then
        _apache_launch
        return
    fi
    lighttpd -D -f "$ROOT/lighttpd.conf" 2>>"$SG_VAR/lighttpd-error.log" &
    LIGHTTPD_PID=$!
    local s
    for _ in $(seq 100); do
        sleep 0.1
        kill -0 "$LIGHTTPD_PID" 2>/dev/null || return 1
        s=$(healthz_status)
        if [ "$s" == 200 ] || [ "$s" == 503 ]; then
            return 0
        fi
    done
    return 1
}

# start_stack: start lighttpd (which spawns the gateway) against the test Redis.
# Needs build/story-gateway (builds nothing). Exports BIND=127.0.0.1, PORT (free, kept
# across restart_stack), SG_ROOT, SG_VAR ($TEST_DIR/var, or a /tmp folder when that path
# is too long for a unix socket), SG_BIN; JWT_SECRET (64 random hex chars) unless set;
# REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0 unless set; RATE_LIMITS_FILE=limits.json
# unless set. Set any other gateway variable (RATE_LIMIT_FAIL_MODE, TRUSTED_PROXIES...)
# with export before calling. Waits for /healthz (10 s); on failure prints the end of the
# lighttpd error log and bails out.
start_stack() {
    [ -x "$SG_BUILD/story-gateway" ] || bail "start_stack: $SG_BUILD/story-gateway missing (make all)"
    if [ -z "$SG_VAR" ]; then
        SG_VAR="$TEST_DIR/var"
        # sun_path holds 108 bytes; lighttpd appends "/gateway.sock-N".
        if [ ${#SG_VAR} -gt 80 ]; then
            SG_VAR=$(mktemp -d /tmp/sg-test.XXXXXX)
        fi
        mkdir -p "$SG_VAR"
    fi
    export BIND=127.0.0.1 SG_ROOT="$ROOT" SG_VAR SG_BIN="$SG_BUILD/story-gateway"
    local fresh_port=0
    if [ -z "$PORT" ]; then
        PORT=$(free_port) || bail "start_stack: no free port"
        fresh_port=1
    fi
    export PORT
    if [ -z "${JWT_SECRET:-}" ]; then
        JWT_SECRET=$(openssl rand -hex 32)
    fi
    export JWT_SECRET
    if [ -z "${REDIS_URL:-}" ]; then
        [ -n "$REDIS_PORT" ] || bail "start_stack: no REDIS_URL and no start_redis"
        REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    fi
    export REDIS_URL
    export RATE_LIMITS_FILE=${RATE_LIMITS_FILE:-$ROOT/limits.json}
    for _ in 1 2 3; do
        _lighttpd_launch && return 0
        # Another test took the port between free_port and bind: pick another one.
        if [ "$fresh_port" = 1 ] && ! kill -0 "$LIGHTTPD_PID" 2>/dev/null &&
            tail -n 5 "$SG_VAR/lighttpd-error.log" 2>/dev/null | grep -q 'Address already in use'; then
            PORT=$(free_port) || break
            export PORT
            continue
        fi
        break
    done
    note "lighttpd error log ($SG_VAR/lighttpd-error.log):"
    tail -n 30 "$SG_VAR/lighttpd-error.log" 2>/dev/null | sed 's/^/#   /'
    bail "start_stack: /healthz did not answer within 10 s on port $PORT"
}

# stop_stack: stop lighttpd by PID and wait for it. lighttpd sends SIGTERM to the gateway
# processes it spawned; any of them still alive 1 s later is left running (so a suite can
# check for that with its own PIDs) and SIGKILLed by PID when the script exits. Their PIDs
# are in STACK_SURVIVORS (space-separated, empty when all stopped), with a "#" note.
STACK_SURVIVORS=
_ORPHAN_PIDS=()
stop_stack() {
    if [ "${SG_HOST:-}" == apache ]; then
        apache_stop_stack
        return
    fi
    STACK_SURVIVORS=
    [ -n "$LIGHTTPD_PID" ] || return 0
    local kids k alive
    kids=$(ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null | tr -d ' ')
    kill "$LIGHTTPD_PID" 2>/dev/null
    wait "$LIGHTTPD_PID" 2>/dev/null
    LIGHTTPD_PID=
    for _ in $(seq 10); do
        alive=
        for k in $kids; do
            # A zombie has exited; only an init that does not reap keeps it listed.
            case $(ps -o stat= -p "$k" 2>/dev/null) in
                ""|Z*) ;;
                *) alive="$alive $k" ;;
            esac
        done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    if [ -n "$alive" ]; then
        STACK_SURVIVORS=${alive# }
        note "stop_stack: gateway PIDs $STACK_SURVIVORS outlived lighttpd by 1 s (killed at exit)"
        for k in $alive; do _ORPHAN_PIDS+=("$k"); done
    fi
    return 0
}

# restart_stack: stop_stack then start_stack on the same PORT and SG_VAR, with the
# environment as it is now (export a changed variable first).
restart_stack() {
    stop_stack
    start_stack
}

# start_fails DESC REGEX: with the current environment, lighttpd (Apache under
# SG_HOST=apache) must not get a working gateway: /healthz never answers 200 within 3 s,
# and the error log gains a line matching REGEX (the one-line reason). Stops the stack
# first; the server and whatever it spawned are stopped by PID afterwards. Two checks.
start_fails() {
    local desc=$1 re=$2 mark pid s seen=" " kids k lines
    stop_stack
    mark=$(log_mark)
    if [ "${SG_HOST:-}" == apache ]; then
        apache_start
    else
        lighttpd -D -f "$ROOT/lighttpd.conf" 2>>"$SG_VAR/lighttpd-error.log" &
        pid=$!
    fi
    for _ in $(seq 30); do
        s=$(healthz_status)
        [[ $seen == *" $s "* ]] || seen="$seen$s "
        sleep 0.1
    done
    if [ "${SG_HOST:-}" == apache ]; then
        apache_stop_stack
    else
        kids=$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -d ' ')
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        for k in $kids; do
            kill "$k" 2>/dev/null
        done
    fi
    if [[ $seen == *" 200 "* ]]; then
        fail "$desc: the gateway does not start (/healthz never 200)" "healthz statuses:$seen"
    else
        pass "$desc: the gateway does not start (/healthz never 200)"
        note "healthz statuses seen:$seen"
    fi
    lines=$(gateway_log | tail -n +$((mark + 1)))
    if grep -Eq -- "$re" <<<"$lines"; then
        pass "$desc: the error log gives the reason"
        note "reason: $(grep -Em1 -- "$re" <<<"$lines" | cut -c1-200)"
    else
        fail "$desc: the error log gives the reason" "no line matching: $re" \
            "$(tail -n 5 <<<"$lines" | tr '\n' ' ' | cut -c1-600)"
    fi
}

# gateway_log: print the lighttpd error log (gateway JSON lines + lighttpd's own lines).
gateway_log() {
    cat "$SG_VAR/lighttpd-error.log" 2>/dev/null
}

# log_mark: the number of lines of the gateway's log so far (for events after it).
log_mark() {
    gateway_log | wc -l
}

# events EVENT MARK: the JSON log lines with "event":EVENT after line MARK, compact.
events() {
    gateway_log | tail -n +$(($2 + 1)) | sed -n 's/^[^{]*{/{/p' |
        jq -c --arg e "$1" 'select(.event == $e)' 2>/dev/null
}

# count_events EVENT MARK: how many such lines.
count_events() {
    events "$1" "$2" | wc -l
}

# parallel N METHOD PATH [CURL_ARGS...]: N requests at once (curl --parallel, one
# connection each, so that many gateway threads serve them); one line per response
# "<status>|<RateLimit-Limit>" in $TEST_DIR/parallel.txt.
parallel() {
    local n=$1 method=$2 path=$3 i
    shift 3
    local -a urls=()
    for ((i = 0; i < n; i++)); do
        urls+=(-o /dev/null "http://127.0.0.1:$PORT$path")
    done
    curl -s --noproxy '*' --path-as-is --max-time 20 -H 'Expect:' -X "$method" \
        --parallel --parallel-immediate --parallel-max "$n" \
        -w '%{http_code}|%header{ratelimit-limit}\n' "$@" "${urls[@]}" \
        >"$TEST_DIR/parallel.txt" 2>/dev/null
}

# track_pid PID: have the EXIT trap stop PID too (e.g. a fake upstream server).
track_pid() {
    _TRACKED_PIDS+=("$1")
}

# _cleanup: EXIT trap. Stops what the script started, by PID; prints the summary and
# makes the exit status 1 when a check failed.
_cleanup() {
    local rc=$? p
    trap - EXIT
    stop_stack
    stop_redis
    for p in "${_TRACKED_PIDS[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for p in "${_ORPHAN_PIDS[@]}"; do
        # Only if the PID is still a story-gateway (not reaped and reused meanwhile).
        if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q 'story-gateway'; then
            kill -KILL "$p" 2>/dev/null
        fi
    done
    case "$SG_VAR" in
        /tmp/sg-test.*) rm -rf "$SG_VAR" ;;
        /tmp/sg-apache.*) apache_unstage ;;
    esac
    printf '# %s: %d passed, %d failed\n' "$TEST_NAME" "$PASSED" "$FAILED"
    if [ "$rc" -eq 0 ] && [ "$FAILED" -gt 0 ]; then
        rc=1
    fi
    exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------- jwt

# b64url: base64url-encode stdin without padding or newlines.
b64url() {
    basenc --base64url | tr -d '=\n'
}

# make_jwt HEADER_JSON PAYLOAD_JSON SECRET [ALG]: print a JWT "h.p.s" whose parts are the
# given JSON texts exactly as written (not re-serialised), signed with HMAC over "h.p":
# ALG HS256 (default), HS384, HS512; "none" gives an empty signature ("h.p.").
# ALG only picks the HMAC: HEADER_JSON must state "alg" itself (so lies can be tested).
make_jwt() {
    local h p sig='' alg=${4:-HS256} dgst
    h=$(printf '%s' "$1" | b64url)
    p=$(printf '%s' "$2" | b64url)
    case "$alg" in
        HS256) dgst=-sha256 ;;
        HS384) dgst=-sha384 ;;
        HS512) dgst=-sha512 ;;
        none) dgst= ;;
        *) echo "make_jwt: unknown alg $alg" >&2; return 1 ;;
    esac
    if [ -n "$dgst" ]; then
        sig=$(printf '%s.%s' "$h" "$p" | openssl dgst "$dgst" -hmac "$3" -binary | b64url)
    fi
    printf '%s.%s.%s\n' "$h" "$p" "$sig"
}

# make_user_token SUB [TTL]: print a valid HS256 token for user id SUB signed with
# $JWT_SECRET: iat now, exp now+TTL (default 3600), iss "story-gateway".
make_user_token() {
    local now
    now=$(date +%s)
    make_jwt '{"alg":"HS256","typ":"JWT"}' \
        "{\"sub\":\"$1\",\"iat\":$now,\"exp\":$((now + ${2:-3600})),\"iss\":\"story-gateway\"}" \
        "$JWT_SECRET" HS256
}

# jwt_payload TOKEN: print the decoded payload JSON of TOKEN.
jwt_payload() {
    local p
    p=$(printf '%s' "$1" | cut -d. -f2 | tr '_-' '/+')
    while [ $(( ${#p} % 4 )) -ne 0 ]; do p="$p="; done
    printf '%s' "$p" | base64 -d 2>/dev/null
}

# signup_user EMAIL PASSWORD: POST /signup (JSON) and print the access_token. Returns 1
# (printing the status and body on stderr) unless the answer is 201 with a token. Does
# not change STATUS/BODY. Mind the auth tier (3 burst): give the script a RATE_LIMITS_FILE
# with a larger auth burst when it signs up several users.
signup_user() {
    local out code body tok
    out=$(curl -s --noproxy '*' --max-time 10 -H 'Content-Type: application/json' \
        --data-binary "$(jq -cn --arg e "$1" --arg p "$2" '{email: $e, password: $p}')" \
        -w '\n%{http_code}' "http://127.0.0.1:$PORT/signup" 2>/dev/null)
    code=${out##*$'\n'}
    body=${out%$'\n'*}
    tok=$(printf '%s' "$body" | jq -er '.access_token' 2>/dev/null)
    if [ "$code" != 201 ] || [ -z "$tok" ]; then
        echo "signup_user $1: status $code body $body" >&2
        return 1
    fi
    printf '%s\n' "$tok"
}

# user_id_of TOKEN: print the sub claim of TOKEN (the user id for a signup token).
user_id_of() {
    jwt_payload "$1" | jq -r .sub
}

if [ "${SG_HOST:-}" == apache ]; then
    . "$(dirname "${BASH_SOURCE[0]}")/apache.sh"
fi
