-- Acknowledges a claim once its entries are committed downstream: sets its dead letters aside,
-- then removes the claim, atomically.
--
-- KEYS[1]  the claim's list
-- KEYS[2]  the claims sorted set
-- KEYS[3]  the dead-letter list
-- KEYS[4]  the count of dead letters evicted because the list was full
-- ARGV[1]  the claim id
-- ARGV[2]  the most dead letters kept (the oldest go first)
-- ARGV[3..] the dead letters
--
-- Returns the number of dead letters evicted now, or -1 if the claim was gone (acknowledged by a
-- drainer that took it over): then nothing is added, so dead letters are never set aside twice.

if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('UNLINK', KEYS[1])
  return -1
end
local evicted = 0
if #ARGV > 2 then
  for i = 3, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  local over = redis.call('LLEN', KEYS[3]) - tonumber(ARGV[2])
  if over > 0 then
    redis.call('LTRIM', KEYS[3], over, -1)
    redis.call('INCRBY', KEYS[4], over)
    evicted = over
  end
end
redis.call('UNLINK', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return evicted
