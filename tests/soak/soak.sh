#!/usr/bin/env bash
# tests/soak/soak.sh: make soak. Mixed traffic for a minute against the real stack, then
# the numbers that show a leak or a crash: 5xx answers, the gateways' memory, Redis keys.
#
# The stack is the tests' own (tests/integration/lib.sh): a private redis-server,
# lighttpd with lighttpd.conf spawning 2 gateway processes, the offline storyteller, all
# on free loopback ports, with TRUSTED_PROXIES=127.0.0.1/32 so that each anonymous client
# of the traffic (an X-Forwarded-For address) has its own buckets. The tiers are those of
# limits.json, except the failed log-in window (shortened so that its buckets expire
# within the run). wrk runs tests/soak/soak.lua: every route, good and bad requests,
# SOAK_USERS accounts signed up first, SOAK_ANON anonymous addresses; about a third of
# the answers are 429.
#
#   1. wrk for SOAK_WARMUP + SOAK_SECONDS s without a pause; the RSS (VmRSS) of each
#      gateway process at the end of the warm-up and 3 s before the end of the traffic
#      (and every 5 s, for the report);
#   2. Redis keys by kind (DBSIZE, rate_limit:* per tier, accounts, stories), and the
#      users' stories checked whole;
#   3. no traffic for the longest bucket TTL (+2 s): the rate_limit:* keys must be gone.
#
# The warm-up is 30 s because the gateway's memory follows the data for that long: each
# user's stories reach soak.lua's cap of 16 (so /stories pages stop growing) within
# about 25 s. Measured on the 2-core machine: a gateway grows from 13.7 MB idle to
# 16.0 MB at 10 s and 16.7 MB at 30 s, then 0.5-1 MB in the next 200 s, and its live
# heap (heaptrack) stays near 2 MB: the rest is glibc's arenas (16 for 32 threads).
#
# Fails (exit 1) when any answer is a 5xx, a route answers a status it never should, a
# request gets no answer (wrk socket errors, 10 s timeout), a gateway process was
# replaced (a crash), a gateway's RSS grew more than SOAK_RSS_GROWTH % from warm-up to
# end, the users' stories are not whole (hash, parts list and index entry), a key that
# must expire has no TTL, or a bucket outlives its TTL.
#
# Prints TAP-style "ok"/"not ok" lines and a short report, also saved to
# tests/out/soak/report.txt (wrk's raw output, the RSS samples and the logs beside it).
# Not part of make test. Run from the repository root after make all:
#   tests/soak/soak.sh            or   make soak SOAK_SECONDS=300
#
# Environment (defaults): SOAK_SECONDS (60), SOAK_WARMUP (30), SOAK_CONNECTIONS (16: wrk
# threads, one connection each), SOAK_USERS (256), SOAK_ANON (1024), SOAK_AUTH_IPS (8: the
# anonymous addresses that also send /signup and /login), SOAK_RSS_GROWTH (10, percent),
# SOAK_ROUTES (empty: all; else route names of soak.lua, comma-separated, e.g.
# SOAK_ROUTES=me_user,healthz to find which route a leak comes from).
set -u
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"

SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_WARMUP=${SOAK_WARMUP:-30}
SOAK_CONNECTIONS=${SOAK_CONNECTIONS:-16}
SOAK_USERS=${SOAK_USERS:-256}
SOAK_ANON=${SOAK_ANON:-1024}
SOAK_AUTH_IPS=${SOAK_AUTH_IPS:-8}
SOAK_RSS_GROWTH=${SOAK_RSS_GROWTH:-10}

LUA_SCRIPT="$ROOT/tests/soak/soak.lua"
REPORT="$TEST_DIR/report.txt"
USERS_FILE="$TEST_DIR/users.txt"
RSS_FILE="$TEST_DIR/rss.tsv"
: >"$REPORT"

# ----------------------------------------------------------------------- reporting

# say TEXT...: one line of the report, on stdout and in report.txt.
say() {
    printf '%s\n' "$*" | tee -a "$REPORT"
}

# judge DESC OK [DIAG...]: a check (OK is 1 or 0), as pass/fail and in report.txt.
judge() {
    local desc=$1 ok=$2
    shift 2
    if [ "$ok" = 1 ]; then
        pass "$desc"
        echo "ok - $desc" >>"$REPORT"
    else
        fail "$desc" "$@"
        { echo "not ok - $desc"; printf '#   %s\n' "$@"; } >>"$REPORT"
    fi
}

# ------------------------------------------------------------------------- the stack

