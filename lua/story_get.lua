-- story_get.lua: read a story and its parts in one consistent step.
--
-- KEYS[1]  the story hash
-- KEYS[2]  its parts list
--
-- Reply: {} when there is no such story, else {HGETALL of the hash, LRANGE of the parts}.

local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then
    return {}
end
return {h, redis.call('LRANGE', KEYS[2], 0, -1)}
