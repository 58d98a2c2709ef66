-- reserve.lua: the first, atomic step of every stock change (decr, incr,
-- release, adjust). It checks the op record, the fence and the guard of the
-- kind, then applies the delta, records the operation as pending and puts it
-- in the shard's journal with a lease. A refused change writes nothing.
--
-- In the sync mode a decrease takes its units at once, and gives them back
-- if it is undone; an increase is only counted in q until commit.lua
-- applies it, so no unit it adds can be sold before its ledger row is
-- committed. The stream mode does the same with i, which the flusher
-- empties into a once it has written the rows: an increase that Redis
-- repeats after forgetting its op key, and that the ledger refuses, never
-- goes on sale. Guards against the capacity count q and i as already added.
--
-- A refusal of an op key Redis has no record of is final only while Redis
-- remembers every op key of the item: the item was created by Init (h is
-- set) less than an op TTL ago, so no record can have expired. Otherwise the
-- op key may be a repeat whose record Redis lost, and the caller asks the
-- ledger before it refuses.
--
-- KEYS[1]  item hash      a = available, c = capacity, f = fence deadline (ms), t = fence token,
--                         q = units of pending sync increases (incr, release, adjust > 0),
--                         r = capacity of pending sync restocks (adjust > 0),
--                         p = units taken by pending sync purchases (decr): they come back
--                             if the purchase is undone, so increases count them as on sale,
--                         d = units taken off by pending sync adjustments < 0 (stock and
--                             capacity both): a load counts them with p (load.lua),
--                         w = "<ms>:<units>": a load keeps that many units of changes the
--                             journal lost held until then (load.lua),
--                         h = "<ms>:<generation length>": when Init created the item; Redis has
--                             every op record of it since, for two generations (settled.lua)
--                         e = the shard's epoch when the item was loaded (KEYS[7])
--                         m = size in bits of the item's filter (KEYS[8]), present while
--                             the filter holds the op key of every purchase that succeeded
--                         z = "<ms>:<period ms>": a sold-out period (below) started then
--                         n = the number of stock buckets of an item whose stock is split
--                             (buckets.go); the same in each bucket, absent for one;
--                         b = this bucket's index among them
--                         v = how many times the item was loaded (load.lua)
--                         u:<stream id> = stream mode: one of the item's unflushed entries
--                         i = stream mode: units of increases (incr, release) in the stream
--                             and not yet in the ledger; they go on sale (a) once their
--                             row is written (flushack.lua), like q in the sync mode
-- KEYS[2]  pending op record, a string "p:delta:available after:attempt:lease deadline"
--          while the change is between Redis and the ledger; once settled the
--          record is a field of a bucket (settled.lua). In the own bucket of
--          a purchase of a split item that falls over to other buckets it
--          is a pointer instead: "g:attempt:lease deadline" while that
--          attempt tries the others, "f:bucket" once one reserved it
-- KEYS[3]  sync: shard journal (zset: pending op record key -> lease deadline, ms,
--          Redis clock); stream: shard stream of usage for the flusher
-- KEYS[4..6] the shard's buckets of settled op records
-- KEYS[7]  the shard's epoch: a token that changes whenever the server
--          serving the shard may have lost writes (see gate.go); an item
--          whose e differs was loaded before and is refreshed first
-- KEYS[8]  release: pending op record of the purchase being released;
--          decr: the item's filter of op keys (a Bloom filter, two bits per
--          op key, a string of m bits)
-- ARGV[1]  kind: decr | incr | release | adjust, or get: read the stock
--          (KEYS[1] and KEYS[7] only; reply code 0 with the stock, and
--          in the delta field the item's load count v)
-- ARGV[2]  decr, incr: units n > 0; adjust: signed delta; release: units per
--          the ledger, or "" to read them from KEYS[8]
-- ARGV[3]  lease (ms)
-- ARGV[4]  op TTL (ms): how long Redis keeps a settled op record at least
-- ARGV[5]  item, ARGV[6] op key (stream mode: written to the stream)
-- ARGV[7]  largest quantity an item may hold
-- ARGV[8]  attempt id of this reservation (random, written to its ledger row)
-- ARGV[9]  ledger mode: sync (journal as pending) or stream (committed in
--          Redis at once, usage appended to the stream)
-- ARGV[10] the op record's field in the buckets
-- ARGV[11] generation length of the buckets (ms)
-- ARGV[12] release: the field of the purchase being released;
--          decr: the op key's two positions in the filter (ARGV[12],
--          ARGV[13], before modulo m), and ARGV[14] the sold-out period
--          (ms) the caller asks for, "0" for none; ARGV[15] "over" when
--          the purchase falls over to a bucket of a split item that is not
--          its own (its own is ARGV[12] modulo n), else "own"; with "over",
--          ARGV[16] is the deadline (ms) of the lease of its pointer: a try
--          that arrives later is refused as busy (buckets.go); without
--          ARGV[16], the bucket the purchase's pointer names, which
--          refuses it (short) unless it holds the purchase's record
--
-- The sold-out fast path (WithSoldOutCache). A purchase refused because
-- the stock is 0, by a caller that asks for it, starts a sold-out period
-- (z) unless one runs: until it ends every purchase is refused, even if
-- units came back meanwhile. Callers then refuse purchases of the item
-- without asking Redis until the period ends, except those whose op key
-- the filter may hold (an earlier purchase that succeeded: its repeat must
-- replay). No purchase can succeed while the period runs, so such a local
-- refusal is the answer Redis would give. Units that come back become
-- sellable when the period ends.
--
-- Reply: "code:available:delta:state:flag:attempt id:sold out:buckets",
-- one string so the client parses it without allocating; sold out is, for
-- a refused purchase, the ms left of the sold-out period when the caller
-- may refuse locally until then (the filter is complete), else 0; buckets
-- is the item's n once its hash was read, else 0
--   code 0 reserved, 1 duplicate (fields describe the first outcome; flag 1:
--   pending and its lease has passed), 2 insufficient stock, 5 over the
--   limit, 7 nothing to release (flag 1: the refusal is final, 0: ask the
--   ledger whether the op key is a repeat first), 3 item not loaded, 4
--   fenced or in progress, 6 purchase unknown to Redis (release: ask the
--   ledger), 8 the item's hash holds values invgen did not write, 9 the op
--   record does, 10 the item was loaded in another epoch of its shard:
--   refresh it from the ledger first, 11 the item's stock is split into
--   buckets and the change is not a purchase, or a purchase in a bucket
--   that is not its own, nothing was written (buckets.go), 12 a pointer
--   of a purchase that fell over (KEYS[2]): state "f" with the bucket in
--   the available field, or "g" with its attempt id and flag 1 when its
--   lease has passed

