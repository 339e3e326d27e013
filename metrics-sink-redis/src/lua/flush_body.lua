-- Prepended to flush.lua (a single Redis) and flush_shard.lua (a shard of a Redis Cluster): one
-- flush, applied atomically and at most once: the entries (one frame per source, usually one)
-- and the aggregate deltas. The two differ only in how they remember flush ids (`seen`,
-- `remember`). Every key is passed in KEYS.
--
-- apply_flush(k0, a0, seen, remember):
-- KEYS[k0]          the entry list
-- KEYS[k0 + 1]      the set of function names
-- KEYS[k0 + 2]      the change log: a sorted set, member a function name, score the version of
--                   the last flush that changed its aggregates (readers ask what changed since
--                   the version they read up to)
-- KEYS[k0 + 3]      the version counter: one more at each flush applied
-- KEYS[k0 + 3 + i]  the aggregate hash of aggregate i
-- ARGV[a0]          number of frames f (0 when the flush has no entries)
-- ARGV[a0 + 1 .. a0 + f]  the entries' frames, pushed in this order as list elements
-- ARGV[a0 + 1 + f]  number of aggregates
-- then per aggregate: its name, n, then n triples (field, op, value), where op says how the
--   value combines with the stored one: '+' adds (saturating at i64::MAX), '<' keeps the
--   smaller, '>' the larger. The fields are the Rust side's `Snapshot::FIELDS` and the
--   histogram's `b<i>` buckets: this script knows none of their names.
-- seen() says whether the flush id is known (called once the arguments are checked);
-- remember() records it (called once every key checked out, before the writes).
--
-- Returns 0 if the flush id is known (applied before: nothing changes), 1 once applied. Before
-- writing anything it checks every key and field it will touch, and fails with WRONGTYPE if one
-- holds something it could not combine with: a script that fails half-way is not rolled back.
--
-- Every u64 stays a decimal string: Lua numbers are doubles.

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

local function apply_flush(k0, a0, seen, remember)
  local nframes = tonumber(ARGV[a0])
  if not nframes or nframes < 0 or nframes + a0 + 1 > #ARGV then
    return redis.error_reply('ERR fnmetrics: malformed flush arguments')
  end
  local naggs = tonumber(ARGV[a0 + 1 + nframes])
  if not naggs then return redis.error_reply('ERR fnmetrics: malformed flush arguments') end
  -- Where the first aggregate starts.
  local first = a0 + 2 + nframes

  -- The argument layout must hold before anything is read or written.
  local a = first
  for _ = 1, naggs do
    local n = tonumber(ARGV[a + 1])
    if not n then return redis.error_reply('ERR fnmetrics: malformed flush arguments') end
    for j = 0, n - 1 do
      local op, v = ARGV[a + 3 + 3 * j], ARGV[a + 4 + 3 * j]
      if (op ~= '+' and op ~= '<' and op ~= '>') or not v or not canonical(v) then
        return redis.error_reply('ERR fnmetrics: malformed flush arguments')
      end
    end
    a = a + 2 + 3 * n
  end
  if a - 1 ~= #ARGV or #KEYS ~= k0 + 3 + naggs then
    return redis.error_reply('ERR fnmetrics: malformed flush arguments')
  end

  if seen() then return 0 end

  -- Check everything first: sums must be integers (HINCRBY), minima and maxima u64s.
  local err = expect_type(KEYS[k0], 'list') or expect_type(KEYS[k0 + 1], 'set')
    or expect_type(KEYS[k0 + 2], 'zset') or expect_type(KEYS[k0 + 3], 'string')
  if err then return err end
  local version = redis.call('GET', KEYS[k0 + 3])
  if version and not canonical(version) then
    return wrong(KEYS[k0 + 3], 'is not a u64')
  end
  a = first
  for i = 1, naggs do
    local key = KEYS[k0 + 3 + i]
    local n = tonumber(ARGV[a + 1])
    err = expect_type(key, 'hash')
    if err then return err end
    if n > 0 then
      local fields = {}
      for j = 0, n - 1 do fields[#fields + 1] = ARGV[a + 2 + 3 * j] end
      local old = redis.call('HMGET', key, unpack(fields))
      for j = 0, n - 1 do
        local v, op = old[j + 1], ARGV[a + 3 + 3 * j]
        if v then
          if op == '+' then
            if not string.match(v, '^-?%d+$') then
              return wrong(key, 'field ' .. fields[j + 1] .. ' is not an integer')
            end
          elseif not canonical(v) then
            return wrong(key, 'field ' .. fields[j + 1] .. ' is not a u64')
          end
        end
      end
    end
    a = a + 2 + 3 * n
  end

  -- Then apply.
  remember()
  -- One RPUSH for up to 1000 frames (unpack's results must fit Lua's C stack).
  for i = a0 + 1, a0 + nframes, 1000 do
    redis.call('RPUSH', KEYS[k0], unpack(ARGV, i, math.min(i + 999, a0 + nframes)))
  end
  -- A version a flush: a double holds it exactly up to 2^53 flushes.
  version = naggs > 0 and redis.call('INCR', KEYS[k0 + 3])
  a = first
  for i = 1, naggs do
    local key = KEYS[k0 + 3 + i]
    local n = tonumber(ARGV[a + 1])
    redis.call('SADD', KEYS[k0 + 1], ARGV[a])
    redis.call('ZADD', KEYS[k0 + 2], version, ARGV[a])
    for j = 0, n - 1 do
      local f, op, v = ARGV[a + 2 + 3 * j], ARGV[a + 3 + 3 * j], ARGV[a + 4 + 3 * j]
      if op == '+' then
        -- HINCRBY refuses to overflow: the sum saturates at i64::MAX instead.
        local r = redis.pcall('HINCRBY', key, f, v)
        if type(r) == 'table' and r.err then redis.call('HSET', key, f, I64_MAX) end
      else
        local old = redis.call('HGET', key, f)
        if not old or (op == '<' and lt(v, old)) or (op == '>' and lt(old, v)) then
          redis.call('HSET', key, f, v)
        end
      end
    end
    a = a + 2 + 3 * n
  end
  return 1
end
