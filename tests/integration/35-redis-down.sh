#!/usr/bin/env bash
# 35-redis-down: Redis stopped and restarted under each RATE_LIMIT_FAIL_MODE (SPEC 5.6).
#
# One stack per mode (open, closed, local). For each: warm up many gateway threads,
# stop redis-server (by PID), check what the gateway answers while it is down and what
# it logs, start redis-server again on the same port, and check that limiting resumes
# within 5 s with no restart of the gateway, for every worker.
#
# Run alone from the repository root:  bash tests/integration/35-redis-down.sh
set -u
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------------ local helpers

# check_per_process DESC N DETAIL: ok when N is 1 or 2, one line per gateway process
# (lighttpd runs two) at most.
check_per_process() {
    if [ "$2" -ge 1 ] && [ "$2" -le 2 ]; then pass "$1 ($2)"; else fail "$1" "$3"; fi
}

STORY_BODY='{"genre":"x","characters":"y"}'
UNAVAILABLE='{"detail":"Service temporarily unavailable"}'

# parallel_statuses: distinct statuses of the last parallel run, sorted, space-separated.
parallel_statuses() {
    cut -d'|' -f1 "$TEST_DIR/parallel.txt" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# parallel_count STATUS: how many responses of the last parallel run had STATUS.
parallel_count() {
    cut -d'|' -f1 "$TEST_DIR/parallel.txt" | grep -cx "$1"
}

# parallel_without_limit: how many responses of the last parallel run lacked
# RateLimit-Limit.
parallel_without_limit() {
    awk -F'|' '$2 == "" { n++ } END { print n + 0 }' "$TEST_DIR/parallel.txt"
}

# warm_up: 64 requests at once (two gateways of 32 threads) so that many threads hold
# a Redis connection when Redis goes away; the buckets are emptied afterwards, once no
# gateway process can still refuse one by itself (wait_refusals_known).
warm_up() {
    local k
    parallel 64 GET /nope
    wait_refusals_known
    for k in $(redis_keys 'rate_limit:*'); do
        redis_cli del "$k" >/dev/null
    done
}

# healthz_ok: true when /healthz answers 200.
healthz_ok() {
    [ "$(healthz_status)" == 200 ]
}

# redis_limited: one GET /nope; true when it is a 404 carrying RateLimit-Limit and its
# bucket is in Redis (limiting by Redis, not by the process).
redis_limited() {
    req GET /nope
    [ "$STATUS" == 404 ] && hdr RateLimit-Limit >/dev/null &&
        [ "$(redis_cli exists rate_limit:api_anonymous:ip:127.0.0.1)" == 1 ]
}

# check_recovery MODE MARK: restart redis-server on the same port, then: Redis
# limiting is back within 5 s (polled every 0.1 s); 5 s after the restart every worker
# limits again (40 requests at once all carry RateLimit-Limit); /healthz 200;
# "redis_up" logged; still at most one "redis_down" per process since MARK.
check_recovery() {
    local mode=$1 mark=$2 t0 ms i k
    restart_redis
    t0=$(date +%s%N)
    ms=
    for i in $(seq 100); do
        if redis_limited; then
            ms=$((($(date +%s%N) - t0) / 1000000))
            break
        fi
        sleep 0.1
    done
    if [ -n "$ms" ] && [ "$ms" -le 5000 ]; then
        pass "$mode: Redis limiting is back ${ms} ms after Redis restarts (<= 5 s)"
    else
        fail "$mode: Redis limiting is back within 5 s after Redis restarts" \
            "not back after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    fi
    # Every worker: wait until 5 s after the restart, then hit many threads at once.
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$ms" -lt 5000 ] && sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", (5000 - m) / 1000 }')"
    for k in $(redis_keys 'rate_limit:*'); do
        redis_cli del "$k" >/dev/null
    done
    parallel 40 GET /nope
    check_eq "$mode: 5 s after the restart, 40 requests at once are all 404/429" "404 429" \
        "$(parallel_statuses)"
    check_eq "$mode: 5 s after the restart, every answer carries RateLimit-Limit" 0 \
        "$(parallel_without_limit)"
    local n
    n=$(parallel_count 404)
    if [ "$n" -ge 10 ] && [ "$n" -le 11 ]; then
        pass "$mode: ... and only the burst passes ($n of 40; 10, +1 for refill meanwhile)"
    else
        fail "$mode: ... and only the burst passes (10, +1 for refill meanwhile)" \
            "404s: $n of 40"
    fi
    wait_until 5 healthz_ok
    check_eq "$mode: /healthz is 200 again" 200 "$(healthz_status)"
    sleep 0.2
    local up down
    up=$(count_events redis_up "$mark")
    down=$(count_events redis_down "$mark")
    check_per_process "$mode: one \"redis_up\" info line per process" "$up" "redis_up lines: $up"
    check_true "$mode: redis_up lines are level info" \
        jq -e -s 'length > 0 and all(.[]; .level == "info")' <<<"$(events redis_up "$mark")"
    if [ "$down" -ge 1 ] && [ "$down" -le 2 ]; then
        pass "$mode: one outage, at most one \"redis_down\" per process in all ($down)"
    else
        fail "$mode: one outage, at most one \"redis_down\" per process in all" \
            "redis_down lines since Redis stopped: $down" \
            "$(events redis_down "$mark" | head -n 6 | tr '\n' ' ' | cut -c1-600)"
    fi
}