local RESERVED, DUPLICATE, SHORT, MISSING, BUSY, LIMIT, UNKNOWN, NOTHING, CORRUPT, BADOP, STALE, BUCKETS, FORWARD = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12

-- The longest fence any refresh takes, in ms (maxFenceTTL, options.go;
-- fence.lua's ARGV[3]). A fence that reaches further was not written by a
-- refresh: the item is not waited for but repaired (fence.lua takes such a
-- fence over).
local MAX_FENCE_MS = 600000

-- nb is the item's bucket count once its hash is read.
local nb = 0
local function reply(code, avail, delta, state, flag, attempt, soldout)
  return string.format('%d:%d:%d:%s:%d:%s:%d:%d', code, avail, delta, state, flag, attempt, soldout or 0, nb)
end

-- get: the item's stock, if it is loaded in its shard's epoch.
if ARGV[1] == 'get' then
  local v = redis.call('HMGET', KEYS[1], 'a', 'e', 'n', 'v')
  if not v[1] then return reply(MISSING, 0, 0, '', 0, '0') end
  nb = tonumber(v[3] or '1') or 0
  if (v[2] or '') ~= (redis.call('GET', KEYS[7]) or '') then return reply(STALE, 0, 0, '', 0, '0') end
  local a = tonumber(v[1])
  if not a or a < 0 then return reply(CORRUPT, 0, 0, '', 0, '0') end
  return reply(RESERVED, a, tonumber(v[4] or '0') or 0, '', 0, '0')
end

local now = now_ms()

local rec = redis.call('GET', KEYS[2]) or settled_get(KEYS[4], KEYS[5], KEYS[6], ARGV[10])
if rec then
  if rec == 'v' then return reply(DUPLICATE, 0, 0, 'v', 0, '0') end
  if string.match(rec, '^[fg]:') then
    -- A pointer: a caller that has never seen the item learns its n here.
    local ok, n = pcall(redis.call, 'HGET', KEYS[1], 'n')
    if ok then nb = tonumber(n or '1') or 0 end
  end
  local fb = string.match(rec, '^f:(%d+)$')
  if fb then return reply(FORWARD, tonumber(fb), 0, 'f', 0, '0') end
  local ga, gl = string.match(rec, '^g:(%d+):(%d+)$')
  if ga then
    local passed = 0
    if tonumber(gl) <= now then passed = 1 end
    return reply(FORWARD, 0, 0, 'g', passed, ga)
  end
  local d, a = string.match(rec, '^c:(-?%d+):(-?%d+)$')
  if d then return reply(DUPLICATE, tonumber(a), tonumber(d), 'c', 0, '0') end
  local n, l
  d, a, n, l = string.match(rec, '^p:(-?%d+):(-?%d+):(%d+):(%d+)$')
  if not d then return reply(BADOP, 0, 0, '', 0, '0') end
  local expired = 0
  if tonumber(l) <= now then expired = 1 end
  return reply(DUPLICATE, tonumber(a), tonumber(d), 'p', expired, n)
end

local item = redis.call('HMGET', KEYS[1], 'a', 'c', 'f', 'q', 'r', 'h', 'p', 'e', 'm', 'z', 'n', 'v', 'b', 'i')
nb = tonumber(item[11] or '1') or 0
if not item[1] then
  if item[3] and tonumber(item[3]) and tonumber(item[3]) > now and tonumber(item[3]) <= now + MAX_FENCE_MS then
    return reply(BUSY, 0, 0, '', 0, '0')
  end
  return reply(MISSING, 0, 0, '', 0, '0')
end
local avail, cap, fence = tonumber(item[1]), tonumber(item[2]), tonumber(item[3] or '0')
local rising, pcap, held = tonumber(item[4] or '0'), tonumber(item[5] or '0'), tonumber(item[7] or '0')
local unwritten = tonumber(item[14] or '0')
if not (avail and cap and fence and rising and pcap and held and unwritten) or avail < 0 or cap < 0 or nb < 1 then
  return reply(CORRUPT, 0, 0, '', 0, '0')
end
-- A split item takes purchases only: each in its own bucket first, and
-- in the others when the caller says it falls over.
if nb > 1 and (ARGV[1] ~= 'decr' or ARGV[15] ~= 'over' and tonumber(ARGV[12]) % nb ~= tonumber(item[13] or '0')) then
  return reply(BUCKETS, avail, 0, '', 0, '0')
end
if fence > now + MAX_FENCE_MS then
  return reply(CORRUPT, 0, 0, '', 0, '0')
end
if fence > now or ARGV[15] == 'over' and ARGV[16] and tonumber(ARGV[16]) <= now then
  return reply(BUSY, 0, 0, '', 0, '0')
end
if (item[8] or '') ~= (redis.call('GET', KEYS[7]) or '') then
  return reply(STALE, 0, 0, '', 0, '0')
end

local maxq = tonumber(ARGV[7])
-- Pending restocks raise the capacity as much as the stock: count both.
cap = cap + pcap
rising = rising + unwritten
local kind = ARGV[1]
-- h is "<time>:<generation length>": records settled since live at least
-- two generations (settled.lua).
local ht, hg = string.match(item[6] or '', '^(%d+):(%d+)$')
local final = 0
if ht and now < tonumber(ht) + math.min(2 * tonumber(hg), tonumber(ARGV[4])) then final = 1 end

-- A refusal carries the item's load count v in its delta field: a caller
-- that sums the refusals of several buckets checks that none was loaded
-- again meanwhile (buckets.go).
local loads = tonumber(item[12] or '0') or 0
local function refuse(code)
  return reply(code, avail, loads, '', final, '0')
end

-- short refuses a purchase; in the own bucket of a split item it leaves
-- the pointer of the attempt, which now tries the other buckets.
local function short(a, soldout)
  if nb > 1 and ARGV[15] ~= 'over' then
    redis.call('SET', KEYS[2], 'g:' .. ARGV[8] .. ':' .. (now + tonumber(ARGV[3])), 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))
  end
  return reply(SHORT, a, loads, '', final, '0', soldout)
