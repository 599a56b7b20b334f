#!/usr/bin/env bash
# 50-bad-input: SPEC 8. Every malformed request gets a JSON error (422 invalid JSON or
# types, 413 body over 64 KiB, 415 unknown content type, lighttpd's own 400/431 for
# oversized headers), changes nothing in Redis, and never crashes a gateway process.
set -u
. "$(dirname "$0")/lib.sh"

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers.auth.burst_capacity = 1000 | .tiers.auth.tokens_per_second = 100
    | .tiers.api_anonymous.burst_capacity = 1000 | .tiers.api_anonymous.tokens_per_second = 100')
export RATE_LIMITS_FILE
start_stack

GATEWAYS_BEFORE=$(ps -o pid= --ppid "$LIGHTTPD_PID" | tr -d ' ' | LC_ALL=C sort | paste -sd' ' -)
redis_cli set canary alive >/dev/null

# signup_raw DATA [CURL_ARGS...]: POST /signup with Content-Type: application/json and DATA
# (bytes, as given) as the body.
signup_raw() {
    local data=$1
    shift
    req POST /signup -H 'Content-Type: application/json' --data-binary "$data" "$@"
}

# expect_422 DESC: the last answer is 422 with a non-empty detail list of {loc,msg,type}
# whose first loc starts with "body".
expect_422() {
    check_status "$1: 422" 422
    check_header_match "$1: application/json" Content-Type '^application/json'
    check_jq "$1: detail is a non-empty list of {loc, msg, type}, loc[0] = body" \
        '(.detail | type == "array" and length > 0) and (.detail[0].loc[0] == "body")
         and (.detail[0].msg | type == "string") and (.detail[0].type | type == "string")'
}

# expect_detail DESC STATUS: the last answer is STATUS with a JSON {"detail": ...} body.
expect_detail() {
    check_status "$1: $2" "$2"
    check_jq "$1: JSON body with detail" 'has("detail")'
}

# other_keys: every key but the rate-limit buckets, sorted, on one line.
other_keys() {
    redis_keys '*' | grep -v '^rate_limit:' | LC_ALL=C sort | paste -sd' ' -
}

# forget_user EMAIL: delete an account a check created on purpose (both keys).
forget_user() {
    local id
    id=$(redis_cli get "user_email:$1")
    [ -n "$id" ] && redis_cli del "user_email:$1" "{u:$id}:user" >/dev/null
    return 0
}

USERS_BEFORE=$(redis_keys 'user_email:*' | LC_ALL=C sort | paste -sd' ' -)
KEYS_BEFORE=$(other_keys)

# --- invalid JSON and wrong types
signup_raw '{"email": "a@example.com", "password": '
expect_422 "truncated JSON"
signup_raw '{"email": "a@example.com" "password": "password123"}'
expect_422 "JSON missing a comma"
signup_raw "{'email': 'a@example.com', 'password': 'password123'}"
expect_422 "single-quoted pseudo JSON"
signup_raw '{"email": "a@example.com", "password": "password123"} trailing'
expect_422 "JSON followed by garbage"

signup_raw '{"email": 5, "password": "password123"}'
expect_422 "email is a number"
check_json "email is a number: loc [body, email]" '.detail[0].loc' '["body","email"]'
check_json "email is a number: type string_type" '.detail[0].type' '"string_type"'
signup_raw '{"email": "t1@example.com", "password": 12345678}'
expect_422 "password is a number"
check_json "password is a number: loc [body, password]" '.detail[0].loc' '["body","password"]'
check_json "password is a number: type string_type" '.detail[0].type' '"string_type"'
signup_raw '{"email": ["t2@example.com"], "password": "password123"}'
expect_422 "email is a list"
check_json "email is a list: loc [body, email]" '.detail[0].loc' '["body","email"]'
signup_raw '{"email": null, "password": "password123"}'
expect_422 "email is null"
signup_raw '{"email": {"$ne": ""}, "password": "password123"}'
expect_422 "email is an object (injection shape)"
signup_raw '{"email": true, "password": "password123"}'
expect_422 "email is a boolean"

signup_raw '{"email": 1e999999, "password": "password123"}'
expect_422 "email is a number out of double range"
signup_raw "{\"email\": $(head -c 5000 /dev/zero | tr '\0' '9'), \"password\": \"password123\"}"
expect_422 "email is a 5000-digit integer"

signup_raw '[{"email": "t3@example.com", "password": "password123"}]'
expect_422 "JSON array body"
signup_raw '"t4@example.com"'
expect_422 "JSON string body"
signup_raw 'null'
expect_422 "JSON null body"
signup_raw '42'
expect_422 "JSON number body"

