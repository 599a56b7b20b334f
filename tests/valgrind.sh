#!/usr/bin/env bash
# tests/valgrind.sh UNIT_BINARIES...: run each cmocka unit test under valgrind memcheck
# (make valgrind). A binary passes when its tests pass, memcheck finds no error and no
# definitely lost block. Logs: tests/out/valgrind/<name>.log. Last line:
# "valgrind: N clean, N with errors"; exit status 1 when one was not clean.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
out=$root/tests/out/valgrind
mkdir -p "$out"
command -v valgrind >/dev/null || { echo "valgrind is not installed (make deps)"; exit 1; }

clean=0
dirty=0
for bin in "$@"; do
    case "$bin" in *.d | *.o | *.c) continue ;; esac
    name=$(basename "$bin")
    log=$out/$name.log
    # 97: memcheck's verdict, kept apart from the test's own exit status.
    CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 5 600 valgrind --quiet --error-exitcode=97 \
        --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
        --track-fds=no --log-file="$log.memcheck" "$bin" >"$log" 2>&1
    rc=$?
    cat "$log.memcheck" >>"$log"
    rm -f "$log.memcheck"
    if [ "$rc" -eq 0 ]; then
        clean=$((clean + 1))
        echo "ok - $name: no memcheck error, no definite leak"
    else
        dirty=$((dirty + 1))
        echo "not ok - $name: exit status $rc (97: memcheck found errors); see $log"
        grep -E '^==[0-9]+== (Invalid|Conditional|Use of|Mismatched|[0-9,]+ bytes in)' "$log" |
            head -5 | sed 's/^/#   /'
    fi
done
echo "valgrind: $clean clean, $dirty with errors"
[ "$dirty" -eq 0 ]
