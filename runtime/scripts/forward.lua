-- forward.lua: the pointer that a purchase of a split item leaves in its
-- own bucket while it falls over to the others (reserve.lua, KEYS[2]), so
-- that a repeat of it finds where it went (buckets.go).
--
-- KEYS[1]  the purchase's op record key in its own bucket
-- ARGV[1]  settle: the pointer of attempt ARGV[2] becomes ARGV[3]
--          ("f:<bucket>", the bucket that reserved it) for ARGV[4] ms;
--          drop: the pointer of attempt ARGV[2] is deleted (it was refused
--          everywhere, or its process died before any bucket reserved it);
--          renew: the pointer of attempt ARGV[2] gets a lease of ARGV[3] ms
--          from now, and lives ARGV[4] ms, before the attempt tries
--          another bucket; unpoint: the pointer is deleted if it is
--          ARGV[3] ("f:<bucket>"), a bucket that holds no record of the
--          purchase
--
-- Reply: 1 done, 0 the pointer is not the named attempt's (not ARGV[3]
-- for unpoint); renew: the lease's new deadline (ms, Redis time), or 0.
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == 'unpoint' then
  if cur ~= ARGV[3] then return 0 end
  redis.call('DEL', KEYS[1])
  return 1
end
if not cur or string.match(cur, '^g:(%d+):') ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'drop' then
  redis.call('DEL', KEYS[1])
elseif ARGV[1] == 'renew' then
  local t = redis.call('TIME')
  local deadline = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
  redis.call('SET', KEYS[1], 'g:' .. ARGV[2] .. ':' .. string.format('%d', deadline), 'PX', ARGV[4])
  return deadline
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
