#!/usr/bin/env bash
# 60-stories: the story endpoints in offline mode (no MISTRAL_API_KEY), SPEC 7 and 8 and
# the lead's notes on stories (notes/stories.md).
#
# start-story (shape, determinism), continue-story and end-story (parts, 409s, the 30-part
# cap), suggestions, unknown and malformed ids, ownership between users and anonymous
# callers, anonymous stories (reachable by id, never listed, 24 h TTL), GET /stories
# pagination and its 422s, GET and DELETE /stories/{id}, body validation (422 loc, 415),
# the Redis key layout, the start-up log line, Redis down (503), and, last, that the
# story routes are charged to the AI tiers. Every tier is large here (limiting must not
# interfere) except in that last section, which restarts the stack with limits.json.
#
# Run alone from the repository root:  bash tests/integration/60-stories.sh
set -u
. "$(dirname "$0")/lib.sh"

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)')
export RATE_LIMITS_FILE
start_stack

# ------------------------------------------------------------------ local helpers

TIME_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$'
ID_RE='^[0-9a-f]{32}$'
STORY_KEYS='["characters","created_at","genre","id","opening_line","parts","status","title","updated_at"]'
ITEM_KEYS='["characters","created_at","genre","id","opening_line","status","title","updated_at"]'
PART_KEYS='["kind","model","n","text","user_input"]'
NOT_FOUND='{"detail":"Story not found"}'
COMPLETED='{"detail":"Story is already completed"}'
FULL='{"detail":"Story has reached 30 parts; end it to finish"}'
UNAVAILABLE='{"detail":"Service temporarily unavailable"}'
NOT_AUTH='{"detail":"Not authenticated"}'

# call TOKEN METHOD PATH [CURL_ARGS...]: req with "Authorization: Bearer TOKEN"
# (TOKEN "" = anonymous, no Authorization header).
call() {
    local tok=$1
    shift
    if [ -n "$tok" ]; then
        req "$@" -H "Authorization: Bearer $tok"
    else
        req "$@"
    fi
}

# call_json TOKEN METHOD PATH JSON: call with a JSON body.
call_json() {
    local tok=$1 method=$2 path=$3 json=$4
    call "$tok" "$method" "$path" -H 'Content-Type: application/json' --data-binary "$json"
}

