#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS [NAME...]: make fuzz. Runs each libFuzzer target (all of them
# when no NAME is given) for SECONDS over a scratch copy of tests/fuzz/corpus/NAME/ plus
# tests/fuzz/regressions/NAME/, one after the other, and prints per target the runs done,
# their rate, the new inputs found and whether it crashed. Scratch corpora, artifacts and
# logs stay in build/fuzz/run/NAME/ until the next run. Exits 1 when a target is missing
# or crashed (a crash, leak, timeout or broken check), naming the input to keep.
set -u

FUZZ_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$FUZZ_ROOT/tests/fuzz/fuzzing.sh"

seconds=${1:?usage: tests/fuzz/run.sh SECONDS [NAME...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || mapfile -t names < <(fuzz_names)

failed=0
total_runs=0
for name in "${names[@]}"; do
    dir="$FUZZ_ROOT/build/fuzz/run/$name"
    if [ ! -x "$(fuzz_bin "$name")" ]; then
        echo "fuzz_$name: missing: make $(fuzz_bin "$name")"
        failed=$((failed + 1))
        continue
    fi
    fuzz_session "$name" "$seconds" "$dir"
    rc=$?
    log="$dir/fuzz.log"
    runs=$(fuzz_stat "$log" number_of_executed_units)
    rate=$(fuzz_stat "$log" average_exec_per_sec)
    added=$(fuzz_stat "$log" new_units_added)
    total_runs=$((total_runs + ${runs:-0}))
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz_%s: %s runs in %s s (%s/s), 0 crashes, %s new inputs\n' \
            "$name" "${runs:-?}" "$seconds" "${rate:-?}" "${added:-?}"
        continue
    fi
    failed=$((failed + 1))
    crash=$(fuzz_crash_file "$log")
    printf 'fuzz_%s: CRASHED after %s runs (libFuzzer status %s), 1 crash: %s\n' \
        "$name" "${runs:-?}" "$rc" "${crash:-no input written, see $log}"
    grep -m 3 -E 'ERROR: |check failed|SUMMARY: ' "$log" | sed 's/^/    /'
    echo "    log: $log"
    [ -n "$crash" ] && echo "    keep it: cp $crash tests/fuzz/regressions/$name/<what-it-broke>"
done
echo "fuzz: ${#names[@]} targets, $total_runs runs, $failed failed"
[ "$failed" -eq 0 ]
