#!/usr/bin/env bash
# bench/bench.sh: make bench (issue 6). The gateway against two references built from
# bench/, on this machine, in one run, with one table at the end.
#
# What runs. One private redis-server and seven lighttpd instances, all with the
# repository's own lighttpd.conf (max-procs 2, GATEWAY_THREADS unset: 32 threads a
# process, ENVIRONMENT=production, LOG_LEVEL unset: info), each on a free loopback port:
#   gw-allowed, gw-refused, gw-accuracy   build/story-gateway
#   hop                                   build/bench/hop: a fixed small JSON (bench/hop.c)
#   ideal-allowed, -refused, -accuracy    build/bench/ideal: hop + HS256 with libjwt + one
#                                         EVALSHA of lua/token_bucket.lua (bench/ideal.c)
# The three kinds of stack differ only in RATE_LIMITS_FILE's api_authenticated tier (the
# tier of GET /me with a user): huge (10^6/s, burst 10^9: never refuses), tiny (10^-4/s,
# burst 1, emptied first: always refuses) and 100/s burst 50 (accuracy). Users are minted
# by build/bench/mint (libjwt, as the gateway issues them) and their records
# ({u:<id>}:user, what GET /me reads) written straight into Redis: no sign-up, no argon2.
#
# 1. Throughput (wrk -t BENCH_WRK_THREADS -c BENCH_CONNECTIONS -d BENCH_SECONDS
#    --latency, bench/wrk.lua), GET /me, three scenarios:
#      allowed-1    one valid user (a fixed Authorization header);
#      allowed-10k  BENCH_USERS users, a token chosen at random per request;
#      refused      one user whose bucket is empty (hop, which decides nothing, still
#                   answers 200: it is the floor of the hop itself).
#    Each round runs every scenario for gateway, hop and ideal back to back, the order of
#    the three rotated from round to round; BENCH_ROUNDS rounds (3); the table gives the
#    median of the rounds for req/s, p50 and p99 (each its own median) and the rounds'
#    req/s. Every stack is warmed first (a 2 s wrk run, and a 64-connection run of
#    bench/load so that every request thread has its Redis connection and script).
#    A run is valid when wrk saw no socket error and the statuses are the scenario's
#    (allowed: no answer >= 400; refused: every answer >= 400): checked, "not ok" else.
#
# 2. Redis round trips per rate decision. bench/load sends exactly BENCH_COUNT requests
#    (BENCH_CONNECTIONS at a time) per scenario and stack, and INFO commandstats is read
#    before and after: the calls of EVALSHA, EVAL and SCRIPT LOAD over the requests are
#    the round trips per decision (1 when Redis decides; fewer when refusals are known
#    locally, 0 for each such refusal); other commands (GET /me's HMGET) are listed
#    apart. The status of every one of those requests is checked (200, or 429 refused).
#    The same runs give the CPU time per request of the FastCGI processes, lighttpd and
#    redis-server (/proc/PID/task/*/schedstat before and after): a figure that other
#    load on a shared machine disturbs far less than req/s does.
#
# 3. Accuracy: 2 gateway processes, one user, 100/s burst 50, BENCH_ACC_CONNECTIONS (64)
#    concurrent requests for BENCH_ACC_SECONDS (5 s), BENCH_ACC_RUNS (3) times for the
#    gateway and ideal, alternately. bench/load (libcurl multi) deletes the bucket, sends
#    one request alone and reads the bucket (HMGET tokens last_update): last_update is
#    then the exact Redis time of the first admitted request, t_first. Then the 64
#    connections; CLOCK_REALTIME is read before each request is handed to libcurl and
#    when its answer is complete. Redis TIME is gettimeofday(), the same clock on the
#    same host, so the Redis time of the last admitted request t_last lies between the
#    latest send and the latest answer of the requests answered 200, and
#    span = t_last - t_first lies in [span_lo, span_hi]. admitted (every 200) must lie
#    within 50 + 100 x span +-1: the deviation printed is signed, + for over-admission,
#    - for under, 0 inside the window. The bucket read after the last answer gives an
#    exact cross-check: with the bucket saturated the whole run (it never refills to
#    full while 64 clients press on it), what Redis admitted is
#      1 + tokens_after_first + 100 x (last_update_end - t_first) - tokens_end
#    (the rate law, the same Redis clock, no estimate), and admitted - that is the
#    gateway's own over- or under-admission against its bucket (fail-open passes,
#    answers lost or invented), which must be 0. The 64 connections are opened before
#    the first request (a GET /healthz each), so the run reaches the bucket within a
#    millisecond or two; should it come later than the bucket takes to fill again
#    (1 / 100 s), the tokens lost at the cap (at most 100 x (first answer of the run -
#    t_first) - (50 - tokens_after_first)) are allowed below 0 and printed.
#
# Everything is started here on free loopback ports and stopped by PID on exit (trap),
# never by name. Logs, wrk's outputs and report.txt (the table) are under
# tests/out/bench/. Exits 0 whether or not the gateway meets its targets (BENCH_STRICT=1:
# 1 on a MISS), 1 when the run itself is not valid (a stack that does not start, wrong
# statuses, socket errors).
#
# Environment (defaults): BENCH_SECONDS (6), BENCH_ROUNDS (3), BENCH_CONNECTIONS (32),
# BENCH_WRK_THREADS (2), BENCH_USERS (10000), BENCH_COUNT (5000), BENCH_ACC_SECONDS (5),
# BENCH_ACC_CONNECTIONS (64), BENCH_ACC_RUNS (3), BENCH_STRICT (0), BENCH_BIN (build/bench).
# Run from the repository root after make all bench-build, or with make bench.
set -u
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

