-- Counts what stage 2 still has to move: the entry list plus every claim's entries.
--
-- KEYS[1]  the entry list
-- KEYS[2]  the claims sorted set
-- ARGV[1]  the prefix of claim lists

local n = redis.call('LLEN', KEYS[1])
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  n = n + redis.call('LLEN', ARGV[1] .. id)
end
return n
