#!/usr/bin/env bash
# 20-accounts: POST /signup, POST /login (JSON and OAuth2 form), GET /me and how accounts
# are stored in Redis (SPEC 6, stack notes). The auth tier gets a large burst here so this
# suite tests accounts, not limits.
set -u
. "$(dirname "$0")/lib.sh"

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 1000 | .tiers.auth.tokens_per_second = 100
    | .tiers.api_anonymous.burst_capacity = 1000 | .tiers.api_anonymous.tokens_per_second = 100')
export RATE_LIMITS_FILE
start_stack

ISO_Z='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]+)?Z$'

# signup_req EMAIL PASSWORD: POST /signup with {"email","password"} built by jq.
signup_req() {
    req_json POST /signup "$(jq -cn --arg e "$1" --arg p "$2" '{email: $e, password: $p}')"
}

# login_req EMAIL PASSWORD: POST /login with a JSON body.
login_req() {
    req_json POST /login "$(jq -cn --arg e "$1" --arg p "$2" '{email: $e, password: $p}')"
}

# user_email_count: number of user_email:* keys in Redis.
user_email_count() {
    redis_keys 'user_email:*' | grep -c .
}

# --- signup
PASS='correct horse battery'
signup_req 'Alice.Example+Tag@Example.COM' "$PASS"
check_status "signup is 201" 201
check_header_match "signup is application/json" Content-Type '^application/json'
check_header "signup has Cache-Control: no-store" Cache-Control "no-store"
check_ratelimit_headers "signup carries the RateLimit headers (auth tier)"
check_header "signup RateLimit-Limit is the auth tier's burst" RateLimit-Limit 1000
check_json "signup answers exactly access_token, token_type, user" 'keys' \
    '["access_token","token_type","user"]'
check_json "signup token_type is bearer" .token_type '"bearer"'
check_jq "signup access_token is a JWT (3 dot-separated parts)" \
    '.access_token | test("^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$")'
check_json "signup user has exactly id, email, created_at" '.user | keys' \
    '["created_at","email","id"]'
check_jq "signup user.id is 32 lower-case hex chars" '.user.id | test("^[0-9a-f]{32}$")'
check_json "signup user.email is lower-cased" .user.email '"alice.example+tag@example.com"'
check_jq "signup user.created_at is ISO 8601 UTC with Z" ".user.created_at | test(\"$ISO_Z\")"

SIGNUP_BODY=$BODY
TOKEN=$(printf '%s' "$BODY" | jq -r '.access_token // empty')
UID1=$(printf '%s' "$BODY" | jq -r '.user.id // empty')
EMAIL1=alice.example+tag@example.com
CREATED1=$(printf '%s' "$BODY" | jq -r '.user.created_at // empty')
created_s=$(date -d "$CREATED1" +%s 2>/dev/null || echo 0)
now=$(date +%s)
check_true "signup created_at is now (within 60 s): $CREATED1" \
    test $((now - created_s)) -le 60 -a $((created_s - now)) -le 60

