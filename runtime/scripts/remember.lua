-- remember.lua: settles the op record of an op key whose outcome Redis had
-- forgotten (its record expired, or Redis lost its data) from what the
-- ledger holds, so that a repeat replays it. A record written meanwhile by
-- another call is left alone.
--
-- KEYS[1]  item hash
-- KEYS[2]  pending op record (see reserve.lua)
-- KEYS[3..5] the shard's buckets of settled op records
-- ARGV[1]  the op record's field in the buckets
-- ARGV[2]  generation length of the buckets (ms)
-- ARGV[3]  the ledger's state: committed | void
-- ARGV[4]  committed: the delta of the ledger's row
--
-- Reply: 1 written, 0 a record was there.

if redis.call('EXISTS', KEYS[2]) == 1 or settled_get(KEYS[3], KEYS[4], KEYS[5], ARGV[1]) then
  return 0
end
local loaded = item_loaded(KEYS[1])
local value = 'v'
if ARGV[3] ~= 'void' then
  value = 'c:' .. ARGV[4] .. ':' .. (loaded and redis.call('HGET', KEYS[1], 'a') or '0')
end
settled_put(KEYS[3], KEYS[4], KEYS[5], ARGV[1], value, now_ms(), tonumber(ARGV[2]), loaded and KEYS[1])
return 1
