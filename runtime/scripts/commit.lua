-- commit.lua: the last step of a sync change whose ledger row is
-- committed. It settles the op record as committed (settled.lua), takes it
-- out of the journal and, for an increase, applies it to the item now
-- (reserve.lua only counted it in q). Repeating it changes nothing.
--
-- KEYS[1]  pending op record (see reserve.lua)
-- KEYS[2]  shard journal
-- KEYS[3]  item hash
-- KEYS[4..6] the shard's buckets of settled op records
-- ARGV[1]  the op record's field in the buckets
-- ARGV[2]  generation length of the buckets (ms)
-- ARGV[3]  1 when the change is an adjust (it moves the capacity too)
-- ARGV[4]  the attempt id of the reservation whose row is committed: a
--          pending record of another attempt (the op key's record was
--          settled and forgotten, and the op key reserved again) is left
--          alone, as is its journal entry
--
-- Reply: the state the record had before ("" when it is gone, "?" when it
-- is not what invgen writes, "o" when it is another attempt's).

local rec = redis.call('GET', KEYS[1])
if not rec then
  local s = settled_get(KEYS[4], KEYS[5], KEYS[6], ARGV[1])
  return s and (string.match(s, '^([cv])') or '?') or ''
end
local d, a, n = string.match(rec, '^p:(-?%d+):(-?%d+):(%d+):')
if not d then return '?' end
if n ~= ARGV[4] then return 'o' end
local loaded = item_loaded(KEYS[3])
redis.call('DEL', KEYS[1])
settled_put(KEYS[4], KEYS[5], KEYS[6], ARGV[1], 'c:' .. d .. ':' .. a, now_ms(), tonumber(ARGV[2]), loaded and KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[1])
d = tonumber(d)
if loaded then
  if d > 0 then
    redis.call('HINCRBY', KEYS[3], 'a', d)
    redis.call('HINCRBY', KEYS[3], 'q', -d)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', KEYS[3], 'c', d)
      redis.call('HINCRBY', KEYS[3], 'r', -d)
    end
  elseif ARGV[3] ~= '1' then
    redis.call('HINCRBY', KEYS[3], 'p', d)
  else
    redis.call('HINCRBY', KEYS[3], 'd', d)
  end
end
return 'p'
