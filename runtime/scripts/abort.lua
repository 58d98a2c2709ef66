-- abort.lua: undoes a pending change whose ledger row was not written. It
-- gives a decrease's units back to the item (when the item is still
-- loaded), drops an increase from q (it was never applied), takes the op
-- from the journal and then, by mode:
--   forget     deletes the op record: nothing happened, a retry starts afresh.
--              Only while the lease holds: once it has passed, a retry or
--              Reconcile may be writing the row, so the record is left
--              pending and the reply is "x" (settle it through the ledger)
--   void       the ledger holds a void row for this op key: the outcome is
--              final, settled as void (settled.lua)
--   committed  the ledger already held this op as committed (a retry whose
--              first record Redis lost): the first outcome stands, settled
--              with the ledger's delta (ARGV[5]), so that a replay or a
--              release of it answers what the ledger holds
-- A record that is not pending is left alone.
--
-- KEYS[1]  item hash
-- KEYS[2]  pending op record (see reserve.lua)
-- KEYS[3]  shard journal
-- KEYS[4..6] the shard's buckets of settled op records
-- ARGV[1]  the op record's field in the buckets
-- ARGV[2]  generation length of the buckets (ms)
-- ARGV[3]  1 when the change is an adjust (it moved the capacity too)
-- ARGV[4]  mode: forget | void | committed
-- ARGV[5]  committed: the delta of the ledger's row
-- ARGV[6]  the attempt id of the reservation to undo: a pending record of
--          another attempt (this one was settled, forgotten, and the op key
--          reserved again) is left alone
--
-- Reply: the state the record had before ("" when it is gone, "?" when it
-- is not what invgen writes, "o" when it is another attempt's), or "x".

local rec = redis.call('GET', KEYS[2])
if not rec then
  local s = settled_get(KEYS[4], KEYS[5], KEYS[6], ARGV[1])
  return s and (string.match(s, '^([cv])') or '?') or ''
end
local d, n, lease = string.match(rec, '^p:(-?%d+):%-?%d+:(%d+):(%d+)$')
if not d then return '?' end
if n ~= ARGV[6] then return 'o' end
local mode = ARGV[4]
local now = now_ms()
if mode == 'forget' and tonumber(lease) <= now then
  return 'x'
end
d = tonumber(d)
local loaded = item_loaded(KEYS[1])
if loaded then
  if d < 0 then
    redis.call('HINCRBY', KEYS[1], 'a', -d)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', KEYS[1], 'c', -d)
      redis.call('HINCRBY', KEYS[1], 'd', d)
    else
      redis.call('HINCRBY', KEYS[1], 'p', d)
    end
  else
    redis.call('HINCRBY', KEYS[1], 'q', -d)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', KEYS[1], 'r', -d)
    end
  end
end
redis.call('ZREM', KEYS[3], KEYS[2])
redis.call('DEL', KEYS[2])
local genms = tonumber(ARGV[2])
if mode == 'void' then
  settled_put(KEYS[4], KEYS[5], KEYS[6], ARGV[1], 'v', now, genms, loaded and KEYS[1])
elseif mode == 'committed' then
  local a = loaded and redis.call('HGET', KEYS[1], 'a') or '0'
  settled_put(KEYS[4], KEYS[5], KEYS[6], ARGV[1], 'c:' .. ARGV[5] .. ':' .. a, now, genms, loaded and KEYS[1])
elseif mode ~= 'forget' then
  return redis.error_reply('invgen: unknown abort mode ' .. mode)
end
return 'p'