for v in SOAK_SECONDS SOAK_WARMUP SOAK_CONNECTIONS SOAK_USERS SOAK_ANON SOAK_AUTH_IPS \
    SOAK_RSS_GROWTH; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || bail "$v must be a whole number from 1 (got '${!v}')"
done
[ "$SOAK_SECONDS" -ge 5 ] || bail "SOAK_SECONDS must be at least 5 (the end reading is 3 s before the end)"
[ "$SOAK_USERS" -ge "$SOAK_CONNECTIONS" ] ||
    bail "SOAK_USERS must be at least SOAK_CONNECTIONS (each wrk thread drives its own users)"
command -v wrk >/dev/null || bail "wrk is not installed (apt-get install wrk)"

# The failed log-in buckets (default window 900 s) would outlive any patience; 20 s lets
# step 3 see them expire too. Every other tier is the shipped one.
RATE_LIMITS_FILE=$(limits_file '.login_failures = {max_failures: 5, window_seconds: 20}')
export RATE_LIMITS_FILE TRUSTED_PROXIES=127.0.0.1/32
# shellcheck disable=SC2119 # no extra redis-server arguments
start_redis
start_stack

# gateway_pids: the story-gateway processes lighttpd spawned, sorted.
gateway_pids() {
    ps -o pid=,comm= --ppid "$LIGHTTPD_PID" 2>/dev/null |
        awk '$2 == "story-gateway" { print $1 }' | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# rss_kb PID: VmRSS of PID in kB (empty when it is gone).
rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

# signup_one I: sign up soak-user-I from its own address (so the auth tier does not
# refuse it); append "<token> <email> <password>" to USERS_FILE, or the answer to
# USERS_FILE.err.
signup_one() {
    local i=$1 email="soak-user-$1@example.com" pass="soak-password-$1" out tok
    out=$(curl -s --noproxy '*' --max-time 10 -H 'Content-Type: application/json' \
        -H "X-Forwarded-For: 10.79.$((i / 250)).$((i % 250 + 1))" \
        --data-binary "{\"email\":\"$email\",\"password\":\"$pass\"}" \
        "http://127.0.0.1:$PORT/signup" 2>/dev/null)
    if tok=$(printf '%s' "$out" | jq -er .access_token 2>/dev/null); then
        printf '%s %s %s\n' "$tok" "$email" "$pass" >>"$USERS_FILE"
    else
        printf '%s: %s\n' "$email" "$(printf '%s' "$out" | head -c 200)" >>"$USERS_FILE.err"
    fi
}

# signup_soak_users: SOAK_USERS accounts, 4 sign-ups at a time (each gateway hashes one
# password per CPU at once); bails out unless every one worked.
signup_soak_users() {
    local i
    local -a batch=()
    : >"$USERS_FILE"
    for ((i = 1; i <= SOAK_USERS; i++)); do
        signup_one "$i" &
        batch+=("$!")
        # By PID: a bare wait would wait for redis-server and lighttpd too.
        if [ ${#batch[@]} -eq 4 ] || [ "$i" -eq "$SOAK_USERS" ]; then
            wait "${batch[@]}"
            batch=()
        fi
    done
    [ "$(wc -l <"$USERS_FILE")" -eq "$SOAK_USERS" ] ||
        bail "sign-up of the soak users" "$(head -n 3 "$USERS_FILE.err" 2>/dev/null)"
}

# rss_settled PID: the smallest of 5 VmRSS readings over a second. A password hash holds
# 19 MiB for a few tens of milliseconds; one reading could catch it, five in a row do not.
rss_settled() {
    local i v min=
    for i in 1 2 3 4 5; do
        v=$(rss_kb "$1")
        [ -n "$v" ] && { [ -z "$min" ] || [ "$v" -lt "$min" ]; } && min=$v
        [ "$i" -lt 5 ] && sleep 0.2
    done
    echo "$min"
}

# elapsed_s SINCE_NS: whole seconds since SINCE_NS (date +%s%N).
elapsed_s() {
    echo $(( ($(date +%s%N) - $1) / 1000000000 ))
}

# run_wrk: the traffic, SOAK_WARMUP + SOAK_SECONDS without a pause, wrk's output in
# wrk.txt. Meanwhile the RSS of each gateway every 5 s ("<second> <pid> <kB>" in
# RSS_FILE), and settled readings under the same traffic at the end of the warm-up
# (RSS_WARM) and 3 s before the end (RSS_END). One run, so that soak.lua keeps the
# stories it knows. Returns wrk's exit status.
declare -A RSS_WARM RSS_END
run_wrk() {
    local total=$((SOAK_WARMUP + SOAK_SECONDS)) pid t0 t last=-1 p warm=0 end=0
    t0=$(date +%s%N)
    wrk -t "$SOAK_CONNECTIONS" -c "$SOAK_CONNECTIONS" -d "${total}s" --timeout 10s \
        -s "$LUA_SCRIPT" "http://127.0.0.1:$PORT" \
        -- "$USERS_FILE" "$SOAK_ANON" "$SOAK_AUTH_IPS" "$SOAK_CONNECTIONS" "${SOAK_ROUTES:-}" \
        >"$TEST_DIR/wrk.txt" 2>"$TEST_DIR/wrk.err" &
    pid=$!
    track_pid "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        t=$(elapsed_s "$t0")
        if [ "$t" -ne "$last" ] && [ $((t % 5)) -eq 0 ]; then
            for p in $PIDS_START; do echo "$t $p $(rss_kb "$p")" >>"$RSS_FILE"; done
        fi
        last=$t
        if [ "$t" -ge "$SOAK_WARMUP" ] && [ "$warm" = 0 ]; then
            for p in $PIDS_START; do RSS_WARM[$p]=$(rss_settled "$p"); done
            warm=1
        fi
        if [ "$t" -ge $((total - 3)) ] && [ "$end" = 0 ]; then
            for p in $PIDS_START; do RSS_END[$p]=$(rss_settled "$p"); done
            end=1
        fi
        sleep 0.5
    done
    wait "$pid"
}

# ------------------------------------------------------------------- wrk's numbers

# wrk_field FILE KIND: the lines of KIND ("route", "unexpected", "summary", "latency")
# that soak.lua's done() printed, without the kind.
wrk_field() {
    sed -n "s/^$2 //p" "$1"
}

# status_histogram FILE: "<status> <count>" lines, every route together.
status_histogram() {
    wrk_field "$1" route | awk '{ n[$2] += $3 } END { for (s in n) print s, n[s] }' | sort -n
}

# count_5xx FILE: how many answers were 5xx.
count_5xx() {
    status_histogram "$1" | awk '$1 >= 500 { n += $2 } END { print n + 0 }'
}

# report_run FILE: requests, rate, latency, statuses (with shares) and routes of one run.
report_run() {
    local f=$1 req dur ce re we te p50 p99 max total
    read -r req dur _ ce re we te <<<"$(wrk_field "$f" summary)"
    read -r p50 p99 max <<<"$(wrk_field "$f" latency)"
    total=$(status_histogram "$f" | awk '{ n += $2 } END { print n + 0 }')
    say "requests: $req in $(awk -v d="$dur" 'BEGIN { printf "%.1f", d / 1e6 }') s =" \
        "$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }') req/s;" \
        "latency p50 $(awk -v v="$p50" 'BEGIN { printf "%.1f", v / 1000 }') ms," \
        "p99 $(awk -v v="$p99" 'BEGIN { printf "%.1f", v / 1000 }') ms," \
        "max $(awk -v v="$max" 'BEGIN { printf "%.0f", v / 1000 }') ms;" \
        "socket errors: connect $ce, read $re, write $we, timeout $te"
    say "statuses: $(status_histogram "$f" | awk -v t="$total" \
        '{ printf "%s%s %d (%.1f%%)", (NR > 1 ? ", " : ""), $1, $2, 100 * $2 / t }')"
    say "per route (status count):"
    wrk_field "$f" route | awk '
        $1 != r { if (r != "") print line; r = $1; line = sprintf("  %-16s", $1) }
        { line = line " " $2 " " $3 }
        END { if (r != "") print line }' | tee -a "$REPORT"
}

# judge_run FILE WHAT: the checks every run must pass (wrk ran, no 5xx, no unexpected
# status, no socket error).
judge_run() {
    local f=$1 what=$2 n5 unexpected errs
    if [ -z "$(wrk_field "$f" summary)" ]; then
        judge "$what: wrk ran and reported" 0 "$(head -c 600 "${f%.txt}.err")"
        return
    fi
    n5=$(count_5xx "$f")
    judge "$what: no 5xx answer" "$([ "$n5" -eq 0 ] && echo 1 || echo 0)" \
        "5xx answers: $n5 ($(wrk_field "$f" route | awk '$2 >= 500' | tr '\n' ';'))"
    unexpected=$(wrk_field "$f" unexpected | tr '\n' ';')
    judge "$what: every route answered only its own statuses (or 429)" \
        "$([ -z "$unexpected" ] && echo 1 || echo 0)" "route status count: $unexpected"
    errs=$(wrk_field "$f" summary | awk '{ print $4 + $5 + $6 + $7 }')
    judge "$what: every request got an answer within 10 s (no socket error)" \
        "$([ "$errs" -eq 0 ] && echo 1 || echo 0)" \
        "connect read write timeout: $(wrk_field "$f" summary | cut -d' ' -f4-)"
}

# ------------------------------------------------------------------------ redis keys

# key_census: "<kind> <count>" for every key in Redis now (SCAN skips expired keys).
key_census() {
    redis_keys '*' | awk '
        /^rate_limit:/            { split($0, p, ":"); n["rate_limit:" p[2]]++; next }
        /^user_email:/            { n["accounts (user_email)"]++; next }
        /^\{u:[^}]*\}:user$/      { n["accounts ({u:}:user)"]++; next }
        /^\{u:[^}]*\}:stories$/   { n["story indexes ({u:}:stories)"]++; next }
        /^\{u:[^}]*\}:story:.*:parts$/ { n["user story parts"]++; next }
        /^\{u:[^}]*\}:story:/     { n["user stories"]++; next }
        /^\{a:[^}]*\}:(story|parts)$/ { n["anonymous story keys (24 h TTL)"]++; next }
                                  { n["other"]++ }
        END { for (k in n) print k, n[k] }' | sort
}

