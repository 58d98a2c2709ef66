-- reserve.lua: the first, atomic step of every stock change (decr, incr,
-- release, adjust). It checks the op record, the fence and the guard of the
-- kind, then applies the delta, records the operation as pending and puts it
-- in the shard's journal with a lease. A rejected change writes only its
-- outcome (so a retry returns it); every other refusal writes nothing.
--
-- In the sync mode a decrease takes its units at once, and gives them back
-- if it is undone; an increase is only counted in q until commit.lua
-- applies it, so no unit it adds can be sold before its ledger row is
-- committed. Guards against the capacity count q as already added.
--
-- KEYS[1]  item hash      a = available, c = capacity, f = fence deadline (ms), t = fence token,
--                         q = units of pending sync increases (incr, release, adjust > 0),
--                         r = capacity of pending sync restocks (adjust > 0)
-- KEYS[2]  op record      s = state (p pending, c committed, r rejected, v void), k = kind,
--                         d = delta, a = available after, r = reject code, i = item, o = op key,
--                         l = lease deadline (ms) while pending, n = attempt id
-- KEYS[3]  sync: shard journal (zset: op record key -> lease deadline, ms,
--          Redis clock); stream: shard stream of usage for the flusher
-- KEYS[4]  release only: op record of the purchase being released
-- ARGV[1]  kind: decr | incr | release | adjust
-- ARGV[2]  decr, incr: units n > 0; adjust: signed delta; release: units per
--          the ledger, or "" to read them from KEYS[4]
-- ARGV[3]  lease (ms)
-- ARGV[4]  time to keep a rejected outcome (ms)
-- ARGV[5]  item, ARGV[6] op key (stored so reconcile can find the ledger row)
-- ARGV[7]  largest quantity an item may hold
-- ARGV[8]  attempt id of this reservation (random, written to its ledger row)
-- ARGV[9]  ledger mode: sync (journal as pending) or stream (committed in
--          Redis at once, usage appended to the stream)
-- ARGV[10] time to keep a committed op record (ms), stream mode
--
-- Reply: "code:available:delta:state:reject code:lease expired (1/0):attempt id",
-- one string so the client parses it without allocating
--   code 0 reserved, 1 duplicate (fields describe the first outcome),
--   2 insufficient stock, 3 item not loaded, 4 fenced or in progress,
--   5 over the limit, 6 purchase unknown to Redis (release: ask the ledger),
--   7 nothing to release

local function reply(...)
  local out = {...}
  for i, v in ipairs(out) do
    if type(v) == 'number' then out[i] = string.format('%d', v) end
  end
  return table.concat(out, ':')
end

local RESERVED, DUPLICATE, SHORT, MISSING, BUSY, LIMIT, UNKNOWN, NOTHING = 0, 1, 2, 3, 4, 5, 6, 7

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local op = redis.call('HMGET', KEYS[2], 's', 'a', 'd', 'r', 'l', 'n')
if op[1] then
  local expired = 0
  if op[1] == 'p' and tonumber(op[5] or '0') <= now then expired = 1 end
  return reply(DUPLICATE, tonumber(op[2]) or 0, tonumber(op[3]) or 0, op[1], tonumber(op[4]) or 0, expired, op[6] or '0')
end

local item = redis.call('HMGET', KEYS[1], 'a', 'c', 'f', 'q', 'r')
if not item[1] then
  return reply(MISSING, 0, 0, '', 0, 0, '0')
end
if item[3] and tonumber(item[3]) > now then
  return reply(BUSY, 0, 0, '', 0, 0, '0')
end

local avail, cap, maxq = tonumber(item[1]), tonumber(item[2]), tonumber(ARGV[7])
local rising = tonumber(item[4] or '0')
-- Pending restocks raise the capacity as much as the stock: count both.
cap = cap + tonumber(item[5] or '0')
local kind = ARGV[1]

local function reject(code)
  redis.call('HSET', KEYS[2], 's', 'r', 'r', code, 'a', avail, 'd', 0, 'k', kind)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return reply(code, avail, 0, 'r', code, 0, '0')
end

local delta, dcap = 0, 0
if kind == 'decr' then
  delta = -tonumber(ARGV[2])
  if avail + delta < 0 then return reject(SHORT) end
elseif kind == 'incr' then
  delta = tonumber(ARGV[2])
  if avail + rising + delta > cap then return reject(LIMIT) end
elseif kind == 'adjust' then
  delta = tonumber(ARGV[2])
  dcap = delta
  if avail + delta < 0 then return reject(SHORT) end
  if cap + delta > maxq then return reject(LIMIT) end
elseif kind == 'release' then
  local taken = ARGV[2]
  if taken == '' then
    local p = redis.call('HMGET', KEYS[4], 's', 'd')
    if not p[1] then return reply(UNKNOWN, avail, 0, '', 0, 0, '0') end
    if p[1] == 'p' then return reply(BUSY, avail, 0, '', 0, 0, '0') end
    if p[1] ~= 'c' then return reject(NOTHING) end
    taken = -tonumber(p[2])
  end
  delta = tonumber(taken)
  if delta <= 0 then return reject(NOTHING) end
  -- Units an Incr already returned cannot be released again.
  if avail + rising + delta > cap then return reject(LIMIT) end
else
  return redis.error_reply('invgen: unknown kind ' .. kind)
end

if ARGV[9] == 'stream' then
  redis.call('HINCRBY', KEYS[1], 'a', delta)
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'c', dcap) end
  redis.call('HSET', KEYS[2], 's', 'c', 'k', kind, 'd', delta, 'a', avail + delta, 'n', ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[10])
  local id = redis.call('XADD', KEYS[3], '*', 'i', ARGV[5], 'k', kind, 'd', delta, 'o', ARGV[6], 'n', ARGV[8])
  -- The item's unflushed entries, fields "u:<stream id>" of the item hash
  -- holding "kind:delta:attempt:op key", so that a refresh writes the
  -- item's own entries only. flushack.lua deletes each one once its batch
  -- is committed.
  redis.call('HSET', KEYS[1], 'u:' .. id, kind .. ':' .. string.format('%d', delta) .. ':' .. ARGV[8] .. ':' .. ARGV[6])
  return reply(RESERVED, avail + delta, delta, 'c', 0, 0, ARGV[8])
end
if delta < 0 then
  redis.call('HINCRBY', KEYS[1], 'a', delta)
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'c', dcap) end
else
  redis.call('HINCRBY', KEYS[1], 'q', delta)
  if dcap ~= 0 then redis.call('HINCRBY', KEYS[1], 'r', dcap) end
end
local lease = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[2], 's', 'p', 'k', kind, 'd', delta, 'a', avail + delta, 'i', ARGV[5], 'o', ARGV[6], 'l', lease, 'n', ARGV[8])
redis.call('ZADD', KEYS[3], lease, KEYS[2])
return reply(RESERVED, avail + delta, delta, 'p', 0, 0, ARGV[8])
