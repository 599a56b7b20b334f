#!/usr/bin/env bash
# 32-xff: the client address behind proxies (SPEC 5.2, TRUSTED_PROXIES).
#
# Without trusted proxies X-Forwarded-For is ignored; with them, the client is the first
# untrusted entry walking right to left, IPv6 clients are bucketed by their /64 in RFC
# 5952 form, and a malformed entry met first makes the last address walked the client
# (with a warning logged). Buckets are observed through the Redis keys
# rate_limit:api_anonymous:ip:<addr> and RateLimit-Remaining of GET /nope (404,
# api_anonymous: 10 burst; its refill is slowed to 0.01 token/s here, so that counts
# are exact whatever the machine's speed).
#
# Run alone from the repository root:  bash tests/integration/32-xff.sh
set -u
. "$(dirname "$0")/lib.sh"

# ------------------------------------------------------------------ local helpers

KEY=rate_limit:api_anonymous:ip

# reset_buckets: forget every bucket (a missing key is a full bucket, SPEC 5.3).
reset_buckets() {
    local k
    wait_refusals_known   # a gateway may still refuse a drained bucket by itself
    for k in $(redis_keys 'rate_limit:*'); do
        redis_cli del "$k" >/dev/null
    done
}

# rl_keys: the rate_limit keys, sorted, space-separated.
rl_keys() {
    redis_keys 'rate_limit:*' | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}

# nope XFF: GET /nope with X-Forwarded-For: XFF (no header when XFF is "-").
nope() {
    if [ "$1" == - ]; then
        req GET /nope
    else
        req GET /nope -H "X-Forwarded-For: $1"
    fi
}

# drain XFF N: N quick GET /nope with X-Forwarded-For: XFF on one keep-alive connection
# (a few ms in all, so the bucket barely refills); prints the last status.
drain() {
    local -a urls=()
    local i
    for ((i = 0; i < $2; i++)); do
        urls+=(-o /dev/null "http://127.0.0.1:$PORT/nope")
    done
    curl -s --noproxy '*' --max-time 20 -H "X-Forwarded-For: $1" -w '%{http_code}\n' \
        "${urls[@]}" 2>/dev/null | tail -n 1
}

# check_key_only DESC ADDR: the only rate_limit key is $KEY:ADDR.
check_key_only() {
    check_eq "$1" "$KEY:$2" "$(rl_keys)"
}

# log_json_since MARK: the JSON log lines after line MARK, compact, one a line.
log_json_since() {
    gateway_log | tail -n +$(($1 + 1)) | sed -n 's/^[^{]*{/{/p' |
        while IFS= read -r l; do printf '%s\n' "$l" | jq -c . 2>/dev/null; done
}

start_redis
RATE_LIMITS_FILE=$(limits_file '.tiers.api_anonymous.tokens_per_second = 0.01') ||
    bail "limits_file"
export RATE_LIMITS_FILE

# ------------------------------------------------------ no trusted proxy: ignored

note "without TRUSTED_PROXIES, X-Forwarded-For is ignored"
start_stack
reset_buckets
nope 203.0.113.7
check_status "XFF 203.0.113.7 from an untrusted peer: 404" 404
check_header "a fresh bucket" RateLimit-Remaining 9
check_key_only "the bucket is the peer's: ip:127.0.0.1" 127.0.0.1
nope 198.51.100.23
check_header "a different forged XFF: the same bucket" RateLimit-Remaining 8
nope "1.1.1.1, 203.0.113.7"
check_header "a forged list: the same bucket" RateLimit-Remaining 7
nope -
check_header "no XFF: the same bucket" RateLimit-Remaining 6
check_key_only "still only ip:127.0.0.1" 127.0.0.1
stop_stack

# -------------------------------------------------------- 127.0.0.1/32 trusted

note "TRUSTED_PROXIES=127.0.0.1/32"
export TRUSTED_PROXIES=127.0.0.1/32
start_stack

reset_buckets
nope 203.0.113.7
check_status "XFF 203.0.113.7 via a trusted proxy: 404" 404
check_header "its own fresh bucket" RateLimit-Remaining 9
check_key_only "the client is the XFF entry: ip:203.0.113.7" 203.0.113.7
nope "1.1.1.1, 203.0.113.7"
check_header "client-supplied left entries are ignored: same bucket" RateLimit-Remaining 8
check_key_only "no key for the forged 1.1.1.1" 203.0.113.7
nope " 203.0.113.7 "
check_header "blanks around an entry are ignored: same bucket" RateLimit-Remaining 7

