#!/usr/bin/env bash
# 33-metrics: GET /metrics (issue 6), the host's counters in the Prometheus text format.
#
# A real lighttpd with its two gateway processes, a known burst, then exact counts:
#   - 10 requests at once to /me for one user on a tier of 3 tokens (refilling 0.01/s):
#     3 allowed, 7 limited, the 7 Retry-After values summed in the histogram; one
#     invalid token (charged as anonymous), 4 unknown paths and a 405 ("unmatched"), 2
#     /healthz and the scrapes themselves (not rate limited); the counts are the sum over
#     both processes, and the page lists both processes (their PIDs, each with requests).
#   - who may read it: loopback, or the METRICS_TOKEN bearer token; behind a trusted
#     proxy the forwarded client counts (403 for a remote one, a wrong token, a JWT).
#   - Redis stopped in fail mode open: requests "passed_redis_down", Redis errors.
#   - MistralAI (the fake upstream): one ok, one 401, three 500s (retries), one timeout,
#     by result, with the latency histogram; each equals what the fake logged.
#   - a new lighttpd gets a new segment and removes the old one of the stopped lighttpd;
#     fail mode closed counts "closed_redis_down"; METRICS_SHM names the segment; fail
#     mode local counts "fallback_allowed" and "fallback_limited" (one 429 each).
#
# Run alone from the repository root:  bash tests/integration/33-metrics.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

TEXT_PLAIN='text/plain; version=0.0.4; charset=utf-8'
FORBIDDEN='{"detail":"Forbidden"}'
R=story_gateway_requests_total
METRICS_TOKEN=$(openssl rand -hex 20)
FAKE_MISTRAL_KEY="sk-metrics-$(openssl rand -hex 8)"
export FAKE_MISTRAL_KEY METRICS_TOKEN
SEGMENTS=() # shared-memory names this script saw, removed at exit

# _metrics_exit: EXIT trap step: removes the segments of the stacks it started (lighttpd
# is stopped after this, and a later gateway would remove them anyway), keeps $?.
_metrics_exit() {
    local rc=$? s
    for s in "${SEGMENTS[@]}"; do
        case $s in /sg-*) rm -f "/dev/shm$s" ;; esac
    done
    return "$rc"
}
trap '_metrics_exit; _fake_mistral_exit; _cleanup' EXIT

start_redis
start_fake_mistral
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)
                                | .tiers.api_authenticated = {tokens_per_second: 0.01,
                                                              burst_capacity: 3}')
export RATE_LIMITS_FILE TRUSTED_PROXIES=127.0.0.1
export MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL MISTRAL_TIMEOUT=3
start_stack

# ------------------------------------------------------------------ local helpers

SCRAPE_N=0
# scrape [CURL_ARGS...]: GET /metrics (req), the page kept in a new file named in $PAGE.
scrape() {
    SCRAPE_N=$((SCRAPE_N + 1))
    req GET /metrics "$@"
    PAGE="$TEST_DIR/page-$SCRAPE_N.txt"
    printf '%s' "$BODY" >"$PAGE"
}

# value FILE SERIES: the value of the sample SERIES (exact name{labels}) in FILE, 0 when
# the page has no such line (zero series of the request table are left out).
value() {
    awk -v s="$2" 'index($0, s " ") == 1 { v = $NF } END { print (v == "" ? 0 : v) }' "$1"
}

# delta SERIES: its value in $AFTER minus its value in $BEFORE (whole numbers).
delta() {
    echo $(($(value "$AFTER" "$1") - $(value "$BEFORE" "$1")))
}

# check_delta DESC EXPECTED SERIES: ok when SERIES grew by exactly EXPECTED.
check_delta() {
    check_eq "$1" "$2" "$(delta "$3")"
}

# total FILE PREFIX: the sum of every sample whose line starts with PREFIX.
total() {
    awk -v p="$2" 'index($0, p) == 1 { n += $NF } END { print n + 0 }' "$1"
}