# The token: HS256, sub = user id, iss, exp = iat + JWT_TTL (default 3600).
payload=$(jwt_payload "$TOKEN")
header=$(printf '%s' "$TOKEN" | cut -d. -f1 | tr '_-' '/+')
while [ $(( ${#header} % 4 )) -ne 0 ]; do header="$header="; done
check_eq "signup token header alg is HS256" HS256 \
    "$(printf '%s' "$header" | base64 -d 2>/dev/null | jq -r .alg 2>/dev/null)"
check_eq "signup token sub is the user id" "$UID1" "$(printf '%s' "$payload" | jq -r .sub 2>/dev/null)"
check_eq "signup token iss is story-gateway" story-gateway \
    "$(printf '%s' "$payload" | jq -r .iss 2>/dev/null)"
check_eq "signup token exp - iat is 3600 (JWT_TTL default)" 3600 \
    "$(printf '%s' "$payload" | jq -r '.exp - .iat' 2>/dev/null)"
check_true "signup token iat is now (within 60 s)" \
    test "$(printf '%s' "$payload" | jq -r "(.iat - $now) | fabs < 60" 2>/dev/null)" == true

# --- Redis layout (stack notes): user_email:<email> -> id, {u:<id>}:user hash
check_eq "user_email:<email> holds the user id" "$UID1" "$(redis_cli get "user_email:$EMAIL1")"
UKEY="{u:$UID1}:user"
check_eq "{u:<id>}:user is a hash" hash "$(redis_cli type "$UKEY")"
check_eq "user hash id" "$UID1" "$(redis_cli hget "$UKEY" id)"
check_eq "user hash email" "$EMAIL1" "$(redis_cli hget "$UKEY" email)"
check_eq "user hash created_at is signup's" "$CREATED1" "$(redis_cli hget "$UKEY" created_at)"
HASH1=$(redis_cli hget "$UKEY" password_hash)
check_match "user hash password_hash is argon2id" '^\$argon2id\$v=19\$m=[0-9]+,t=[0-9]+,p=[0-9]+\$' \
    "$HASH1"
# OWASP argon2id minimums: m=47104 t=1 | m=19456 t=2 | m=12288 t=3 | m=9216 t=4 | m=7168 t=5.
argon_m=$(printf '%s' "$HASH1" | sed -nE 's/.*\$m=([0-9]+),t=([0-9]+).*/\1/p')
argon_t=$(printf '%s' "$HASH1" | sed -nE 's/.*\$m=([0-9]+),t=([0-9]+).*/\2/p')
owasp=no
if [ -n "$argon_m" ] && [ -n "$argon_t" ]; then
    if awk -v m="$argon_m" -v t="$argon_t" 'BEGIN { exit !((m >= 47104 && t >= 1) ||
            (m >= 19456 && t >= 2) || (m >= 12288 && t >= 3) || (m >= 9216 && t >= 4) ||
            (m >= 7168 && t >= 5)) }'; then
        owasp=yes
    fi
fi
check_eq "argon2id parameters meet OWASP minimums (m=${argon_m:-?} KiB, t=${argon_t:-?})" yes "$owasp"
check_eq "user_email key does not expire" -1 "$(redis_cli ttl "user_email:$EMAIL1")"
check_eq "user hash does not expire" -1 "$(redis_cli ttl "$UKEY")"

# dump_redis: every key and every value in Redis, one a line.
dump_redis() {
    local k
    redis_keys '*' | while IFS= read -r k; do
        printf '%s\n' "$k"
        case "$(redis_cli type "$k")" in
            string) redis_cli get "$k" ;;
            hash) redis_cli hgetall "$k" ;;
            list) redis_cli lrange "$k" 0 -1 ;;
            set) redis_cli smembers "$k" ;;
            zset) redis_cli zrange "$k" 0 -1 ;;
            stream) redis_cli xrange "$k" - + ;;
        esac
    done
}
dump=$(dump_redis)
check_true "Redis dump is not empty (the scan works)" grep -qF "$UID1" <<<"$dump"
check_false "the password is stored nowhere in Redis (keys and values scanned)" \
    grep -qF "$PASS" <<<"$dump"

# --- /me
req GET /me -H "Authorization: Bearer $TOKEN"
check_status "GET /me with the signup token is 200" 200
check_json "GET /me is exactly the signup's user {id,email,created_at}" . \
    "$(printf '%s' "$SIGNUP_BODY" | jq -c '.user' 2>/dev/null || echo null)"
check_header "GET /me has Cache-Control: no-store" Cache-Control "no-store"
check_header "GET /me RateLimit-Policy is api_authenticated" RateLimit-Policy \
    '"api_authenticated";q=20;w=2'
check_eq "GET /me is charged to the user's bucket" 1 \
    "$(redis_cli exists "rate_limit:api_authenticated:user:$UID1")"

req GET /me
check_status "GET /me without a token is 401" 401
check_json "GET /me without a token: {detail: Not authenticated}" . '{"detail":"Not authenticated"}'
check_header "GET /me without a token: WWW-Authenticate: Bearer" WWW-Authenticate "Bearer"

# --- duplicates
before=$(user_email_count)
signup_req 'alice.example+tag@example.com' 'another password'
check_status "signup with a taken email is 409" 409
check_json "taken email: {detail: Email already registered}" . '{"detail":"Email already registered"}'
signup_req 'ALICE.EXAMPLE+TAG@EXAMPLE.com' 'another password'
check_status "signup with the taken email in other case is 409" 409
check_json "taken email (other case): {detail: Email already registered}" . \
    '{"detail":"Email already registered"}'
check_eq "duplicates created no account" "$before" "$(user_email_count)"
check_eq "duplicates left the stored hash alone" "$HASH1" "$(redis_cli hget "$UKEY" password_hash)"
check_eq "duplicates left user_email alone" "$UID1" "$(redis_cli get "user_email:$EMAIL1")"

