-- commit.lua: the last step of a sync change whose ledger row is
-- committed. It marks the op record committed, keeps it for the
-- idempotency window, takes it out of the journal and, for an increase,
-- applies it to the item now (reserve.lua only counted it in q). Repeating
-- it changes nothing.
--
-- KEYS[1]  op record
-- KEYS[2]  shard journal
-- KEYS[3]  item hash
-- ARGV[1]  time to keep the op record (ms)
--
-- Reply: the state the record had before ("" when it is gone).

local r = redis.call('HMGET', KEYS[1], 's', 'd', 'k')
if r[1] ~= 'p' then
  return r[1] or ''
end
redis.call('HSET', KEYS[1], 's', 'c')
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], KEYS[1])
local d = tonumber(r[2])
if d > 0 and redis.call('HEXISTS', KEYS[3], 'a') == 1 then
  redis.call('HINCRBY', KEYS[3], 'a', d)
  redis.call('HINCRBY', KEYS[3], 'q', -d)
  if r[3] == 'adjust' then
    redis.call('HINCRBY', KEYS[3], 'c', d)
    redis.call('HINCRBY', KEYS[3], 'r', -d)
  end
end
return 'p'