# keys_without_ttl PATTERN: how many keys matching PATTERN have no expiry (one EVAL;
# KEYS is fine on the soak's own small Redis).
keys_without_ttl() {
    redis_cli EVAL "local n = 0
        for _, k in ipairs(redis.call('KEYS', ARGV[1])) do
            if redis.call('TTL', k) == -1 then n = n + 1 end
        end
        return n" 0 "$1"
}

# story_integrity: "<index members> <story hashes> <parts lists> <mismatches>" of the
# users' stories: every story has its hash, its parts list and its index entry, and its
# hash's part count is its list's length (one EVAL, as keys_without_ttl).
story_integrity() {
    redis_cli EVAL "local members, hashes, lists, bad = 0, 0, 0, 0
        for _, k in ipairs(redis.call('KEYS', '{u:*}:stories')) do
            members = members + redis.call('ZCARD', k)
        end
        for _, k in ipairs(redis.call('KEYS', '{u:*}:story:*')) do
            if string.sub(k, -6) == ':parts' then
                lists = lists + 1
            else
                hashes = hashes + 1
                if tonumber(redis.call('HGET', k, 'parts')) ~= redis.call('LLEN', k .. ':parts') then
                    bad = bad + 1
                end
            end
        end
        return {members, hashes, lists, bad}" 0 | tr '\n' ' ' | sed 's/ $//'
}

