#!/usr/bin/env bash
# 90-fuzz: the libFuzzer targets of tests/fuzz/ (issue 5), briefly, in make test. For each
# target: its binary exists (make check builds build/fuzz/fuzz_<name>; a missing one is a
# failure, never a skip), every input that once broke it (tests/fuzz/regressions/<name>/)
# runs clean, and it then fuzzes for FUZZ_SHORT_SECONDS (default 3) over a scratch copy
# of its seeds without a crash, a leak, a timeout or a broken check. One check per
# target, and a note with its rate. make fuzz runs the same targets longer.
set -u
. "$(dirname "$0")/lib.sh"

FUZZ_ROOT=$ROOT
. "$ROOT/tests/fuzz/fuzzing.sh"

FUZZ_SHORT_SECONDS=${FUZZ_SHORT_SECONDS:-3}

# replay_regressions NAME: runs each kept input once; prints the path of the first one
# that fails (nothing when all pass) and returns 1 then.
replay_regressions() {
    local name=$1 f log="$TEST_DIR/$1.replay.log"
    for f in "$ROOT/tests/fuzz/regressions/$name"/*; do
        [ -f "$f" ] || continue
        if ! fuzz_replay "$name" "$f" "$log"; then
            printf '%s\n' "$f"
            return 1
        fi
    done
    return 0
}

# check_target NAME: the one check of a target.
check_target() {
    local name=$1 bin dir log kept bad rc runs rate crash
    bin=$(fuzz_bin "$name")
    if [ ! -x "$bin" ]; then
        fail "fuzz_$name is built" "missing: $bin (make check builds it; clang needed)"
        return
    fi
    kept=$(find "$ROOT/tests/fuzz/regressions/$name" -type f 2>/dev/null | wc -l)
    if ! bad=$(replay_regressions "$name"); then
        fail "fuzz_$name: the $kept kept regression inputs run clean" "crash input: $bad" \
            "$(grep -m 1 -E 'ERROR: |check failed' "$TEST_DIR/$name.replay.log")"
        return
    fi
    dir="$TEST_DIR/$name"
    fuzz_session "$name" "$FUZZ_SHORT_SECONDS" "$dir"
    rc=$?
    log="$dir/fuzz.log"
    runs=$(fuzz_stat "$log" number_of_executed_units)
    rate=$(fuzz_stat "$log" average_exec_per_sec)
    if [ "$rc" -ne 0 ]; then
        crash=$(fuzz_crash_file "$log")
        fail "fuzz_$name: $kept regression inputs clean, ${FUZZ_SHORT_SECONDS} s of fuzzing without a crash" \
            "crash input: ${crash:-none written (libFuzzer status $rc)}" \
            "$(grep -m 1 -E 'ERROR: |check failed' "$log")" "log: $log"
        return
    fi
    pass "fuzz_$name: $kept regression inputs clean, ${FUZZ_SHORT_SECONDS} s of fuzzing without a crash"
    note "fuzz_$name: ${runs:-?} runs, ${rate:-?} exec/s"
}

while IFS= read -r name; do
    check_target "$name"
done < <(fuzz_names)
