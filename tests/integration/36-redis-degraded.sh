#!/usr/bin/env bash
# 36-redis-degraded: Redis up but unable to serve, or hung (SPEC 5.6, 5.7).
#
# - Redis answers OOM to the token bucket script (maxmemory 1, noeviction): in fail mode
#   open requests pass without RateLimit headers, and the outage is logged once with
#   Redis's own reason; limiting and a "redis_up" line come back with the memory.
# - Redis paused (SIGSTOP) past the command timeout: after the first requests pay the
#   timeout, the others fail fast to the fail mode instead of each waiting; limiting
#   resumes within 5 s of SIGCONT, with no restart.
# - A refused request whose path is not valid UTF-8 is still logged with its fields.
# - /login and /signup ignore a stale or invalid bearer token: they are charged by IP
#   to the auth tier either way, and a client holding an expired token can log in.
#
# Run alone from the repository root:  bash tests/integration/36-redis-degraded.sh
set -u
. "$(dirname "$0")/lib.sh"

start_redis
export RATE_LIMITS_FILE
RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 100 | .tiers.auth.tokens_per_second = 100')
start_stack

# ------------------------------------------------------------------ OOM from Redis

note "Redis answers OOM (maxmemory 1, noeviction): fail mode open"
mark=$(log_mark)
redis_cli CONFIG SET maxmemory-policy noeviction >/dev/null
redis_cli CONFIG SET maxmemory 1 >/dev/null
req GET /nope
check_status "OOM: the request is still answered" 404
check_no_ratelimit_headers "OOM: open mode passes it without RateLimit headers"
for _ in 1 2 3 4 5; do req GET /nope; done
down=$(events redis_down "$mark")
n_down=$(printf '%s\n' "$down" | grep -c redis_down)
check_true "OOM: one redis_down line per gateway process for the outage (got $n_down)" \
    test "$n_down" -ge 1 -a "$n_down" -le 2
check_match "OOM: the warning carries Redis's reason" '"error":"OOM' "$down"
check_eq "OOM: the warning is level warn" warn "$(printf '%s' "$down" | head -n1 | jq -r .level)"
redis_cli CONFIG SET maxmemory 0 >/dev/null
ok_after=
for i in $(seq 50); do
    req GET /nope
    if hdr RateLimit-Limit >/dev/null; then ok_after=$i; break; fi
    sleep 0.1
done
check_ne "memory back: limiting resumes (RateLimit headers again)" "" "$ok_after"
wait_until 5 test -n "$(events redis_up "$mark")"
check_ne "memory back: a redis_up info line" "" "$(events redis_up "$mark")"

# ------------------------------------------------------------------ hung Redis

note "Redis paused (SIGSTOP) longer than the command timeout"
mark=$(log_mark)
kill -STOP "$REDIS_PID"
first=$(curl -s --noproxy '*' -o /dev/null -w '%{time_total}' --max-time 10 \
    "http://127.0.0.1:$PORT/nope")
check_true "paused: the first request ends within 2 s (timeout, not a hang)" \
    awk -v t="$first" 'BEGIN { exit !(t < 2) }'
slow=0
for _ in $(seq 10); do
    t=$(curl -s --noproxy '*' -o /dev/null -w '%{time_total}' --max-time 10 \
        "http://127.0.0.1:$PORT/nope")
    awk -v t="$t" 'BEGIN { exit !(t >= 0.3) }' && slow=$((slow + 1))
done
# Two gateway processes: each pays the timeout once, then fails fast.
check_true "paused: at most 2 of 10 later requests wait for the timeout (got $slow)" \
    test "$slow" -le 2
req GET /healthz
check_status "paused: /healthz says 503" 503
kill -CONT "$REDIS_PID"
t0=$(date +%s.%N)
back=
for _ in $(seq 50); do
    req GET /nope
    if hdr RateLimit-Limit >/dev/null; then back=$(date +%s.%N); break; fi
    sleep 0.1
done
check_ne "resumed: RateLimit headers come back" "" "$back"
check_true "resumed: within 5 s of SIGCONT" \
    awk -v a="$t0" -v b="${back:-999999}" 'BEGIN { exit !(b - a <= 5) }'

# ------------------------------------------------------------------ log of odd paths

note "a refused request with a path that is not UTF-8 is logged with all its fields"
redis_cli FLUSHALL >/dev/null
mark=$(log_mark)
for _ in $(seq 12); do req GET '/%C3%A9%C3'; done
raw_path=$'/\xc3\xa9\xc3'
for _ in $(seq 12); do
    curl -s --noproxy '*' --path-as-is -o /dev/null "http://127.0.0.1:$PORT$raw_path"
done
line=$(events rate_limited "$mark" | tail -n 1)
check_eq "rate_limited line has the identifier" "ip:127.0.0.1" \
    "$(printf '%s' "$line" | jq -r .identifier)"
check_eq "rate_limited line has the tier" "api_anonymous" "$(printf '%s' "$line" | jq -r .tier)"
check_match "rate_limited line has a printable path" '^/' "$(printf '%s' "$line" | jq -r .path)"

# ------------------------------------------------------------------ stale tokens

note "/login and /signup ignore an invalid bearer token"
token=$(signup_user stale@example.com 'correct horse') || bail "signup"
expired=$(make_jwt '{"alg":"HS256","typ":"JWT"}' \
    "$(jq -cn --arg s "$(user_id_of "$token")" --argjson n "$(date +%s)" \
        '{sub: $s, iat: ($n - 7200), exp: ($n - 3600), iss: "story-gateway"}')" "$JWT_SECRET")
req_json POST /login '{"email":"stale@example.com","password":"correct horse"}' \
    -H "Authorization: Bearer $expired"
check_status "login with an expired token in the header: 200" 200
check_jq "... and a fresh token" '.token_type' bearer
req_json POST /login '{"email":"stale@example.com","password":"correct horse"}' \
    -H "Authorization: Bearer not.a.token"
check_status "login with a garbage token in the header: 200" 200
check_header "... charged to the auth tier" RateLimit-Policy '"auth";q=100;w=1'
req GET /me -H "Authorization: Bearer $expired"
check_status "the expired token is still refused where it counts (/me): 401" 401
