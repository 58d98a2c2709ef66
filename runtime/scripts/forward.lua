-- forward.lua: the pointer that a purchase of a split item leaves in its
-- own bucket while it falls over to the others (reserve.lua, KEYS[2]), so
-- that a repeat of it finds where it went (buckets.go).
--
-- KEYS[1]  the purchase's op record key in its own bucket
-- ARGV[1]  settle: the pointer of attempt ARGV[2] becomes ARGV[3]
--          ("f:<bucket>", the bucket that reserved it) for ARGV[4] ms;
--          drop: the pointer of attempt ARGV[2] is deleted (it was refused
--          everywhere, or its process died before any bucket reserved it)
--
-- Reply: 1 done, 0 the pointer is not the named attempt's.

local cur = redis.call('GET', KEYS[1])
if not cur or string.match(cur, '^g:(%d+):') ~= ARGV[2] then
  return 0
end
if ARGV[1] == 'drop' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
