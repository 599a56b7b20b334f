#!/usr/bin/env bash
# tests/sanitizer-reports.sh DIR: after `make asan`, fail when any file under DIR (the
# suites' logs, the gateway's error logs) holds an AddressSanitizer, LeakSanitizer or
# UndefinedBehaviorSanitizer report. Each report also stops its program (the build uses
# -fno-sanitize-recover=all), so a report normally shows as a failed check too; this
# catches one in a process whose death no check noticed.
set -u
dir=${1:?usage: tests/sanitizer-reports.sh DIR}
pattern='ERROR: (AddressSanitizer|LeakSanitizer)|Sanitizer: CHECK failed|Sanitizer:DEADLYSIGNAL|runtime error:|SUMMARY: [A-Za-z]+Sanitizer'
files=$(find "$dir" -type f \( -name '*.log' -o -name '*.txt' \) | wc -l)
found=$(grep -rlE --include='*.log' --include='*.txt' "$pattern" "$dir" 2>/dev/null)
if [ -n "$found" ]; then
    echo "sanitizer reports in:"
    for f in $found; do
        echo "  $f"
        grep -m3 -nE "$pattern" "$f" | sed 's/^/    /'
    done
    exit 1
fi
echo "no sanitizer report in the $files logs under $dir"