# start TOKEN GENRE CHARACTERS [OPENING_LINE]: POST /start-story (opening_line omitted
# when not given). Sets SID to the new story's id ("" when none).
start() {
    local json
    if [ $# -ge 4 ]; then
        json=$(jq -cn --arg g "$2" --arg c "$3" --arg o "$4" \
            '{genre: $g, characters: $c, opening_line: $o}')
    else
        json=$(jq -cn --arg g "$2" --arg c "$3" '{genre: $g, characters: $c}')
    fi
    call_json "$1" POST /start-story "$json"
    SID=$(body_get '.id // empty')
}

# continue_story TOKEN ID [USER_INPUT]: POST /continue-story (user_input omitted when
# not given).
continue_story() {
    if [ $# -ge 3 ]; then
        call_json "$1" POST /continue-story \
            "$(jq -cn --arg s "$2" --arg u "$3" '{story_id: $s, user_input: $u}')"
    else
        call_json "$1" POST /continue-story "$(jq -cn --arg s "$2" '{story_id: $s}')"
    fi
}

# end_story TOKEN ID: POST /end-story.
end_story() {
    call_json "$1" POST /end-story "$(jq -cn --arg s "$2" '{story_id: $s}')"
}

# body_get FILTER: jq -r FILTER on the last body ("" when it is not JSON).
body_get() {
    printf '%s' "$BODY" | jq -r "$1" 2>/dev/null
}

# list_ids TOKEN: the ids of the caller's stories (GET /stories?limit=100), one line,
# space-separated.
list_ids() {
    call "$1" GET '/stories?limit=100'
    body_get '[.stories[]?.id] | join(" ")'
}

# check_story DESC: the last answer is 200 with a full story object of SPEC 7: exactly
# its keys, types, id of 32 hex, times "YYYY-MM-DDTHH:MM:SSZ", parts numbered 1..N with
# exactly their keys, model "offline", non-empty texts.
check_story() {
    check_status "$1: 200" 200
    check_header_match "$1: Content-Type application/json" Content-Type '^application/json'
    check_json "$1: exactly the keys of SPEC 7" 'keys' "$STORY_KEYS"
    check_jq "$1: field types" '(.id | type == "string") and (.title | type == "string")
        and (.genre | type == "string") and (.characters | type == "string")
        and (.opening_line | type == "string") and (.status | type == "string")
        and (.parts | type == "array") and (.created_at | type == "string")
        and (.updated_at | type == "string")'
    check_jq "$1: id is 32 lowercase hex" '.id | test("^[0-9a-f]{32}$")'
    check_jq "$1: title is non-empty" '.title | length > 0'
    check_jq "$1: created_at and updated_at are YYYY-MM-DDTHH:MM:SSZ" \
        "(.created_at | test(\"$TIME_RE\")) and (.updated_at | test(\"$TIME_RE\"))"
    check_jq "$1: parts have exactly n, kind, text, user_input, model" \
        "all(.parts[]; keys == $PART_KEYS)"
    check_jq "$1: parts are numbered 1..N" '[.parts[].n] == [range(1; (.parts | length) + 1)]'
    check_jq "$1: parts: text a non-empty string, model \"offline\", user_input null or string" \
        'all(.parts[]; (.text | type == "string" and length > 0) and .model == "offline"
             and (.user_input == null or (.user_input | type == "string")))'
}

# check_detail DESC STATUS JSON: the last answer has STATUS and exactly body JSON.
check_detail() {
    check_status "$1: $2" "$2"
    check_json "$1: body" . "$3"
}

# check_422 DESC LOC_JSON TYPE: the last answer is 422 in FastAPI's shape with
# detail[0].loc == LOC_JSON and detail[0].type == TYPE (TYPE "" = any string).
check_422() {
    check_status "$1: 422" 422
    check_json "$1: detail[0].loc" '.detail[0].loc' "$2"
    if [ -n "$3" ]; then
        check_json "$1: detail[0].type" '.detail[0].type' "\"$3\""
    fi
    check_jq "$1: detail[0] has string msg and type" \
        '(.detail | type == "array") and (.detail[0].msg | type == "string")
         and (.detail[0].type | type == "string")'
}

# repeat CHAR N: CHAR repeated N times.
repeat() {
    local i out=
    for ((i = 0; i < $2; i++)); do out="$out$1"; done
    printf '%s' "$out"
}

# zcard USER: how many stories Redis indexes for USER.
zcard() {
    redis_cli zcard "{u:$1}:stories"
}

# ------------------------------------------------------------------------ users

TOK_A=$(signup_user alice@example.com 'alice password') || bail "sign-up of user A failed"
UID_A=$(user_id_of "$TOK_A")
UID_B=$(openssl rand -hex 16)
TOK_B=$(make_user_token "$UID_B")
UID_C=$(openssl rand -hex 16)
TOK_C=$(make_user_token "$UID_C")
UID_D=$(openssl rand -hex 16)
TOK_D=$(make_user_token "$UID_D")

# ------------------------------------------------------------------ start-up log line

note "start-up log line"
sleep 0.2
n=$(count_events storyteller 0)
check_true "log: a \"storyteller\" line per gateway process ($n)" test "$n" -ge 1 -a "$n" -le 2
check_true "log: storyteller lines say backend offline, level info" \
    jq -e -s 'length > 0 and all(.[]; .backend == "offline" and .level == "info")' \
    <<<"$(events storyteller 0)"

# ----------------------------------------------------------------- start-story

note "POST /start-story"
t0=$(date +%s)
start "$TOK_A" 'space opera' 'a smuggler and her robot' 'The engines died at midnight.'
check_story "start-story (user A)"
check_json "start-story: status in_progress" .status '"in_progress"'
check_json "start-story: genre, characters, opening_line echoed" \
    '[.genre, .characters, .opening_line]' \
    '["space opera","a smuggler and her robot","The engines died at midnight."]'
check_json "start-story: one part" '.parts | length' 1
check_json "start-story: the part is n 1, opening, user_input null, model offline" \
    '.parts[0] | {n, kind, user_input, model}' \
    '{"n":1,"kind":"opening","user_input":null,"model":"offline"}'
check_jq "start-story: created_at == updated_at" '.created_at == .updated_at'
created=$(date -d "$(body_get .created_at)" +%s 2>/dev/null || echo 0)
check_true "start-story: created_at is now (within 60 s)" \
    test $((created - t0)) -le 60 -a $((t0 - created)) -le 60
check_header "start-story: Cache-Control: no-store" Cache-Control no-store
check_header_match "start-story (user): charged to ai_authenticated" RateLimit-Policy \
    '^"ai_authenticated";'
SA=$SID
SA_TEXT=$(body_get '.parts[0].text')
SA_TITLE=$(body_get '.title')
SA_BODY=$BODY

req GET "/stories/$SA" -H "Authorization: Bearer $TOK_A"
check_status "GET /stories/{id} right after start: 200" 200
check_json "GET /stories/{id}: the story start-story answered" . "$SA_BODY"
check_header_match "GET /stories/{id}: charged to api_authenticated" RateLimit-Policy \
    '^"api_authenticated";'

start "$TOK_A" 'noir' 'a tired detective'
check_status "start-story without opening_line: 200" 200
check_json "start-story without opening_line: opening_line is \"\"" .opening_line '""'

# --- determinism: same inputs, same opening and title, whoever asks
note "offline determinism"
start "$TOK_B" 'space opera' 'a smuggler and her robot' 'The engines died at midnight.'
check_status "start-story (user B, same inputs): 200" 200
SB=$SID
check_ne "user B's story has its own id" "$SA" "$SB"
check_eq "same inputs: same opening text (users A and B)" "$SA_TEXT" "$(body_get '.parts[0].text')"
check_eq "same inputs: same title (users A and B)" "$SA_TITLE" "$(body_get .title)"
start "" 'space opera' 'a smuggler and her robot' 'The engines died at midnight.'
check_status "start-story (anonymous, same inputs): 200" 200
check_eq "same inputs: same opening text (anonymous)" "$SA_TEXT" "$(body_get '.parts[0].text')"
check_header_match "start-story (anonymous): charged to ai_anonymous" RateLimit-Policy \
    '^"ai_anonymous";'

# --------------------------------------------------------- continue-story, end-story

note "POST /continue-story"
continue_story "$TOK_A" "$SA" 'A comet lights the sky.'
check_story "continue with user_input"
check_json "continue: same id" .id "\"$SA\""
check_json "continue: two parts" '.parts | length' 2
check_json "continue: part 2 is n 2, continuation, user_input echoed, offline" \
    '.parts[1] | {n, kind, user_input, model}' \
    '{"n":2,"kind":"continuation","user_input":"A comet lights the sky.","model":"offline"}'
check_json "continue: part 1 unchanged" '.parts[0].text' "$(jq -n --arg t "$SA_TEXT" '$t')"
check_json "continue: still in_progress" .status '"in_progress"'
check_json "continue: created_at unchanged" .created_at "$(jq -c .created_at <<<"$SA_BODY")"
check_header_match "continue (user): charged to ai_authenticated" RateLimit-Policy \
    '^"ai_authenticated";'
SA_PART2=$(body_get '.parts[1].text')
CONT_BODY=$BODY
req GET "/stories/$SA" -H "Authorization: Bearer $TOK_A"
check_json "GET after continue: the story continue answered" . "$CONT_BODY"

continue_story "$TOK_B" "$SB" 'A comet lights the sky.'
check_status "continue user B's twin story with the same input: 200" 200
check_eq "same story so far and input: same continuation text" "$SA_PART2" \
    "$(body_get '.parts[1].text')"

continue_story "$TOK_A" "$SA"
check_story "continue without user_input"
check_json "continue without user_input: part 3, continuation, user_input null" \
    '.parts[2] | {n, kind, user_input}' '{"n":3,"kind":"continuation","user_input":null}'
call_json "$TOK_A" POST /continue-story "$(jq -cn --arg s "$SA" '{story_id: $s, user_input: ""}')"
check_status "continue with user_input \"\": 200" 200
check_json "continue with user_input \"\": part 4, user_input null" \
    '.parts[3] | {n, user_input}' '{"n":4,"user_input":null}'
call_json "$TOK_A" POST /continue-story "$(jq -cn --arg s "$SA" '{story_id: $s, user_input: null}')"
check_status "continue with user_input null: 200" 200
check_json "continue with user_input null: part 5, user_input null" \
    '.parts[4] | {n, user_input}' '{"n":5,"user_input":null}'
U1000=$(repeat 'é' 1000)
continue_story "$TOK_A" "$SA" "$U1000"
check_status "continue with user_input of 1000 chars (2000 bytes): 200" 200
check_json "continue: the 1000-char user_input echoed" '.parts[5].user_input' \
    "$(jq -n --arg u "$U1000" '$u')"

note "GET /suggestions"
req GET "/suggestions?story_id=$SA" -H "Authorization: Bearer $TOK_A"
check_status "suggestions for a story: 200" 200
check_json "suggestions: exactly story_id and suggestions" keys '["story_id","suggestions"]'
check_json "suggestions: story_id echoed" .story_id "\"$SA\""
check_jq "suggestions: three non-empty strings" \
    '(.suggestions | length == 3) and all(.suggestions[]; type == "string" and length > 0)'
check_header_match "suggestions (user): charged to ai_authenticated" RateLimit-Policy \
    '^"ai_authenticated";'
req GET /suggestions -H "Authorization: Bearer $TOK_A"
check_status "suggestions without story_id: 200" 200
check_json "suggestions without story_id: story_id null" .story_id null
check_jq "suggestions without story_id: three non-empty strings" \
    '(.suggestions | length == 3) and all(.suggestions[]; type == "string" and length > 0)'
req GET '/suggestions?story_id='
check_status "suggestions with story_id= (anonymous): 200" 200
check_json "suggestions with story_id=: story_id null" .story_id null
check_jq "suggestions with story_id=: three non-empty strings" \
    '(.suggestions | length == 3) and all(.suggestions[]; type == "string" and length > 0)'

note "POST /end-story"
end_story "$TOK_A" "$SA"
check_story "end-story"
check_json "end: completed" .status '"completed"'
check_json "end: seven parts, the last n 7, ending, user_input null" \
    '[(.parts | length), (.parts[-1] | {n, kind, user_input})]' \
    '[7, {"n":7,"kind":"ending","user_input":null}]'
check_header_match "end (user): charged to ai_authenticated" RateLimit-Policy \
    '^"ai_authenticated";'
END_BODY=$BODY
continue_story "$TOK_A" "$SA" 'more please'
check_detail "continue a completed story" 409 "$COMPLETED"
continue_story "$TOK_A" "$SA"
check_detail "continue a completed story without user_input" 409 "$COMPLETED"
end_story "$TOK_A" "$SA"
check_detail "end a completed story" 409 "$COMPLETED"
req GET "/stories/$SA" -H "Authorization: Bearer $TOK_A"
check_json "the 409s changed nothing (GET is the end-story answer)" . "$END_BODY"

note "the 30-part cap"
start "$TOK_A" 'epic' 'a very long journey'
S30=$SID
bad=0
for i in $(seq 29); do
    continue_story "$TOK_A" "$S30" "step $i"
    [ "$STATUS" == 200 ] || bad=$((bad + 1))
done
check_eq "29 continuations: all 200" 0 "$bad"
check_json "the story has 30 parts, n 30" '[(.parts | length), .parts[-1].n]' '[30, 30]'
continue_story "$TOK_A" "$S30" 'one more'
check_detail "continue a story with 30 parts" 409 "$FULL"
continue_story "$TOK_A" "$S30"
check_detail "continue a story with 30 parts (no user_input)" 409 "$FULL"
req GET "/stories/$S30" -H "Authorization: Bearer $TOK_A"
check_json "the refused continuations added no part" '.parts | length' 30
check_eq "Redis: 30 parts in the list" 30 "$(redis_cli llen "{u:$UID_A}:story:$S30:parts")"
end_story "$TOK_A" "$S30"
check_status "end a story with 30 parts: 200" 200
check_json "ended: 31 parts, the last n 31 ending, completed" \
    '[(.parts | length), .parts[-1].n, .parts[-1].kind, .status]' '[31, 31, "ending", "completed"]'
check_eq "Redis: 31 parts in the list" 31 "$(redis_cli llen "{u:$UID_A}:story:$S30:parts")"

# ------------------------------------------------------------- unknown and malformed ids

note "unknown and malformed ids: 404 everywhere"
UNKNOWN=$(openssl rand -hex 16)
UPPER=$(printf '%s' "$SB" | tr 'a-f' 'A-F')
for id in "$UNKNOWN" xyz "${SB:0:31}" "${SB}0" "$UPPER" "${SB:0:31}g"; do
    continue_story "$TOK_A" "$id" x
    check_detail "continue id '$id' (user A)" 404 "$NOT_FOUND"
    end_story "$TOK_A" "$id"
    check_detail "end id '$id' (user A)" 404 "$NOT_FOUND"
    req GET "/suggestions?story_id=$id" -H "Authorization: Bearer $TOK_A"
    check_detail "suggestions id '$id' (user A)" 404 "$NOT_FOUND"
    req GET "/stories/$id" -H "Authorization: Bearer $TOK_A"
    check_detail "GET /stories/'$id' (user A)" 404 "$NOT_FOUND"
    req DELETE "/stories/$id" -H "Authorization: Bearer $TOK_A"
    check_detail "DELETE /stories/'$id' (user A)" 404 "$NOT_FOUND"
done
continue_story "" "$UNKNOWN" x
check_detail "continue an unknown id (anonymous)" 404 "$NOT_FOUND"
end_story "" "$UNKNOWN"
check_detail "end an unknown id (anonymous)" 404 "$NOT_FOUND"
req GET "/suggestions?story_id=$UNKNOWN"
check_detail "suggestions for an unknown id (anonymous)" 404 "$NOT_FOUND"
call_json "$TOK_A" POST /continue-story '{"story_id":""}'
check_detail "continue with story_id \"\"" 404 "$NOT_FOUND"
call_json "$TOK_A" POST /continue-story "{\"story_id\":\"$(repeat a 200)\"}"
check_detail "continue with a story_id of 200 chars" 404 "$NOT_FOUND"
call_json "$TOK_A" POST /end-story "{\"story_id\":\"$(repeat a 200)\"}"
check_detail "end with a story_id of 200 chars" 404 "$NOT_FOUND"
req GET "/suggestions?story_id=$(repeat a 200)" -H "Authorization: Bearer $TOK_A"
check_detail "suggestions with a story_id of 200 chars" 404 "$NOT_FOUND"
req GET "/stories/$(repeat a 200)" -H "Authorization: Bearer $TOK_A"
check_detail "GET /stories/ with an id of 200 chars" 404 "$NOT_FOUND"

# -------------------------------------------------------------------------- ownership

note "ownership: user A's story, seen by user B and by anonymous callers"
start "$TOK_A" 'fable' 'a fox and a crow'
SO=$SID
SO_BODY=$BODY
continue_story "$TOK_B" "$SO" 'mine now'
check_detail "user B continues A's story" 404 "$NOT_FOUND"
end_story "$TOK_B" "$SO"
check_detail "user B ends A's story" 404 "$NOT_FOUND"
req GET "/suggestions?story_id=$SO" -H "Authorization: Bearer $TOK_B"
check_detail "user B asks suggestions for A's story" 404 "$NOT_FOUND"
req GET "/stories/$SO" -H "Authorization: Bearer $TOK_B"
check_detail "user B GETs A's story" 404 "$NOT_FOUND"
req DELETE "/stories/$SO" -H "Authorization: Bearer $TOK_B"
check_detail "user B DELETEs A's story" 404 "$NOT_FOUND"
continue_story "" "$SO" 'mine now'
check_detail "anonymous continues A's story" 404 "$NOT_FOUND"
end_story "" "$SO"
check_detail "anonymous ends A's story" 404 "$NOT_FOUND"
req GET "/suggestions?story_id=$SO"
check_detail "anonymous asks suggestions for A's story" 404 "$NOT_FOUND"
req GET "/stories/$SO"
check_detail "anonymous GET /stories/{id}: needs a user" 401 "$NOT_AUTH"
check_header "anonymous GET /stories/{id}: WWW-Authenticate: Bearer" WWW-Authenticate Bearer
req DELETE "/stories/$SO"
check_detail "anonymous DELETE /stories/{id}: needs a user" 401 "$NOT_AUTH"
req GET "/stories/$SO" -H "Authorization: Bearer $TOK_A"
check_json "A's story is untouched by all that" . "$SO_BODY"
ids_a=$(list_ids "$TOK_A")
ids_b=$(list_ids "$TOK_B")
check_true "A's list shows A's stories" grep -qw "$SO" <<<"$ids_a"
check_false "A's list does not show B's story" grep -qw "$SB" <<<"$ids_a"
check_true "B's list shows B's story" grep -qw "$SB" <<<"$ids_b"
check_false "B's list does not show A's stories" grep -qwE "$SA|$SO|$S30" <<<"$ids_b"

# ------------------------------------------------------------------ anonymous stories

note "anonymous stories"
start "" 'ghost story' 'a lighthouse keeper'
check_story "anonymous start-story"
SN=$SID
continue_story "" "$SN" 'the lamp flickers'
check_status "anonymous continues its story by id: 200" 200
check_header_match "continue (anonymous): charged to ai_anonymous" RateLimit-Policy \
    '^"ai_anonymous";'
continue_story "$TOK_A" "$SN" 'a knock at the door'
check_status "user A continues the anonymous story by id: 200" 200
check_json "the anonymous story now has three parts" '[.parts[].n]' '[1,2,3]'
req GET "/suggestions?story_id=$SN"
check_status "suggestions for the anonymous story (anonymous): 200" 200
check_json "suggestions: anonymous story_id echoed" .story_id "\"$SN\""
req GET "/suggestions?story_id=$SN" -H "Authorization: Bearer $TOK_B"
check_status "suggestions for the anonymous story (user B): 200" 200
req GET "/stories/$SN" -H "Authorization: Bearer $TOK_A"
check_detail "GET /stories/{anonymous id} with a token" 404 "$NOT_FOUND"
req DELETE "/stories/$SN" -H "Authorization: Bearer $TOK_A"
check_detail "DELETE /stories/{anonymous id} with a token" 404 "$NOT_FOUND"
check_false "the anonymous story is not in A's list" grep -qw "$SN" <<<"$(list_ids "$TOK_A")"
check_false "the anonymous story is not in B's list" grep -qw "$SN" <<<"$(list_ids "$TOK_B")"
check_eq "Redis: the anonymous story's keys are {a:<id>}:parts and {a:<id>}:story" \
    "{a:$SN}:parts {a:$SN}:story" "$(redis_keys "*$SN*" | LC_ALL=C sort | paste -sd' ' -)"
check_eq "Redis: {a:<id>}:story is a hash" hash "$(redis_cli type "{a:$SN}:story")"
check_eq "Redis: {a:<id>}:parts is a list of 3" "list 3" \
    "$(redis_cli type "{a:$SN}:parts") $(redis_cli llen "{a:$SN}:parts")"
for k in "{a:$SN}:story" "{a:$SN}:parts"; do
    ttl=$(redis_cli ttl "$k")
    check_true "Redis: TTL of $k in [86000, 86400] ($ttl)" test "$ttl" -ge 86000 -a "$ttl" -le 86400
done
end_story "" "$SN"
check_status "anonymous ends its story: 200" 200
check_json "the anonymous story is completed with 4 parts" '[.status, (.parts | length)]' \
    '["completed", 4]'
continue_story "$TOK_A" "$SN"
check_detail "continue the completed anonymous story (user A)" 409 "$COMPLETED"
ttl=$(redis_cli ttl "{a:$SN}:story")
check_true "Redis: TTL still at most 86400 after the ending ($ttl)" test "$ttl" -ge 86000 -a "$ttl" -le 86400

# ---------------------------------------------------------------------- Redis layout

note "Redis layout of a user's story"
check_eq "Redis: {u:<id>}:stories is a sorted set" zset "$(redis_cli type "{u:$UID_A}:stories")"
check_eq "Redis: {u:<id>}:story:<id> is a hash" hash "$(redis_cli type "{u:$UID_A}:story:$SO")"
check_eq "Redis: {u:<id>}:story:<id>:parts is a list" list \
    "$(redis_cli type "{u:$UID_A}:story:$SO:parts")"
check_eq "Redis: the hash holds the story's id and title" "$SO $(jq -r .title <<<"$SO_BODY")" \
    "$(redis_cli hget "{u:$UID_A}:story:$SO" id) $(redis_cli hget "{u:$UID_A}:story:$SO" title)"
check_eq "Redis: A's index counts A's 4 stories" 4 "$(zcard "$UID_A")"
check_eq "Redis: a user's story keys do not expire" "-1 -1 -1" \
    "$(redis_cli ttl "{u:$UID_A}:stories") $(redis_cli ttl "{u:$UID_A}:story:$SO") $(redis_cli ttl "{u:$UID_A}:story:$SO:parts")"
check_eq "Redis: B's story is under B's id" "1 1" \
    "$(redis_cli exists "{u:$UID_B}:story:$SB") $(redis_cli exists "{u:$UID_B}:story:$SB:parts")"

# ----------------------------------------------------------------------- GET /stories

note "GET /stories"
req GET /stories
check_detail "GET /stories without a token" 401 "$NOT_AUTH"
check_header "GET /stories without a token: WWW-Authenticate: Bearer" WWW-Authenticate Bearer

C_IDS=()
for i in 1 2 3 4 5 6 7; do
    start "$TOK_C" "genre $i" "characters $i"
    C_IDS+=("$SID")
done
NEWEST_FIRST=$(for ((i = 6; i >= 0; i--)); do printf '%s ' "${C_IDS[$i]}"; done)
NEWEST_FIRST=${NEWEST_FIRST% }

req GET '/stories?limit=3' -H "Authorization: Bearer $TOK_C"
check_status "page 1 (limit=3): 200" 200
check_json "list: exactly stories and next_cursor" keys '["next_cursor","stories"]'
check_header_match "GET /stories: charged to api_authenticated" RateLimit-Policy \
    '^"api_authenticated";'
check_json "page 1: 3 stories" '.stories | length' 3
check_jq "page 1: next_cursor is a non-empty string" '.next_cursor | type == "string" and length > 0'
check_jq "list items have exactly the story keys without parts" \
    "all(.stories[]; keys == $ITEM_KEYS)"
check_jq "list items have no \"parts\" key" 'all(.stories[]; has("parts") | not)'
check_jq "list items: in_progress, 32-hex ids, times in format" \
    "all(.stories[]; .status == \"in_progress\" and (.id | test(\"$ID_RE\"))
         and (.created_at | test(\"$TIME_RE\")) and (.updated_at | test(\"$TIME_RE\")))"
check_json "list item: fields as started" '.stories[0] | [.genre, .characters, .opening_line]' \
    '["genre 7", "characters 7", ""]'
seen=$(body_get '[.stories[].id] | join(" ")')
C_CURSOR=$(body_get .next_cursor)
cur=$C_CURSOR
req GET "/stories?limit=3&cursor=$(jq -rn --arg c "$cur" '$c | @uri')" -H "Authorization: Bearer $TOK_C"
check_status "page 2: 200" 200
check_json "page 2: 3 stories" '.stories | length' 3
check_jq "page 2: next_cursor is a string" '.next_cursor | type == "string"'
seen="$seen $(body_get '[.stories[].id] | join(" ")')"
cur=$(body_get .next_cursor)
req GET "/stories?cursor=$(jq -rn --arg c "$cur" '$c | @uri')&limit=3" -H "Authorization: Bearer $TOK_C"
check_status "page 3 (cursor first in the query): 200" 200
check_json "page 3: 1 story, next_cursor null" '[(.stories | length), .next_cursor]' '[1, null]'
seen="$seen $(body_get '[.stories[].id] | join(" ")')"
check_eq "three pages: all 7 stories, newest first, no duplicates" "$NEWEST_FIRST" "$seen"
check_eq "(the 7 ids are distinct)" 7 "$(tr ' ' '\n' <<<"$seen" | sort -u | grep -c .)"

req GET '/stories' -H "Authorization: Bearer $TOK_C"
check_status "no limit: 200" 200
check_json "no limit: all 7, newest first, next_cursor null" \
    '[([.stories[].id] | join(" ")), .next_cursor]' "[\"$NEWEST_FIRST\", null]"
req GET '/stories?limit=100' -H "Authorization: Bearer $TOK_C"
check_status "limit=100: 200" 200
check_json "limit=100: 7 stories" '.stories | length' 7
req GET '/stories?limit=1' -H "Authorization: Bearer $TOK_C"
check_status "limit=1: 200" 200
check_json "limit=1: the newest story" '[.stories[].id]' "[\"${C_IDS[6]}\"]"
req GET '/stories' -H "Authorization: Bearer $(make_user_token "$(openssl rand -hex 16)")"
check_status "a user with no stories: 200" 200
check_json "a user with no stories: empty list, next_cursor null" . '{"stories":[],"next_cursor":null}'

for i in $(seq 21); do
    start "$TOK_D" "saga" "hero $i"
    [ "$STATUS" == 200 ] || note "start-story for user D answered $STATUS"
done
req GET '/stories' -H "Authorization: Bearer $TOK_D"
check_status "21 stories, no limit: 200" 200
check_json "default limit is 20" '.stories | length' 20
check_jq "21 stories, no limit: next_cursor is a string" '.next_cursor | type == "string"'
check_json "default limit: newest first (hero 21 ... hero 2)" '[.stories[0].characters, .stories[19].characters]' \
    '["hero 21", "hero 2"]'
cur=$(body_get .next_cursor)
req GET "/stories?cursor=$(jq -rn --arg c "$cur" '$c | @uri')" -H "Authorization: Bearer $TOK_D"
check_json "the last page: hero 1, next_cursor null" '[[.stories[].characters], .next_cursor]' \
    '[["hero 1"], null]'

for v in 0 101 abc -1 1.5 1e1 '%20' 99999999999999999999; do
    req GET "/stories?limit=$v" -H "Authorization: Bearer $TOK_C"
    check_422 "GET /stories?limit=$v" '["query","limit"]' ""
done

# A character in the middle of the cursor changed (not the last one: its low bits may be
# padding), a garbage cursor, and C's cursor presented by user A.
mid=$((${#C_CURSOR} / 2))
ch=${C_CURSOR:$mid:1}
[ "$ch" == A ] && sub=B || sub=A
TAMPERED="${C_CURSOR:0:$mid}$sub${C_CURSOR:$((mid + 1))}"
check_ne "(tampered cursor differs)" "$C_CURSOR" "$TAMPERED"
req GET "/stories?limit=3&cursor=$TAMPERED" -H "Authorization: Bearer $TOK_C"
check_422 "a tampered cursor" '["query","cursor"]' ""
req GET "/stories?cursor=garbage" -H "Authorization: Bearer $TOK_C"
check_422 "a garbage cursor" '["query","cursor"]' ""
req GET "/stories?cursor=$(repeat A 300)" -H "Authorization: Bearer $TOK_C"
check_422 "a 300-char cursor" '["query","cursor"]' ""
req GET "/stories?limit=3&cursor=$C_CURSOR" -H "Authorization: Bearer $TOK_A"
check_422 "user C's cursor presented by user A" '["query","cursor"]' ""
req GET '/stories?limit=1' -H "Authorization: Bearer $TOK_A"
A_CURSOR=$(body_get '.next_cursor // empty')
check_ne "(user A has a next_cursor with limit=1)" "" "$A_CURSOR"
req GET "/stories?limit=1&cursor=$A_CURSOR" -H "Authorization: Bearer $TOK_B"
check_422 "user A's cursor presented by user B" '["query","cursor"]' ""
req GET "/stories?limit=1&cursor=$A_CURSOR" -H "Authorization: Bearer $TOK_A"
check_status "user A's own cursor still works: 200" 200

# --------------------------------------------------------------------- DELETE

note "DELETE /stories/{id}"
before=$(zcard "$UID_C")
DEL=${C_IDS[3]}
req DELETE "/stories/$DEL" -H "Authorization: Bearer $TOK_C"
check_status "DELETE own story: 204" 204
check_body "DELETE: empty body" ""
check_header_match "DELETE: charged to api_authenticated" RateLimit-Policy '^"api_authenticated";'
req GET "/stories/$DEL" -H "Authorization: Bearer $TOK_C"
check_detail "GET after DELETE" 404 "$NOT_FOUND"
req DELETE "/stories/$DEL" -H "Authorization: Bearer $TOK_C"
check_detail "DELETE again" 404 "$NOT_FOUND"
continue_story "$TOK_C" "$DEL"
check_detail "continue a deleted story" 404 "$NOT_FOUND"
req GET "/suggestions?story_id=$DEL" -H "Authorization: Bearer $TOK_C"
check_detail "suggestions for a deleted story" 404 "$NOT_FOUND"
ids_c=$(list_ids "$TOK_C")
check_false "the deleted story is gone from the list" grep -qw "$DEL" <<<"$ids_c"
check_eq "the list keeps the other 6" 6 "$(wc -w <<<"$ids_c")"
check_eq "Redis: the story's hash and parts are gone" "0 0" \
    "$(redis_cli exists "{u:$UID_C}:story:$DEL") $(redis_cli exists "{u:$UID_C}:story:$DEL:parts")"
check_eq "Redis: the index lost one member" $((before - 1)) "$(zcard "$UID_C")"
check_eq "Redis: no key names the deleted story" "" "$(redis_keys "*$DEL*")"

# --------------------------------------------------------------- bad input (SPEC 8)

note "validation"
before=$(zcard "$UID_A")
anon_before=$(redis_keys '{a:*}:story' | grep -c .)
sa() { call_json "$TOK_A" POST /start-story "$1"; }
sa '{"characters":"x"}'
check_422 "start-story without genre" '["body","genre"]' missing
sa '{"genre":"","characters":"x"}'
check_422 "start-story genre \"\"" '["body","genre"]' string_too_short
sa "{\"genre\":\"$(repeat g 51)\",\"characters\":\"x\"}"
check_422 "start-story genre of 51 chars" '["body","genre"]' string_too_long
sa "{\"genre\":\"$(repeat 'é' 51)\",\"characters\":\"x\"}"
check_422 "start-story genre of 51 two-byte chars" '["body","genre"]' string_too_long
sa '{"genre":5,"characters":"x"}'
check_422 "start-story genre 5" '["body","genre"]' string_type
sa '{"genre":null,"characters":"x"}'
check_422 "start-story genre null" '["body","genre"]' string_type
sa '{"genre":"x"}'
check_422 "start-story without characters" '["body","characters"]' missing
sa '{"genre":"x","characters":""}'
check_422 "start-story characters \"\"" '["body","characters"]' string_too_short
sa "{\"genre\":\"x\",\"characters\":\"$(repeat c 501)\"}"
check_422 "start-story characters of 501 chars" '["body","characters"]' string_too_long
sa '{"genre":"x","characters":["a"]}'
check_422 "start-story characters an array" '["body","characters"]' string_type
sa "{\"genre\":\"x\",\"characters\":\"y\",\"opening_line\":\"$(repeat o 1001)\"}"
check_422 "start-story opening_line of 1001 chars" '["body","opening_line"]' string_too_long
sa '{"genre":"x","characters":"y","opening_line":7}'
check_422 "start-story opening_line 7" '["body","opening_line"]' string_type
sa '{"genre":"x",'
check_status "start-story body not JSON: 422" 422
check_json "body not JSON: detail[0].loc starts with body" '.detail[0].loc[0]' '"body"'
check_json "body not JSON: type json_invalid" '.detail[0].type' '"json_invalid"'
sa '["genre","characters"]'
check_422 "start-story body an array" '["body"]' ""
sa '"genre"'
check_422 "start-story body a string" '["body"]' ""
sa ''
check_422 "start-story empty body" '["body"]' missing
call "$TOK_A" POST /start-story -H 'Content-Type: text/plain' \
    --data-binary '{"genre":"x","characters":"y"}'
check_status "start-story with text/plain: 415" 415
check_jq "415: detail is a string" '.detail | type == "string"'
call "$TOK_A" POST /continue-story -H 'Content-Type: text/plain' \
    --data-binary "{\"story_id\":\"$SO\"}"
check_status "continue-story with text/plain: 415" 415
call "$TOK_A" POST /end-story -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "story_id=$SO"
check_status "end-story with a form body: 415" 415

ca() { call_json "$TOK_A" POST /continue-story "$1"; }
ca '{"user_input":"x"}'
check_422 "continue-story without story_id" '["body","story_id"]' missing
ca '{"story_id":5}'
check_422 "continue-story story_id 5" '["body","story_id"]' string_type
ca "{\"story_id\":\"$SO\",\"user_input\":\"$(repeat u 1001)\"}"
check_422 "continue-story user_input of 1001 chars" '["body","user_input"]' string_too_long
ca "{\"story_id\":\"$SO\",\"user_input\":5}"
check_422 "continue-story user_input 5" '["body","user_input"]' string_type
ca "[\"$SO\"]"
check_422 "continue-story body an array" '["body"]' ""
call_json "$TOK_A" POST /end-story '{}'
check_422 "end-story without story_id" '["body","story_id"]' missing
call_json "$TOK_A" POST /end-story '{"story_id":12}'
check_422 "end-story story_id 12" '["body","story_id"]' string_type
call_json "$TOK_A" POST /end-story 'story_id'
check_status "end-story body not JSON: 422" 422

check_eq "invalid requests created no story (A's index)" "$before" "$(zcard "$UID_A")"
check_eq "invalid requests created no anonymous story" "$anon_before" \
    "$(redis_keys '{a:*}:story' | grep -c .)"
req GET "/stories/$SO" -H "Authorization: Bearer $TOK_A"
check_json "invalid requests added no part to A's story" '.parts | length' 1

# Boundaries that must be accepted (characters, not bytes).
G50=$(repeat 'é' 50)
start "$TOK_A" "$G50" "$(repeat 'ü' 500)" "$(repeat 'ß' 1000)"
check_status "genre of 50 é (100 bytes), characters 500, opening_line 1000 two-byte chars: 200" 200
check_json "the 50-é genre is echoed exactly" .genre "$(jq -n --arg g "$G50" '$g')"
check_json "the 500/1000-char fields are echoed with their lengths" \
    '[(.characters | length), (.opening_line | length)]' '[500, 1000]'
start "$TOK_A" "$(repeat g 50)" c
check_status "genre of 50 ASCII chars: 200" 200
sa '{"genre":"x","characters":"y","opening_line":null}'
check_status "opening_line null: 200 (treated as absent)" 200
check_json "opening_line null: stored as \"\"" .opening_line '""'
call "$TOK_A" POST /start-story -H 'Content-Type: application/json; charset=utf-8' \
    --data-binary '{"genre":"x","characters":"y"}'
check_status "Content-Type application/json; charset=utf-8: 200" 200

# -------------------------------------------------------------------- Redis down

note "Redis down: the story routes answer 503 JSON"
stop_redis
for r in "start-story (user)|POST|/start-story|$TOK_A|{\"genre\":\"x\",\"characters\":\"y\"}" \
         "start-story (anonymous)|POST|/start-story||{\"genre\":\"x\",\"characters\":\"y\"}" \
         "continue-story|POST|/continue-story|$TOK_A|{\"story_id\":\"$SO\"}" \
         "end-story|POST|/end-story|$TOK_A|{\"story_id\":\"$SO\"}" \
         "suggestions with story_id|GET|/suggestions?story_id=$SO|$TOK_A|" \
         "GET /stories|GET|/stories|$TOK_A|" \
         "GET /stories/{id}|GET|/stories/$SO|$TOK_A|" \
         "DELETE /stories/{id}|DELETE|/stories/$SO|$TOK_A|"; do
    IFS='|' read -r desc method path tok json <<<"$r"
    if [ -n "$json" ]; then
        call_json "$tok" "$method" "$path" "$json"
    else
        call "$tok" "$method" "$path"
    fi
    check_detail "Redis down: $desc" 503 "$UNAVAILABLE"
    check_header_match "Redis down: $desc is JSON" Content-Type '^application/json'
done
req GET /suggestions
check_match "Redis down: suggestions without story_id needs no storage: 200 or 503 (got $STATUS)" \
    '^(200|503)$' "$STATUS"
restart_redis

# story_works: a start-story for user A answers 200 (Redis is back for this worker).
story_works() {
    [ "$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
        -H "Authorization: Bearer $TOK_A" -H 'Content-Type: application/json' \
        --data-binary '{"genre":"x","characters":"y"}' \
        "http://127.0.0.1:$PORT/start-story")" == 200 ]
}
check_true "Redis back: start-story answers 200 again within 5 s" wait_until 5 story_works

# -------------------------------------------------- the story routes' AI tiers

note "story routes are charged to the AI tiers (limits.json defaults)"
export RATE_LIMITS_FILE=$ROOT/limits.json
restart_stack
anon_before=$(redis_keys '{a:*}:story' | grep -c .)
start "" rl1 x
check_status "ai_anonymous: first start-story 200" 200
check_header "ai_anonymous: RateLimit-Policy" RateLimit-Policy '"ai_anonymous";q=2;w=4'
start "" rl2 x
check_status "ai_anonymous: second start-story 200" 200
check_header "ai_anonymous: RateLimit-Remaining 0" RateLimit-Remaining 0
start "" rl3 x
check_status "ai_anonymous burst exhausted: start-story 429" 429
check_ratelimit_headers "429 carries the RateLimit headers"
check_header "429: RateLimit-Policy ai_anonymous" RateLimit-Policy '"ai_anonymous";q=2;w=4'
check_header_match "429: Retry-After" Retry-After '^[0-9]+$'
check_json "429: error" .error '"Rate limit exceeded"'
req GET /suggestions
check_status "ai_anonymous exhausted: suggestions 429 too" 429
continue_story "" "$UNKNOWN"
check_status "ai_anonymous exhausted: continue-story 429 (before the 404)" 429
end_story "" "$UNKNOWN"
check_status "ai_anonymous exhausted: end-story 429" 429
check_eq "the refused requests stored no story" $((anon_before + 2)) \
    "$(redis_keys '{a:*}:story' | grep -c .)"
UID_E=$(openssl rand -hex 16)
TOK_E=$(make_user_token "$UID_E")
req GET /suggestions -H "Authorization: Bearer $TOK_E"
check_status "a user is not refused: own ai_authenticated bucket: 200" 200
check_header "user: RateLimit-Policy ai_authenticated" RateLimit-Policy '"ai_authenticated";q=5;w=3'
check_header "user: RateLimit-Remaining 4" RateLimit-Remaining 4
req GET /stories -H "Authorization: Bearer $TOK_E"
check_header "GET /stories: RateLimit-Policy api_authenticated" RateLimit-Policy \
    '"api_authenticated";q=20;w=2'
