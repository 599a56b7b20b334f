#!/usr/bin/env bash
# 38-redis-pause: Redis paused for longer than the gateway's Redis timeout (500 ms), in
# each RATE_LIMIT_FAIL_MODE (issue 5, faults; README "When Redis is down", SPEC 5.6).
#
# A paused Redis is worse than a stopped one: connections are accepted (by the kernel)
# and commands are sent, but no answer comes. For each mode (open, closed, local) Redis
# is stopped with SIGSTOP for at least PAUSE_S (6 s, twelve times the timeout); then:
# - every request is answered within HANG_BOUND (5 s; a request waiting for Redis would
#   wait for the SIGCONT, later than that): one by one on every kind of route, and 40 at
#   once, with exactly what the mode promises: open passes the limiter without
#   RateLimit headers, closed answers 503 to everything, local limits with the process's
#   own buckets (429 included); routes that need storage answer 503 in every mode;
#   /healthz says degraded;
# - after SIGCONT everything recovers by itself within RECOVER_S (5 s): /healthz 200,
#   Redis limiting (headers and the bucket in Redis), GET /me, POST /login and a new
#   story; at most one "redis_down" and then one "redis_up" line per gateway process.
# Then once more in fail mode open with Redis busy in DEBUG SLEEP instead of stopped
# (what a slow command or a long script does): the same bounded answers, and recovery
# when the sleep ends, without any signal.
# 36-redis-degraded checks the first request's timeout and the fail-fast count of a
# short SIGSTOP in mode open; 35-redis-down a Redis that is gone (connection refused).
#
# Run alone from the repository root:  bash tests/integration/38-redis-pause.sh
set -u
. "$(dirname "$0")/lib.sh"

PAUSE_S=6
SLEEP_S=8        # DEBUG SLEEP: long enough for every check made while it lasts
HANG_BOUND=5
RECOVER_S=5
UNAVAILABLE='{"detail":"Service temporarily unavailable"}'
STORY_JSON='{"genre":"noir","characters":"a tired detective"}'
PASSWORD='a long enough password'

start_redis --enable-debug-command local
# The auth tier is raised so that the log-ins of the recovery checks are never refused.
RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 100
                                | .tiers.auth.tokens_per_second = 100')
export RATE_LIMITS_FILE

# ------------------------------------------------------------------ local helpers

# timed_req DESC METHOD PATH [CURL_ARGS...]: req with a HANG_BOUND limit; checks that an
# answer came within it.
timed_req() {
    local desc=$1 t0 ms
    shift
    t0=$(date +%s%N)
    req "$@" --max-time "$HANG_BOUND"
    ms=$((($(date +%s%N) - t0) / 1000000))
    if [ "$STATUS" != 000 ] && [ "$ms" -lt $((HANG_BOUND * 1000)) ]; then
        pass "$desc: answered in $ms ms (< ${HANG_BOUND} s)"
    else
        fail "$desc: answered within ${HANG_BOUND} s" "status $STATUS after $ms ms"
    fi
}

# paused_ms: milliseconds since the pause began.
paused_ms() {
    echo $((($(date +%s%N) - PAUSE_NS) / 1000000))
}

# pause_redis: SIGSTOP redis-server; PAUSE_NS is when.
pause_redis() {
    PAUSE_NS=$(date +%s%N)
    kill -STOP "$REDIS_PID"
}

# resume_redis MODE: wait until the pause has lasted PAUSE_S (so no request above could
# have been rescued by the SIGCONT), check that, then SIGCONT.
resume_redis() {
    local ms
    ms=$(paused_ms)
    [ "$ms" -lt $((PAUSE_S * 1000)) ] &&
        sleep "$(awk -v m="$ms" -v p="$PAUSE_S" 'BEGIN { printf "%.3f", p - m / 1000 }')"
    check_true "$1: Redis stayed paused for $(paused_ms) ms (>= ${PAUSE_S} s)" \
        test "$(paused_ms)" -ge $((PAUSE_S * 1000))
    kill -CONT "$REDIS_PID"
}

