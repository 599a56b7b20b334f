#!/usr/bin/env bash
# 62-head-of-line: slow story generations must not hold up anything else.
#
# Default threads (GATEWAY_THREADS unset: 32 per process, lighttpd's max-procs 2), the
# fake MistralAI in "slow 3", MISTRAL_TIMEOUT 10. 32 POST /start-story are fired at once;
# while they wait upstream, GET /me (a user token, a real account) is timed several
# times and must answer 200 within 1 s each, and a request over its limit (the auth tier,
# emptied beforehand) must get its 429 within 1 s; then all 32 generations finish with
# 200 in about 3 s. The figures are printed as "# " lines (max /me latency, 429 latency,
# AI completion time).
#
# Run alone from the repository root:  bash tests/integration/62-head-of-line.sh
set -u
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/fake_mistral.sh"

AI_N=32        # generations fired at once
SLOW=3         # seconds the fake takes for each
ME_N=6         # GET /me timed while they wait
LATENCY_MAX=1  # seconds any of those may take
AI_MAX=10      # seconds the whole batch may take (it should take about SLOW)

start_redis
start_fake_mistral
# AI and API tiers far above what this script sends; the auth tier keeps its burst of 3
# but refills so slowly that once emptied it stays empty for the whole script.
RATE_LIMITS_FILE=$(limits_auth_starved)
export RATE_LIMITS_FILE MISTRAL_API_KEY=$FAKE_MISTRAL_KEY MISTRAL_API_URL=$FAKE_MISTRAL_URL
export MISTRAL_TIMEOUT=10
unset GATEWAY_THREADS
start_stack

check_eq "every gateway process runs the default 32 threads" "32 32" \
    "$(events startup 0 | jq -r .threads | tr '\n' ' ' | sed 's/ $//')"

ACCOUNT=$(signup_user hol@example.com password123) || bail "sign-up failed"
AI_TOKEN=$(make_user_token "$(openssl rand -hex 16)")
URL="http://127.0.0.1:$PORT"

# ------------------------------------------------------------------ local helpers

# login_bad: a /login that the auth tier charges (the body is refused later, if at all).
login_bad() {
    timed POST /login -H 'Content-Type: application/json' --data-binary '{}'
}

# Empty the auth bucket now (sign-up took one token): the next /login is a 429.
for _ in 1 2 3 4 5; do
    [ "$(login_bad | cut -d' ' -f1)" == 429 ] && break
done
check_eq "the auth tier is exhausted before the generations start" 429 \
    "$(login_bad | cut -d' ' -f1)"

# ----------------------------------------------------- 32 slow generations at once

fake_mode "slow $SLOW"
fake_reset_log
urls=()
for ((i = 0; i < AI_N; i++)); do
    urls+=(-o /dev/null "$URL/start-story")
done
t0=$(date +%s%N)
curl -s --noproxy '*' --max-time 30 -H 'Expect:' -X POST \
    -H "Authorization: Bearer $AI_TOKEN" -H 'Content-Type: application/json' \
    --data-binary '{"genre":"mystery","characters":"a patient detective"}' \
    --parallel --parallel-immediate --parallel-max "$AI_N" \
    -w '%{http_code} %{time_total}\n' "${urls[@]}" >"$TEST_DIR/ai.txt" 2>/dev/null &
AI_PID=$!
track_pid "$AI_PID"

# Wait until every generation is upstream (the fake has logged all of them).
if fake_wait_requests "$AI_N" "$SLOW"; then
    pass "all $AI_N generations reached the upstream at once"
else
    fail "all $AI_N generations reached the upstream at once" \
        "the fake logged $(fake_requests) within ${SLOW} s"
fi
t_upstream=$((($(date +%s%N) - t0) / 1000000))
note "all $AI_N generations upstream after ${t_upstream} ms"

# ------------------------------------------------ the rest still answers at once

: >"$TEST_DIR/me.txt"
for ((i = 0; i < ME_N; i++)); do
    timed GET /me -H "Authorization: Bearer $ACCOUNT" >>"$TEST_DIR/me.txt"
done
read -r limited_status limited_time < <(login_bad)
read -r health_status health_time < <(timed GET /healthz)
t_probes=$((($(date +%s%N) - t0) / 1000000))
if kill -0 "$AI_PID" 2>/dev/null; then
    pass "the probes ran while the generations were still waiting (${t_probes} ms after firing)"
else
    fail "the probes ran while the generations were still waiting" \
        "the batch of generations had already finished ${t_probes} ms after firing"
fi

me_times=$(awk '{ printf "%s%.1f", sep, $2 * 1000; sep = " " }' "$TEST_DIR/me.txt")
me_max=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.4f", m }' "$TEST_DIR/me.txt")
ms() { awk -v t="$1" 'BEGIN { printf "%.1f", t * 1000 }'; }
note "GET /me latencies while $AI_N generations wait (ms): $me_times"
note "max GET /me latency: $(ms "$me_max") ms"
note "rate-limited /login while they wait: $limited_status in $(ms "$limited_time") ms"
note "GET /healthz while they wait: $health_status in $(ms "$health_time") ms"
check_eq "GET /me answered 200 every time while the generations waited" \
    "$(printf '200 %.0s' $(seq "$ME_N"))" \
    "$(awk '{ printf "%s ", $1 }' "$TEST_DIR/me.txt")"
check_true "every GET /me took less than ${LATENCY_MAX} s (max ${me_max} s)" \
    awk -v lim="$LATENCY_MAX" '$2 >= lim { bad = 1 } END { exit bad }' "$TEST_DIR/me.txt"
check_eq "a request over its limit got its 429 while the generations waited" 429 \
    "$limited_status"
check_true "the 429 took less than ${LATENCY_MAX} s (${limited_time} s)" \
    awk -v t="$limited_time" -v lim="$LATENCY_MAX" 'BEGIN { exit !(t < lim) }'
check_eq "GET /healthz answered 200 while the generations waited" 200 "$health_status"

# --------------------------------------------------------- the generations finish

wait "$AI_PID"
t_ai=$((($(date +%s%N) - t0) / 1000000))
ai_max=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { printf "%.3f", m }' "$TEST_DIR/ai.txt")
ai_min=$(awk 'BEGIN { m = 999 } $2 < m { m = $2 } END { printf "%.3f", m }' "$TEST_DIR/ai.txt")
note "AI statuses: $(cut -d' ' -f1 "$TEST_DIR/ai.txt" | sort | uniq -c |
    awk '{ printf "%s x%s ", $2, $1 }')"
note "AI completion: all $AI_N done ${t_ai} ms after firing; per request ${ai_min}..${ai_max} s"
check_eq "all $AI_N generations answered 200" "$AI_N" "$(grep -c '^200 ' "$TEST_DIR/ai.txt")"
check_true "the batch took at least the fake's ${SLOW} s (${t_ai} ms)" \
    test "$t_ai" -ge $((SLOW * 1000))
check_true "the batch finished within ${AI_MAX} s (${t_ai} ms)" test "$t_ai" -lt $((AI_MAX * 1000))
check_eq "the fake saw exactly $AI_N requests" "$AI_N" "$(fake_requests)"
check_eq "the stories are stored (GET /stories lists $AI_N)" "$AI_N" \
    "$(curl -s --noproxy '*' --max-time 10 -H "Authorization: Bearer $AI_TOKEN" \
        "$URL/stories?limit=100" | jq '.stories | length')"
