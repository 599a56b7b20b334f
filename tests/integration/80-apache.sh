#!/usr/bin/env bash
# 80-apache: the Apache 2.4 + mod_fcgid deployment (apache/story-gateway.conf, run by
# apache/httpd.conf on a free loopback port) end to end.
#
# It is Apache (Server header, the PID, the pid file, the listener); mod_fcgid spawned
# the gateways (their parent is its process manager, fd 0 a socket of FcgidIPCDir, the
# environment of FcgidInitialEnv, GATEWAY_THREADS 1, two process classes); the CGI
# parameters arrive right (HTTP_AUTHORIZATION through CGIPassAuth, REQUEST_URI,
# QUERY_STRING, REMOTE_ADDR, CONTENT_TYPE, CONTENT_LENGTH of fixed and chunked bodies,
# HTTP_ACCEPT); every method reaches the gateway; its 401/404/405/413/415/429/503 bodies
# are its own JSON; www/ is served as files; the body limits; 40 slow story requests (more
# than the 32 of the "ai" class) while /me, a 429 and /healthz still answer at once; and
# after the stop no process of Apache's survives, checked by PID.
#
# Fails (does not skip) when apache2 or mod_fcgid is missing.
#
# Run alone from the repository root:  bash tests/integration/80-apache.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"
. "$(dirname "$0")/apache.sh"
# shellcheck disable=SC2034  # read by lib.sh's start_stack and stop_stack
SG_HOST=apache # they run Apache from now on (apache.sh)

AI_CLASS=32   # FcgidMaxProcessesPerClass of story-gateway.conf
AI_N=40       # slow story requests fired at once: more than the class holds
SLOW=5        # seconds the fake MistralAI takes for each of them
ME_N=6        # GET /me timed while they wait
LATENCY_MAX=2 # seconds a probe may take; one queued behind a generation would take SLOW
STORY='{"genre":"fantasy","characters":"a patient dragon"}'

start_redis
start_fake_mistral
# AI and API tiers far above what this script sends; the auth tier keeps a burst of 3
# and refills so slowly that once emptied it stays empty (for the 429 checks).
RATE_LIMITS_FILE=$(limits_auth_starved)
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_TIMEOUT=15
start_stack
URL="http://127.0.0.1:$PORT"

# ------------------------------------------------------------------ local helpers

# cmdline PID: the command line of PID, arguments separated by spaces.
cmdline() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | sed 's/ $//'
}

# ai_count: how many gateway processes of the "ai" class run now.
ai_count() {
    local p n=0
    for p in $(apache_gateway_pids); do
        [[ $(cmdline "$p") == *" ai" ]] && n=$((n + 1))
    done
    echo "$n"
}

# gateway_env PID NAME: the value of NAME in the environment of process PID.
gateway_env() {
    tr '\0' '\n' <"/proc/$1/environ" 2>/dev/null | sed -n "s/^$2=//p"
}

# is_json_detail: the last body is a JSON object with a "detail" member.
is_json_detail() {
    printf '%s' "$BODY" | jq -e 'type == "object" and has("detail")' >/dev/null 2>&1
}

# padded_story SIZE: a valid POST /start-story body of exactly SIZE bytes.
padded_story() {
    printf '%s%s' "$STORY" "$(head -c $(($1 - ${#STORY})) /dev/zero | tr '\0' ' ')"
}

# ------------------------------------------------------------------- it is Apache

req GET /healthz
check_status "GET /healthz through Apache: 200" 200
check_header "the answer comes from Apache (Server: Apache, ServerTokens Prod)" Server Apache
check_eq "APACHE_PID runs apache2" "$(command -v apache2)" "$(readlink "/proc/$APACHE_PID/exe")"
check_match "Apache runs apache/httpd.conf in the foreground" \
    "-f $ROOT/apache/httpd.conf -DFOREGROUND" "$(cmdline "$APACHE_PID")"
check_eq "Apache's pid file holds APACHE_PID" "$APACHE_PID" "$(cat "$SG_VAR/apache.pid" 2>/dev/null)"
check_match "Apache alone listens on 127.0.0.1:$PORT" \
    "^LISTEN .* 127\.0\.0\.1:$PORT .*\"apache2\",pid=$APACHE_PID," \
    "$(ss -ltnpH "sport = :$PORT" | tr '\n' ' ')"

# ------------------------------------------------- mod_fcgid spawned the gateways

