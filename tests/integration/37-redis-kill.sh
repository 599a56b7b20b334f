#!/usr/bin/env bash
# 37-redis-kill: Redis killed (SIGKILL) during a burst of writes, restarted from its
# append-only file (issue 5, faults).
#
# redis-server runs as `make run` starts it: appendonly yes, appendfsync everysec (the
# default), no RDB, from its own folder. Redis writes a command to the AOF before it
# sends the reply, so every story the gateway answered 200 for has reached the kernel
# before the client heard of it; SIGKILL loses the process, not the kernel's copy.
#
# 8 writers (4 users, two writers each) create stories with POST /start-story (offline
# storyteller) as fast as they can. Once at least 200 are acknowledged, redis-server is
# killed with SIGKILL; the writers go on for a second (503 while Redis is down), then
# stop. Redis is started again on the same port from the same folder. Then:
# - every story that got a 200 (its id from the answer) is readable by its owner with
#   GET /stories/{id}, whole (its opening part), and is in the owner's GET /stories;
# - at most 8 more stories exist than were acknowledged: the writes in flight at the
#   kill (one per writer) may have reached the AOF without their answer;
# - no half-written story: every listed story is readable;
# - the accounts survived (GET /me, POST /login), and writing works again.
#
# Run alone from the repository root:  bash tests/integration/37-redis-kill.sh
set -u
. "$(dirname "$0")/lib.sh"

USERS=4
WRITERS=8
MIN_ACKED=200     # stories acknowledged before the kill
WRITER_MAX=400    # requests per writer at most (the writers stop on a file before that)

start_redis --appendonly yes --appendfsync everysec
RATE_LIMITS_FILE=$(limits_file '.tiers |= with_entries(.value.tokens_per_second = 100000
                                                      | .value.burst_capacity = 100000)')
export RATE_LIMITS_FILE
start_stack

TOKENS=()
for u in $(seq "$USERS"); do
    TOKENS[u]=$(signup_user "writer$u@example.com" 'a long enough password') ||
        bail "signup_user writer$u"
done

# ------------------------------------------------------------------ local helpers

# writer N: POST /start-story in a loop as user ((N - 1) % USERS) + 1 until
# $TEST_DIR/stop exists (at most WRITER_MAX requests, 60 s); one line
# "<status> <story id or -> <user>" per request in writes.N.
writer() {
    local n=$1 u=$((($1 - 1) % USERS + 1)) out="$TEST_DIR/writes.$1" i code id
    local body="$TEST_DIR/writer.$1.body" until=$(($(date +%s) + 60))
    : >"$out"
    for ((i = 0; i < WRITER_MAX; i++)); do
        [ -e "$TEST_DIR/stop" ] || [ "$(date +%s)" -ge "$until" ] && break
        code=$(curl -s --noproxy '*' --max-time 10 -o "$body" -w '%{http_code}' \
            -H "Authorization: Bearer ${TOKENS[u]}" -H 'Content-Type: application/json' \
            --data-binary "{\"genre\":\"burst\",\"characters\":\"writer $n, story $i\"}" \
            "http://127.0.0.1:$PORT/start-story" 2>/dev/null)
        id=-
        [ "$code" == 200 ] && id=$(jq -r '.id // "-"' "$body" 2>/dev/null)
        printf '%s %s %s\n' "${code:-000}" "${id:--}" "$u" >>"$out"
    done
}

# acked: stories acknowledged so far (200 answers of all writers).
acked() {
    cat "$TEST_DIR"/writes.* 2>/dev/null | grep -c '^200 '
}

# acked_at_least N: true once N stories are acknowledged.
acked_at_least() {
    [ "$(acked)" -ge "$1" ]
}

# wait_acked N SECONDS: poll acked_at_least N every 0.1 s for up to SECONDS (its own loop:
# lib.sh's wait_until computes its deadline with awk "%d", which mawk caps at 2^31 ns).
wait_acked() {
    local until=$(($(date +%s) + $2))
    until acked_at_least "$1" || [ "$(date +%s)" -ge "$until" ]; do sleep 0.1; done
}

# list_ids TOKEN: the ids of every story in the user's GET /stories, one a line (all
# pages); "!" lines for a page that did not answer 200.
list_ids() {
    local cursor='' url out
    for _ in $(seq 50); do
        url="http://127.0.0.1:$PORT/stories?limit=100"
        [ -n "$cursor" ] && url="$url&cursor=$cursor"
        out=$(curl -s --noproxy '*' --max-time 10 -w '\n%{http_code}' \
            -H "Authorization: Bearer $1" "$url")
        if [ "${out##*$'\n'}" != 200 ]; then
            echo '!'
            return
        fi
        out=${out%$'\n'*}
        jq -r '.stories[].id' <<<"$out"
        cursor=$(jq -r '.next_cursor // empty' <<<"$out" | jq -sRr @uri)
        [ -n "$cursor" ] || return 0
    done
}

