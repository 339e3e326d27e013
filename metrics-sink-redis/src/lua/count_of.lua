-- Prepended to the scripts that count entries (claim.lua, pending.lua).
--
-- The number of entries in an element of the entry list: a frame's count is its bytes 2..5
-- (u32, little-endian); any other element (a single entry, an undecodable one) counts as one.
local function count_of(e)
  if string.byte(e, 1) == 2 and #e >= 5 then
    local b1, b2, b3, b4 = string.byte(e, 2, 5)
    return b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
  end
  return 1
end