BENCH_SECONDS=${BENCH_SECONDS:-6}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_CONNECTIONS=${BENCH_CONNECTIONS:-32}
BENCH_WRK_THREADS=${BENCH_WRK_THREADS:-2}
BENCH_USERS=${BENCH_USERS:-10000}
BENCH_COUNT=${BENCH_COUNT:-5000}
BENCH_ACC_SECONDS=${BENCH_ACC_SECONDS:-5}
BENCH_ACC_CONNECTIONS=${BENCH_ACC_CONNECTIONS:-64}
BENCH_ACC_RUNS=${BENCH_ACC_RUNS:-3}
BENCH_STRICT=${BENCH_STRICT:-0}
BENCH_BIN=${BENCH_BIN:-$ROOT/build/bench}

ACC_RATE=100
ACC_BURST=50
REPORT="$TEST_DIR/report.txt"
RESULTS="$TEST_DIR/results.tsv"
W="$TEST_DIR/data"
mkdir -p "$W" "$TEST_DIR/wrk"
: >"$REPORT"
: >"$RESULTS"
MISSES=0

say() {
    printf '%s\n' "$*" | tee -a "$REPORT"
}

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_CONNECTIONS BENCH_WRK_THREADS BENCH_USERS \
    BENCH_COUNT BENCH_ACC_SECONDS BENCH_ACC_CONNECTIONS BENCH_ACC_RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || bail "$v must be a whole number from 1 (got '${!v}')"
done
for tool in wrk lighttpd redis-server redis-cli jq; do
    command -v "$tool" >/dev/null || bail "$tool is not installed"
done
for b in "$SG_BUILD/story-gateway" "$BENCH_BIN/hop" "$BENCH_BIN/ideal" "$BENCH_BIN/mint" \
    "$BENCH_BIN/load"; do
    [ -x "$b" ] || bail "$b missing (make all bench-build)"
done

# ------------------------------------------------------------------------ the stacks

declare -A STACK_PORT STACK_PID
STACKS=()

