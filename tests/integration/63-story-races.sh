#!/usr/bin/env bash
# 63-story-races: what happens to a story while its part is being written upstream.
#
# Two continuations of one story at once (only one lands, the other 409s), a delete in
# the middle of a generation (the story does not come back), and the per-process cap on
# generations in flight (503 busy at once; other routes still answer). The fake
# MistralAI is put in slow mode so that requests overlap for real.
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

start_redis
start_fake_mistral
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)')
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_TIMEOUT=10 GATEWAY_THREADS=4
start_stack

TOKEN=$(make_user_token racer)
ACCOUNT=$(signup_user racer@example.com password123) || bail "sign-up failed"
AUTH=(-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json')

# new_story: start a story at normal speed and print its id.
new_story() {
    fake_mode normal
    curl -s --noproxy '*' --max-time 10 "${AUTH[@]}" \
        --data-binary '{"genre":"mystery","characters":"a detective"}' \
        "http://127.0.0.1:$PORT/start-story" | jq -r .id
}

# Background curls of this script; a bare `wait` would also wait for redis and lighttpd.
BG=()
wait_bg() {
    wait "${BG[@]}"
    BG=()
}

# continue_bg ID OUT: POST /continue-story in the background, "<status> <body>" into OUT.
continue_bg() {
    curl -s --noproxy '*' --max-time 20 "${AUTH[@]}" -o "$2.body" -w '%{http_code}' \
        --data-binary "{\"story_id\":\"$1\",\"user_input\":\"$(basename "$2")\"}" \
        "http://127.0.0.1:$PORT/continue-story" >"$2" 2>/dev/null &
    BG+=($!)
}

# --- two continuations of the same story at the same time
ID=$(new_story)
check_match "a story to race on" '^[0-9a-f]{32}$' "$ID"
fake_mode "slow 2"
continue_bg "$ID" "$TEST_DIR/first"
continue_bg "$ID" "$TEST_DIR/second"
wait_bg
statuses=$(cat "$TEST_DIR/first" "$TEST_DIR/second" | fold -w3 | sort | tr '\n' ' ')
check_eq "one continuation lands, the other is refused" "200 409 " "$statuses"
loser=$TEST_DIR/first
[ "$(cat "$TEST_DIR/first")" == 409 ] || loser=$TEST_DIR/second
check_eq "the refusal says the story changed" \
    "Story changed while this part was written; try again" "$(jq -r .detail "$loser.body")"
req GET "/stories/$ID" -H "Authorization: Bearer $TOKEN"
check_jq "the story has exactly two parts" '.parts | length' 2
check_jq "part numbers run 1, 2" '[.parts[].n] | join(",")' "1,2"

# --- a delete while the part is being written
ID=$(new_story)
fake_mode "slow 2"
continue_bg "$ID" "$TEST_DIR/orphan"
sleep 0.5
req DELETE "/stories/$ID" -H "Authorization: Bearer $TOKEN"
check_status "the story is deleted during the generation" 204
wait_bg
check_eq "the continuation finds it gone" 404 "$(cat "$TEST_DIR/orphan")"
check_eq "with the story-not-found detail" "Story not found" \
    "$(jq -r .detail "$TEST_DIR/orphan.body")"
check_eq "no key of the story came back" 0 \
    "$(redis_cli --scan --pattern "{u:racer}:story:$ID*" | wc -l)"

# --- generation slots: GATEWAY_THREADS=4 gives 3 per process, 6 for lighttpd's two
fake_mode "slow 3"
fake_reset_log
start=$(date +%s.%N)
for i in $(seq 10); do
    curl -s --noproxy '*' --max-time 20 "${AUTH[@]}" -o /dev/null \
        -w '%{http_code} %{time_total} %header{retry-after}\n' \
        --data-binary '{"genre":"western","characters":"a sheriff"}' \
        "http://127.0.0.1:$PORT/start-story" >>"$TEST_DIR/slots.txt" 2>/dev/null &
    BG+=($!)
done
sleep 1
req GET /me -H "Authorization: Bearer $ACCOUNT"
me_status=$STATUS
req GET /stories -H "Authorization: Bearer $TOKEN"
list_status=$STATUS
wait_bg
note "slots: $(sort "$TEST_DIR/slots.txt" | tr '\n' ';')"
ok=$(grep -c '^200 ' "$TEST_DIR/slots.txt")
busy=$(grep -c '^503 ' "$TEST_DIR/slots.txt")
check_eq "every generation either ran or was refused as busy" 10 $((ok + busy))
check_true "at most 6 ran at once (3 slots x 2 processes)" test "$ok" -le 6
check_true "at least 4 were refused as busy" test "$busy" -ge 4
check_true "busy refusals came at once (< 1.5 s) with Retry-After: 1" \
    awk '$1 == 503 && ($2 >= 1.5 || $3 != "1") { bad = 1 } END { exit bad }' "$TEST_DIR/slots.txt"
check_eq "GET /me answered while all slots were taken" 200 "$me_status"
check_eq "GET /stories answered while all slots were taken" 200 "$list_status"
check_eq "refused generations never reached the upstream" "$ok" "$(fake_requests)"