# rq ROUTE TIER OUTCOME CALLER: the requests_total series of those labels.
rq() {
    printf '%s{route="%s",tier="%s",outcome="%s",caller="%s"}' "$R" "$1" "$2" "$3" "$4"
}

# baseline: scrape now; the page is $BEFORE.
baseline() {
    scrape
    BEFORE=$PAGE
}

# after: scrape now; the page is $AFTER (the baseline's own scrape is counted in it).
after() {
    scrape
    AFTER=$PAGE
}

# gateway_pids: the PIDs of lighttpd's gateway processes, sorted, one a line.
gateway_pids() {
    ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null | tr -d ' ' | sort -n
}

# page_pids FILE: the PIDs the page lists, sorted, one a line.
page_pids() {
    sed -n 's/^story_gateway_process_requests_total{pid="\([0-9]*\)"} .*/\1/p' "$1" | sort -n
}

# segment_of MARK: the segment names the "metrics" start-up lines after MARK give, sorted.
segment_of() {
    events metrics "$1" | jq -r .segment | sort -u
}

# ------------------------------------------------------------ the page, by loopback

scrape
check_status "GET /metrics from loopback: 200" 200
check_header "Content-Type is the Prometheus text format 0.0.4" Content-Type "$TEXT_PLAIN"
check_no_ratelimit_headers "/metrics is not rate limited: no RateLimit headers"
check_match "the page has HELP and TYPE lines" \
    $'# HELP story_gateway_requests_total [^\n]+\n# TYPE story_gateway_requests_total counter' \
    "$BODY"
check_match "the Retry-After histogram has its +Inf bucket, sum and count" \
    $'story_gateway_retry_after_seconds_bucket\\{le="\\+Inf"\\} [0-9]+\nstory_gateway_retry_after_seconds_sum [0-9]+\nstory_gateway_retry_after_seconds_count [0-9]+\n' \
    "$BODY"
bad=$(grep -vE '^(# (HELP|TYPE) story_gateway_[a-z_]+ .+|story_gateway_[a-z_]+(\{.*\})? [0-9]+(\.[0-9]+)?)$' "$PAGE")
check_eq "every line of the page is HELP, TYPE or a sample" "" "$bad"
check_eq "no bucket of the page is kept for /metrics" "" "$(redis_keys 'rate_limit:*')"

mark0=0
SEGMENT=$(segment_of "$mark0")
SEGMENTS+=("$SEGMENT")
check_eq "both gateway processes log the same segment, one per lighttpd" 1 \
    "$(printf '%s\n' "$SEGMENT" | grep -c .)"
check_match "its default name: user, lighttpd's PID and start time, layout" \
    "^/sg-metrics-$(id -u)-$LIGHTTPD_PID-[0-9]+-v1\$" "$SEGMENT"
check_true "the segment exists in /dev/shm" test -f "/dev/shm$SEGMENT"

# ------------------------------------------------------------------ a known burst

SUB=$(openssl rand -hex 16)
TOKEN=$(make_user_token "$SUB")
baseline
# 10 at once, one connection each, so that both processes serve some.
urls=()
for _ in $(seq 10); do urls+=(-o /dev/null "http://127.0.0.1:$PORT/me"); done
curl -s --noproxy '*' --max-time 20 --parallel --parallel-immediate --parallel-max 10 \
    -H "Authorization: Bearer $TOKEN" -w '%{http_code}|%header{retry-after}\n' "${urls[@]}" \
    >"$TEST_DIR/burst.txt" 2>/dev/null
check_eq "the burst: 7 of 10 answered 429" 7 "$(grep -c '^429|' "$TEST_DIR/burst.txt")"
retry_sum=$(awk -F'|' '$1 == 429 { n += $2 } END { print n + 0 }' "$TEST_DIR/burst.txt")
req GET /me -H 'Authorization: Bearer not.a.token'
check_status "an invalid token: 401 (charged to the client's address)" 401
for i in 1 2 3 4; do req GET "/nope-$i"; done
check_status "an unknown path: 404" 404
req DELETE /me
check_status "a known path, another method: 405" 405
req GET /healthz
req GET /healthz
after

