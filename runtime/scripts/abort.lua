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
--              first record Redis lost): the first outcome stands, with the
--              ledger's delta (ARGV[4]), so that a replay or a release of it
--              answers what the ledger holds
-- A record that is not pending is left alone.
--
-- KEYS[1]  item hash
-- KEYS[2]  op record (see reserve.lua)
-- KEYS[3]  shard journal
-- ARGV[1]  mode: forget | void | committed
-- ARGV[2]  time to keep the op record (ms)
-- ARGV[3]  1 when the change is an adjust (it moved the capacity too)
-- ARGV[4]  committed: the delta of the ledger's row
--
-- Reply: the state the record had before ("" when it is gone, "?" when it
-- is not what invgen writes), or "x".

local rec = redis.call('GET', KEYS[2])
if not rec then return '' end
local d, lease = string.match(rec, '^p:(-?%d+):%-?%d+:%d+:(%d+)$')
if not d then
  local s = string.match(rec, '^([cv])')
  return s or '?'
end
local mode = ARGV[1]
if mode == 'forget' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(lease) <= now then
    return 'x'
  end
end
d = tonumber(d)
if redis.call('HEXISTS', KEYS[1], 'a') == 1 then
  if d < 0 then
    redis.call('HINCRBY', KEYS[1], 'a', -d)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', KEYS[1], 'c', -d)
    end
  else
    redis.call('HINCRBY', KEYS[1], 'q', -d)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', KEYS[1], 'r', -d)
    end
  end
end
redis.call('ZREM', KEYS[3], KEYS[2])
if mode == 'forget' then
  redis.call('DEL', KEYS[2])
elseif mode == 'void' then
  redis.call('SET', KEYS[2], 'v', 'PX', ARGV[2])
elseif mode == 'committed' then
  local a = redis.call('HGET', KEYS[1], 'a') or '0'
  redis.call('SET', KEYS[2], 'c:' .. ARGV[4] .. ':' .. a, 'PX', ARGV[2])
else
  return redis.error_reply('invgen: unknown abort mode ' .. mode)
end
return 'p'