# readable TOKEN ID...: GET /stories/ID for each as TOKEN's user; one line
# "<status> <id> <parts>" each ("wrong-id" when the answer is another story).
readable() {
    local tok=$1 id out
    shift
    for id in "$@"; do
        out=$(curl -s --noproxy '*' --max-time 10 -w '\n%{http_code}' \
            -H "Authorization: Bearer $tok" "http://127.0.0.1:$PORT/stories/$id")
        printf '%s %s %s\n' "${out##*$'\n'}" "$id" "$(jq -r --arg id "$id" \
            'if .id == $id then (.parts | length) else "wrong-id" end' \
            <<<"${out%$'\n'*}" 2>/dev/null || echo '?')"
    done
}

# --------------------------------------------------------------------- the burst

rm -f "$TEST_DIR/stop"
BG=()
for n in $(seq "$WRITERS"); do
    writer "$n" &
    BG+=($!)
done
wait_acked "$MIN_ACKED" 30
check_true "at least $MIN_ACKED stories acknowledged before the kill ($(acked))" \
    acked_at_least "$MIN_ACKED"
kill -KILL "$REDIS_PID"
wait "$REDIS_PID" 2>/dev/null
KILLED_PID=$REDIS_PID
REDIS_PID=
note "redis-server $KILLED_PID killed with SIGKILL after $(acked) acknowledged stories"
sleep 1
touch "$TEST_DIR/stop"
for p in "${BG[@]}"; do wait "$p"; done

cat "$TEST_DIR"/writes.* >"$TEST_DIR/writes.all"
ACKED=$(grep -c '^200 ' "$TEST_DIR/writes.all")
REFUSED=$(grep -vc '^200 ' "$TEST_DIR/writes.all")
note "writes: $(cut -d' ' -f1 "$TEST_DIR/writes.all" | sort | uniq -c | tr -s ' ' | paste -sd';' -)"
check_true "the writers hit the outage: some writes were refused ($REFUSED)" test "$REFUSED" -ge 1
check_eq "every write got 200 or 503 (never a crash or a hang)" "200 503" \
    "$(cut -d' ' -f1 "$TEST_DIR/writes.all" | sort -u | paste -sd' ' -)"
check_eq "every 200 carried a story id" 0 "$(grep -c '^200 - ' "$TEST_DIR/writes.all")"
check_eq "no story id was acknowledged twice" "$ACKED" \
    "$(grep '^200 ' "$TEST_DIR/writes.all" | cut -d' ' -f2 | sort -u | wc -l)"
check_true "the append-only file is on disk" \
    test -n "$(find "$TEST_DIR/redis" -name '*.aof*' -size +0)"

# ----------------------------------------------------------- restart from the AOF

restart_redis
check_match "Redis loaded the append-only file" 'DB loaded from append only file' \
    "$(cat "$TEST_DIR/redis/redis.log")"
wait_until 10 healthz_is 200
check_eq "/healthz is 200 again" 200 "$(healthz_status)"

lost=0 broken=0 unlisted=0 extra=0 listed_total=0
for u in $(seq "$USERS"); do
    mine=$(grep "^200 [0-9a-f]* $u\$" "$TEST_DIR/writes.all" | cut -d' ' -f2)
    # shellcheck disable=SC2086 # one id a word
    readable "${TOKENS[u]}" $mine >"$TEST_DIR/read.$u"
    lost=$((lost + $(awk '$1 != 200' "$TEST_DIR/read.$u" | wc -l)))
    broken=$((broken + $(awk '$1 == 200 && $3 != 1' "$TEST_DIR/read.$u" | wc -l)))
    list_ids "${TOKENS[u]}" | sort >"$TEST_DIR/list.$u"
    listed_total=$((listed_total + $(wc -l <"$TEST_DIR/list.$u")))
    unlisted=$((unlisted + $(comm -23 <(sort <<<"$mine") "$TEST_DIR/list.$u" | grep -c .)))
    extras=$(comm -13 <(sort <<<"$mine") "$TEST_DIR/list.$u")
    extra=$((extra + $(grep -c . <<<"$extras")))
    # shellcheck disable=SC2086
    [ -n "$extras" ] && readable "${TOKENS[u]}" $extras >>"$TEST_DIR/extra.read"
done
note "acknowledged $ACKED, listed after the restart $listed_total ($extra not acknowledged)"
check_eq "every acknowledged story is readable by its owner after the restart" 0 "$lost"
check_eq "... whole (its opening part)" 0 "$broken"
check_eq "every acknowledged story is in its owner's list" 0 "$unlisted"
check_true "at most one unacknowledged story per writer, in flight ($extra <= $WRITERS)" \
    test "$extra" -le "$WRITERS"
check_eq "every unacknowledged story that exists is whole too" 0 \
    "$(awk '$1 != 200 || $3 != 1' "$TEST_DIR/extra.read" 2>/dev/null | wc -l)"

for u in $(seq "$USERS"); do
    req GET /me -H "Authorization: Bearer ${TOKENS[u]}"
    check_status "writer$u's account survived: GET /me 200" 200
done
req_json POST /login '{"email":"writer1@example.com","password":"a long enough password"}'
check_status "... and logs in: 200" 200
req_json POST /start-story '{"genre":"after","characters":"the restart"}' \
    -H "Authorization: Bearer ${TOKENS[1]}"
check_status "a new story can be written after the restart" 200

stop_stack
