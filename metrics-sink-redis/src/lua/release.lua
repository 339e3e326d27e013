-- Hands a claim back, atomically: its elements return to the head of the entry list in their
-- order, and the claim is forgotten, so that the next claim by any drainer takes them at once
-- (not after the lease). Only while the claim is still the caller's: a drainer that took it over
-- after the lease ran out gave it another deadline.
--
-- KEYS[1]  the claim's list
-- KEYS[2]  the claims sorted set
-- KEYS[3]  the entry list
-- ARGV[1]  the claim id
-- ARGV[2]  the lease deadline the caller was given, ms (its token of ownership)
--
-- Returns the number of elements handed back, or -1 if the claim is not the caller's any more
-- (gone, or taken over): then nothing changes.

local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return -1 end
for _, key in ipairs({KEYS[1], KEYS[3]}) do
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= 'list' then
    return redis.error_reply('WRONGTYPE fnmetrics: key ' .. key .. ' holds a ' .. got ..
                             ', expected a list')
  end
end
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
redis.call('ZREM', KEYS[2], ARGV[1])
return n