GATEWAYS=$(apache_gateway_pids | paste -sd' ' -)
check_ne "gateway processes run under Apache" "" "$GATEWAYS"
note "gateways: $GATEWAYS (user $APACHE_USER)"
first=${GATEWAYS%% *}
PM=$(ps -o ppid= -p "$first" | tr -d ' ')
check_eq "the gateways' parent is a child of Apache (mod_fcgid's process manager)" \
    "$APACHE_PID" "$(ps -o ppid= -p "$PM" | tr -d ' ')"
check_eq "the process manager is apache2" "$(command -v apache2)" "$(readlink "/proc/$PM/exe")"
bad=
for p in $GATEWAYS; do
    [ "$(ps -o ppid= -p "$p" | tr -d ' ')" == "$PM" ] || bad="$bad $p:parent"
    [ "$(ps -o user= -p "$p")" == "$APACHE_USER" ] || bad="$bad $p:user"
    ss -xlpH | grep -F "pid=$p,fd=0)" | grep -qF " $SG_VAR/fcgid/" || bad="$bad $p:fd0"
    [ "$(gateway_env "$p" GATEWAY_THREADS)" == 1 ] || bad="$bad $p:threads"
done
check_eq "every gateway: spawned by the process manager, runs as $APACHE_USER, accepts on a socket of FcgidIPCDir on fd 0, GATEWAY_THREADS=1" \
    "" "$bad"
check_eq "FcgidInitialEnv passed JWT_SECRET" "$JWT_SECRET" "$(gateway_env "$first" JWT_SECRET)"
check_eq "FcgidInitialEnv passed REDIS_URL" "$REDIS_URL" "$(gateway_env "$first" REDIS_URL)"
check_eq "FcgidInitialEnv passed RATE_LIMITS_FILE" "$RATE_LIMITS_FILE" \
    "$(gateway_env "$first" RATE_LIMITS_FILE)"
check_eq "FcgidInitialEnv passed MISTRAL_API_URL" "$MISTRAL_API_URL" \
    "$(gateway_env "$first" MISTRAL_API_URL)"
check_eq "an unset variable reaches the gateway empty (its default), not as \${NAME}" "" \
    "$(gateway_env "$first" TRUSTED_PROXIES)"
check_eq "each gateway logged its start-up with 1 request thread" 1 \
    "$(events startup 0 | jq -r .threads | LC_ALL=C sort -u | paste -sd' ' -)"
check_eq "each gateway logged its storyteller: the fake MistralAI" mistral \
    "$(events storyteller 0 | jq -r .backend | LC_ALL=C sort -u | paste -sd' ' -)"

check_eq "no process of the \"ai\" class before any story request" 0 "$(ai_count)"
req_json POST /start-story "$STORY"
check_status "POST /start-story (anonymous) through Apache: 200" 200
check_json "the story was written by the fake MistralAI" '.parts[0].model' '"mistral-small-latest"'
check_eq "the story request started one process of the \"ai\" class" 1 "$(ai_count)"

# ------------------------------------------------------------- the CGI parameters

TOKEN=$(signup_user apache@example.com 'password apache 1') || bail "sign-up through Apache"
req GET /me -H "Authorization: Bearer $TOKEN"
check_status "GET /me with a token: 200 (CGIPassAuth passes Authorization)" 200
check_json "GET /me: the account of the token" .email '"apache@example.com"'
req GET /me
check_status "GET /me without a token: 401" 401
check_json "401 body is the gateway's" . '{"detail":"Not authenticated"}'
check_header "401 has WWW-Authenticate: Bearer" WWW-Authenticate Bearer
req GET '/me?a=1&b=/x' -H "Authorization: Bearer $TOKEN"
check_status "GET /me?query: 200 (the path is routed without the query)" 200
req GET /__gateway/api
check_status "the internal prefix is nobody's path: 404" 404
check_json "GET /__gateway/api: the gateway's 404 (it routes on REQUEST_URI)" . \
    '{"detail":"Not Found"}'

