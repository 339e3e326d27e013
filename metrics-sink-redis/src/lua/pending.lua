-- Counts the entries that stage 2 still has to move: in the entry list and in every claim.
--
-- KEYS[1]  the entry list
-- KEYS[2]  the claims sorted set
-- ARGV[1]  the prefix of claim lists
--
-- count_of comes from count_of.lua, prepended.

local function count_list(key)
  local n, len = 0, redis.call('LLEN', key)
  for start = 0, len - 1, 100 do
    for _, e in ipairs(redis.call('LRANGE', key, start, start + 99)) do
      n = n + count_of(e)
    end
  end
  return n
end

local n = count_list(KEYS[1])
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + count_list(ARGV[1] .. id)
end
return n
