#!/usr/bin/env bash
# 25-jwt: JWT attacks end to end against GET /me (SPEC 5.2): only HS256 tokens signed with
# JWT_SECRET, with exp and iss = story-gateway, are accepted; every other token is 401
# "Could not validate credentials" and is charged to the client IP's anonymous tier.
set -u
. "$(dirname "$0")/lib.sh"

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 1000 | .tiers.auth.tokens_per_second = 100
    | .tiers.api_anonymous.burst_capacity = 1000 | .tiers.api_anonymous.tokens_per_second = 100
    | .tiers.api_authenticated.burst_capacity = 1000
    | .tiers.api_authenticated.tokens_per_second = 100')
export RATE_LIMITS_FILE
start_stack

SIGNUP_TOKEN=$(signup_user 'jwt-victim@example.com' 'victim password 1') ||
    bail "signup of the test user"
SUB=$(user_id_of "$SIGNUP_TOKEN")
check_match "(setup) the signed-up user id is 32 hex" '^[0-9a-f]{32}$' "$SUB"

NOW=$(date +%s)
HS256_HDR='{"alg":"HS256","typ":"JWT"}'
# claims EXTRA_JQ: the standard valid claims for $SUB, transformed by EXTRA_JQ.
claims() {
    jq -cn --arg sub "$SUB" --argjson now "$NOW" \
        "{sub: \$sub, iat: \$now, exp: (\$now + 600), iss: \"story-gateway\"} | ${1:-.}"
}

# me_with AUTH_HEADER_VALUE: GET /me with that Authorization header.
me_with() {
    req GET /me -H "Authorization: $1"
}

# expect_invalid DESC TOKEN: GET /me with "Bearer TOKEN" must be the invalid-token 401.
expect_invalid() {
    me_with "Bearer $2"
    check_status "$1: 401" 401
    check_json "$1: {detail: Could not validate credentials}" . \
        '{"detail":"Could not validate credentials"}'
    check_header "$1: WWW-Authenticate: Bearer error=\"invalid_token\"" WWW-Authenticate \
        'Bearer error="invalid_token"'
}

# --- valid tokens
me_with "Bearer $SIGNUP_TOKEN"
check_status "signup token: GET /me 200" 200
check_json "signup token: GET /me is the user" .id "\"$SUB\""

GOOD=$(make_jwt "$HS256_HDR" "$(claims)" "$JWT_SECRET")
me_with "Bearer $GOOD"
check_status "token crafted with the secret (HS256): 200" 200
check_json "crafted token: GET /me is the user" .id "\"$SUB\""

me_with "bearer $GOOD"
check_status "auth scheme is case-insensitive (\"bearer\", RFC 7235): 200" 200

# --- algorithm attacks
NONE_HDR='{"alg":"none","typ":"JWT"}'
expect_invalid "alg none, empty signature" "$(make_jwt "$NONE_HDR" "$(claims)" "" none)"
# A "none" token that still carries a valid HS256 signature: the header's alg is a lie
# the gateway must not accept either.
h=$(printf '%s' "$NONE_HDR" | b64url)
p=$(claims | tr -d '\n' | b64url)
sig=$(printf '%s.%s' "$h" "$p" | openssl dgst -sha256 -hmac "$JWT_SECRET" -binary | b64url)
expect_invalid "alg none with a valid HS256 signature" "$h.$p.$sig"
expect_invalid "alg None (capitalised), empty signature" \
    "$(make_jwt '{"alg":"None","typ":"JWT"}' "$(claims)" "" none)"
expect_invalid "alg none, no signature part" "$h.$p"
expect_invalid "HS512 signed with the right secret" \
    "$(make_jwt '{"alg":"HS512","typ":"JWT"}' "$(claims)" "$JWT_SECRET" HS512)"
expect_invalid "HS384 signed with the right secret" \
    "$(make_jwt '{"alg":"HS384","typ":"JWT"}' "$(claims)" "$JWT_SECRET" HS384)"
expect_invalid "header says HS256, signature is HS512" \
    "$(make_jwt "$HS256_HDR" "$(claims)" "$JWT_SECRET" HS512)"
expect_invalid "alg RS256 signed with the secret as HMAC key" \
    "$(make_jwt '{"alg":"RS256","typ":"JWT"}' "$(claims)" "$JWT_SECRET" HS256)"

# --- signature attacks
expect_invalid "HS256 signed with another secret" \
    "$(make_jwt "$HS256_HDR" "$(claims)" "$(openssl rand -hex 32)")"
