#!/usr/bin/env bash
# 64-upstream-reset: MistralAI resets the connection mid-answer (issue 5, faults).
#
# The fake upstream runs as its own HTTP server (start_fake_mistral --raw) so that it can
# reset the TCP connection (SO_LINGER 0 + close: an RST) in three places: after the
# headers and half of the JSON answer ("reset"), in the middle of the headers ("reset
# headers"), before any byte of answer ("reset early"). For each, on every generating
# route: 502 {"detail":"Story generation failed"} long before MISTRAL_TIMEOUT (a hang
# would end as a 504), one upstream request (a reset is neither a 429 nor a 5xx, so
# include/mistral.h does not retry it), one "upstream_error" line, nothing stored.
#
# No stuck thread, no leaked slot, no leaked descriptor:
# - GATEWAY_THREADS=1 first: each gateway process has one request thread and one
#   generation slot, so a thread stuck in a reset or a slot not given back would make
#   every later generation on that process hang or answer 503 busy. After 40 resets a
#   generation on each process still answers 200, each process has exactly the
#   descriptors it had before the resets (/proc/PID/fd) and no socket to the upstream.
# - GATEWAY_THREADS=4 then (3 slots per process): resets three at a time, then 12
#   slow generations at once: every slot is free again (6 run, each process holding 3
#   upstream connections), and no socket to the upstream is left afterwards.
#
# Run alone from the repository root:  bash tests/integration/64-upstream-reset.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

# A reset must be a 502 within seconds; a gateway that hung on it would answer 504
# after this many seconds, so the two cannot be confused.
TIMEOUT=20
HANG_BOUND=10
GEN_FAILED='{"detail":"Story generation failed"}'
START_JSON='{"genre":"sea tale","characters":"a cook and a parrot"}'

start_redis
start_fake_mistral --raw
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 1000
                                                      | .value.burst_capacity = 1000)')
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_TIMEOUT=$TIMEOUT GATEWAY_THREADS=1
start_stack

TOKEN=$(make_user_token "$(openssl rand -hex 16)")
AUTH=(-H "Authorization: Bearer $TOKEN")

# ------------------------------------------------------------------ local helpers

# gateway_pids: the gateway processes lighttpd spawned (its children), sorted.
gateway_pids() {
    ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null | tr -d ' ' | LC_ALL=C sort -n
}

# fd_counts: "PID:N" for each gateway process, N its open descriptors (/proc/PID/fd).
fd_counts() {
    local p
    for p in $(gateway_pids); do
        printf '%s:%s ' "$p" "$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 | wc -l)"
    done | sed 's/ $//'
}

# upstream_conns PID: TCP sockets (any state) that process PID holds to the fake.
upstream_conns() {
    ss -tanpH "dport = :$FAKE_PORT" 2>/dev/null | grep -c "pid=$1,"
}

# upstream_conns_all: the same, summed over the gateway processes.
upstream_conns_all() {
    local p n=0
    for p in $(gateway_pids); do n=$((n + $(upstream_conns "$p"))); done
    echo "$n"
}

