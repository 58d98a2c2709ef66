-- rejournal.lua: puts a change that is still between its Redis and ledger
-- steps back in its shard's journal, after Redis lost the journal entry
-- (an operator's DEL, a partial restore) but kept the op record. A refresh
-- that finds units held with no journal entry of the item (load.lua's -2)
-- calls it for each pending op record of the item, so that it waits for
-- those changes, or settles them, before it reads the ledger.
--
-- KEYS[1]  pending op record (see reserve.lua)
-- KEYS[2]  shard journal
--
-- Reply: 1 when the record is pending and is in the journal now, else 0.

local rec = redis.call('GET', KEYS[1])
if not rec then return 0 end
local lease = string.match(rec, '^p:%-?%d+:%-?%d+:%d+:(%d+)$')
if not lease then return 0 end
redis.call('ZADD', KEYS[2], 'NX', tonumber(lease), KEYS[1])
return 1
