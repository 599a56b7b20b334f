-- story_page.lua: the hashes of one page of a user's stories, in the order given.
--
-- KEYS[1..n]  story hashes of one user (one hash slot)
--
-- Reply: one HGETALL per key ({} for a story deleted since the index was read).

local out = {}
for i, key in ipairs(KEYS) do
    out[i] = redis.call('HGETALL', key)
end
return out
