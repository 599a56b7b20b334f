#!/usr/bin/env bash
# 61-story-upstream: the story endpoints against a MistralAI upstream (the fake server,
# tests/fake_mistral), SPEC 7 "Generation" and notes/stories.md "Upstream".
#
# What the gateway sends (Bearer key, MISTRAL_MODEL, a system message first, user turns
# carrying the setup and the reader's direction, max_tokens and temperature), what it
# makes of a good answer (part model = the model the answer names, the title from the
# "Title:" line, three suggestions), and how every upstream failure maps to an answer:
# timeout 504 within about MISTRAL_TIMEOUT; 429 -> 503 busy with the upstream's
# Retry-After (1 without one) after retries that fit the deadline; 429 or 5xx then
# success -> 200 after a retry; 5xx x3 -> 502 after exactly 3 requests; 401 -> 502 with
# no retry; malformed / wrong shape / empty / huge answers -> 502 with no retry. A failed
# generation stores nothing (start: no story; continue / end: the story is unchanged).
# The key never shows in an answer (headers or body) nor in lighttpd's logs.
# Offline mode is 60-stories.sh's.
#
# Run alone from the repository root:  bash tests/integration/61-story-upstream.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

TIMEOUT=3
MODEL=fake-model-7b
# A key that cannot show up anywhere by chance.
FAKE_MISTRAL_KEY="sk-leakcheck-$(openssl rand -hex 16)"
export FAKE_MISTRAL_KEY

start_redis
start_fake_mistral
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)')
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_MODEL=$MODEL MISTRAL_TIMEOUT=$TIMEOUT
start_stack

SUB=$(openssl rand -hex 16)
TOKEN=$(make_user_token "$SUB")
RESPONSES="$TEST_DIR/responses.txt" # every answer's headers and body, for the leak check
: >"$RESPONSES"

NOT_FOUND='{"detail":"Story not found"}'
TIMED_OUT='{"detail":"Story generation timed out"}'
BUSY='{"detail":"Story generation is busy; try again later"}'
GEN_FAILED='{"detail":"Story generation failed"}'
START_JSON=$(jq -cn '{genre: "space opera", characters: "Captain Ilse and a robot cat",
                      opening_line: "The stars went out one by one."}')

# ------------------------------------------------------------------ local helpers

