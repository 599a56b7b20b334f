#!/usr/bin/env bash
# 22-login-abuse: what credential stuffing and probing get from POST /login.
#
# - Failed log-ins per e-mail address ("login_failures" in limits.json, by default 10
#   per 900 s): the 11th attempt is a 429 for that address from any IP, whatever the
#   password, with the body and headers of SPEC 5.5 naming the policy; unknown addresses
#   lock the same way (no account enumeration); other addresses are not affected; a
#   success gives the address its attempts back; the bucket refills at its rate.
# - Timing: an unknown e-mail and a wrong password take the same time (medians of
#   interleaved samples within 20%).
# - Client bytes never split a header or reach Redis as a command: CR, LF and NUL in
#   paths, e-mails and story text.
# - A JWT_SECRET shorter than 32 bytes stops start-up, without showing it.
#
# The auth tier (per IP) is opened wide here so that only the per-address limit acts.
#
# Run alone from the repository root:  bash tests/integration/22-login-abuse.sh
set -u
. "$(dirname "$0")/lib.sh"

ALICE=alice@example.com
ALICE_PASS='correct horse battery'
WRONG='not the password'

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers.auth = {tokens_per_second: 1000, burst_capacity: 1000}')
export RATE_LIMITS_FILE TRUSTED_PROXIES=127.0.0.1/32
start_stack

# ------------------------------------------------------------------ local helpers

# login EMAIL PASSWORD [CURL_ARGS...]: one JSON POST /login (req: STATUS, BODY, headers).
login() {
    local email=$1 password=$2
    shift 2
    req_json POST /login "$(jq -cn --arg e "$email" --arg p "$password" \
        '{email: $e, password: $p}')" "$@"
}

# statuses N EMAIL PASSWORD [CURL_ARGS...]: N logins; prints their statuses on one line.
statuses() {
    local n=$1 i out=
    shift
    for ((i = 0; i < n; i++)); do
        login "$@"
        out="$out $STATUS"
    done
    echo "${out# }"
}

# lock_key EMAIL: the Redis key of EMAIL's failed log-in bucket (README: b2sum -l 128).
lock_key() {
    echo "rate_limit:login_failures:email:$(printf '%s' "$1" | b2sum -l 128 | cut -d' ' -f1)"
}

repeat() {
    local i out=
    for ((i = 0; i < $1; i++)); do out="$out $2"; done
    echo "${out# }"
}

signup_user "$ALICE" "$ALICE_PASS" >/dev/null || bail "sign-up failed"

# ------------------------------------------- the default policy: 10 failures, 900 s

check_eq "10 wrong passwords for alice: 401 each" "$(repeat 10 401)" \
    "$(statuses 10 "$ALICE" "$WRONG")"
check_eq "her failed log-in bucket is keyed by BLAKE2b-128 of the address, TTL <= 901 s" \
    "yes" "$(ttl=$(redis_cli ttl "$(lock_key "$ALICE")")
             [ "$ttl" -gt 0 ] && [ "$ttl" -le 901 ] && echo yes || echo "ttl=$ttl")"
login "$ALICE" "$ALICE_PASS"
check_status "the 11th attempt is refused even with the right password: 429" 429
check_header_match "429 is application/json" Content-Type '^application/json'
check_json "429 body: the five fields of SPEC 5.5 and their detail mirror" \
    '{error, limit, rate, same: (.detail == {error, message, retry_after, limit, rate})}' \
    '{"error":"Rate limit exceeded","limit":10,"rate":"10 failed logins per 900 seconds","same":true}'
check_jq "429 retry_after is the time one failure is forgiven (1..90 s)" \
    '.retry_after >= 1 and .retry_after <= 90'
check_jq "429 message gives the same seconds" \
    '.message == "Too many requests. Please try again in \(.retry_after) second\(if .retry_after == 1 then "" else "s" end)."'
