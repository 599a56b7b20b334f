#!/usr/bin/env bash
# 39-gateway-kill: a gateway process killed with SIGKILL under load (issue 5, faults).
#
# lighttpd runs two gateway processes (max-procs 2). Under a steady load (8 clients in a
# loop on GET /me) and with 6 story generations in flight (a fake MistralAI that takes
# 4 s), one gateway process is killed with SIGKILL. What must hold:
# - lighttpd notices and starts a new process: a new PID, two processes again, within a
#   few seconds (generous bound: 5 s), and the new process serves requests;
# - only the requests in flight on the killed process fail: the generations it held
#   (counted from its upstream connections just before the kill) and at most one /me per
#   client; every request that starts after the kill succeeds; nothing of a killed
#   generation is stored.
# What the failed requests get: lighttpd 1.4.69 reads end-of-file on the FastCGI socket
# before any answer ("response not received, request sent ... closing connection" in its
# log) and answers 500 with its own HTML error page; the gateway, being dead, has no say.
# Requests sent to the dead process's socket before the new one listens are not lost:
# the connect is refused and lighttpd sends them to the other process.
#
# Run alone from the repository root:  bash tests/integration/39-gateway-kill.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

THREADS=32        # GATEWAY_THREADS: what one process can hold at once
LOAD_CLIENTS=8    # loops on GET /me, one request in flight each
STORIES=6         # slow generations in flight when the process is killed
LOAD_MAX=3000     # requests per client at most (the loops stop on a file before that)
RESPAWN_BOUND=5   # seconds lighttpd may take to start the new process

start_redis
# The fake as its own HTTP server: one connection per request, closed after the answer,
# so a gateway process holds a socket to it exactly while a generation is in flight
# (behind the fake's lighttpd, idle keep-alive connections would count too).
start_fake_mistral --raw
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 100000
                                                      | .value.burst_capacity = 100000)')
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_TIMEOUT=20 GATEWAY_THREADS=$THREADS
start_stack

TOKEN=$(signup_user kill@example.com 'a long enough password') || bail "signup_user"
START_JSON='{"genre":"mystery","characters":"a detective and a cat"}'

# ------------------------------------------------------------------ local helpers

# gateway_pids: the gateway processes lighttpd spawned (its children), sorted; a killed
# one stays listed (as a zombie) until lighttpd reaps it.
gateway_pids() {
    ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null | tr -d ' ' | LC_ALL=C sort -n
}

# upstream_conns PID: established TCP connections that process PID holds to the fake
# upstream: its generations in flight.
upstream_conns() {
    ss -tnpH state established "dport = :$FAKE_PORT" 2>/dev/null | grep -c "pid=$1,"
}

