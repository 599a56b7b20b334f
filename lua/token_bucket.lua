-- token_bucket.lua: charge one request to a token bucket (SPEC 5.3).
--
-- KEYS[1]  rate_limit:<tier>:<identifier>, a hash {tokens, last_update}
-- ARGV[1]  tokens_per_second (> 0)
-- ARGV[2]  burst_capacity (>= 1)
-- ARGV[3]  cost of this request in tokens (1)
-- ARGV[4]  TTL in seconds: ceil(burst_capacity / tokens_per_second) + 1
--
-- Reply: {allowed (1 or 0), tokens left (string), TIME seconds, TIME microseconds}
--
-- Time is Redis's own clock, so every gateway on every host agrees. The bucket is
-- refilled lazily: tokens(t) = min(capacity, tokens(t0) + rate * (t - t0)).
-- A missing or expired key is a full bucket: the TTL is the time an idle bucket
-- takes to fill up, so expiry never changes an answer.

local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])

local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000

local state = redis.call('HMGET', KEYS[1], 'tokens', 'last_update')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
    tokens = capacity
    last = now
end
if now > last then
    tokens = math.min(capacity, tokens + (now - last) * rate)
    last = now
end

local allowed = 0
if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
end

local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'last_update', string.format('%.6f', last))
redis.call('EXPIRE', KEYS[1], ttl)
return {allowed, left, time[1], time[2]}