# stack_start NAME BIN LIMITS_FILE: lighttpd with lighttpd.conf spawning BIN (2
# processes), on a free port; waits until GET /healthz answers 200 (ideal: 401, it wants
# a token on every path; hop answers 200 to any).
stack_start() {
    local name=$1 bin=$2 limits=$3 var="$TEST_DIR/$1" port pid s
    mkdir -p "$var"
    for _ in 1 2 3; do
        port=$(free_port) || bail "stack $name: no free port"
        (
            export PORT=$port BIND=127.0.0.1 SG_ROOT=$ROOT SG_VAR=$var SG_BIN=$bin \
                RATE_LIMITS_FILE=$limits ENVIRONMENT=production
            exec lighttpd -D -f "$ROOT/lighttpd.conf" 2>>"$var/lighttpd-error.log"
        ) &
        pid=$!
        STACK_PID[$name]=$pid
        STACK_PORT[$name]=$port
        for _ in $(seq 100); do
            sleep 0.1
            kill -0 "$pid" 2>/dev/null || break
            s=$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
                "http://127.0.0.1:$port/healthz" 2>/dev/null)
            if [ "$s" == 200 ] || [ "$s" == 401 ]; then
                STACKS+=("$name")
                return 0
            fi
        done
        stack_stop "$name"
    done
    tail -n 20 "$var/lighttpd-error.log" 2>/dev/null | sed 's/^/#   /'
    bail "stack $name did not answer /healthz within 10 s"
}

# stack_pids NAME: the FastCGI processes lighttpd spawned for NAME.
stack_pids() {
    ps -o pid= --ppid "${STACK_PID[$1]}" 2>/dev/null | tr -d ' ' | tr '\n' ' '
}

# stack_stop NAME: lighttpd by PID (it stops its children); a child still alive 1 s later
# is killed by PID, if it is still one of the three programs.
stack_stop() {
    local pid=${STACK_PID[$1]:-} kids k
    [ -n "$pid" ] || return 0
    kids=$(stack_pids "$1")
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    STACK_PID[$1]=
    for _ in $(seq 10); do
        local alive=
        for k in $kids; do
            [ -d "/proc/$k" ] && [ "$(ps -o stat= -p "$k" | cut -c1)" != Z ] && alive=1
        done
        [ -z "$alive" ] && return 0
        sleep 0.1
    done
    for k in $kids; do
        if grep -qE 'story-gateway|/hop|/ideal' "/proc/$k/cmdline" 2>/dev/null; then
            kill -KILL "$k" 2>/dev/null
        fi
    done
}

# shellcheck disable=SC2317 # called by the EXIT trap
bench_cleanup() {
    local rc=$? name
    for name in "${!STACK_PID[@]}"; do
        stack_stop "$name"
    done
    (exit "$rc")
    _cleanup
}
trap bench_cleanup EXIT

# ------------------------------------------------------------------------- fixtures

# users_into_redis FILE...: a {u:<id>}:user record (what GET /me reads) for every sub of
# the token files, through redis-cli --pipe.
users_into_redis() {
    cat "$@" | awk '{
        id = $1; email = id "@bench.example"
        n = split("HSET {u:" id "}:user id " id " email " email \
                  " created_at 2026-11-28T12:00:00Z password_hash -", a, " ")
        printf "*%d\r\n", n
        for (i = 1; i <= n; i++) printf "$%d\r\n%s\r\n", length(a[i]), a[i]
    }' | redis_cli --pipe >"$W/pipe.log" 2>&1 || bail "user records into Redis" "$(tail -n 3 "$W/pipe.log")"
}

# first_token FILE: the token of the first line.
first_token() {
    head -n 1 "$1" | cut -d' ' -f2
}

# ---------------------------------------------------------------------------- wrk

