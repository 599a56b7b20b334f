# shellcheck shell=bash
# tests/integration/fake_mistral.sh: start, steer and inspect the fake MistralAI server
# (tests/fake_mistral/fake_mistral.c behind its own lighttpd, tests/fake_mistral/lighttpd.conf).
#
# Source it right after lib.sh:
#
#     . "$(dirname "$0")/lib.sh"
#     . "$(dirname "$0")/fake_mistral.sh"
#     start_redis
#     start_fake_mistral
#     export MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
#     start_stack
#     fake_mode "429 2" normal        # first request 429 (Retry-After: 2), then normal
#     ...
#     check_eq "two upstream requests" 2 "$(fake_requests)"
#     fake_request 1 | jq -r .authorization
#
# Needs build/tests/fake-mistral (make build/tests/fake-mistral; builds nothing). To run
# another program in its place (e.g. a script that execs valgrind on it), set
# FAKE_MISTRAL_BIN to its path before sourcing.
#
# `start_fake_mistral --raw` runs the same program as its own HTTP server instead
# (fake-mistral --http PORT, no lighttpd): the same API, modes and request log, one
# request per connection ("Connection: close"), and the reset modes work.
#
# Modes (one a line of $FAKE_DIR/mode, re-read by the fake at every request; the k-th
# request since the file last changed uses line min(k, lines-1); no file = normal):
#   normal | slow N | 429 [N] | 500 | 502 | 503 | 401 | malformed | wrongshape | empty |
#   content TEXT | huge | reset | reset headers | reset early
# (--raw only, else 500: reset = status line, headers and half the JSON answer, then a
# TCP RST; reset headers = half the header block, then RST; reset early = RST with no
# byte of answer.)
# Every request the fake receives is one JSON line of $FAKE_DIR/requests.log:
#   {"n":k,"seq":s,"mode":"...","method":"POST","path":"/v1/chat/completions",
#    "authorization":"<header as received>"|null,"content_type":...,"status":<answered>,
#    "body":<parsed request body>|null}
#
# Do not call a bare `wait` in a suite: lighttpd processes are background jobs of the
# script, so it would never return; wait for your own PIDs.
#
# Globals set here (read them, do not assign them):
#   FAKE_MISTRAL_URL   http://127.0.0.1:FAKE_PORT (exported; the gateway's MISTRAL_API_URL)
#   FAKE_MISTRAL_KEY   the key the fake accepts (exported; default "test-key", or the value
#                      the script exported before start_fake_mistral)
#   FAKE_PORT, FAKE_DIR, FAKE_PID   after start_fake_mistral (FAKE_PID: its lighttpd, or
#                      the program itself with --raw)

FAKE_MISTRAL_URL=
FAKE_PORT=
FAKE_DIR=
FAKE_PID=
_FAKE_TMP=
_FAKE_RAW=0

if ! declare -F _cleanup >/dev/null; then
    echo "fake_mistral.sh: source lib.sh first" >&2
    exit 1
fi

# _fake_probe: the HTTP status of a GET to the fake's chat path ("000" when nothing
# answers); the program answers 405, lighttpd alone never does.
_fake_probe() {
    curl -s --noproxy '*' --max-time 1 -o /dev/null -w '%{http_code}' \
        "http://127.0.0.1:$FAKE_PORT/v1/chat/completions" 2>/dev/null || true
}

# _fake_launch: start lighttpd with the fake on $FAKE_PORT (or, with _FAKE_RAW=1, the
# program as its own HTTP server); wait (10 s) until the program answers. Returns 1 when
# it exits or the time runs out (stopped then).
_fake_launch() {
    if [ "$_FAKE_RAW" = 1 ]; then
        "$FAKE_BIN" --http "$FAKE_PORT" 2>>"$FAKE_DIR/raw-stderr.log" &
    else
        lighttpd -D -f "$ROOT/tests/fake_mistral/lighttpd.conf" \
            2>>"$FAKE_DIR/lighttpd-stderr.log" &
    fi
    FAKE_PID=$!
    for _ in $(seq 100); do
        sleep 0.1
        kill -0 "$FAKE_PID" 2>/dev/null || break
        [ "$(_fake_probe)" == 405 ] && return 0
    done
    stop_fake_mistral
    return 1
}

