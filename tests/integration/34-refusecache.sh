#!/usr/bin/env bash
# 34-refusecache: refusals a gateway process answers without asking Redis (issue 6;
# fcgi/refusecache.c, README "Refusals without Redis").
#
# A real lighttpd with its two gateway processes (lighttpd.conf, max-procs 2) and a real
# Redis. The limits file makes api_authenticated (GET /me of a user) 20 tokens/s with a
# burst of 5, and api_anonymous (GET /nope without a token) 0.05 token/s with a burst of
# 1, so that a refusal stays known for the whole horizon (10 s).
#
# 1. Round trips: for a bucket Redis said is empty, each request costs exactly one
#    EVALSHA when Redis decides and none when the process knew (INFO commandstats
#    against the decided_by of every rate_limited log line); the local 429 is the one
#    Redis would give (body, headers, Retry-After against the bucket read from Redis).
# 2. Exactness under load: HAMMER_CONNECTIONS concurrent clients (two curl --parallel
#    loops) send GET /me of one user for HAMMER_SECONDS. redis-cli MONITOR records
#    every run of the script (the HSET of tokens and last_update, Redis TIME), so the
#    bucket's whole history is known: the 200s must be exactly the admissions Redis
#    made, their number burst + rate x span (+-1, span = Redis time from the first to
#    the last admission), the bucket state must obey the token bucket law, local
#    refusals must have happened (EVALSHA well below the requests), every 429 must carry
#    the right headers, and the tokens each admission left show that admissions came as
#    soon as their token did (the cache did not hold a token back).
# 3. After the token: a client refused (locally) that sleeps what Retry-After says is
#    admitted.
#
# Run alone from the repository root:  bash tests/integration/34-refusecache.sh
# HAMMER_SECONDS (3) and HAMMER_CONNECTIONS (32) from the environment.
set -u
. "$(dirname "$0")/lib.sh"

HAMMER_SECONDS=${HAMMER_SECONDS:-3}
HAMMER_CONNECTIONS=${HAMMER_CONNECTIONS:-32}
RATE=20
BURST=5

# ------------------------------------------------------------------ local helpers

# script_calls: calls of EVALSHA + EVAL in Redis so far (INFO commandstats).
script_calls() {
    redis_cli info commandstats |
        awk -F'[:=,]' '/^cmdstat_(evalsha|eval):/ { n += $3 } END { print n + 0 }'
}

# decided BY MARK IDENTIFIER: rate_limited lines since MARK for IDENTIFIER decided by BY
# ("redis" or "refusal_cache").
decided() {
    events rate_limited "$2" |
        jq -c --arg by "$1" --arg id "$3" 'select(.decided_by == $by and .identifier == $id)' |
        wc -l
}

# redis_now: Redis TIME in seconds, to the microsecond.
redis_now() {
    redis_cli time | awk 'NR == 1 { s = $1 } NR == 2 { printf "%.6f\n", s + $1 / 1e6 }'
}

# The fields curl prints per response, "|"-separated.
FMT='%{http_code}|%header{ratelimit-limit}|%header{ratelimit-remaining}|%header{ratelimit-reset}|%header{ratelimit-policy}|%header{ratelimit}|%header{retry-after}\n'