# Flip one bit of the signature: decode, flip a bit in the first byte, encode again.
sigpart=${GOOD##*.}
first=$(printf '%s' "$sigpart" | cut -c1)
alphabet=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_
prefix=${alphabet%%"$first"*}
idx=${#prefix}
flipped=${alphabet:$(( idx ^ 1 )):1}
expect_invalid "valid token with one signature bit flipped" "${GOOD%.*}.$flipped${sigpart:1}"
expect_invalid "valid token with the signature removed" "${GOOD%.*}."
expect_invalid "valid token's signature on another payload (sub changed)" \
    "${GOOD%%.*}.$(claims '.sub = "00000000000000000000000000000000"' | tr -d '\n' | b64url).$sigpart"

# --- claim attacks
expect_invalid "expired (exp 30 s ago)" "$(make_jwt "$HS256_HDR" \
    "$(claims ".exp = $NOW - 30 | .iat = $NOW - 3630")" "$JWT_SECRET")"
expect_invalid "no exp" "$(make_jwt "$HS256_HDR" "$(claims 'del(.exp)')" "$JWT_SECRET")"
expect_invalid "exp as a string" \
    "$(make_jwt "$HS256_HDR" "$(claims '.exp = (.exp | tostring)')" "$JWT_SECRET")"
expect_invalid "wrong iss" "$(make_jwt "$HS256_HDR" "$(claims '.iss = "evil"')" "$JWT_SECRET")"
expect_invalid "no iss" "$(make_jwt "$HS256_HDR" "$(claims 'del(.iss)')" "$JWT_SECRET")"
expect_invalid "no sub" "$(make_jwt "$HS256_HDR" "$(claims 'del(.sub)')" "$JWT_SECRET")"

GHOST=$(make_jwt "$HS256_HDR" "$(claims '.sub = "0123456789abcdef0123456789abcdef"')" \
    "$JWT_SECRET")
me_with "Bearer $GHOST"
check_status "valid token for a user that does not exist: 401" 401

# --- garbage
expect_invalid "Bearer abc" abc
expect_invalid "Bearer a.b.c" a.b.c
expect_invalid "Bearer with three empty parts" ..
expect_invalid "Bearer with non-base64 parts" '!!.??.**'
expect_invalid "header part is not JSON" \
    "$(printf 'not json' | b64url).$(claims | tr -d '\n' | b64url).$sigpart"

# Over-long token (10 KB): lighttpd may refuse it with its own status; never 200 or 5xx.
long=$(head -c 10240 /dev/zero | tr '\0' 'A')
me_with "Bearer ${GOOD%%.*}.$long.$sigpart"
check_status "10 KB token: 400, 401 or 431" "400|401|431"
huge=$(head -c 20480 /dev/zero | tr '\0' 'A')
me_with "Bearer $huge"
check_status "20 KB token (over lighttpd's header cap): 400, 401 or 431" "400|401|431"

# --- other schemes are no token at all
me_with "Basic $(printf 'jwt-victim@example.com:victim password 1' | base64 -w0)"
check_status "Basic scheme: 401" 401
check_json "Basic scheme is no token: {detail: Not authenticated}" . '{"detail":"Not authenticated"}'
check_header "Basic scheme: WWW-Authenticate: Bearer" WWW-Authenticate "Bearer"
me_with "$GOOD"
check_status "token without a scheme: 401" 401
check_json "token without a scheme is no token: {detail: Not authenticated}" . \
    '{"detail":"Not authenticated"}'

# --- an invalid token is charged to the IP's anonymous tier, not to the user in it
for k in $(redis_keys 'rate_limit:*'); do redis_cli del "$k" >/dev/null; done
check_eq "(setup) no rate_limit:* keys left" "" "$(redis_keys 'rate_limit:*')"
me_with "Bearer ${GOOD%.*}.$flipped${sigpart:1}"
check_status "bad token (sub of a real user): 401" 401
check_header "bad token: RateLimit-Policy is api_anonymous" RateLimit-Policy \
    '"api_anonymous";q=1000;w=10'
check_eq "bad token: rate_limit:api_anonymous:ip:127.0.0.1 exists" 1 \
    "$(redis_cli exists rate_limit:api_anonymous:ip:127.0.0.1)"
check_eq "bad token: no rate_limit:api_authenticated:* key" "" \
    "$(redis_keys 'rate_limit:api_authenticated:*')"
check_eq "bad token: no key names the token's sub" "" "$(redis_keys "*$SUB*" | grep rate_limit)"

me_with "Bearer $(make_jwt "$NONE_HDR" "$(claims)" "" none)"
check_eq "alg none: still no rate_limit:api_authenticated:* key" "" \
    "$(redis_keys 'rate_limit:api_authenticated:*')"

me_with "Bearer $GOOD"
check_status "valid token after the attacks: 200" 200
check_header "valid token: RateLimit-Policy is api_authenticated" RateLimit-Policy \
    '"api_authenticated";q=1000;w=10'
check_eq "valid token: charged to rate_limit:api_authenticated:user:<sub>" 1 \
    "$(redis_cli exists "rate_limit:api_authenticated:user:$SUB")"

check_false "lighttpd saw no gateway crash or respawn" \
    grep -qiE 'died|signalled|respawn|child exited|spawning a new child' \
    "$SG_VAR/lighttpd-error.log"