note "two forged clients behind the proxy get separate buckets"
nope 198.51.100.1
check_header "198.51.100.1: a fresh bucket" RateLimit-Remaining 9
nope 198.51.100.1
check_header "198.51.100.1: its own count" RateLimit-Remaining 8
nope 203.0.113.7
check_header "203.0.113.7: its count goes on" RateLimit-Remaining 6
check_eq "two keys" "$KEY:198.51.100.1 $KEY:203.0.113.7" "$(rl_keys)"
check_eq "203.0.113.7 drained (12 quick requests): last is 429" 429 "$(drain 203.0.113.7 12)"
nope 198.51.100.1
check_status "198.51.100.1 unaffected by 203.0.113.7's 429" 404
check_header "198.51.100.1: count unaffected" RateLimit-Remaining 7
nope -
check_status "the proxy itself (no XFF) unaffected" 404
check_header "no XFF via a trusted peer: the peer's own bucket" RateLimit-Remaining 9
check_eq "its key is ip:127.0.0.1" 1 "$(redis_cli exists "$KEY:127.0.0.1")"

note "only 127.0.0.1 trusted: a 10.x entry is the client"
reset_buckets
nope "203.0.113.7, 10.1.2.3"
check_key_only "XFF '203.0.113.7, 10.1.2.3': client 10.1.2.3 (untrusted)" 10.1.2.3

note "IPv6 clients: RFC 5952 form, bucketed by /64"
reset_buckets
nope 2001:DB8:1:2:3:4:5:6
check_status "IPv6 XFF: 404" 404
check_header "IPv6: a fresh bucket" RateLimit-Remaining 9
check_key_only "IPv6 key: ip:2001:db8:1:2::/64" 2001:db8:1:2::/64
nope 2001:db8:1:2:ffff:ffff:ffff:ffff
check_header "another address in the same /64: same bucket" RateLimit-Remaining 8
nope "2001:0db8:0001:0002::9"
check_header "zero-padded form of the same /64: same bucket" RateLimit-Remaining 7
check_key_only "still one IPv6 key" 2001:db8:1:2::/64
nope 2001:db8:1:3::1
check_header "the next /64: its own bucket" RateLimit-Remaining 9
check_eq "its key: ip:2001:db8:1:3::/64" 1 "$(redis_cli exists "$KEY:2001:db8:1:3::/64")"
reset_buckets
nope 2001:db8:0:0:1:0:0:1
check_key_only "zero groups of the /64 compressed: ip:2001:db8::/64" 2001:db8::/64

note "a malformed entry met first: the client is the last address walked"
reset_buckets
mark=$(gateway_log | wc -l)
nope "203.0.113.7, garbage"
check_status "XFF '203.0.113.7, garbage': answered (404)" 404
check_header "a fresh bucket" RateLimit-Remaining 9
# The walk starts at REMOTE_ADDR 127.0.0.1 (trusted), meets "garbage" first and stops:
# the last address walked, 127.0.0.1, is the client; 203.0.113.7 is never reached.
check_key_only "the client is the last address walked: ip:127.0.0.1" 127.0.0.1
sleep 0.2
check_true "a warning is logged for the malformed entry" \
    jq -e -s 'any(.[]; .level == "warn" and .event != "rate_limited")' \
    <<<"$(log_json_since "$mark")"
reset_buckets
nope "garbage, 203.0.113.7"
check_key_only "garbage left of the client is never reached: ip:203.0.113.7" 203.0.113.7
stop_stack

# ----------------------------------------------- 127.0.0.1/32 and 10.0.0.0/8 trusted

note "TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8: trusted entries are skipped"
export TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8
start_stack
reset_buckets
nope "203.0.113.7, 10.1.2.3"
check_status "XFF '203.0.113.7, 10.1.2.3': 404" 404
check_key_only "the trusted 10.1.2.3 is skipped: ip:203.0.113.7" 203.0.113.7
nope "1.1.1.1, 203.0.113.7, 10.9.9.9, 10.1.2.3"
check_header "several trusted hops skipped, left entries ignored: same bucket" \
    RateLimit-Remaining 8
check_key_only "still only ip:203.0.113.7" 203.0.113.7
reset_buckets
nope "203.0.113.7, garbage, 10.1.2.3"
check_key_only "garbage after a trusted hop: the last address walked (ip:10.1.2.3)" 10.1.2.3
stop_stack