# Without Content-Length lighttpd itself refuses a POST (411) before the gateway.
req POST /signup -H 'Content-Type: application/json'
check_status "POST without Content-Length: lighttpd's 411 or 422" "411|422"
signup_raw ''
expect_422 "missing body (Content-Length: 0)"
signup_raw '   '
expect_422 "whitespace-only body"

# Deep nesting must be refused, not crash a worker (stack overflow in a parser).
deep=$(head -c 10000 /dev/zero | tr '\0' '[')
signup_raw "$deep"
expect_422 "10000 nested ["
deep_obj="$(printf '{"a":%.0s' $(seq 5000))1$(printf '}%.0s' $(seq 5000))"
signup_raw "$deep_obj"
expect_422 "5000 nested objects, balanced"
req POST /login -H 'Content-Type: application/json' --data-binary "$deep"
expect_422 "10000 nested [ to /login"

# --- control characters and encodings inside strings
signup_raw '{"email": "nul\u0000@example.com", "password": "password123"}'
expect_422 "\\u0000 in email"
signup_raw '{"email": "nulpw@example.com", "password": "password\u0000123"}'
expect_422 "\\u0000 in password"
signup_raw '{"email": "crlf\r\n@example.com", "password": "password123"}'
expect_422 "\\r\\n (escaped) in email"
signup_raw '{"email": "x\r\n*1\r\n$8\r\nFLUSHALL\r\n@example.com", "password": "password123"}'
expect_422 "RESP command smuggled with \\r\\n in email"
signup_raw $'{"email": "rawnl\n@example.com", "password": "password123"}'
expect_422 "raw newline byte inside a JSON string"
signup_raw $'{"email": "rawtab\t@example.com", "password": "password123"}'
expect_422 "raw tab byte inside a JSON string"
signup_raw $'{"email": "bad\xff\xfe@example.com", "password": "password123"}'
expect_422 "invalid UTF-8 bytes (ff fe) in email"
signup_raw $'{"email": "overlong\xc0\xaf@example.com", "password": "password123"}'
expect_422 "overlong UTF-8 (c0 af) in email"
signup_raw $'{"email": "trunc@example.com", "password": "password\xe2\x82"}'
expect_422 "truncated UTF-8 sequence in password"
signup_raw '{"email": "surrogate\ud800@example.com", "password": "password123"}'
expect_422 "lone surrogate \\ud800 in email"
signup_raw $'\xef\xbb\xbf{"email": "bom@example.com", "password": "password123"}' 
check_true "UTF-8 BOM before JSON: 201 or 422, not 5xx (got $STATUS)" \
    test "$STATUS" == 201 -o "$STATUS" == 422
forget_user bom@example.com   # accepted or not, out of the count