# --- validation (422 with detail[0].loc)
# bad_signup DESC FIELD EMAIL PASSWORD: expect 422 with detail[0].loc ["body", FIELD].
bad_signup() {
    signup_req "$3" "$4"
    check_status "$1: 422" 422
    check_json "$1: detail[0].loc is [body, $2]" '.detail[0].loc' "[\"body\",\"$2\"]"
    check_jq "$1: detail[0] has string msg and type" \
        '.detail[0] | (.msg | type == "string") and (.type | type == "string")'
}
before=$(user_email_count)
bad_signup "email without @" email 'no-at-sign.example.com' 'password123'
bad_signup "email with two @" email 'a@b@example.com' 'password123'
bad_signup "empty email" email '' 'password123'
long_local=$(printf 'a%.0s' $(seq 64))
long_domain=$(printf 'b%.0s' $(seq 185)).com   # 64 + 1 + 189 = 254 chars
email254="$long_local@$long_domain"
email255="$long_local@b$long_domain"
check_eq "(test setup) 254/255-char emails" "254 255" "${#email254} ${#email255}"
bad_signup "email of 255 chars" email "$email255" 'password123'
bad_signup "password of 7 chars" password 'p7@example.com' 'seven77'
bad_signup "empty password" password 'p0@example.com' ''
bad_signup "password of 129 chars" password 'p129@example.com' "$(printf 'x%.0s' $(seq 129))"
bad_signup "password of 7 two-byte chars (14 bytes)" password 'pe7@example.com' 'ééééééé'
req_json POST /signup '{"email":"missing-password@example.com"}'
check_status "signup without password: 422" 422
check_json "signup without password: loc [body, password]" '.detail[0].loc' '["body","password"]'
req_json POST /signup '{"password":"password123"}'
check_status "signup without email: 422" 422
check_json "signup without email: loc [body, email]" '.detail[0].loc' '["body","email"]'
check_eq "invalid signups created no account" "$before" "$(user_email_count)"

# Boundaries that must be accepted.
signup_req "$email254" 'password123'
check_status "email of exactly 254 chars: 201" 201
signup_req 'p8@example.com' 'eight888'
check_status "password of exactly 8 chars: 201" 201
signup_req 'p128@example.com' "$(printf 'y%.0s' $(seq 128))"
check_status "password of exactly 128 chars: 201" 201
signup_req 'pe128@example.com' "$(printf 'é%.0s' $(seq 128))"
check_status "password of 128 two-byte chars (256 bytes, counted as characters): 201" 201

# --- login (JSON)
login_req "$EMAIL1" "$PASS"
check_status "login (JSON) is 200" 200
check_json "login answers exactly access_token, token_type" keys '["access_token","token_type"]'
check_json "login token_type is bearer" .token_type '"bearer"'
LTOKEN=$(printf '%s' "$BODY" | jq -r '.access_token // empty')
check_eq "login token sub is the user id" "$UID1" "$(user_id_of "$LTOKEN" 2>/dev/null)"
req GET /me -H "Authorization: Bearer $LTOKEN"
check_status "GET /me with the login token is 200" 200
check_json "GET /me with the login token: the same user" .id "\"$UID1\""

# --- login (OAuth2 password form)
BOB=bob+tag@example.com
BOBPASS='p&ss=w%rd +1'
signup_user "$BOB" "$BOBPASS" >/dev/null
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "username=bob%2Btag%40example.com&password=$(jq -rn --arg p "$BOBPASS" '$p|@uri')"
check_status "login form (email with %2B and %40, password with & = % + space) is 200" 200
check_json "login form token_type is bearer" .token_type '"bearer"'
check_eq "login form token sub is bob's id" "$(redis_cli get "user_email:$BOB")" \
    "$(user_id_of "$(printf '%s' "$BODY" | jq -r '.access_token // empty')" 2>/dev/null)"
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-urlencode "username=$BOB" --data-urlencode "password=$BOBPASS"
check_status "login form built by curl --data-urlencode is 200" 200
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "username=$EMAIL1&password=$(jq -rn --arg p "$PASS" '$p|@uri')"
check_status "login form: a raw + in username decodes to a space: 401" 401
check_json "login form raw +: {detail: Incorrect email or password}" . \
    '{"detail":"Incorrect email or password"}'
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "password=$(jq -rn --arg p "$PASS" '$p|@uri')&username=alice.example%2Btag%40example.com"
check_status "login form with fields in the other order is 200" 200

# --- login failures: same answer
login_req "$EMAIL1" 'wrong password!'
check_status "login with a wrong password is 401" 401
check_json "wrong password: {detail: Incorrect email or password}" . \
    '{"detail":"Incorrect email or password"}'
WRONG_BODY=$BODY
login_req 'nobody@example.com' 'wrong password!'
check_status "login with an unknown email is 401" 401
check_json "unknown email: {detail: Incorrect email or password}" . \
    '{"detail":"Incorrect email or password"}'
check_eq "unknown email and wrong password give the same body" "$WRONG_BODY" "$BODY"
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary 'username=nobody%40example.com&password=whatever1'
check_status "login form with an unknown email is 401" 401

# That an unknown e-mail takes as long as a wrong password: 22-login-abuse.
