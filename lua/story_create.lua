-- story_create.lua: store a new story whole (SPEC 7; layout in include/storystore.h).
--
-- KEYS[1]  the story hash     ({u:<user>}:story:<id> or {a:<id>}:story)
-- KEYS[2]  its parts list     ({u:<user>}:story:<id>:parts or {a:<id>}:parts)
-- KEYS[3]  the user's index   ({u:<user>}:stories), absent for an anonymous story
-- ARGV[1]  index member "<created µs, 16 hex><id>" ("" when anonymous)
-- ARGV[2]  TTL in seconds of both keys, 0 for none
-- ARGV[3]  stories a user may keep
-- ARGV[4]  the first part, a JSON object text
-- ARGV[5..] field, value pairs of the hash
--
-- Reply: 1 stored, 0 the user already keeps ARGV[3] stories (nothing written).

if KEYS[3] and redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('RPUSH', KEYS[2], ARGV[4])
if KEYS[3] then
    redis.call('ZADD', KEYS[3], 0, ARGV[1])
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
end
return 1