retry=$(printf '%s' "$BODY" | jq -r .retry_after 2>/dev/null)
check_header "Retry-After equals retry_after" Retry-After "$retry"
check_header "RateLimit-Limit is max_failures" RateLimit-Limit 10
check_header "RateLimit-Remaining is 0" RateLimit-Remaining 0
check_header "RateLimit-Policy names the policy: q=10, w=900" RateLimit-Policy \
    '"login_failures";q=10;w=900'
check_header_match "RateLimit names it too, r=0" RateLimit '^"login_failures";r=0;t=[0-9]+$'
check_eq "one set of RateLimit headers, not the auth tier's as well" 1 \
    "$(grep -ci '^RateLimit-Limit:' "$HEADERS")"
check_eq "the refusal is logged as rate_limited, tier login_failures, no e-mail in it" \
    "login_failures|email:$(lock_key "$ALICE" | sed 's/.*email://')" \
    "$(events rate_limited 0 | jq -r 'select(.tier == "login_failures") |
        "\(.tier)|\(.identifier)"' | tail -1)"
check_false "the log never holds alice's address" grep -qF "$ALICE" "$SG_VAR/lighttpd-error.log"

login "$ALICE" "$ALICE_PASS" -H 'X-Forwarded-For: 203.0.113.7'
check_status "from another IP (X-Forwarded-For through a trusted proxy): 429 too" 429
login "ALICE@Example.COM" "$ALICE_PASS" -H 'X-Forwarded-For: 198.51.100.9'
check_status "the address in other case is the same account: 429" 429
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-urlencode "username=$ALICE" --data-urlencode "password=$ALICE_PASS"
check_status "the OAuth2 form log-in is held too: 429" 429
login "$ALICE" "$ALICE_PASS" -H 'Accept: application/problem+json'
check_status "problem+json client: 429" 429
check_header_match "problem+json client: Content-Type application/problem+json" Content-Type \
    '^application/problem\+json'
check_json "problem+json: violated-policies names login_failures" '."violated-policies"' \
    '["login_failures"]'

signup_user bob@example.com 'bob password 1' >/dev/null || bail "sign-up of bob failed"
login bob@example.com 'bob password 1'
check_status "another account from the same IP logs in: 200" 200
login bob@example.com "$WRONG"
check_status "and fails as usual: 401" 401

check_eq "an unknown address: 10 x 401, then 429 as for a real one (no enumeration)" \
    "$(repeat 10 401) 429" "$(statuses 11 nobody@example.com "$WRONG")"

# ---------------------------------- a small policy: success resets, refill at its rate

