-- Claims a batch of entries for stage 2, atomically.
--
-- KEYS[1]  the entry list
-- KEYS[2]  the claims sorted set (member: claim id, score: lease deadline in ms, server time)
-- ARGV[1]  the most entries to claim
-- ARGV[2]  the lease, ms
-- ARGV[3]  the prefix of claim lists (a claim's list is ARGV[3] .. id)
-- ARGV[4]  the id for a new claim
--
-- Returns {id, number of entries} or nil. A claim whose lease ran out is taken over first (same
-- id, same entries, new deadline); otherwise up to ARGV[1] entries move from the head of the list
-- into a new claim list. The caller reads the claim list with LRANGE.
--
-- The entries never pass through Lua: SORT .. BY nosort LIMIT .. STORE copies the head of a list
-- in its order, server-side, and LTRIM drops it. (Popping 50 000 entries into Lua, pushing them
-- back and returning them costs several times more.)

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

while true do
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
  if #expired == 0 then break end
  local id = expired[1]
  local key = ARGV[3] .. id
  err = expect_type(key, 'list')
  if err then return err end
  local n = redis.call('LLEN', key)
  if n > 0 then
    redis.call('ZADD', KEYS[2], deadline, id)
    return {id, n}
  end
  -- An empty claim holds nothing to move: forget it.
  redis.call('ZREM', KEYS[2], id)
end

local key = ARGV[3] .. ARGV[4]
if redis.call('EXISTS', key) == 1 then
  return redis.error_reply('ERR fnmetrics: claim id ' .. ARGV[4] .. ' is in use')
end
local n = redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', 0, ARGV[1], 'STORE', key)
if n == 0 then return false end
redis.call('LTRIM', KEYS[1], n, -1)
redis.call('ZADD', KEYS[2], deadline, ARGV[4])
return {ARGV[4], n}