# call TOKEN METHOD PATH [JSON]: req with "Authorization: Bearer TOKEN" (TOKEN "" =
# anonymous) and JSON as the body when given. Appends the answer's headers and body to
# $RESPONSES and sets ELAPSED_MS (wall time of the request).
call() {
    local tok=$1 method=$2 path=$3 t0
    shift 3
    local -a args=()
    [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
    [ $# -gt 0 ] && args+=(-H 'Content-Type: application/json' --data-binary "$1")
    t0=$(date +%s%N)
    req "$method" "$path" "${args[@]}" --max-time 30
    ELAPSED_MS=$((($(date +%s%N) - t0) / 1000000))
    {
        printf '== %s %s -> %s\n' "$method" "$path" "$STATUS"
        cat "$HEADERS"
        printf '%s\n' "$BODY"
    } >>"$RESPONSES"
}

# upstream MODE...: the fake answers the next requests by MODE... (see fake_mistral.sh);
# its request log is emptied.
upstream() {
    fake_mode "$@"
    fake_reset_log
}

# check_sent DESC N FILTER: ok when `jq -e FILTER` is true on the N-th request the fake
# logged (1 = first since the last upstream call).
check_sent() {
    local line got
    if ! line=$(fake_request "$2"); then
        fail "$1" "the fake logged no request $2 (it logged $(fake_requests))"
        return
    fi
    if got=$(printf '%s' "$line" | jq -ce "$3" 2>&1); then
        pass "$1"
    else
        fail "$1" "filter not true: $3" "jq gave: $got" "request: ${line:0:400}"
    fi
}

# sent_has_assistant TEXT: 0 when the first logged request has an assistant turn TEXT.
sent_has_assistant() {
    fake_request 1 | jq -e --arg t "$1" \
        '[.body.messages[] | select(.role == "assistant") | .content] | index($t) != null'
}

# check_upstream_count DESC N: ok when the fake logged exactly N requests.
check_upstream_count() {
    check_eq "$1" "$2" "$(fake_requests)"
}

# check_within DESC MIN_MS MAX_MS: ok when MIN_MS <= ELAPSED_MS < MAX_MS.
check_within() {
    if [ "$ELAPSED_MS" -ge "$2" ] && [ "$ELAPSED_MS" -lt "$3" ]; then
        pass "$1 (${ELAPSED_MS} ms)"
    else
        fail "$1" "took ${ELAPSED_MS} ms, expected [$2, $3) ms"
    fi
}

# story_count: how many stories GET /stories lists for TOKEN (one page of 100).
story_count() {
    curl -s --noproxy '*' --max-time 10 -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT/stories?limit=100" | jq '.stories | length'
}

# story_state ID: "<status> <number of parts> <updated_at>" of story ID (GET /stories/ID).
story_state() {
    curl -s --noproxy '*' --max-time 10 -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT/stories/$1" | jq -r '"\(.status) \(.parts | length) \(.updated_at)"'
}

# check_request WHAT N: the N-th logged request is a well-formed chat completion request.
check_request() {
    local what=$1 n=$2 line
    line=$(fake_request "$n") || { fail "$what: the fake logged request $n" "none"; return; }
    check_eq "$what: Authorization is \"Bearer \" + MISTRAL_API_KEY" \
        "Bearer $FAKE_MISTRAL_KEY" "$(printf '%s' "$line" | jq -r .authorization)"
    check_sent "$what: POST /v1/chat/completions, JSON" "$n" \
        '.method == "POST" and .path == "/v1/chat/completions"
         and (.content_type | startswith("application/json"))'
    check_sent "$what: the fake accepted the body" "$n" '.body | type == "object"'
    check_sent "$what: model is MISTRAL_MODEL" "$n" ".body.model == \"$MODEL\""
    check_sent "$what: messages: a system message first, then user/assistant turns" "$n" \
        '.body.messages as $m | ($m | length) >= 2 and $m[0].role == "system"
         and ([$m[1:][] | select(.role != "user" and .role != "assistant")] | length) == 0
         and ([$m[] | select((.content | type) != "string" or .content == "")] | length) == 0
         and $m[-1].role == "user"'
    check_sent "$what: max_tokens is a positive integer" "$n" \
        '.body.max_tokens | type == "number" and . == floor and . > 0'
    check_sent "$what: temperature is a number in [0, 1.5]" "$n" \
        '.body.temperature | type == "number" and . >= 0 and . <= 1.5'
}

# ---------------------------------------------------------------- start-up log line

check_eq "start-up logs the storyteller backend mistral with the model" \
    "mistral $MODEL" \
    "$(events storyteller 0 | head -n 1 | jq -r '"\(.backend) \(.model)"')"

# ------------------------------------------------------------------ normal answers

upstream normal
call "$TOKEN" POST /start-story "$START_JSON"
check_status "start-story: 200 with the upstream" 200
ID=$(printf '%s' "$BODY" | jq -r '.id // empty')
check_match "start-story: a story id" '^[0-9a-f]{32}$' "$ID"
check_json "start-story: in progress with one opening part" \
    '[.status, (.parts | length), .parts[0].n, .parts[0].kind, .parts[0].user_input]' \
    '["in_progress", 1, 1, "opening", null]'
check_json "start-story: part model is the model the upstream named" .parts[0].model "\"$MODEL\""
check_jq "start-story: the title is the fake's \"Title:\" line" \
    '.title | test("^The [A-Z][a-z]+ [A-Z][a-z]+$")'
check_jq "start-story: the text has no Title: line left" \
    '.parts[0].text | (startswith("Title:") | not) and length > 0'
check_jq "start-story: the text is the fake's, quoting the setup it was sent" \
    '.parts[0].text | contains("space opera / Captain Ilse and a robot cat")'
check_upstream_count "start-story: one upstream request" 1
check_request "start-story request" 1
check_sent "start-story request: the system message asks for a Title: line" 1 \
    '.body.messages[0].content | contains("Title:")'
check_sent "start-story request: a user turn carries the genre, characters and opening line" 1 \
    '[.body.messages[] | select(.role == "user") | .content] | join("\n")
     | contains("space opera") and contains("Captain Ilse and a robot cat")
       and contains("The stars went out one by one.")'
OPENING=$(printf '%s' "$BODY" | jq -r '.parts[0].text')
TITLE=$(printf '%s' "$BODY" | jq -r .title)

# The fake's own text for the title is used verbatim when it is well formed.
upstream 'content Title: The Clockwork Moon\n\nIlse woke to silence. The cat was gone.'
call "$TOKEN" POST /start-story "$START_JSON"
check_status "start-story, answer with a Title: line: 200" 200
check_json "start-story: title taken from the Title: line" .title '"The Clockwork Moon"'
check_json "start-story: text is what follows the title" .parts[0].text \
    '"Ilse woke to silence. The cat was gone."'

upstream normal
call "$TOKEN" POST /continue-story \
    "$(jq -cn --arg s "$ID" '{story_id: $s, user_input: "the robot cat finds a map"}')"
check_status "continue-story: 200 with the upstream" 200
check_json "continue-story: a second part, continuation, with the input" \
    '[(.parts | length), .parts[1].n, .parts[1].kind, .parts[1].user_input, .parts[1].model]' \
    "[2, 2, \"continuation\", \"the robot cat finds a map\", \"$MODEL\"]"
check_jq "continue-story: the new part quotes the reader's direction the fake was sent" \
    '.parts[1].text | contains("the robot cat finds a map")'
check_json "continue-story: the first part and the title are unchanged" \
    '[.title, .parts[0].text]' "$(jq -cn --arg t "$TITLE" --arg o "$OPENING" '[$t, $o]')"
check_upstream_count "continue-story: one upstream request" 1
check_request "continue-story request" 1
check_true "continue-story request: the opening is sent back as an assistant turn" \
    sent_has_assistant "$OPENING"
check_sent "continue-story request: the last user turn carries the direction" 1 \
    '.body.messages[-1].content | contains("the robot cat finds a map")'

upstream normal
call "$TOKEN" POST /continue-story "$(jq -cn --arg s "$ID" '{story_id: $s}')"
check_status "continue-story without input: 200" 200
check_json "continue-story without input: third part, user_input null" \
    '[(.parts | length), .parts[2].kind, .parts[2].user_input, .parts[2].model]' \
    "[3, \"continuation\", null, \"$MODEL\"]"
check_request "continue-story (no input) request" 1

upstream normal
call "$TOKEN" GET "/suggestions?story_id=$ID"
check_status "suggestions for a story: 200" 200
check_json "suggestions: the story's id" .story_id "\"$ID\""
check_jq "suggestions: three non-empty strings" \
    '.suggestions | length == 3 and all(type == "string" and length > 0)'
check_jq "suggestions: without the fake's list numbers" \
    '.suggestions[1] == "An old map reveals a door hidden beneath the town."
     and .suggestions[2] == "A storm forces everyone to shelter in the lighthouse."'
check_upstream_count "suggestions: one upstream request" 1
check_request "suggestions request" 1
check_sent "suggestions request: the system message asks for three" 1 \
    '.body.messages[0].content | test("three"; "i")'

upstream normal
call "$TOKEN" GET /suggestions
check_status "suggestions without a story: 200" 200
check_jq "suggestions without a story: story_id null and three strings" \
    '.story_id == null and (.suggestions | length == 3 and all(type == "string" and length > 0))'
check_request "ideas request" 1

# Nothing to generate for: no upstream request.
upstream normal
call "$TOKEN" GET "/suggestions?story_id=$(openssl rand -hex 16)"
check_status "suggestions for an unknown story: 404" 404
check_body "suggestions for an unknown story: body" "$NOT_FOUND"
call "$TOKEN" POST /continue-story "$(jq -cn --arg s "$(openssl rand -hex 16)" '{story_id: $s}')"
check_status "continue-story of an unknown story: 404" 404
check_upstream_count "unknown stories: no upstream request" 0

upstream normal
call "" POST /start-story "$START_JSON"
check_status "anonymous start-story: 200 with the upstream" 200
check_json "anonymous start-story: part model from the upstream" .parts[0].model "\"$MODEL\""
ANON_ID=$(printf '%s' "$BODY" | jq -r '.id // empty')

# ------------------------------------------------------------- upstream failures

# fails_start DESC STATUS BODY_JSON REQUESTS MODE...: POST /start-story with the fake in
# MODE...; the answer is STATUS with BODY_JSON, the fake saw REQUESTS requests, and no
# story was stored.
fails_start() {
    local desc=$1 status=$2 body=$3 n=$4 before
    shift 4
    before=$(story_count)
    upstream "$@"
    call "$TOKEN" POST /start-story "$START_JSON"
    check_status "$desc: $status" "$status"
    check_body "$desc: body" "$body"
    check_upstream_count "$desc: $n upstream request(s)" "$n"
    check_eq "$desc: no story stored" "$before" "$(story_count)"
}

# Timeout: the fake sleeps past MISTRAL_TIMEOUT.
upstream "slow $((TIMEOUT + 3))"
before=$(story_count)
call "$TOKEN" POST /start-story "$START_JSON"
check_status "upstream slower than MISTRAL_TIMEOUT: 504" 504
check_body "timeout: body" "$TIMED_OUT"
check_within "timeout: answered after about MISTRAL_TIMEOUT=${TIMEOUT}s" \
    $((TIMEOUT * 1000 - 500)) $((TIMEOUT * 1000 + 2000))
check_upstream_count "timeout: one upstream request (no retry after a timeout)" 1
check_eq "timeout: no story stored" "$before" "$(story_count)"

# 429 with Retry-After: 2 on every attempt. A retry would start at 2 s of a 3 s deadline:
# the gateway gives up when the retry does not fit, and passes the Retry-After on.
upstream "429 2"
call "$TOKEN" POST /start-story "$START_JSON"
check_status "upstream 429 (Retry-After: 2) every time: 503" 503
check_body "upstream 429: busy body" "$BUSY"
check_header "upstream 429: Retry-After is the upstream's" Retry-After 2
check_true "upstream 429: 1 to 3 upstream requests (retries only within the deadline)" \
    test "$(fake_requests)" -ge 1 -a "$(fake_requests)" -le 3
check_within "upstream 429: answered within MISTRAL_TIMEOUT + 2 s" 0 $((TIMEOUT * 1000 + 2000))
note "upstream 429 (Retry-After: 2, MISTRAL_TIMEOUT=$TIMEOUT):" \
    "$(fake_requests) request(s), ${ELAPSED_MS} ms"

# 429 without Retry-After every time: retried with backoff, then 503 with Retry-After: 1.
fails_start "upstream 429 (no Retry-After) every time" 503 "$BUSY" 3 429
check_header "upstream 429 without Retry-After: Retry-After 1" Retry-After 1

# 429 once, then a good answer: one retry, after the upstream's Retry-After.
upstream "429 1" normal
call "$TOKEN" POST /start-story "$START_JSON"
check_status "upstream 429 (Retry-After: 1) then normal: 200" 200
check_upstream_count "429 then normal: 2 upstream requests" 2
check_within "429 then normal: the retry waited the Retry-After (1 s)" 1000 \
    $((TIMEOUT * 1000 + 500))
check_json "429 then normal: part model from the upstream" .parts[0].model "\"$MODEL\""
check_sent "429 then normal: the retry is the same request" 2 '.body.model == "'"$MODEL"'"'
check_true "429 then normal: both requests have the same body" \
    test "$(fake_request 1 | jq -cS .body)" == "$(fake_request 2 | jq -cS .body)"

# 5xx: retried twice (3 requests in all), then 502.
fails_start "upstream 500 every time" 502 "$GEN_FAILED" 3 500
check_no_header "upstream 500: no Retry-After" Retry-After
fails_start "upstream 503 every time" 502 "$GEN_FAILED" 3 503
fails_start "upstream 502 every time" 502 "$GEN_FAILED" 3 502

upstream 500 normal
call "$TOKEN" POST /start-story "$START_JSON"
check_status "upstream 500 then normal: 200 after a retry" 200
check_upstream_count "500 then normal: 2 upstream requests" 2

upstream 500 500 normal
call "$TOKEN" POST /start-story "$START_JSON"
check_status "upstream 500 twice then normal: 200 after two retries" 200
check_upstream_count "500, 500, normal: 3 upstream requests" 3

# Refusals and unusable answers: no retry.
fails_start "upstream 401" 502 "$GEN_FAILED" 1 401
fails_start "upstream malformed JSON" 502 "$GEN_FAILED" 1 malformed
fails_start "upstream answer without choices" 502 "$GEN_FAILED" 1 wrongshape
fails_start "upstream empty content" 502 "$GEN_FAILED" 1 empty
fails_start "upstream 100 KiB content" 502 "$GEN_FAILED" 1 huge
fails_start "upstream whitespace-only content" 502 "$GEN_FAILED" 1 'content  \n \n  '

# ---------------------------------------------- failures add nothing to a story

state=$(story_state "$ID")
note "story before the failed continuations: $state"
for mode in 500 401 malformed "slow $((TIMEOUT + 3))"; do
    upstream "$mode"
    call "$TOKEN" POST /continue-story \
        "$(jq -cn --arg s "$ID" '{story_id: $s, user_input: "this must not be stored"}')"
    case $mode in
        slow*) check_status "continue-story, upstream $mode: 504" 504 ;;
        *) check_status "continue-story, upstream $mode: 502" 502 ;;
    esac
    check_eq "continue-story, upstream $mode: the story is unchanged" "$state" \
        "$(story_state "$ID")"
