#!/usr/bin/env bash
# 55-slowloris: slow clients against lighttpd's bounds (issue 5, faults; lighttpd.conf
# "Bounds on what a client may send" says what each client gets).
#
# - 70 clients (more than the 2 x 32 gateway threads) each send a POST /signup body a
#   byte a second (13 bytes, so longer than max-read-idle): meanwhile /healthz, GET /me
#   and 64 GET /me at once are answered at once, and the gateway has seen none of the
#   slow requests (the auth bucket they are charged to is untouched): lighttpd reads a
#   whole request before it hands it to the gateway, so no gateway thread waits on a
#   slow client. When their bodies are complete each gets its normal answer (422), and
#   the auth bucket shows each reached the gateway exactly once.
# - A client that sends its request line and headers a byte a second (19 s) is not cut
#   either (it is never silent for max-read-idle) and gets its answer.
# - Clients that stop sending, mid-headers or mid-body, are disconnected after
#   max-read-idle (10 s, checked once a second) with no answer, and never reach the
#   gateway.
#
# Run alone from the repository root:  bash tests/integration/55-slowloris.sh
set -u
. "$(dirname "$0")/lib.sh"

SLOW_CLIENTS=70
READ_IDLE=10                 # server.max-read-idle in lighttpd.conf
SLOW_BODY='{"email":"x"}'    # 13 bytes: 13 s at a byte a second; 422 (no password)
SLOW_HEAD=$'GET /x HTTP/1.0\r\n\r\n' # 19 bytes: 19 s
HANG_BOUND=10                # seconds a probe may take while the slow clients wait

start_redis
# The auth tier (the slow clients' /signup) hardly refills, so its bucket counts the
# requests the gateway saw: 1000 - tokens. The other tiers never refuse here.
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)
                                | .tiers.auth = {tokens_per_second: 0.001,
                                                 burst_capacity: 1000}')
export RATE_LIMITS_FILE
start_stack
TOKEN=$(make_user_token "$(openssl rand -hex 16)")
ACCOUNT=$(signup_user slow@example.com 'a long enough password') || bail "signup_user"
AUTH_KEY=rate_limit:auth:ip:127.0.0.1

# ------------------------------------------------------------------ local helpers

# auth_used: how many auth requests the gateway charged (1000 - the bucket's tokens).
auth_used() {
    local t
    t=$(redis_cli HGET "$AUTH_KEY" tokens)
    awk -v t="${t:-1000}" 'BEGIN { printf "%d", 1000 - t + 0.5 }'
}