# start_mode MODE: a fresh stack in fail mode MODE (Redis must be up), a signed-up user
# (TOK, its token) and warmed-up gateway threads. Mode open is the default: it is tested
# with RATE_LIMIT_FAIL_MODE unset.
start_mode() {
    stop_stack
    if [ "$1" == open ]; then
        unset RATE_LIMIT_FAIL_MODE
    else
        export RATE_LIMIT_FAIL_MODE=$1
    fi
    start_stack
    TOK=$(signup_user "user-$1@example.com" 'a long enough password') ||
        bail "$1: signup_user"
    req GET /me -H "Authorization: Bearer $TOK"
    check_status "$1: Redis up: GET /me 200" 200
    check_ratelimit_headers "$1: Redis up: RateLimit headers"
    warm_up
}

# check_healthz_down MODE: /healthz while Redis is down.
check_healthz_down() {
    req GET /healthz
    check_status "$1: /healthz 503 while Redis is down" 503
    check_json "$1: /healthz body" . '{"status":"degraded","redis":"down"}'
}

start_redis

# ----------------------------------------------------------------------- open

note "fail mode open (default)"
start_mode open
mark=$(log_mark)
stop_redis

req GET /nope
check_status "open: unknown path still answered: 404" 404
check_body "open: 404 body" '{"detail":"Not Found"}'
check_no_ratelimit_headers "open: no RateLimit headers while Redis is down"
# GET /suggestions without story_id needs no storage: it shows what the limiter does.
req GET /suggestions -H "Authorization: Bearer $TOK"
check_status "open: ai route passes the limiter: 200" 200
check_no_ratelimit_headers "open: ai route: no RateLimit headers"
check_jq "open: ai route answered by the storyteller" '.suggestions | length' 3
req_json POST /start-story "$STORY_BODY" -H "Authorization: Bearer $TOK"
check_status "open: a story route that needs storage: 503" 503
check_body "open: its body" "$UNAVAILABLE"
check_header "open: its Retry-After: 1" Retry-After 1
req GET /me -H "Authorization: Bearer $TOK"
check_status "open: GET /me needs storage: 503" 503
check_header "open: GET /me 503 is JSON" Content-Type application/json
check_jq "open: GET /me 503 body has a detail string" '.detail | type == "string"'
req_json POST /login '{"email":"user-open@example.com","password":"a long enough password"}'
check_status "open: POST /login needs storage: 503" 503
check_jq "open: POST /login 503 body has a detail string" '.detail | type == "string"'
check_healthz_down open
parallel 60 GET /nope
check_eq "open: 60 requests at once while Redis is down: all 404" 404 "$(parallel_statuses)"
check_eq "open: none of them carries RateLimit-Limit" 60 "$(parallel_without_limit)"
for i in $(seq 10); do req GET /nope; done
check_status "open: still answering after many requests" 404
sleep 0.2
n=$(count_events redis_down "$mark")
check_per_process "open: one \"redis_down\" warning per process, not per request" "$n" "redis_down lines: $n"
check_true "open: redis_down lines are level warn" \
    jq -e -s 'length > 0 and all(.[]; .level == "warn")' <<<"$(events redis_down "$mark")"
check_recovery open "$mark"

# --------------------------------------------------------------------- closed

note "fail mode closed"
start_mode closed
mark=$(log_mark)
stop_redis