# start_fake_mistral [--raw]: start the fake (stopping a running one first) on a free
# port, with a fresh FAKE_DIR ($TEST_DIR/fake, or a /tmp folder when that path is too long
# for the FastCGI socket), no mode file and an empty requests.log. Exports
# FAKE_MISTRAL_URL and FAKE_MISTRAL_KEY (kept when already exported). --raw: the program
# serves HTTP itself (see above). Bails out when it cannot start.
start_fake_mistral() {
    local bin=${FAKE_MISTRAL_BIN:-$ROOT/build/tests/fake-mistral}
    [ -x "$bin" ] || bail "start_fake_mistral: $bin missing (make build/tests/fake-mistral)"
    stop_fake_mistral
    _FAKE_RAW=0
    [ "${1:-}" == --raw ] && _FAKE_RAW=1
    if [ -n "$_FAKE_TMP" ]; then
        rm -rf "$_FAKE_TMP"
        _FAKE_TMP=
    fi
    FAKE_DIR="$TEST_DIR/fake"
    # sun_path holds 108 bytes; lighttpd appends "/fake.sock-0".
    if [ ${#FAKE_DIR} -gt 80 ]; then
        FAKE_DIR=$(mktemp -d /tmp/fake-mistral.XXXXXX) || bail "start_fake_mistral: mktemp"
        _FAKE_TMP=$FAKE_DIR
    fi
    rm -rf "$FAKE_DIR"
    mkdir -p "$FAKE_DIR"
    export FAKE_DIR FAKE_BIN="$bin"
    export FAKE_MISTRAL_KEY=${FAKE_MISTRAL_KEY:-test-key}
    for _ in 1 2 3; do
        FAKE_PORT=$(free_port) || break
        export FAKE_PORT
        if _fake_launch; then
            FAKE_MISTRAL_URL="http://127.0.0.1:$FAKE_PORT"
            export FAKE_MISTRAL_URL
            fake_reset_log # forget the readiness probe
            return 0
        fi
        grep -q 'Address already in use' "$FAKE_DIR"/lighttpd-*.log \
            "$FAKE_DIR"/raw-stderr.log 2>/dev/null || break
    done
    note "fake logs ($FAKE_DIR):"
    tail -n 20 "$FAKE_DIR"/lighttpd-*.log "$FAKE_DIR"/raw-stderr.log 2>/dev/null |
        sed 's/^/#   /'
    bail "start_fake_mistral: the fake did not answer within 10 s on port $FAKE_PORT"
}

# stop_fake_mistral: stop the fake's lighttpd (or the --raw program) by PID and wait for
# it; lighttpd stops the program with SIGTERM; a program still alive 1 s later is killed
# by PID. FAKE_DIR is kept (its logs stay readable). Does nothing when the fake is not
# running.
stop_fake_mistral() {
    [ -n "$FAKE_PID" ] || return 0
    local kids k alive
    kids=$(ps -o pid= --ppid "$FAKE_PID" 2>/dev/null | tr -d ' ')
    kill "$FAKE_PID" 2>/dev/null
    wait "$FAKE_PID" 2>/dev/null
    FAKE_PID=
    FAKE_MISTRAL_URL=
    for _ in $(seq 10); do
        alive=
        for k in $kids; do
            case $(ps -o stat= -p "$k" 2>/dev/null) in
                "" | Z*) ;;
                *) alive="$alive $k" ;;
            esac
        done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for k in $alive; do
        if tr '\0' ' ' <"/proc/$k/cmdline" 2>/dev/null | grep -q 'fake-mistral'; then
            kill -KILL "$k" 2>/dev/null
        fi
    done
    return 0
}

# fake_mode LINE...: make the fake answer the next requests by these modes, one argument a
# line (the first request after this call uses the first line, the last line sticks).
# Without arguments: back to normal (the mode file is removed). The file is replaced
# atomically (a new inode), so the fake always sees the change.
fake_mode() {
    [ -n "$FAKE_DIR" ] || { echo "fake_mode: no start_fake_mistral" >&2; return 1; }
    if [ $# -eq 0 ]; then
        rm -f "$FAKE_DIR/mode"
        return 0
    fi
    printf '%s\n' "$@" >"$FAKE_DIR/mode.tmp" && mv -f "$FAKE_DIR/mode.tmp" "$FAKE_DIR/mode"
}

# fake_requests: print how many requests the fake logged (since the last fake_reset_log).
fake_requests() {
    local n=0
    [ -f "$FAKE_DIR/requests.log" ] && n=$(wc -l <"$FAKE_DIR/requests.log")
    echo $((n))
}

# fake_request N: print the N-th logged request line (1 = the first since the last
# fake_reset_log; its "n" field is its index in the current mode file, from 0). Returns
# 1 when there is no such line.
fake_request() {
    local line
    line=$(sed -n "${1}p" "$FAKE_DIR/requests.log" 2>/dev/null)
    [ -n "$line" ] || return 1
    printf '%s\n' "$line"
}

# fake_last_request: print the last logged request line (1 when none).
fake_last_request() {
    local line
    line=$(tail -n 1 "$FAKE_DIR/requests.log" 2>/dev/null)
    [ -n "$line" ] || return 1
    printf '%s\n' "$line"
}

# fake_reset_log: forget the logged requests (requests.log emptied).
fake_reset_log() {
    : >"$FAKE_DIR/requests.log"
}

# fake_wait_requests N TIMEOUT_S: wait until at least N requests are logged; 0 then, 1 on
# timeout.
fake_wait_requests() {
    wait_until "$2" _fake_at_least "$1"
}

# _fake_at_least N: 0 when at least N requests are logged (for wait_until).
_fake_at_least() {
    [ "$(fake_requests)" -ge "$1" ]
}

# _fake_mistral_exit: EXIT trap step before lib.sh's _cleanup: stops the fake and removes
# its /tmp folder, keeping the script's exit status for _cleanup.
_fake_mistral_exit() {
    local rc=$?
    stop_fake_mistral
    [ -n "$_FAKE_TMP" ] && rm -rf "$_FAKE_TMP"
    return "$rc"
}
trap '_fake_mistral_exit; _cleanup' EXIT
