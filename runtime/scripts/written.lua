-- written.lua: prepended to the scripts that clear an unflushed stream
-- entry once its row is in the ledger (flushack, clearwritten).
--
-- written deletes the entry's field "u:<id>" from its item hash key and,
-- when the entry is an increase and sell is true, moves its units from i
-- (units not yet in the ledger, see reserve.lua) to a: they go on sale.
-- sell is false when the ledger refused an entry of the item as a repeat:
-- the item's refresh sets a and i from the ledger, and until then the
-- units stay off sale. An entry deleted before (a refresh wrote it, then
-- loads the item from the ledger, which holds it) is left alone, as is an
-- item key that is not a hash (garbled: a refresh rebuilds it).
local function written(key, id, sell)
  if redis.call('TYPE', key)['ok'] ~= 'hash' then return end
  local field = 'u:' .. id
  local d = tonumber(string.match(redis.call('HGET', key, field) or '', '^%a+:(%d+):') or '')
  if redis.call('HDEL', key, field) == 0 or not d or d == 0 or not sell then return end
  local v = redis.call('HMGET', key, 'a', 'i')
  local a, i = tonumber(v[1] or ''), tonumber(v[2] or '')
  if a and i and i > 0 then
    d = math.min(d, i)
    redis.call('HINCRBY', key, 'a', d)
    redis.call('HINCRBY', key, 'i', -d)
  end
end
