-- abort.lua: undoes a pending change whose ledger row was not written. It
-- gives a decrease's units back to the item (when the item is still
-- loaded), drops an increase from q (it was never applied), takes the op
-- from the journal and then, by mode:
--   forget     deletes the op record: nothing happened, a retry starts afresh.
--              Only while the lease holds: once it has passed, a retry or
--              Reconcile may be writing the row, so the record is left
--              pending and the reply is "x" (settle it through the ledger)
--   void       the ledger holds a void row for this op key: the outcome is final
--   committed  the ledger already held this op as committed (a retry whose
--              first record Redis lost): the first outcome stands
-- A record that is not pending is left alone.
--
-- KEYS[1]  item hash
-- KEYS[2]  op record
-- KEYS[3]  shard journal
-- ARGV[1]  mode: forget | void | committed
-- ARGV[2]  time to keep the op record (ms)
--
-- Reply: the state the record had before ("" when it is gone), or "x".

local r = redis.call('HMGET', KEYS[2], 's', 'd', 'k', 'l')
if r[1] ~= 'p' then
  return r[1] or ''
end
local mode = ARGV[1]
if mode == 'forget' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(r[4] or '0') <= now then
    return 'x'
  end
end
local d = tonumber(r[2])
if redis.call('HEXISTS', KEYS[1], 'a') == 1 then
  if d < 0 then
    redis.call('HINCRBY', KEYS[1], 'a', -d)
    if r[3] == 'adjust' then
      redis.call('HINCRBY', KEYS[1], 'c', -d)
    end
  else
    redis.call('HINCRBY', KEYS[1], 'q', -d)
    if r[3] == 'adjust' then
      redis.call('HINCRBY', KEYS[1], 'r', -d)
    end
  end
end
redis.call('ZREM', KEYS[3], KEYS[2])
if mode == 'forget' then
  redis.call('DEL', KEYS[2])
elseif mode == 'void' then
  redis.call('HSET', KEYS[2], 's', 'v')
  redis.call('HDEL', KEYS[2], 'l')
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
elseif mode == 'committed' then
  redis.call('HSET', KEYS[2], 's', 'c')
  redis.call('HDEL', KEYS[2], 'l')
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
else
  return redis.error_reply('invgen: unknown abort mode ' .. mode)
end
return 'p'
