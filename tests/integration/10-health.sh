#!/usr/bin/env bash
# 10-health: /healthz (SPEC 4), static files from www/, 404 and 405 answers of the gateway,
# and /healthz through a Redis outage and recovery without a restart (SPEC 5.6).
set -u
. "$(dirname "$0")/lib.sh"

start_redis
start_stack

# sorted_list "A, B": print the comma-separated tokens sorted, one space-free line.
sorted_list() {
    printf '%s' "$1" | tr ',' '\n' | tr -d ' \t' | grep -v '^$' | LC_ALL=C sort | paste -sd, -
}

# --- /healthz while Redis is up
req GET /healthz
check_status "GET /healthz is 200" 200
check_json "GET /healthz body is exactly {status:ok, redis:ok}" . '{"status":"ok","redis":"ok"}'
check_header_match "GET /healthz is application/json" Content-Type '^application/json'
check_no_ratelimit_headers "GET /healthz has no RateLimit headers"
check_header "GET /healthz has Cache-Control: no-store" Cache-Control "no-store"
check_header "GET /healthz has X-Content-Type-Options: nosniff" X-Content-Type-Options nosniff

for _ in 1 2 3 4 5; do req GET /healthz; done
check_eq "/healthz is never charged: no rate_limit:* key in Redis" "" \
    "$(redis_keys 'rate_limit:*' | LC_ALL=C sort | paste -sd' ' -)"

# --- static files
req GET /
check_status "GET / is 200" 200
check_header_match "GET / is text/html" Content-Type '^text/html'
check_true "GET / serves www/index.html byte for byte" cmp -s "$BODY_FILE" "$ROOT/www/index.html"
check_no_ratelimit_headers "GET / (static) has no RateLimit headers"

req GET /index.html
check_status "GET /index.html is 200" 200
check_true "GET /index.html serves www/index.html" cmp -s "$BODY_FILE" "$ROOT/www/index.html"

# A link with a query string (campaign tags, a shared URL) still opens the page.
req GET '/?utm_source=mail'
check_status "GET /?utm_source=mail is 200" 200
check_true "GET /?utm_source=mail serves www/index.html" cmp -s "$BODY_FILE" "$ROOT/www/index.html"
req GET /app.js
check_status "GET /app.js is 200" 200
check_header_match "GET /app.js is JavaScript" Content-Type '^(text|application)/javascript'
check_true "GET /app.js serves www/app.js byte for byte" cmp -s "$BODY_FILE" "$ROOT/www/app.js"
req GET /app.css
check_header_match "GET /app.css is text/css" Content-Type '^text/css'

# --- unknown path: 404, charged to api_anonymous
req GET /no/such/path
check_status "GET /no/such/path is 404" 404
check_json "404 body is {detail: Not Found}" . '{"detail":"Not Found"}'
check_header_match "404 is application/json" Content-Type '^application/json'
check_ratelimit_headers "404 carries the RateLimit headers"
check_header "404 RateLimit-Limit is the api_anonymous burst (10)" RateLimit-Limit 10
check_header "404 RateLimit-Policy names api_anonymous" RateLimit-Policy '"api_anonymous";q=10;w=2'
check_header "404 has Cache-Control: no-store" Cache-Control "no-store"
check_header "404 has X-Content-Type-Options: nosniff" X-Content-Type-Options nosniff
check_eq "404 is charged to rate_limit:api_anonymous:ip:127.0.0.1" 1 \
    "$(redis_cli exists rate_limit:api_anonymous:ip:127.0.0.1)"

req POST /nothing-here -H 'Content-Type: application/json' --data-binary '{}'
check_status "POST /nothing-here is 404" 404
check_json "POST /nothing-here body is {detail: Not Found}" . '{"detail":"Not Found"}'

# --- known path, wrong method: 405 with Allow, charged
req DELETE /me
check_status "DELETE /me is 405" 405
check_header "DELETE /me: Allow: GET" Allow "GET"
check_json "405 body is {detail: Method Not Allowed}" . '{"detail":"Method Not Allowed"}'
check_ratelimit_headers "405 carries the RateLimit headers"
check_header "405 RateLimit-Policy names api_anonymous" RateLimit-Policy '"api_anonymous";q=10;w=2'

req POST /stories/abc -H 'Content-Type: application/json' --data-binary '{}'
check_status "POST /stories/abc is 405" 405
allow=$(hdr Allow || echo "<missing>")
check_eq "POST /stories/abc: Allow lists exactly GET and DELETE" "DELETE,GET" "$(sorted_list "$allow")"

req GET /signup
check_status "GET /signup is 405" 405
check_header "GET /signup: Allow: POST" Allow "POST"

req PUT /healthz
check_status "PUT /healthz is 405" 405
check_header "PUT /healthz: Allow: GET" Allow "GET"

# --- Redis down: /healthz degraded, the service keeps answering
stop_redis
req GET /healthz
check_status "Redis stopped: GET /healthz is 503" 503
check_json "Redis stopped: body is exactly {status:degraded, redis:down}" . \
    '{"status":"degraded","redis":"down"}'
check_no_ratelimit_headers "Redis stopped: /healthz has no RateLimit headers"
bad=0
for _ in $(seq 8); do
    req GET /healthz
    [ "$STATUS" == 503 ] || bad=$((bad + 1))
done
check_eq "Redis stopped: 8 more GET /healthz all 503" 0 "$bad"

req GET /no/such/path
check_status "Redis stopped (fail open): unknown path still answers 404" 404
check_no_ratelimit_headers "Redis stopped (fail open): no RateLimit headers"

# --- Redis back on the same port: healthy again within 5 s, no restart
restart_redis
t0=$(date +%s%N)
if wait_until 5 healthz_is 200; then
    pass "Redis restarted: /healthz is 200 again within 5 s ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
else
    fail "Redis restarted: /healthz is 200 again within 5 s" "last status: $(healthz_status)"
fi
req GET /healthz
check_json "Redis restarted: body is {status:ok, redis:ok}" . '{"status":"ok","redis":"ok"}'

# limited_again: a request to an unknown path carries RateLimit headers again.
limited_again() {
    curl -s --noproxy '*' --max-time 2 -o /dev/null -D - "http://127.0.0.1:$PORT/x404" |
        grep -qi '^ratelimit-limit:'
}
if wait_until 5 limited_again; then
    pass "Redis restarted: rate limiting resumes within 5 s"
else
    fail "Redis restarted: rate limiting resumes within 5 s" "no RateLimit-Limit on GET /x404"
fi
req GET /no/such/path
check_ratelimit_headers "Redis restarted: rate limiting resumes (RateLimit headers on 404)"
check_eq "Redis restarted: the bucket is back in Redis" 1 \
    "$(redis_cli exists rate_limit:api_anonymous:ip:127.0.0.1)"

check_true "log has a redis_down warning" grep -q '"event":"redis_down"' "$SG_VAR/lighttpd-error.log"
check_true "log has a redis_up info line" grep -q '"event":"redis_up"' "$SG_VAR/lighttpd-error.log"
check_false "lighttpd saw no gateway crash or respawn" \
    grep -qiE 'died|signalled|respawn|child exited|spawning a new child' \
    "$SG_VAR/lighttpd-error.log"
