-- forward.lua: the pointer that a purchase of a split item leaves in its
-- own bucket while it falls over to the others (reserve.lua, KEYS[2]), so
-- that a repeat of it finds where it went (buckets.go).
--
-- KEYS[1]  the purchase's op record key in its own bucket
-- ARGV[1]  settle: the pointer of attempt ARGV[2] becomes ARGV[3]
--          ("f:<bucket>") for ARGV[4] ms; drop: the pointer of attempt
--          ARGV[2] is deleted (the purchase was refused everywhere); take:
--          the pointer of attempt ARGV[2], whose lease passed, becomes
--          attempt ARGV[3]'s, with a lease of ARGV[5] ms, for ARGV[4] ms
--
-- Reply: 1 done, 0 the pointer is not the named attempt's.

local cur = redis.call('GET', KEYS[1])
if not cur or string.match(cur, '^g:(%d+):') ~= ARGV[2] then
  return 0
end
local v = ARGV[3]
if ARGV[1] == 'drop' then
  redis.call('DEL', KEYS[1])
  return 1
elseif ARGV[1] == 'take' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  v = 'g:' .. ARGV[3] .. ':' .. (now + tonumber(ARGV[5]))
end
redis.call('SET', KEYS[1], v, 'PX', ARGV[4])
return 1
