-- Takes over a claim whose lease ran out, atomically: a new deadline, the same id and elements.
--
-- KEYS[1]  the claims sorted set
-- KEYS[2]  the claim's list
-- ARGV[1]  the claim id
-- ARGV[2]  the lease, ms
--
-- Returns {number of elements, the new lease deadline in ms} (decimal strings), or nil if the claim is gone, was taken over by someone else
-- meanwhile (its deadline is in the future again), or was empty (then it is forgotten).

local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(score) > now then return false end
local got = redis.call('TYPE', KEYS[2])['ok']
if got ~= 'none' and got ~= 'list' then
  return redis.error_reply('WRONGTYPE fnmetrics: key ' .. KEYS[2] .. ' holds a ' .. got ..
                           ', expected a list')
end
local n = redis.call('LLEN', KEYS[2])
if n == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
local deadline = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], deadline, ARGV[1])
return {tostring(n), string.format('%d', deadline)}
