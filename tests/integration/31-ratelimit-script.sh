#!/usr/bin/env bash
# The token bucket script through ratelimit_charge against a real redis-server: the
# cmocka cases of test_ratelimit that need Redis (seed timeline, key TTL and fields,
# NOSCRIPT after SCRIPT FLUSH, a stale script SHA, CR/LF in identifiers), which the
# unit run skips for want of a server.
. "$(dirname "$0")/lib.sh"

bin="$SG_BUILD/tests/test_ratelimit"
[ -x "$bin" ] || bail "build/tests/test_ratelimit is built (make check builds it)"
start_redis

out=$(SG_TEST_REDIS_PORT=$REDIS_PORT CMOCKA_MESSAGE_OUTPUT=TAP "$bin" 2>&1)
status=$?
line=$(printf '%s\n' "$out" | grep -E '^(ok|not ok) [0-9]+ - test_ratelimit_charge_redis')
check_match "ratelimit_charge against redis-server passes" '^ok ' "$line"
check_eq "test_ratelimit exits 0 with Redis present" 0 "$status"
check_eq "no test skipped with Redis present" "" "$(printf '%s\n' "$out" | grep '# SKIP')"