done
upstream 429
call "$TOKEN" POST /continue-story "$(jq -cn --arg s "$ID" '{story_id: $s}')"
check_status "continue-story, upstream 429: 503" 503
check_eq "continue-story, upstream 429: the story is unchanged" "$state" "$(story_state "$ID")"

upstream 502
call "$TOKEN" POST /end-story "$(jq -cn --arg s "$ID" '{story_id: $s}')"
check_status "end-story, upstream 502: 502" 502
check_eq "end-story, upstream failure: the story is unchanged (still in progress)" "$state" \
    "$(story_state "$ID")"

upstream wrongshape
call "$TOKEN" GET "/suggestions?story_id=$ID"
check_status "suggestions, upstream wrong shape: 502" 502
check_body "suggestions, upstream failure: body" "$GEN_FAILED"

upstream "content only one line"
call "$TOKEN" GET "/suggestions?story_id=$ID"
check_status "suggestions, upstream answer with one line instead of three: 502" 502

upstream 503
call "" POST /continue-story "$(jq -cn --arg s "$ANON_ID" '{story_id: $s}')"
check_status "anonymous continue-story, upstream 503: 502" 502

# The story still works once the upstream is back.
upstream normal
call "$TOKEN" POST /end-story "$(jq -cn --arg s "$ID" '{story_id: $s}')"
check_status "end-story, upstream back to normal: 200" 200
check_json "end-story: completed, ending appended as part 4" \
    '[.status, (.parts | length), .parts[-1].n, .parts[-1].kind, .parts[-1].model]' \
    "[\"completed\", 4, 4, \"ending\", \"$MODEL\"]"
