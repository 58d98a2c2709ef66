-- settled.lua: prepended to every script that reads or writes settled op
-- records (reserve, commit, abort, remember). A settled record (committed
-- "c:delta:available after", or void "v") is a field of one of the shard's
-- three bucket hashes, named by the op record key after its tag and "o:":
-- "<len(item)>:<item>:<kind letter>:<op key>". A hash field costs Redis far
-- less than a key with a TTL of its own.
--
-- Time is cut into generations of half the op TTL; generation g writes to
-- bucket g % 3, which it empties first when it still holds an older
-- generation (its field "#", "<g>:<generation length>", says which). So a
-- record lives between one and one and a half op TTLs, and a read looks in
-- all three buckets: any record found is true, however old.
--
-- Processes of one prefix may run with different op TTLs. The shard's
-- buckets keep the generation length of whoever started them, and every
-- writer follows it until they have all expired, so no writer empties a
-- bucket another one still fills. An item whose h (reserve.lua: Redis has
-- every op record of it since) was set under a longer op TTL than the
-- shard's loses its h when a record of it is settled.
--
-- The scripts pass the three bucket keys in KEYS and their own generation
-- length (ms) in ARGV.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- item_loaded reports whether the item hash exists and holds what invgen
-- writes: a step that adjusts a garbled item leaves it alone (a refresh
-- rebuilds it from the ledger).
local function item_loaded(key)
  if redis.call('TYPE', key)['ok'] ~= 'hash' then return false end
  local v = redis.call('HMGET', key, 'a', 'c', 'q', 'r', 'p')
  if not v[1] then return false end
  for i = 1, 5 do
    if v[i] and not tonumber(v[i]) then return false end
  end
  return true
end

local function settled_get(b1, b2, b3, field)
  return redis.call('HGET', b1, field) or redis.call('HGET', b2, field) or redis.call('HGET', b3, field)
end

-- settled_put settles the record field as value, in the bucket of the
-- shard's current generation: the generation length is the one of the
-- bucket generation that ends last, or mine when no bucket exists. item, if
-- given, is the record's item hash, known to be a hash.
local function settled_put(b1, b2, b3, field, value, now, mine, item)
  local keys, heads = {b1, b2, b3}, {}
  local genms, ends = mine, -1
  for i = 1, 3 do
    heads[i] = redis.call('HGET', keys[i], '#')
    local g, ms = string.match(heads[i] or '', '^(%d+):(%d+)$')
    if g and (tonumber(g) + 1) * tonumber(ms) > ends then
      genms, ends = tonumber(ms), (tonumber(g) + 1) * tonumber(ms)
    end
  end
  local gen = math.floor(now / genms)
  local i = gen % 3 + 1
  local g = string.format('%d:%d', gen, genms)
  if heads[i] ~= g then
    redis.call('UNLINK', keys[i])
    redis.call('HSET', keys[i], '#', g)
    redis.call('PEXPIREAT', keys[i], (gen + 3) * genms)
  end
  redis.call('HSET', keys[i], field, value)
  if item then
    local hg = string.match(redis.call('HGET', item, 'h') or '', ':(%d+)$')
    if hg and tonumber(hg) > genms then redis.call('HDEL', item, 'h') end
  end
end
