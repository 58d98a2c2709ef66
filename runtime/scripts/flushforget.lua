-- flushforget.lua: deletes consumers of the flushers' group that hold no
-- entry: the caller's own when it stops, and those idle for longer than a
-- bound (flushers that died). A consumer with entries pending is kept, so
-- that another flusher can claim them. Deleting a live consumer loses
-- nothing: its next read creates it again. The check and the delete are one
-- step, so no entry is delivered in between.
--
-- KEYS[1]  shard stream
-- ARGV[1]  consumer group
-- ARGV[2]  the caller's consumer name, or "" for none
-- ARGV[3]  idle time (ms) after which any consumer with nothing pending is
--          deleted; 0 deletes only the caller's
--
-- Reply: the number of consumers deleted.

if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, list = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end -- no group yet
local idle = tonumber(ARGV[3])
local n = 0
for _, c in ipairs(list) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['pending'] == 0 and (f['name'] == ARGV[2] or (idle > 0 and f['idle'] >= idle)) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    n = n + 1
  end
end
return n
