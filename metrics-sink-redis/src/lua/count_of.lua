-- Prepended to the scripts that count entries (claim.lua, pending.lua).
--
-- The number of entries in an element of the entry list: a frame's count (u32, little-endian)
-- is its bytes 2..5 in version 2, and follows the service and host (each a u16 length,
-- little-endian, and that many bytes) in version 4; any other element (a single entry, an
-- undecodable one, a frame too short for its header) counts as one.
local function u32_at(e, i)
  local b1, b2, b3, b4 = string.byte(e, i, i + 3)
  return b1 + 256 * (b2 + 256 * (b3 + 256 * b4))
end

local function count_of(e)
  local v = string.byte(e, 1)
  if v == 2 and #e >= 5 then
    return u32_at(e, 2)
  end
  if v == 4 and #e >= 9 then
    local s1, s2 = string.byte(e, 2, 3)
    local h = 4 + s1 + 256 * s2 -- where the host's length is
    if #e >= h + 1 then
      local h1, h2 = string.byte(e, h, h + 1)
      local c = h + 2 + h1 + 256 * h2 -- where the count is
      if #e >= c + 3 then return u32_at(e, c) end
    end
  end
  return 1
end