req_json POST /start-story "$STORY" -H "Authorization: Bearer $TOKEN"
check_status "POST /start-story as the user: 200" 200
ID=$(printf '%s' "$BODY" | jq -r .id)
req GET "/suggestions?story_id=$ID" -H "Authorization: Bearer $TOKEN"
check_status "GET /suggestions?story_id=...: 200" 200
check_json "QUERY_STRING arrived: the suggestions are for that story" .story_id "\"$ID\""
req GET "/stories/$ID" -H "Authorization: Bearer $TOKEN"
check_status "GET /stories/{id}: 200" 200
check_json "REQUEST_URI arrived: the story of the path" .id "\"$ID\""
req GET '/stories?limit=0' -H "Authorization: Bearer $TOKEN"
check_status "GET /stories?limit=0: 422 (the query reached the gateway)" 422
req GET '/stories/abc%2Fdef' -H "Authorization: Bearer $TOKEN"
check_status "GET /stories/abc%2Fdef: 404" 404
check_json "an encoded slash reaches the gateway (its 404, not Apache's)" . \
    '{"detail":"Story not found"}'
req GET /nope
check_eq "REMOTE_ADDR arrived: the 404 was charged to ip:127.0.0.1" 1 \
    "$(redis_cli exists rate_limit:api_anonymous:ip:127.0.0.1)"

req POST /start-story -H 'Content-Type: text/plain' --data-binary "$STORY"
check_status "Content-Type text/plain: 415" 415
check_json "415 body is the gateway's" . '{"detail":"Content-Type must be application/json"}'
req POST /start-story -H 'Content-Type: Application/JSON; charset=utf-8' --data-binary "$STORY"
check_status "CONTENT_TYPE arrived as sent: Application/JSON; charset=utf-8 accepted" 200

# ------------------------------------------------------------------ the methods

for m in GET PUT DELETE PATCH OPTIONS; do
    req "$m" /signup
    check_status "$m /signup reaches the gateway: 405" 405
    check_header "$m /signup: Allow: POST" Allow POST
    check_json "$m /signup: the gateway's 405 body" . '{"detail":"Method Not Allowed"}'
done
req POST /me
check_status "POST /me: 405" 405
check_header "POST /me: Allow: GET" Allow GET
req TRACE /me -H 'Authorization: Bearer trace-secret'
check_status "TRACE: Apache's 405 (TraceEnable off)" 405
check_false "TRACE does not echo the request" grep -q trace-secret "$BODY_FILE"

# ------------------------------------------------------------ the body limits

padded_story 65536 >"$TEST_DIR/b65536.json"
padded_story 65537 >"$TEST_DIR/b65537.json"
padded_story 131072 >"$TEST_DIR/b131072.json"
padded_story 204800 >"$TEST_DIR/b200k.json"
check_eq "(setup) bodies of 65536, 65537, 131072 and 204800 bytes" "65536 65537 131072 204800" \
    "$(stat -c %s "$TEST_DIR"/b65536.json "$TEST_DIR"/b65537.json "$TEST_DIR"/b131072.json \
        "$TEST_DIR"/b200k.json | paste -sd' ' -)"
