#!/usr/bin/env bash
# bench/profile.sh: a first profile of the gateway's allowed path (GET /me, one valid
# user, a tier that never refuses), the scenario allowed-1 of bench/bench.sh. Not part of
# make bench (perf and valgrind change the timings); run it after make all bench-build:
#   bench/profile.sh
#
# 1. perf: wrk -t2 -c32 for PROFILE_SECONDS + 2 s; meanwhile perf record --call-graph
#    dwarf on both gateway processes for PROFILE_SECONDS. Reports: perf-self.txt (self
#    cost by symbol), perf-children.txt (with callees), perf-dso.txt (by library).
# 2. strace -c -f on both gateway processes (all their threads) while bench/load sends
#    exactly PROFILE_REQUESTS requests: syscalls per request (strace.txt).
# 3. valgrind: the stack started again with the gateway under memcheck, then under
#    callgrind (a wrapper as lighttpd's bin-path), PROFILE_VG_REQUESTS requests each after
#    a warm-up of 200: heap allocations per request from memcheck's "total heap usage"
#    of a run with and without the measured requests, and callgrind's instructions by
#    function (callgrind.txt, callgrind_annotate --inclusive=yes), counted from the end
#    of the warm-up only (--instr-atstart=no, then callgrind_control -i on).
# Everything under tests/out/profile-story-gateway/ (profile-ideal/ ...); summary.txt has
# the figures per request.
#
# PROFILE_BIN=build/bench/ideal (or hop) profiles a reference the same way, into
# tests/out/profile-ideal/, to tell the gateway's own costs from the hop's and libjwt's.
# PROFILE_SCENARIO=refused profiles the refused path instead (a tier of 10^-4/s, burst 1,
# whose one token is taken first: every request is a 429), into .../profile-<bin>-refused/.
#
# Environment (defaults): PROFILE_SECONDS (5), PROFILE_REQUESTS (5000),
# PROFILE_VG_REQUESTS (3000), PROFILE_BIN (build/story-gateway), PROFILE_SCENARIO
# (allowed), BENCH_BIN (build/bench).
set -u
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../tests/integration/lib.sh"

PROFILE_SECONDS=${PROFILE_SECONDS:-5}
PROFILE_REQUESTS=${PROFILE_REQUESTS:-5000}
PROFILE_VG_REQUESTS=${PROFILE_VG_REQUESTS:-3000}
BENCH_BIN=${BENCH_BIN:-$ROOT/build/bench}
PROFILE_BIN=${PROFILE_BIN:-$SG_BUILD/story-gateway}
PROFILE_BIN=$(realpath "$PROFILE_BIN")
# One folder per program profiled (lib.sh empties tests/out/profile itself).
rmdir "$TEST_DIR"
PROFILE_SCENARIO=${PROFILE_SCENARIO:-allowed}
case $PROFILE_SCENARIO in
    allowed) TEST_DIR="$TEST_DIR-$(basename "$PROFILE_BIN")" ;;
    refused) TEST_DIR="$TEST_DIR-$(basename "$PROFILE_BIN")-refused" ;;
    *) bail "PROFILE_SCENARIO must be allowed or refused" ;;
esac
rm -rf "$TEST_DIR"
mkdir -p "$TEST_DIR"
# ideal answers 401 to a request without a token, /healthz too: that is "up" here.
if [ "$(basename "$PROFILE_BIN")" == ideal ]; then
    healthz_status() {
        local s
        s=$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:$PORT/healthz" 2>/dev/null)
        [ "$s" == 401 ] && s=200
        echo "${s:-000}"
    }
fi
# start_stack runs $SG_BUILD/story-gateway: a folder where that name is PROFILE_BIN.
mkdir -p "$TEST_DIR/bin"
ln -sf "$PROFILE_BIN" "$TEST_DIR/bin/story-gateway"
SG_BUILD=$TEST_DIR/bin
SUMMARY="$TEST_DIR/summary.txt"
: >"$SUMMARY"

for tool in wrk perf strace valgrind callgrind_annotate; do
    command -v "$tool" >/dev/null || bail "$tool is not installed"
done
for b in load mint; do
    [ -x "$BENCH_BIN/$b" ] || bail "$BENCH_BIN/$b missing (make bench-build)"
done

say() {
    printf '%s\n' "$*" | tee -a "$SUMMARY"
}

gateway_pids() {
    ps -o pid= --ppid "$LIGHTTPD_PID" 2>/dev/null | tr -d ' ' | tr '\n' ' '
}

# load_count N CONCURRENCY: N requests of the one user; prints load's status lines.
load_count() {
    "$BENCH_BIN/load" count "http://127.0.0.1:$PORT/me" "$2" "$1" "$TEST_DIR/users.txt" one
}