check_request "end-story request" 1

# ------------------------------------------ a longer deadline: all three attempts

# MISTRAL_TIMEOUT=6: two 2 s Retry-After waits fit (a retry starts only with 1 s left).
TIMEOUT2=6
export MISTRAL_TIMEOUT=$TIMEOUT2
restart_stack
upstream "429 2"
call "$TOKEN" POST /start-story "$START_JSON"
check_status "MISTRAL_TIMEOUT=$TIMEOUT2, upstream 429 (Retry-After: 2) every time: 503" 503
check_body "MISTRAL_TIMEOUT=$TIMEOUT2, upstream 429: busy body" "$BUSY"
check_header "MISTRAL_TIMEOUT=$TIMEOUT2, upstream 429: Retry-After 2" Retry-After 2
check_upstream_count "MISTRAL_TIMEOUT=$TIMEOUT2, upstream 429: 3 upstream requests (2 retries)" 3
check_within "MISTRAL_TIMEOUT=$TIMEOUT2, upstream 429: the retries waited 2 s each" 4000 \
    $((TIMEOUT2 * 1000 + 1000))

upstream "slow $((TIMEOUT2 + 3))"
call "$TOKEN" POST /start-story "$START_JSON"
check_status "MISTRAL_TIMEOUT=$TIMEOUT2, upstream slower: 504" 504
check_body "MISTRAL_TIMEOUT=$TIMEOUT2, timeout: body" "$TIMED_OUT"
check_within "MISTRAL_TIMEOUT=$TIMEOUT2: 504 after about $TIMEOUT2 s" $((TIMEOUT2 * 1000 - 500)) \
    $((TIMEOUT2 * 1000 + 2000))

# ------------------------------------------------------------------ the key never leaks

check_eq "gateway logged upstream errors (event upstream_error)" 1 \
    "$([ "$(count_events upstream_error 0)" -gt 0 ] && echo 1 || echo 0)"
check_false "the key is in no answer (headers or body)" grep -qF "$FAKE_MISTRAL_KEY" "$RESPONSES"
check_false "the key is not in lighttpd-error.log (gateway log lines)" \
    grep -qF "$FAKE_MISTRAL_KEY" "$SG_VAR/lighttpd-error.log"
check_false "the key is not in lighttpd-access.log" \
    grep -qF "$FAKE_MISTRAL_KEY" "$SG_VAR/lighttpd-access.log"
check_false "not even the key's random half is in lighttpd-error.log" \
    grep -qF "${FAKE_MISTRAL_KEY#sk-leakcheck-}" "$SG_VAR/lighttpd-error.log"
check_true "sanity: the fake did receive the key (so the checks above mean something)" \
    grep -qF "Bearer $FAKE_MISTRAL_KEY" "$FAKE_DIR/requests.log"
note "answers checked for the key: $(grep -c '^== ' "$RESPONSES")"