# run_wrk SCENARIO TARGET ROUND [SECONDS]: one wrk run; appends a results line
# "scenario target round rps p50_ms p99_ms requests status_errors socket_errors".
run_wrk() {
    local scenario=$1 target=$2 round=$3 secs=${4:-$BENCH_SECONDS} stack out line
    case $target in
        hop) stack=hop ;;
        gateway) stack=gw-${scenario%%-*} ;;
        ideal) stack=ideal-${scenario%%-*} ;;
    esac
    out="$TEST_DIR/wrk/$scenario-$target-$round.txt"
    local -a args=(-t "$BENCH_WRK_THREADS" -c "$BENCH_CONNECTIONS" -d "${secs}s" --timeout 5s
        --latency -s "$ROOT/bench/wrk.lua")
    case $scenario in
        allowed-1) BENCH_TOKENS_FILE='' wrk "${args[@]}" \
            -H "Authorization: Bearer $(first_token "$W/users.txt")" \
            "http://127.0.0.1:${STACK_PORT[$stack]}/me" >"$out" 2>&1 ;;
        allowed-10k) BENCH_TOKENS_FILE="$W/users.txt" wrk "${args[@]}" \
            "http://127.0.0.1:${STACK_PORT[$stack]}/me" >"$out" 2>&1 ;;
        refused) BENCH_TOKENS_FILE='' wrk "${args[@]}" \
            -H "Authorization: Bearer $(first_token "$W/refused.txt")" \
            "http://127.0.0.1:${STACK_PORT[$stack]}/me" >"$out" 2>&1 ;;
    esac
    line=$(grep '^BENCH ' "$out")
    [ -n "$line" ] || { echo "$scenario $target $round 0 0 0 0 0 1" >>"$RESULTS"; return; }
    # BENCH requests N duration_us N errors c r w s t latency_us p50 p90 p99 max
    awk -v s="$scenario" -v t="$target" -v r="$round" '{
        printf "%s %s %s %.0f %.3f %.3f %d %d %d\n", s, t, r, $3 / ($5 / 1e6), $13 / 1000,
               $15 / 1000, $3, $10, $7 + $8 + $9 + $11 }' <<<"$line" >>"$RESULTS"
}

# rotated ROUND: gateway hop ideal, rotated by ROUND.
rotated() {
    local -a t=(gateway hop ideal)
    local i
    for i in 0 1 2; do printf '%s ' "${t[$(((i + $1) % 3))]}"; done
}

# median VALUES...: the median (the mean of the two middle values for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2];
        else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field SCENARIO TARGET COLUMN: that column of the results, one value per round.
field() {
    awk -v s="$1" -v t="$2" -v c="$3" '$1 == s && $2 == t { print $c }' "$RESULTS"
}

# ------------------------------------------------------------------ redis counters

# cmdstats: "<command> <calls>" for every command Redis has run.
cmdstats() {
    redis_cli INFO commandstats | tr -d '\r' |
        sed -n 's/^cmdstat_\([^:]*\):calls=\([0-9]*\),.*/\1 \2/p'
}

# cmd_delta BEFORE AFTER COMMAND: calls of COMMAND between the two cmdstats outputs.
cmd_delta() {
    local a b
    a=$(awk -v c="$3" '$1 == c { print $2 }' <<<"$1")
    b=$(awk -v c="$3" '$1 == c { print $2 }' <<<"$2")
    echo $((${b:-0} - ${a:-0}))
}

# other_delta BEFORE AFTER SCRIPTS: calls of every command but EVALSHA, EVAL, SCRIPT
# LOAD and INFO, as "name:calls" words, without the commands the token bucket script
# itself runs (Redis counts them too: TIME, HMGET, HSET and EXPIRE once per run of it,
# SCRIPTS runs).
other_delta() {
    awk -v n="$3" 'NR == FNR { a[$1] = $2; next }
         { d = $2 - a[$1] }
         $1 == "time" || $1 == "hmget" || $1 == "hset" || $1 == "expire" { d -= n }
         $1 != "evalsha" && $1 != "eval" && $1 != "script|load" && $1 != "info" &&
         d != 0 { printf "%s:%d ", toupper($1), d }' \
        <(printf '%s\n' "$1") <(printf '%s\n' "$2")
}

# ------------------------------------------------------------------------------ run

# shellcheck disable=SC2119 # no extra redis-server arguments
start_redis
say "story-gateway make bench $(date -u +%Y-%m-%dT%H:%M:%SZ): $(nproc) CPUs" \
    "($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)), kernel $(uname -r)," \
    "load $(cut -d' ' -f1-3 /proc/loadavg)"

JWT_SECRET=$(openssl rand -hex 32)
export JWT_SECRET REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

