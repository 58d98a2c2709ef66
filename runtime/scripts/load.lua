-- load.lua: the last step of a refresh. It sets an item's stock to what the
-- ledger says and lifts the fence, but only while the caller's fence still
-- holds and no change of the item is pending in the journal, so it never
-- overwrites a change that happened meanwhile.
--
-- KEYS[1]  item hash
-- KEYS[2]  shard journal
-- KEYS[3]  the shard's epoch (reserve.lua): the item is loaded in it
-- KEYS[4]  the item's filter of op keys (reserve.lua): Init starts it
--          empty; it stays complete only while the item was loaded in the
--          current epoch, else it is dropped
-- ARGV[1]  fence token
-- ARGV[2]  available per ledger
-- ARGV[3]  capacity per ledger
-- ARGV[4]  prefix shared by the op record keys of this item
-- ARGV[5]  1 when Init created the item just now: it has no op key Redis
--          could have forgotten (reserve.lua's h); 2 when the load only
--          moves stock between the buckets of an item (buckets.go): an item
--          loaded in the current epoch keeps h and its filter. Any other
--          load clears h.
-- ARGV[6]  the caller's generation length of settled records (settled.lua)
-- ARGV[7]  1 when Init creates the item for a caller with the sold-out fast
--          path: it gets a filter of op keys
-- ARGV[8]  the item's number of stock buckets (reserve.lua's n)
-- ARGV[10] this bucket's index among them (reserve.lua's b)
-- ARGV[9]  1 to keep the fence: the caller lifts it (unfence.lua) once
--          every bucket of a split item is loaded (buckets.go)
-- ARGV[11] how long (ms) to keep holding units of purchases in flight that
--          the journal lost (below), or "" to ask the caller to look for
--          their op records first; absent: p, q and r are dropped
--
-- Units held for changes in flight (p, d, q, r) with no journal entry of the
-- item: Redis lost the entries (an operator's DEL, a partial restore), so
-- no one would settle those changes and a refresh cannot wait for them. A
-- late ledger row of such a purchase would then sell its units twice. The
-- caller first puts the changes whose op records are left back in the
-- journal (refresh.go); for purchases Redis forgot entirely, the load
-- keeps their units held (p stays, a is the ledger's less p) until w, the
-- Redis time ARGV[11] ms after the first such load (w = "<ms>:<units>",
-- a new hold when more units are held than it covers; a load while it
-- covers them does not ask the caller to look again), and a refresh
-- after w gives them back. Late increases (q, r) are not held: their rows can only
-- add stock the next refresh then shows.
--
-- Reply: 1 loaded, 0 fence lost (expired or taken over), -1 changes pending,
-- -2 units held for changes in flight that the journal does not list.

local f = redis.call('HMGET', KEYS[1], 'f', 't', 'a', 'e', 'm', 'p', 'q', 'r', 'w', 'd')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if f[2] ~= ARGV[1] or not tonumber(f[1] or '') or tonumber(f[1]) <= now then
  return 0
end
local prefix = ARGV[4]
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then
    return -1
  end
end
local held, taken = 0, 0
if ARGV[11] then
  -- Purchases (p) and adjustments below zero (d) in flight took units off;
  -- the hold covers both, and the adjustments' capacity too.
  taken = math.max(0, tonumber(f[10] or '0') or 0)
  held = (tonumber(f[6] or '0') or 0) + taken
  local untracked = held ~= 0 or (tonumber(f[7] or '0') or 0) ~= 0 or (tonumber(f[8] or '0') or 0) ~= 0
  -- w = "<ms>:<units>": until then a load keeps that many units held.
  local wt, wh = string.match(f[9] or '', '^(%d+):(%d+)$')
  wt, wh = tonumber(wt), tonumber(wh)
  local covered = wt and wt > now and held > 0 and held <= wh
  if untracked and ARGV[11] == '' and not covered then
    return -2
  end
  if held > 0 then
    if not wt or held > wh then
      -- No hold yet, or more units held than it covers (the journal lost
      -- another change since): hold them all from now on.
      wt, wh = now + (tonumber(ARGV[11]) or 0), held
    end
    if wt <= now then
      held = 0
    else
      redis.call('HSET', KEYS[1], 'w', string.format('%d:%d', wt, wh))
    end
  else
    held = 0
  end
end
if held == 0 then
  taken = 0
  redis.call('HDEL', KEYS[1], 'w')
end
local epoch = redis.call('GET', KEYS[3]) or ''
redis.call('HSET', KEYS[1], 'a', math.max(0, tonumber(ARGV[2]) - held), 'c', math.max(0, tonumber(ARGV[3]) - taken), 'e', epoch)
redis.call('HINCRBY', KEYS[1], 'v', 1)
if ARGV[8] ~= '1' then
  redis.call('HSET', KEYS[1], 'n', ARGV[8], 'b', ARGV[10])
else
  redis.call('HDEL', KEYS[1], 'n', 'b')
end
-- Stream increases not yet written (i) are in the ledger now, or were
-- refused by it: a refresh writes the item's unflushed entries first.
redis.call('HDEL', KEYS[1], 'q', 'r', 'i')
if held > 0 then
  redis.call('HSET', KEYS[1], 'p', held - taken)
  if taken > 0 then redis.call('HSET', KEYS[1], 'd', taken) else redis.call('HDEL', KEYS[1], 'd') end
else
  redis.call('HDEL', KEYS[1], 'p', 'd')
end
if ARGV[9] ~= '1' then
  redis.call('HDEL', KEYS[1], 'f', 't')
end
-- A bucket marked by a step of its split item (step.lua) was loaded in
-- the epoch its mark names.
if f[4] and string.sub(f[4], 1, 2) == 'w:' then f[4] = string.sub(f[4], 3) end
if ARGV[5] == '2' and f[3] and (f[4] or '') == epoch then
  return 1
end
if ARGV[5] == '1' and not f[3] then
  redis.call('DEL', KEYS[4])
  if ARGV[7] == '1' then
    -- About 16 bits per unit of capacity, between 256 bits and 128 KiB.
    local bits = 256
    while bits < 16 * tonumber(ARGV[3]) and bits < 1048576 do bits = bits * 2 end
    redis.call('HSET', KEYS[1], 'm', bits)
  end
  redis.call('HSET', KEYS[1], 'h', string.format('%d:%s', now, ARGV[6]))
else
  -- A refresh may follow a loss of op records (a restart from a snapshot,
  -- a failover): from now on refusals are checked against the ledger.
  redis.call('HDEL', KEYS[1], 'h')
  if not f[3] or (f[4] or '') ~= epoch then
    -- Redis lost the item, or writes since its load: the filter may lack
    -- purchases that succeeded.
    redis.call('HDEL', KEYS[1], 'm')
    redis.call('DEL', KEYS[4])
  end
end
return 1