end

-- A try that the pointer in its own bucket led here ("over" without a
-- lease deadline) found no record of the purchase above: the pointer is
-- stray (the record expired, a pointer lives longer, or the attempt here
-- failed). Nothing is reserved, however much stock there is: the caller
-- drops the pointer and starts again from its own bucket, so that the
-- bucket that serves it now is pointed at afresh, for as long as its new
-- record lives. Reserved here under the old pointer, the purchase would
-- be found by a repeat only while that pointer lives.
if ARGV[15] == 'over' and not ARGV[16] then
  return reply(SHORT, avail, loads, '', final, '0')
end

local delta, dcap = 0, 0
local bits = tonumber(item[9] or '')
if kind == 'decr' then
  delta = -tonumber(ARGV[2])
  local zt, zp = string.match(item[10] or '', '^(%d+):(%d+)$')
  local left = 0
  if zt then left = tonumber(zt) + tonumber(zp) - now end
  if left > 0 then
    if not bits then left = 0 end
    return short(0, left)
  end
  if avail + delta < 0 then
    local period = tonumber(ARGV[14])
    if avail == 0 and period > 0 and bits then
      redis.call('HSET', KEYS[1], 'z', string.format('%d:%d', now, period))
      return short(0, period)
    end
    return short(avail, 0)
  end
