-- step.lua: the marks of a step that changes several buckets of a split
-- item at once (a rebalance, a refresh, Incr, Release or Adjust of it;
-- buckets.go), taken under the fence of every bucket. A bucket the step
-- may leave half done is marked first: its e (reserve.lua's epoch of the
-- load) becomes "w:" .. e, which no epoch equals, so that until the step
-- ends nothing is sold from it and whoever touches it next (a purchase, a
-- read, a refresh, the janitor) finds it stale and loads the item from the
-- ledger again. A process that dies within the step thus leaves its
-- buckets to be loaded again, never units lost or on sale twice. load.lua
-- writes e afresh, so a bucket it loads is no longer marked.
--
-- KEYS[1]  item hash (one bucket)
-- ARGV[1]  mode:
--   mark    marks the bucket
--   take    takes ARGV[3] units off the bucket's stock, and off its
--           capacity too when ARGV[4] is 1, counts it as a load (v) and
--           marks it: a decrease, off sale before its ledger row
--   finish  ends the step: the mark goes and the fence is lifted
-- ARGV[2]  the step's fence token: a bucket whose fence is another's, or
--          has passed, is left alone
--
-- Reply: 1 done, 0 the fence is not the step's.
local f = redis.call('HMGET', KEYS[1], 't', 'f', 'e', 'a')
if f[1] ~= ARGV[2] then return 0 end
local mode = ARGV[1]
if mode == 'finish' then
  local e = f[3] or ''
  if string.sub(e, 1, 2) == 'w:' then
    redis.call('HSET', KEYS[1], 'e', string.sub(e, 3))
  end
  redis.call('HDEL', KEYS[1], 'f', 't')
  if not f[4] then redis.call('DEL', KEYS[1]) end
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if not tonumber(f[2] or '') or tonumber(f[2]) <= now then return 0 end
if not f[4] then
  -- A bucket Redis lacks sells nothing: there is nothing to mark, and
  -- nothing to take.
  if mode == 'mark' then return 1 end
  return 0
end
if string.sub(f[3] or '', 1, 2) ~= 'w:' then
  redis.call('HSET', KEYS[1], 'e', 'w:' .. (f[3] or ''))
end
if mode == 'take' then
  local n = tonumber(ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'a', -n)
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'c', -n) end
  redis.call('HINCRBY', KEYS[1], 'v', 1)
end
return 1
