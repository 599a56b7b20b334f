-- story_append.lua: add one part to a story, only if nobody changed it meanwhile.
--
-- KEYS[1]  the story hash
-- KEYS[2]  its parts list
-- ARGV[1]  the part count the generator saw
-- ARGV[2]  the most parts the story may hold before this one (30 to continue, 31 to end)
-- ARGV[3]  the new part, a JSON object text
-- ARGV[4]  updated_at
-- ARGV[5]  the status afterwards: "in_progress" or "completed"
--
-- Reply: 1 appended, 0 no such story (deleted or expired), -1 already completed,
-- -2 full, -3 changed meanwhile (another part was added). The keys keep their TTL.

local h = redis.call('HMGET', KEYS[1], 'status', 'parts')
if not h[1] or not h[2] then
    return 0
end
if h[1] == 'completed' then
    return -1
end
local n = tonumber(h[2])
if n >= tonumber(ARGV[2]) then
    return -2
end
if n ~= tonumber(ARGV[1]) then
    return -3
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'parts', n + 1, 'updated_at', ARGV[4], 'status', ARGV[5])
return 1