elseif kind == 'incr' then
  delta = tonumber(ARGV[2])
  if avail + rising + delta > cap then return refuse(LIMIT) end
  -- Units of pending purchases come back if they are undone: wait for
  -- them (most are committed, their journal clear on its way).
  if avail + held + rising + delta > cap then return reply(BUSY, avail, 0, '', 0, '0') end
elseif kind == 'adjust' then
  delta = tonumber(ARGV[2])
  dcap = delta
  if avail + delta < 0 then return refuse(SHORT) end
  if cap + delta > maxq then return refuse(LIMIT) end
elseif kind == 'release' then
  local taken = ARGV[2]
  if taken == '' then
    local p = redis.call('GET', KEYS[8]) or settled_get(KEYS[4], KEYS[5], KEYS[6], ARGV[12])
    if not p then return reply(UNKNOWN, avail, 0, '', 0, '0') end
    local s, d = string.match(p, '^(%a):?(-?%d*)')
    if s == 'p' then return reply(BUSY, avail, 0, '', 0, '0') end
    if s == 'v' then return reply(NOTHING, avail, 0, '', 1, '0') end
    if s ~= 'c' or d == '' then return reply(UNKNOWN, avail, 0, '', 0, '0') end
    taken = -tonumber(d)
  end
  delta = tonumber(taken)
  if delta <= 0 then return reply(NOTHING, avail, 0, '', 1, '0') end
  -- Units an Incr already returned cannot be released again.
  if avail + rising + delta > cap then return refuse(LIMIT) end
  if avail + held + rising + delta > cap then return reply(BUSY, avail, 0, '', 0, '0') end
else
  return redis.error_reply('invgen: unknown kind ' .. kind)
end

if kind == 'decr' and bits then
  redis.call('SETBIT', KEYS[8], tonumber(ARGV[12]) % bits, 1)
  redis.call('SETBIT', KEYS[8], tonumber(ARGV[13]) % bits, 1)
end

if ARGV[9] == 'stream' then
  -- A decrease takes its units at once; an increase waits in i for its row.
  if delta < 0 then
    redis.call('HINCRBY', KEYS[1], 'a', delta)
  else
    redis.call('HINCRBY', KEYS[1], 'i', delta)
  end
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'c', dcap) end
  settled_put(KEYS[4], KEYS[5], KEYS[6], ARGV[10], string.format('c:%d:%d', delta, avail + delta), now, tonumber(ARGV[11]), KEYS[1])
  local id = redis.call('XADD', KEYS[3], '*', 'i', ARGV[5], 'k', kind, 'd', delta, 'o', ARGV[6], 'n', ARGV[8])
  -- The item's unflushed entries, fields "u:<stream id>" of the item hash
  -- holding "kind:delta:attempt:op key", so that a refresh writes the
  -- item's own entries only. flushack.lua deletes each one once its batch
  -- is committed.
  redis.call('HSET', KEYS[1], 'u:' .. id, kind .. ':' .. string.format('%d', delta) .. ':' .. ARGV[8] .. ':' .. ARGV[6])
  return reply(RESERVED, avail + delta, delta, 'c', 0, ARGV[8])
end
if delta < 0 then
  redis.call('HINCRBY', KEYS[1], 'a', delta)
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'c', dcap) end
  if kind == 'decr' then
    redis.call('HINCRBY', KEYS[1], 'p', -delta)
  else
    redis.call('HINCRBY', KEYS[1], 'd', -delta)
  end
else
  redis.call('HINCRBY', KEYS[1], 'q', delta)
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'r', dcap) end
end
local lease = now + tonumber(ARGV[3])
redis.call('SET', KEYS[2], string.format('p:%d:%d:%s:%d', delta, avail + delta, ARGV[8], lease))
redis.call('ZADD', KEYS[3], lease, KEYS[2])
return reply(RESERVED, avail + delta, delta, 'p', 0, ARGV[8])
