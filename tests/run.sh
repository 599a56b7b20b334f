#!/usr/bin/env bash
# tests/run.sh: run the unit test binaries and the integration suites, count the results.
#
#   tests/run.sh [--unit-only | --integration-only] [UNIT_BINARIES...]
#
# Each unit binary (cmocka) runs with CMOCKA_MESSAGE_OUTPUT=TAP; its "ok" / "not ok" lines
# are counted, and tests announced by its "1..N" plan that never reported (a crash) count
# as failures. Then, unless --unit-only, every tests/integration/[0-9][0-9]-*.sh runs in
# order, each in its own bash process, and its "ok" / "not ok" lines are counted.
# A program that exits non-zero without any "not ok" line counts as one failure, so a crash
# never passes silently. Each program's output goes to tests/out/<name>.log and to the
# terminal. The last line is exactly "N passed, N failed"; the exit status is 1 when
# something failed or nothing ran.
#
# Environment: SUITE_TIMEOUT (seconds per integration script, default 300),
# UNIT_TIMEOUT (seconds per unit binary, default 300).
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out="$root/tests/out"
mkdir -p "$out"

mode=all
bins=()
for a in "$@"; do
    case "$a" in
        --unit-only) mode=unit ;;
        --integration-only) mode=integration ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
        *) bins+=("$a") ;;
    esac
done

passed=0
failed=0
failures=()
skipped=()

# count NAME LOG RC [PLAN_CHECK]: add the ok / not ok lines of LOG to the totals; a non-zero
# RC with no "not ok" line is one failure; with PLAN_CHECK=1, tests of the "1..N" plan that
# never reported are failures too. Lines with a "# SKIP" directive (cmocka prints skipped
# tests as "not ok N # SKIP name") count neither way; they are listed at the end.
count() {
    local name=$1 log=$2 rc=$3 plan_check=${4:-0}
    local ok nok skip plan line missing
    ok=$(grep -E '^ok\b' "$log" | grep -vciE '^ok[^#]*# *skip')
    nok=$(grep -E '^not ok\b' "$log" | grep -vciE '^not ok[^#]*# *skip')
    skip=$(grep -ciE '^(not )?ok[^#]*# *skip' "$log")
    passed=$((passed + ok))
    failed=$((failed + nok))
    while IFS= read -r line; do
        failures+=("$name: $line")
    done < <(grep -E '^not ok\b' "$log" | grep -viE '^not ok[^#]*# *skip')
    while IFS= read -r line; do
        skipped+=("$name: $line")
    done < <(grep -iE '^(not )?ok[^#]*# *skip' "$log")
    if [ "$plan_check" = 1 ]; then
        plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$log" | cut -d. -f3)
        if [ -n "$plan" ] && [ $((ok + nok + skip)) -lt "$plan" ]; then
            missing=$((plan - ok - nok - skip))
            failed=$((failed + missing))
            failures+=("$name: $missing of $plan tests never reported (exit status $rc)")
            return
        fi
    fi
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        failed=$((failed + 1))
        failures+=("$name: exited with status $rc without a \"not ok\" line")
    fi
}

if [ "$mode" != integration ]; then
    for bin in "${bins[@]}"; do
        # A shell glob such as build/tests/test_* also matches the compiler's .d/.o files.
        case "$bin" in *.d|*.o|*.c) continue ;; esac
        name=$(basename "$bin")
        log="$out/$name.log"
        echo "=== unit: $name"
        if [ ! -x "$bin" ]; then
            echo "not ok - $bin is not an executable" | tee "$log"
            count "$name" "$log" 1
            continue
        fi
        CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 5 "${UNIT_TIMEOUT:-300}" "$bin" 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        count "$name" "$log" "$rc" 1
    done
fi

if [ "$mode" != unit ]; then
    shopt -s nullglob
    scripts=()
    while IFS= read -r s; do
        scripts+=("$s")
    done < <(printf '%s\n' tests/integration/[0-9][0-9]-*.sh | LC_ALL=C sort)
    for s in "${scripts[@]}"; do
        name=$(basename "$s" .sh)
        log="$out/$name.log"
        echo "=== integration: $name"
        # --foreground: Ctrl-C reaches the script, whose EXIT trap stops what it started.
        t0=$(date +%s%N)
        timeout --foreground -k 10 "${SUITE_TIMEOUT:-300}" bash "$s" </dev/null 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
        echo "# $name: $(( ($(date +%s%N) - t0) / 1000000 )) ms, exit status $rc"
        [ "$rc" -eq 124 ] && echo "# $name: timed out after ${SUITE_TIMEOUT:-300} s" | tee -a "$log"
        count "$name" "$log" "$rc"
    done
fi

if [ "${#skipped[@]}" -gt 0 ]; then
    echo
    echo "Skipped (not counted):"
    printf '  %s\n' "${skipped[@]}"
fi
if [ "${#failures[@]}" -gt 0 ]; then
    echo
    echo "Failures:"
    printf '  %s\n' "${failures[@]}"
fi
echo
echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ] || [ $((passed + failed)) -eq 0 ]; then
    exit 1
fi
exit 0