"$BENCH_BIN/mint" aaaa "$BENCH_USERS" >"$W/users.txt" || bail "mint the users"
"$BENCH_BIN/mint" bbbb 1 >"$W/refused.txt" || bail "mint the refused user"
"$BENCH_BIN/mint" cccc 1 >"$W/accuracy.txt" || bail "mint the accuracy user"
users_into_redis "$W/users.txt" "$W/refused.txt" "$W/accuracy.txt"
ACC_KEY="rate_limit:api_authenticated:user:$(head -n 1 "$W/accuracy.txt" | cut -d' ' -f1)"

# bench_limits NAME RATE BURST: limits.json with that api_authenticated tier, in
# $W/limits-NAME.json (path printed).
bench_limits() {
    local out="$W/limits-$1.json"
    jq --argjson r "$2" --argjson b "$3" \
        '.tiers.api_authenticated = {tokens_per_second: $r, burst_capacity: $b}' \
        "$ROOT/limits.json" >"$out" || bail "limits file $1"
    echo "$out"
}
LIM_ALLOWED=$(bench_limits allowed 1000000 1000000000)
LIM_REFUSED=$(bench_limits refused 0.0001 1)
LIM_ACCURACY=$(bench_limits accuracy "$ACC_RATE" "$ACC_BURST")
stack_start gw-allowed "$SG_BUILD/story-gateway" "$LIM_ALLOWED"
stack_start gw-refused "$SG_BUILD/story-gateway" "$LIM_REFUSED"
stack_start gw-accuracy "$SG_BUILD/story-gateway" "$LIM_ACCURACY"
stack_start hop "$BENCH_BIN/hop" "$LIM_ALLOWED"
stack_start ideal-allowed "$BENCH_BIN/ideal" "$LIM_ALLOWED"
stack_start ideal-refused "$BENCH_BIN/ideal" "$LIM_REFUSED"
stack_start ideal-accuracy "$BENCH_BIN/ideal" "$LIM_ACCURACY"
for name in "${STACKS[@]}"; do
    n=$(wc -w <<<"$(stack_pids "$name")")
    check_eq "stack $name: lighttpd runs 2 FastCGI processes" 2 "$n"
done

# The refused user's bucket: its one token taken, by the gateway's stack (ideal shares it).
REFUSED_TOKEN=$(first_token "$W/refused.txt")
s1=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REFUSED_TOKEN" \
    "http://127.0.0.1:${STACK_PORT[gw-refused]}/me")
s2=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REFUSED_TOKEN" \
    "http://127.0.0.1:${STACK_PORT[gw-refused]}/me")
check_eq "the refused user's bucket is emptied (200 then 429)" "200 429" "$s1 $s2"

say "warm-up: 2 s of wrk on each stack and scenario, and 2000 requests 64 at a time"
for scenario in allowed-1 allowed-10k refused; do
    for target in gateway hop ideal; do
        run_wrk "$scenario" "$target" warm 2
    done
done
for stack in gw-allowed ideal-allowed hop; do
    "$BENCH_BIN/load" count "http://127.0.0.1:${STACK_PORT[$stack]}/me" 64 2000 "$W/users.txt" \
        random >/dev/null
done
# (the refused stacks with the refused user: another user's bucket would get the tiny tier)
for stack in gw-refused ideal-refused; do
    "$BENCH_BIN/load" count "http://127.0.0.1:${STACK_PORT[$stack]}/me" 64 2000 \
        "$W/refused.txt" one >/dev/null
done
: >"$RESULTS"

say "throughput: wrk -t $BENCH_WRK_THREADS -c $BENCH_CONNECTIONS -d ${BENCH_SECONDS}s, GET /me," \
    "$BENCH_ROUNDS rounds, gateway/hop/ideal interleaved"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for scenario in allowed-1 allowed-10k refused; do
        for target in $(rotated "$round"); do
            run_wrk "$scenario" "$target" "$round"
            sleep 0.5
        done
    done
    say "  round $round done, load $(cut -d' ' -f1-3 /proc/loadavg)"
done