# report_keys WHEN: DBSIZE and the census, in the report.
report_keys() {
    say "redis keys $1: DBSIZE $(redis_cli DBSIZE), used_memory" \
        "$(redis_cli INFO memory | sed -n 's/^used_memory_human:\([^\r]*\).*/\1/p')"
    key_census | awk '{ c = $NF; $NF = ""; printf "  %-34s %d\n", $0, c }' | tee -a "$REPORT"
}

# longest_ttl: the longest bucket TTL of the limits file in seconds (SPEC 5.3: ceil of
# burst/rate, + 1; the failed log-in window + 1).
longest_ttl() {
    jq '[.tiers[] | (.burst_capacity / .tokens_per_second | ceil) + 1]
        + [(.login_failures.window_seconds // 900) + 1] | max' "$RATE_LIMITS_FILE"
}

# explain_buckets: why rate_limit:* keys remain (TTL and fields of a few), in the report.
explain_buckets() {
    local k
    for k in $(redis_keys 'rate_limit:*' | head -n 5); do
        say "  $k TTL $(redis_cli TTL "$k") ($(redis_cli HGETALL "$k" | tr '\n' ' '))"
    done
    say "  (TTL -1: written without EXPIRE, a leak; a positive TTL: renewed after the" \
        "traffic stopped, or a tier whose TTL is above burst/rate + 1)"
}

# ---------------------------------------------------------------------------- run

say "story-gateway soak $(date -u +%Y-%m-%dT%H:%M:%SZ): ${SOAK_WARMUP} s warm-up +" \
    "${SOAK_SECONDS} s, $SOAK_CONNECTIONS connections, $SOAK_USERS users," \
    "$SOAK_ANON anonymous addresses ($SOAK_AUTH_IPS of them for accounts)," \
    "$(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

signup_soak_users
PIDS_START=$(gateway_pids)
[ "$(wc -w <<<"$PIDS_START")" -ge 1 ] || bail "no story-gateway process under lighttpd"

run_wrk
PIDS_END=$(gateway_pids)

say "--- traffic ($SOAK_WARMUP s warm-up + $SOAK_SECONDS s)"
report_run "$TEST_DIR/wrk.txt"
judge_run "$TEST_DIR/wrk.txt" "traffic"
if [ -z "${SOAK_ROUTES:-}" ]; then
    n429=$(status_histogram "$TEST_DIR/wrk.txt" | awk '$1 == 429 { print $2 }')
    judge "traffic: some answers were 429" "$([ "${n429:-0}" -gt 0 ] && echo 1 || echo 0)"
fi

say "--- gateway processes (RSS in kB: after the warm-up, 3 s before the end, max of the 5 s samples)"
judge "the gateway processes are the same ones from start to end (none crashed)" \
    "$([ "$PIDS_START" == "$PIDS_END" ] && echo 1 || echo 0)" \
    "at start: $PIDS_START" "at the end: $PIDS_END" \
    "$(gateway_log | grep -v '^{' | grep -iE 'died|signal|exit|abort' | tail -n 3)"
for p in $PIDS_START; do
    warm=${RSS_WARM[$p]:-} end=${RSS_END[$p]:-}
    peak=$(awk -v p="$p" '$2 == p && $3 > m { m = $3 } END { print m + 0 }' "$RSS_FILE")
    if [ -z "$warm" ] || [ -z "$end" ]; then
        judge "gateway $p: RSS measured after warm-up and at the end" 0 "process gone"
        continue
    fi
    growth=$(awk -v a="$warm" -v b="$end" 'BEGIN { printf "%+.1f", 100 * (b - a) / a }')
    say "  pid $p: $warm -> $end ($growth%), max $peak"
    judge "gateway $p: RSS grew at most $SOAK_RSS_GROWTH% from warm-up to end ($growth%)" \
        "$(awk -v a="$warm" -v b="$end" -v g="$SOAK_RSS_GROWTH" \
            'BEGIN { print (b <= a * (1 + g / 100)) ? 1 : 0 }')" \
        "5 s samples (second kB): $(awk -v p="$p" '$2 == p { printf "%s %s; ", $1, $3 }' "$RSS_FILE")"
done
say "  lighttpd $LIGHTTPD_PID: $(rss_kb "$LIGHTTPD_PID"); redis-server $REDIS_PID:" \
    "$(rss_kb "$REDIS_PID")"

say "--- redis"
report_keys "at the end of the traffic"
n=$(keys_without_ttl 'rate_limit:*')
judge "every rate_limit:* key has a TTL" "$([ "$n" -eq 0 ] && echo 1 || echo 0)" \
    "$n keys without TTL"
n=$(keys_without_ttl '{a:*')
judge "every anonymous story key has a TTL" "$([ "$n" -eq 0 ] && echo 1 || echo 0)" \
    "$n keys without TTL"

read -r members hashes lists bad <<<"$(story_integrity)"
judge "users' stories are whole: $members index entries, $hashes hashes, $lists parts lists" \
    "$([ "$members" == "$hashes" ] && [ "$hashes" == "$lists" ] && [ "$bad" == 0 ] &&
        echo 1 || echo 0)" "stories whose part count is not their list's length: $bad"

wait_s=$(( $(longest_ttl) + 2 ))
say "no traffic for $wait_s s (the longest bucket TTL + 2 s) ..."
sleep "$wait_s"
report_keys "after $wait_s s idle"
left=$(redis_keys 'rate_limit:*' | wc -l)
judge "every rate_limit:* bucket expired when idle" "$([ "$left" -eq 0 ] && echo 1 || echo 0)" \
    "$left rate_limit:* keys left"
[ "$left" -eq 0 ] || explain_buckets
judge "/healthz answers 200 after the soak" \
    "$([ "$(healthz_status)" == 200 ] && echo 1 || echo 0)"

say "gateway log: $(du -h "$SG_VAR/lighttpd-error.log" | cut -f1)," \
    "$(grep -c '"event":"rate_limited"' "$SG_VAR/lighttpd-error.log") rate_limited lines;" \
    "other events: $(gateway_log | grep -v '"event":"rate_limited"' | sed -n 's/^[^{]*{/{/p' |
        jq -r '"\(.level)/\(.event)"' 2>/dev/null | sort | uniq -c | sort -rn | head -n 8 |
        awk '{ printf "%s%s %d", (NR > 1 ? ", " : ""), $2, $1 }')"
say "verdict: $([ "$FAILED" -eq 0 ] && echo PASS || echo "FAIL ($FAILED checks)")"