check_delta "GET /me, user, api_authenticated: 3 allowed" 3 \
    "$(rq 'GET /me' api_authenticated allowed authenticated)"
# A refusal is Redis's or, once a process has seen the bucket empty, its refusal cache's.
check_eq "GET /me, user, api_authenticated: 7 limited (by Redis or locally)" 7 \
    $(($(delta "$(rq 'GET /me' api_authenticated limited authenticated)") + \
    $(delta "$(rq 'GET /me' api_authenticated limited_local authenticated)")))
check_delta "GET /me with an invalid token: 1 allowed, anonymous, api_anonymous" 1 \
    "$(rq 'GET /me' api_anonymous allowed anonymous)"
check_delta "4 unknown paths and a 405: 5 unmatched, anonymous, api_anonymous" 5 \
    "$(rq unmatched api_anonymous allowed anonymous)"
check_delta "2 /healthz: unlimited, tier none" 2 "$(rq 'GET /healthz' none unlimited anonymous)"
check_delta "the baseline scrape: 1 GET /metrics, unlimited" 1 \
    "$(rq 'GET /metrics' none unlimited anonymous)"
check_eq "the request table grew by 19 in all" 19 \
    $(($(total "$AFTER" "$R{") - $(total "$BEFORE" "$R{")))
check_delta "429s by route: 7 for GET /me" 7 'story_gateway_rate_limited_total{route="GET /me"}'
check_eq "429s by route: none elsewhere" 7 \
    $(($(total "$AFTER" story_gateway_rate_limited_total) - $(total "$BEFORE" story_gateway_rate_limited_total)))
check_delta "Retry-After histogram: 7 observed" 7 story_gateway_retry_after_seconds_count
check_delta "Retry-After histogram: sum = the 7 Retry-After headers ($retry_sum s)" "$retry_sum" \
    story_gateway_retry_after_seconds_sum
check_delta "Retry-After histogram: none at or below 60 s (0.01 token/s: 61-100 s)" 0 \
    'story_gateway_retry_after_seconds_bucket{le="60"}'
check_delta "Retry-After histogram: all 7 at or below 300 s" 7 \
    'story_gateway_retry_after_seconds_bucket{le="300"}'
tokens=$(redis_cli hget "rate_limit:api_authenticated:user:$SUB" tokens)
check_true "the user's bucket in Redis agrees: under 1 token left of 3 ($tokens)" \
    awk -v t="$tokens" 'BEGIN { exit !(t != "" && t < 1) }'

# Both processes: the page lists lighttpd's two gateway PIDs, each served some of it.
pids=$(gateway_pids | tr '\n' ' ')
check_eq "the page lists lighttpd's two gateway processes" "$pids" \
    "$(page_pids "$AFTER" | tr '\n' ' ')"
check_eq "story_gateway_processes is 2" 2 "$(value "$AFTER" story_gateway_processes)"
served=0
for p in $pids; do
    d=$(delta "story_gateway_process_requests_total{pid=\"$p\"}")
    note "gateway $p answered $d of them"
    [ "$d" -gt 0 ] && served=$((served + 1))
done
check_eq "both gateway processes answered requests of the burst" 2 "$served"
check_eq "the processes' counts add up to the request table's (19)" 19 \
    $(($(total "$AFTER" story_gateway_process_requests_total) - $(total "$BEFORE" story_gateway_process_requests_total)))
check_eq "both processes logged their start with their PID" "$pids" \
    "$(events metrics "$mark0" | jq -r .pid | sort -n | tr '\n' ' ')"

# --------------------------------------------------------------------- who may read