# keepalive N PATH [CURL_ARGS...]: N requests one after the other on one connection;
# one FMT line each in $TEST_DIR/keepalive.txt.
keepalive() {
    local n=$1 path=$2 i
    shift 2
    local -a urls=()
    for ((i = 0; i < n; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$PORT$path"); done
    curl -s --noproxy '*' --max-time 20 -H 'Expect:' -w "$FMT" "$@" "${urls[@]}" \
        >"$TEST_DIR/keepalive.txt" 2>/dev/null
}

# hammer_loop SECONDS PARALLEL OUT TOKEN: GET /me with TOKEN, PARALLEL at a time, in
# batches of 400, until SECONDS have passed; one FMT line per answer appended to OUT.
hammer_loop() {
    local end=$(($(date +%s%N) + $1 * 1000000000)) i
    local -a urls=()
    for ((i = 0; i < 400; i++)); do urls+=(-o /dev/null "http://127.0.0.1:$PORT/me"); done
    while [ "$(date +%s%N)" -lt "$end" ]; do
        curl -s --noproxy '*' --max-time 20 -H 'Expect:' -H "Authorization: Bearer $4" \
            --parallel --parallel-max "$2" -w "$FMT" "${urls[@]}" >>"$3" 2>/dev/null
    done
}

# ------------------------------------------------------------------------- start

start_redis
RATE_LIMITS_FILE=$(limits_file ".tiers.api_authenticated.tokens_per_second = $RATE
    | .tiers.api_authenticated.burst_capacity = $BURST
    | .tiers.api_anonymous.tokens_per_second = 0.05
    | .tiers.api_anonymous.burst_capacity = 1")
export RATE_LIMITS_FILE
start_stack
TOK=$(signup_user "hammer@example.com" 'a long enough password') || bail "signup_user"
ID=$(user_id_of "$TOK")
KEY="rate_limit:api_authenticated:user:$ID"

# ------------------------------------------------ 1. round trips per decision

note "round trips: an empty api_anonymous bucket (0.05/s, burst 1)"
mark=$(log_mark)
c0=$(script_calls)
req GET /nope
check_status "the first request takes the only token: 404" 404
c1=$(script_calls)
check_eq "... one EVALSHA for it" 1 $((c1 - c0))
keepalive 40 /nope
check_eq "40 more one after the other: all 429" "429" \
    "$(cut -d'|' -f1 "$TEST_DIR/keepalive.txt" | sort -u | paste -sd' ' -)"
c2=$(script_calls)
by_redis=$(decided redis "$mark" ip:127.0.0.1)
by_cache=$(decided refusal_cache "$mark" ip:127.0.0.1)
note "one after the other: $((c2 - c1)) EVALSHA for 40 refusals ($by_redis by Redis, $by_cache known locally)"
check_eq "every refusal Redis decided cost one EVALSHA, the others none" "$by_redis" $((c2 - c1))
check_eq "... and every refusal is logged, by one or the other" 40 $((by_redis + by_cache))
# The process that admitted the first request knew the bucket empty from that answer.
check_true "at most one refusal went to Redis, the other process's first ($by_redis)" \
    test "$by_redis" -le 1
parallel 40 GET /nope
check_eq "40 at once: all 429" "429" "$(cut -d'|' -f1 "$TEST_DIR/parallel.txt" | sort -u)"
c3=$(script_calls)
by_redis2=$(decided redis "$mark" ip:127.0.0.1)
by_cache2=$(decided refusal_cache "$mark" ip:127.0.0.1)
note "at once: $((c3 - c2)) EVALSHA for 40 refusals"
check_eq "at once: one EVALSHA per refusal Redis decided, none for the others" \
    $((by_redis2 - by_redis)) $((c3 - c2))
check_eq "at once: every refusal logged once" 80 $((by_redis2 + by_cache2))
# At once, a process that has not had an answer for this bucket yet sends every request
# it holds to Redis until the first answer comes back; the one-after-the-other part
# above bounds what is certain: at most one of its 40 went to Redis.
check_true "refusals were known locally ($by_cache2 of 80, at least 39)" test "$by_cache2" -ge 39

note "a local 429 is the one Redis would give"
mark=$(log_mark)
req GET /nope
check_status "refused again: 429" 429
check_eq "... known locally (no EVALSHA)" "$c3" "$(script_calls)"
check_eq "... logged as decided_by refusal_cache" 1 "$(decided refusal_cache "$mark" ip:127.0.0.1)"
now=$(redis_now)
state=$(redis_cli hmget rate_limit:api_anonymous:ip:127.0.0.1 tokens last_update | paste -sd' ' -)
ra=$(hdr Retry-After)
# What Redis would say now: wait = (1 - tokens(now)) / rate, Reset = ceil(last + (1 - tokens) / rate).
read -r redis_ra redis_reset < <(awk -v s="$state" -v n="$now" 'BEGIN {
    split(s, a, " "); t = a[1] + 0.05 * (n - a[2]); w = (1 - t) / 0.05
    r = int(w); if (r < w) r++; if (r < 1) r = 1
    f = a[2] + (1 - a[1]) / 0.05; z = int(f); if (z < f) z++
    print r, z }')
check_true "Retry-After ($ra) is never earlier than Redis's next token ($redis_ra, read after)" \
    test "$ra" -ge "$redis_ra"
check_true "... and at most one second later" test "$ra" -le $((redis_ra + 1))
check_header "RateLimit-Reset is Redis's instant of a full bucket" RateLimit-Reset "$redis_reset"
check_header "RateLimit-Limit 1" RateLimit-Limit 1
check_header "RateLimit-Remaining 0" RateLimit-Remaining 0
check_header "RateLimit-Policy" RateLimit-Policy '"api_anonymous";q=1;w=20'
check_header "RateLimit: t is the wait of the one token (burst 1)" RateLimit \
    "\"api_anonymous\";r=0;t=$ra"
msg="Too many requests. Please try again in $ra second$([ "$ra" == 1 ] || echo s)."
check_json "the usual 429 body" . "$(jq -cn --arg m "$msg" --argjson r "$ra" '{error:
    "Rate limit exceeded", message: $m, retry_after: $r, limit: 1,
    rate: "0.05 requests/second"} | . + {detail: .}')"
req GET /nope -H 'Accept: application/problem+json'
check_status "problem+json, locally: 429" 429
check_header "problem+json, locally: Content-Type" Content-Type application/problem+json
check_json "problem+json, locally: violated-policies" '."violated-policies"' '["api_anonymous"]'
check_json "problem+json, locally: retry_after equals Retry-After" .retry_after "$(hdr Retry-After)"

# ---------------------------------------------------- 2. exactness under load

note "exactness: GET /me of one user, $RATE/s burst $BURST, $HAMMER_CONNECTIONS clients, ${HAMMER_SECONDS} s"
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" monitor >"$TEST_DIR/monitor.txt" 2>/dev/null &
MONITOR_PID=$!
track_pid "$MONITOR_PID"
sleep 0.3
mark=$(log_mark)
c0=$(script_calls)
out1=$TEST_DIR/hammer-1.txt
out2=$TEST_DIR/hammer-2.txt
: >"$out1"
: >"$out2"
NOW0=$(date +%s)
hammer_loop "$HAMMER_SECONDS" $((HAMMER_CONNECTIONS / 2)) "$out1" "$TOK" &
h1=$!
hammer_loop "$HAMMER_SECONDS" $((HAMMER_CONNECTIONS - HAMMER_CONNECTIONS / 2)) "$out2" "$TOK" &
h2=$!
wait "$h1" "$h2"
NOW1=$(date +%s)
c1=$(script_calls)
end_state=$(redis_cli hmget "$KEY" tokens last_update | paste -sd' ' -)
sleep 0.3
kill "$MONITOR_PID" 2>/dev/null
wait "$MONITOR_PID" 2>/dev/null
cat "$out1" "$out2" >"$TEST_DIR/hammer.txt"

total=$(wc -l <"$TEST_DIR/hammer.txt")
ok200=$(cut -d'|' -f1 "$TEST_DIR/hammer.txt" | grep -cx 200)
r429=$(cut -d'|' -f1 "$TEST_DIR/hammer.txt" | grep -cx 429)
calls=$((c1 - c0))
by_redis=$(decided redis "$mark" "user:$ID")
by_cache=$(decided refusal_cache "$mark" "user:$ID")
note "$total requests: $ok200 x 200, $r429 x 429 ($by_redis refused by Redis, $by_cache locally)"
note "EVALSHA: $calls, $(awk -v c="$calls" -v n="$total" 'BEGIN { printf "%.3f", c / n }') per request"
check_eq "every answer is a 200 or a 429" "$total" $((ok200 + r429))
check_true "the load ran (at least 500 requests)" test "$total" -ge 500
check_eq "one EVALSHA per admission and per refusal Redis decided, none for the rest" \
    $((ok200 + by_redis)) "$calls"
check_eq "every 429 is logged once, by Redis or locally" "$r429" $((by_redis + by_cache))
check_true "local refusals happened: EVALSHA ($calls) well below the requests ($total)" \
    test $((calls * 2)) -lt "$total"

# The bucket's history from MONITOR: each run of the script writes tokens and
# last_update (Redis TIME). A run admitted when the tokens it found, refilled from the
# previous run, exceed what it left by one.
grep -F "[0 lua] \"HSET\" \"$KEY\"" "$TEST_DIR/monitor.txt" |
    awk -F'"' '{ print $8, $12 }' >"$TEST_DIR/history.txt"
runs=$(wc -l <"$TEST_DIR/history.txt")
check_eq "MONITOR saw one script run per EVALSHA" "$calls" "$runs"
# The law holds from the last time the bucket was full (at the very start, or if the
# clients were slow to start): from then on tokens_end = burst - admitted + rate x time.
read -r admitted since full_at last < <(awk -v cap="$BURST" -v rate="$RATE" \
    -v out="$TEST_DIR/left.txt" '
    { t = $1 + 0; lu = $2 + 0
      before = (NR == 1) ? cap : prev_t + rate * (lu - prev_lu)
      if (before >= cap) { before = cap; full = lu; k = 0 }
      if (before - t > 0.5) {
          n++; k++; last = lu
          # after the burst, the tokens an admission left say how late it came after its
          # token (in tokens: x 50 ms at 20/s)
          if (before < 2) print t > out
      }
      prev_t = t; prev_lu = lu }
    END { printf "%d %d %.6f %.6f\n", n, k, full, last }' "$TEST_DIR/history.txt")
steady=$(wc -l <"$TEST_DIR/left.txt")
median=$(sort -g "$TEST_DIR/left.txt" | awk '{ a[NR] = $1 } END { print NR ? a[int((NR + 1) / 2)] : "none" }')
worst=$(sort -g "$TEST_DIR/left.txt" | tail -n 1)
note "Redis admitted $admitted; $since since the bucket was last full (at $full_at), the last" \
    "at $last; $steady after the burst left a median of $median tokens (worst $worst)"
check_eq "the 200s are exactly the admissions Redis made" "$admitted" "$ok200"
span=$(awk -v a="$full_at" -v b="$last" 'BEGIN { printf "%.6f", b - a }')
allowed=$(awk -v s="$span" -v c="$BURST" -v r="$RATE" 'BEGIN { printf "%.3f", c + r * s }')
check_true "admitted since full ($since) = burst + rate x span = $allowed (+-1, span $span s)" \
    awk -v n="$since" -v a="$allowed" 'BEGIN { exit !(n >= a - 1 && n <= a + 1) }'
law=$(awk -v s="$end_state" -v f="$full_at" -v c="$BURST" -v r="$RATE" 'BEGIN {
    split(s, x, " "); printf "%.4f", c - x[1] + r * (x[2] - f) }')
check_true "the bucket read after obeys the law: burst - tokens + rate x (last_update - full) = $law" \
    awk -v n="$since" -v l="$law" 'BEGIN { d = n - l; exit !(d > -0.01 && d < 0.01) }'
check_true "admissions came as their token did: median tokens left $median < 0.25 (12.5 ms)" \
    awk -v m="$median" -v n="$steady" 'BEGIN { exit !(n >= 10 && m != "none" && m < 0.25) }'

# Every answer's headers: 429s exactly those of an empty bucket of this tier.
bad=$(awk -F'|' -v n0="$NOW0" -v n1="$NOW1" -v b="$BURST" '
    $1 == 429 && !($2 == b && $3 == 0 && $5 == "\"api_authenticated\";q=5;w=1" &&
                   $6 == "\"api_authenticated\";r=0;t=1" && $7 == 1 &&
                   $4 > n0 && $4 <= n1 + 2) { n++; if (n <= 3) print > "/dev/stderr" }
    $1 == 200 && !($2 == b && $3 >= 0 && $3 < b && $7 == "") { n++ }
    END { print n + 0 }' "$TEST_DIR/hammer.txt" 2>"$TEST_DIR/hammer-bad.txt")
check_eq "every 429 carries Limit 5, Remaining 0, Retry-After 1, t=1, a Reset in time; every 200 its own" \
    0 "$bad"

# ----------------------------------------------- 3. after the token: admitted

note "after the token: a client that waits what Retry-After says is admitted"
# refused_now METHOD PATH [ARGS...]: requests until one is refused (at most 20).
refused_now() {
    for _ in $(seq 20); do
        req "$@"
        [ "$STATUS" == 429 ] && return 0
    done
    return 1
}
mark=$(log_mark)
keepalive 12 /me -H "Authorization: Bearer $TOK"
refused_now GET /me -H "Authorization: Bearer $TOK"
check_status "GET /me (20/s): refused" 429
ra=$(hdr Retry-After)
sleep "$ra"
req GET /me -H "Authorization: Bearer $TOK"
check_status "GET /me: $ra s later, admitted" 200
# ai_anonymous (0.5/s, burst 2): a Retry-After of 1 or 2 s against a wait of up to 2 s,
# so that a local answer rounded the wrong way would show.
for round in 1 2 3; do
    parallel 8 GET /suggestions
    refused_now GET /suggestions
    check_status "anonymous /suggestions (0.5/s), round $round: refused" 429
    ra=$(hdr Retry-After)
    check_true "round $round: Retry-After in [1, 2] ($ra)" test "$ra" -ge 1 -a "$ra" -le 2
    sleep "$ra"
    req GET /suggestions
    check_status "round $round: $ra s later, admitted" 200
done
n=$(count_events rate_limited "$mark")
by_cache=$(events rate_limited "$mark" | jq -c 'select(.decided_by == "refusal_cache")' | wc -l)
note "these refusals: $by_cache of $n known locally"
check_true "those refusals included local ones" test "$by_cache" -gt 0

stop_stack
