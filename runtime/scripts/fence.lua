-- fence.lua: takes the refresh fence of an item. While the fence holds,
-- reserve.lua refuses every change of the item with "busy". A fence whose
-- deadline passed (its holder died) may be taken over, and so may one that
-- is not a number or lies further ahead than any refresh sets one: those
-- were not written by a refresh. An item key that is not a hash is not
-- invgen's either; it is replaced, so that the refresh can rebuild the item
-- from the ledger.
--
-- KEYS[1]  item hash
-- ARGV[1]  fence token (unique per refresh)
-- ARGV[2]  fence duration (ms)
-- ARGV[3]  longest fence any refresh takes (ms)
--
-- Reply: 1 when the fence is ours, 0 when another live refresh holds it.

local typ = redis.call('TYPE', KEYS[1])['ok']
if typ ~= 'hash' and typ ~= 'none' then
  redis.call('DEL', KEYS[1])
end
local f = redis.call('HMGET', KEYS[1], 'f', 't')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = tonumber(f[1] or '')
if deadline and deadline > now and deadline <= now + tonumber(ARGV[3]) and f[2] ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'f', now + tonumber(ARGV[2]), 't', ARGV[1])
return 1
