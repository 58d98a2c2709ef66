-- clearwritten.lua: after a refresh wrote an item's unflushed stream
-- entries to the ledger itself (stream.go's writeUnflushed), it clears
-- them from the item hash and puts the increases among them on sale
-- (written.lua).
--
-- KEYS[1]       item hash
-- ARGV[1…n]     the ids of the entries written
-- ARGV[n+1]     one character per entry: 1 to put its units on sale if
--               it is an increase, 0 when the ledger refused an entry of
--               the item (written.lua)
local sell = ARGV[#ARGV]
for j = 1, #ARGV - 1 do
  written(KEYS[1], ARGV[j], string.sub(sell, j, j) == '1')
end
return 0