# load_client N: GET /me in a loop until $TEST_DIR/stop exists (at most LOAD_MAX
# requests, 60 s); one line "<start ns> <end ns> <status>" per request in load.N.
load_client() {
    local out="$TEST_DIR/load.$1" t0 code i until=$(($(date +%s) + 60))
    : >"$out"
    for ((i = 0; i < LOAD_MAX; i++)); do
        [ -e "$TEST_DIR/stop" ] || [ "$(date +%s)" -ge "$until" ] && break
        t0=$(date +%s%N)
        code=$(curl -s --noproxy '*' --max-time 10 -o /dev/null -w '%{http_code}' \
            -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/me" 2>/dev/null)
        printf '%s %s %s\n' "$t0" "$(date +%s%N)" "${code:-000}" >>"$out"
    done
}

# story N: one start-story; "<status> <seconds> <content type>" in story.N.
story() {
    curl -s --noproxy '*' --max-time 30 -o /dev/null \
        -w '%{http_code} %{time_total} %{content_type}\n' \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary "$START_JSON" "http://127.0.0.1:$PORT/start-story" \
        >"$TEST_DIR/story.$1" 2>/dev/null
}

# wait_pids PID...: wait for each.
wait_pids() {
    local p
    for p in "$@"; do wait "$p"; done
}

# ------------------------------------------------------------------------- the kill

PIDS=$(gateway_pids)
check_eq "lighttpd runs two gateway processes" 2 "$(wc -w <<<"$PIDS")"
VICTIM=$(head -n 1 <<<"$PIDS")
OTHER=$(tail -n 1 <<<"$PIDS")
mark=$(log_mark)

rm -f "$TEST_DIR/stop"
LOAD_PIDS=()
for n in $(seq "$LOAD_CLIENTS"); do
    load_client "$n" &
    LOAD_PIDS+=($!)
done
fake_mode "slow 4"
fake_reset_log
STORY_PIDS=()
for n in $(seq "$STORIES"); do
    story "$n" &
    STORY_PIDS+=($!)
done
fake_wait_requests "$STORIES" 10 || fail "the $STORIES generations reached the upstream"
sleep 0.5
ss -tanpH "dport = :$FAKE_PORT" >"$TEST_DIR/upstream-sockets.txt" 2>&1 # for a post-mortem
IN_FLIGHT=$(upstream_conns "$VICTIM")
note "generations in flight: $IN_FLIGHT in $VICTIM (killed), $(upstream_conns "$OTHER") in $OTHER"
check_true "the process to kill holds generations ($IN_FLIGHT)" test "$IN_FLIGHT" -ge 1

KILL_NS=$(date +%s%N)
kill -KILL "$VICTIM"
KILLED_NS=$(date +%s%N) # the signal is sent: a request started after this meets no victim
NEW=
for _ in $(seq $((RESPAWN_BOUND * 50))); do
    now=$(gateway_pids)
    if [ "$(wc -w <<<"$now")" == 2 ] && ! grep -qx "$VICTIM" <<<"$now"; then
        NEW=$(grep -vx "$OTHER" <<<"$now")
        break
    fi
    sleep 0.02
done
RESPAWN_NS=$(date +%s%N)
RESPAWN_MS=$(((RESPAWN_NS - KILL_NS) / 1000000))
if [ -n "$NEW" ]; then
    pass "lighttpd started a new gateway process $NEW in $RESPAWN_MS ms (<= ${RESPAWN_BOUND} s)"
else
    fail "lighttpd started a new gateway process within ${RESPAWN_BOUND} s" \
        "gateway processes now: $(gateway_pids | paste -sd' ' -)"
fi
check_eq "two gateway processes again, the other one untouched" \
    "$(printf '%s\n%s\n' "$OTHER" "$NEW" | LC_ALL=C sort -n | paste -sd' ' -)" \
    "$(gateway_pids | paste -sd' ' -)"
check_false "the killed process is gone" test -e "/proc/$VICTIM/status"

# The load goes on 2 s after the new process is there, then stops.
sleep 2
touch "$TEST_DIR/stop"
wait_pids "${LOAD_PIDS[@]}" "${STORY_PIDS[@]}"

# ------------------------------------------------------------------------- the count

cat "$TEST_DIR"/load.* >"$TEST_DIR/load.all"
TOTAL=$(wc -l <"$TEST_DIR/load.all")
FAILED_ME=$(awk '$3 != 200' "$TEST_DIR/load.all" | wc -l)
AFTER=$(awk -v t="$RESPAWN_NS" '$1 >= t' "$TEST_DIR/load.all" | wc -l)
note "GET /me load: $TOTAL requests, $FAILED_ME failed ($(awk '$3 != 200 { print $3 }' \
    "$TEST_DIR/load.all" | sort | uniq -c | tr -s ' ' | paste -sd';' -)), $AFTER after the respawn"
cat "$TEST_DIR"/story.* | sort >"$TEST_DIR/story.all"
note "stories: $(cut -d' ' -f1,3 "$TEST_DIR/story.all" | sort | uniq -c | tr -s ' ' |
    paste -sd';' -) (seconds: $(cut -d' ' -f2 "$TEST_DIR/story.all" | paste -sd' ' -);" \
    "upstream requests: $(fake_requests))"