# gen METHOD PATH [JSON]: one generating request as the test user (req); sets
# ELAPSED_S (wall time, seconds with decimals).
gen() {
    local method=$1 path=$2 t0
    shift 2
    local -a body=()
    [ $# -gt 0 ] && body=(-H 'Content-Type: application/json' --data-binary "$1")
    t0=$(date +%s%N)
    req "$method" "$path" "${AUTH[@]}" "${body[@]}" --max-time 30
    ELAPSED_S=$(awk -v n=$(($(date +%s%N) - t0)) 'BEGIN { printf "%.3f", n / 1e9 }')
}

# check_reset_answer DESC: the last answer is the 502 of SPEC 7 and came fast.
check_reset_answer() {
    check_status "$1: 502" 502
    check_body "$1: the SPEC body" "$GEN_FAILED"
    check_header "$1: JSON" Content-Type application/json
    check_true "$1: answered in ${ELAPSED_S} s (< ${HANG_BOUND} s: no hang)" \
        awk -v t="$ELAPSED_S" -v b="$HANG_BOUND" 'BEGIN { exit !(t < b) }'
}

# bg_starts N FILE: N start-story requests at once (one connection each); each answer
# "<status> <seconds>" a line of FILE (after they all ended).
bg_starts() {
    local n=$1 file=$2 i
    local -a pids=()
    : >"$file"
    for ((i = 0; i < n; i++)); do
        curl -s --noproxy '*' --max-time 30 -o /dev/null -w '%{http_code} %{time_total}\n' \
            "${AUTH[@]}" -H 'Content-Type: application/json' --data-binary "$START_JSON" \
            "http://127.0.0.1:$PORT/start-story" >>"$file" 2>/dev/null &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
}

# statuses FILE: the distinct statuses in FILE, sorted, space-separated.
statuses() {
    cut -d' ' -f1 "$1" | sort -u | tr '\n' ' ' | sed 's/ $//'
}

# story_parts ID: the number of parts of story ID (GET /stories/ID), or "?".
story_parts() {
    curl -s --noproxy '*' --max-time 10 "${AUTH[@]}" "http://127.0.0.1:$PORT/stories/$1" |
        jq -r '.parts | length' 2>/dev/null || echo '?'
}

# stories_count: how many stories the test user has (GET /stories?limit=100).
stories_count() {
    curl -s --noproxy '*' --max-time 10 "${AUTH[@]}" \
        "http://127.0.0.1:$PORT/stories?limit=100" | jq -r '.stories | length' 2>/dev/null
}

# ------------------------------------------------- one thread, one slot per process

note "GATEWAY_THREADS=1: one request thread and one generation slot per process"
fake_mode normal
gen POST /start-story "$START_JSON"
check_status "a normal generation: 200" 200
STORY=$(printf '%s' "$BODY" | jq -r .id)
check_match "... with a story id" '^[0-9a-f]{32}$' "$STORY"

# Warm both processes: one slow generation each, at once (lighttpd gives the second to
# the idle process), so each thread holds its Redis connection and curl handle before
# the descriptors are counted.
fake_mode "slow 1"
fake_reset_log
bg_starts 2 "$TEST_DIR/warm.txt" &
WARM=$!
fake_wait_requests 2 10
warm_split=
for p in $(gateway_pids); do warm_split="$warm_split $(upstream_conns "$p")"; done
wait "$WARM"
check_eq "warm-up: both generations answered 200" 200 "$(statuses "$TEST_DIR/warm.txt")"
check_eq "warm-up: one upstream connection in each gateway process" " 1 1" "$warm_split"
sleep 0.3
FDS_BEFORE=$(fd_counts)
PIDS_BEFORE=$(gateway_pids | paste -sd' ' -)
note "descriptors before the resets: $FDS_BEFORE"

STORIES_BEFORE=$(stories_count)
fake_reset_log
mark=$(log_mark)
resets=0
for mode in reset "reset headers" "reset early"; do
    note "upstream mode: $mode"
    fake_mode "$mode"
    before=$(fake_requests)
    gen POST /start-story "$START_JSON"
    check_reset_answer "$mode: start-story"
    gen POST /continue-story "$(jq -cn --arg id "$STORY" '{story_id: $id, user_input: "onward"}')"
    check_reset_answer "$mode: continue-story"
    check_eq "$mode: the story still has 1 part" 1 "$(story_parts "$STORY")"
    gen POST /end-story "$(jq -cn --arg id "$STORY" '{story_id: $id}')"
    check_reset_answer "$mode: end-story"
    gen GET "/suggestions?story_id=$STORY"
    check_reset_answer "$mode: suggestions"
    check_eq "$mode: one upstream request per generation (no retry)" 4 \
        $(($(fake_requests) - before))
    resets=$((resets + 4))
done
req GET "/stories/$STORY" "${AUTH[@]}"
check_json "the story is still in progress with its one part" '[.status, (.parts | length)]' \
    '["in_progress", 1]'
check_eq "no failed start-story stored a story" "$STORIES_BEFORE" "$(stories_count)"

# 28 more resets, two at a time so that both processes take their share.
fake_mode reset
for _ in $(seq 14); do
    bg_starts 2 "$TEST_DIR/pair.txt"
    cat "$TEST_DIR/pair.txt" >>"$TEST_DIR/resets.txt"
done
resets=$((resets + 28))
check_eq "28 more resets, two at a time: all 502" 502 "$(statuses "$TEST_DIR/resets.txt")"
check_true "... each within ${HANG_BOUND} s" \
    awk -v b="$HANG_BOUND" '$2 >= b { bad = 1 } END { exit bad }' "$TEST_DIR/resets.txt"
check_eq "one upstream request per reset generation" "$resets" "$(fake_requests)"
check_eq "... and still no story stored" "$STORIES_BEFORE" "$(stories_count)"
sleep 0.3
n=$(count_events upstream_error "$mark")
check_eq "one upstream_error line per reset" "$resets" "$n"
check_true "upstream_error lines are level error, with curl's reason" \
    jq -e -s 'length > 0 and all(.[]; .level == "error" and (.reason | length > 0))' \
    <<<"$(events upstream_error "$mark")"
check_false "the key is in no log line" grep -qF "$FAKE_MISTRAL_KEY" "$SG_VAR/lighttpd-error.log"

# Each process's only thread and only slot must be free again: two generations at once
# (one per process, as in the warm-up) both answer 200.
fake_mode "slow 1"
fake_reset_log
bg_starts 2 "$TEST_DIR/after.txt" &
AFTER=$!
fake_wait_requests 2 10
after_split=
for p in $(gateway_pids); do after_split="$after_split $(upstream_conns "$p")"; done
wait "$AFTER"
check_eq "after $resets resets: a generation on each process answers 200" 200 \
    "$(statuses "$TEST_DIR/after.txt")"
check_eq "... one running in each process at once (thread and slot free)" " 1 1" "$after_split"
check_eq "the gateway processes are the same (none died)" "$PIDS_BEFORE" \
    "$(gateway_pids | paste -sd' ' -)"
sleep 0.3
FDS_AFTER=$(fd_counts)
note "descriptors after the resets: $FDS_AFTER"
check_eq "no descriptor leaked (/proc/PID/fd of each process)" "$FDS_BEFORE" "$FDS_AFTER"
check_eq "no socket to the upstream is left" 0 "$(upstream_conns_all)"

# ---------------------------------------------------- four threads, three slots each

note "GATEWAY_THREADS=4: resets at once, then every slot"
export GATEWAY_THREADS=4
restart_stack
fake_mode reset
fake_reset_log
: >"$TEST_DIR/resets4.txt"
# Three at a time: even if lighttpd gave all three to one process, its 3 slots take them.
for _ in $(seq 8); do
    bg_starts 3 "$TEST_DIR/triple.txt"
    cat "$TEST_DIR/triple.txt" >>"$TEST_DIR/resets4.txt"
done
check_eq "24 resets three at a time: all 502" 502 "$(statuses "$TEST_DIR/resets4.txt")"
check_eq "24 upstream requests" 24 "$(fake_requests)"

fake_mode "slow 3"
fake_reset_log
bg_starts 12 "$TEST_DIR/slots.txt" &
SLOTS=$!
fake_wait_requests 6 10
sleep 0.5
split=
for p in $(gateway_pids); do split="$split $(upstream_conns "$p")"; done
wait "$SLOTS"
note "12 generations at once: $(sort "$TEST_DIR/slots.txt" | cut -d' ' -f1 | uniq -c | tr -s ' ' |
    tr '\n' ';')"
check_eq "all 6 slots are free again: 6 generations run" 6 \
    "$(grep -c '^200 ' "$TEST_DIR/slots.txt")"
check_eq "... 3 in each gateway process" " 3 3" "$split"
check_eq "... the others are refused as busy" 6 "$(grep -c '^503 ' "$TEST_DIR/slots.txt")"
sleep 0.3
check_eq "no socket to the upstream is left" 0 "$(upstream_conns_all)"

stop_stack
