-- flushack.lua: the flusher's last step for one shard stream. It
-- acknowledges the entries whose batch is committed in the ledger, deletes
-- them from their items' unflushed entries, puts the units of the
-- increases among them on sale (from i to a, see reserve.lua), then trims
-- the stream
-- below the oldest entry any flusher still holds, which drops whole nodes
-- at once (far cheaper than XDEL of single entries).
--
-- KEYS[1]    shard stream
-- KEYS[2…]   item hashes of the entries' items, whose fields "u:<id>" list
--            their unflushed entries (see reserve.lua), one per entry in
--            ARGV[n+3…]
-- ARGV[1]    consumer group
-- ARGV[2]    n, the number of entry ids to acknowledge
-- ARGV[3…n+2]  entry ids to acknowledge
-- ARGV[n+3…] for each of KEYS[2…] in order, the entry id to delete from it
-- ARGV[last] one character per KEYS[2…]: 1 to put the entry's units on sale
--            if it is an increase, 0 when the ledger refused an entry of
--            its item as a repeat (written.lua)
--
-- Reply: the number of entries trimmed.

local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3, n + 2))
end
local sell = ARGV[#ARGV]
for j = 2, #KEYS do
  written(KEYS[j], ARGV[n + 1 + j], string.sub(sell, j - 1, j - 1) == '1')
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local minid
if pending[1] > 0 then
  minid = pending[2]
else
  -- Nothing is pending: every entry the group has delivered is written;
  -- keep only what comes after the last one delivered.
  local last
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f['name'] == ARGV[1] then last = f['last-delivered-id'] end
  end
  if not last then return 0 end
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  minid = ms .. '-' .. (tonumber(seq) + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