XFF=(-H 'X-Forwarded-For: 203.0.113.7')
scrape "${XFF[@]}"
check_status "a remote client (through the trusted proxy): 403" 403
check_body "403 body" "$FORBIDDEN"
check_header "403 is JSON" Content-Type application/json
scrape "${XFF[@]}" -H "Authorization: Bearer $METRICS_TOKEN"
check_status "a remote client with METRICS_TOKEN: 200" 200
check_header "... the page" Content-Type "$TEXT_PLAIN"
scrape "${XFF[@]}" -H "Authorization: Bearer $(openssl rand -hex 20)"
check_status "a remote client with a wrong token of the same length: 403" 403
scrape "${XFF[@]}" -H "Authorization: Bearer ${METRICS_TOKEN}x"
check_status "a remote client with the token and one byte more: 403" 403
scrape "${XFF[@]}" -H "Authorization: Bearer $TOKEN"
check_status "a remote client with a valid user JWT: 403" 403
scrape "${XFF[@]}" -H "Authorization: Basic $(printf 'x:%s' "$METRICS_TOKEN" | base64 -w0)"
check_status "the token in another scheme: 403" 403
scrape -H 'X-Forwarded-For: 127.0.0.1'
check_status "the trusted proxy forwards a loopback client: 200" 200
req POST /metrics --data-binary ''
check_status "POST /metrics: 405" 405
check_header "... Allow: GET" Allow GET

# ------------------------------------------------------- Redis down, fail mode open

baseline
stop_redis
for i in 1 2 3; do req GET "/down-$i"; done
check_status "Redis down, fail mode open: an unknown path still answers 404" 404
check_no_ratelimit_headers "... without RateLimit headers"
scrape
check_status "Redis down: /metrics still answers 200" 200
AFTER=$PAGE
check_delta "3 requests counted passed_redis_down" 3 \
    "$(rq unmatched api_anonymous passed_redis_down anonymous)"
errs=$(($(total "$AFTER" story_gateway_redis_errors_total) - $(total "$BEFORE" story_gateway_redis_errors_total)))
if [ "$errs" -ge 1 ]; then pass "Redis errors counted ($errs)"; else fail "Redis errors counted" "none"; fi
check_true "... a failed connect among them" \
    test "$(delta 'story_gateway_redis_errors_total{kind="connect"}')" -ge 1
restart_redis
wait_until 10 healthz_is 200 || fail "healthz 200 again after Redis restarted"

# ----------------------------------------------------------------------- MistralAI

START_JSON='{"genre":"noir","characters":"a cat"}'
baseline
fake_reset_log
fake_mode normal
req_json POST /start-story "$START_JSON" -H "Authorization: Bearer $TOKEN" --max-time 30
check_status "upstream ok: 200" 200
fake_mode 401
req_json POST /start-story "$START_JSON" -H "Authorization: Bearer $TOKEN" --max-time 30
check_status "upstream 401: 502" 502
fake_mode 500
req_json POST /start-story "$START_JSON" -H "Authorization: Bearer $TOKEN" --max-time 30
check_status "upstream 500 three times: 502" 502
fake_mode "slow 6"
req_json POST /start-story "$START_JSON" -H "Authorization: Bearer $TOKEN" --max-time 30
check_status "upstream slower than MISTRAL_TIMEOUT: 504" 504
fake_mode
after
M=story_gateway_mistral_requests_total
check_delta "MistralAI: 1 ok" 1 "$M{result=\"ok\"}"
check_delta "MistralAI: 1 http_4xx (401, not retried)" 1 "$M{result=\"http_4xx\"}"
check_delta "MistralAI: 3 http_5xx (500 and its two retries)" 3 "$M{result=\"http_5xx\"}"
check_delta "MistralAI: 1 timeout" 1 "$M{result=\"timeout\"}"
check_eq "the fake received 6 requests" 6 "$(fake_requests)"
check_eq "MistralAI: 6 in all" 6 $(($(total "$AFTER" "$M") - $(total "$BEFORE" "$M")))
check_delta "MistralAI latency histogram: 6 observed" 6 \
    story_gateway_mistral_request_duration_seconds_count
