-- unfence.lua: lifts an item's fence without loading it (the refresh failed
-- or found that the item does not exist). An item hash that holds nothing but
-- the fence is removed.
--
-- KEYS[1]  item hash
-- ARGV[1]  fence token
--
-- Reply: 1 when the fence was ours and is lifted, 0 otherwise.

if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then
  return 0
end
redis.call('HDEL', KEYS[1], 'f', 't')
if redis.call('HEXISTS', KEYS[1], 'a') == 0 then
  redis.call('DEL', KEYS[1])
end
return 1