# Validity: no socket error; statuses as the scenario wants.
for scenario in allowed-1 allowed-10k refused; do
    for target in gateway hop ideal; do
        bad=$(awk -v s="$scenario" -v t="$target" '$1 == s && $2 == t {
            want_all = (s == "refused" && t != "hop")
            if ($9 > 0 || $7 == 0 || (want_all ? $8 != $7 : $8 != 0))
                printf "round %s: %d requests, %d status errors, %d socket errors; ", $3, $7, $8, $9
        }' "$RESULTS")
        check_eq "$scenario $target: every run valid (answers as the scenario wants, no socket error)" "" "$bad"
    done
done

# --------------------------------------------------------------------------- table

declare -A MED
say ""
say "scenario     target    req/s   p50 ms   p99 ms   req/s of each round"
for scenario in allowed-1 allowed-10k refused; do
    for target in gateway hop ideal; do
        read -r -a rps <<<"$(field "$scenario" "$target" 4 | tr '\n' ' ')"
        read -r -a p50 <<<"$(field "$scenario" "$target" 5 | tr '\n' ' ')"
        read -r -a p99 <<<"$(field "$scenario" "$target" 6 | tr '\n' ' ')"
        printf -v row '%-12s %-7s %7.0f %8.2f %8.2f   %s' \
            "$([ "$target" == gateway ] && echo "$scenario")" "$target" "$(median "${rps[@]}")" \
            "$(median "${p50[@]}")" "$(median "${p99[@]}")" "${rps[*]}"
        say "$row"
        MED[$scenario/$target/rps]=$(median "${rps[@]}")
        MED[$scenario/$target/p99]=$(median "${p99[@]}")
    done
done

# verdict DESC MEASURED OP LIMIT: one line of the targets, PASS or MISS.
verdict() {
    local ok
    ok=$(awk -v m="$2" -v l="$4" -v op="$3" 'BEGIN { print ((op == ">=" ? m >= l : m <= l) ? 1 : 0) }')
    [ "$ok" = 1 ] || MISSES=$((MISSES + 1))
    printf -v line '  %-46s %7.3f  %s %-5s %s' "$1" "$2" "$3" "$4" "$([ "$ok" = 1 ] && echo PASS || echo MISS)"
    say "$line"
}
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'
}

say ""
say "targets (medians)                               measured  target"
verdict "allowed-1: gateway req/s / ideal req/s" \
    "$(ratio "${MED[allowed-1/gateway/rps]}" "${MED[allowed-1/ideal/rps]}")" ">=" 0.8
verdict "allowed-1: gateway p99 / ideal p99" \
    "$(ratio "${MED[allowed-1/gateway/p99]}" "${MED[allowed-1/ideal/p99]}")" "<=" 2
verdict "allowed-10k: gateway req/s / ideal req/s" \
    "$(ratio "${MED[allowed-10k/gateway/rps]}" "${MED[allowed-10k/ideal/rps]}")" ">=" 0.8
verdict "refused: gateway req/s / hop req/s" \
    "$(ratio "${MED[refused/gateway/rps]}" "${MED[refused/hop/rps]}")" ">=" 0.9
say "  (the issue's reference figures on this machine: hop ~34k req/s, ideal ~22k; here" \
    "allowed-1 hop $(printf '%.0f' "${MED[allowed-1/hop/rps]}"), ideal $(printf '%.0f' "${MED[allowed-1/ideal/rps]}"))"

# cpu_ns PID...: CPU time used so far by every thread of the processes, in ns
# (/proc/PID/task/*/schedstat, first field).
cpu_ns() {
    local p
    for p in "$@"; do cat "/proc/$p/task/"*/schedstat 2>/dev/null; done |
        awk '{ s += $1 } END { printf "%.0f", s }'
}

# ---------------------------------------------------------------------- round trips

say ""
say "Redis round trips per rate decision ($BENCH_COUNT requests, $BENCH_CONNECTIONS at a time," \
    "INFO commandstats before and after)"