json=(-H 'Content-Type: application/json')
chunked=(-H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked')

req POST /start-story "${json[@]}" --data-binary "@$TEST_DIR/b65536.json"
check_status "body of exactly 64 KiB: 200" 200
req POST /start-story "${json[@]}" --data-binary "@$TEST_DIR/b65537.json"
check_status "body of 64 KiB + 1: 413" 413
check_json "64 KiB + 1: the gateway's 413 body" . \
    '{"detail":"Request body too large (limit 65536 bytes)"}'
check_ratelimit_headers "64 KiB + 1: answered by the gateway (RateLimit headers)"
req POST /start-story "${json[@]}" --data-binary "@$TEST_DIR/b131072.json"
check_status "body of 128 KiB: the gateway's 413" 413
check_true "128 KiB: the 413 body is the gateway's JSON" is_json_detail
req POST /start-story "${chunked[@]}" --data-binary "$STORY"
check_status "small chunked body: 200 (mod_fcgid gives the gateway its length)" 200
req POST /start-story "${chunked[@]}" --data-binary "@$TEST_DIR/b65537.json"
check_status "chunked body of 64 KiB + 1: 413" 413
check_true "chunked 64 KiB + 1: the gateway's JSON" is_json_detail
req POST /start-story "${chunked[@]}" --data-binary "@$TEST_DIR/b200k.json"
check_status "chunked body of 200 KiB (cut at 128 KiB by LimitRequestBody): 413" 413
check_true "chunked 200 KiB: the gateway's JSON" is_json_detail
req POST /start-story "${json[@]}" --data-binary "@$TEST_DIR/b200k.json"
check_status "Content-Length of 200 KiB: Apache's own 413, body unread (never 422 or 500)" 413
check_no_ratelimit_headers "Content-Length of 200 KiB: refused before the gateway"
req POST /start-story "${json[@]}" --data-binary ''
check_status "empty body: the gateway's 422" 422

# --------------------------------------------------------------- static files

req GET /
check_status "GET /: 200" 200
check_header "GET /: text/html; charset=utf-8" Content-Type 'text/html; charset=utf-8'
check_true "GET / serves www/index.html byte for byte" cmp -s "$BODY_FILE" "$ROOT/www/index.html"
check_no_ratelimit_headers "GET / is a file: no RateLimit headers"
req GET /index.html
check_true "GET /index.html serves www/index.html" cmp -s "$BODY_FILE" "$ROOT/www/index.html"
# Every file of www/, byte for byte, with the type lighttpd.conf gives its extension.
while IFS= read -r f; do
    rel=${f#"$ROOT/www"}
    ext=${f##*.}
    want=$(sed -n "s/^ *\"\\.$ext\" *=> *\"\\([^\"]*\\)\".*/\\1/p" "$ROOT/lighttpd.conf")
    req GET "$rel"
    check_status "GET $rel: 200" 200
    check_true "GET $rel serves www$rel byte for byte" cmp -s "$BODY_FILE" "$f"
    check_header "GET $rel: Content-Type as lighttpd.conf says" Content-Type "${want:-<none>}"
done < <(find "$ROOT/www" -type f | LC_ALL=C sort)
req GET /no-such-file.css
check_status "a missing file is the gateway's path: 404" 404
check_json "missing file: the gateway's 404 body" . '{"detail":"Not Found"}'

# ------------------------------------------------------------------- 429 and 503

for _ in 1 2 3 4; do
    req POST /login -H 'Content-Type: application/json' --data-binary '{}'
    [ "$STATUS" == 429 ] && break
done
check_status "the auth tier runs out: 429" 429
check_json "429 body is the gateway's" '[.error, .limit, .detail.limit]' '["Rate limit exceeded", 3, 3]'
check_header_match "429 has Retry-After" Retry-After '^[1-9][0-9]*$'
check_header "429 has RateLimit-Limit 3" RateLimit-Limit 3
req POST /login -H 'Content-Type: application/json' -H 'Accept: application/problem+json' \
    --data-binary '{}'
check_header_match "HTTP_ACCEPT arrived: the 429 is a problem document" Content-Type \
    '^application/problem\+json'

# The restarted Redis below has no data, so the auth bucket emptied above is full again
# behind the gateways' back; the processes that saw it empty would go on refusing it
# (README "Refusals without Redis"). Let those refusals run out first.
wait_refusals_known
stop_redis
req GET /healthz
check_status "Redis stopped: /healthz 503" 503
check_json "503 body is the gateway's" . '{"status":"degraded","redis":"down"}'
req GET /me -H "Authorization: Bearer $TOKEN"
check_status "Redis stopped: GET /me 503" 503
check_true "Redis stopped: the 503 body is the gateway's JSON" is_json_detail
restart_redis
# The Redis data is gone: a new account for what follows.
check_true "Redis back: /healthz 200 again within 5 s" wait_until 5 healthz_is 200
TOKEN=$(signup_user apache2@example.com 'password apache 2') || bail "sign-up after Redis"

# --------------------------------------- slow generations do not hold up the rest

fake_mode "slow $SLOW"
fake_reset_log
# Empty the auth bucket again (the sign-up took one token): the next /login is a 429.
for _ in 1 2 3 4; do
    [ "$(timed POST /login -H 'Content-Type: application/json' --data-binary '{}' |
        cut -d' ' -f1)" == 429 ] && break
done
AI_TOKEN=$(make_user_token "$(openssl rand -hex 16)")
urls=()
for ((i = 0; i < AI_N; i++)); do
    urls+=(-o /dev/null "$URL/start-story")
done
t0=$(date +%s%N)
curl -s --noproxy '*' --max-time 60 -H 'Expect:' -X POST \
    -H "Authorization: Bearer $AI_TOKEN" -H 'Content-Type: application/json' \
    --data-binary "$STORY" --parallel --parallel-immediate --parallel-max "$AI_N" \
    -w '%{http_code} %{time_total}\n' "${urls[@]}" >"$TEST_DIR/ai.txt" 2>/dev/null &
AI_PID=$!
track_pid "$AI_PID"

# The "ai" class fills up: AI_CLASS processes, each holding one generation upstream.
if fake_wait_requests "$AI_CLASS" 15; then
    pass "$AI_CLASS generations reached the upstream"
else
    fail "$AI_CLASS generations reached the upstream" "the fake logged $(fake_requests) in 15 s"
fi
t_upstream=$((($(date +%s%N) - t0) / 1000000))
note "$AI_CLASS generations upstream after ${t_upstream} ms"

: >"$TEST_DIR/me.txt"
for ((i = 0; i < ME_N; i++)); do
    timed GET /me -H "Authorization: Bearer $TOKEN" >>"$TEST_DIR/me.txt"
done
read -r limited_status limited_time < <(timed POST /login -H 'Content-Type: application/json' \
    --data-binary '{}')
read -r health_status health_time < <(timed GET /healthz)
ai_peak=$(ai_count)
upstream_now=$(fake_requests)
if kill -0 "$AI_PID" 2>/dev/null; then
    pass "the probes ran while the generations were still waiting"
else
    fail "the probes ran while the generations were still waiting" "the batch had finished"
fi
me_max=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.4f", m }' "$TEST_DIR/me.txt")
note "GET /me latencies while $upstream_now generations wait (s): $(cut -d' ' -f2 "$TEST_DIR/me.txt" | paste -sd' ' -)"
note "rate-limited /login: $limited_status in $limited_time s; /healthz: $health_status in $health_time s"
check_eq "GET /me answered 200 every time while the generations waited" \
    "$(printf '200 %.0s' $(seq "$ME_N"))" "$(awk '{ printf "%s ", $1 }' "$TEST_DIR/me.txt")"
check_true "every GET /me took less than ${LATENCY_MAX} s (max ${me_max} s)" \
    awk -v lim="$LATENCY_MAX" '$2 >= lim { bad = 1 } END { exit bad }' "$TEST_DIR/me.txt"
check_eq "a request over its limit got its 429 meanwhile" 429 "$limited_status"
check_true "the 429 took less than ${LATENCY_MAX} s ($limited_time s)" \
    awk -v t="$limited_time" -v lim="$LATENCY_MAX" 'BEGIN { exit !(t < lim) }'
check_eq "GET /healthz answered 200 meanwhile" 200 "$health_status"
check_eq "the \"ai\" class holds $AI_CLASS processes, no more (FcgidMaxProcessesPerClass)" \
    "$AI_CLASS" "$ai_peak"
check_eq "so $AI_CLASS generations are upstream at once, the other $((AI_N - AI_CLASS)) wait" \
    "$AI_CLASS" "$upstream_now"

wait "$AI_PID"
t_ai=$((($(date +%s%N) - t0) / 1000000))
note "AI statuses: $(cut -d' ' -f1 "$TEST_DIR/ai.txt" | sort | uniq -c | awk '{ printf "%s x%s ", $2, $1 }')"
note "all $AI_N done ${t_ai} ms after firing"
check_eq "all $AI_N story requests answered 200 (those over the class waited for a process)" \
    "$AI_N" "$(grep -c '^200 ' "$TEST_DIR/ai.txt")"
check_eq "the fake saw exactly $AI_N generations" "$AI_N" "$(fake_requests)"
check_true "the batch took two rounds of ${SLOW} s at least (${t_ai} ms)" \
    test "$t_ai" -ge $((2 * SLOW * 1000))
check_eq "the stories are stored (GET /stories lists $AI_N)" "$AI_N" \
    "$(curl -s --noproxy '*' --max-time 10 -H "Authorization: Bearer $AI_TOKEN" \
        "$URL/stories?limit=100" | jq '.stories | length')"

# ------------------------------------------------------------------------- stop

APACHE_MAIN=$APACHE_PID
TREE=$(apache_tree "$APACHE_PID" | paste -sd' ' -)
note "Apache $APACHE_MAIN and its $(wc -w <<<"$TREE") descendants: $TREE"
stop_stack
check_eq "stop: no gateway outlived Apache by 1 s" "" "$STACK_SURVIVORS"
# shellcheck disable=SC2086  # a list of PIDs
check_eq "stop: Apache, its children and every gateway are gone (by PID)" "" \
    "$(apache_alive "$APACHE_MAIN" $TREE | paste -sd' ' -)"
check_false "the Apache log shows no crashed gateway or child" \
    grep -qE 'unexpected signal|exit signal|core dumped' "$SG_VAR/apache-error.log"
check_false "the Apache log has no undefined config variable (AH00111)" \
    grep -q AH00111 "$SG_VAR/apache-error.log"