check_delta "... five within 2.5 s" 5 \
    'story_gateway_mistral_request_duration_seconds_bucket{le="2.5"}'
check_delta "... the timeout above 2.5 s and within 5 s (MISTRAL_TIMEOUT 3)" 6 \
    'story_gateway_mistral_request_duration_seconds_bucket{le="5"}'
check_delta "the four story requests: ai_authenticated, allowed" 4 \
    "$(rq 'POST /start-story' ai_authenticated allowed authenticated)"
n=$(delta story_gateway_redis_command_duration_seconds_count)
if [ "$n" -ge 5 ]; then
    pass "Redis latency histogram counts the commands ($n since the baseline)"
else
    fail "Redis latency histogram counts the commands" "$n"
fi

# ------------------------------ a new lighttpd: new segment, the old one removed

OLD_SEGMENT=$SEGMENT
mark=$(log_mark)
export RATE_LIMIT_FAIL_MODE=closed
restart_stack
SEGMENT=$(segment_of "$mark")
SEGMENTS+=("$SEGMENT")
check_match "the new lighttpd's gateways use a segment of its own" \
    "^/sg-metrics-$(id -u)-$LIGHTTPD_PID-[0-9]+-v1\$" "$SEGMENT"
check_ne "... not the old one" "$OLD_SEGMENT" "$SEGMENT"
check_false "the stopped lighttpd's segment was removed" test -e "/dev/shm$OLD_SEGMENT"
baseline
check_eq "the new page starts from zero: no GET /me counted" 0 \
    "$(total "$BEFORE" "$R{route=\"GET /me\"")"

stop_redis
req GET /closed
check_status "Redis down, fail mode closed: 503" 503
after
check_delta "fail mode closed: 1 closed_redis_down" 1 \
    "$(rq unmatched api_anonymous closed_redis_down anonymous)"
restart_redis

# -------------------------------------------------------------- METRICS_SHM

NAMED="sg-test-metrics-$$-$RANDOM"
SEGMENTS+=("/$NAMED")
mark=$(log_mark)
export METRICS_SHM=$NAMED RATE_LIMIT_FAIL_MODE=local
restart_stack
check_eq "METRICS_SHM names the segment of both processes" "/$NAMED" "$(segment_of "$mark")"
check_true "... in /dev/shm" test -f "/dev/shm/$NAMED"
check_false "... and the stopped lighttpd's default segment was removed all the same" \
    test -e "/dev/shm$SEGMENT"
scrape
check_status "the named segment serves the page" 200
check_eq "... with both processes" 2 "$(value "$PAGE" story_gateway_processes)"

# ------------------------------------------------------- Redis down, fail mode local

# Each process limits with its own buckets (3 tokens): 8 requests, some 429.
baseline
stop_redis
limited=0
for _ in $(seq 8); do
    req GET /me -H "Authorization: Bearer $TOKEN"
    [ "$STATUS" == 429 ] && limited=$((limited + 1))
done
after
restart_redis
fa=$(delta "$(rq 'GET /me' api_authenticated fallback_allowed authenticated)")
fl=$(delta "$(rq 'GET /me' api_authenticated fallback_limited authenticated)")
check_eq "fail mode local: every request counted fallback_allowed or fallback_limited" 8 \
    $((fa + fl))
check_eq "... fallback_limited is the number of 429 answers ($limited)" "$limited" "$fl"
if [ "$fa" -ge 3 ] && [ "$fa" -le 6 ]; then
    pass "... 3 to 6 allowed: 3 tokens per process, two processes ($fa)"
else
    fail "... 3 to 6 allowed: 3 tokens per process, two processes" "allowed: $fa"
fi
check_delta "... and 429s by route count them" "$limited" \
    'story_gateway_rate_limited_total{route="GET /me"}'
rm -f "/dev/shm/$NAMED" # ours, not of the default form: removed here