say "(CPU us/req: the FastCGI processes, lighttpd, redis-server, from /proc/PID/task/*/schedstat)"
say "scenario     target   answers              EVALSHA   EVAL  SCRIPT LOAD  per decision  CPU us/req fcgi lighttpd redis  other commands per request (outside the script)"
round_trips() {
    local scenario=$1 target=$2 stack file mode before after out ev e sl answers per other
    local kids c0 c1 cpu
    stack=${target/gateway/gw}-${scenario%%-*}
    [ "$target" == hop ] && stack=hop
    file="$W/users.txt" mode=one
    [ "$scenario" == allowed-10k ] && mode=random
    [ "$scenario" == refused ] && file="$W/refused.txt"
    kids=$(stack_pids "$stack")
    # shellcheck disable=SC2086 # a list of PIDs
    c0="$(cpu_ns $kids) $(cpu_ns "${STACK_PID[$stack]}") $(cpu_ns "$REDIS_PID")"
    before=$(cmdstats)
    out=$("$BENCH_BIN/load" count "http://127.0.0.1:${STACK_PORT[$stack]}/me" \
        "$BENCH_CONNECTIONS" "$BENCH_COUNT" "$file" "$mode")
    after=$(cmdstats)
    # shellcheck disable=SC2086
    c1="$(cpu_ns $kids) $(cpu_ns "${STACK_PID[$stack]}") $(cpu_ns "$REDIS_PID")"
    cpu=$(awk -v a="$c0" -v b="$c1" -v n="$BENCH_COUNT" 'BEGIN { split(a, x); split(b, y)
        printf "%6.1f %6.1f %6.1f", (y[1] - x[1]) / n / 1000, (y[2] - x[2]) / n / 1000,
               (y[3] - x[3]) / n / 1000 }')
    ev=$(cmd_delta "$before" "$after" evalsha)
    e=$(cmd_delta "$before" "$after" eval)
    sl=$(cmd_delta "$before" "$after" 'script|load')
    answers=$(awk '$1 == "status" { printf "%s:%s ", $2, $3 }' <<<"$out")
    per=$(awk -v a="$((ev + e + sl))" -v n="$BENCH_COUNT" 'BEGIN { printf "%.4f", a / n }')
    other=$(other_delta "$before" "$after" "$((ev + e))" | awk -v n="$BENCH_COUNT" '{
        for (i = 1; i <= NF; i++) { split($i, p, ":"); printf "%s %.4f ", p[1], p[2] / n } }')
    printf -v row '%-12s %-8s %-20s %7d %6d %12d  %12s  %s  %s' "$scenario" "$target" \
        "$answers" "$ev" "$e" "$sl" "$per" "$cpu" "${other:-none}"
    say "$row"
    local want=200
    [ "$scenario" == refused ] && want=429
    check_eq "round trips $scenario $target: all $BENCH_COUNT answers $want" "$want:$BENCH_COUNT " "$answers"
    RT_PER[$scenario/$target]=$per
    RT_CALLS[$scenario/$target]=$((ev + e + sl))
    RT_CPU[$scenario/$target]=$(awk '{ print $1 + $2 + $3 }' <<<"$cpu")
}
declare -A RT_PER RT_CALLS RT_CPU
round_trips allowed-1 hop
for scenario in allowed-1 allowed-10k refused; do
    for target in gateway ideal; do
        round_trips "$scenario" "$target"
    done
done
say "  server CPU per request (FastCGI + lighttpd + redis), allowed-1: gateway" \
    "${RT_CPU[allowed-1/gateway]} us, ideal ${RT_CPU[allowed-1/ideal]} us, hop" \
    "${RT_CPU[allowed-1/hop]} us; ideal/gateway $(ratio "${RT_CPU[allowed-1/ideal]}" \
    "${RT_CPU[allowed-1/gateway]}") (less sensitive to other load than req/s; the clients'" \
    "own CPU is left out)"
for scenario in allowed-1 allowed-10k; do
    ok=$([ "${RT_CALLS[$scenario/gateway]}" -eq "$BENCH_COUNT" ] && echo PASS || echo MISS)
    [ "$ok" = PASS ] || MISSES=$((MISSES + 1))
    say "  $scenario: gateway round trips per decision ${RT_PER[$scenario/gateway]}, target exactly 1: $ok"
