-- fence.lua: takes the refresh fence of an item. While the fence holds,
-- reserve.lua refuses every change of the item with "busy". A fence whose
-- deadline passed (its holder died) may be taken over.
--
-- KEYS[1]  item hash
-- ARGV[1]  fence token (unique per refresh)
-- ARGV[2]  fence duration (ms)
--
-- Reply: 1 when the fence is ours, 0 when another live refresh holds it.

local f = redis.call('HMGET', KEYS[1], 'f', 't')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if f[1] and tonumber(f[1]) > now and f[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'f', now + tonumber(ARGV[2]), 't', ARGV[1])
return 1
