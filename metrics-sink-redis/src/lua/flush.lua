-- One flush, applied atomically and at most once: the flush-id key, the entries (one frame) and
-- the aggregate deltas. Every key is passed in KEYS, so with a hash tag in the key prefix they
-- all share one slot.
--
-- KEYS[1]      the flush-id key
-- KEYS[2]      the entry list
-- KEYS[3]      the set of function names
-- KEYS[3 + i]  the aggregate hash of aggregate i
-- ARGV[1]      the flush-id key's TTL, seconds
-- ARGV[2]      the entries' frame ('' when the flush has none)
-- ARGV[3]      number of aggregates
-- then per aggregate: name, calls, errors, panics, cancelled, dropped_entries, total_ns,
--   total_limit (i64::MAX - total_ns), min_ns ('' when none), max_ns, n, then n pairs
--   (bucket field, count)
--
-- Returns 0 if the flush id is known (applied before: nothing changes), 1 once applied. Before
-- writing anything it checks every key and field it will touch, and fails with WRONGTYPE if one
-- holds something it could not add to: a script that fails half-way is not rolled back.
--
-- Every u64 stays a decimal string: Lua numbers are doubles.

local COUNTERS = {'calls', 'errors', 'panics', 'cancelled', 'dropped_entries'}
local I64_MAX = '9223372036854775807'

-- a < b for canonical non-negative decimal strings, exactly.
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end

local function canonical(s)
  return s == '0' or string.match(s, '^[1-9]%d*$') ~= nil
end

local function wrong(key, what)
  return redis.error_reply('WRONGTYPE fnmetrics: key ' .. key .. ' ' .. what)
end

local function expect_type(key, want)
  local got = redis.call('TYPE', key)['ok']
  if got ~= 'none' and got ~= want then
    return wrong(key, 'holds a ' .. got .. ', expected a ' .. want)
  end
end

local naggs = tonumber(ARGV[3])

-- The argument count must match before anything is read or written.
local a = 4
for _ = 1, naggs do a = a + 11 + 2 * tonumber(ARGV[a + 10]) end
if a - 1 ~= #ARGV or #KEYS ~= 3 + naggs then
  return redis.error_reply('ERR fnmetrics: malformed flush arguments')
end

if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end

-- Check everything first.
local err = expect_type(KEYS[2], 'list') or expect_type(KEYS[3], 'set')
if err then return err end
a = 4
for i = 1, naggs do
  local key = KEYS[3 + i]
  local nb = tonumber(ARGV[a + 10])
  err = expect_type(key, 'hash')
  if err then return err end
  local fields = {'calls', 'errors', 'panics', 'cancelled', 'dropped_entries', 'total_ns',
                  'min_ns', 'max_ns'}
  for j = 0, nb - 1 do fields[#fields + 1] = ARGV[a + 11 + 2 * j] end
  local old = redis.call('HMGET', key, unpack(fields))
  for j = 1, #fields do
    local v = old[j]
    if v then
      if j == 7 or j == 8 then
        if not canonical(v) then return wrong(key, 'field ' .. fields[j] .. ' is not a u64') end
      elseif not string.match(v, '^-?%d+$') then
        return wrong(key, 'field ' .. fields[j] .. ' is not an integer')
      end
    end
  end
  a = a + 11 + 2 * nb
end

-- Then apply.
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
if ARGV[2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[2]) end
a = 4
for i = 1, naggs do
  local key = KEYS[3 + i]
  local nb = tonumber(ARGV[a + 10])
  redis.call('SADD', KEYS[3], ARGV[a])
  for j = 1, 5 do
    if ARGV[a + j] ~= '0' then redis.call('HINCRBY', key, COUNTERS[j], ARGV[a + j]) end
  end
  local old = redis.call('HMGET', key, 'total_ns', 'min_ns', 'max_ns')
  local total, limit = ARGV[a + 6], ARGV[a + 7]
  if total ~= '0' or not old[1] then
    -- Saturate at i64::MAX instead of failing HINCRBY.
    if old[1] and string.sub(old[1], 1, 1) ~= '-' and lt(limit, old[1]) then
      redis.call('HSET', key, 'total_ns', I64_MAX)
    else
      redis.call('HINCRBY', key, 'total_ns', total)
    end
  end
  local min, max = ARGV[a + 8], ARGV[a + 9]
  if min ~= '' and (not old[2] or lt(min, old[2])) then
    redis.call('HSET', key, 'min_ns', min)
  end
  if not old[3] or lt(old[3], max) then
    redis.call('HSET', key, 'max_ns', max)
  end
  for j = 0, nb - 1 do
    local b = a + 11 + 2 * j
    redis.call('HINCRBY', key, ARGV[b], ARGV[b + 1])
  end
  a = a + 11 + 2 * nb
end
return 1