req GET /nope
check_status "closed: unknown path: 503" 503
check_body "closed: 503 body" "$UNAVAILABLE"
check_header "closed: Retry-After: 1" Retry-After 1
check_header "closed: Content-Type application/json" Content-Type application/json
req_json POST /start-story "$STORY_BODY" -H "Authorization: Bearer $TOK"
check_status "closed: ai route (user): 503" 503
check_body "closed: ai route body" "$UNAVAILABLE"
check_header "closed: ai route Retry-After: 1" Retry-After 1
req_json POST /start-story "$STORY_BODY"
check_status "closed: ai route (anonymous): 503" 503
check_body "closed: ai route (anonymous) body" "$UNAVAILABLE"
req_json POST /login '{"email":"user-closed@example.com","password":"a long enough password"}'
check_status "closed: POST /login: 503" 503
check_body "closed: POST /login body" "$UNAVAILABLE"
check_header "closed: POST /login Retry-After: 1" Retry-After 1
req GET /me -H "Authorization: Bearer $TOK"
check_status "closed: GET /me: 503" 503
check_body "closed: GET /me body" "$UNAVAILABLE"
check_header "closed: GET /me Retry-After: 1" Retry-After 1
check_healthz_down closed
parallel 40 GET /nope
check_eq "closed: 40 requests at once: all 503" 503 "$(parallel_statuses)"
sleep 0.2
n=$(count_events redis_down "$mark")
check_per_process "closed: one \"redis_down\" warning per process" "$n" "redis_down lines: $n"
check_recovery closed "$mark"

# ---------------------------------------------------------------------- local

note "fail mode local"
start_mode local
mark=$(log_mark)
stop_redis

LOCAL_TOK=$(make_user_token "$(openssl rand -hex 16)")
parallel 12 GET /suggestions -H "Authorization: Bearer $LOCAL_TOK"
passed=$(parallel_count 200)
refused=$(parallel_count 429)
note "local: 12 ai requests at once: $passed passed, $refused refused"
check_eq "local: every answer is a pass or a 429" 12 $((passed + refused))
if [ "$passed" -ge 5 ] && [ "$passed" -le 10 ]; then
    pass "local: between burst (5) and burst x 2 processes (10) pass"
else
    fail "local: between burst (5) and burst x 2 processes (10) pass" "passed: $passed"
fi
check_eq "local: every answer carries RateLimit-Limit 5" "5" \
    "$(cut -d'|' -f2 "$TEST_DIR/parallel.txt" | sort -u | tr '\n' ' ' | sed 's/ $//')"
for i in $(seq 12); do
    req GET /suggestions -H "Authorization: Bearer $LOCAL_TOK"
    [ "$STATUS" == 429 ] && break
done
check_status "local: the user is refused" 429
MSG1='Too many requests. Please try again in 1 second.'
check_json "local: the usual 429 body" . "$(jq -cn --arg m "$MSG1" '{error: "Rate limit exceeded",
    message: $m, retry_after: 1, limit: 5, rate: "2 requests/second"} | . + {detail: .}')"
check_header "local: 429 Content-Type application/json" Content-Type application/json
check_header "local: 429 Retry-After 1" Retry-After 1
check_header "local: 429 RateLimit-Limit" RateLimit-Limit 5
check_header "local: 429 RateLimit-Remaining" RateLimit-Remaining 0
check_header "local: 429 RateLimit-Policy" RateLimit-Policy '"ai_authenticated";q=5;w=3'
check_header_match "local: 429 RateLimit" RateLimit '^"ai_authenticated";r=0;t=[1-3]$'
req GET /suggestions -H "Authorization: Bearer $(make_user_token "$(openssl rand -hex 16)")"
check_status "local: another user is not affected" 200
check_header "local: another user: RateLimit-Limit 5" RateLimit-Limit 5
req GET /me -H "Authorization: Bearer $TOK"
check_status "local: GET /me needs storage: 503" 503
check_jq "local: GET /me 503 body has a detail string" '.detail | type == "string"'
check_healthz_down local
sleep 0.2
n=$(count_events redis_down "$mark")
check_per_process "local: one \"redis_down\" warning per process" "$n" "redis_down lines: $n"
check_recovery local "$mark"
req_json POST /start-story "$STORY_BODY" -H "Authorization: Bearer $LOCAL_TOK"
check_header "local: after recovery the user's bucket is Redis's (a fresh one)" \
    RateLimit-Remaining 4
check_eq "local: ... and its key is in Redis" 1 \
    "$(redis_cli exists "rate_limit:ai_authenticated:user:$(user_id_of "$LOCAL_TOK")")"

stop_stack
