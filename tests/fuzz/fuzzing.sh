# shellcheck shell=bash
# tests/fuzz/fuzzing.sh: what make fuzz (tests/fuzz/run.sh) and make test
# (tests/integration/90-fuzz.sh) share to run the libFuzzer targets. Source it; it needs
# FUZZ_ROOT, the repository's absolute path.
#
#   fuzz_names                      the targets, one a line (tests/fuzz/fuzz_<name>.c)
#   fuzz_bin NAME                   build/fuzz/fuzz_<name>
#   fuzz_replay NAME FILE LOG       runs one input once; its status
#   fuzz_session NAME SECONDS DIR   fuzzes for SECONDS over DIR/corpus (a fresh copy of
#                                   the seeds) and the regressions; artifacts in DIR/,
#                                   output in DIR/fuzz.log; libFuzzer's status
#   fuzz_stat LOG KEY               a "stat::KEY:" figure of libFuzzer's final stats
#   fuzz_crash_file LOG             the input libFuzzer wrote for a crash, leak or timeout
#
# One fuzzer at a time, in the foreground (no -jobs, no -fork): the machine is shared.

# Seconds one input may take before libFuzzer calls it a timeout (a finding, kept).
FUZZ_INPUT_TIMEOUT=${FUZZ_INPUT_TIMEOUT:-10}
# UBSan stops at its first report (-fno-sanitize-recover); show where it was.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

fuzz_names() {
    local f
    for f in "$FUZZ_ROOT"/tests/fuzz/fuzz_*.c; do
        f=${f##*/fuzz_}
        printf '%s\n' "${f%.c}"
    done
}

fuzz_bin() {
    printf '%s\n' "$FUZZ_ROOT/build/fuzz/fuzz_$1"
}

# fuzz_dict_arg NAME: -dict=... when the target has a dictionary.
fuzz_dict_arg() {
    local dict="$FUZZ_ROOT/tests/fuzz/dict/$1.dict"
    [ -f "$dict" ] && printf -- '-dict=%s\n' "$dict"
}

fuzz_replay() {
    local name=$1 file=$2 log=$3
    "$(fuzz_bin "$name")" -timeout="$FUZZ_INPUT_TIMEOUT" "$file" >"$log" 2>&1
}

fuzz_session() {
    local name=$1 seconds=$2 dir=$3 dict
    local seeds="$FUZZ_ROOT/tests/fuzz/corpus/$name"
    local regressions="$FUZZ_ROOT/tests/fuzz/regressions/$name"
    rm -rf "$dir"
    mkdir -p "$dir/corpus"
    # A scratch copy: libFuzzer adds what it finds to the first folder it is given.
    [ -d "$seeds" ] && cp -R "$seeds/." "$dir/corpus/"
    [ -d "$regressions" ] || regressions=
    dict=$(fuzz_dict_arg "$name")
    # shellcheck disable=SC2086 # $dict and $regressions: one word or none
    "$(fuzz_bin "$name")" -max_total_time="$seconds" -timeout="$FUZZ_INPUT_TIMEOUT" \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/" $dict \
        "$dir/corpus" $regressions >"$dir/fuzz.log" 2>&1
}

fuzz_stat() {
    sed -n "s/^stat::$2: *\([0-9]*\).*/\1/p" "$1" | tail -n 1
}

fuzz_crash_file() {
    sed -n "s/.*Test unit written to \(.*\)$/\1/p" "$1" | tail -n 1
}
