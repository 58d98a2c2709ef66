-- remember.lua: writes the op record of an op key whose outcome Redis had
-- forgotten (its record expired, or Redis lost its data) from what the
-- ledger holds, so that a repeat replays it. A record written meanwhile by
-- another call is left alone.
--
-- KEYS[1]  item hash
-- KEYS[2]  op record (see reserve.lua)
-- ARGV[1]  the ledger's state: committed | void
-- ARGV[2]  committed: the delta of the ledger's row
-- ARGV[3]  time to keep the op record (ms)
--
-- Reply: 1 written, 0 a record was there.

if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[1] == 'void' then
  redis.call('SET', KEYS[2], 'v', 'PX', ARGV[3])
  return 1
end
local a = redis.call('HGET', KEYS[1], 'a') or '0'
redis.call('SET', KEYS[2], 'c:' .. ARGV[2] .. ':' .. a, 'PX', ARGV[3])
return 1
