-- Claims a batch of entries for stage 2, atomically.
--
-- KEYS[1]  the entry list (each element a frame of entries, or a single entry)
-- KEYS[2]  the claims sorted set (member: claim id, score: lease deadline in ms, server time)
-- KEYS[3]  the list of the new claim (ARGV[3] .. ARGV[4])
-- ARGV[1]  the most entries to claim (whole elements are moved: at least one, then more while
--          the count stays below this)
-- ARGV[2]  the lease, ms
-- ARGV[3]  the prefix of claim lists (a claim's list is ARGV[3] .. id)
-- ARGV[4]  the id for a new claim
--
-- Returns {id, number of elements, lease deadline in ms} (decimal strings) of a new claim, {'', id} of a claim whose lease ran out (the
-- caller takes it over with takeover.lua, which names that claim's list in its KEYS: a script
-- only touches keys it is given, as Redis Cluster requires), or nil. Otherwise elements move
-- from the head of the entry list into the new claim list. The caller reads the claim list with
-- LRANGE.
--
-- count_of comes from count_of.lua, prepended.

local function expect_type(key, want)
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= want then
    return redis.error_reply('WRONGTYPE fnmetrics: key ' .. key .. ' holds a ' .. got ..
                             ', expected a ' .. want)
  end
end

local err = expect_type(KEYS[1], 'list') or expect_type(KEYS[2], 'zset')
if err then return err end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + tonumber(ARGV[2])

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
if #expired == 1 then return {'', expired[1]} end

if redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('ERR fnmetrics: claim id ' .. ARGV[4] .. ' is in use')
end
local max = tonumber(ARGV[1])
local n, total = 0, 0
while total < max do
  local e = redis.call('LMOVE', KEYS[1], KEYS[3], 'LEFT', 'RIGHT')
  if not e then break end
  n = n + 1
  total = total + count_of(e)
end
if n == 0 then return false end
redis.call('ZADD', KEYS[2], deadline, ARGV[4])
return {ARGV[4], tostring(n), string.format('%d', deadline)}
