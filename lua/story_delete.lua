-- story_delete.lua: remove a user's story: hash, parts and index entry together.
--
-- KEYS[1]  the story hash
-- KEYS[2]  its parts list
-- KEYS[3]  the user's index
--
-- Reply: 1 deleted, 0 no such story.

local member = redis.call('HGET', KEYS[1], 'member')
if not member then
    return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], member)
return 1