# check_parallel MODE EXPECTED: 40 GET /nope at once while paused: every one answered
# within HANG_BOUND, with the distinct statuses EXPECTED.
check_parallel() {
    local t0 ms
    t0=$(date +%s%N)
    parallel 40 GET /nope --max-time "$HANG_BOUND"
    ms=$((($(date +%s%N) - t0) / 1000000))
    check_eq "$1: 40 requests at once: $2" "$2" \
        "$(cut -d'|' -f1 "$TEST_DIR/parallel.txt" | sort -u | paste -sd' ' -)"
    check_true "$1: ... all answered within ${HANG_BOUND} s ($ms ms)" \
        test "$ms" -lt $((HANG_BOUND * 1000))
}

# check_storage_503 MODE: the routes that need storage answer 503 JSON in time.
check_storage_503() {
    timed_req "$1: GET /me" GET /me -H "Authorization: Bearer $TOK"
    check_status "$1: GET /me needs storage: 503" 503
    check_jq "$1: GET /me 503 body has a detail string" '.detail | type == "string"'
    check_header "$1: GET /me Retry-After: 1" Retry-After 1
    timed_req "$1: POST /login" POST /login -H 'Content-Type: application/json' \
        --data-binary "{\"email\":\"pause@example.com\",\"password\":\"$PASSWORD\"}"
    check_status "$1: POST /login needs storage: 503" 503
    check_jq "$1: POST /login 503 body has a detail string" '.detail | type == "string"'
    timed_req "$1: POST /start-story" POST /start-story -H "Authorization: Bearer $TOK" \
        -H 'Content-Type: application/json' --data-binary "$STORY_JSON"
    check_status "$1: POST /start-story needs storage: 503" 503
    check_body "$1: POST /start-story body" "$UNAVAILABLE"
    check_header "$1: POST /start-story Retry-After: 1" Retry-After 1
    timed_req "$1: /healthz" GET /healthz
    check_status "$1: /healthz 503" 503
    check_json "$1: /healthz body" . '{"status":"degraded","redis":"down"}'
}

# redis_limited: GET /nope of a user not seen during the pause is limited by Redis again
# (RateLimit-Limit, and its bucket in Redis). Not the anonymous bucket of 127.0.0.1: the
# commands that timed out during the pause stay queued in Redis and run on SIGCONT,
# charging that bucket late (as many as requests were waiting when it stopped answering).
redis_limited() {
    req GET /nope -H "Authorization: Bearer $REC_TOK" --max-time 2
    [ "$STATUS" == 404 ] && hdr RateLimit-Limit >/dev/null &&
        [ "$(redis_cli exists "rate_limit:api_authenticated:user:$REC_SUB" 2>/dev/null)" == 1 ]
}

# me_ok: GET /me answers 200.
me_ok() {
    req GET /me -H "Authorization: Bearer $TOK" --max-time 2
    [ "$STATUS" == 200 ]
}

# check_recovered MODE MARK T0_NS: everything works again within RECOVER_S of T0_NS
# (SIGCONT or the end of the sleep), and the outage was logged once per process.
check_recovered() {
    local mode=$1 mark=$2 t0=$3 ms n
    wait_until "$RECOVER_S" redis_limited
    ms=$((($(date +%s%N) - t0) / 1000000))
    check_true "$mode: Redis limiting is back ($ms ms after Redis returned, <= ${RECOVER_S} s)" \
        redis_limited
    wait_until "$RECOVER_S" healthz_is 200
    check_eq "$mode: /healthz 200 again" 200 "$(healthz_status)"
    wait_until "$RECOVER_S" me_ok
    check_status "$mode: GET /me 200 again" 200
    req_json POST /login "{\"email\":\"pause@example.com\",\"password\":\"$PASSWORD\"}"
    check_status "$mode: POST /login 200 again" 200
    req_json POST /start-story "$STORY_JSON" -H "Authorization: Bearer $TOK"
    check_status "$mode: a story can be written again" 200
    sleep 0.3
    n=$(count_events redis_down "$mark")
    check_true "$mode: one redis_down line per gateway process at most, not per request ($n)" \
        test "$n" -ge 1 -a "$n" -le 2
    n=$(count_events redis_up "$mark")
    check_true "$mode: ... and one redis_up line per process that saw the outage ($n)" \
        test "$n" -ge 1 -a "$n" -le 2
}

