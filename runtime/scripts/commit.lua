-- commit.lua: the last step of a change whose ledger row is committed. It
-- marks the op record committed, keeps it for the idempotency window and
-- takes it out of the journal. Repeating it changes nothing.
--
-- KEYS[1]  op record
-- KEYS[2]  shard journal
-- ARGV[1]  time to keep the op record (ms)
--
-- Reply: the state the record had before ("" when it is gone).

local s = redis.call('HGET', KEYS[1], 's')
if s ~= 'p' then
  return s or ''
end
redis.call('HSET', KEYS[1], 's', 'c')
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], KEYS[1])
return 'p'
