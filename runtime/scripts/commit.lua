-- commit.lua: the last step of a sync change whose ledger row is
-- committed. It marks the op record committed, keeps it for the
-- idempotency window, takes it out of the journal and, for an increase,
-- applies it to the item now (reserve.lua only counted it in q). Repeating
-- it changes nothing.
--
-- KEYS[1]  op record (see reserve.lua)
-- KEYS[2]  shard journal
-- KEYS[3]  item hash
-- ARGV[1]  time to keep the op record (ms)
-- ARGV[2]  1 when the change is an adjust (it moves the capacity too)
--
-- Reply: the state the record had before ("" when it is gone, "?" when it
-- is not what invgen writes).

local rec = redis.call('GET', KEYS[1])
if not rec then return '' end
local d, a = string.match(rec, '^p:(-?%d+):(-?%d+):')
if not d then
  local s = string.match(rec, '^([cv])')
  return s or '?'
end
redis.call('SET', KEYS[1], 'c:' .. d .. ':' .. a, 'PX', ARGV[1])
redis.call('ZREM', KEYS[2], KEYS[1])
d = tonumber(d)
if d > 0 and redis.call('HEXISTS', KEYS[3], 'a') == 1 then
  redis.call('HINCRBY', KEYS[3], 'a', d)
  redis.call('HINCRBY', KEYS[3], 'q', -d)
  if ARGV[2] == '1' then
    redis.call('HINCRBY', KEYS[3], 'c', d)
    redis.call('HINCRBY', KEYS[3], 'r', -d)
  end
end
return 'p'