# start_mode MODE: a fresh stack in fail mode MODE with many warm threads (each holding
# a Redis connection when Redis stops answering).
start_mode() {
    stop_stack
    export RATE_LIMIT_FAIL_MODE=$1
    start_stack
    parallel 64 GET /nope
    # FLUSHDB refills every bucket behind the gateways' back: first let the refusals
    # they know of run out (README "Refusals without Redis").
    wait_refusals_known
    redis_cli FLUSHDB >/dev/null
    # The account lives in Redis: make it again after the flush.
    TOK=$(signup_user pause@example.com "$PASSWORD") || bail "$1: signup_user"
    REC_SUB=$(openssl rand -hex 16)
    REC_TOK=$(make_user_token "$REC_SUB")
}

# ---------------------------------------------------------------------------- open

note "fail mode open, Redis paused (SIGSTOP)"
start_mode open
mark=$(log_mark)
pause_redis
timed_req "open: the first request" GET /nope
check_status "open: unknown path still answered: 404" 404
check_no_ratelimit_headers "open: no RateLimit headers"
timed_req "open: an ai route" GET /suggestions -H "Authorization: Bearer $TOK"
check_status "open: the ai route passes the limiter: 200" 200
check_no_ratelimit_headers "open: ai route: no RateLimit headers"
check_storage_503 open
check_parallel open 404
resume_redis open
check_recovered open "$mark" "$(date +%s%N)"

# -------------------------------------------------------------------------- closed

note "fail mode closed, Redis paused (SIGSTOP)"
start_mode closed
mark=$(log_mark)
pause_redis
timed_req "closed: the first request" GET /nope
check_status "closed: unknown path: 503" 503
check_body "closed: 503 body" "$UNAVAILABLE"
check_header "closed: Retry-After: 1" Retry-After 1
timed_req "closed: an ai route" GET /suggestions -H "Authorization: Bearer $TOK"
check_status "closed: the ai route: 503" 503
check_body "closed: the ai route's body" "$UNAVAILABLE"
check_storage_503 closed
check_parallel closed 503
resume_redis closed
check_recovered closed "$mark" "$(date +%s%N)"

# --------------------------------------------------------------------------- local

note "fail mode local, Redis paused (SIGSTOP)"
start_mode local
mark=$(log_mark)
pause_redis
timed_req "local: the first request" GET /nope
check_status "local: unknown path: 404" 404
check_header "local: limited by the process's own bucket: RateLimit-Limit 10" RateLimit-Limit 10
# ai_authenticated has a burst of 5 in each of the two processes: a 429 within 12 requests.
LOCAL_TOK=$(make_user_token "$(openssl rand -hex 16)")
timed_req "local: an ai route" GET /suggestions -H "Authorization: Bearer $LOCAL_TOK"
check_status "local: the ai route passes: 200" 200
check_header "local: with the tier's RateLimit-Limit 5" RateLimit-Limit 5
for _ in $(seq 11); do
    req GET /suggestions -H "Authorization: Bearer $LOCAL_TOK" --max-time "$HANG_BOUND"
    [ "$STATUS" == 429 ] && break
done
check_status "local: the user is refused within 12 requests: 429" 429
check_json "local: with the usual 429 body" '[.error, .limit, .retry_after]' \
    '["Rate limit exceeded", 5, 1]'
check_header "local: 429 Retry-After 1" Retry-After 1
check_storage_503 local
check_parallel local "404 429"
resume_redis local
check_recovered local "$mark" "$(date +%s%N)"

# ------------------------------------------------------------- open, DEBUG SLEEP

note "fail mode open, Redis busy in DEBUG SLEEP $SLEEP_S (no signal)"
start_mode open
mark=$(log_mark)
PAUSE_NS=$(date +%s%N)
redis_cli DEBUG SLEEP "$SLEEP_S" >"$TEST_DIR/debug-sleep.out" 2>&1 &
SLEEPER=$!
sleep 0.2
timed_req "sleep: the first request" GET /nope
check_status "sleep: unknown path still answered: 404" 404
check_no_ratelimit_headers "sleep: no RateLimit headers"
check_storage_503 sleep
check_parallel sleep 404
check_true "sleep: all that while Redis was still asleep ($(paused_ms) ms < ${SLEEP_S} s)" \
    test "$(paused_ms)" -lt $((SLEEP_S * 1000))
wait "$SLEEPER"
check_eq "sleep: DEBUG SLEEP ended by itself" OK "$(tr -d '\r\n' <"$TEST_DIR/debug-sleep.out")"
check_recovered sleep "$mark" "$(date +%s%N)"

stop_stack