# slow_body NAME: POST /signup with SLOW_BODY sent a byte a second after the headers;
# the whole answer in slow.NAME, "<seconds sending> <seconds in all>" in slow.NAME.t.
slow_body() {
    local out="$TEST_DIR/slow.$1" fd i t0 t1
    trap '' PIPE # (a background job) a write after the server closed fails, not kills
    t0=$(date +%s%N)
    if ! exec {fd}<>"/dev/tcp/127.0.0.1/$PORT"; then
        : >"$out"
        echo "0 0" >"$out.t"
        return
    fi
    printf 'POST /signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n' 1>&"$fd"
    printf 'Content-Length: %d\r\nConnection: close\r\n\r\n' "${#SLOW_BODY}" 1>&"$fd"
    for ((i = 0; i < ${#SLOW_BODY}; i++)); do
        sleep 1
        printf '%s' "${SLOW_BODY:i:1}" 1>&"$fd" 2>/dev/null || break
    done
    t1=$(date +%s%N)
    timeout 30 cat <&"$fd" >"$out"
    exec {fd}>&-
    awk -v a="$t0" -v b="$t1" -v c="$(date +%s%N)" \
        'BEGIN { printf "%.1f %.1f\n", (b - a) / 1e9, (c - a) / 1e9 }' >"$out.t"
}

# slow_head: SLOW_HEAD a byte a second; the answer in slow_head, seconds in slow_head.t.
slow_head() {
    local out="$TEST_DIR/slow_head" fd i t0
    trap '' PIPE
    t0=$(date +%s%N)
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || return
    for ((i = 0; i < ${#SLOW_HEAD}; i++)); do
        printf '%s' "${SLOW_HEAD:i:1}" 1>&"$fd" 2>/dev/null || break
        sleep 1
    done
    timeout 30 cat <&"$fd" >"$out"
    exec {fd}>&-
    awk -v a="$t0" -v c="$(date +%s%N)" 'BEGIN { printf "%.1f\n", (c - a) / 1e9 }' >"$out.t"
}

# idle NAME TEXT: sends TEXT (an unfinished request) and waits for the server to close;
# what came back in idle.NAME, the seconds until the close in idle.NAME.t.
idle() {
    local out="$TEST_DIR/idle.$1" fd t0
    t0=$(date +%s%N)
    exec {fd}<>"/dev/tcp/127.0.0.1/$PORT" || return
    printf '%s' "$2" 1>&"$fd"
    timeout $((READ_IDLE * 3)) cat <&"$fd" >"$out"
    exec {fd}>&-
    awk -v a="$t0" -v c="$(date +%s%N)" 'BEGIN { printf "%.1f\n", (c - a) / 1e9 }' >"$out.t"
}

# status_of FILE: the status code of the HTTP answer in FILE, or "none".
status_of() {
    local s
    s=$(head -n 1 "$1" 2>/dev/null | tr -d '\r' | awk '/^HTTP\// { print $2 }')
    echo "${s:-none}"
}

# body_of FILE: the body of the HTTP answer in FILE (after the blank line).
body_of() {
    tr -d '\r' <"$1" | sed '1,/^$/d'
}

# ------------------------------------------------------------------ slow clients

AUTH_BASE=$(auth_used) # the sign-up above
BG=()
for n in $(seq "$SLOW_CLIENTS"); do
    slow_body "$n" &
    BG+=($!)
done
slow_head &
BG+=($!)
idle head $'POST /signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le' &
BG+=($!)
idle body $'POST /signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'\
$'Content-Length: 20\r\n\r\n{"em' &
BG+=($!)

# While they trickle (the bodies take 13 s): the gateway's threads are all free.
sleep 4
connected=$(ss -tnH state established "dport = :$PORT" 2>/dev/null | wc -l)
check_true "the $SLOW_CLIENTS slow clients and 3 others are connected ($connected)" \
    test "$connected" -ge $((SLOW_CLIENTS + 3))
t=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code} %{time_total}' \
    --max-time "$HANG_BOUND" "http://127.0.0.1:$PORT/healthz")
check_match "meanwhile /healthz: 200 within ${HANG_BOUND} s ($t)" '^200 ' "$t"
t=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code} %{time_total}' \
    --max-time "$HANG_BOUND" -H "Authorization: Bearer $ACCOUNT" "http://127.0.0.1:$PORT/me")
check_match "meanwhile GET /me: 200 within ${HANG_BOUND} s ($t)" '^200 ' "$t"
parallel 64 GET /suggestions -H "Authorization: Bearer $TOKEN"
check_eq "meanwhile 64 requests at once (every gateway thread): all 200" 200 \
    "$(cut -d'|' -f1 "$TEST_DIR/parallel.txt" | sort -u | paste -sd' ' -)"
check_eq "meanwhile the gateway has seen none of the slow requests (auth bucket untouched)" \
    "$AUTH_BASE" "$(auth_used)"

for p in "${BG[@]}"; do wait "$p"; done

# ------------------------------------------------------------------ what they got

ok=0 sent_short=0
for n in $(seq "$SLOW_CLIENTS"); do
    if [ "$(status_of "$TEST_DIR/slow.$n")" == 422 ] && body_of "$TEST_DIR/slow.$n" |
        jq -e '.detail[0].loc == ["body", "password"]' >/dev/null 2>&1; then
        ok=$((ok + 1))
    fi
    awk '$1 < 12 { exit 0 } { exit 1 }' "$TEST_DIR/slow.$n.t" && sent_short=$((sent_short + 1))
done
note "slow bodies: sending took $(cut -d' ' -f1 "$TEST_DIR"/slow.*.t | sort -n | sed -n '1p;$p' |
    paste -sd'-' -) s, the answer came after $(cut -d' ' -f2 "$TEST_DIR"/slow.*.t | sort -n |
    sed -n '1p;$p' | paste -sd'-' -) s"
check_eq "every slow body took >= 12 s to send (longer than max-read-idle)" 0 "$sent_short"
check_eq "every slow client got the gateway's answer once its body was complete (422)" \
    "$SLOW_CLIENTS" "$ok"
check_eq "each slow request reached the gateway exactly once, at the end" \
    $((AUTH_BASE + SLOW_CLIENTS)) "$(auth_used)"

check_eq "headers a byte a second ($(cat "$TEST_DIR/slow_head.t" 2>/dev/null) s): answered 404" \
    404 "$(status_of "$TEST_DIR/slow_head")"
check_eq "... with the gateway's body" '{"detail":"Not Found"}' \
    "$(body_of "$TEST_DIR/slow_head")"

for which in head body; do
    secs=$(cat "$TEST_DIR/idle.$which.t" 2>/dev/null)
    check_eq "silent mid-$which: disconnected with no answer" 0 \
        "$(wc -c <"$TEST_DIR/idle.$which" 2>/dev/null || echo missing)"
    check_true "silent mid-$which: cut after ${secs:-?} s (${READ_IDLE}-$((READ_IDLE + 5)))" \
        awk -v s="${secs:-0}" -v r="$READ_IDLE" 'BEGIN { exit !(s >= r - 1 && s <= r + 5) }'
done
check_eq "the silent clients never reached the gateway" $((AUTH_BASE + SLOW_CLIENTS)) \
    "$(auth_used)"

req GET /healthz
check_status "afterwards /healthz: 200" 200

stop_stack