STORY_OK=$(grep -c '^200 ' "$TEST_DIR/story.all")
STORY_FAILED=$((STORIES - STORY_OK))

check_true "the load ran on both sides of the kill ($TOTAL requests, $AFTER after the respawn)" \
    test "$AFTER" -ge "$LOAD_CLIENTS"
check_eq "the generations that answered 200 took the fake's 4 s (in flight at the kill)" 0 \
    "$(awk '$1 == 200 && $2 < 3.5' "$TEST_DIR/story.all" | wc -l)"
check_eq "the generations on the killed process failed, the others did not" \
    "$IN_FLIGHT" "$STORY_FAILED"
check_eq "the failed generations got lighttpd's 500 (its HTML page, not the gateway's JSON)" \
    "$STORY_FAILED" "$(grep -c '^500 [0-9.]* text/html' "$TEST_DIR/story.all")"
check_eq "the generations on the other process answered 200 (JSON)" "$STORY_OK" \
    "$(grep -c '^200 [0-9.]* application/json' "$TEST_DIR/story.all")"
# Each client has one request in flight at a time, so the killed process held at most one
# /me of each. And one process can hold at most GATEWAY_THREADS requests in all: libfcgi
# serves one request per thread and lighttpd opens one connection per request (requests
# beyond that would wait in the socket's backlog and be lost too, but this load, 8
# clients + 6 generations, never fills the threads), so no more can fail.
check_true "failed GET /me: $FAILED_ME <= $LOAD_CLIENTS (one in flight per client)" \
    test "$FAILED_ME" -le "$LOAD_CLIENTS"
check_true "all failed: $((FAILED_ME + STORY_FAILED)) <= $THREADS (the killed process's threads)" \
    test $((FAILED_ME + STORY_FAILED)) -le "$THREADS"
check_true "every failed GET /me got lighttpd's 500" \
    awk '$3 != 200 && $3 != 500 { bad = 1 } END { exit bad }' "$TEST_DIR/load.all"
check_eq "every GET /me that started after the kill succeeded" 0 \
    "$(awk -v t="$KILLED_NS" '$1 >= t && $3 != 200' "$TEST_DIR/load.all" | wc -l)"
check_true "every failed GET /me was in flight at the kill (ended after it)" \
    awk -v t="$KILL_NS" '$3 != 200 && $2 < t { bad = 1 } END { exit bad }' \
    "$TEST_DIR/load.all"
req GET /stories?limit=100 -H "Authorization: Bearer $TOKEN"
check_jq "only the generations that answered 200 stored a story ($STORY_OK)" \
    "(.stories | length) == $STORY_OK"

# ---------------------------------------------------------------------- afterwards

parallel 64 GET /me -H "Authorization: Bearer $TOKEN"
check_eq "afterwards 64 GET /me at once: all 200" 200 \
    "$(cut -d'|' -f1 "$TEST_DIR/parallel.txt" | sort -u | paste -sd' ' -)"
# The new process takes its share of requests: of 6 slow generations at once, lighttpd
# gives some to it.
fake_mode "slow 2"
fake_reset_log
STORY_PIDS=()
for n in $(seq "$STORIES"); do
    story "after.$n" &
    STORY_PIDS+=($!)
done
fake_wait_requests "$STORIES" 10
sleep 0.3
NEW_HOLDS=$(upstream_conns "${NEW:-0}")
wait_pids "${STORY_PIDS[@]}"
check_true "the new process serves generations ($NEW_HOLDS of $STORIES)" test "$NEW_HOLDS" -ge 1
check_eq "afterwards $STORIES generations at once: all 200" 200 \
    "$(cat "$TEST_DIR"/story.after.* | cut -d' ' -f1 | sort -u | paste -sd' ' -)"
check_eq "the new process logged its start-up" 1 "$(count_events startup "$mark")"
check_match "lighttpd logged the killed child" 'child signalled: 9' "$(gateway_log)"

stop_stack
