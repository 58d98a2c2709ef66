-- expire.lua: ends the lease of a pending change now, so that its owner can
-- no longer forget it (abort.lua's forget refuses once the lease has
-- passed): a refresh that settles changes still pending after half its
-- fence calls it before it writes their void rows, so that an owner that
-- failed meanwhile settles through the ledger too and answers what the
-- ledger holds.
--
-- KEYS[1]  pending op record (see reserve.lua)
-- KEYS[2]  shard journal
--
-- Reply: 1 when the lease was ended, 0 when the record is not pending or
-- its lease had passed already.

local rec = redis.call('GET', KEYS[1])
if not rec then return 0 end
local head, lease = string.match(rec, '^(p:%-?%d+:%-?%d+:%d+):(%d+)$')
if not head then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(lease) <= now then return 0 end
redis.call('SET', KEYS[1], head .. ':' .. string.format('%d', now))
redis.call('ZADD', KEYS[2], now, KEYS[1])
return 1
