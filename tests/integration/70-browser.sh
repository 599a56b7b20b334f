#!/usr/bin/env bash
# 70-browser: the web app (www/) end to end in a real browser: Debian's Chromium driven
# by playwright-core (tests/browser/e2e.mjs) against the real stack, through the hooks of
# the www/ <-> browser-test contract.
#
# Desktop (1280x900): sign up, log in by keyboard, start a story, continue it with free
# text and with a suggestion, end it, find it in the list, open and delete it, a readable
# 422; anonymous: hit the ai_anonymous limit, watch the countdown run down, start again;
# phone (375x812): log in, start and read a story without horizontal scroll. The checks
# are e2e.mjs's own "ok" / "not ok" lines, renumbered and counted here. Screenshots:
# tests/out/70-browser/screenshots/ (desktop-*.png, phone-*.png, fail-*.png on failure).
#
# Needs node, /usr/bin/chromium and tests/browser/node_modules (make deps installs all
# three); a missing one is a failure, never a skip.
#
# Run alone from the repository root:  bash tests/integration/70-browser.sh
# (E2E_TIMEOUT, seconds, default 240: the hang guard for the whole browser run.)
set -u
shopt -s lastpipe   # the relay loop below must count in this shell
. "$(dirname "$0")/lib.sh"

BROWSER_DIR="$ROOT/tests/browser"
E2E_TIMEOUT=${E2E_TIMEOUT:-240}

# The tools the browser test needs; without them it cannot mean anything.
command -v node >/dev/null 2>&1 || bail "node is installed (make deps)"
[ -x /usr/bin/chromium ] || bail "chromium is installed at /usr/bin/chromium (make deps)"
[ -f "$BROWSER_DIR/node_modules/playwright-core/package.json" ] ||
    bail "playwright-core is installed in tests/browser/node_modules (make deps runs npm ci)"

start_redis
# ai_anonymous keeps its burst (2) but refills at 0.2/s instead of 0.5/s: the 429 then
# says Retry-After 4 or 5 (not 1 or 2, depending on the browser's pace), so the countdown
# visibly ticks between two readings. The tiers of the signed-in flows get room enough
# that the pace of the browser never decides an answer.
RATE_LIMITS_FILE=$(limits_file '.tiers.ai_anonymous.tokens_per_second = 0.2
                                | .tiers.auth.burst_capacity = 20
                                | .tiers.ai_authenticated.burst_capacity = 50
                                | .tiers.api_authenticated.burst_capacity = 200')
export RATE_LIMITS_FILE
start_stack

# relay: read e2e.mjs's output and re-emit each check through pass / fail (so that the
# numbering continues and the summary counts them); other lines become "#" diagnostics.
E2E_CHECKS=0
E2E_FAILED=0
relay() {
    local line
    while IFS= read -r line; do
        case $line in
            "ok "*)
                E2E_CHECKS=$((E2E_CHECKS + 1))
                pass "${line#ok * - }" ;;
            "not ok "*)
                E2E_CHECKS=$((E2E_CHECKS + 1))
                E2E_FAILED=$((E2E_FAILED + 1))
                fail "${line#not ok * - }" ;;
            "#"*) printf '%s\n' "$line" ;;
            *) printf '#   %s\n' "$line" ;;
        esac
    done
}

note "browser test against http://127.0.0.1:$PORT, output in $TEST_DIR"
started=$(date +%s)
timeout -k 10 "$E2E_TIMEOUT" node "$BROWSER_DIR/e2e.mjs" "http://127.0.0.1:$PORT" "$TEST_DIR" 2>&1 | relay
rc=${PIPESTATUS[0]}
note "browser run took $(( $(date +%s) - started )) s, exit status $rc"

if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    fail "the browser test finishes within $E2E_TIMEOUT s (hang guard)"
elif [ "$E2E_CHECKS" -eq 0 ]; then
    fail "the browser test reports its checks" "e2e.mjs exited $rc without any ok / not ok line"
elif [ "$rc" -ne 0 ] && [ "$E2E_FAILED" -eq 0 ]; then
    fail "the browser test exits 0 when all its checks pass" "e2e.mjs exited $rc"
fi
shots=("$TEST_DIR"/screenshots/*.png)
if [ -e "${shots[0]}" ]; then
    note "screenshots in $TEST_DIR/screenshots: ${shots[*]##*/}"
fi