done
ok=$([ "${RT_CALLS[refused/gateway]}" -le "$BENCH_COUNT" ] && echo PASS || echo MISS)
[ "$ok" = PASS ] || MISSES=$((MISSES + 1))
say "  refused: gateway round trips per decision ${RT_PER[refused/gateway]} (at most 1; 0 for a" \
    "refusal known locally: $((BENCH_COUNT - RT_CALLS[refused/gateway])) of $BENCH_COUNT answered" \
    "without Redis): $ok"

# ------------------------------------------------------------------------ accuracy

say ""
say "accuracy: one user, ${ACC_RATE}/s burst $ACC_BURST, $BENCH_ACC_CONNECTIONS connections," \
    "${BENCH_ACC_SECONDS} s, 2 processes (span = Redis time from the first to the last admitted)"
say "target   run  requests admitted   span s (lo-hi)     expected 50+100*span   deviation  Redis bucket admitted  gateway-bucket"
accuracy_run() {
    local target=$1 run=$2 stack out
    stack=${target/gateway/gw}-accuracy
    out=$("$BENCH_BIN/load" accuracy "http://127.0.0.1:${STACK_PORT[$stack]}/me" \
        "$BENCH_ACC_CONNECTIONS" "$BENCH_ACC_SECONDS" "$W/accuracy.txt" 127.0.0.1 \
        "$REDIS_PORT" "$ACC_KEY")
    printf '%s\n' "$out" >"$TEST_DIR/accuracy-$target-$run.txt"
    awk -v t="$target" -v r="$run" -v rate="$ACC_RATE" -v burst="$ACC_BURST" '
        { v[$1] = $2 }
        END {
            admitted = (v["first_status"] == 200) + v["ok"]
            lo = v["ok"] > 0 ? v["ok_send_max"] - v["first_last"] : 0
            hi = v["ok"] > 0 ? v["ok_recv_max"] - v["first_last"] : 0
            if (lo < 0) lo = 0
            elo = burst + rate * lo; ehi = burst + rate * hi
            dev = admitted > ehi + 1 ? admitted - (ehi + 1) : (admitted < elo - 1 ? admitted - (elo - 1) : 0)
            redis = 1 + v["first_tokens"] + rate * (v["end_last"] - v["first_last"]) - v["end_tokens"]
            # What the bucket may have lost at its cap before the run first reached it
            # (the run'"'"'s first answer bounds that moment): 0 when it cannot have filled.
            cap = rate * (v["recv_min"] - v["first_last"]) - (burst - v["first_tokens"])
            if (cap < 0) cap = 0
            printf "%-8s %3d %9d %8d   %.4f-%.4f    %7.1f-%-7.1f     %+9.2f  %20.3f  %+13.3f\n",
                t, r, v["requests"] + 1, admitted, lo, hi, elo, ehi, dev, redis, admitted - redis
            printf "ACC %s %s %d %.3f %.3f %d %.3f\n", t, r, admitted, dev, admitted - redis,
                v["other"] + (v["first_status"] != 200), cap > "/dev/stderr"
        }' <<<"$out" 2>>"$W/accuracy.tsv" | tee -a "$REPORT"
}
: >"$W/accuracy.tsv"
for ((run = 1; run <= BENCH_ACC_RUNS; run++)); do
    accuracy_run gateway "$run"
    accuracy_run ideal "$run"
done
while read -r _ target run admitted dev diff other cap; do
    check_eq "accuracy $target run $run: every answer 200 or 429" 0 "$other"
    ok=$(awk -v d="$dev" -v x="$diff" -v c="$cap" \
        'BEGIN { print (d == 0 && x > -0.5 - c && x < 0.5) ? "PASS" : "MISS" }')
    capped=""
    [ "$cap" == 0.000 ] || capped=" (the bucket may have lost up to $cap at its cap before the run reached it)"
    if [ "$target" == gateway ]; then
        [ "$ok" = PASS ] || MISSES=$((MISSES + 1))
        say "  gateway run $run: $admitted admitted, deviation $dev, against its bucket $diff$capped: $ok"
    fi
done <"$W/accuracy.tsv"

say ""
say "$MISSES target(s) missed; report in $REPORT"
if [ "$BENCH_STRICT" = 1 ] && [ "$MISSES" -gt 0 ]; then
    exit 1
fi
exit 0