# stop_and_reap: stop_stack, then wait (30 s at most) for gateways that valgrind keeps
# alive while it writes its output.
stop_and_reap() {
    local k
    stop_stack
    for k in $STACK_SURVIVORS; do
        for _ in $(seq 300); do
            [ -d "/proc/$k" ] || break
            sleep 0.1
        done
    done
}

# shellcheck disable=SC2119 # no extra redis-server arguments
start_redis
JWT_SECRET=$(openssl rand -hex 32)
export JWT_SECRET ENVIRONMENT=production
"$BENCH_BIN/mint" aaaa 1 >"$TEST_DIR/users.txt" || bail "mint"
SUB=$(cut -d' ' -f1 "$TEST_DIR/users.txt")
TOKEN=$(cut -d' ' -f2 "$TEST_DIR/users.txt")
redis_cli HSET "{u:$SUB}:user" id "$SUB" email "$SUB@bench.example" \
    created_at 2026-11-28T12:00:00Z password_hash - >/dev/null
if [ "$PROFILE_SCENARIO" == refused ]; then
    RATE_LIMITS_FILE=$(limits_file '.tiers.api_authenticated = {tokens_per_second: 0.0001,
                                                                 burst_capacity: 1}')
else
    RATE_LIMITS_FILE=$(limits_file '.tiers.api_authenticated = {tokens_per_second: 1000000,
                                                                 burst_capacity: 1000000000}')
fi
export RATE_LIMITS_FILE
start_stack
# refused: the one token is taken here (the bucket outlives the run: TTL 10001 s).
[ "$PROFILE_SCENARIO" == refused ] && load_count 1 1 >/dev/null
load_count 2000 64 >/dev/null
PIDS=$(gateway_pids)
say "gateway processes: $PIDS; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

# --------------------------------------------------------------------------- perf
wrk -t2 -c32 -d"$((PROFILE_SECONDS + 2))s" -H "Authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$PORT/me" >"$TEST_DIR/wrk.txt" 2>&1 &
WRK=$!
track_pid "$WRK"
sleep 1
perf record -q -F 499 --call-graph dwarf,16384 -o "$TEST_DIR/perf.data" \
    -p "$(tr ' ' ',' <<<"${PIDS% }")" -- sleep "$PROFILE_SECONDS" >"$TEST_DIR/perf-record.log" 2>&1
wait "$WRK"
perf report -i "$TEST_DIR/perf.data" --stdio --no-children --sort symbol --percent-limit 0.5 \
    -g none >"$TEST_DIR/perf-self.txt" 2>/dev/null
perf report -i "$TEST_DIR/perf.data" --stdio --children --sort symbol --percent-limit 2 \
    -g none >"$TEST_DIR/perf-children.txt" 2>/dev/null
perf report -i "$TEST_DIR/perf.data" --stdio --no-children --sort dso -g none \
    >"$TEST_DIR/perf-dso.txt" 2>/dev/null
say "perf: wrk $(grep -m1 'Requests/sec' "$TEST_DIR/wrk.txt")"
say "perf: self cost by symbol (top 25):"
grep -E '^ +[0-9]' "$TEST_DIR/perf-self.txt" | head -n 25 | tee -a "$SUMMARY"
say "perf: by library:"
grep -E '^ +[0-9]' "$TEST_DIR/perf-dso.txt" | head -n 12 | tee -a "$SUMMARY"

# ------------------------------------------------------------------------- strace
# shellcheck disable=SC2086 # a list of PIDs
read -r -a pid_args <<<"$(printf -- '-p %s ' $PIDS)"
strace -c -f -o "$TEST_DIR/strace.txt" "${pid_args[@]}" 2>"$TEST_DIR/strace.log" &
STRACE=$!
sleep 1
load_count "$PROFILE_REQUESTS" 32 >"$TEST_DIR/strace-load.txt"
sleep 0.5
kill -INT "$STRACE"
wait "$STRACE"
say "strace: $PROFILE_REQUESTS requests ($(tr '\n' ' ' <"$TEST_DIR/strace-load.txt")); syscalls per request:"
awk -v n="$PROFILE_REQUESTS" '$1 ~ /^[0-9.]+$/ && NF >= 5 {
        calls = $4; name = $NF; if (NF == 6) errs = $5; else errs = 0
        printf "  %-16s %7.2f per request%s\n", name, calls / n, (errs > 0 ? sprintf(" (%d errors)", errs) : "")
    }' \
    "$TEST_DIR/strace.txt" | tee -a "$SUMMARY"

# ------------------------------------------------------------------------ valgrind
stop_and_reap