RATE_LIMITS_FILE=$(limits_file '.tiers.auth = {tokens_per_second: 1000, burst_capacity: 1000}
                                | .login_failures = {max_failures: 3, window_seconds: 3}')
restart_stack
signup_user carol@example.com 'carol password' >/dev/null || bail "sign-up of carol failed"
check_eq "max_failures 3: two failures, then the right password: 401 401 200" "401 401 200" \
    "$(statuses 2 carol@example.com "$WRONG") $(statuses 1 carol@example.com 'carol password')"
check_eq "the success gave the attempts back: bucket deleted" 0 \
    "$(redis_cli exists "$(lock_key carol@example.com)")"
check_eq "so three failures again, then 429" "401 401 401 429" \
    "$(statuses 4 carol@example.com "$WRONG")"
check_header "window 3 s for 3 failures: Retry-After 1" Retry-After 1
sleep 1.2
login carol@example.com 'carol password'
check_status "one failure is forgiven after Retry-After: the right password logs in" 200

# -------------------------------------------------------------------------- timing

RATE_LIMITS_FILE=$(limits_file '.tiers.auth = {tokens_per_second: 1000, burst_capacity: 1000}
                                | .login_failures = {max_failures: 1000, window_seconds: 60}')
restart_stack
signup_user dave@example.com 'dave password' >/dev/null || bail "sign-up of dave failed"
# login_time EMAIL: seconds one JSON log-in with a wrong password takes.
login_time() {
    curl -s --noproxy '*' --max-time 10 -o /dev/null -w '%{time_total}\n' \
        -H 'Content-Type: application/json' \
        --data-binary "$(jq -cn --arg e "$1" '{email: $e, password: "wrong password!"}')" \
        "http://127.0.0.1:$PORT/login"
}
# Interleaved, so a slow moment of the machine hits both kinds alike.
: >"$TEST_DIR/t-wrong.txt"
: >"$TEST_DIR/t-unknown.txt"
for i in $(seq 21); do
    login_time dave@example.com >>"$TEST_DIR/t-wrong.txt"
    login_time "ghost$i@example.com" >>"$TEST_DIR/t-unknown.txt"
done
t_wrong=$(sort -n "$TEST_DIR/t-wrong.txt" | sed -n 11p)
t_unknown=$(sort -n "$TEST_DIR/t-unknown.txt" | sed -n 11p)
note "login medians of 21: wrong password ${t_wrong}s, unknown e-mail ${t_unknown}s"
check_true "an unknown e-mail takes as long as a wrong password (medians within 20%)" \
    awk -v a="$t_unknown" -v b="$t_wrong" 'BEGIN { exit !(a > 0 && b > 0 && a <= 1.2 * b && b <= 1.2 * a) }'

# --------------------------------------------- CR, LF and NUL in client fields

TOKEN=$(signup_user erin@example.com 'erin password') || bail "sign-up of erin failed"
req GET '/stories/abc%0d%0aX-Injected:%201' -H "Authorization: Bearer $TOKEN"
# lighttpd itself refuses a %0D%0A in the path (400); past it the gateway would say 404.
check_status "a CR LF in the path: 400 from lighttpd (or 404 from the gateway)" "400|404"
check_no_header "and no header of the client's making" X-Injected
req_json POST /signup '{"email":"eve@example.com\r\nX-Injected: 1","password":"12345678"}'
check_status "CR LF in an e-mail: 422" 422
check_no_header "no header from it" X-Injected
check_false "the 422 does not echo it" grep -q 'X-Injected' "$BODY_FILE"
req_json POST /signup '{"email":"eve@example.com\u0000x","password":"12345678"}'
check_status "NUL in an e-mail: 422" 422
# A Redis command in RESP framing, as story text: it must be stored as text, nothing else.
resp_cmd=$'*3\r\n$3\r\nSET\r\n$6\r\npwned!\r\n$1\r\n1\r\n'
req_json POST /start-story "$(jq -cn --arg c "$resp_cmd" '{genre: "fable", characters: $c}')" \
    -H "Authorization: Bearer $TOKEN"
check_status "RESP framing in the characters: the story starts, 200" 200
check_json "the characters come back byte for byte" .characters "$(jq -cn --arg c "$resp_cmd" '$c')"
check_eq "and no key pwned! appeared in Redis" 0 "$(redis_cli exists 'pwned!')"
story=$(printf '%s' "$BODY" | jq -r .id)
req_json POST /continue-story \
    "$(jq -cn --arg s "$story" '{story_id: $s, user_input: "line\r\nX-Injected: 1\u0000end"}')" \
    -H "Authorization: Bearer $TOKEN"
check_status "CR, LF and NUL in user_input: 422 or 200, never a split answer" "200|422"
check_no_header "no header from user_input" X-Injected

# ------------------------------------------------------------ a short JWT secret

JWT_SECRET=$(head -c 31 /dev/zero | tr '\0' k) start_fails "a JWT_SECRET of 31 bytes" \
    'JWT_SECRET: must be 32 to [0-9]+ bytes long \(value not shown\)'
check_false "the short secret itself is never logged" grep -q kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk \
    "$SG_VAR/lighttpd-error.log"
