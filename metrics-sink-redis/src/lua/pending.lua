-- Counts the entries in one list: the entry list, or one claim's list. The caller counts the
-- entry list first, then the claims it finds (ZRANGE), so an element moving into a new claim
-- meanwhile is counted twice rather than missed: never 0 while something is pending.
--
-- KEYS[1]  the list
--
-- count_of comes from count_of.lua, prepended.

local n, len = 0, redis.call('LLEN', KEYS[1])
for start = 0, len - 1, 100 do
  for _, e in ipairs(redis.call('LRANGE', KEYS[1], start, start + 99)) do
    n = n + count_of(e)
  end
end
return n