# vg_run TOOL N: the stack with the gateway under valgrind TOOL, 200 warm-up requests,
# then N more; the per-process outputs in $TEST_DIR/vg-TOOL-N.<pid>.
vg_run() {
    local tool=$1 n=$2 wrapper="$TEST_DIR/vg-$1.sh" opts saved p
    case $tool in
        memcheck) opts="--tool=memcheck --leak-check=no --log-file=$TEST_DIR/vg-$tool-$n.%p" ;;
        callgrind) opts="--tool=callgrind --instr-atstart=no --callgrind-out-file=$TEST_DIR/vg-$tool-$n.%p" ;;
    esac
    printf '#!/bin/sh\nexec valgrind %s %s\n' "$opts" "$PROFILE_BIN" >"$wrapper"
    chmod +x "$wrapper"
    mkdir -p "$TEST_DIR/vgbin"
    ln -sf "$wrapper" "$TEST_DIR/vgbin/story-gateway"
    saved=$SG_BUILD
    SG_BUILD=$TEST_DIR/vgbin
    start_stack
    SG_BUILD=$saved
    load_count 200 8 >/dev/null
    # callgrind counts from here on: the start-up and the warm-up are left out.
    if [ "$tool" == callgrind ]; then
        for p in $(gateway_pids); do callgrind_control -i on "$p" >/dev/null; done
    fi
    [ "$n" -gt 0 ] && load_count "$n" 8 >"$TEST_DIR/vg-$tool-$n.load"
    stop_and_reap
}

vg_run memcheck 0
vg_run memcheck "$PROFILE_VG_REQUESTS"
allocs() {
    cat "$TEST_DIR"/vg-memcheck-"$1".* 2>/dev/null |
        sed -n 's/.*total heap usage: \([0-9,]*\) allocs, \([0-9,]*\) frees, \([0-9,]*\) bytes.*/\1 \3/p' |
        tr -d ',' | awk '{ a += $1; b += $2 } END { print a + 0, b + 0 }'
}
read -r a0 b0 <<<"$(allocs 0)"
read -r a1 b1 <<<"$(allocs "$PROFILE_VG_REQUESTS")"
say "memcheck: heap allocations per request: $(awk -v a="$a0" -v b="$a1" -v n="$PROFILE_VG_REQUESTS" \
    'BEGIN { printf "%.1f", (b - a) / n }'), bytes allocated per request: $(awk -v a="$b0" -v b="$b1" \
    -v n="$PROFILE_VG_REQUESTS" 'BEGIN { printf "%.0f", (b - a) / n }')" \
    "($PROFILE_VG_REQUESTS requests: $a1 allocs, without them $a0; both processes)"

vg_run callgrind "$PROFILE_VG_REQUESTS"
# requests_of FILE: the requests a process served (calls of its request handler).
HANDLER=gateway_handle
case $(basename "$PROFILE_BIN") in
    ideal) HANDLER=ideal_handle ;;
    hop) HANDLER=hop_handle ;;
esac
requests_of() {
    awk -v h="$HANDLER" '/^c?fn=\([0-9]+\)/ {
            line = $0; sub(/^c?fn=/, "", line)
            id = line; sub(/\).*/, ")", id)
            name = line; sub(/^\([0-9]+\) ?/, "", name)
            if (name != "") names[id] = name
            want = ($0 ~ /^cfn=/ && names[id] == h); next }
         want && /^calls=/ { split($1, c, "="); n += c[2]; want = 0 }
         END { print n + 0 }' "$1"
}
say "callgrind (each gateway process, counting after the start-up and 200 warm-up requests;" \
    "instructions per request: all counted over the requests the process served):"
for f in "$TEST_DIR"/vg-callgrind-"$PROFILE_VG_REQUESTS".*[0-9]; do
    callgrind_annotate --inclusive=yes "$f" >"$f.txt" 2>/dev/null
    n=$(requests_of "$f")
    say "  $(basename "$f"): $n requests, $(awk -v n="$n" '/PROGRAM TOTALS/ {
        gsub(",", "", $1); printf "%.0f", (n > 0 ? $1 / n : 0); exit }' "$f.txt") instructions per request"
done
# The busier process's top functions, per request.
f=$(for f in "$TEST_DIR"/vg-callgrind-"$PROFILE_VG_REQUESTS".*[0-9]; do
    echo "$(requests_of "$f") $f"; done | sort -rn | head -n 1)
n=${f%% *}
f=${f#* }
cp "$f.txt" "$TEST_DIR/callgrind.txt"
say "callgrind: top functions of $(basename "$f") (inclusive instructions per request, $n requests):"
awk -v n="$n" '/^ *[0-9,]+ \(/ && !/\/work\// { v = $1; gsub(",", "", v); $1 = ""; $2 = ""
        printf "  %9.0f %s\n", v / n, $0 }' "$TEST_DIR/callgrind.txt" | head -n 45 | tee -a "$SUMMARY"