# --- size limits
pad_json() {   # pad_json EMAIL SIZE: a valid signup body of exactly SIZE bytes
    local head n
    head=$(jq -cn --arg e "$1" '{email: $e, password: "password123"}')
    n=$(( $2 - ${#head} ))
    printf '%s%s' "$head" "$(head -c "$n" /dev/zero | tr '\0' ' ')"
}
pad_json 'size65536@example.com' 65536 >"$TEST_DIR/b65536.json"
pad_json 'size65537@example.com' 65537 >"$TEST_DIR/b65537.json"
pad_json 'size70000@example.com' 70000 >"$TEST_DIR/b70000.json"
pad_json 'size200k@example.com' 204800 >"$TEST_DIR/b200k.json"
check_eq "(setup) body files of 65536/65537/70000 bytes" "65536 65537 70000" \
    "$(stat -c %s "$TEST_DIR/b65536.json" "$TEST_DIR/b65537.json" "$TEST_DIR/b70000.json" |
        paste -sd' ' -)"

req POST /signup -H 'Content-Type: application/json' --data-binary "@$TEST_DIR/b70000.json"
expect_detail "body of 70000 bytes" 413
req POST /signup -H 'Content-Type: application/json' --data-binary "@$TEST_DIR/b65537.json"
expect_detail "body of 65537 bytes (64 KiB + 1)" 413
req POST /signup -H 'Content-Type: application/json' --data-binary "@$TEST_DIR/b200k.json"
check_status "body of 200 KiB (over lighttpd's cap too): 413" 413
req POST /signup -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' \
    --data-binary "@$TEST_DIR/b70000.json"
check_status "chunked body of 70000 bytes: 413" 413
req POST /signup -H 'Content-Type: application/json' --data-binary "@$TEST_DIR/b65536.json"
check_status "body of exactly 64 KiB (valid signup, padded): 201" 201
forget_user size65536@example.com   # wanted; out of the count

# --- content types
req POST /signup -H 'Content-Type: text/plain' \
    --data-binary '{"email":"ct1@example.com","password":"password123"}'
expect_detail "Content-Type text/plain" 415
req POST /signup -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary 'email=ct2%40example.com&password=password123'
expect_detail "form body to /signup" 415
req POST /signup -H 'Content-Type: multipart/form-data; boundary=x' \
    --data-binary $'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\nct3@example.com\r\n--x--\r\n'
expect_detail "multipart body to /signup" 415
req POST /login -H 'Content-Type: application/xml' --data-binary '<login/>'
expect_detail "XML body to /login" 415
req POST /signup -H 'Content-Type: application/jsonx' \
    --data-binary '{"email":"ct4@example.com","password":"password123"}'
expect_detail "Content-Type application/jsonx (prefix of json)" 415

# Media types are case-insensitive and may carry parameters (RFC 9110 8.3.1).
req POST /signup -H 'Content-Type: application/json; charset=utf-8' \
    --data-binary '{"email":"ct5@example.com","password":"password123"}'
check_status "Content-Type application/json; charset=utf-8 is accepted: 201" 201
req POST /signup -H 'Content-Type: Application/JSON' \
    --data-binary '{"email":"ct6@example.com","password":"password123"}'
check_status "Content-Type Application/JSON is accepted: 201" 201
forget_user ct5@example.com
forget_user ct6@example.com

# --- malformed OAuth2 forms
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary 'username=nobody%40example.com'
expect_422 "login form without password"
check_json "login form without password: loc [body, password]" '.detail[0].loc' \
    '["body","password"]'
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary 'username=%zz%&password=%'
check_match "login form with broken %-escapes: 4xx (got $STATUS)" '^4[0-9][0-9]$' "$STATUS"
check_jq "login form with broken %-escapes: JSON body with detail" 'has("detail")'
req POST /login -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary 'username=nul%00x%40example.com&password=password123'
check_match "login form with %00 in username: 401 or 422 (got $STATUS)" '^(401|422)$' "$STATUS"

# --- what lighttpd refuses before the gateway
big=$(head -c 20000 /dev/zero | tr '\0' 'x')
req GET /me -H "X-Big: $big"
check_status "20 KB header: lighttpd answers 400 or 431" "400|431"
many=()
for i in $(seq 400); do many+=(-H "X-Many-$i: $(head -c 60 /dev/zero | tr '\0' 'y')"); done
req GET /me "${many[@]}"
check_status "400 headers of 70 bytes (> 16 KiB in all): 400 or 431" "400|431"
req GET "/$(head -c 20000 /dev/zero | tr '\0' 'p')"
check_status "20 KB URL: 400, 414 or 431" "400|414|431"
req GET '/me%00'
check_match "NUL in the path: 4xx, not 5xx (got $STATUS)" '^4[0-9][0-9]$' "$STATUS"
req GET '/%zz'
check_match "broken %-escape in the path: 4xx (got $STATUS)" '^4[0-9][0-9]$' "$STATUS"
req GET '/stories/..%2f..%2fetc%2fpasswd'
check_match "encoded traversal in a story id: 4xx (got $STATUS)" '^4[0-9][0-9]$' "$STATUS"

# --- nothing changed, nothing crashed
check_eq "no account was created by malformed requests" "$USERS_BEFORE" \
    "$(redis_keys 'user_email:*' | LC_ALL=C sort | paste -sd' ' -)"
check_eq "Redis canary still there (nothing reached Redis as a command)" alive \
    "$(redis_cli get canary)"
check_eq "no key but rate-limit buckets appeared or vanished in Redis" "$KEYS_BEFORE" \
    "$(other_keys)"

req GET /healthz
check_status "after all of it, /healthz is 200" 200
check_json "after all of it, /healthz body is ok" . '{"status":"ok","redis":"ok"}'
check_eq "the same gateway processes are still running (no crash, no respawn)" \
    "$GATEWAYS_BEFORE" \
    "$(ps -o pid= --ppid "$LIGHTTPD_PID" | tr -d ' ' | LC_ALL=C sort | paste -sd' ' -)"
check_false "lighttpd log has no died / signalled / respawn / child exited line" \
    grep -qiE 'died|signalled|terminated by signal|respawn|child exited|spawning a new child' \
    "$SG_VAR/lighttpd-error.log"
